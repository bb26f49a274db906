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

from latentlex.evaluation.beir import load_beir
from latentlex.sae import SparseAutoencoder
from latentlex.states import TokenStates
from latentlex.terms import LatentTermEncoder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_width_k import LIMIT, doc_index, query_batches, query_matrix, score


def main() -> None:
    sae = SparseAutoencoder.load(sys.argv[1])
    enc = LatentTermEncoder(sae)
    lim = load_beir(LIMIT, split="test")
    st = TokenStates.open(sys.argv[2])
    qids = list(lim.queries)
    batches = query_batches(enc.backbone, [lim.queries[q] for q in qids])
    for k1, b in [(1.2, 0.75), (2.0, 0.75), (0.9, 0.4)]:
        sae.cfg.bm25_k1, sae.cfg.bm25_b = k1, b
        dmi, _ = doc_index(enc, st)  # sets avgdl to LIMIT-small's own
        for qk in (None, 8, 4, 2):
            sae.cfg.query_k = qk
            s = (query_matrix(enc, batches, len(qids)) @ dmi).toarray()
            r = score(s, qids, st.doc_ids, lim.qrels, ("recall@2", "recall@10"))
            print(
                json.dumps(
                    {"k1": k1, "b": b, "query_k": qk, **{k: round(v, 4) for k, v in r.items()}}
                )
            )


if __name__ == "__main__":
    main()
