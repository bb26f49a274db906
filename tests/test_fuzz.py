"""Generated bad input against every public entry point (issue 8: reliability).

Hypothesis feeds empty and whitespace strings, control, bidi and lone-surrogate characters, mixed
scripts, 100k-character texts, non-strings, NaN/inf and nested metadata, duplicate and huge ids,
and absurd search options to ``encode_documents``/``encode_queries``, ``LatentIndex.add``,
``search``, ``explain`` and both framework adapters. Each call either works or raises a
:class:`~latentlex.errors.LatentLexError` (or ``TypeError``/``ValueError``/``KeyError``) whose
message names what to fix; a failed ``add`` writes nothing; after the run the store holds exactly
the distinct ids added and every text and metadata round-trips.

Known library bugs (found here, fixes proposed in the issue-8 report) are probed once per
session: while a bug is present, inputs that hit it are tolerated and ``test_bug_fixed[<bug>]``
is an expected failure naming the fix; once fixed, both checks become strict on their own.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from latentlex.errors import LatentLexError
from latentlex.index import LatentIndex, content_hash

# ------------------------------------------------------------------------------------ settings

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ALLOWED = (LatentLexError, TypeError, ValueError, KeyError)
#: Fragments of messages that come from inside a dependency and tell a user nothing to fix.
UNCLEAR = (
    "TextEncodeInput",
    "failed to extract",
    "codec can't",
    "is not subscriptable",
    "index out of range",
    "not supported between instances",
    "maximum recursion depth",
    "int too big",
    "Helper",
    "slice indices",
)
SURROGATES = ("\ud800", "\udbff", "\udc00", "\udfff")
SPECIAL_CHARS = (
    *SURROGATES,
    "\x00",
    "\x07",
    "\x1b",
    "\x7f",
    "\u200b",  # zero width space
    "\u202e",  # right-to-left override
    "\ufeff",  # BOM
    "\ufffd",
    "\u0301",  # combining acute
    "日",
    "ع",
    "ж",
    "\U0001f600",
    "\u200d",  # zero width joiner
    "\n",
    "\t",
    " ",
)
SPECIAL_TEXTS = (
    "",
    " ",
    "\n\t \r",
    "\x00\x01\x02",
    "a\ud800b",
    "\udfff",
    "日本語のテキスト и русский текст و العربية",
    "\u202eevil\u202c",
    "\U0001f600" * 20,
    "\U0001f469\u200d\U0001f4bb coder",
    "e\u0301" * 30,
    "quokkas live on Rottnest Island",
)


def walk(obj: Any, limit: int = 4000) -> Iterator[tuple[Any, int]]:
    """Every key and value inside ``obj`` with its nesting depth (iterative: any depth)."""
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        item, d = stack.pop()
        yield item, d
        if d >= limit:
            continue
        if isinstance(item, dict):
            stack.extend((k, d + 1) for k in item)
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, d + 1) for v in item)


def has_surrogate(obj: Any) -> bool:
    """Whether a string anywhere inside ``obj`` (keys included) holds a lone surrogate."""
    return any(
        isinstance(x, str) and any("\ud800" <= c <= "\udfff" for c in x) for x, _ in walk(obj)
    )


def has_bigint(obj: Any) -> bool:
    """Whether an int outside the signed 64-bit range is anywhere inside ``obj``."""
    return any(
        isinstance(x, int) and not isinstance(x, bool) and not -(2**63) <= x < 2**63
        for x, _ in walk(obj)
    )


def has_nonstr_key(obj: Any) -> bool:
    """Whether a mapping inside ``obj`` has a key that is not a ``str``."""
    return any(isinstance(x, dict) and any(not isinstance(k, str) for k in x) for x, _ in walk(obj))


def depth(obj: Any) -> int:
    return max(d for _, d in walk(obj))


def normalised(meta: dict[str, Any]) -> Any:
    """What a metadata mapping looks like after a JSON round trip (tuples → lists, keys → str)."""
    return json.loads(json.dumps(meta))


def json_close(a: Any, b: Any) -> bool:
    """JSON values equal, floats up to 4 ulp (qdrant-edge's payload floats drift by an ulp)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= 4 * math.ulp(max(abs(a), abs(b)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_close(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def is_clear(exc: BaseException) -> bool:
    """An allowed type, and a message that is not a dependency's internals."""
    msg = str(exc)
    return isinstance(exc, ALLOWED) and bool(msg.strip()) and not any(u in msg for u in UNCLEAR)


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


# --------------------------------------------------------------------------- known-bug probes


@dataclass
class Bug:
    """A library bug this module detects, with the fix proposed for it."""

    name: str
    fix: str
    probe: Callable[[LatentIndex], None]
    present: bool = False
    hits: int = 0


def _probe_clear(call: Callable[[], Any]) -> None:
    """Raise AssertionError unless ``call`` works or fails with a clear error."""
    try:
        call()
    except BaseException as e:
        assert is_clear(e), f"{type(e).__name__}: {e}"


def _probe_refused(call: Callable[[], Any]) -> None:
    """Raise AssertionError unless ``call`` fails with a clear error."""
    try:
        call()
    except BaseException as e:
        assert is_clear(e), f"{type(e).__name__}: {e}"
    else:
        raise AssertionError("accepted")


def _probe_explain_top(index: LatentIndex) -> None:
    _probe_clear(lambda: index.explain("quokka", "seed-1", top="3"))  # type: ignore[arg-type]
    _probe_refused(lambda: index.explain("quokka", "seed-1", top=-1))


def _probe_roundtrip(index: LatentIndex, meta: dict[str, Any]) -> None:
    try:
        index.add(["probe"], ids=["probe-rt"], metadata=[meta])
    except BaseException as e:
        assert is_clear(e), f"{type(e).__name__}: {e}"
        return
    got = index.get(["probe-rt"])[0].metadata
    index.delete(["probe-rt"])
    assert got == normalised(meta), f"{meta!r} came back as {got!r}"


def _probe_atomic(index: LatentIndex) -> None:
    """A batch whose last text is bad must not leave its first texts behind."""
    ids = [f"probe-atomic-{i}" for i in range(3)]
    with contextlib.suppress(Exception):
        index.add(["fine one", "fine two", "bad \ud800"], ids=ids)
    left = [r.doc_id for r in index.get(ids)]
    index.delete(ids)
    assert not left, f"a failed add left {left} in the store"


BUGS = {
    b.name: b
    for b in [
        Bug(
            "surrogate_text",
            "backbone.check_texts: refuse lone surrogates with a ValueError naming texts[i]",
            lambda ix: _probe_clear(lambda: ix.search("a\ud800b")),
        ),
        Bug(
            "partial_add",
            "backbone.check_texts (surrogates) + index._records (ids) validate every row "
            "before the first chunk is written",
            _probe_atomic,
        ),
        Bug(
            "surrogate_id",
            "index._records / store.base.point_id: refuse ids with lone surrogates "
            "(ValueError naming ids[i])",
            lambda ix: _probe_clear(lambda: ix.add(["x"], ids=["\ud800"])),
        ),
        Bug(
            "metadata_strings",
            "index._check_metadata: walk values recursively; refuse surrogates, non-str "
            "nested keys, depth > 32",
            lambda ix: _probe_roundtrip(ix, {"k": "\udc00", "n": {1: 2}}),
        ),
        Bug(
            "metadata_depth",
            "index._check_metadata: catch RecursionError / limit nesting depth",
            lambda ix: _probe_clear(
                lambda: ix.add(["x"], ids=["probe-deep"], metadata=[{"k": nested(3000)}])
            ),
        ),
        Bug(
            "metadata_bigint",
            "index._check_metadata: refuse ints outside [-2**63, 2**63) (edge stores a float)",
            lambda ix: _probe_roundtrip(ix, {"k": 2**70}),
        ),
        Bug(
            "search_limits",
            "store.base.SearchRequest.__post_init__: bound k, prefetch_limit, rrf_k "
            "(ints in [1, 2**31-1]); candidates capped",
            lambda ix: _probe_clear(lambda: ix.search("x", k=2**63)),
        ),
        Bug(
            "search_weights",
            "index._requests: check weights is a pair of finite numbers before indexing it",
            lambda ix: _probe_clear(lambda: ix.search("x", weights=(1.0,))),
        ),
        Bug(
            "explain_top",
            "index.explain: check top is a positive int (ConfigError) before slicing",
            _probe_explain_top,
        ),
        Bug(
            "filter_values",
            "store.filters._check_scalar/_check_any: refuse surrogate strings and ints "
            "outside int64 (ConfigError)",
            lambda ix: _probe_clear(lambda: ix.search("x", filter={"s": "\ud800", "n": 2**70})),
        ),
    ]
}


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: ~10x faster encoding on a shared, loaded CPU (restored after)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class Model:
    """What the store must hold: ``doc_id -> (text, normalised metadata)``."""

    index: LatentIndex
    docs: dict[str, tuple[str, Any]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    float_drift: int = 0


@pytest.fixture(scope="module")
def model(encoder) -> Iterator[Model]:
    # RAM-backed when possible: every write is flushed, and fsync on a loaded disk costs ~50 ms
    shm = Path("/dev/shm")
    where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="latentlex-fuzz-", dir=where)) / "edge"
    # batch_size=2: a multi-text add spans several writes, so a late failure would show
    index = LatentIndex(encoder, path, batch_size=2)
    index.add(
        [f"seed document {i} about quokkas, tapirs and otters" for i in range(12)],
        ids=[f"seed-{i}" for i in range(12)],
    )
    m = Model(index)
    m.docs.update(
        {
            f"seed-{i}": (f"seed document {i} about quokkas, tapirs and otters", {})
            for i in range(12)
        }
    )
    for bug in BUGS.values():
        try:
            bug.probe(index)
        except AssertionError as e:
            bug.present = True
            print(f"known bug present: {bug.name}: {e}", file=sys.stderr)
    yield m
    index.close()
    shutil.rmtree(path.parent, ignore_errors=True)


