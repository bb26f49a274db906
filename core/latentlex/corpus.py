"""Reading corpora: BEIR ``corpus.jsonl``, plain ``.txt`` (one document per line), or a folder of either.

A corpus is untrusted input, read with bounded memory: one line at a time (at most
:data:`MAX_LINE_BYTES`), JSON nesting capped (:func:`latentlex.safeio.loads_capped`), and every
document checked against what the index can store (id, text, metadata: no NaN, no lone
surrogate, ints within 64 bits, at most 32 levels) so that a corpus that validates is written
without failing half-way. Errors are one line naming ``file:line`` and the field.

A corpus may also be a pipe (``<(cat corpus.jsonl)``, ``/dev/stdin``): it is copied once into a
temporary file (its format guessed from its first line when its name has no suffix), so that it
can be validated and then read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._validate import check_json_value, has_surrogate
from .errors import CorpusError
from .safeio import MAX_JSON_DEPTH, loads_capped

__all__ = [
    "MAX_LINE_BYTES",
    "CorpusFile",
    "Document",
    "corpus_files",
    "count_documents",
    "iter_jsonl",
    "iter_lines",
    "open_corpus",
    "read_corpus",
    "validate_corpus",
]

_SUFFIXES = (".jsonl", ".txt")
#: The longest line (one document) a corpus may hold.
MAX_LINE_BYTES = 64 << 20
_BOM = b"\xef\xbb\xbf"


@dataclass
class Document:
    """One document: an id, its text (title and body joined) and free metadata."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CorpusFile:
    """One file of a corpus: where it is read from, how messages name it, its format, and the
    prefix of its ``.txt`` document ids (``<prefix>:<line>``)."""

    path: Path
    name: str
    kind: str
    id_prefix: str


def _kind(p: Path) -> str:
    if p.suffix not in _SUFFIXES:
        raise CorpusError(f"{p}: unsupported corpus file type {p.suffix!r}; use .jsonl or .txt")
    return p.suffix[1:]


def _is_pipe(p: Path) -> bool:
    try:
        mode = p.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _spool(p: Path, folder: Path) -> CorpusFile:
    """Copy a pipe into ``folder`` (line by line, each line capped) so it can be read twice."""
    out = folder / "corpus"
    first = b""
    try:
        with p.open("rb") as src, out.open("wb") as dst:
            lineno = 0
            while True:
                line = src.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                lineno += 1
                if len(line) > MAX_LINE_BYTES:
                    raise CorpusError(f"{p}:{lineno}: line longer than {MAX_LINE_BYTES:,} bytes")
                if not first and line.strip():
                    first = line.removeprefix(_BOM).lstrip()
                dst.write(line)
    except OSError as e:
        raise CorpusError(f"{p}: cannot read ({e.strerror or e})") from None
    kind = p.suffix[1:] if p.suffix in _SUFFIXES else ("jsonl" if first[:1] == b"{" else "txt")
    return CorpusFile(out, str(p), kind, p.stem or "stdin")


@contextlib.contextmanager
def open_corpus(path: str | os.PathLike[str]) -> Iterator[list[CorpusFile]]:
    """The files of a corpus path, readable as many times as needed until the block ends.

    A file, a folder (its ``.jsonl``/``.txt`` files, recursively; a BEIR folder's
    ``corpus.jsonl`` only) or a pipe (copied into a temporary file, removed afterwards).

    Raises:
        CorpusError: no such path, an unsupported file type, or a folder without corpus files.
    """
    p = Path(path)
    if p.is_file():
        yield [CorpusFile(p, str(p), _kind(p), p.stem)]
    elif p.is_dir():
        if (p / "corpus.jsonl").is_file():
            # A BEIR folder holds queries.jsonl beside corpus.jsonl: take only the corpus then.
            files = [p / "corpus.jsonl"]
        else:
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in _SUFFIXES)
        if not files:
            raise CorpusError(f"{p}: no .jsonl or .txt files in this folder")
        # .txt ids by relative path: a/notes.txt and b/notes.txt do not clash
        yield [
            CorpusFile(f, str(f), f.suffix[1:], f.relative_to(p).with_suffix("").as_posix())
            for f in files
        ]
    elif _is_pipe(p):
        tmp = Path(tempfile.mkdtemp(prefix="latentlex-corpus-"))
        try:
            yield [_spool(p, tmp)]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    elif p.exists():
        raise CorpusError(f"{p}: not a file, a folder or a pipe")
    else:
        raise CorpusError(f"{p}: no such file or folder")


