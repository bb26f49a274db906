"""Untrusted input, second round (issue 15): no data loss, bounded resources, no escapes, no
tracebacks, no secrets.

- data loss: ``latentlex index`` with and without ``--recreate`` against every kind of failure
  (bad lines anywhere, an empty corpus, a bad SAE, a store that fails, an interrupt, an encoder
  that fails half-way): a failing run leaves what was stored; with ``--recreate`` on the
  embedded store the files are byte-for-byte unchanged;
- a Hypothesis fuzzer generates corpora (JSONL and ``.txt`` lines, sizes, encodings, nesting)
  and runs the CLI on each: exit 0 or 2, never a traceback, a one-line error naming the place,
  and the store unchanged whenever the run fails;
- a tamper suite of SAE folders (links out of the folder, FIFOs, deep and huge JSON, sparse
  weights files, lying headers, configs that contradict themselves), loaded through every entry
  point in a fresh process: refused (or labels ignored) in milliseconds, peak RSS bounded;
- a backbone named by a file is never a path; ``max_seq_length`` is checked against the model;
- secrets: one redaction for URLs (any password characters, ``api_key=``) in every message;
- a 20 MB document: the tokeniser never sees more than a bounded prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from latentlex.errors import ConfigError, LatentLexError

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------ helpers


def cli(*argv: str) -> tuple[int, str, str]:
    """Run the CLI in this process; any exception escapes (a traceback fails the test)."""
    from latentlex.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as e:  # argparse refusing an argument: exit status 2, usage on stderr
            rc = int(e.code or 0)
    return rc, out.getvalue(), err.getvalue()


def index_cli(corpus: object, sae: object, store: object, *extra: str) -> tuple[int, str, str]:
    """``latentlex index --corpus C --sae S --store D --quiet [extra...]`` through :func:`cli`."""
    return cli(
        "index",
        "--corpus",
        str(corpus),
        "--sae",
        str(sae),
        "--store",
        str(store),
        "--quiet",
        *extra,
    )


def error_line(err: str) -> str:
    """The CLI's error: exactly one line starting ``error:`` (progress bars aside)."""
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[int, str, int]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st_ = p.stat()
            out[str(p.relative_to(root))] = (
                st_.st_size,
                hashlib.sha256(p.read_bytes()).hexdigest(),
                st_.st_mtime_ns,
            )
    return out


def stored_texts(store: Path, encoder: Any) -> dict[str, str]:
    from latentlex.index import LatentIndex

    with LatentIndex(encoder, store) as index:
        recs = index.store.scroll(limit=100_000)
    return {r.doc_id: r.text for r in recs}


def _use_encoder(mp: pytest.MonkeyPatch, encoder: Any) -> None:
    """Make the CLI, which builds its encoder from the SAE folder, use ``encoder`` instead."""
    import latentlex.index as index_mod
    from latentlex.terms import LatentTermEncoder

    class Cached(LatentTermEncoder):
        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            return encoder

    mp.setattr(index_mod, "LatentTermEncoder", Cached)


@pytest.fixture
def fast_cli(monkeypatch, encoder):
    """The CLI with the session's encoder (no model reload per run)."""
    _use_encoder(monkeypatch, encoder)
    return encoder


def doc_line(i: int, **extra: Any) -> str:
    return json.dumps({"_id": f"d{i:03d}", "text": f"document {i} about herons", **extra})


BASE_DOCS = {f"b{i:02d}": f"stored document {i} about otters and rivers" for i in range(20)}


@pytest.fixture(scope="module")
def base_store(tmp_path_factory, tiny_sae_dir, encoder) -> Path:
    """A collection of 20 documents written by ``latentlex index`` (copied by each test)."""
    root = tmp_path_factory.mktemp("base")
    corpus = root / "base.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in BASE_DOCS.items())
    )
    store = root / "store"
    with pytest.MonkeyPatch.context() as mp:
        _use_encoder(mp, encoder)
        rc, _out, err = index_cli(corpus, tiny_sae_dir, store)
    assert rc == 0, err
    return store