def suspects(*inputs: Any) -> list[str]:
    """The known bugs an input could trigger (by what it holds)."""
    names: list[str] = []
    if any(has_surrogate(x) for x in inputs):
        names += ["surrogate_text", "surrogate_id", "metadata_strings", "filter_values"]
    if any(has_nonstr_key(x) for x in inputs):
        names.append("metadata_strings")
    if any(depth(x) > 500 for x in inputs):
        names.append("metadata_depth")
    if any(has_bigint(x) for x in inputs):
        names += ["metadata_bigint", "search_limits", "filter_values"]
    return names


def search_suspects(k: Any, options: dict[str, Any]) -> list[str]:
    names = []
    w = options.get("weights", (1.0, 1.0))
    if not (isinstance(w, tuple) and len(w) == 2):
        names.append("search_weights")
    limits = [k, options.get("rrf_k", 60), options.get("prefetch_limit")]
    if any(isinstance(v, int) and abs(v) >= 2**31 for v in limits) or not isinstance(
        options.get("rrf_k", 60), int
    ):
        names.append("search_limits")
    return names


def tolerated(names: list[str]) -> bool:
    """Whether one of these known bugs is still present (and count the hit)."""
    for name in names:
        if BUGS[name].present:
            BUGS[name].hits += 1
            return True
    return False


