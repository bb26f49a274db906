"""Probe: qdrant-edge's sparse search under a ``has_id`` filter vs unfiltered (BENCHMARKS.md, "Speed":
why MINMAX's second round trip is not restricted to the first trip's candidates).

    python benchmarks/probe_filtered_sparse.py [--points 50000]

Builds a throw-away shard of random points (a 384-d dense vector; a sparse vector of ~800 Zipf-drawn
terms out of 8,192, IDF modifier: the shape of SciFact's latent terms), then times one sparse query
of Q terms with no filter and with a ``has_id`` filter of 1, 15 and 150 of its own top points
(p50 of 40 calls, ms). Prints one JSON row per query length.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from typing import Any

import numpy as np


def main() -> None:
    import qdrant_edge as qe

    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=50_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    vocab, terms, dim = 8192, 800, 384
    p = 1.0 / np.arange(1, vocab + 1) ** 0.8
    p /= p.sum()

    def sparse(n: int) -> Any:
        idx = np.unique(rng.choice(vocab, n, p=p)).astype(np.uint32)
        return qe.SparseVector(indices=idx.tolist(), values=rng.random(len(idx)).tolist())

    cfg = qe.EdgeConfig(
        vectors={"dense": qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
        sparse_vectors={"sparse": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    )
    shard = qe.EdgeShard.create(tempfile.mkdtemp(prefix="latentlex-probe-"), cfg)
    for start in range(0, args.points, 1000):
        pts = [
            qe.Point(
                str(uuid.uuid4()),
                {"dense": rng.standard_normal(dim).tolist(), "sparse": sparse(terms)},
                {},
            )
            for _ in range(start, min(start + 1000, args.points))
        ]
        shard.update(qe.UpdateOperation.upsert_points(pts))

    def p50(req: Any) -> float:
        times = []
        for _ in range(40):
            t0 = time.perf_counter()
            shard.query_batch(qe.QueryBatchRequest([req]))
            times.append(time.perf_counter() - t0)
        return round(1000 * statistics.median(times), 3)

    for n_terms in (10, 50, 185, 400):
        q = qe.Query.Nearest(sparse(n_terms), using="sparse")
        top = [
            str(x.id)
            for x in shard.query_batch(qe.QueryBatchRequest([qe.QueryRequest(limit=150, query=q)]))[
                0
            ]
        ]
        row: dict[str, Any] = {
            "query_terms": n_terms,
            "unfiltered_ms": p50(qe.QueryRequest(limit=50, query=q)),
        }
        for n_ids in (1, 15, 150):
            flt = qe.Filter(must=[qe.HasIdCondition(set(top[:n_ids]))])
            row[f"has_id_{n_ids}_ms"] = p50(qe.QueryRequest(limit=50, query=q, filter=flt))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