def corpus_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files a corpus path stands for: the file itself, or the ``.jsonl``/``.txt`` files of a folder."""
    p = Path(path)
    if _is_pipe(p):
        raise CorpusError(f"{p}: a pipe has no files; read it with read_corpus or open_corpus")
    with open_corpus(p) as files:
        return [f.path for f in files]


def iter_lines(file: CorpusFile) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a file, each line decoded on its own (bounded memory)."""
    try:
        fh = file.path.open("rb")
    except OSError as e:
        raise CorpusError(f"{file.name}: cannot open ({e.strerror or e})") from None
    with fh:
        lineno = 0
        while True:
            try:
                raw = fh.readline(MAX_LINE_BYTES + 1)
            except OSError as e:
                raise CorpusError(f"{file.name}: cannot read ({e.strerror or e})") from None
            if not raw:
                return
            lineno += 1
            if len(raw) > MAX_LINE_BYTES:
                raise CorpusError(
                    f"{file.name}:{lineno}: line longer than {MAX_LINE_BYTES:,} bytes; split "
                    "this document"
                )
            if lineno == 1:
                raw = raw.removeprefix(_BOM)
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CorpusError(
                    f"{file.name}:{lineno}: not valid UTF-8 (byte {e.start + 1} of the line: "
                    f"{e.reason}); re-encode the file as UTF-8"
                ) from None