@pytest.fixture
def store(base_store, tmp_path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(base_store, copy)
    return copy


# --------------------------------------------------------------------------------- data loss

#: name -> (corpus text or None for "no such file", the line the error must name or None)
N = 201
_GOOD = [doc_line(i) for i in range(N)]


def _with(line_no: int, line: str) -> str:
    lines = list(_GOOD)
    lines[line_no - 1] = line
    return "\n".join(lines) + "\n"


INPUT_FAILURES: dict[str, tuple[str | bytes | None, int | None]] = {
    "bad_json_last_line": ("\n".join(_GOOD) + "\n{not json\n", N + 1),
    "nan_metadata_line_151": (_with(151, doc_line(151, metadata={"x": float("nan")})), 151),
    "inf_metadata_line_151": (
        _with(151, '{"_id": "x", "text": "t", "metadata": {"x": 1e999}}'),
        151,
    ),
    "int_over_int64_line_151": (_with(151, doc_line(151, metadata={"x": 2**70})), 151),
    "lone_surrogate_text_line_151": (_with(151, '{"_id": "x", "text": "a \\ud800 b"}'), 151),
    "lone_surrogate_id_line_151": (_with(151, '{"_id": "\\udfff", "text": "t"}'), 151),
    "missing_text_line_151": (_with(151, '{"_id": "x"}'), 151),
    "null_text_line_151": (_with(151, '{"_id": "x", "text": null}'), 151),
    "number_text_line_151": (_with(151, '{"_id": "x", "text": 5}'), 151),
    "empty_id_line_151": (_with(151, '{"_id": "", "text": "t"}'), 151),
    "object_id_line_151": (_with(151, '{"_id": {"a": 1}, "text": "t"}'), 151),
    "array_line_151": (_with(151, "[1, 2]"), 151),
    "metadata_not_object_line_151": (_with(151, doc_line(151, metadata=[1])), 151),
    "metadata_33_deep_line_151": (
        _with(151, doc_line(151, metadata={"a": json.loads("[" * 33 + "]" * 33)})),
        151,
    ),
    "json_100k_deep_line_151": (_with(151, "[" * 100_000 + "]" * 100_000), 151),
    "int_5000_digits_line_151": (
        _with(151, '{"_id": "x", "text": "t", "n": 1' + "0" * 5000 + "}"),
        151,
    ),
    "duplicate_id_line_201": (_with(201, doc_line(7)), 201),
    "non_utf8_line_151": (
        _with(151, "PLACEHOLDER")
        .replace("PLACEHOLDER", "\udcff")
        .encode("utf-8", "surrogateescape"),
        151,
    ),
    "empty_corpus": ("", None),
    "blank_lines_only": ("\n   \n\t\n", None),
    "no_such_corpus": (None, None),
}


def _write(path: Path, content: str | bytes | None) -> None:
    if content is None:
        return
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


@pytest.mark.parametrize("recreate", [False, True], ids=["plain", "recreate"])
@pytest.mark.parametrize("name", sorted(INPUT_FAILURES))
def test_bad_corpus_loses_nothing(name, recreate, store, tiny_sae_dir, tmp_path, fast_cli):
    content, line = INPUT_FAILURES[name]
    corpus = tmp_path / "corpus.jsonl"
    _write(corpus, content)
    before = snapshot(store)
    args = ["index", "--corpus", str(corpus), "--sae", str(tiny_sae_dir), "--store", str(store)]
    rc, out, err = cli(*args, "--quiet", *(["--recreate"] if recreate else []))
    assert rc == 2, (out, err)
    message = error_line(err)
    if line is not None:
        assert f"corpus.jsonl:{line}:" in message, message
    assert snapshot(store) == before, "a refused corpus changed the store"
    assert stored_texts(store, fast_cli) == BASE_DOCS


def test_bad_sae_or_store_loses_nothing(store, tiny_sae_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(_GOOD[:10]) + "\n")
    before = snapshot(store)
    empty_sae = tmp_path / "not-an-sae"
    empty_sae.mkdir()
    broken_sae = _sae_copy(tiny_sae_dir, tmp_path, width=1024)  # shapes disagree with weights
    for sae, message in ((empty_sae, "not an SAE folder"), (broken_sae, "implies")):
        for recreate in ([], ["--recreate"]):
            rc, _, err = index_cli(corpus, sae, store, *recreate)
            assert rc == 2 and message in error_line(err)
            assert snapshot(store) == before
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    rc, _, err = index_cli(corpus, tiny_sae_dir, a_file, "--recreate")
    assert rc == 2 and "is a file, not a folder" in error_line(err)


class _Boom(Exception):
    pass


@pytest.mark.parametrize("recreate", [False, True], ids=["plain", "recreate"])
@pytest.mark.parametrize("failure", ["store_error", "interrupt", "encoder_error"])
def test_failure_mid_write_loses_nothing(
    failure, recreate, store, tiny_sae_dir, tmp_path, fast_cli
):
    from latentlex.errors import StoreError
    from latentlex.store.edge import EdgeStore

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(_GOOD[:60]) + "\n")
    before = snapshot(store)
    calls = {"n": 0}
    real_upsert = EdgeStore.upsert
    real_encode = type(fast_cli).encode_documents

    def upsert(self, points):
        calls["n"] += 1
        if calls["n"] == 3 and failure != "encoder_error":
            raise StoreError("disk full") if failure == "store_error" else KeyboardInterrupt()
        return real_upsert(self, points)

    def encode(self, texts, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise _Boom("out of memory")
        return real_encode(self, texts, **kwargs)

    args = ["index", "--corpus", str(corpus), "--sae", str(tiny_sae_dir), "--store", str(store)]
    args += ["--quiet", "--batch-size", "8", *(["--recreate"] if recreate else [])]
    with pytest.MonkeyPatch.context() as mp:
        if failure == "encoder_error":
            mp.setattr(type(fast_cli), "encode_documents", encode)
        else:
            mp.setattr(EdgeStore, "upsert", upsert)
        if failure == "store_error":
            rc, _, err = cli(*args)
            assert rc == 2 and "disk full" in error_line(err)
        else:
            with pytest.raises(KeyboardInterrupt if failure == "interrupt" else _Boom):
                cli(*args)
    if recreate:  # built beside the live collection, never swapped in: not a byte changed
        assert snapshot(store) == before
        assert sorted(p.name for p in store.iterdir()) == ["latentlex"]
    after = stored_texts(store, fast_cli)
    if recreate:
        assert after == BASE_DOCS
    else:  # what was stored is still there; two batches of the new corpus were written
        assert {k: after[k] for k in BASE_DOCS} == BASE_DOCS
        assert len(after) == len(BASE_DOCS) + 16
    rc, _out, err = cli(*args)  # running it again completes it
    assert rc == 0, err
    want = {f"d{i:03d}": f"document {i} about herons" for i in range(60)}
    assert stored_texts(store, fast_cli) == (want if recreate else {**BASE_DOCS, **want})


@pytest.mark.parametrize("command", ["index", "search", "info"])
def test_a_swap_cut_between_its_renames_is_repaired_by_the_next_command(
    command, store, tiny_sae_dir, tmp_path, fast_cli
):
    """Killed between the swap's two renames: whatever runs next puts the old folder back."""
    os.rename(store / "latentlex", store / "latentlex.latentlex-old")
    (store / "latentlex.latentlex-new").mkdir()  # the new collection, about to be renamed
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("{broken\n")  # even a run refused for its corpus repairs the store
    argv = {
        "index": ["index", "--corpus", str(corpus), "--sae", str(tiny_sae_dir)],
        "search": ["search", "otters", "--sae", str(tiny_sae_dir)],
        "info": ["info"],
    }[command]
    rc, _, err = cli(*argv, "--store", str(store))
    assert rc == (2 if command == "index" else 0), err
    assert stored_texts(store, fast_cli) == BASE_DOCS
    assert "latentlex.latentlex-old" not in {p.name for p in store.iterdir()}


def test_recreate_refuses_a_collection_open_elsewhere(store, tiny_sae_dir, tmp_path, fast_cli):
    from latentlex.index import LatentIndex

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(_GOOD[:5]) + "\n")
    with LatentIndex(fast_cli, store) as index:
        rc, _, err = index_cli(corpus, tiny_sae_dir, store, "--recreate")
        assert rc == 2 and "already open" in error_line(err)
        assert index.count() == len(BASE_DOCS)


