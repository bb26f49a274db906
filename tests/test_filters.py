"""The complete filter language on both engines: neutral mappings, native filters, limits."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from latentlex.errors import ConfigError
from latentlex.sparse import SparseVector
from latentlex.store import ClientStore, CollectionSpec, EdgeStore, PointRecord, SearchRequest
from latentlex.store.filters import MAX_CONDITIONS, MAX_DEPTH, check, to_edge, to_qdrant

CORE = str(Path(__file__).resolve().parents[1] / "core")
N = 24


def _meta(i: int) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "n": i,
        "tag": "ab"[i % 2],
        "score": i / 4,
        "tags": [t for t in ("x", "y", "z") if i % (2 + "xyz".index(t)) == 0],
        "author": {"name": f"p{i % 3}"},
        "day": f"2024-01-{i + 1:02d}T00:00:00Z",
    }
    if i % 3 == 0:
        meta["lang"] = "en"
    elif i % 3 == 1:
        meta["lang"] = "fr"
    if i % 5 == 0:
        meta["note"] = None
    return meta


META = {f"d{i}": _meta(i) for i in range(N)}


def _points() -> list[PointRecord]:
    rng = np.random.default_rng(0)
    return [
        PointRecord(
            doc_id=doc_id,
            dense=rng.normal(size=4).astype(np.float32),
            sparse=SparseVector.from_dict({int(rng.integers(0, 9)): 1.0}),
            text=doc_id,
            metadata=meta,
        )
        for doc_id, meta in META.items()
    ]


@pytest.fixture(params=["edge", "memory"], scope="module")
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    s: Any = (
        EdgeStore(tmp_path_factory.mktemp("flt") / "edge")
        if request.param == "edge"
        else ClientStore(location=":memory:")
    )
    s.open(CollectionSpec("flt", dense_dim=4, identity={"format_version": 1}))
    s.upsert(_points())
    yield s
    s.close()


def _where(pred: Callable[[dict[str, Any]], bool]) -> set[str]:
    return {doc_id for doc_id, meta in META.items() if pred(meta)}


def _empty(meta: dict[str, Any], key: str) -> bool:
    return meta.get(key) in (None, [])


#: (neutral filter, the documents it must match, computed in Python from the metadata)
CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"tag": "a"}, _where(lambda m: m["tag"] == "a")),
    ({"tag": {"eq": "b"}}, _where(lambda m: m["tag"] == "b")),
    ({"lang": {"ne": "en"}}, _where(lambda m: m.get("lang") != "en")),  # missing key matches
    (
        {"lang": {"$ne": "en"}, "tag": "a"},
        _where(lambda m: m.get("lang") != "en" and m["tag"] == "a"),
    ),
    ({"n": [1, 2, 3, 99]}, {"d1", "d2", "d3"}),
    ({"n": {"in": [4, 5]}}, {"d4", "d5"}),
    ({"lang": {"nin": ["en", "fr"]}}, _where(lambda m: m.get("lang") not in ("en", "fr"))),
    ({"n": {"gte": 10, "lt": 14}}, {"d10", "d11", "d12", "d13"}),
    ({"n": {"$gt": 20}}, {"d21", "d22", "d23"}),
    ({"score": 1.25}, {"d5"}),  # float equality: the closed range [v, v]
    ({"score": {"lte": 0.5}}, {"d0", "d1", "d2"}),
    ({"day": {"gte": "2024-01-20T00:00:00Z"}}, _where(lambda m: m["day"] >= "2024-01-20")),
    ({"tags": {"contains": "z"}}, _where(lambda m: "z" in m["tags"])),
    ({"tags": {"is_empty": True}}, _where(lambda m: _empty(m, "tags"))),
    ({"lang": {"is_empty": True}}, _where(lambda m: _empty(m, "lang"))),
    ({"note": {"is_empty": True}}, _where(lambda m: _empty(m, "note"))),  # null counts as empty
    ({"lang": {"is_empty": False}}, _where(lambda m: not _empty(m, "lang"))),
    ({"author.name": "p1"}, _where(lambda m: m["author"]["name"] == "p1")),
    ({"$or": [{"n": 1}, {"n": 2}, {"tag": "a", "n": {"lt": 6}}]}, {"d0", "d1", "d2", "d4"}),
    ({"$not": {"tag": "a"}}, _where(lambda m: m["tag"] != "a")),
    (
        {"$not": {"tag": "a", "n": {"lt": 10}}},
        _where(lambda m: not (m["tag"] == "a" and m["n"] < 10)),
    ),
    (
        {
            "$and": [
                {"$or": [{"lang": "en"}, {"lang": "fr"}]},
                {"$not": {"tags": {"contains": "x"}}},
            ]
        },
        _where(lambda m: m.get("lang") in ("en", "fr") and "x" not in m["tags"]),
    ),
    (
        {"$or": [{"$and": [{"tag": "b"}, {"n": {"gt": 15}}]}, {"$not": {"n": {"gte": 2}}}]},
        _where(lambda m: (m["tag"] == "b" and m["n"] > 15) or m["n"] < 2),
    ),
    ({"doc_id": ["d1", "d2", "nope"]}, {"d1", "d2"}),
    ({"doc_id": {"nin": ["d0", "d1"]}, "n": {"lt": 4}}, {"d2", "d3"}),
    ({"doc_id": {"ne": "d3"}, "n": {"lt": 4}}, {"d0", "d1", "d2"}),
    ({"tag": []}, set()),
]


@pytest.mark.parametrize(("flt", "want"), CASES, ids=[str(c[0]) for c in CASES])
def test_neutral_filters_on_both_engines(store: Any, flt: dict[str, Any], want: set[str]) -> None:
    assert store.count(flt) == len(want)
    hits = store.search(
        SearchRequest(np.ones(4, np.float32), SparseVector.from_dict({1: 1.0}), k=N, filter=flt)
    )
    # the dense leg returns every allowed point: the fused result is exactly the filter's set
    assert {h.doc_id for h in hits} == want


def test_native_client_filter_is_converted_for_the_embedded_engine(store: Any) -> None:
    from qdrant_client import models as m

    native = m.Filter(
        must=[m.FieldCondition(key="metadata.tag", match=m.MatchValue(value="a"))],
        should=[
            m.FieldCondition(key="metadata.n", range=m.Range(lt=14)),
            m.Filter(must_not=[m.FieldCondition(key="metadata.tags", match=m.MatchAny(any=["x"]))]),
        ],
        must_not=[
            m.IsEmptyCondition(is_empty=m.PayloadField(key="metadata.lang")),
            m.HasIdCondition(has_id=[to_qdrant({"doc_id": "d0"}).must[0].has_id[0]]),
            m.FieldCondition(key="metadata.lang", match=m.MatchExcept(**{"except": ["en"]})),
        ],
    )
    want = _where(
        lambda meta: (
            meta["tag"] == "a"
            and (meta["n"] < 14 or "x" not in meta["tags"])
            and not _empty(meta, "lang")
            and meta["n"] != 0
            and meta["lang"] == "en"
        )  # MatchExcept matches only points that have another value
    )
    assert want and store.count(native) == len(want)
    minimal = m.Filter(
        min_should=m.MinShould(
            conditions=[
                m.FieldCondition(key="metadata.tag", match=m.MatchValue(value="a")),
                m.FieldCondition(key="metadata.lang", match=m.MatchValue(value="en")),
                m.IsNullCondition(is_null=m.PayloadField(key="metadata.note")),
            ],
            min_count=2,
        )
    )
    two_of = _where(
        lambda meta: (meta["tag"] == "a") + (meta.get("lang") == "en") + ("note" in meta) >= 2
    )
    assert store.count(minimal) == len(two_of)
    dates = m.Filter(
        must=[
            m.FieldCondition(key="metadata.day", range=m.DatetimeRange(lt="2024-01-03T00:00:00Z"))
        ]
    )
    assert store.count(dates) == 2
    if isinstance(store, EdgeStore):
        geo = m.Filter(
            must=[
                m.FieldCondition(
                    key="metadata.loc",
                    geo_radius=m.GeoRadius(center=m.GeoPoint(lon=0, lat=0), radius=1.0),
                )
            ]
        )
        with pytest.raises(
            ConfigError, match=r"cannot take .*geo_radius.*it converts FieldCondition"
        ):
            store.count(geo)


def _nested_not(depth: int) -> dict[str, Any]:
    flt: dict[str, Any] = {"tag": "a"}
    for _ in range(depth):
        flt = {"$not": flt}
    return flt


def test_depth_and_size_limits(store: Any) -> None:
    from qdrant_client import models as m

    assert store.count(_nested_not(MAX_DEPTH)) == len(_where(lambda meta: meta["tag"] == "a"))
    with pytest.raises(ConfigError, match=f"deeper than {MAX_DEPTH}"):
        store.count(_nested_not(5000))  # refused, no RecursionError
    wide = {"$or": [{"n": i} for i in range(MAX_CONDITIONS + 1)]}
    with pytest.raises(ConfigError, match="more than"):
        store.count(wide)
    with pytest.raises(ConfigError, match="values"):
        store.count({"n": {"in": list(range(200_000))}})
    native: Any = m.Filter(
        must=[m.FieldCondition(key="metadata.tag", match=m.MatchValue(value="a"))]
    )
    for _ in range(3000):
        native = m.Filter(must=[native])
    with pytest.raises(ConfigError, match=f"deeper than {MAX_DEPTH}"):
        store.count(native)


def test_deep_native_edge_filter_is_refused_not_a_crash(tmp_path: Path) -> None:
    # the engine segfaults on a filter nested a few thousand deep: latentlex must refuse it first
    script = f"""
