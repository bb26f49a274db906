"""Fit budget: FVU and latent-term nDCG@10 against the token budget of the fit (SciFact SAE).

    python benchmarks/research_fit_budget.py [--budgets 62500,125000,...,all] [--epochs 3]
        [--seeds 0] [--out benchmarks/results/sweeps/fit-budget]

Each row fits an SAE (width 8192, k 16, the defaults otherwise) through the library's own
:func:`latentlex.fit.fit_sae` on SciFact's token states as ``latentlex eval`` caches them
(``.cache/latentlex-eval/states/scifact``: encode them once with ``latentlex eval --dataset
.../scifact``), so the documents are sampled, avgdl is measured on the sample, and nothing is run
through the backbone, exactly as ``latentlex eval --fit --max-tokens B`` does. Then:

- FVU on 65,536 held-out token states of NFCorpus (never trained on, the same rows for every budget);
- latent terms alone, exact scipy BM25 with Qdrant's IDF (``research_width_k.score``), the SAE's
  own avgdl: SciFact train (the tuning split) and test, NFCorpus dev (the tuning split) and test
  with the SciFact SAE (as BENCHMARKS.md's "NFCorpus with the SciFact SAE" rows);
- fit seconds (wall clock; the machine is shared: compare rows of one run).

Rows are written after each fit (partial results survive).

``--hybrid`` instead runs ``latentlex eval`` itself (``run_eval``, systems ``latent`` and the default
``hybrid``) for each budget: ``--fit`` on SciFact (test, then train with the same cached SAE), and
NFCorpus (dev, then test) searched with that SciFact SAE, as BENCHMARKS.md's tables are made; rows go
to ``fit-budget-hybrid.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from latentlex.backbone import Backbone
from latentlex.corpus import Document
from latentlex.evaluation.beir import load_beir
from latentlex.fit import FitConfig, fit_sae
from latentlex.states import TokenStates, states_folder_name
from latentlex.terms import LatentTermEncoder, iter_state_batches

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_bm25_params import matrix
from research_width_k import idf_index, query_batches, query_matrix, run_queries

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LATENTLEX_DATA", REPO.parent / "shared" / "data"))
STATES = REPO / ".cache" / "latentlex-eval" / "states"
OUT = REPO / "benchmarks" / "results" / "sweeps" / "fit-budget"
HELD_OUT_ROWS = 65_536


def doc_index_own_avgdl(enc: LatentTermEncoder, st: TokenStates):  # type: ignore[no-untyped-def]
    """IDF-weighted, transposed document matrix with the SAE's own avgdl (the library's path);
    also the corpus' own mean latent-term length, for comparison."""
    masses = [m for batch in iter_state_batches(st) for m in enc.latent_mass(batch)]
    corpus_avgdl = float(np.mean([enc.document_length(m) for _, m in masses]))
    dm = matrix([enc.document_weights(i, m) for i, m in masses], enc.width)
    return idf_index(dm), corpus_avgdl