# ------------------------------------------------------------------------------- CLI fuzzing


def _json_scalar(*, storable: bool) -> st.SearchStrategy[Any]:
    """JSON scalars; ``storable``: only what a payload can hold (finite, int64)."""
    bound = 2**63 - 1 if storable else 2**70
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-bound, max_value=bound),
        st.floats(allow_nan=not storable, allow_infinity=not storable),
        st.text(max_size=20),
    )


def _json_value(*, storable: bool) -> st.SearchStrategy[Any]:
    return st.recursive(
        _json_scalar(storable=storable),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=10,
    )


@st.composite
def _good_doc(draw: st.DrawFn) -> dict[str, Any]:
    """A document every reader must accept (any script, control characters, long texts)."""
    doc: dict[str, Any] = {
        draw(st.sampled_from(["_id", "id"])): draw(
            st.one_of(st.text(min_size=1, max_size=12), st.integers(0, 10**6))
        ),
        "text": draw(
            st.one_of(
                st.text(max_size=80),
                st.integers(1, 20_000).map(lambda n: "quokka river " * n),
            )
        ),
    }
    if draw(st.booleans()):
        doc["title"] = draw(st.one_of(st.none(), st.text(max_size=12)))
    if draw(st.booleans()):
        doc["metadata"] = draw(
            st.one_of(st.none(), st.dictionaries(st.text(max_size=6), _json_value(storable=True)))
        )
    return doc


@st.composite
def _bad_line(draw: st.DrawFn) -> bytes:
    """A line a corpus reader must refuse (with its line number)."""
    kind = draw(
        st.sampled_from(
            [
                "wrong_types",
                "garbage",
                "deep",
                "non_utf8",
                "surrogate",
                "bigint",
                "not_storable",
                "no_text",
                "null_text",
                "array",
            ]
        )
    )
    if kind == "wrong_types":
        doc = draw(_good_doc())
        field = draw(st.sampled_from(["_id", "text", "title", "metadata"]))
        doc.pop("id", None)
        doc[field] = draw(
            st.one_of(st.lists(st.integers(), max_size=2), st.booleans(), st.floats())
            if field != "metadata"
            else st.one_of(st.lists(st.integers(), max_size=2), st.text(max_size=3))
        )
        if field != "_id":
            doc.setdefault("_id", "x")
        return json.dumps(doc).encode()
    if kind == "garbage":
        return b"{" + draw(st.binary(max_size=40)).replace(b"\n", b" ")
    if kind == "deep":
        n = draw(st.integers(33, 5000))
        return ('{"_id": "d", "text": "t", "metadata": {"x": ' + "[" * n + "]" * n + "}}").encode()
    if kind == "non_utf8":
        bad = draw(st.sampled_from([b"\xe9", b"\xff", b"\xc3", b"\xed\xa0\x80"]))
        return b'{"_id": "u", "text": "caf' + bad + b'"}'
    if kind == "surrogate":
        where = draw(st.sampled_from(["_id", "text", "title"]))
        return json.dumps({"_id": "s", "text": "t", where: "x \ud83d y"}).encode(
            "utf-8", "surrogatepass"
        )
    if kind == "bigint":
        return b'{"_id": "b", "text": "t", "n": ' + b"9" * draw(st.integers(4301, 6000)) + b"}"
    if kind == "not_storable":
        value = draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 2**63, -(2**64)]))
        return json.dumps({"_id": "n", "text": "t", "metadata": {"v": [value]}}).encode()
    if kind == "no_text":
        return b'{"_id": "n", "title": "only a title"}'
    if kind == "null_text":
        return b'{"_id": "n", "text": null}'
    return json.dumps(draw(st.lists(st.integers(), max_size=3))).encode()


