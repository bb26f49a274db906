"""One SAE over two layers' token states: a shared dictionary of latent terms read at two depths.

    python benchmarks/research_shared_layers.py LAYER [WIDTH] [K] [EPOCHS]   # e.g. 1 8192 16 1

The SAE is fitted on SciFact's final-layer token states and layer ``LAYER``'s, stacked (both
caches must exist: ``research_width_k.py --layer LAYER`` makes the second). A text's latent mass
is the sum of its final-layer and layer-``LAYER`` activations (sum pooling is additive, so this is
the mass of the text's tokens read at both depths), then BM25-saturated with one avgdl as usual.
Scores SciFact train/test and LIMIT-small exactly (scipy, Qdrant IDF), like
``research_width_k.py``; writes ``benchmarks/results/sweeps/shared-layers-L{LAYER}-w{WIDTH}-k{K}.{json,md}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from latentlex.backbone import Backbone
from latentlex.evaluation.beir import load_beir
from latentlex.sae import SAEConfig
from latentlex.states import TokenStates
from latentlex.terms import LatentTermEncoder, iter_state_batches
from latentlex.training import TrainConfig, train_sae

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_bm25_params import matrix
from research_width_k import LIMIT, REPO, SCIFACT, STATES, idf_index, score


def masses(enc: LatentTermEncoder, batches: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per text ``(ids, mass)`` summed over every batch list given (one list per layer)."""
    out: list[dict[int, float]] = []
    for layer_batches in batches:
        i = 0
        for batch in layer_batches:
            for idx, m in enc.latent_mass(batch):
                if i == len(out):
                    out.append({})
                acc = out[i]
                for j, v in zip(idx.tolist(), m.tolist(), strict=True):
                    acc[j] = acc.get(j, 0.0) + v
                i += 1
    res = []
    for acc in out:
        ids = np.array(sorted(acc), dtype=np.int64)
        res.append((ids, np.array([acc[j] for j in ids.tolist()], dtype=np.float32)))
    return res


def query_batches(bb: Backbone, texts: list[str]) -> list:
    """Batches in input order (no length sorting), so rows line up across layers."""
    return [bb.forward(texts[i : i + 64], is_query=True) for i in range(0, len(texts), 64)]


def main() -> None:
    layer = int(sys.argv[1])
    width = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    epochs = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    sci = {s: load_beir(SCIFACT, split=s) for s in ("train", "test")}
    lim = load_beir(LIMIT, split="test")
    st = [TokenStates.open(STATES / "scifact"), TokenStates.open(STATES / f"scifact-L{layer}")]
    lst = [TokenStates.open(STATES / lim.name), TokenStates.open(STATES / f"{lim.name}-L{layer}")]
    assert st[0].doc_ids == st[1].doc_ids and np.array_equal(st[0].offsets, st[1].offsets)
    bbs = [Backbone(), Backbone(layer=layer)]
    t0 = time.time()
    data = np.concatenate([np.asarray(s.tokens) for s in st])
    cfg = SAEConfig(d_in=bbs[0].dim, width=width, k=k, bm25_k1=1.2, bm25_b=0.75)
    sae, rep = train_sae(
        data, TrainConfig(width=width, k=k, epochs=epochs, seed=0, progress=False), cfg
    )
    del data
    train_s = time.time() - t0
    enc = LatentTermEncoder(sae, bbs[0])

    def doc_matrix(states: list[TokenStates]) -> tuple[sp.csr_matrix, float]:
        ms = masses(enc, [list(iter_state_batches(s)) for s in states])
        enc.sae.cfg.avgdl = float(np.mean([enc.document_length(m) for _, m in ms]))
        dm = matrix([enc.document_weights(i, m) for i, m in ms], width)
        return idf_index(dm), float(np.diff(dm.indptr).mean())

    def query_scores(texts: list[str], dmi: sp.csr_matrix) -> np.ndarray:
        ms = masses(enc, [query_batches(bb, texts) for bb in bbs])
        return (matrix([enc.query_weights(i, m) for i, m in ms], width) @ dmi).toarray()

    row: dict = {"layers": ["final", layer], "width": width, "k": k, "epochs": epochs,
                 "fvu": round(rep.fvu, 4), "dead_pct": round(rep.dead_pct, 2),
                 "train_seconds": round(train_s, 1)}  # fmt: skip
    dmi, tpd = doc_matrix(st)
    row["terms_per_doc"] = round(tpd, 1)
    for split in ("train", "test"):
        ds = sci[split]
        qids = list(ds.queries)
        s = query_scores([ds.queries[q] for q in qids], dmi)
        r = score(s, qids, st[0].doc_ids, ds.qrels, ("ndcg@10", "recall@100"))
        row.update({f"{split}_{m}": round(v, 4) for m, v in r.items()})
    ldmi, _ = doc_matrix(lst)
    qids = list(lim.queries)
    r = score(query_scores([lim.queries[q] for q in qids], ldmi), qids, lst[0].doc_ids,
              lim.qrels, ("recall@2", "recall@10"))  # fmt: skip
    row.update({f"limit_{m}": round(v, 4) for m, v in r.items()})
    row["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(row), flush=True)
    out = REPO / "benchmarks" / "results" / "sweeps" / f"shared-layers-L{layer}-w{width}-k{k}"
    out.with_suffix(".json").write_text(json.dumps(row, indent=1))
    out.with_suffix(".md").write_text(
        f"# One SAE over the final layer and layer {layer} (shared dictionary)\n\n"
        f"`python benchmarks/research_shared_layers.py {layer} {width} {k} {epochs:g}`; exact scipy "
        "BM25 (k1 1.2, b 0.75), Qdrant IDF\n\n"
        "| width | k | epochs | FVU | terms/doc | SciFact train nDCG@10 | test nDCG@10 | LIMIT R@2 | R@10 |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {width} | {k} | {epochs:g} | {row['fvu']:.4f} | {row['terms_per_doc']:.0f} "
        f"| {row['train_ndcg@10']:.4f} | {row['test_ndcg@10']:.4f} | {row['limit_recall@2']:.4f} "
        f"| {row['limit_recall@10']:.4f} |\n"
    )


if __name__ == "__main__":
    main()