def fvu(sae, x: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """Fraction of variance unexplained on rows ``x``."""
    err = total = 0.0
    mean = x.astype(np.float64).mean(0)
    with torch.inference_mode():
        for s in range(0, len(x), 8192):
            xb = torch.from_numpy(np.asarray(x[s : s + 8192], dtype=np.float32))
            out = sae.encode(xb)
            x_hat = sae.decode(out.top_acts, out.top_indices)
            err += float((xb - x_hat).double().pow(2).sum())
            total += float((xb.double() - torch.from_numpy(mean)).pow(2).sum())
    return err / total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", default="62500,125000,250000,500000,1000000,all")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--hybrid", action="store_true", help="through latentlex eval (see above)")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.hybrid:
        for seed in [int(s) for s in args.seeds.split(",")]:
            hybrid_rows(args.budgets.split(","), args.epochs, seed, out)
        return
    t_start = time.time()

    bb = Backbone()
    sci = {s: load_beir(DATA / "scifact", split=s) for s in ("train", "test")}
    nf = {s: load_beir(DATA / "nfcorpus", split=s) for s in ("dev", "test")}
    sst = TokenStates.open(STATES / states_folder_name("scifact", bb))
    nst = TokenStates.open(STATES / states_folder_name("nfcorpus", bb))
    docs = [
        Document(i, t) for i, t in zip(sci["test"].doc_ids, sci["test"].doc_texts(), strict=True)
    ]
    rows = np.sort(np.random.default_rng(123).choice(nst.tokens.shape[0], HELD_OUT_ROWS, False))
    held = np.asarray(nst.tokens[rows], dtype=np.float32)
    qsets = {}
    for name, ds in [("scifact_train", sci["train"]), ("scifact_test", sci["test"]),
                     ("nfcorpus_dev", nf["dev"]), ("nfcorpus_test", nf["test"])]:  # fmt: skip
        qids = list(ds.queries)
        qsets[name] = (ds, qids, query_batches(bb, [ds.queries[q] for q in qids]))
    print(json.dumps({"setup_s": round(time.time() - t_start, 1)}), flush=True)

    results: list[dict] = []
    if out.with_suffix(".json").is_file():
        results = json.loads(out.with_suffix(".json").read_text())
    for seed in [int(s) for s in args.seeds.split(",")]:
        for b in args.budgets.split(","):
            budget = None if b == "all" else int(b)
            key = (budget, args.epochs, seed)
            if any((r["budget"], r["epochs"], r["seed"]) == key for r in results):
                continue
            cfg = FitConfig(
                max_tokens=budget if budget is not None else "all", epochs=args.epochs,
                seed=seed, progress=False, cache_dir=str(sst.path),
            )  # fmt: skip
            t0 = time.time()
            sae = fit_sae(docs, None, cfg, backbone=bb)
            fit_s = time.time() - t0
            enc = LatentTermEncoder(sae, bb)
            rec = sae.cfg.fit_sample or {}
            row = {
                "budget": budget, "epochs": args.epochs, "seed": seed,
                "sample_tokens": rec.get("tokens"), "sample_docs": rec.get("docs"),
                "fit_seconds": round(fit_s, 1), "train_fvu": round(sae.cfg.metrics["fvu"], 4),
                "nfcorpus_fvu": round(fvu(sae, held), 4), "avgdl": round(sae.cfg.avgdl or 0, 2),
                "dead_pct": round(sae.cfg.metrics["dead_pct"], 2),
            }  # fmt: skip
            for corpus, st, names in [("scifact", sst, ("scifact_train", "scifact_test")),
                                      ("nfcorpus", nst, ("nfcorpus_dev", "nfcorpus_test"))]:  # fmt: skip
                dmi, corpus_avgdl = doc_index_own_avgdl(enc, st)
                row[f"{corpus}_corpus_avgdl"] = round(corpus_avgdl, 2)
                for name in names:
                    ds, qids, qb = qsets[name]
                    qm = query_matrix(enc, qb, len(qids))
                    res = run_queries(qm, dmi, qids, st.doc_ids, ds.qrels, ("ndcg@10",))
                    row[f"{name}_ndcg@10"] = round(res["ndcg@10"], 4)
            row["loadavg"] = [round(x, 2) for x in os.getloadavg()]
            results.append(row)
            print(json.dumps(row), flush=True)
            out.with_suffix(".json").write_text(json.dumps(results, indent=1))
            write_md(results, out.with_suffix(".md"))