@st.composite
def _corpus(draw: st.DrawFn) -> tuple[str, bytes, bool, bool]:
    """``(suffix, bytes, broken, has_docs)``: a clean corpus (maybe without any document), or
    one with a single bad line; line endings, blank lines and a byte-order mark vary."""
    suffix = draw(st.sampled_from([".jsonl", ".jsonl", ".txt"]))
    broken = draw(st.integers(0, 2)) == 0
    if suffix == ".txt":
        text = st.text(
            st.characters(
                blacklist_categories=("Cs",),
                blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
            ),
            max_size=60,
        )
        texts = draw(st.lists(text, max_size=6))
        has_docs = any(t.strip() for t in texts)
        lines = [t.encode() for t in texts]
        if broken:
            lines.insert(
                draw(st.integers(0, len(lines))), b"caf\xe9 " + draw(st.binary(max_size=5))
            )
    else:
        docs = draw(st.lists(_good_doc(), max_size=6))
        seen: set[str] = set()
        lines = []
        for doc in docs:
            doc_id = str(doc.get("_id", doc.get("id")))
            if doc_id not in seen:
                seen.add(doc_id)
                lines.append(json.dumps(doc, ensure_ascii=draw(st.booleans())).encode())
        has_docs = bool(seen)
        duplicate = st.sampled_from(lines) if lines else _bad_line()  # a repeated id is bad too
        if draw(st.booleans()):
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from([b"", b"  "])))
        if broken:
            bad = draw(st.one_of(_bad_line(), duplicate))
            lines.insert(draw(st.integers(0, len(lines))), bad)
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    body = eol.join(lines) + (eol if draw(st.booleans()) else b"")
    if draw(st.integers(0, 9)) == 0:
        body = b"\xef\xbb\xbf" + body  # a byte-order mark
    return suffix, body, broken, has_docs


_FUZZ_TALLY = {0: 0, 2: 0}


