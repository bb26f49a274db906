"""Budget-matched SAE width / k sweep: latent terms alone, exact scipy BM25 (Qdrant IDF).

    python benchmarks/research_width_k.py [--dataset scifact|nfcorpus] [--epochs E] [--only W:K,...]
        [--layer N] [--special-tokens] [--save DIR] [--budget-s SECONDS]

Each config trains ``--epochs`` (default one) over the dataset's token states (cached under
``.cache/states/DATASET``, encoded once; seed 0, default :class:`TrainConfig` otherwise, BM25 k1
1.2 / b 0.75), then one SAE pass over the states scores the dataset's tuning split (SciFact:
train, NFCorpus: dev) and test split (nDCG@10, recall@100) and LIMIT-small (recall@2) exactly, as
``research_bm25_params.py`` does. Rows are written after every config (partial results survive);
a config is skipped when the time left is under ``--min-left-s`` or under its estimated cost.
SAEs are saved only with ``--save DIR``. ``--layer N`` reads the token states of transformer layer
``N`` instead of the final one (corpora re-encoded into ``*-L{N}`` caches); ``--special-tokens``
keeps [CLS]/[SEP].
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from latentlex.backbone import Backbone
from latentlex.evaluation.beir import load_beir
from latentlex.evaluation.metrics import evaluate
from latentlex.sae import SAEConfig
from latentlex.states import TokenStates, encode_token_states, states_folder_name
from latentlex.terms import LatentTermEncoder, iter_state_batches
from latentlex.training import TrainConfig, train_sae

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_bm25_params import matrix

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LATENTLEX_DATA", REPO.parent / "shared" / "data"))
SCIFACT = DATA / "scifact"
#: The split each dataset is tuned on (reported beside test).
TUNE = {"scifact": "train", "nfcorpus": "dev"}
LIMIT = REPO / "examples" / "data" / "limit-small"
STATES = REPO / ".cache" / "states"
OUT = REPO / "benchmarks" / "results" / "sweeps" / "width-k-scifact"
CONFIGS = [(8192, 16), (4096, 16), (8192, 8), (8192, 32), (16384, 16)]


def query_batches(bb: Backbone, texts: list[str]) -> list:
    """Backbone batches of the queries, computed once and reused by every SAE."""
    return list(bb.iter_batches(texts, batch_size=64, is_query=True))


def query_matrix(enc: LatentTermEncoder, batches: list, n: int) -> sp.csr_matrix:
    """Query weights of the batched queries (``SAEConfig.query_k`` applies), rows in input order."""
    vs = [None] * n
    for pos, batch in batches:
        pairs = enc.latent_mass(batch, is_query=True)
        for p, (idx, mass) in zip(pos.tolist(), pairs, strict=True):
            vs[p] = enc.query_weights(idx, mass)
    return matrix(vs, enc.width)


def idf_index(dm: sp.csr_matrix) -> sp.csr_matrix:
    """A [docs, terms] BM25 document matrix times Qdrant's IDF, transposed for ``queries @ it``."""
    n = np.asarray((dm > 0).sum(0)).ravel()
    idf = np.log((dm.shape[0] - n + 0.5) / (n + 0.5) + 1)
    return (dm @ sp.diags(idf)).T.tocsr()


def doc_index(enc: LatentTermEncoder, st: TokenStates) -> tuple[sp.csr_matrix, float]:
    """(IDF-weighted, transposed) document matrix and mean terms per document; sets avgdl."""
    masses = [m for batch in iter_state_batches(st) for m in enc.latent_mass(batch)]
    enc.sae.cfg.avgdl = float(np.mean([enc.document_length(m) for _, m in masses]))
    dm = matrix([enc.document_weights(i, m) for i, m in masses], enc.width)
    return idf_index(dm), float(np.diff(dm.indptr).mean())


def score(scores: np.ndarray, qids, doc_ids, qrels, metrics) -> dict[str, float]:
    """Metrics of a dense [queries, docs] score matrix (each query's top 100 documents)."""
    run = {}
    for i, q in enumerate(qids):
        top = np.argpartition(-scores[i], min(100, scores.shape[1] - 1))[:100]
        run[q] = {doc_ids[j]: float(scores[i, j]) for j in top}
    return evaluate(run, qrels, metrics)


def run_queries(qm, dmi, qids, doc_ids, qrels, metrics) -> dict[str, float]:
    return score((qm @ dmi).toarray(), qids, doc_ids, qrels, metrics)