def outcome(
    m: Model, what: str, call: Callable[[], Any], *inputs: Any, extra: list[str] | None = None
) -> tuple[bool, Any]:
    """Run ``call``; returns ``(True, result)``, or ``(False, exc)`` for a clear error.

    An unclear error, or any other exception type, fails the test unless a known bug that the
    inputs could trigger is still present.
    """
    m.calls[what] = m.calls.get(what, 0) + 1
    try:
        return True, call()
    except Exception as e:
        if not is_clear(e) and not tolerated((extra or []) + suspects(*inputs)):
            raise AssertionError(
                f"{what}: {'unclear ' if isinstance(e, ALLOWED) else ''}{type(e).__name__}: "
                f"{e!s:.300} for {inputs!r:.300}"
            ) from e
        m.errors[what] = m.errors.get(what, 0) + 1
        key = f"{what}: {type(e).__name__}: {str(e)[:70]}"
        m.messages[key] = m.messages.get(key, 0) + 1
        return False, e


def apply_add(
    m: Model, what: str, texts_: Any, id_list: Any, metas: Any, call: Callable[[], Any]
) -> None:
    """Run an add; on success check what was written, on failure that nothing was."""
    ok, result = outcome(m, what, call, texts_, id_list, metas)
    if ok:
        rows = list(texts_)
        doc_ids = list(id_list) if id_list is not None else [content_hash(t, {}) for t in rows]
        meta_rows = list(metas) if metas is not None else [{}] * len(rows)
        last = {d: (t, mt) for t, d, mt in zip(rows, doc_ids, meta_rows, strict=True)}
        assert len(result) == len(last) and set(result) == set(last), (result, list(last))
        stored = {r.doc_id: r for r in m.index.get(list(last))}
        for doc_id, (t, mt) in last.items():
            got = stored.get(doc_id)
            assert got is not None, f"{doc_id!r:.80} was reported written but is missing"
            assert got.text == t, f"text of {doc_id!r:.80} did not round-trip"
            want = normalised(dict(mt))
            if got.metadata != want:
                m.float_drift += json_close(got.metadata, want)
                assert json_close(got.metadata, want) or tolerated(suspects(mt)), (
                    f"metadata {mt!r} came back as {got.metadata!r}"
                )
            m.docs[doc_id] = (t, got.metadata)
        return
    # a failed add writes nothing: every id it named still holds what it held before
    named = (
        [i for i in id_list if isinstance(i, str) and i and not has_surrogate(i)]
        if isinstance(id_list, list)
        else []
    )
    stored = {r.doc_id: r for r in m.index.get(named)} if named else {}
    for doc_id in named:
        before = m.docs.get(doc_id)
        now = stored.get(doc_id)
        if (before[0] if before else None) != (now.text if now else None):
            assert tolerated(["partial_add", *suspects(texts_, id_list, metas)]), (
                f"a failed add ({type(result).__name__}: {result}) changed {doc_id!r:.80}"
            )
            if now is None:
                m.docs.pop(doc_id, None)
            else:
                m.docs[doc_id] = (now.text, now.metadata)