def _quick_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """``path -> (size, mtime_ns)``: any write to a file changes its mtime."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def fuzz_store(base_store, tmp_path) -> dict[str, Any]:
    """One store for all the examples of a run, and what it must hold (updated as runs pass)."""
    shutil.copytree(base_store, tmp_path / "store")
    return {"store": tmp_path / "store", "docs": dict(BASE_DOCS)}


#: Corpora per run (``benchmarks/bench_reliability.py`` raises it for the report).
FUZZ_CORPORA = int(os.environ.get("LATENTLEX_FUZZ_CORPORA", "40"))


@settings(FUZZ, max_examples=FUZZ_CORPORA)
@given(corpus=_corpus(), recreate=st.booleans())
def test_cli_index_fuzzed_corpora(corpus, recreate, fuzz_store, tiny_sae_dir, fast_cli, tmp_path):
    """Exit 0 or 2 only, never a traceback; on 2 a one-line error naming the corpus and the store
    unchanged; on 0 the store holds what it held and what the corpus holds (only the corpus with
    --recreate)."""
    from latentlex.corpus import read_corpus

    suffix, body, broken, has_docs = corpus
    store = fuzz_store["store"]
    path = tmp_path / f"corpus{suffix}"
    path.write_bytes(body)
    before = _quick_snapshot(store)
    argv = ["index", "--corpus", str(path), "--sae", str(tiny_sae_dir), "--store", str(store)]
    rc, _, err = cli(*argv, "--quiet", *(["--recreate"] if recreate else []))
    assert rc in (0, 2), (rc, err[-2000:])
    # a corpus with a bad line, or without any document, is refused; every other is taken
    assert rc == (2 if broken or not has_docs else 0), err[-2000:]
    _FUZZ_TALLY[rc] += 1
    if rc == 2:
        assert str(path) in error_line(err)
        assert _quick_snapshot(store) == before
    else:
        docs = {d.id: d.text for d in read_corpus(path)}
        fuzz_store["docs"] = docs if recreate else {**fuzz_store["docs"], **docs}
        assert stored_texts(store, fast_cli) == fuzz_store["docs"]


# ------------------------------------------------------------------------ tampered SAE folders


@pytest.fixture(scope="module")
def tamper(tiny_sae_dir, tmp_path_factory) -> dict[str, Any]:
    from untrusted_worker import make_cases, run_probe

    return run_probe(make_cases(tmp_path_factory.mktemp("tamper"), tiny_sae_dir))


@pytest.mark.timeout(600)
def test_tampered_sae_folders_are_refused_with_bounded_memory(tamper):
    from untrusted_worker import ENTRY_POINTS, EXPECT

    rows = tamper["rows"]
    assert {r["case"] for r in rows} == set(EXPECT)
    assert len(rows) == len(EXPECT) * len(ENTRY_POINTS)
    for r in rows:
        want = EXPECT[r["case"]]
        assert r["outcome"] != "crashed", r
        if want == "refuse":
            assert r["outcome"] == "refused", r
        else:
            assert r["outcome"] == "loaded", r
            # a link the user passed is theirs to follow; a link inside the folder is not
            assert r["outside_weights"] == (r["case"] == "folder_itself_a_link"), r
            if want == "load_no_labels":
                assert r["labels"] == 0, r
        assert r["seconds"] < 5, r
        assert r["rss_growth_mib"] < 64, r
    refused = [r for r in rows if "link" in r["case"] and r["outcome"] == "refused"]
    links = [r for r in refused if "loop" not in r["case"]]
    assert links and all("leads outside the SAE folder" in r["message"] for r in links)
    loops = [r for r in refused if "loop" in r["case"]]
    assert all("cannot be resolved" in r["message"] for r in loops)
    print(
        f"\n[untrusted] tamper suite: {len(rows)} loads, "
        f"{sum(r['outcome'] == 'refused' for r in rows)} refused, max refusal "
        f"{max(r['seconds'] for r in rows if r['outcome'] == 'refused') * 1000:.1f} ms, max RSS "
        f"growth {max(r['rss_growth_mib'] for r in rows):.1f} MiB"
    )


def _sae_copy(tiny_sae_dir: Path, tmp_path: Path, **cfg_edit: Any) -> Path:
    folder = tmp_path / "sae"
    shutil.copytree(tiny_sae_dir, folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg.update(cfg_edit)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize(
    "name",
    [
        "/etc",
        "/",
        "~",
        "~/models/x",
        "../outside/model",
        "./model",
        "C:\\models\\x",
        "a/../b",
        "here-model",
        "org/model/extra",
        "org/.",
    ],
)
def test_cfg_backbone_path_is_never_followed(name, tiny_sae_dir, tmp_path, monkeypatch):
    import latentlex.terms as terms

    monkeypatch.chdir(tmp_path)
    (tmp_path / "here-model").mkdir()  # a local folder of that name: still a path, refused
    folder = _sae_copy(tiny_sae_dir, tmp_path, backbone=name)

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a backbone was loaded from {args[0]!r}")

    monkeypatch.setattr(terms, "Backbone", no_load)
    with pytest.raises(ConfigError, match="not a model name"):
        terms.LatentTermEncoder(str(folder))


def test_cfg_backbone_model_name_and_user_path_are_taken(tiny_sae_dir, tmp_path, monkeypatch):
    import latentlex.terms as terms

    folder = _sae_copy(tiny_sae_dir, tmp_path, backbone="sentence-transformers/all-mpnet-base-v2")
    seen = []

    def record(model: Any, **kwargs: Any) -> Any:
        seen.append(model)
        raise LookupError("stop here")

    monkeypatch.setattr(terms, "Backbone", record)
    with pytest.raises(LookupError):
        terms.LatentTermEncoder(str(folder))
    with pytest.raises(LookupError):
        terms.LatentTermEncoder(str(folder), "/a/path/the/user/passed")
    assert seen == ["sentence-transformers/all-mpnet-base-v2", "/a/path/the/user/passed"]


def test_cfg_max_seq_length_is_checked_against_the_backbone(tiny_sae_dir, tmp_path, capsys):
    from latentlex.terms import LatentTermEncoder

    folder = _sae_copy(tiny_sae_dir, tmp_path, max_seq_length=10**9)
    with pytest.raises(ConfigError, match=r"max_seq_length 1000000000 is more than .* \(512"):
        LatentTermEncoder(str(folder))
    rc, _, err = cli("encode", "hello", "--sae", str(folder))
    assert rc == 2 and "max_seq_length" in error_line(err)


def test_dimension_mismatch_message_does_not_contradict_itself():
    from latentlex.errors import BackboneMismatchError
    from latentlex.sae import SAEConfig, SparseAutoencoder

    sae = SparseAutoencoder(SAEConfig(d_in=256, width=32, k=4, backbone="m", backbone_dim=384))
    with pytest.raises(BackboneMismatchError) as e:
        sae.check_backbone("m", None, 384)
    message = str(e.value)
    assert "d_in" in message and "256" in message and "384" in message
    assert "(dim 384" not in message.split("used with")[0]


def test_sae_id_never_lists_a_folder(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    for name in ("secret-plans.txt", "diary.json", "model.bin", "weights.safetensors"):
        (home / name).write_text("x")
    monkeypatch.setenv("HOME", str(home))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(doc_line(1) + "\n")
    for sae in ("~", str(home), "/etc"):
        rc, _, err = index_cli(corpus, sae, tmp_path / "s")
        message = error_line(err)
        assert rc == 2 and "not an SAE folder" in message
        for name in ("secret-plans", "diary", "model.bin", "weights.safetensors", "passwd"):
            assert name not in message, message


@pytest.mark.parametrize("repo", ["a/.", "a/..", "a/-b", "a/b.", "-a/b", "a//b", "a/b--c", "."])
def test_bad_hub_ids_are_one_line_errors(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, _, err = cli("pull", "--", repo)
    assert rc == 2, err
    error_line(err)


# ---------------------------------------------------------------------- small user mistakes


def test_folder_arguments_that_are_files(tmp_path, tiny_sae_dir):
    f = tmp_path / "file"
    f.write_text("x")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(doc_line(1) + "\n")
    cases = [
        ["train", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--cache-dir", str(f)],
        ["train", "--corpus", str(corpus), "--out", str(f)],
        ["train", "--corpus", str(corpus), "--out", str(f / "below")],
        ["index", "--corpus", str(corpus), "--sae", str(tiny_sae_dir), "--store", str(f)],
        ["info", "--store", str(f)],
        ["eval", "--dataset", str(tmp_path), "--out", str(f)],
    ]
    for argv in cases:
        rc, _, err = cli(*argv)
        assert rc == 2 and "not a folder" in error_line(err), (argv, err)


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--dataset", "x", "--queries", "0"],
        ["eval", "--dataset", "x", "--queries", "-3"],
        ["search", "q", "--sae", "s", "--k", "0"],
        ["search", "q", "--sae", "s", "--explain-top", "0"],
        ["encode", "t", "--sae", "s", "--top", "0"],
        ["index", "--corpus", "c", "--sae", "s", "--batch-size", "x"],
    ],
)
def test_numbers_below_one_are_refused_by_the_parser(argv):
    rc, _, err = cli(*argv)
    assert rc == 2 and "Traceback" not in err
    assert "must be >= 1" in err or "whole number" in err


def _beir(root: Path, corpus: bytes, queries: bytes = b'{"_id": "q", "text": "x"}\n') -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_bytes(corpus)
    (root / "queries.jsonl").write_bytes(queries)
    (root / "qrels" / "test.tsv").write_bytes(b"query-id\tcorpus-id\tscore\nq\td\t1\n")
    return root


@pytest.mark.parametrize(
    "corpus, queries, message",
    [
        (b"", None, "corpus.jsonl: the corpus holds no documents"),
        (b"\n\n", None, "holds no documents"),
        (b'{"_id": "d", "text": "caf\xe9"}\n', None, "corpus.jsonl:1: not valid UTF-8"),
        (b'{"_id": "d", "text": "ok"}\n' + b"[" * 50_000, None, "corpus.jsonl:2: JSON nested"),
        (b'{"_id": "d", "text": null}\n', None, "corpus.jsonl:1: field 'text'"),
        (b'{"_id": "d", "text": "ok"}\n', b'{"_id": "q", "text": "\xff"}\n', "queries.jsonl:1"),
    ],
)
def test_eval_on_bad_datasets(corpus, queries, message, tmp_path, monkeypatch):
    import latentlex.backbone as backbone

    monkeypatch.setattr(backbone, "Backbone", lambda *a, **k: pytest.fail("model loaded"))
    root = _beir(tmp_path / "ds", corpus, *([queries] if queries else []))
    rc, _, err = cli("eval", "--dataset", str(root), "--systems", "bm25")
    assert rc == 2 and message in error_line(err)


def test_filter_json_is_capped_before_the_model_loads(tiny_sae_dir, tmp_path, monkeypatch):
    import latentlex.index as index_mod

    monkeypatch.setattr(index_mod, "LatentIndex", lambda *a, **k: pytest.fail("index opened"))
    store = ["--sae", str(tiny_sae_dir), "--store", str(tmp_path / "s")]
    for value, message in [
        ("[" * 100_000 + "]" * 100_000, "over the 65,536-byte limit"),
        ("[" * 9 + "]" * 9, "nested deeper than 8"),
        ('{"a": ' * 5000 + "1" + "}" * 5000, "nested deeper than 8"),
        ("[1, 2", "invalid JSON"),
    ]:
        rc, _, err = cli("search", "q", *store, "--filter", f"k={value}")
        assert rc == 2 and message in error_line(err), err


def test_corpus_from_a_pipe(tmp_path, tiny_sae_dir, fast_cli, store):
    fifo = tmp_path / "corpus.fifo"
    os.mkfifo(fifo)
    lines = [doc_line(i) for i in range(5)]

    def feed() -> None:
        with fifo.open("w") as fh:
            fh.write("\n".join(lines) + "\n")

    writer = threading.Thread(target=feed)
    writer.start()
    rc, out, err = cli(
        "index", "--corpus", str(fifo), "--sae", str(tiny_sae_dir), "--store", str(store), "--quiet"
    )
    writer.join(timeout=30)
    assert rc == 0, err
    assert "indexed 5 documents (20 before, 25 now)" in out


def test_folder_corpus_ids_by_relative_path(tmp_path):
    from latentlex.corpus import read_corpus

    for sub in ("a", "b", "b/c"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        (tmp_path / sub / "notes.txt").write_text(f"first in {sub}\nsecond in {sub}\n")
    (tmp_path / "top.txt").write_text("top\n")
    ids = [d.id for d in read_corpus(tmp_path)]
    assert ids == [
        "a/notes:1",
        "a/notes:2",
        "b/c/notes:1",
        "b/c/notes:2",
        "b/notes:1",
        "b/notes:2",
        "top:1",
    ]


def test_corpus_errors_name_the_place(tmp_path):
    from latentlex.corpus import read_corpus
    from latentlex.errors import CorpusError

    f = tmp_path / "c.jsonl"
    f.write_bytes(
        b'{"_id": "a", "text": "x"}\n\n{"_id": "b", "text": "y"}\n{"_id": "a", "text": "z"}\n'
    )
    with pytest.raises(
        CorpusError, match=r"c.jsonl:4: duplicate document id 'a' \(first at .*c.jsonl:1\)"
    ):
        list(read_corpus(f))
    f.write_bytes(b'\xef\xbb\xbf{"_id": "a", "text": "x"}\r\n{"_id": "b", "text": "caf\xc3"}\r\n')
    with pytest.raises(CorpusError, match=r"c.jsonl:2: not valid UTF-8 \(byte 26"):
        list(read_corpus(f))
    f.write_bytes(b'\xef\xbb\xbf{"_id": "a", "text": "x"}\r\n')
    assert [(d.id, d.text) for d in read_corpus(f)] == [("a", "x")]


def test_a_line_over_the_cap_is_refused_without_reading_it_whole(tmp_path, monkeypatch):
    import latentlex.corpus as corpus
    from latentlex.errors import CorpusError

    monkeypatch.setattr(corpus, "MAX_LINE_BYTES", 1000)
    f = tmp_path / "c.jsonl"
    f.write_text(doc_line(1) + "\n" + json.dumps({"_id": "x", "text": "y" * 5000}) + "\n")
    with pytest.raises(CorpusError, match=r"c.jsonl:2: line longer than 1,000 bytes"):
        list(corpus.read_corpus(f))


# ------------------------------------------------------------------------------------ secrets


_SECRET = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
    min_size=6,
    max_size=24,
)


@settings(FUZZ, max_examples=300)
@given(
    password=_SECRET,
    key=_SECRET.filter(
        lambda s: not any(c in s for c in "&#;'\"<>") and not any(c.isspace() for c in s)
    ),
)
def test_redact_url_hides_any_password_and_api_key(password, key):
    """Whatever the password holds ('/', '#', '?', '@', spaces, any script), nothing of it
    shows; nor does an ``api_key=`` value."""
    from latentlex._redact import redact_text, redact_url, url_secrets

    cases = {
        f"http://user:{password}@db.example:6333/path": "http://***@db.example:6333/path",
        f"https://{password}@db.example": "https://***@db.example",
        f"http://db.example:6333/?api_key={key}&x=1": "http://db.example:6333/?api_key=***&x=1",
        f"http://db.example:6333/?x=1&API-KEY={key}": "http://db.example:6333/?x=1&API-KEY=***",
    }
    for url, shown in cases.items():
        secret = key if "api" in url.lower() else password
        if "@" in key and secret == key:  # an '@' anywhere reads as user-info: more is hidden
            assert key not in redact_url(url)
        else:
            assert redact_url(url) == shown
        assume(secret not in "cannot reach : refused ()")
        text = redact_text(f"cannot reach {url}: refused ({url})", url_secrets(url))
        assert secret not in text, text


def test_every_cli_message_redacts_the_url(tmp_path, tiny_sae_dir, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("QDRANT_API_KEY", "KEY-in-the-environment")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(doc_line(1) + "\n")
    secrets = ["PASS", "p/ss#w?rd", "SECRETQUERY", "KEY-in-the-environment"]
    urls = [
        f"http://user:PASS@127.0.0.1:{port}",
        f"http://user:p/ss#w?rd@127.0.0.1:{port}",
        f"http://127.0.0.1:{port}/?api_key=SECRETQUERY",
        "http://user:PASS@127.0.0.1:notaport",
        f"user:PASS@127.0.0.1:{port}",
    ]
    import latentlex.index as index_mod

    monkeypatch.setattr(index_mod.LatentIndex, "__init__", lambda *a, **k: pytest.fail("opened"))
    for url in urls:
        for argv in (
            ["info", "--url", url],
            ["index", "--corpus", str(corpus), "--sae", str(tiny_sae_dir), "--url", url],
        ):
            rc, out, err = cli(*argv)
            assert rc == 2, err
            line = error_line(err)
            assert not [s for s in secrets if s in out + err], line


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pa/ss@127.0.0.1:1",
        "http://u:SECRETPW@127.0.0.1:1/?api_key=QKEY",
        "http://u:SECRETPW@127.0.0.1:1",
    ],
)
def test_client_store_errors_redact(url):
    from latentlex.errors import StoreError
    from latentlex.store import ClientStore

    shown = []
    with pytest.raises(StoreError) as e:
        store = ClientStore(url, api_key="THE-KEY-1234", timeout=1)
        shown.append(repr(store))
        store.count()
    text = str(e.value) + " ".join(shown)
    assert not [s for s in ("pa/ss", "SECRETPW", "QKEY", "THE-KEY-1234") if s in text], text


def test_cli_log_lines_are_redacted():
    from latentlex.cli import _RedactingFilter

    record = logging.LogRecord(
        "x",
        logging.WARNING,
        __file__,
        1,
        "connecting to %s now",
        ("http://u:p#ss@h:1/?token=T0KEN",),
        None,
    )
    assert _RedactingFilter().filter(record)
    assert record.getMessage() == "connecting to http://***@h:1/?token=*** now"


# --------------------------------------------------------------------- one huge document


def test_a_20mb_document_reaches_the_tokeniser_as_a_bounded_prefix(backbone, monkeypatch):
    seen: list[int] = []
    tok = backbone.tokenizer
    real_call = type(tok).__call__

    def spy(self, text, *args, **kwargs):
        items = [text] if isinstance(text, str) else list(text)
        seen.extend(len(t) for t in items)
        return real_call(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tok), "__call__", spy)
    huge = "The quick brown fox jumps over the lazy dog. " * 450_000  # 20 MB
    words = "x" * 300 + " " + "a" * 25_000_000  # a 25 MB word: one [UNK] token however long
    out = backbone.forward([huge, words, "short text"])
    assert out.truncated == 2
    assert seen and max(seen) <= backbone.max_seq_length * 1024
    assert int(out.lengths[0]) == backbone.max_seq_length - 2  # [CLS] and [SEP] dropped


def test_cutting_leaves_token_states_of_long_documents_unchanged(backbone, monkeypatch):
    import latentlex.backbone as bb
    from conftest import SHARED_DATA

    path = SHARED_DATA / "scifact" / "corpus.jsonl"
    if not path.is_file():
        pytest.skip("scifact not available")
    texts = []
    with path.open() as fh:
        for _, line in zip(range(60), fh, strict=False):
            texts.append(json.loads(line)["text"])
    docs = [" ".join(texts[i : i + 12]) for i in range(0, 48, 4)]  # 12 docs of 8-20k characters
    docs += ["é " * 5000, "中" * 9000, " " * 10_000 + "hello world", "word\t" * 3000]
    assert min(len(d) for d in docs) > backbone.max_seq_length * bb._CHARS_PER_TOKEN
    cut = backbone.forward(docs)
    monkeypatch.setattr(bb, "_CHARS_PER_TOKEN", 10**9)
    monkeypatch.setattr(bb, "_MAX_CHARS_PER_TOKEN", 10**9)
    whole = backbone.forward(docs)
    assert torch.equal(cut.lengths, whole.lengths)
    assert torch.equal(cut.token_states, whole.token_states)
    assert torch.equal(cut.dense, whole.dense)


# ------------------------------------------------- the other JSON files latentlex reads


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"latentlex": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper than 64"),
        ('{"latentlex": {"pad": "' + "x" * (2 << 20) + '"}}', "over the 1,048,576-byte limit"),
        ('{"latentlex": {"dense_dim": "many"}}', "not a latentlex collection record"),
        ("\xff", "not valid UTF-8"),
    ],
)
def test_a_tampered_collection_record_is_a_one_line_error(content, message, store, fast_cli):
    from latentlex.errors import StoreError
    from latentlex.index import LatentIndex

    sidecar = store / "latentlex" / "latentlex.json"
    sidecar.write_bytes(
        content.encode("utf-8", "surrogateescape") if content != "\xff" else b"\xff"
    )
    rc, _, err = cli("info", "--store", str(store))
    assert rc == 2 and str(sidecar) in error_line(err)
    if "record" not in message:
        assert message in error_line(err)
        with pytest.raises(StoreError, match=message):
            LatentIndex(fast_cli, store)


def test_a_tampered_token_state_folder_is_a_one_line_error(tmp_path, backbone):
    from latentlex.states import TokenStates, encode_token_states

    folder = tmp_path / "states"
    encode_token_states(backbone, ["a", "b"], ["one text", "another text"], folder)
    (folder / "doc_ids.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(LatentLexError, match=r"doc_ids\.json: JSON nested deeper"):
        TokenStates.open(folder)
    (folder / "meta.json").write_text('"just a string"')
    with pytest.raises(LatentLexError, match=r"meta\.json: not a token-state record"):
        TokenStates.open(folder)


# ------------------------------------------------------------- command-line arguments


@pytest.mark.parametrize(
    "argv",
    [
        ["encode", "caf\udce9", "--sae", "s"],
        ["search", "caf\udce9", "--sae", "s"],
        ["search", "q", "--sae", "s", "--filter", "k\udcff=1"],
        ["search", "q", "--sae", "s", "--filter", "k=v\udcff"],
        ["search", "q", "--sae", "s", "--collection", "c\udcff"],
        ["inspect", "--sae", "s", "--word", "\udcff"],
    ],
)
def test_text_arguments_that_are_not_utf8(argv, monkeypatch):
    import latentlex.backbone as bb

    monkeypatch.setattr(bb, "Backbone", lambda *a, **k: pytest.fail("model loaded"))
    rc, _, err = cli(*argv)
    assert rc == 2 and "not valid UTF-8" in error_line(err)


def test_file_system_refusals_are_one_line_errors(tmp_path):
    long = "x" * 500
    for argv in (
        ["pull", long],
        ["index", "--corpus", str(tmp_path / long), "--sae", "s", "--store", str(tmp_path)],
        ["train", "--corpus", str(tmp_path / long), "--out", str(tmp_path / "o")],
    ):
        rc, _, err = cli(*argv)
        assert rc == 2, err
        assert "name too long" in error_line(err).lower()


def test_search_on_a_missing_collection_creates_nothing(tmp_path, tiny_sae_dir, monkeypatch):
    import latentlex.index as index_mod

    monkeypatch.setattr(index_mod, "LatentIndex", lambda *a, **k: pytest.fail("index opened"))
    store = tmp_path / "typo"
    rc, _, err = cli("search", "q", "--sae", str(tiny_sae_dir), "--store", str(store))
    assert rc == 2 and "no latentlex collection 'latentlex'" in error_line(err)
    assert not store.exists()


def test_a_folder_that_is_not_a_model(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(doc_line(1) + "\n")
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "not-a-model" / "config.json").write_text("{}")
    rc, _, err = cli(
        "train",
        "--corpus",
        str(corpus),
        "--out",
        str(tmp_path / "o"),
        "--model",
        str(tmp_path / "not-a-model"),
    )
    assert rc == 2 and "could not load the backbone" in error_line(err)


def test_huge_numbers_are_refused_by_the_parser(tmp_path):
    rc, _, err = cli("index", "--corpus", "c", "--sae", "s", "--chunk-size", "9" * 30)
    assert rc == 2 and "must be <=" in err


def test_labelling_a_20mb_document_tokenises_a_bounded_prefix(tiny_sae_dir, backbone, monkeypatch):
    from latentlex.labels import label_latents

    seen: list[int] = []
    tok = backbone.tokenizer
    real_call = type(tok).__call__

    def spy(self, text, *args, **kwargs):
        seen.extend(len(t) for t in ([text] if isinstance(text, str) else list(text)))
        return real_call(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tok), "__call__", spy)
    huge = "Quokkas live on Rottnest Island near Perth. " * 450_000
    labels = label_latents(str(tiny_sae_dir), [huge, "otters hold hands"], backbone, batch_size=2)
    assert len(labels) > 0
    assert max(seen) <= backbone.max_seq_length * 1024


def test_zz_fuzz_tally():
    """Print how many fuzzed corpora were taken and refused (for the reliability report); last in
    the file so that it runs after the fuzzer."""
    if sum(_FUZZ_TALLY.values()):
        print(f"\n[untrusted] fuzzed corpora: {_FUZZ_TALLY[0]} indexed, {_FUZZ_TALLY[2]} refused")


def test_two_recreates_of_one_store_do_not_meet(store, tiny_sae_dir, tmp_path, fast_cli):
    """A second ``index --recreate`` while one runs is refused before it touches anything (the
    first one's half-built collection is not removed under it)."""
    from latentlex.cli import _flock

    half_built = store / "latentlex.latentlex-new"
    half_built.mkdir()
    (half_built / "marker").write_text("being written")
    fd = _flock(store, "test")  # what a running recreate holds
    try:
        corpus = tmp_path / "c.jsonl"
        corpus.write_text(doc_line(1) + "\n")
        rc, _, err = index_cli(corpus, tiny_sae_dir, store, "--recreate")
        assert rc == 2 and "another `latentlex index --recreate`" in error_line(err)
        assert (half_built / "marker").is_file()
    finally:
        os.close(fd)
