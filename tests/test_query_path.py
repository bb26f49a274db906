"""The default hybrid's query path: min-max fusion in one engine round trip on the embedded store,
with the same hits as the engine's own formula query."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from latentlex.sparse import SparseVector
from latentlex.store.base import CollectionSpec, Fusion, PointRecord, SearchRequest, fuse_minmax
from latentlex.store.client import ClientStore
from latentlex.store.edge import EdgeStore

DIM, VOCAB = 16, 300


def _points(n: int, seed: int = 0) -> list[PointRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        nnz = int(rng.integers(4, 20))
        out.append(
            PointRecord(
                doc_id=f"d{i}",
                dense=rng.normal(size=DIM).astype(np.float32),
                sparse=SparseVector(
                    rng.choice(VOCAB, nnz, replace=False), rng.uniform(0.1, 3, nnz)
                ),
                text=f"text {i}",
                metadata={"tag": "ab"[i % 2], "n": i},
                hash=f"h{i}",
            )
        )
    return out


def _query(seed: int, **kw: Any) -> SearchRequest:
    rng = np.random.default_rng(seed)
    return SearchRequest(
        dense=rng.normal(size=DIM).astype(np.float32),
        sparse=SparseVector(rng.choice(VOCAB, 8, replace=False), rng.uniform(0.5, 2, 8)),
        **kw,
    )


def test_fuse_minmax_unit() -> None:
    legs = [[("a", 0.9), ("b", 0.5), ("c", 0.1)], [("b", 12.0), ("d", 2.0)], []]
    top = fuse_minmax(legs, [2.0, 3.0, 1.0], k=3)
    # a: 2*(0.9-0.1)/0.8 = 2; b: 2*0.4/0.8 + 3 = 4; c: 0; d: 0 (the worst of its leg)
    assert [pid for pid, _ in top] == ["b", "a", "c"]  # c and d tie at 0: by id
    assert top[0][1] == pytest.approx(4.0) and top[1][1] == pytest.approx(2.0)
    assert fuse_minmax([[("x", 1.0)], [("y", 1.0)]], [1.0, 2.0], k=5) == [("y", 2.0), ("x", 1.0)]
    assert fuse_minmax([[], []], [1.0, 1.0], k=5) == []


def test_embedded_minmax_is_one_engine_query_with_the_formula_hits(tmp_path: Path) -> None:
    spec = CollectionSpec(name="c", dense_dim=DIM, identity={"sae_fingerprint": "x"})
    points = _points(400)
    edge, ref = EdgeStore(tmp_path / "edge"), ClientStore(location=":memory:")
    for s in (edge, ref):
        s.open(spec)
        s.upsert(points)
    calls: list[int] = []
    shard = edge._open_shard()
    real = shard.query_batch

    class Spy:  # count the engine queries the embedded store sends
        def __getattr__(self, name: str) -> Any:
            return getattr(shard, name)

        def query_batch(self, batch: Any) -> Any:
            calls.append(1)
            return real(batch)

    spy = Spy()
    edge._open_shard = lambda: spy  # type: ignore[method-assign]
    try:
        for seed in range(12):
            flt = {"tag": "a"} if seed % 3 == 0 else None
            req = _query(seed, k=10, fusion=Fusion.MINMAX, weights=(0.5, 1.5), filter=flt)
            calls.clear()
            got = edge.search(req)
            assert len(calls) == 1  # the legs only: no second, formula query
            want = ref.search(req)  # qdrant-client: the engine's formula over the prefetches
            assert [h.doc_id for h in got] == [h.doc_id for h in want]
            assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)
            assert [h.text for h in got] == [h.text for h in want]  # payloads read by id
            assert [(h.dense_rank, h.sparse_rank) for h in got] == [
                (h.dense_rank, h.sparse_rank) for h in want
            ]
            if flt:
                assert all(h.metadata["tag"] == "a" for h in got)
        batch = edge.search_batch(
            [_query(s, k=5) for s in range(4)] + [_query(9, k=3, mode="dense")]
        )
        assert [len(h) for h in batch] == [5, 5, 5, 5, 3]
    finally:
        del edge._open_shard
        edge.close()
        ref.close()
