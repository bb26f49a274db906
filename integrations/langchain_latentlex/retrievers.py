"""LatentLexRetriever: a LangChain retriever over a :class:`~latentlex.index.LatentIndex`.

It translates types and delegates: LangChain ``Document``s in (``from_documents``,
``add_documents``), ``Document``s out (``invoke`` / ``ainvoke``); ranking, fusion and filtering
happen in the index (in Qdrant): dense + latent terms, + lexical BM25 when the index has that leg
(the default for new indexes).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from latentlex.errors import ConfigError
from latentlex.index import DEFAULT_FUSION, LatentIndex, build_index, content_hash
from latentlex.store.base import MODES, Fusion, Hit
from pydantic import ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from latentlex.lexical import LexicalConfig
    from latentlex.sae import SparseAutoencoder
    from latentlex.store.base import Store
    from latentlex.terms import LatentTermEncoder

logger = logging.getLogger(__name__)

__all__ = ["LEG_KEYS", "LatentLexRetriever"]

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
#: ``(dense, sparse)`` or ``(dense, sparse, lexical)`` leg weights.
Weights = tuple[float, float] | tuple[float, float, float]


class LatentLexRetriever(BaseRetriever):
    """Retrieve from a latentlex hybrid index: dense + latent terms, + lexical BM25 of the words
    when the index has that leg (new indexes do by default), fused inside Qdrant.

    Every option can also be given per call: ``retriever.invoke(q, k=3, filter={...})``.

    Attributes:
        index: the :class:`~latentlex.index.LatentIndex` to search.
        k: number of documents returned.
        mode: ``"hybrid"`` (all the index's legs fused), ``"dense"``, ``"sparse"`` (latent terms
            only) or ``"lexical"`` (BM25 of the words only; needs an index with that leg).
        fusion: ``"minmax"`` (default, :data:`latentlex.index.DEFAULT_FUSION`), ``"rrf"``,
            ``"dbsf"`` or ``"weighted"`` (fused inside Qdrant).
        weights: ``(dense, sparse)`` or ``(dense, sparse, lexical)`` leg weights; ``None``
            (default): the fusion's defaults (:data:`latentlex.index.DEFAULT_MINMAX_WEIGHTS`
            for ``"minmax"``, all 1.0 otherwise). Three weights need the lexical leg.
        filter: a latentlex filter on metadata, e.g. ``{"lang": "en", "year": {"gte": 2020}}``
            (or a native Qdrant filter of the index's engine).
        include_legs: add ``score``, ``dense_score``, ``sparse_score``, ``lexical_score``,
            ``dense_rank``, ``sparse_rank`` and ``lexical_rank`` to each document's metadata
            (a leg's fields are ``None`` where the document was not among its candidates or
            outside hybrid mode, and the lexical ones always on an index without that leg).
        explain: add ``explanation`` (the latent terms behind the sparse score) to the metadata.
        explain_top: latent terms kept per explanation.
        search_options: further :meth:`LatentIndex.search` options (``rrf_k``, ``prefetch_limit``).

    Example:
        >>> from langchain_core.documents import Document  # doctest: +SKIP
        >>> retriever = LatentLexRetriever.from_documents(
        ...     [Document("Quokkas live on Rottnest Island.", id="q1")],
        ...     sae="my-sae", store="./index")  # doctest: +SKIP
        >>> retriever.invoke("Where do quokkas live?", k=1)[0].id  # doctest: +SKIP
        'q1'
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: LatentIndex
    k: int = Field(default=4, ge=1)
    mode: str = "hybrid"
    fusion: Fusion = DEFAULT_FUSION
    weights: Weights | None = None
    filter: Any = None
    include_legs: bool = False
    explain: bool = False
    explain_top: int = Field(default=10, ge=1)
    search_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return mode

    @model_validator(mode="after")
    def _lexical_needs_the_leg(self) -> LatentLexRetriever:
        if self.mode == "lexical" and not self.index.lexical:
            raise ValueError(
                "mode 'lexical' needs an index with the lexical leg (LatentIndex(..., "
                "lexical=True), the default for new collections)"
            )
        return self

    # ------------------------------------------------------------------ building
    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        sae: SparseAutoencoder | str | os.PathLike[str] | None = None,
        store: Store | str | os.PathLike[str] | None = None,
        *,
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
        encoder: LatentTermEncoder | None = None,
        collection: str = "latentlex",
        recreate: bool = False,
        lexical: bool | LexicalConfig | None = None,
        index_kwargs: Mapping[str, Any] | None = None,
        **retriever_kwargs: Any,
    ) -> LatentLexRetriever:
        """Index texts and return a retriever over them.

        Args:
            texts: the documents' texts.
            sae: the SAE (object, folder or Hub id); or give ``encoder``.
            store: a folder (embedded Qdrant), ``":memory:"`` or a latentlex ``Store``;
                ``index_kwargs={"url": ...}`` for a Qdrant server.
            metadatas / ids: per-text metadata and ids (default ids: a hash of the text).
            encoder: an already built :class:`LatentTermEncoder` (instead of ``sae``).
            collection / recreate: the collection name; drop and rebuild it first.
            lexical: the lexical BM25 leg (:class:`LatentIndex`'s ``lexical``): ``None``
                (default) builds a new collection with it and keeps an existing collection's
                setting; ``True``/``False`` or a :class:`~latentlex.lexical.LexicalConfig`
                force it.
            index_kwargs: further :class:`LatentIndex` arguments (``url``, ``api_key``, ...).
            **retriever_kwargs: retriever fields (``k``, ``mode``, ``filter``, ...).
        """
        index = build_index(
            sae, store, encoder=encoder, collection=collection, recreate=recreate,
            lexical=lexical, index_kwargs=index_kwargs,
        )  # fmt: skip
        retriever = cls(index=index, **retriever_kwargs)
        retriever.add_texts(texts, metadatas=metadatas, ids=ids)
        return retriever

    @classmethod
    def from_documents(
        cls,
        documents: Iterable[Document],
        sae: SparseAutoencoder | str | os.PathLike[str] | None = None,
        store: Store | str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> LatentLexRetriever:
        """Index LangChain ``Document``s (ids from ``Document.id`` when set); see :meth:`from_texts`."""
        texts, ids, metas = _document_rows(documents)
        return cls.from_texts(texts, sae, store, metadatas=metas, ids=ids, **kwargs)

    def add_texts(
        self,
        texts: Sequence[str],
        *,
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Add or update texts; returns the ids written."""
        return self.index.add(list(texts), ids, metadatas)

    def add_documents(self, documents: Iterable[Document]) -> list[str]:
        """Add or update ``Document``s (ids from ``Document.id`` when set); returns the ids."""
        texts, ids, metas = _document_rows(documents)
        return self.index.add(texts, ids, metas)

    async def aadd_documents(self, documents: Iterable[Document]) -> list[str]:
        """Async :meth:`add_documents`."""
        texts, ids, metas = _document_rows(documents)
        return await self.index.aadd(texts, ids, metas)

    # ------------------------------------------------------------------ retrieving
    def _call_options(
        self,
        k: int | None,
        filter: Any,
        mode: str | None,
        fusion: str | Fusion | None,
        weights: Sequence[float] | None,
    ) -> tuple[int, dict[str, Any]]:
        k = self.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive int, got {k!r}")
        options = {
            "mode": self.mode if mode is None else mode,
            "fusion": self.fusion if fusion is None else fusion,
            "weights": self.weights if weights is None else weights,
            "filter": self.filter if filter is None else filter,
            "with_legs": self.include_legs,
            **self.search_options,
        }
        return k, options

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: Any = None,
        mode: str | None = None,
        fusion: str | Fusion | None = None,
        weights: Sequence[float] | None = None,
    ) -> list[Document]:
        k, options = self._call_options(k, filter, mode, fusion, weights)
        hits = self.index.search(query, k, **options)
        explanations = (
            [self.index.explain(query, h.doc_id, self.explain_top).as_dict() for h in hits]
            if self.explain
            else None
        )
        return self._to_documents(hits, explanations)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: Any = None,
        mode: str | None = None,
        fusion: str | Fusion | None = None,
        weights: Sequence[float] | None = None,
    ) -> list[Document]:
        k, options = self._call_options(k, filter, mode, fusion, weights)
        hits = await self.index.asearch(query, k, **options)
        explanations = None
        if self.explain:
            found = await asyncio.gather(
                *(self.index.aexplain(query, h.doc_id, self.explain_top) for h in hits)
            )
            explanations = [e.as_dict() for e in found]
        return self._to_documents(hits, explanations)

    def _to_documents(
        self, hits: list[Hit], explanations: list[dict[str, Any]] | None
    ) -> list[Document]:
        docs = []
        for n, hit in enumerate(hits):
            meta = dict(hit.metadata)
            if self.include_legs:
                meta.update(
                    score=hit.score,
                    dense_score=hit.dense_score,
                    sparse_score=hit.sparse_score,
                    lexical_score=hit.lexical_score,
                    dense_rank=hit.dense_rank,
                    sparse_rank=hit.sparse_rank,
                    lexical_rank=hit.lexical_rank,
                )
            if explanations is not None:
                meta["explanation"] = explanations[n]
            docs.append(Document(id=hit.doc_id, page_content=hit.text, metadata=meta))
        return docs


def _document_rows(
    documents: Iterable[Document],
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    texts, ids, metas = [], [], []
    for doc in documents:
        if not isinstance(doc, Document):
            raise TypeError(f"expected LangChain Documents, got {type(doc).__name__}")
        texts.append(doc.page_content)
        # same default as LatentIndex.add: a hash of the text
        ids.append(doc.id if doc.id else content_hash(doc.page_content, {}))
        metas.append(dict(doc.metadata))
    return texts, ids, metas
