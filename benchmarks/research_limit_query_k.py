"""LIMIT-small recall of one SAE's latent terms by query-side k and BM25 k1 / b (exact scipy BM25,
Qdrant's IDF; the documents' token states must be cached, e.g. by ``latentlex eval``):

    python benchmarks/research_limit_query_k.py .cache/saes/scifact-Lfinal+1-w8192-k16 \\
        .cache/latentlex-eval/states/limit-small-Lfinal+1

Prints one JSON row per (k1, b, query_k); avgdl is LIMIT-small's own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from latentlex.evaluation.beir import load_beir
from latentlex.evaluation.metrics import evaluate
from latentlex.sae import SparseAutoencoder
from latentlex.sparse import SparseVector
from latentlex.states import TokenStates
from latentlex.terms import LatentTermEncoder, iter_state_batches

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_bm25_params import matrix

LIMIT = Path(__file__).resolve().parents[1] / "examples" / "data" / "limit-small"


def main() -> None:
    sae = SparseAutoencoder.load(sys.argv[1])
    enc = LatentTermEncoder(sae)
    lim = load_beir(LIMIT, split="test")
    st = TokenStates.open(sys.argv[2])
    masses = [m for b in iter_state_batches(st) for m in enc.latent_mass(b)]
    qids = list(lim.queries)
    texts = [lim.queries[q] for q in qids]
    batches = list(enc.backbone.iter_batches(texts, batch_size=64, is_query=True))
    for k1, b in [(1.2, 0.75), (2.0, 0.75), (0.9, 0.4)]:
        sae.cfg.bm25_k1, sae.cfg.bm25_b = k1, b
        sae.cfg.avgdl = float(np.mean([enc.document_length(m) for _, m in masses]))
        dm = matrix([enc.document_weights(i, m) for i, m in masses], sae.cfg.width)
        n = np.asarray((dm > 0).sum(0)).ravel()
        idf = np.log((dm.shape[0] - n + 0.5) / (n + 0.5) + 1)
        dmi = (dm @ sp.diags(idf)).T.tocsr()
        for qk in (None, 8, 4, 2):
            sae.cfg.query_k = qk
            vs: list[SparseVector] = [SparseVector.empty()] * len(texts)
            for pos, batch in batches:
                pairs = enc.latent_mass(batch, is_query=True)
                for p, (i, m) in zip(pos.tolist(), pairs, strict=True):
                    vs[p] = enc.query_weights(i, m)
            s = (matrix(vs, sae.cfg.width) @ dmi).toarray()
            run = {
                q: {st.doc_ids[j]: float(s[a, j]) for j in np.argsort(-s[a])[:20]}
                for a, q in enumerate(qids)
            }
            r = evaluate(run, lim.qrels, ("recall@2", "recall@10"))
            print(
                json.dumps(
                    {"k1": k1, "b": b, "query_k": qk, **{k: round(v, 4) for k, v in r.items()}}
                )
            )


if __name__ == "__main__":
    main()