# ---------------------------------------------------------------------------------- strategies


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], percent: int = 80):
    """``good`` about ``percent`` % of the time, else ``bad`` (so most calls get far)."""

    @st.composite
    def pick(draw: st.DrawFn) -> Any:
        return draw(good) if draw(st.integers(0, 99)) < percent else draw(bad)

    return pick()


chars = st.one_of(st.characters(), st.sampled_from(SPECIAL_CHARS))
clean_texts = st.one_of(
    st.text(max_size=24), st.sampled_from([t for t in SPECIAL_TEXTS if not has_surrogate(t)])
)
wild_texts = st.one_of(st.text(alphabet=chars, max_size=20), st.sampled_from(SPECIAL_TEXTS))
texts = mostly(clean_texts, wild_texts, 70)
junk = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.just({"a": 1}),
    st.just(object()),
)
text_or_junk = mostly(texts, junk, 85)
ids = st.one_of(
    st.sampled_from(["a", "b", "dup", "seed-1", "x" * 100_000, "a\x00b", "\u202eid"]),
    st.text(max_size=12),
    st.text(alphabet=chars, min_size=1, max_size=6),
)
clean_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
clean_values = st.recursive(
    clean_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
clean_metadatas = st.dictionaries(st.text(max_size=6), clean_values, max_size=3)
wild_scalars = st.one_of(
    clean_scalars,
    st.integers(),
    st.integers(min_value=2**62, max_value=2**80),
    st.floats(),  # NaN and inf included
    st.text(alphabet=chars, max_size=4),
)
wild_values = st.recursive(
    wild_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(0, 9)), inner, max_size=3),
    ),
    max_leaves=6,
)
wild_metadatas = st.one_of(
    st.dictionaries(st.text(max_size=6), wild_values, max_size=3),
    st.dictionaries(
        st.one_of(st.text(alphabet=chars, max_size=3), st.integers()), wild_scalars, max_size=2
    ),
    st.sampled_from([{"deep": nested(3000)}, {"b": b"bytes"}, {"s": {1, 2}}, {"n": float("nan")}]),
    junk,
)


@st.composite
def add_calls(draw: st.DrawFn) -> tuple[Any, Any, Any]:
    """``(texts, ids, metadata)`` for ``add``: well-formed about half the time."""
    n = draw(st.integers(0, 4))
    if draw(st.integers(0, 99)) < 50:
        texts_ = draw(st.lists(texts, min_size=n, max_size=n))
        id_list = draw(st.one_of(st.none(), st.lists(ids, min_size=n, max_size=n)))
        metas = draw(st.one_of(st.none(), st.lists(clean_metadatas, min_size=n, max_size=n)))
        return texts_, id_list, metas
    texts_ = draw(st.one_of(st.lists(text_or_junk, min_size=n, max_size=n), junk, texts))
    id_list = draw(
        st.one_of(
            st.none(),
            st.lists(ids, min_size=n, max_size=n),
            st.lists(st.one_of(ids, junk), max_size=5),
            ids,
        )
    )
    metas = draw(
        st.one_of(
            st.none(),
            st.lists(wild_metadatas, min_size=n, max_size=n),
            st.lists(wild_metadatas, max_size=5),
            wild_metadatas,
        )
    )
    return texts_, id_list, metas


