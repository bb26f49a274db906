"""The Qdrant seam, on every engine: edge (tmp path), client ":memory:", client path=, and a
real server when $QDRANT_URL is set."""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from latentlex.errors import CollectionMismatchError, ConfigError, StoreError
from latentlex.sparse import SparseVector
from latentlex.store import (
    AsyncClientStore,
    AsyncStore,
    ClientStore,
    CollectionSpec,
    EdgeStore,
    Fusion,
    PointRecord,
    SearchRequest,
    Store,
    point_id,
)

CORE = str(Path(__file__).resolve().parents[1] / "core")
DIM = 8
VOCAB = 40
IDENTITY = {"format_version": 1, "sae_fingerprint": "sae-abc", "backbone": "mini", "avgdl": 12.5}
QDRANT_URL = os.environ.get("QDRANT_URL")


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------


@dataclass
class Backend:
    """Builds stores that all see the same collections (where the engine allows it)."""

    name: str
    make: Callable[..., Any]
    collection: str
    shared: bool  # a second store object sees what the first wrote (after the first closed)


def _spec(backend: Backend, **kw: Any) -> CollectionSpec:
    args: dict[str, Any] = {
        "name": backend.collection,
        "dense_dim": DIM,
        "identity": dict(IDENTITY),
    }
    args.update(kw)
    return CollectionSpec(**args)


