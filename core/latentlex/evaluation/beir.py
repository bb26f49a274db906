"""Load BEIR-format datasets (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).

Example:
    >>> ds = load_beir("/work/shared/data/scifact")  # doctest: +SKIP
    >>> len(ds.corpus), len(ds.queries)  # doctest: +SKIP
    (5183, 300)
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from latentlex._validate import has_surrogate
from latentlex.corpus import CorpusFile, iter_jsonl, iter_lines
from latentlex.errors import CorpusError

__all__ = ["BeirDataset", "Document", "Qrels", "doc_text", "load_beir", "subset", "write_beir"]

logger = logging.getLogger(__name__)

Document = dict[str, str]
"""One corpus entry: ``{"title": ..., "text": ...}``."""

Qrels = dict[str, dict[str, int]]
"""Relevance judgements: ``{query_id: {doc_id: grade}}``."""


@dataclass
class BeirDataset:
    """A retrieval test collection in memory.

    Attributes:
        name: Dataset name (the folder name by default).
        corpus: ``{doc_id: {"title": str, "text": str}}`` in file order.
        queries: ``{query_id: text}``, only the queries judged in ``qrels``.
        qrels: ``{query_id: {doc_id: grade}}``.
    """

    name: str
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: Qrels
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def doc_ids(self) -> list[str]:
        """Document ids in corpus order."""
        return list(self.corpus)

    def doc_texts(self) -> list[str]:
        """``doc_text`` of every document, in corpus order."""
        return [doc_text(d) for d in self.corpus.values()]

    @property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of the corpus ids, titles and texts in order; a cache key."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for doc_id, doc in self.corpus.items():
                for part in (doc_id, doc.get("title", ""), doc.get("text", "")):
                    h.update(part.encode("utf-8"))
                    h.update(b"\x1f")
                h.update(b"\x1e")
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def __repr__(self) -> str:
        return (
            f"BeirDataset(name={self.name!r}, docs={len(self.corpus)}, "
            f"queries={len(self.queries)}, judgements={sum(map(len, self.qrels.values()))})"
        )


def doc_text(doc: Document) -> str:
    """The text a system indexes for a document: ``title + " " + text``, stripped."""
    return f"{doc.get('title', '') or ''} {doc.get('text', '') or ''}".strip()


def _iter_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    """``(file:line, object)`` per line, read as :mod:`latentlex.corpus` reads a corpus: one
    line at a time, UTF-8 and JSON errors with the line, size and nesting capped."""
    for where, obj in iter_jsonl(path):
        if "_id" not in obj:
            raise CorpusError(f"{where}: expected a JSON object with an '_id' field")
        yield where, obj


def _text(obj: dict, key: str, where: str, *, required: bool) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        shown = "null" if value is None else repr(value)[:40]
        raise CorpusError(f"{where}: field {key!r} must be a string, got {shown}")
    if has_surrogate(value):
        raise CorpusError(f"{where}: field {key!r} holds a lone surrogate (not valid UTF-8)")
    return value


def _id(obj: dict, where: str) -> str:
    value = obj["_id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise CorpusError(f"{where}: field '_id' must be a non-empty string, got {value!r:.40}")
    return str(value)


def _read_corpus(path: Path) -> dict[str, Document]:
    corpus: dict[str, Document] = {}
    first: dict[str, str] = {}
    for where, obj in _iter_jsonl(path):
        doc_id = _id(obj, where)
        if doc_id in corpus:
            raise CorpusError(
                f"{where}: duplicate document id {doc_id!r} (first at {first[doc_id]})"
            )
        first[doc_id] = where
        title = _text(obj, "title", where, required=False)
        if "text" not in obj:
            raise CorpusError(f"{where}: missing 'text' (document {doc_id!r})")
        corpus[doc_id] = {"title": title, "text": _text(obj, "text", where, required=True)}
    if not corpus:
        raise CorpusError(f"{path}: the corpus holds no documents")
    return corpus


def _read_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for where, obj in _iter_jsonl(path):
        if not isinstance(obj.get("text"), str):
            raise CorpusError(f"{where}: query needs a string 'text' field")
        queries[_id(obj, where)] = _text(obj, "text", where, required=True)
    return queries


def _read_qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    # read as a corpus is: one line at a time, UTF-8 errors with the line
    for lineno, raw in iter_lines(CorpusFile(path, str(path), "txt", path.stem)):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise CorpusError(
                f"{path}:{lineno}: expected 3 tab-separated fields "
                f"(query-id, corpus-id, score), got {len(parts)}"
            )
        qid, doc_id, score = parts
        try:
            grade = int(score)
        except ValueError:
            if lineno == 1:  # the header row: query-id corpus-id score
                continue
            raise CorpusError(
                f"{path}:{lineno}: relevance score {score!r} is not an integer"
            ) from None
        if not qid or not doc_id:
            raise CorpusError(f"{path}:{lineno}: empty query or document id")
        qrels.setdefault(qid, {})[doc_id] = grade
    return qrels


def load_beir(path: str | Path, split: str = "test", name: str | None = None) -> BeirDataset:
    """Load a BEIR-format dataset folder.

    Qrels are split on tabs only (ids may contain spaces); the header row is skipped. Queries are
    restricted to those judged in ``split``; judgements naming an unknown query are dropped with
    a warning, judgements naming an unknown document are kept (they count as misses).

    Args:
        path: Folder holding ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
        split: Qrels split to load (``test``, ``dev``, ``train``).
        name: Dataset name; defaults to the folder name.

    Returns:
        The dataset.

    Raises:
        CorpusError: A file is missing or malformed (the message names the file and line).

    Example:
        >>> ds = load_beir("/work/shared/data/limit-small")  # doctest: +SKIP
        >>> ds.qrels["query_0"]  # doctest: +SKIP
        {'Geneva Durben': 1, 'Dorathea Bastress': 1}
    """
    root = Path(path)
    files = {
        "corpus": root / "corpus.jsonl",
        "queries": root / "queries.jsonl",
        "qrels": root / "qrels" / f"{split}.tsv",
    }
    for kind, file in files.items():
        if not file.is_file():
            hint = (
                f"; available splits: {sorted(p.stem for p in (root / 'qrels').glob('*.tsv'))}"
                if kind == "qrels" and (root / "qrels").is_dir()
                else ""
            )
            raise CorpusError(f"{file} not found: {root} is not a BEIR-format folder{hint}")
    corpus = _read_corpus(files["corpus"])
    all_queries = _read_queries(files["queries"])
    qrels = _read_qrels(files["qrels"])
    missing_q = [q for q in qrels if q not in all_queries]
    if missing_q:
        logger.warning(
            "%s: %d judged queries missing from queries.jsonl; dropped",
            files["qrels"],
            len(missing_q),
        )
        for q in missing_q:
            del qrels[q]
    missing_d = {d for judged in qrels.values() for d in judged if d not in corpus}
    if missing_d:
        logger.warning(
            "%s: %d judged documents missing from the corpus", files["qrels"], len(missing_d)
        )
    queries = {q: t for q, t in all_queries.items() if q in qrels}
    ds = BeirDataset(name=name or root.name, corpus=corpus, queries=queries, qrels=qrels)
    logger.info("loaded %r", ds)
    return ds


def subset(
    ds: BeirDataset, n_queries: int, seed: int = 0, n_docs: int | None = None
) -> BeirDataset:
    """A smaller dataset for a quick run.

    Keeps ``n_queries`` random queries, every judged document of those queries, and a random
    sample of the other documents so that the corpus holds ``n_docs`` documents (more when the
    judged documents alone exceed it; the whole corpus when ``n_docs`` is None). Corpus order
    is preserved.

    Args:
        ds: The full dataset.
        n_queries: Queries to keep (all of them if larger than the query count).
        seed: Seed of the random choices.
        n_docs: Target corpus size, or None to keep every document.

    Returns:
        A new dataset named ``<name>-q<n_queries>-d<n_docs>-s<seed>``.
    """
    if n_queries < 1:
        raise ValueError(f"n_queries must be positive, got {n_queries}")
    rng = random.Random(seed)
    qids = sorted(ds.queries)
    kept_q = set(rng.sample(qids, min(n_queries, len(qids))))
    qrels = {q: dict(ds.qrels[q]) for q in qids if q in kept_q}
    judged = {d for rel in qrels.values() for d in rel if d in ds.corpus}
    if n_docs is None:
        kept_d = set(ds.corpus)
    else:
        others = [d for d in ds.corpus if d not in judged]
        extra = max(0, min(n_docs - len(judged), len(others)))
        kept_d = judged | set(rng.sample(others, extra))
    corpus = {d: doc for d, doc in ds.corpus.items() if d in kept_d}
    queries = {q: t for q, t in ds.queries.items() if q in kept_q}
    name = f"{ds.name}-q{len(queries)}-d{len(corpus)}-s{seed}"
    return BeirDataset(name=name, corpus=corpus, queries=queries, qrels=qrels)


def write_beir(ds: BeirDataset, path: str | Path, split: str = "test") -> Path:
    """Write a dataset as a BEIR-format folder that :func:`load_beir` reads back unchanged.

    Writes ``corpus.jsonl`` (corpus order), ``queries.jsonl`` and ``qrels/<split>.tsv`` (with the
    usual header row). Each file is written to a temporary name and then renamed, so a folder
    interrupted mid-write is never mistaken for a complete one by a later run. The loaded
    dataset takes its name from the folder (e.g. write a :func:`subset` to ``.../scifact-quick``
    to give it a name distinct from the full set in the evaluation caches).

    Args:
        ds: The dataset (e.g. from :func:`subset`).
        path: Folder to write (created; files already there are replaced).
        split: Qrels split name of the written judgements.

    Returns:
        The folder.

    Example:
        >>> small = subset(load_beir("/work/shared/data/scifact"), 300, n_docs=1000)  # doctest: +SKIP
        >>> load_beir(write_beir(small, "/tmp/scifact-quick")).name  # doctest: +SKIP
        'scifact-quick'
    """
    root = Path(path)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = "".join(
        json.dumps({"_id": d, "title": doc.get("title", ""), "text": doc.get("text", "")}) + "\n"
        for d, doc in ds.corpus.items()
    )
    queries = "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in ds.queries.items())
    rows = ["query-id\tcorpus-id\tscore"]
    for qid, judged in ds.qrels.items():
        for doc_id, grade in judged.items():
            if any(c in qid + doc_id for c in "\t\r\n"):
                raise CorpusError(
                    f"query {qid!r} / document {doc_id!r}: ids with tabs or line breaks "
                    "cannot be written to a qrels file"
                )
            rows.append(f"{qid}\t{doc_id}\t{int(grade)}")
    for file, text in (
        (root / "corpus.jsonl", corpus),
        (root / "queries.jsonl", queries),
        (root / "qrels" / f"{split}.tsv", "\n".join(rows) + "\n"),
    ):
        tmp = file.with_name(file.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(file)
    return root