clean_filters = st.one_of(
    st.none(),
    st.fixed_dictionaries({"k": st.integers(0, 3)}),
    st.fixed_dictionaries({"doc_id": st.lists(st.sampled_from(["a", "b", "seed-1"]), max_size=2)}),
    st.fixed_dictionaries({"k": st.fixed_dictionaries({"gte": st.floats(-1, 1)})}),
)
wild_filters = st.one_of(
    st.dictionaries(
        st.one_of(st.sampled_from(["k", "doc_id", "a.b", ""]), st.text(alphabet=chars, max_size=3)),
        st.one_of(
            wild_scalars,
            st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=3),
            st.dictionaries(st.sampled_from(["gt", "gte", "lt", "lte", "eq"]), wild_scalars),
        ),
        max_size=2,
    ),
    junk,
)
clean_options = st.fixed_dictionaries(
    {},
    optional={
        "mode": st.sampled_from(["hybrid", "dense", "sparse"]),
        "fusion": st.sampled_from(["rrf", "dbsf", "weighted"]),
        "weights": st.tuples(st.floats(0, 2), st.floats(0, 2)),
        "rrf_k": st.integers(1, 100),
        "prefetch_limit": st.one_of(st.none(), st.integers(1, 100)),
        "filter": clean_filters,
        "with_legs": st.booleans(),
    },
)
wild_options = st.fixed_dictionaries(
    {},
    optional={
        "mode": st.sampled_from(["hybrid", "dense", "sparse", "both", None]),
        "fusion": st.sampled_from(["rrf", "dbsf", "weighted", "max", 3]),
        "weights": st.one_of(
            st.tuples(st.floats(), st.floats()),
            st.tuples(st.floats()),
            st.none(),
            st.just(("a", 1)),
        ),
        "rrf_k": st.one_of(st.integers(-2, 100), st.just(2**40), st.floats(), st.just("5")),
        "prefetch_limit": st.one_of(st.none(), st.integers(-1, 100), st.just(2**40)),
        "filter": mostly(clean_filters, wild_filters, 30),
        "with_legs": st.booleans(),
    },
)
search_options = mostly(clean_options, wild_options, 60)
ks = mostly(
    st.one_of(st.integers(1, 30), st.sampled_from([10_000, 2**31 - 1])),
    st.one_of(
        st.integers(-1, 0),
        st.sampled_from([2**31, 2**63, 2**64 + 5]),
        st.floats(),
        st.just("10"),
        st.booleans(),
    ),
    70,
)


# ---------------------------------------------------------------------------------- the checks


def check_hits(m: Model, hits: Any, k: int) -> None:
    assert isinstance(hits, list) and len(hits) <= min(k, len(m.docs))
    for h in hits:
        assert h.doc_id in m.docs, f"hit {h.doc_id!r} is not a stored document"
        assert h.text == m.docs[h.doc_id][0]
        assert math.isfinite(h.score)


@settings(FUZZ, max_examples=100)
@given(batch=st.lists(texts, max_size=6), query_side=st.booleans())
def test_encode_generated_texts(model: Model, encoder, batch: list[str], query_side: bool) -> None:
    fn = encoder.encode_queries if query_side else encoder.encode_documents
    ok, enc = outcome(model, "encode", lambda: fn(batch), batch)
    if not ok:
        return
    assert enc.dense.shape == (len(batch), encoder.dim) and np.isfinite(enc.dense).all()
    for vec in enc.sparse:
        assert np.isfinite(vec.values).all() and (vec.values >= 0).all()
        assert np.all(np.diff(vec.indices.astype(np.int64)) > 0)
        assert vec.indices.size == 0 or int(vec.indices.max()) < encoder.width


@settings(FUZZ, max_examples=30)
@given(bad=junk)
def test_encode_non_lists(model: Model, encoder, bad: Any) -> None:
    outcome(model, "encode", lambda: encoder.encode_documents(bad), bad)


