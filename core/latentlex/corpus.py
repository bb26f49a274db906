"""Reading corpora: BEIR ``corpus.jsonl``, plain ``.txt`` (one document per line), or a folder of either."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CorpusError

__all__ = ["Document", "corpus_files", "count_documents", "read_corpus"]

_SUFFIXES = (".jsonl", ".txt")


@dataclass
class Document:
    """One document: an id, its text (title and body joined) and free metadata."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def corpus_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files a corpus path stands for: the file itself, or the ``.jsonl``/``.txt`` files of a folder."""
    p = Path(path)
    if p.is_file():
        if p.suffix not in _SUFFIXES:
            raise CorpusError(f"{p}: unsupported corpus file type {p.suffix!r}; use .jsonl or .txt")
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in _SUFFIXES)
        # A BEIR folder holds queries.jsonl beside corpus.jsonl: take only the corpus then.
        if (p / "corpus.jsonl").is_file():
            files = [p / "corpus.jsonl"]
        if not files:
            raise CorpusError(f"{p}: no .jsonl or .txt files in this folder")
        return files
    raise CorpusError(f"{p}: no such file or folder")


def _parse_jsonl_line(line: str, file: Path, lineno: int) -> Document | None:
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{file}:{lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise CorpusError(f"{file}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    doc_id = obj.get("_id", obj.get("id"))
    if doc_id is None:
        raise CorpusError(f"{file}:{lineno}: missing '_id' (or 'id')")
    title = obj.get("title") or ""
    text = obj.get("text")
    if text is None:
        text = obj.get("contents", "")
    if not isinstance(title, str) or not isinstance(text, str):
        raise CorpusError(f"{file}:{lineno}: 'title' and 'text' must be strings")
    meta = obj.get("metadata") or {}
    if not isinstance(meta, dict):
        raise CorpusError(f"{file}:{lineno}: 'metadata' must be an object")
    if title:
        meta = {**meta, "title": title}
    full = f"{title} {text}".strip() if title else text.strip()
    return Document(str(doc_id), full, meta)


def _iter_file(file: Path) -> Iterator[Document]:
    try:
        fh = file.open(encoding="utf-8")
    except OSError as exc:
        raise CorpusError(f"{file}: cannot open ({exc.strerror})") from None
    with fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if file.suffix == ".jsonl":
                    doc = _parse_jsonl_line(line, file, lineno)
                    if doc is not None:
                        yield doc
                else:
                    text = line.strip()
                    if text:
                        yield Document(f"{file.stem}:{lineno}", text, {"source": str(file)})
        except UnicodeDecodeError as exc:
            raise CorpusError(f"{file}: not valid UTF-8 ({exc.reason})") from None


def read_corpus(path: str | os.PathLike[str], *, validate: bool = True) -> Iterator[Document]:
    """Stream the documents of a corpus.

    With ``validate=True`` (default) every file is parsed once before the first document is yielded, so a
    malformed line raises :class:`CorpusError` (naming file and line) before a caller has written anything.
    Duplicate ids raise too.

    Example:
        >>> docs = list(read_corpus("corpus.jsonl"))  # doctest: +SKIP
    """
    files = corpus_files(path)
    if validate:
        seen: set[str] = set()
        for f in files:
            for doc in _iter_file(f):
                if doc.id in seen:
                    raise CorpusError(f"{f}: duplicate document id {doc.id!r}")
                seen.add(doc.id)
    for f in files:
        yield from _iter_file(f)


def count_documents(path: str | os.PathLike[str]) -> int:
    """Number of documents, without holding them."""
    return sum(1 for f in corpus_files(path) for _ in _iter_file(f))


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
