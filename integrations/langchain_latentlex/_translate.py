"""LangChain <-> latentlex translation shared by the retriever and the vector store.

Documents in (rows for :meth:`LatentIndex.add`, split to what the backbone reads), hits out
(``Document``s), options checked once, constructor and attribute guards.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.documents import Document
from latentlex._options import refuse_unknown as _refuse_unknown
from latentlex.chunking import chunk_limit, default_overlap, split_text
from latentlex.errors import ConfigError
from latentlex.index import LatentIndex, content_hash
from latentlex.store.base import Hit

logger = logging.getLogger("langchain_latentlex")

__all__ = [
    "LEG_KEYS",
    "document_rows",
    "refuse_unknown",
    "split_documents",
    "to_documents",
]

#: Metadata keys added with ``include_legs=True`` / ``explain=True``.
LEG_KEYS = (
    "score",
    "dense_score",
    "sparse_score",
    "lexical_score",
    "dense_rank",
    "sparse_rank",
    "lexical_rank",
    "explanation",
)

#: Names users reach for that mean something else here, and what to use instead.
_RIGHT_NAME = {
    "top_k": "use k=",
    "similarity_top_k": "use k=",
    "n": "use k=",
    "filters": "use filter=",
    "where": "use filter=",
    "search_type": "use mode=",
    "alpha": "use weights=",
    "search_kwargs": (
        "give the search options directly (k=, filter=, mode=, fusion=, weights=), per call, "
        "or via vector_store.as_retriever(search_kwargs=...)"
    ),
}


#: :func:`latentlex._options.refuse_unknown` naming LangChain's usual wrong names.
refuse_unknown = functools.partial(_refuse_unknown, right_names=_RIGHT_NAME)


def document_rows(
    documents: Iterable[Document], ids: Sequence[str | None] | None = None
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """``(texts, ids, metadatas)`` of Documents; ``ids`` (else ``Document.id``) where given, a
    hash of the text (as :meth:`LatentIndex.add`) where not."""
    docs = list(documents)
    if ids is not None:
        if isinstance(ids, str):
            raise TypeError("ids must be a list of strings, not a single string")
        if len(ids) != len(docs):
            raise ValueError(f"got {len(ids)} ids for {len(docs)} documents")
    texts, out_ids, metas = [], [], []
    for i, doc in enumerate(docs):
        if not isinstance(doc, Document):
            raise TypeError(f"expected LangChain Documents, got {type(doc).__name__}")
        doc_id = ids[i] if ids is not None else doc.id
        texts.append(doc.page_content)
        out_ids.append(doc_id if doc_id is not None else content_hash(doc.page_content, {}))
        metas.append(dict(doc.metadata))
    return texts, out_ids, metas


def text_rows(
    texts: Iterable[str],
    metadatas: Sequence[Mapping[str, Any]] | None,
    ids: Sequence[str | None] | None,
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """``(texts, ids, metadatas)`` of ``add_texts`` arguments (same id defaults)."""
    texts = list(texts)
    if metadatas is not None and len(metadatas) != len(texts):
        raise ValueError(f"got {len(metadatas)} metadatas for {len(texts)} texts")
    docs = [
        Document(page_content=t, metadata=dict(metadatas[i]) if metadatas else {})
        for i, t in enumerate(texts)
    ]
    return document_rows(docs, ids)


def split_documents(
    documents: Iterable[Document],
    index: LatentIndex,
    chunk_size: int | None = None,
    chunk_overlap: int | None = None,
) -> list[Document]:
    """Documents split to what the backbone reads (``chunk_size`` tokens, default its limit).

    A document that fits stays whole, id included; the chunks of a longer one are
    ``"<id>#<n>"`` (or hashed, without an id) and keep its metadata. Logs what it did.
    """
    backbone = index.encoder.backbone
    size = chunk_limit(backbone) if chunk_size is None else chunk_size
    overlap = default_overlap(size) if chunk_overlap is None else chunk_overlap
    out: list[Document] = []
    n_docs = n_split = 0
    for doc in documents:
        if not isinstance(doc, Document):
            raise TypeError(f"expected LangChain Documents, got {type(doc).__name__}")
        n_docs += 1
        pieces = split_text(doc.page_content, backbone.tokenizer, size, overlap)
        if len(pieces) == 1:
            out.append(doc)
            continue
        n_split += 1
        for n, piece in enumerate(pieces):
            out.append(
                Document(
                    page_content=piece,
                    metadata=dict(doc.metadata),
                    id=f"{doc.id}#{n}" if doc.id else None,
                )
            )
    if n_split:
        logger.info(
            "split %d of %d documents into chunks of at most %d backbone tokens (%d in all; the "
            "backbone reads %d); pass chunk_size= to change it, split=False to keep them whole",
            n_split,
            n_docs,
            size,
            len(out),
            backbone.max_seq_length,
        )
    return out


def to_documents(
    hits: Sequence[Hit],
    *,
    include_legs: bool = False,
    explanations: Sequence[Mapping[str, Any]] | None = None,
) -> list[Document]:
    """``Document`` s of hits (``id`` = document id), legs and explanations added when asked."""
    docs = []
    for n, hit in enumerate(hits):
        meta = dict(hit.metadata)
        if include_legs:
            meta.update(score=hit.score, **hit.legs())
        if explanations is not None:
            meta["explanation"] = dict(explanations[n])
        docs.append(Document(id=hit.doc_id, page_content=hit.text, metadata=meta))
    return docs


def check_k(k: Any, name: str = "k") -> int:
    """A positive int, or :class:`ConfigError` naming ``name``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"{name} must be a positive int, got {k!r}")
    return k