def hybrid_rows(budgets: list[str], epochs: float, seed: int, out: Path) -> None:
    """latent and hybrid nDCG@10 through ``latentlex eval`` for each budget (see the docstring)."""
    from latentlex.evaluation.run import run_eval

    path = out.with_name(out.name + "-hybrid")
    rows: list[dict] = (
        json.loads(path.with_suffix(".json").read_text())
        if path.with_suffix(".json").is_file()
        else []
    )
    cache = REPO / ".cache" / "latentlex-eval"
    for b in budgets:
        budget = None if b == "all" else int(b)
        if any((r["budget"], r["epochs"], r["seed"]) == (budget, epochs, seed) for r in rows):
            continue
        fit = {"epochs": epochs, "seed": seed, "max_tokens": "all" if budget is None else budget}
        row: dict = {"budget": budget, "epochs": epochs, "seed": seed}
        t0 = time.time()
        for split in ("test", "train"):
            res = run_eval(DATA / "scifact", fit=fit, systems=["latent", "hybrid"], split=split,
                           cache_dir=cache)  # fmt: skip
            for r in res:
                row[f"scifact_{split}_{r['system']}"] = round(r["metrics"]["ndcg@10"], 4)
        key = f"-t{'all' if budget is None else budget}"
        (sae_dir,) = [
            d for d in (cache / "saes").glob(f"scifact-*-w8192-k16-token-e{epochs:g}-s{seed}{key}")
        ]
        for split in ("dev", "test"):
            res = run_eval(DATA / "nfcorpus", sae=sae_dir, systems=["latent", "hybrid"],
                           split=split, cache_dir=cache)  # fmt: skip
            for r in res:
                row[f"nfcorpus_{split}_{r['system']}"] = round(r["metrics"]["ndcg@10"], 4)
        row["seconds"] = round(time.time() - t0)
        row["sae"] = sae_dir.name
        rows.append(row)
        print(json.dumps(row), flush=True)
        path.with_suffix(".json").write_text(json.dumps(rows, indent=1))
        lines = [
            "# Fit budget through latentlex eval: latent terms alone / default hybrid, nDCG@10",
            "",
            "`python benchmarks/research_fit_budget.py --hybrid`: SciFact SAE (8192 / 16) fitted by "
            "`latentlex eval --fit --max-tokens B`; NFCorpus searched with it. Tuning splits: "
            "SciFact train, NFCorpus dev.",
            "",
            "| budget | epochs | seed | SciFact train | SciFact test | NFCorpus dev | NFCorpus test |",
            "|---:|---:|---:|---|---|---|---|",
        ]
        for r in sorted(rows, key=lambda r: (r["epochs"], r["seed"], r["budget"] or 1e18)):
            cells = [
                f"{r[f'{c}_latent']:.4f} / **{r[f'{c}_hybrid']:.4f}**"
                for c in ("scifact_train", "scifact_test", "nfcorpus_dev", "nfcorpus_test")
            ]
            name = "all" if r["budget"] is None else format(r["budget"], ",")
            lines.append(f"| {name} | {r['epochs']:g} | {r['seed']} | " + " | ".join(cells) + " |")
        path.with_suffix(".md").write_text("\n".join(lines) + "\n")


def write_md(rows: list[dict], path: Path) -> None:
    lines = [
        "# Fit budget: the SciFact SAE (8192 / 16) against its token budget",
        "",
        "`python benchmarks/research_fit_budget.py`: fit_sae on a seeded random sample of whole "
        "SciFact documents (its 1,231,838 token states cached by latentlex eval), avgdl measured on "
        "the sample; FVU on 65,536 NFCorpus token states; latent terms alone, exact scipy BM25 "
        "(Qdrant IDF). Tuning splits: SciFact train, NFCorpus dev (SciFact SAE); test reported.",
        "",
        "| budget (tokens) | epochs | seed | sample docs | fit s | train FVU | NFCorpus FVU "
        "| avgdl (sample / SciFact) | SciFact train | SciFact test | NFCorpus dev | NFCorpus test |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["epochs"], r["seed"], r["budget"] or 1e18)):
        budget = "all" if r["budget"] is None else format(r["budget"], ",")
        lines.append(
            f"| {budget} ({r['sample_tokens']:,}) | {r['epochs']:g} | {r['seed']} | {r['sample_docs']} "
            f"| {r['fit_seconds']:.0f} | {r['train_fvu']:.4f} | {r['nfcorpus_fvu']:.4f} "
            f"| {r['avgdl']:.1f} / {r['scifact_corpus_avgdl']:.1f} "
            f"| {r['scifact_train_ndcg@10']:.4f} | {r['scifact_test_ndcg@10']:.4f} "
            f"| {r['nfcorpus_dev_ndcg@10']:.4f} | {r['nfcorpus_test_ndcg@10']:.4f} |"
        )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines += ["", f"Load average (1/5/15 min) when written: {load}. 2 shared CPU cores.", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
