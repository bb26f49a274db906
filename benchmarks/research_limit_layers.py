"""LIMIT-small recall of latent terms by backbone layer (BENCHMARKS.md, research table).

Exact scipy BM25 over latent ids with Qdrant's IDF; the SAE is fitted on LIMIT-small's own corpus:

    python benchmarks/research_limit_layers.py 1,3,final 4096 16 60000
    python benchmarks/research_limit_layers.py final 4096 16 300000 8,0.7   # optional k1,b (default 1.2,0.75)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from latentlex.backbone import Backbone
from latentlex.corpus import read_corpus
from latentlex.sae import SAEConfig
from latentlex.sparse import SparseVector
from latentlex.states import encode_token_states
from latentlex.terms import LatentTermEncoder
from latentlex.training import TrainConfig, train_sae

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "limit-small"


def matrix(vs: list[SparseVector], width: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(len(vs)), [len(v) for v in vs])
    cols = np.concatenate([v.indices for v in vs]).astype(np.int64)
    vals = np.concatenate([v.values for v in vs])
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(vs), width))


def main() -> None:
    layers = [None if x == "final" else int(x) for x in sys.argv[1].split(",")]
    width, k, steps = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    k1, b = (float(x) for x in (sys.argv[5] if len(sys.argv) > 5 else "1.2,0.75").split(","))
    docs = list(read_corpus(DATA))
    with (DATA / "queries.jsonl").open() as fh:
        queries = [json.loads(line) for line in fh]
    qrels: dict[str, set[str]] = {}
    with (DATA / "qrels" / "test.tsv").open() as fh:
        for line in list(fh)[1:]:
            q, d, _ = line.rstrip("\n").split("\t")
            qrels.setdefault(q, set()).add(d)
    for layer in layers:
        t0 = time.time()
        bb = Backbone(layer=layer)
        st = encode_token_states(
            bb, [d.id for d in docs], [d.text for d in docs], f".cache/states/limit-small-L{layer}",
            progress=False,
        )  # fmt: skip
        cfg = TrainConfig(width=width, k=k, epochs=steps / st.tokens.shape[0], progress=False)
        sae, rep = train_sae(st.tokens, cfg, SAEConfig(d_in=bb.dim, width=width, k=k, layer=layer))
        enc = LatentTermEncoder(sae, bb)
        enc.calibrate_avgdl(st)
        sae.cfg.bm25_k1, sae.cfg.bm25_b = k1, b
        dm = matrix(enc.encode_states(st).sparse, width)
        qm = matrix(enc.encode_queries([q["text"] for q in queries]).sparse, width)
        n = np.asarray((dm > 0).sum(0)).ravel()
        idf = np.log((dm.shape[0] - n + 0.5) / (n + 0.5) + 1)
        scores = (qm @ sp.diags(idf) @ dm.T).toarray()
        res = {}
        for cut in (2, 10):
            top = np.argsort(-scores, 1)[:, :cut]
            hits = [
                len({st.doc_ids[j] for j in top[i]} & qrels[q["_id"]]) / 2
                for i, q in enumerate(queries)
            ]
            res[f"R@{cut}"] = round(float(np.mean(hits)), 4)
        print(json.dumps({"layer": layer, "width": width, "k": k, "fvu": round(rep.fvu, 3), **res,
                          "seconds": round(time.time() - t0)}))  # fmt: skip


if __name__ == "__main__":
    main()