def write_md(rows: list[dict], path: Path, dataset: str = "scifact", tune: str = "train") -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    epochs = rows[0]["epochs"] if rows else 1
    lines = [
        f"# SAE width / k sweep on {dataset} (latent terms alone)",
        "",
        f"{epochs:g} epoch(s) each on {dataset}'s token states; exact scipy BM25 (k1 1.2, b 0.75), "
        "Qdrant IDF; `python benchmarks/research_width_k.py`",
        "",
        f"| width | k | layer | FVU | dead % | terms/doc | {dataset} {tune} nDCG@10 | test nDCG@10 "
        "| test R@100 | LIMIT R@2 | train s |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['width']} | {r['k']} | {'final' if r.get('layer') is None else r['layer']} "
            f"| {r['fvu']:.4f} | {r['dead_pct']:.2f} "
            f"| {r['terms_per_doc']:.1f} | {r[f'{tune}_ndcg@10']:.4f} | {r['test_ndcg@10']:.4f} "
            f"| {r['test_recall@100']:.4f} | {r['limit_recall@2']:.4f} | {r['train_seconds']:.0f} |"
        )
    lines += ["", f"Load average (1/5/15 min) when written: {load}. 2 shared CPU cores.", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    t_start = time.time()
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-s", type=float, default=float("inf"))
    ap.add_argument("--min-left-s", type=float, default=480.0)
    ap.add_argument("--only", default=None, help="comma-separated WIDTH:K configs")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--epochs", type=float, default=1.0, help="epochs per config")
    ap.add_argument(
        "--special-tokens",
        action="store_true",
        help="keep [CLS]/[SEP] token states (encodes the corpora again, into *-special caches)",
    )
    ap.add_argument(
        "--layer",
        type=int,
        default=None,
        help="read this transformer layer's token states (encodes the corpora again, *-L{N} caches)",
    )
    ap.add_argument("--dataset", default="scifact", choices=sorted(TUNE))
    ap.add_argument("--save", default=None, help="save each SAE under DIR/w{WIDTH}-k{K}")
    args = ap.parse_args()
    configs = CONFIGS
    if args.only:
        configs = [tuple(int(x) for x in c.split(":")) for c in args.only.split(",")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    bb = Backbone(keep_special_tokens=args.special_tokens, layer=args.layer)
    tune = TUNE[args.dataset]
    sci = {s: load_beir(DATA / args.dataset, split=s) for s in (tune, "test")}
    lim = load_beir(LIMIT, split="test")
    st = encode_token_states(
        bb, sci["test"].doc_ids, sci["test"].doc_texts(),
        STATES / states_folder_name(args.dataset, bb), progress=False,
    )  # fmt: skip
    assert set(st.doc_ids) == set(sci["test"].doc_ids), "cached states do not match"
    lst = encode_token_states(
        bb, lim.doc_ids, lim.doc_texts(), STATES / states_folder_name(lim.name, bb),
        progress=False,
    )  # fmt: skip
    qsets = {}
    for name, ds in [(tune, sci[tune]), ("test", sci["test"]), ("limit", lim)]:
        qids = list(ds.queries)
        qsets[name] = (qids, query_batches(bb, [ds.queries[q] for q in qids]))
    print(json.dumps({"setup_s": round(time.time() - t_start, 1)}), flush=True)

    rows: list[dict] = []
    ref_cost = None  # seconds per (width * rows) of the first config
    for width, k in configs:
        left = args.budget_s - (time.time() - t_start)
        est = ref_cost * width if ref_cost is not None else 0.0
        if left < max(args.min_left_s, est):
            print(json.dumps({"skipped": [width, k], "left_s": round(left), "est_s": round(est)}))
            continue
        t0 = time.time()
        sae_cfg = SAEConfig(
            d_in=bb.dim, width=width, k=k, backbone=bb.name, backbone_fingerprint=bb.fingerprint(),
            backbone_dim=bb.dim, max_seq_length=bb.max_seq_length, bm25_k1=1.2, bm25_b=0.75,
            keep_special_tokens=bb.keep_special_tokens, layer=args.layer,
        )  # fmt: skip
        tcfg = TrainConfig(width=width, k=k, epochs=args.epochs, seed=0, progress=False)
        sae, rep = train_sae(st.tokens, tcfg, sae_cfg)
        train_s = time.time() - t0
        enc = LatentTermEncoder(sae, bb)
        t1 = time.time()
        dmi, tpd = doc_index(enc, st)
        if args.save:
            sae.save(Path(args.save) / f"w{width}-k{k}")  # avgdl: SciFact's, set by doc_index
        row = {
            "width": width, "k": k, "epochs": args.epochs, "seed": 0, "fvu": round(rep.fvu, 4),
            "special_tokens": bb.keep_special_tokens, "layer": args.layer,
            "l0": round(rep.l0, 2), "dead_pct": round(rep.dead_pct, 2),
            "tokens_seen": rep.tokens_seen, "train_seconds": round(train_s, 1),
            "terms_per_doc": round(tpd, 1), "avgdl": round(sae.cfg.avgdl, 2),
        }  # fmt: skip
        for split in (tune, "test"):
            qids, qb = qsets[split]
            qm = query_matrix(enc, qb, len(qids))
            res = run_queries(
                qm, dmi, qids, st.doc_ids, sci[split].qrels, ("ndcg@10", "recall@100")
            )
            row.update({f"{split}_{m}": round(v, 4) for m, v in res.items()})
        ldmi, _ = doc_index(enc, lst)
        qids, qb = qsets["limit"]
        res = run_queries(
            query_matrix(enc, qb, len(qids)), ldmi, qids, lst.doc_ids, lim.qrels, ("recall@2",)
        )
        row["limit_recall@2"] = round(res["recall@2"], 4)
        row["eval_seconds"] = round(time.time() - t1, 1)
        row["loadavg"] = [round(x, 2) for x in os.getloadavg()]
        rows.append(row)
        print(json.dumps(row), flush=True)
        out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
        write_md(rows, out.with_suffix(".md"), args.dataset, tune)
        if ref_cost is None:
            ref_cost = (time.time() - t0) / width
        del sae, enc, dmi


if __name__ == "__main__":
    main()