@settings(FUZZ, max_examples=260)
@given(call=add_calls())
def test_add_generated_input(model: Model, call: tuple[Any, Any, Any]) -> None:
    texts_, id_list, metas = call
    apply_add(model, "add", texts_, id_list, metas, lambda: model.index.add(texts_, id_list, metas))


@settings(FUZZ, max_examples=220)
@given(query=text_or_junk, k=ks, options=search_options)
def test_search_generated_input(model: Model, query: Any, k: Any, options: dict[str, Any]) -> None:
    ok, hits = outcome(
        model,
        "search",
        lambda: model.index.search(query, k, **options),
        query,
        k,
        options,
        extra=search_suspects(k, options),
    )
    if ok:
        check_hits(model, hits, k)


@settings(FUZZ, max_examples=40)
@given(queries=st.one_of(st.lists(text_or_junk, max_size=4), junk, texts), k=st.integers(1, 5))
def test_search_batch_generated_input(model: Model, queries: Any, k: int) -> None:
    ok, result = outcome(
        model, "search_batch", lambda: model.index.search_batch(queries, k), queries
    )
    if ok:
        assert len(result) == len(queries)
        for hits in result:
            check_hits(model, hits, k)


@settings(FUZZ, max_examples=120)
@given(
    query=text_or_junk,
    doc_id=mostly(st.sampled_from([f"seed-{i}" for i in range(12)]), st.one_of(ids, junk), 60),
    top=mostly(st.integers(1, 12), st.one_of(st.integers(-2, 0), junk)),
)
def test_explain_generated_input(model: Model, query: Any, doc_id: Any, top: Any) -> None:
    extra = (
        [] if isinstance(top, int) and not isinstance(top, bool) and top > 0 else ["explain_top"]
    )
    ok, ex = outcome(
        model,
        "explain",
        lambda: model.index.explain(query, doc_id, top),
        query,
        doc_id,
        extra=extra,
    )
    if not ok:
        if isinstance(ex, KeyError):
            assert doc_id not in model.docs
        return
    assert doc_id in model.docs
    total = sum(t.contribution for t in ex.terms_all)
    assert math.isclose(total, ex.sparse_score, rel_tol=1e-3, abs_tol=1e-3)
    assert ex.n_shared == len(ex.terms_all)


@pytest.fixture(scope="module")
def memory_index(encoder) -> Iterator[LatentIndex]:
    index = LatentIndex(encoder, ":memory:", collection="fuzz", batch_size=2)
    yield index
    index.close()


@settings(FUZZ, max_examples=60)
@given(call=add_calls())
def test_add_generated_input_client_memory(
    memory_index: LatentIndex, call: tuple[Any, Any, Any]
) -> None:
    """qdrant-client's local mode takes the same input the same way (a fresh store per example)."""
    texts_, id_list, metas = call
    memory_index.store.open(memory_index.spec, recreate=True)
    m = Model(memory_index)
    apply_add(
        m, "add-memory", texts_, id_list, metas, lambda: memory_index.add(texts_, id_list, metas)
    )
    assert memory_index.count() == len(m.docs)