def iter_jsonl(file: CorpusFile | str | os.PathLike[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(place, object)`` of each non-blank line of a JSONL file; ``place`` is ``file:line``.

    Raises:
        CorpusError: a line that is not UTF-8, over :data:`MAX_LINE_BYTES`, not JSON, nested
            deeper than 64 levels, or not a JSON object.
    """
    if not isinstance(file, CorpusFile):
        p = Path(file)
        file = CorpusFile(p, str(p), "jsonl", p.stem)
    for lineno, line in iter_lines(file):
        if not line.strip():
            continue
        where = f"{file.name}:{lineno}"
        obj = loads_capped(
            line,
            where=where,
            max_bytes=MAX_LINE_BYTES,
            max_depth=MAX_JSON_DEPTH,
            error=CorpusError,
        )
        if not isinstance(obj, dict):
            raise CorpusError(f"{where}: expected a JSON object, got {_json_type(obj)}")
        yield where, obj


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(v), "a number"
    )


def _field_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        if isinstance(value, str) and has_surrogate(value):
            raise CorpusError(
                f"{where}: field {key!r} holds a lone surrogate (\\ud800-\\udfff), which is "
                "not valid UTF-8 text"
            )
        return value
    raise CorpusError(f"{where}: field {key!r} must be a string, got {_json_type(value)}")


def parse_document(obj: dict[str, Any], where: str) -> Document:
    """A corpus JSON object as a :class:`Document`, checked as the index will store it.

    Raises:
        CorpusError: naming ``where``, the field and the value.
    """
    key = "_id" if "_id" in obj else "id"
    doc_id = obj.get(key)
    if doc_id is None:
        raise CorpusError(f"{where}: missing '_id' (or 'id')")
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise CorpusError(f"{where}: field {key!r} must be a string, got {_json_type(doc_id)}")
    doc_id = str(doc_id)
    if not doc_id:
        raise CorpusError(f"{where}: field {key!r} is empty: document ids must be non-empty")
    if has_surrogate(doc_id):
        raise CorpusError(f"{where}: field {key!r} holds a lone surrogate (not valid UTF-8)")
    title = _field_str(obj, "title", where) or ""
    text_key = "text" if "text" in obj or "contents" not in obj else "contents"
    if text_key not in obj:
        raise CorpusError(f"{where}: missing 'text' (document {doc_id!r})")
    text = _field_str(obj, text_key, where)
    if text is None:
        raise CorpusError(f"{where}: field {text_key!r} is null (document {doc_id!r})")
    meta = obj.get("metadata")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise CorpusError(f"{where}: field 'metadata' must be an object, got {_json_type(meta)}")
    try:
        check_json_value(meta, "field 'metadata'")
    except (TypeError, ValueError) as e:
        raise CorpusError(f"{where}: {e}") from None
    if title:
        meta = {**meta, "title": title}
    full = f"{title} {text}".strip() if title else text.strip()
    return Document(doc_id, full, meta)


def _iter_file(file: CorpusFile) -> Iterator[tuple[str, Document]]:
    if file.kind == "jsonl":
        for where, obj in iter_jsonl(file):
            yield where, parse_document(obj, where)
        return
    for lineno, line in iter_lines(file):
        text = line.strip()
        if text:
            yield (
                f"{file.name}:{lineno}",
                Document(f"{file.id_prefix}:{lineno}", text, {"source": file.name}),
            )


def _documents(files: Iterable[CorpusFile]) -> Iterator[tuple[str, Document]]:
    for f in files:
        yield from _iter_file(f)


def validate_corpus(files: list[CorpusFile]) -> int:
    """Check every document of a corpus (one streaming pass); return how many it holds.

    Memory: one line at a time plus 8 bytes per document (a hash of its id, for duplicates).

    Raises:
        CorpusError: the first bad line (``file:line``, field, value), a duplicate id (both
            places named), or a corpus without any document.
    """
    hashes = array("q")
    for _, doc in _documents(files):
        hashes.append(hash(doc.id))
    if not hashes:
        names = ", ".join(f.name for f in files[:3])
        raise CorpusError(f"{names}: the corpus holds no documents")
    import numpy as np

    arr = np.sort(np.frombuffer(hashes, dtype=np.int64))
    clash = arr[1:][arr[1:] == arr[:-1]]
    if clash.size:
        suspects = set(clash.tolist())
        first: dict[str, str] = {}
        for where, doc in _documents(files):
            if hash(doc.id) in suspects:
                if doc.id in first:
                    raise CorpusError(
                        f"{where}: duplicate document id {doc.id!r} (first at {first[doc.id]})"
                    )
                first[doc.id] = where
    return len(hashes)


def read_corpus(
    path: str | os.PathLike[str] | list[CorpusFile], *, validate: bool = True
) -> Iterator[Document]:
    """Stream the documents of a corpus.

    With ``validate=True`` (default) every file is checked in one streaming pass before the first
    document is yielded (:func:`validate_corpus`), so a malformed line, a duplicate id or an empty
    corpus raises :class:`CorpusError` (naming file and line) before a caller has written
    anything. ``path`` may also be the files :func:`open_corpus` gave.

    Example:
        >>> docs = list(read_corpus("corpus.jsonl"))  # doctest: +SKIP
    """
    if isinstance(path, list):
        if validate:
            validate_corpus(path)
        for _, doc in _documents(path):
            yield doc
        return
    with open_corpus(path) as files:
        if validate:
            validate_corpus(files)
        for _, doc in _documents(files):
            yield doc


def count_documents(path: str | os.PathLike[str] | list[CorpusFile]) -> int:
    """Number of documents, without holding them (the corpus is validated on the way)."""
    if isinstance(path, list):
        return validate_corpus(path)
    with open_corpus(path) as files:
        return validate_corpus(files)


def stdlib_docstrings(max_docs: int | None = None, min_chars: int = 200) -> list[Document]:
    """A real English corpus present on every machine: docstrings of Python's standard library.

    Parsed with :mod:`ast` (nothing is imported); modules, classes and functions whose docstring has at
    least ``min_chars`` characters, in a stable order. Handy for fitting a demo SAE offline.
    """
    import ast
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    docs: list[Document] = []
    for file in sorted(root.rglob("*.py")):
        rel = file.relative_to(root)
        if any(
            part in {"test", "tests", "idlelib", "site-packages", "lib2to3"} for part in rel.parts
        ):
            continue
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        nodes = [
            tree,
            *(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef | ast.FunctionDef)),
        ]
        for node in nodes:
            doc = ast.get_docstring(node)  # type: ignore[arg-type]
            if doc and len(doc) >= min_chars:
                name = getattr(node, "name", "<module>")
                docs.append(
                    Document(f"{rel.as_posix()}:{name}", " ".join(doc.split()), {"file": str(rel)})
                )
                if max_docs is not None and len(docs) >= max_docs:
                    return docs
    return docs