@pytest.fixture(params=["edge", "memory", "path", "server"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    kind = request.param
    coll = f"t{uuid.uuid4().hex[:10]}"
    if kind == "edge":
        yield Backend(kind, lambda **kw: EdgeStore(tmp_path / "edge", **kw), coll, True)
    elif kind == "memory":
        yield Backend(kind, lambda **kw: ClientStore(location=":memory:", **kw), coll, False)
    elif kind == "path":
        yield Backend(
            kind, lambda **kw: ClientStore(path=str(tmp_path / "local"), **kw), coll, True
        )
    else:
        if not QDRANT_URL:
            pytest.skip("set QDRANT_URL to test against a real Qdrant server")
        yield Backend(kind, lambda **kw: ClientStore(QDRANT_URL, **kw), coll, True)
        ClientStore(QDRANT_URL).client.delete_collection(coll)


@pytest.fixture
def store(backend: Backend) -> Iterator[Any]:
    s = backend.make()
    s.open(_spec(backend))
    yield s
    s.close()


def _random_points(n: int, seed: int = 0, start: int = 0) -> list[PointRecord]:
    rng = np.random.default_rng(seed)
    pts = []
    for i in range(start, start + n):
        nnz = int(rng.integers(3, 12))
        idx = rng.choice(VOCAB, nnz, replace=False)
        val = rng.uniform(0.1, 3.0, nnz)
        pts.append(
            PointRecord(
                doc_id=f"d{i}",
                dense=rng.normal(size=DIM).astype(np.float32),
                sparse=SparseVector(idx, val),
                text=f"text {i}",
                metadata={"n": i, "tag": "ab"[i % 2], "score": i / 10, "nested": {"k": i % 3}},
                hash=f"h{i}",
            )
        )
    return pts


def _query(seed: int = 1, **kw: Any) -> SearchRequest:
    rng = np.random.default_rng(seed)
    idx = rng.choice(VOCAB, 6, replace=False)
    return SearchRequest(
        dense=rng.normal(size=DIM).astype(np.float32),
        sparse=SparseVector(idx, rng.uniform(0.5, 2.0, 6)),
        **kw,
    )


# ------------------------------------------------------------------------------------------------
# basics
# ------------------------------------------------------------------------------------------------


def test_point_id_is_uuid5_of_fixed_namespace() -> None:
    assert point_id("doc-1") == str(
        uuid.uuid5(uuid.UUID("5b0c3a5e-6c1d-5d1e-9a4f-1a7e27e1e7e1"), "doc-1")
    )
    assert point_id("a") != point_id("b")
    with pytest.raises(TypeError):
        point_id(3)  # type: ignore[arg-type]


def test_public_api_pinned() -> None:
    import latentlex.store as st

    assert sorted(st.__all__) == sorted(
        [
            "FORMAT_VERSION", "POINT_NAMESPACE", "AsyncClientStore", "AsyncStore", "ClientStore",
            "CollectionSpec", "EdgeStore", "Filter", "Fusion", "Hit", "PointRecord",
            "SearchRequest", "Store", "point_id",
        ]
    )  # fmt: skip


def test_protocols(tmp_path: Path) -> None:
    edge, client = EdgeStore(tmp_path), ClientStore(location=":memory:")
    for s in (edge, client):
        assert isinstance(s, Store) and isinstance(s, AsyncStore)
    assert isinstance(AsyncClientStore(location=":memory:"), AsyncStore)


def test_search_request_validation() -> None:
    with pytest.raises(ConfigError, match="dense"):
        SearchRequest(dense=None, sparse=SparseVector.empty())
    with pytest.raises(ConfigError, match="mode"):
        _query(mode="both")
    with pytest.raises(ConfigError, match="DBSF"):
        _query(fusion=Fusion.DBSF, weights=(2.0, 1.0))
    assert _query(k=3).candidates == 50 and _query(k=30).candidates == 150
    assert _query(k=3, prefetch_limit=7).candidates == 7
    assert _query(fusion="weighted").fusion is Fusion.WEIGHTED


# ------------------------------------------------------------------------------------------------
# open / validate
# ------------------------------------------------------------------------------------------------


def test_open_creates_then_validates(backend: Backend) -> None:
    s = backend.make()
    s.open(_spec(backend))
    assert s.identity() == IDENTITY
    s.upsert(_random_points(5))
    if backend.shared:
        s.close()
        s = backend.make()
    s.open(_spec(backend))  # same spec: accepted, data kept
    assert s.count() == 5 and s.identity() == IDENTITY
    s.close()


_CHANGES: list[tuple[dict[str, Any], str]] = [
    ({"dense_dim": DIM + 1}, "dim"),
    ({"identity": {**IDENTITY, "sae_fingerprint": "other"}}, "identity.sae_fingerprint"),
    ({"identity": {**IDENTITY, "extra": 1, "avgdl": 13.0}}, "identity.avgdl"),
    ({"sparse_name": "terms"}, "sparse"),
]


def test_mismatch_refused_before_any_write(backend: Backend) -> None:
    s = backend.make()
    s.open(_spec(backend))
    s.upsert(_random_points(4))
    if backend.shared:
        s.close()
        s = backend.make()
    for change, named in _CHANGES:
        with pytest.raises(CollectionMismatchError) as err:
            s.open(_spec(backend, **change))
        assert named in str(err.value) and "recreate=True" in str(err.value)
        with pytest.raises(StoreError, match="not open"):
            s.upsert(_random_points(1, start=50))
    s.open(_spec(backend))  # still intact
    assert s.count() == 4 and s.identity() == IDENTITY
    s.open(_spec(backend, dense_dim=DIM + 1), recreate=True)  # the documented way out
    assert s.count() == 0 and s.identity() == IDENTITY
    s.close()


def test_mismatch_message_names_every_difference() -> None:
    from latentlex.store.base import check_record, make_record

    stored = make_record(CollectionSpec("c", DIM, IDENTITY), IDENTITY)
    wanted = CollectionSpec("c", DIM, {**IDENTITY, "extra": 1, "avgdl": 1.0, "backbone": "big"})
    with pytest.raises(CollectionMismatchError) as err:
        check_record("c", stored, wanted)
    msg = str(err.value)
    for key in ("identity.extra", "identity.avgdl", "identity.backbone", "'mini'", "'big'"):
        assert key in msg
    assert "sae_fingerprint" not in msg and "new collection name" in msg
    assert check_record("c", stored, CollectionSpec("c", DIM, IDENTITY)) == stored


def test_newer_format_version_refused(backend: Backend) -> None:
    s = backend.make()
    s.open(_spec(backend))
    if isinstance(s, EdgeStore):
        s.close()
        side = s.path / backend.collection / "latentlex.json"
        data = json.loads(side.read_text())
        data["latentlex"]["format_version"] = 99
        side.write_text(json.dumps(data))
        s = backend.make()
    else:
        info = s.client.get_collection(backend.collection)
        rec = dict(info.config.metadata["latentlex"], format_version=99)
        s.client.update_collection(backend.collection, metadata={"latentlex": rec})
    with pytest.raises(CollectionMismatchError, match="newer latentlex"):
        s.open(_spec(backend))
    s.close()


def test_foreign_collection_refused(tmp_path: Path) -> None:
    from qdrant_client import models

    s = ClientStore(location=":memory:")
    s.client.create_collection(
        "foreign",
        vectors_config={"dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)},
        sparse_vectors_config={"latent": models.SparseVectorParams()},
    )
    with pytest.raises(CollectionMismatchError, match="IDF"):
        s.open(CollectionSpec("foreign", DIM, IDENTITY))
    s.client.update_collection(
        "foreign",
        sparse_vectors_config={"latent": models.SparseVectorParams(modifier=models.Modifier.IDF)},
    )
    with pytest.raises(CollectionMismatchError, match="no latentlex record"):
        s.open(CollectionSpec("foreign", DIM, IDENTITY))


# ------------------------------------------------------------------------------------------------
# writes and reads
# ------------------------------------------------------------------------------------------------


def test_upsert_get_delete_count(store: Any) -> None:
    pts = _random_points(30)
    store.upsert(pts)
    assert store.count() == 30
    got = store.get(["d3", "missing", "d1"])
    assert [g.doc_id for g in got] == ["d3", "d1"]
    g, p = got[0], pts[3]
    assert g.text == p.text and g.metadata == p.metadata and g.hash == "h3"
    assert g.dense is not None and p.dense is not None
    np.testing.assert_allclose(g.dense, p.dense / np.linalg.norm(p.dense), atol=1e-6)
    assert g.sparse is not None and p.sparse is not None
    assert g.sparse.indices.tolist() == p.sparse.indices.tolist()
    np.testing.assert_allclose(g.sparse.values, p.sparse.values, rtol=1e-6)
    assert store.hashes(["d1", "d2", "zz"]) == {"d1": "h1", "d2": "h2"}

    # re-upsert: update in place, no duplicate; duplicates in one batch: last wins
    new = PointRecord("d1", pts[1].dense, pts[1].sparse, "changed", {"n": -1}, "h1b")
    store.upsert(
        [
            new,
            PointRecord("d2", pts[2].dense, None, "first", {}),
            PointRecord("d2", pts[2].dense, None, "last", {}),
        ]
    )
    assert store.count() == 30
    assert [r.text for r in store.get(["d1", "d2"])] == ["changed", "last"]
    assert store.get(["d2"])[0].sparse is None
    assert store.hashes(["d1"]) == {"d1": "h1b"}

    store.delete(["d1", "d2", "never-there"])
    assert store.count() == 28 and store.get(["d1", "d2"]) == []


def test_filters_count_and_delete_where(store: Any) -> None:
    store.upsert(_random_points(30))
    assert store.count({"tag": "a"}) == 15
    assert store.count({"tag": ["a", "b"]}) == 30
    assert store.count({"n": [1, 2, 3, 99]}) == 3
    assert store.count({"n": {"gte": 10, "lt": 20}}) == 10
    assert store.count({"score": 0.5}) == 1  # float equality becomes [v, v]
    assert store.count({"nested.k": 0}) == 10
    assert store.count({"tag": "a", "n": {"lte": 9}}) == 5
    assert store.count({"doc_id": ["d1", "d2", "nope"]}) == 2
    assert store.count({"doc_id": "d7"}) == 1
    assert store.count({"tag": []}) == 0
    with pytest.raises(ConfigError):
        store.count({"n": {"between": 3}})
    with pytest.raises(ConfigError):
        store.delete_where({})
    store.delete_where({"n": {"gte": 20}})
    assert store.count() == 20 and store.count({"n": {"gte": 20}}) == 0


def test_index_field_keeps_filters_exact(store: Any) -> None:
    store.upsert(_random_points(20))
    store.index_field("tag", "keyword")
    store.index_field("n", "integer")
    store.upsert(_random_points(10, start=20))  # written after the index exists
    assert store.count({"tag": "a"}) == 15 and store.count({"n": {"gte": 25}}) == 5
    hits = store.search(_query(k=30, filter={"tag": "b"}))
    assert hits and all(h.metadata["tag"] == "b" for h in hits)
    with pytest.raises(ConfigError):
        store.index_field("tag", "fulltext")


def test_native_filters_pass_through(backend: Backend) -> None:
    import qdrant_edge as qe
    from qdrant_client import models

    s = backend.make()
    s.open(_spec(backend))
    s.upsert(_random_points(10))
    client_filter = models.Filter(
        must=[models.FieldCondition(key="metadata.tag", match=models.MatchValue(value="a"))]
    )
    assert s.count(client_filter) == 5  # the embedded engine converts it
    edge_filter = qe.Filter(must=[qe.FieldCondition(key="metadata.tag", match=qe.MatchValue("a"))])
    if isinstance(s, EdgeStore):
        assert s.count(edge_filter) == 5
    else:
        with pytest.raises(ConfigError, match="only on the embedded engine"):
            s.count(edge_filter)
    s.close()


def test_metadata_not_json_names_the_key(store: Any) -> None:
    bad = _random_points(2)
    bad[1].metadata = {"ok": 1, "when": object()}
    with pytest.raises(TypeError, match="'when'"):
        store.upsert(bad)
    assert store.count() == 0  # nothing of the batch was written
    wrong = _random_points(1)
    wrong[0].dense = np.ones(DIM + 2)
    with pytest.raises(ConfigError, match="shape"):
        store.upsert(wrong)


# ------------------------------------------------------------------------------------------------
# search
# ------------------------------------------------------------------------------------------------


def test_exact_sparse_scores_match_bm25_idf_reference(store: Any) -> None:
    """Sparse leg score == Σ_j q_j · IDF_j · d_j with IDF = ln((N − n_j + 0.5)/(n_j + 0.5) + 1)."""
    import scipy.sparse as sp

    n_docs = 80
    pts = _random_points(n_docs, seed=7)
    store.upsert(pts)
    docs = [p.sparse for p in pts if p.sparse is not None]
    rows = np.concatenate([np.full(len(d), i) for i, d in enumerate(docs)])
    cols = np.concatenate([d.indices for d in docs]).astype(np.int64)
    vals = np.concatenate([d.values for d in docs]).astype(np.float64)
    mat = sp.csr_matrix((vals, (rows, cols)), shape=(n_docs, VOCAB))
    df = np.diff(mat.tocsc().indptr)
    idf = np.log((n_docs - df + 0.5) / (df + 0.5) + 1.0)
    for seed in range(3):
        req = _query(seed=seed, k=n_docs, mode="sparse")
        assert req.sparse is not None
        q = np.zeros(VOCAB)
        q[req.sparse.indices] = req.sparse.values.astype(np.float32)
        ref = mat @ (q * idf)
        hits = store.search(req)
        assert {h.doc_id for h in hits} == {f"d{i}" for i in np.flatnonzero(ref > 0)}
        for h in hits:
            assert h.score == pytest.approx(ref[int(h.doc_id[1:])], abs=1e-4, rel=1e-5)
            assert h.sparse_score == h.score and h.dense_score is None
        assert [h.sparse_rank for h in hits] == list(range(1, len(hits) + 1))


def test_edge_idf_after_delete_and_optimize(tmp_path: Path) -> None:
    """Edge counts deleted points in IDF until optimize() vacuums them; then it is exact."""
    s = EdgeStore(tmp_path)
    s.open(CollectionSpec("c", DIM, IDENTITY))
    s.upsert(_random_points(11))
    s.upsert([PointRecord("rare", np.ones(DIM), SparseVector.from_dict({VOCAB + 1: 1.0}), "", {})])
    req = SearchRequest(None, SparseVector.from_dict({VOCAB + 1: 1.0}), mode="sparse")

    def idf(n_docs: int) -> float:
        return math.log((n_docs - 1 + 0.5) / 1.5 + 1.0)

    assert s.search(req)[0].score == pytest.approx(idf(12), abs=1e-5)
    s.delete([f"d{i}" for i in range(6)])
    assert s.search(req)[0].score == pytest.approx(idf(12), abs=1e-5)  # deleted still counted
    assert s.optimize()
    assert s.search(req)[0].score == pytest.approx(idf(6), abs=1e-5)
    s.close()


def _expected_fused(req: SearchRequest, hits: list) -> dict[str, float]:
    """Recompute the fused score of each hit from its leg ranks/scores (Qdrant's formulas)."""
    wd, ws = req.weights
    out = {}
    for h in hits:
        if req.fusion is Fusion.RRF:
            out[h.doc_id] = sum(
                1.0 / (rank / w + req.rrf_k - 1.0)
                for rank, w in ((h.dense_rank, wd), (h.sparse_rank, ws))
                if rank is not None
            )
        elif req.fusion is Fusion.WEIGHTED:
            out[h.doc_id] = wd * (h.dense_score or 0.0) + ws * (h.sparse_score or 0.0)
    return out


def _expected_minmax(legs: list, weights: Any, hits: list) -> dict[str, float]:
    """Min-max fusion recomputed from the lone legs: Σ w (s − min) / (max − min), absent = 0."""
    out = {h.doc_id: 0.0 for h in hits}
    for leg, w in zip(legs, weights, strict=True):
        v = np.array([x.score for x in leg])
        lo, hi = v.min(), v.max()
        for x in leg:
            if x.doc_id in out:
                out[x.doc_id] += w * (x.score - lo) / (hi - lo)
    return out


def test_minmax_fusion_unit() -> None:
    """minmax_terms: the formula constants give 0 to the worst candidate and to absent docs."""
    from latentlex.store.base import minmax_terms

    legs = [[("a", 0.9), ("b", 0.5), ("c", 0.1)], [("b", 12.0)], []]
    terms = minmax_terms(legs, [2.0, 3.0, 1.0])
    (a0, b0, d0), (a1, b1, d1), (a2, b2, _) = terms
    assert a0 * 0.9 + b0 == pytest.approx(2.0) and a0 * 0.1 + b0 == pytest.approx(0.0)
    assert a0 * d0 + b0 == pytest.approx(0.0)  # absent from leg 0
    assert a1 * 12.0 + b1 == pytest.approx(3.0) and a1 * d1 + b1 == pytest.approx(0.0)
    assert (a2, b2) == (0.0, 0.0)


def test_fusion_in_engine(store: Any) -> None:
    """Each fusion's score, recomputed from the legs alone with Qdrant's formulas."""
    store.upsert(_random_points(60))
    dense = store.search(_query(seed=3, k=25, mode="dense"))
    sparse = store.search(_query(seed=3, k=25, mode="sparse"))
    d_rank = {h.doc_id: (i, h.score) for i, h in enumerate(dense, 1)}
    s_rank = {h.doc_id: (i, h.score) for i, h in enumerate(sparse, 1)}
    cases = [
        (Fusion.RRF, (1.0, 1.0)),
        (Fusion.RRF, (3.0, 1.0)),
        (Fusion.DBSF, (1.0, 1.0)),
        (Fusion.WEIGHTED, (0.3, 0.7)),
        (Fusion.MINMAX, (1.0, 1.0)),
        (Fusion.MINMAX, (0.5, 2.0)),
    ]
    for fusion, weights in cases:
        req = _query(seed=3, k=15, fusion=fusion, weights=weights, rrf_k=20, prefetch_limit=25)
        hits = store.search(req)
        assert len(hits) == 15
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        for h in hits:  # legs attached = positions in the lone legs
            assert h.dense_rank == d_rank.get(h.doc_id, (None, None))[0]
            assert h.sparse_rank == s_rank.get(h.doc_id, (None, None))[0]
            if h.dense_rank is not None:
                assert h.dense_score == pytest.approx(d_rank[h.doc_id][1])
            assert h.dense_rank is not None or h.sparse_rank is not None
        if fusion is Fusion.DBSF:

            def norm(leg: list) -> dict[str, float]:
                v = np.array([x.score for x in leg])
                mu, sd = v.mean(), v.std(ddof=1)
                return {x.doc_id: (x.score - (mu - 3 * sd)) / (6 * sd) for x in leg}

            nd, ns = norm(dense), norm(sparse)
            expected = {h.doc_id: nd.get(h.doc_id, 0.0) + ns.get(h.doc_id, 0.0) for h in hits}
        elif fusion is Fusion.MINMAX:
            expected = _expected_minmax([dense, sparse], weights, hits)
        else:
            expected = _expected_fused(req, hits)
        for h in hits:
            assert h.score == pytest.approx(expected[h.doc_id], rel=1e-4, abs=1e-5), (fusion, h)


def test_filters_apply_to_both_legs(store: Any) -> None:
    store.upsert(_random_points(40))
    flt = {"tag": "a", "n": {"lt": 30}}
    for mode in ("hybrid", "dense", "sparse"):
        hits = store.search(_query(k=40, mode=mode, filter=flt))
        assert hits and all(h.metadata["tag"] == "a" and h.metadata["n"] < 30 for h in hits)
    hybrid = store.search(_query(k=40, filter=flt))
    # each leg alone, filtered, returns only allowed docs; the ranks attached come from those
    assert {h.doc_id for h in hybrid if h.dense_rank} <= {f"d{i}" for i in range(0, 30, 2)}
    assert max(h.dense_rank or 0 for h in hybrid) == 15  # 15 docs pass the filter


def _assert_same_ranking(a: list, b: list, *, legs: bool = True) -> None:
    """Same scores in the same order; same documents, except that tied scores may swap."""
    assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-6)
    last = a[-1].score if a else 0.0
    key = (lambda h: (h.doc_id, h.dense_rank, h.sparse_rank)) if legs else (lambda h: h.doc_id)
    assert {key(h) for h in a if h.score > last + 1e-9} == {
        key(h) for h in b if h.score > last + 1e-9
    }


def test_modes_and_without_legs(store: Any) -> None:
    store.upsert(_random_points(20))
    dense = store.search(_query(k=5, mode="dense"))
    assert [h.dense_rank for h in dense] == [1, 2, 3, 4, 5]
    assert all(h.sparse_rank is None and h.dense_score == h.score for h in dense)
    assert all(-1.0 <= h.score <= 1.0 for h in dense)
    bare = store.search(_query(k=5, with_legs=False))
    assert all(h.dense_rank is None and h.sparse_rank is None for h in bare)
    _assert_same_ranking(bare, store.search(_query(k=5)), legs=False)


def test_search_batch_matches_single_searches(store: Any) -> None:
    store.upsert(_random_points(30))
    reqs = [
        _query(seed=s, k=5, fusion=f) for s, f in zip(range(4), [*Fusion, Fusion.RRF], strict=False)
    ]
    reqs.append(_query(seed=9, k=3, mode="sparse"))
    batch = store.search_batch(reqs)
    assert len(batch) == len(reqs)
    for req, hits in zip(reqs, batch, strict=True):
        _assert_same_ranking(hits, store.search(req))
    assert store.search_batch([]) == []


# ------------------------------------------------------------------------------------------------
# async
# ------------------------------------------------------------------------------------------------


def test_async_twins(backend: Backend) -> None:
    async def run() -> None:
        s = backend.make()
        await s.aopen(_spec(backend))
        await s.aupsert(_random_points(12))
        assert await s.acount() == 12
        assert await s.acount({"tag": "b"}) == 6
        assert [r.doc_id for r in await s.aget(["d2", "d1"])] == ["d2", "d1"]
        assert await s.ahashes(["d4"]) == {"d4": "h4"}
        hits, batch = await asyncio.gather(
            s.asearch(_query(k=4)), s.asearch_batch([_query(k=4)] * 2)
        )
        assert (
            [h.doc_id for h in hits] == [h.doc_id for h in batch[0]] == [h.doc_id for h in batch[1]]
        )
        await s.adelete(["d2"])
        await s.adelete_where({"n": {"gte": 10}})
        assert await s.acount() == 9
        assert await s.aidentity() == IDENTITY
        await s.aclose()

    asyncio.run(run())


def test_async_client_store_matches_sync(tmp_path: Path) -> None:
    async def run() -> list:
        s = AsyncClientStore(location=":memory:")
        await s.open(CollectionSpec("c", DIM, IDENTITY))
        await s.upsert(_random_points(25))
        assert await s.count() == 25 and await s.count({"tag": "a"}) == 13
        assert (await s.identity()) == IDENTITY
        assert [r.text for r in await s.get(["d5"])] == ["text 5"]
        assert await s.hashes(["d5", "zz"]) == {"d5": "h5"}
        hits = await s.asearch(_query(k=6, fusion=Fusion.DBSF))
        await s.delete(["d1"])
        await s.delete_where({"tag": "b"})
        assert await s.acount() == 13  # 25 - d1 - the 11 other odd ones
        with pytest.raises(CollectionMismatchError):
            await s.open(CollectionSpec("c", DIM + 1, IDENTITY))
        await s.close()
        return hits

    hits = asyncio.run(run())
    sync = ClientStore(location=":memory:")
    sync.open(CollectionSpec("c", DIM, IDENTITY))
    sync.upsert(_random_points(25))
    expect = sync.search(_query(k=6, fusion=Fusion.DBSF))
    assert [(h.doc_id, h.dense_rank, h.sparse_rank) for h in hits] == [
        (h.doc_id, h.dense_rank, h.sparse_rank) for h in expect
    ]


# ------------------------------------------------------------------------------------------------
# faults
# ------------------------------------------------------------------------------------------------


def test_read_only(backend: Backend) -> None:
    ro = backend.make(read_only=True)
    with pytest.raises(StoreError, match="not found"):
        ro.open(_spec(backend))
    ro.close()
    if not backend.shared:
        return
    s = backend.make()
    s.open(_spec(backend))
    s.upsert(_random_points(3))
    s.close()
    ro = backend.make(read_only=True)
    ro.open(_spec(backend))
    assert ro.count() == 3 and len(ro.search(_query(k=2))) == 2
    with pytest.raises(StoreError, match="read-only"):
        ro.upsert(_random_points(1))
    with pytest.raises(StoreError, match="read-only"):
        ro.delete(["d0"])
    ro.close()


def test_edge_path_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    s = EdgeStore(blocker / "sub")
    with pytest.raises(StoreError, match="cannot create"):
        s.open(CollectionSpec("c", DIM, IDENTITY))


def test_client_path_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(StoreError):
        ClientStore(path=str(blocker / "sub"))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_url_is_one_clear_error() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    s = ClientStore(url, timeout=1, check_compatibility=False)
    with pytest.raises(StoreError, match="cannot reach Qdrant") as err:
        s.open(CollectionSpec("c", DIM, IDENTITY))
    assert url in str(err.value)

    async def run() -> None:
        a = AsyncClientStore(url, timeout=1, check_compatibility=False)
        with pytest.raises(StoreError, match="cannot reach Qdrant"):
            await a.open(CollectionSpec("c", DIM, IDENTITY))

    asyncio.run(run())


def test_not_open_and_closed_are_store_errors(tmp_path: Path) -> None:
    s = EdgeStore(tmp_path)
    with pytest.raises(StoreError, match="not open"):
        s.count()
    s.open(CollectionSpec("c", DIM, IDENTITY))
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="not open"):
        s.search(_query())


_SECOND_OPENER = """
import sys
sys.path.insert(0, {core!r})
from latentlex.errors import StoreError
from latentlex.store import CollectionSpec, {cls}
try:
    s = {ctor}
    s.open(CollectionSpec("c", {dim}, {ident!r}))
except StoreError as e:
    print("STORE_ERROR:", e)
else:
    print("OPENED")
"""


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kind", ["edge", "path"])
def test_second_process_gets_clear_error(tmp_path: Path, kind: str) -> None:
    if kind == "edge":
        s: Any = EdgeStore(tmp_path)
        ctor, cls = f"EdgeStore({str(tmp_path)!r})", "EdgeStore"
    else:
        s = ClientStore(path=str(tmp_path))
        ctor, cls = f"ClientStore(path={str(tmp_path)!r})", "ClientStore"
    s.open(CollectionSpec("c", DIM, IDENTITY))
    code = _SECOND_OPENER.format(core=CORE, cls=cls, ctor=ctor, dim=DIM, ident=IDENTITY)
    out = _run_python(code)
    assert "STORE_ERROR:" in out.stdout, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    if kind == "edge":
        assert "already open" in out.stdout
    s.close()
    if kind == "edge":  # the lock goes with the store
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert "OPENED" in out.stdout, out.stdout + out.stderr


def test_edge_second_store_same_process_shares(tmp_path: Path) -> None:
    # a notebook cell run twice opens the same folder again while the first store is still open
    a, b = EdgeStore(tmp_path), EdgeStore(tmp_path)
    a.open(CollectionSpec("c", DIM, IDENTITY))
    a.upsert(_random_points(5))
    b.open(CollectionSpec("c", DIM, IDENTITY))  # shares the open shard instead of raising
    assert b.count() == 5
    b.upsert(_random_points(3, start=5))
    assert a.count() == 8
    with pytest.raises(CollectionMismatchError):  # still validated against what is stored
        EdgeStore(tmp_path).open(CollectionSpec("c", DIM, {**IDENTITY, "avgdl": 1.0}))
    a.close()
    assert b.count() == 8  # the other store keeps it open
    c = EdgeStore(tmp_path)
    c.open(CollectionSpec("c", DIM, IDENTITY), recreate=True)  # drops it for every store
    assert b.count() == 0 and c.count() == 0
    b.close()
    c.close()
    code = _SECOND_OPENER.format(
        core=CORE, cls="EdgeStore", ctor=f"EdgeStore({str(tmp_path)!r})", dim=DIM, ident=IDENTITY
    )
    out = _run_python(code)  # the last close released the lock for other processes
    assert "OPENED" in out.stdout, out.stdout + out.stderr


def test_edge_concurrent_searches_during_upserts(tmp_path: Path) -> None:
    s = EdgeStore(tmp_path)
    s.open(CollectionSpec("c", DIM, IDENTITY))
    s.upsert(_random_points(100))
    errors: list[BaseException] = []
    done = threading.Event()
    searches = [0]

    def reader(seed: int) -> None:
        while not done.is_set():
            try:
                hits = s.search(_query(seed=seed, k=5))
                assert len(hits) == 5
                searches[0] += 1
            except BaseException as e:  # collected and re-raised in the test thread
                errors.append(e)
                return

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for start in range(100, 400, 50):
        s.upsert(_random_points(50, seed=start, start=start))
    done.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert searches[0] > 0 and s.count() == 400
    s.close()


def test_sidecar_and_layout(tmp_path: Path) -> None:
    s = EdgeStore(tmp_path, collection="default-name")
    s.open(CollectionSpec("", DIM, IDENTITY))  # empty spec name: the store's collection
    assert s.collection == "default-name"
    side = json.loads((tmp_path / "default-name" / "latentlex.json").read_text())
    assert side["latentlex"]["identity"] == IDENTITY and side["latentlex"]["dense_dim"] == DIM
    assert (tmp_path / "default-name" / "shard" / "edge_config.json").is_file()
    s.close()
    with pytest.raises(ConfigError):
        EdgeStore(tmp_path).open(CollectionSpec("../escape", DIM, IDENTITY))
    assert math.isfinite(side["latentlex"]["identity"]["avgdl"])


# ------------------------------------------------------------------------------------------------
# the lexical (third) leg
# ------------------------------------------------------------------------------------------------

LEX = "bm25"
LEX_BASE = 3_000_000_000  # lexical indices are token hashes anywhere in u32
LEX_VOCAB = 30


def _lex_spec(backend: Backend, **kw: Any) -> CollectionSpec:
    return _spec(backend, lexical_name=LEX, **kw)


def _lex_vec(rng: np.random.Generator, lo: int = 2, hi: int = 9) -> SparseVector:
    nnz = int(rng.integers(lo, hi))
    idx = LEX_BASE + rng.choice(LEX_VOCAB, nnz, replace=False)
    return SparseVector(idx, rng.uniform(0.2, 2.0, nnz))


def _lex_points(n: int, seed: int = 0, start: int = 0) -> list[PointRecord]:
    rng = np.random.default_rng(seed + 1000)
    pts = _random_points(n, seed=seed, start=start)
    for p in pts:
        p.lexical = _lex_vec(rng)
    return pts


def _lex_query(seed: int = 1, **kw: Any) -> SearchRequest:
    rng = np.random.default_rng(seed + 2000)
    base = _query(seed)
    return SearchRequest(base.dense, base.sparse, lexical=_lex_vec(rng, 3, 7), **kw)


@pytest.fixture
def lex_store(backend: Backend) -> Iterator[Any]:
    s = backend.make()
    s.open(_lex_spec(backend))
    yield s
    s.close()


def test_lexical_search_request_validation() -> None:
    lex = SparseVector.from_dict({5: 1.0})
    with pytest.raises(ConfigError, match="third"):
        _query(weights=(1.0, 1.0, 2.0))
    with pytest.raises(ConfigError, match="lexical"):
        SearchRequest(None, None, mode="lexical")
    with pytest.raises(ConfigError, match="weights"):
        _query(weights=(1.0,))
    with pytest.raises(ConfigError, match="weights"):
        _query(weights=(1.0, 1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="DBSF"):
        _lex_query(fusion=Fusion.DBSF, weights=(1.0, 1.0, 2.0))
    with pytest.raises(ConfigError, match="SparseVector"):
        _query(lexical={5: 1.0})  # type: ignore[arg-type]
    only = SearchRequest(None, None, mode="lexical", lexical=lex, weights=(1, 2, 3))
    assert only.weights == (1.0, 2.0, 3.0) and not only.three_legs
    assert _lex_query().three_legs and _lex_query().leg_weights == (1.0, 1.0, 1.0)
    assert _lex_query(weights=(2.0, 3.0)).leg_weights == (2.0, 3.0, 1.0)
    assert _lex_query(fusion=Fusion.DBSF).leg_weights == (1.0, 1.0, 1.0)
    assert _query(weights=(2.0, 3.0)).leg_weights == (2.0, 3.0)
    assert _lex_query(mode="dense").leg_weights == (1.0, 1.0)
    with pytest.raises(ConfigError, match="lexical_name"):
        CollectionSpec("c", DIM, IDENTITY, lexical_name="latent")
    with pytest.raises(ConfigError, match="lexical_name"):
        CollectionSpec("c", DIM, IDENTITY, lexical_name="")


def test_lexical_schema_created_and_reopened(backend: Backend) -> None:
    s = backend.make()
    s.open(_lex_spec(backend))
    pts = _lex_points(12)
    pts[3].lexical = None  # a document without lexical tokens (e.g. only stop words)
    pts[4].lexical = SparseVector.empty()
    s.upsert(pts)
    if backend.shared:
        s.close()
        s = backend.make()
    s.open(_lex_spec(backend))  # same spec: accepted, data kept
    assert s.count() == 12 and s.identity() == IDENTITY
    got = s.get(["d0", "d3", "d4"])
    assert got[0].lexical is not None and pts[0].lexical is not None
    assert got[0].lexical.indices.tolist() == pts[0].lexical.indices.tolist()
    assert got[0].lexical.indices.dtype == np.uint32
    np.testing.assert_allclose(got[0].lexical.values, pts[0].lexical.values, rtol=1e-6)
    assert got[1].lexical is None and got[2].lexical is None
    if isinstance(s, EdgeStore):
        s.close()
        side = json.loads((s.path / backend.collection / "latentlex.json").read_text())
        assert side["latentlex"]["lexical_name"] == LEX
        cfg = json.loads((s.path / backend.collection / "shard" / "edge_config.json").read_text())
        assert str(cfg["sparse_vectors"][LEX]["modifier"]).lower() == "idf"
    else:
        from qdrant_client import models

        info = s.client.get_collection(backend.collection)
        assert info.config.params.sparse_vectors[LEX].modifier == models.Modifier.IDF
        assert info.config.metadata["latentlex"]["lexical_name"] == LEX
        s.close()


def test_two_leg_record_unchanged() -> None:
    from latentlex.store.base import make_record

    assert "lexical_name" not in make_record(CollectionSpec("c", DIM, IDENTITY), IDENTITY)
    rec = make_record(CollectionSpec("c", DIM, IDENTITY, lexical_name=LEX), IDENTITY)
    assert rec["lexical_name"] == LEX


def test_lexical_mismatch_refused_both_ways(backend: Backend) -> None:
    s = backend.make()
    s.open(_spec(backend))  # built without the lexical leg
    s.upsert(_random_points(4))
    if backend.shared:
        s.close()
        s = backend.make()
    with pytest.raises(CollectionMismatchError) as err:
        s.open(_lex_spec(backend))
    assert "lexical_name" in str(err.value) and "recreate=True" in str(err.value)
    with pytest.raises(StoreError, match="not open"):
        s.upsert(_lex_points(1))
    s.open(_spec(backend))  # still intact
    assert s.count() == 4
    s.open(_lex_spec(backend), recreate=True)  # rebuilt with the lexical leg
    s.upsert(_lex_points(3))
    if backend.shared:
        s.close()
        s = backend.make()
    with pytest.raises(CollectionMismatchError) as err:
        s.open(_spec(backend))  # the reverse: built with it, opened without
    msg = str(err.value)
    assert "lexical_name" in msg and "'bm25'" in msg and "recreate=True" in msg
    with pytest.raises(CollectionMismatchError, match="lexical_name"):
        s.open(_spec(backend, lexical_name="words"))
    s.open(_lex_spec(backend))
    assert s.count() == 3
    s.close()


def test_lexical_record_and_schema_messages() -> None:
    from latentlex.store.base import check_record, make_record, schema_mismatch

    two = make_record(CollectionSpec("c", DIM, IDENTITY), IDENTITY)
    with pytest.raises(CollectionMismatchError, match="without the lexical leg"):
        check_record("c", two, CollectionSpec("c", DIM, IDENTITY, lexical_name=LEX))
    three = make_record(CollectionSpec("c", DIM, IDENTITY, lexical_name=LEX), IDENTITY)
    with pytest.raises(CollectionMismatchError, match="with a lexical leg"):
        check_record("c", three, CollectionSpec("c", DIM, IDENTITY))
    dense = {"dense": (DIM, "cosine")}
    spec = CollectionSpec("c", DIM, IDENTITY, lexical_name=LEX)
    with pytest.raises(CollectionMismatchError, match="lexical_name"):
        schema_mismatch("c", spec, dense=dense, sparse={"latent": True})
    with pytest.raises(CollectionMismatchError, match="'bm25' lacks modifier=IDF"):
        schema_mismatch("c", spec, dense=dense, sparse={"latent": True, LEX: False})
    schema_mismatch("c", spec, dense=dense, sparse={"latent": True, LEX: True})


def test_lexical_query_on_two_leg_collection_refused(store: Any) -> None:
    store.upsert(_random_points(5))
    with pytest.raises(ConfigError, match="lexical leg"):
        store.search(_lex_query())
    # a lexical vector given to a two-leg collection is not written
    pts = _lex_points(2, start=10)
    store.upsert(pts)
    assert store.get(["d10"])[0].lexical is None


def test_lexical_leg_scores_match_bm25_reference(backend: Backend) -> None:
    """The lexical leg alone = Σ_t q_t · IDF_t · d_t with IDF = ln((N - n + 0.5)/(n + 0.5) + 1),
    over the vectors LexicalEncoder made from real text."""
    from latentlex.lexical import LexicalConfig, LexicalEncoder, measure_avg_len

    rng = np.random.default_rng(5)
    words = ["otter", "quokka", "glacier", "bassoon", "slide", "rule", "marsupial", "island"]
    words += ["snow", "reed", "woodwind", "engineer", "analog", "computer", "perth", "melt"]
    texts = [" ".join(rng.choice(words, int(rng.integers(2, 12)))) for _ in range(60)]
    enc = LexicalEncoder(LexicalConfig(avg_len=measure_avg_len(texts)))
    docs = enc.encode_documents(texts)
    s = backend.make()
    s.open(_lex_spec(backend))
    base = _random_points(len(texts))
    for p, d in zip(base, docs, strict=True):
        p.lexical = d
    s.upsert(base)
    vocab = sorted({int(i) for d in docs for i in d.indices})
    col = {t: j for j, t in enumerate(vocab)}
    mat = np.zeros((len(docs), len(vocab)))
    for i, d in enumerate(docs):
        for t, v in zip(d.indices.tolist(), d.values.tolist(), strict=True):
            mat[i, col[t]] = v
    df = (mat > 0).sum(axis=0)
    idf = np.log((len(docs) - df + 0.5) / (df + 0.5) + 1.0)
    for query in ["otter island", "glacier snow melt melting", "the bassoon reed", "perth"]:
        q = enc.encode_query(query)
        qv = np.zeros(len(vocab))
        for t in q.indices.tolist():
            if t in col:
                qv[col[t]] = 1.0
        ref = mat @ (qv * idf)
        hits = s.search(SearchRequest(None, None, k=len(texts), mode="lexical", lexical=q))
        assert {h.doc_id for h in hits} == {f"d{i}" for i in np.flatnonzero(ref > 0)}
        for rank, h in enumerate(hits, 1):
            assert h.score == pytest.approx(ref[int(h.doc_id[1:])], abs=1e-4)
            assert h.lexical_score == h.score and h.lexical_rank == rank
            assert h.dense_score is None and h.sparse_score is None
    # an empty lexical query (only stop words) finds nothing alone, and leaves hybrid working
    empty = enc.encode_query("the of and")
    assert len(empty) == 0
    assert s.search(SearchRequest(None, None, mode="lexical", lexical=empty)) == []
    base_q = _query(k=5)
    hyb = s.search(SearchRequest(base_q.dense, base_q.sparse, k=5, lexical=empty))
    assert len(hyb) == 5 and all(h.lexical_rank is None for h in hyb)
    s.close()


def _expected_fused3(req: SearchRequest, hits: list) -> dict[str, float]:
    """The three-leg fused score of each hit from its leg ranks/scores (Qdrant's formulas)."""
    w = req.leg_weights
    out = {}
    for h in hits:
        legs = (
            (h.dense_rank, h.dense_score, w[0]),
            (h.sparse_rank, h.sparse_score, w[1]),
            (h.lexical_rank, h.lexical_score, w[2]),
        )
        if req.fusion is Fusion.RRF:
            out[h.doc_id] = sum(
                1.0 / (rank / wt + req.rrf_k - 1.0) for rank, _, wt in legs if rank is not None
            )
        elif req.fusion is Fusion.WEIGHTED:
            out[h.doc_id] = sum(wt * (score or 0.0) for _, score, wt in legs)
    return out


def test_three_leg_fusion_in_engine(lex_store: Any) -> None:
    """Each fusion of three prefetches, recomputed from the three legs' own result lists."""
    store = lex_store
    store.upsert(_lex_points(60))
    lone = {
        mode: store.search(_lex_query(seed=3, k=25, mode=mode))
        for mode in ("dense", "sparse", "lexical")
    }
    ranks = {m: {h.doc_id: (i, h.score) for i, h in enumerate(v, 1)} for m, v in lone.items()}
    assert all(len(v) == 25 for v in lone.values())
    cases = [
        (Fusion.RRF, (1.0, 1.0)),
        (Fusion.RRF, (1.0, 1.0, 1.0)),
        (Fusion.RRF, (3.0, 1.0)),  # lexical weight 1.0
        (Fusion.RRF, (1.0, 0.5, 4.0)),
        (Fusion.DBSF, (1.0, 1.0, 1.0)),
        (Fusion.WEIGHTED, (0.3, 0.7)),
        (Fusion.WEIGHTED, (0.3, 0.7, 0.5)),
        (Fusion.MINMAX, (1.0, 1.0, 1.0)),
        (Fusion.MINMAX, (0.5, 1.0, 2.0)),
        (Fusion.MINMAX, (1.0, 1.0)),  # lexical weight 1.0
    ]
    for fusion, weights in cases:
        req = _lex_query(seed=3, k=20, fusion=fusion, weights=weights, rrf_k=20, prefetch_limit=25)
        hits = store.search(req)
        assert len(hits) == 20
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        for h in hits:  # legs attached = positions in the lone legs
            assert h.dense_rank == ranks["dense"].get(h.doc_id, (None, None))[0]
            assert h.sparse_rank == ranks["sparse"].get(h.doc_id, (None, None))[0]
            assert h.lexical_rank == ranks["lexical"].get(h.doc_id, (None, None))[0]
            if h.lexical_rank is not None:
                assert h.lexical_score == pytest.approx(ranks["lexical"][h.doc_id][1])
        assert any(h.lexical_rank is not None for h in hits)
        if fusion is Fusion.DBSF:

            def norm(leg: list) -> dict[str, float]:
                v = np.array([x.score for x in leg])
                mu, sd = v.mean(), v.std(ddof=1)
                return {x.doc_id: (x.score - (mu - 3 * sd)) / (6 * sd) for x in leg}

            normed = [norm(leg) for leg in lone.values()]
            expected = {h.doc_id: sum(n.get(h.doc_id, 0.0) for n in normed) for h in hits}
        elif fusion is Fusion.MINMAX:
            expected = _expected_minmax(list(lone.values()), req.leg_weights, hits)
        else:
            expected = _expected_fused3(req, hits)
        for h in hits:
            assert h.score == pytest.approx(expected[h.doc_id], rel=1e-4, abs=1e-5), (fusion, h)
    # the lexical leg changes the fusion: two legs differ from three
    two = store.search(_query(seed=3, k=20))
    three = store.search(_lex_query(seed=3, k=20))
    assert [h.score for h in two] != pytest.approx([h.score for h in three])
    assert all(h.lexical_rank is None for h in two)


def test_filters_apply_to_lexical_leg(lex_store: Any) -> None:
    store = lex_store
    store.upsert(_lex_points(40))
    flt = {"tag": "a", "n": {"lt": 30}}
    allowed = {f"d{i}" for i in range(0, 30, 2)}
    for mode in ("hybrid", "lexical"):
        hits = store.search(_lex_query(k=40, mode=mode, filter=flt))
        assert hits and {h.doc_id for h in hits} <= allowed
    hybrid = store.search(_lex_query(k=40, filter=flt))
    lex_ranked = [h for h in hybrid if h.lexical_rank]
    assert lex_ranked and {h.doc_id for h in lex_ranked} <= allowed
    alone = store.search(_lex_query(k=40, mode="lexical", filter=flt))
    assert max(h.lexical_rank or 0 for h in hybrid) == len(alone) <= 15


def test_lexical_delete_and_update_reach_the_leg(lex_store: Any) -> None:
    store = lex_store
    store.upsert(_lex_points(10))
    rare = SparseVector.from_dict({LEX_BASE + LEX_VOCAB + 7: 1.0})
    pts = _lex_points(1, start=50)
    pts[0].lexical = rare
    store.upsert(pts)
    req = SearchRequest(None, None, mode="lexical", lexical=rare)
    assert [h.doc_id for h in store.search(req)] == ["d50"]
    hyb = store.search(_lex_query(k=11, weights=(1.0, 1.0, 1.0)))
    assert len(hyb) == 11
    store.upsert([PointRecord("d50", pts[0].dense, pts[0].sparse, "x", {}, lexical=None)])
    assert store.search(req) == []  # the update dropped its lexical vector
    store.upsert(pts)
    store.delete(["d50"])
    assert store.search(req) == []
    assert all(h.doc_id != "d50" for h in store.search(_lex_query(k=20)))


def test_lexical_batch_and_without_legs(lex_store: Any) -> None:
    store = lex_store
    store.upsert(_lex_points(30))
    reqs = [
        _lex_query(seed=1, k=5),
        _query(seed=2, k=5),  # two legs beside three in one batch
        _lex_query(seed=3, k=4, mode="lexical"),
        _lex_query(seed=4, k=5, fusion=Fusion.WEIGHTED, weights=(1.0, 0.2, 0.5)),
        _lex_query(seed=5, k=5, with_legs=False),
    ]
    batch = store.search_batch(reqs)
    for req, hits in zip(reqs, batch, strict=True):
        _assert_same_ranking(hits, store.search(req))
    assert all(h.lexical_rank is None for h in batch[1])
    assert all(h.lexical_rank is None and h.dense_rank is None for h in batch[4])
    assert [h.lexical_rank for h in batch[2]] == [1, 2, 3, 4]


def test_lexical_async(backend: Backend) -> None:
    async def run() -> tuple[list, list]:
        s = backend.make()
        await s.aopen(_lex_spec(backend))
        await s.aupsert(_lex_points(20))
        got = await s.aget(["d1"])
        hits = await s.asearch(_lex_query(k=5, weights=(1.0, 2.0, 3.0)))
        lexical = await s.asearch(_lex_query(k=5, mode="lexical"))
        await s.aclose()
        return got, hits + lexical

    got, hits = asyncio.run(run())
    assert got[0].lexical is not None
    assert any(h.lexical_rank is not None for h in hits[:5])
    assert [h.lexical_rank for h in hits[5:]] == list(range(1, 6))


def test_async_client_store_three_legs_match_sync() -> None:
    spec = CollectionSpec("c", DIM, IDENTITY, lexical_name=LEX)
    reqs = [
        _lex_query(k=6),
        _lex_query(k=6, fusion=Fusion.DBSF),
        _lex_query(k=6, mode="lexical"),
        _lex_query(k=6, fusion=Fusion.MINMAX, weights=(0.5, 0.5, 1.0)),  # two round trips
    ]

    async def run() -> list:
        s = AsyncClientStore(location=":memory:")
        await s.open(spec)
        await s.upsert(_lex_points(25))
        assert (await s.get(["d2"]))[0].lexical is not None
        out = await s.search_batch(reqs)
        await s.close()
        return out

    got = asyncio.run(run())
    sync = ClientStore(location=":memory:")
    sync.open(spec)
    sync.upsert(_lex_points(25))
    for hits, expect in zip(got, sync.search_batch(reqs), strict=True):
        assert [(h.doc_id, h.dense_rank, h.sparse_rank, h.lexical_rank) for h in hits] == [
            (h.doc_id, h.dense_rank, h.sparse_rank, h.lexical_rank) for h in expect
        ]
        assert [h.score for h in hits] == pytest.approx([h.score for h in expect], abs=1e-6)
    assert got[3] and all(h.dense_rank or h.sparse_rank or h.lexical_rank for h in got[3])