@settings(FUZZ, max_examples=6)
@given(
    unit=st.sampled_from(["a", "word ", "日本", "\U0001f600", "\x00 ", "e\u0301 ", "\ud800x "]),
    where=st.sampled_from(["encode", "add", "search"]),
)
def test_long_texts_are_bounded(model: Model, encoder, unit: str, where: str) -> None:
    text = (unit * (100_000 // len(unit) + 1))[:100_000]
    start = time.perf_counter()
    if where == "encode":
        outcome(model, "long", lambda: encoder.encode_documents([text]), text)
    elif where == "add":
        apply_add(model, "long", [text], ["long"], None, lambda: model.index.add([text], ["long"]))
    else:
        ok, hits = outcome(model, "long", lambda: model.index.search(text, 3), text)
        if ok:
            check_hits(model, hits, 3)
    assert time.perf_counter() - start < 60


# ------------------------------------------------------------------------------------ adapters


@settings(FUZZ, max_examples=60)
@given(query=text_or_junk, top_k=mostly(st.integers(1, 6), st.one_of(st.integers(-1, 0), junk)))
def test_llama_index_retriever_generated_input(model: Model, query: Any, top_k: Any) -> None:
    mod = pytest.importorskip("llama_index.retrievers.latentlex")

    ok, retriever = outcome(
        model, "llama-init", lambda: mod.LatentLexRetriever(model.index, top_k), top_k
    )
    if not ok:
        return
    ok, nodes = outcome(model, "llama-retrieve", lambda: retriever.retrieve(query), query)
    if ok:
        assert len(nodes) <= top_k
        for n in nodes:
            assert n.node.node_id in model.docs
            assert n.node.get_content() == model.docs[n.node.node_id][0]


@settings(FUZZ, max_examples=40)
@given(rows=st.lists(st.tuples(texts, ids, mostly(clean_metadatas, wild_metadatas)), max_size=3))
def test_llama_index_add_nodes_generated_input(
    model: Model, rows: list[tuple[Any, Any, Any]]
) -> None:
    pytest.importorskip("llama_index.retrievers.latentlex")
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.latentlex import LatentLexRetriever

    retriever = LatentLexRetriever(model.index, 3)
    try:
        nodes = [TextNode(text=t, id_=i, metadata=mt) for t, i, mt in rows]
    except Exception:  # LlamaIndex's own validation: not ours to judge
        return
    texts_ = [t for t, _, _ in rows]
    id_list = [i for _, i, _ in rows]
    metas = [mt for _, _, mt in rows]
    apply_add(model, "llama-add", texts_, id_list, metas, lambda: retriever.add_nodes(nodes))


@settings(FUZZ, max_examples=60)
@given(
    query=text_or_junk,
    k=mostly(st.one_of(st.none(), st.integers(1, 6)), st.one_of(st.integers(-1, 0), junk)),
)
def test_langchain_retriever_generated_input(model: Model, query: Any, k: Any) -> None:
    mod = pytest.importorskip("langchain_latentlex")
    retriever = mod.LatentLexRetriever(index=model.index, k=3)
    kwargs = {} if k is None else {"k": k}
    ok, docs = outcome(
        model, "langchain-invoke", lambda: retriever.invoke(query, **kwargs), query, k
    )
    if ok:
        assert len(docs) <= (3 if k is None else k)
        for d in docs:
            assert d.id in model.docs and d.page_content == model.docs[d.id][0]


@settings(FUZZ, max_examples=40)
@given(call=add_calls())
def test_langchain_add_texts_generated_input(model: Model, call: tuple[Any, Any, Any]) -> None:
    mod = pytest.importorskip("langchain_latentlex")
    retriever = mod.LatentLexRetriever(index=model.index, k=3)
    texts_, id_list, metas = call
    if not isinstance(texts_, list):
        texts_ = [texts_] if isinstance(texts_, str) else []
    apply_add(
        model,
        "langchain-add",
        texts_,
        id_list,
        metas,
        lambda: retriever.add_texts(texts_, metadatas=metas, ids=id_list),
    )


# ------------------------------------------------------------------------ after the generated run


def test_zz_store_matches_what_was_added(model: Model) -> None:
    """Runs last: count() == distinct ids added, every text and metadata round-trips."""
    index = model.index
    assert index.count() == len(model.docs)
    stored = {r.doc_id: r for r in index.get(list(model.docs))}
    assert len(stored) == len(model.docs)
    for doc_id, (text, meta) in model.docs.items():
        assert stored[doc_id].text == text
        assert stored[doc_id].metadata == meta
    total = sum(model.calls.values())
    print(
        f"\nfuzz: {total} generated calls {dict(sorted(model.calls.items()))}; clear errors "
        f"{dict(sorted(model.errors.items()))}; known bugs hit "
        f"{ {b.name: b.hits for b in BUGS.values() if b.present} }; {len(model.docs)} documents; "
        f"{model.float_drift} metadata round trips with float drift <= 4 ulp"
    )
    if os.environ.get("LATENTLEX_FUZZ_VERBOSE"):
        for key, n in sorted(model.messages.items(), key=lambda kv: -kv[1]):
            print(f"{n:5d}  {key}")


# ---------------------------------------------------------------------------------- known bugs


@pytest.mark.parametrize("name", sorted(BUGS))
def test_bug_fixed(model: Model, name: str) -> None:
    """Each probe of a known bug must pass; while the bug is present this is an expected failure."""
    bug = BUGS[name]
    if bug.present:
        pytest.xfail(f"known bug {name} (hit {bug.hits} times by generated input); fix: {bug.fix}")
    bug.probe(model.index)
