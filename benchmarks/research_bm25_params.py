"""Sweep the latent-term BM25 parameters on a BEIR dataset with exact scipy scoring (Qdrant's IDF).

    python benchmarks/research_bm25_params.py SAE_DIR DATASET_DIR SPLITS [OUT.json]

One SAE pass over the cached token states gives every document's latent mass; then, without another
pass: BM25 ``k1``/``b`` (the paper's 8/0.7 vs Robertson's 1.2/0.75), the per-document term cap
(all terms vs the top 256/512), and the query-side ``k`` (latents kept per query token: the SAE's
own ``k`` vs 8). Reports nDCG@10 / recall (LIMIT-style sets: recall@2) per split.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from latentlex.evaluation.beir import load_beir
from latentlex.evaluation.metrics import DEFAULT_METRICS, LIMIT_METRICS, evaluate
from latentlex.states import encode_token_states
from latentlex.terms import LatentTermEncoder, iter_state_batches
from research_limit_layers import matrix

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    sae_dir, data = sys.argv[1], Path(sys.argv[2])
    splits = sys.argv[3].split(",")
    out = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    enc = LatentTermEncoder(sae_dir)
    cfg = enc.sae.cfg
    dss = {s: load_beir(data, split=s) for s in splits}
    ds0 = next(iter(dss.values()))
    metrics = LIMIT_METRICS if "limit" in ds0.name else DEFAULT_METRICS
    st = encode_token_states(
        enc.backbone, ds0.doc_ids, ds0.doc_texts(), REPO / ".cache" / "states" / ds0.name,
        progress=False,
    )  # fmt: skip
    masses = [m for batch in iter_state_batches(st) for m in enc.latent_mass(batch)]
    k0 = cfg.k
    rows = []
    for k1, b, cap, kq in [
        (8.0, 0.7, None, k0),
        (1.2, 0.75, None, k0),
        (1.2, 0.75, None, 8),
        (8.0, 0.7, None, 8),
        (1.2, 0.75, 512, k0),
        (1.2, 0.75, 256, k0),
    ]:
        cfg.bm25_k1, cfg.bm25_b, cfg.doc_max_terms = k1, b, cap
        cfg.avgdl = float(np.mean([enc.document_length(m) for _, m in masses]))
        dm = matrix([enc.document_weights(i, m) for i, m in masses], enc.width)
        n = np.asarray((dm > 0).sum(0)).ravel()
        idf = np.log((dm.shape[0] - n + 0.5) / (n + 0.5) + 1)
        dmi = (dm @ sp.diags(idf)).T.tocsr()
        cfg.k = kq
        for split, ds in dss.items():
            qids = list(ds.queries)
            qm = matrix(enc.encode_queries([ds.queries[q] for q in qids]).sparse, enc.width)
            scores = (qm @ dmi).toarray()
            run = {}
            for i, q in enumerate(qids):
                top = np.argpartition(-scores[i], min(100, scores.shape[1] - 1))[:100]
                run[q] = {st.doc_ids[j]: float(scores[i, j]) for j in top}
            res = evaluate(run, ds.qrels, metrics)
            row = {"k1": k1, "b": b, "cap": cap, "query_k": kq, "split": split,
                   "terms_per_doc": round(float(np.diff(dm.indptr).mean()), 1),
                   **{m: round(v, 4) for m, v in res.items()}}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
        cfg.k = k0
    if out is not None:
        out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