import numpy as np, qdrant_edge as qe
from latentlex.errors import ConfigError
from latentlex.sparse import SparseVector
from latentlex.store import CollectionSpec, EdgeStore, PointRecord, SearchRequest
s = EdgeStore({str(tmp_path)!r})
s.open(CollectionSpec("c", dense_dim=2, identity={{"format_version": 1}}))
s.upsert([PointRecord("a", np.ones(2), SparseVector.from_dict({{1: 1.0}}), "a", {{"t": "x"}})])
f = qe.Filter(must=[qe.FieldCondition(key="metadata.t", match=qe.MatchValue("x"))])
print(s.count(f))
for _ in range(4000):
    f = qe.Filter(must=[f])
for call in (lambda: s.count(f), lambda: s.search(SearchRequest(np.ones(2), None, mode="dense", filter=f))):
    try:
        call()
    except ConfigError as e:
        print("refused:", e)
s.close()
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": CORE, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "1" and len(lines) == 3
    assert all(line.startswith("refused: ") and "deeper than" in line for line in lines[1:])


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ({"n": {"between": 3}}, r"unknown filter operator 'between'; supported: .*is_empty"),
        ({"$xor": [{"n": 1}]}, r"unknown filter combinator '\$xor'; use \$and, \$or, \$not"),
        ({"$or": []}, r"\$or takes a non-empty list"),
        ({"$and": {"n": 1}}, r"\$and takes a non-empty list"),
        ({"$not": [{"n": 1}]}, r"must be a mapping"),
        ({"n": None}, r"is_empty"),
        ({"n": {}}, r"empty operator mapping"),
        ({"n": {"in": 3}}, r"take a list"),
        ({"n": [1, "a"]}, r"only strings or only integers"),
        ({"n": {"gte": "yesterday"}}, r"neither a number nor an ISO-8601"),
        ({"n": {"is_empty": "yes"}}, r"True or False"),
        ({"doc_id": {"gt": "a"}}, r"'doc_id' takes eq, in, ne or nin"),
        ({"n": {"contains": [1, 2]}}, r"unsupported value"),
    ],
)
def test_errors_say_what_is_supported(flt: dict[str, Any], message: str) -> None:
    for translate in (check, to_qdrant, to_edge):
        with pytest.raises(ConfigError, match=message):
            translate(flt)


def test_foreign_native_filters() -> None:
    import qdrant_edge as qe

    with pytest.raises(ConfigError, match="only on the embedded engine"):
        to_qdrant(qe.Filter(must=[]))
    with pytest.raises(
        ConfigError, match=r"qdrant_client\.models\.Filter or a qdrant_edge\.Filter"
    ):
        to_edge(object())
    with pytest.raises(ConfigError, match="give a mapping"):
        check("tag=a")
    assert check(None) is None and check({"n": 1}) == {"n": 1}
