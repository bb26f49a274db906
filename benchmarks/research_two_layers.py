"""Latent terms from two layers at once: the final layer's SAE plus an early layer's SAE.

    python benchmarks/research_width_k.py --only 8192:16 --layer 1 --save .cache/saes/L1 --out ...
    python benchmarks/research_two_layers.py .cache/saes/scifact-w8192-k16 .cache/saes/L1/w8192-k16

Both SAEs' latent ids live in separate vocabularies, so one sparse vector holding both (the second
SAE's ids offset by the first's width) is scored by Qdrant as the sum of the two BM25 scores; here
that sum is computed exactly with scipy (Qdrant's IDF, each SAE's own k1/b and avgdl), with the
second part weighted by ``w`` (a query-side scale, which Qdrant applies through the query vector).
``w`` is chosen on SciFact train; SciFact test and LIMIT-small are reported for every ``w``.
Writes ``benchmarks/results/sweeps/two-layers-L{N}.{json,md}`` (N: the second SAE's layer).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from latentlex.backbone import Backbone
from latentlex.evaluation.beir import load_beir
from latentlex.sae import SparseAutoencoder
from latentlex.states import TokenStates, encode_token_states, states_folder_name
from latentlex.terms import LatentTermEncoder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_width_k import (
    LIMIT,
    REPO,
    SCIFACT,
    STATES,
    doc_index,
    query_batches,
    query_matrix,
    score,
)

SWEEPS = REPO / "benchmarks" / "results" / "sweeps"
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, float("inf"))


def part_scores(sae_dir: str) -> tuple[dict[str, np.ndarray], int | None]:
    """Exact BM25 score matrices [queries, docs] of one SAE on SciFact train/test and LIMIT."""
    sae = SparseAutoencoder.load(sae_dir)
    layer = sae.cfg.layer
    bb = Backbone(layer=layer)
    enc = LatentTermEncoder(sae, bb)
    sci = {s: load_beir(SCIFACT, split=s) for s in ("train", "test")}
    lim = load_beir(LIMIT, split="test")
    st = TokenStates.open(STATES / states_folder_name("scifact", bb))
    lst = encode_token_states(
        bb, lim.doc_ids, lim.doc_texts(), STATES / states_folder_name(lim.name, bb), progress=False
    )
    out = {}
    dmi, _ = doc_index(enc, st)
    for split in ("train", "test"):
        ds = sci[split]
        qids = list(ds.queries)
        qm = query_matrix(enc, query_batches(bb, [ds.queries[q] for q in qids]), len(qids))
        out[split] = (qm @ dmi).toarray()
    ldmi, _ = doc_index(enc, lst)
    qids = list(lim.queries)
    qm = query_matrix(enc, query_batches(bb, [lim.queries[q] for q in qids]), len(qids))
    out["limit"] = (qm @ ldmi).toarray()
    return out, layer


def main() -> None:
    a, la = part_scores(sys.argv[1])
    b, lb = part_scores(sys.argv[2])
    sci = {s: load_beir(SCIFACT, split=s) for s in ("train", "test")}
    lim = load_beir(LIMIT, split="test")
    sci_docs = TokenStates.open(STATES / "scifact").doc_ids
    lim_docs = TokenStates.open(STATES / lim.name).doc_ids
    rows = []
    for w in WEIGHTS:

        def mix(key: str, w: float = w) -> np.ndarray:
            return b[key] if np.isinf(w) else a[key] + w * b[key]

        row: dict = {"w": "second only" if np.isinf(w) else w}
        for split in ("train", "test"):
            ds = sci[split]
            r = score(mix(split), list(ds.queries), sci_docs, ds.qrels, ("ndcg@10", "recall@100"))
            row.update({f"{split}_{k}": round(v, 4) for k, v in r.items()})
        r = score(mix("limit"), list(lim.queries), lim_docs, lim.qrels, ("recall@2", "recall@10"))
        row.update({f"limit_{k}": round(v, 4) for k, v in r.items()})
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = SWEEPS / ("two-layers" + ("" if lb is None else f"-L{lb}"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"first": sys.argv[1], "second": sys.argv[2],
                                                    "layers": [la, lb], "rows": rows}, indent=1))  # fmt: skip
    name = lambda x: "final" if x is None else f"layer {x}"  # noqa: E731
    lines = [
        f"# Latent terms from two layers: {name(la)} SAE + w x {name(lb)} SAE",
        "",
        "Exact scipy BM25 (Qdrant IDF) per SAE, summed; `python benchmarks/research_two_layers.py`",
        "",
        "| w (second SAE) | SciFact train nDCG@10 | test nDCG@10 | test R@100 | LIMIT R@2 | LIMIT R@10 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['w']} | {r['train_ndcg@10']:.4f} | {r['test_ndcg@10']:.4f} "
            f"| {r['test_recall@100']:.4f} | {r['limit_recall@2']:.4f} | {r['limit_recall@10']:.4f} |"
        )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines += ["", f"w = 0: the first SAE alone. Load average when written: {load}.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
