"""LatentLexRetriever: a LangChain retriever over a :class:`~latentlex.index.LatentIndex`.

It translates types and delegates (:mod:`langchain_latentlex._translate` holds the translation it
shares with :class:`~langchain_latentlex.LatentLexVectorStore`): LangChain ``Document``s in
(``from_documents``, ``add_documents``), ``Document``s out (``invoke`` / ``ainvoke``); ranking,
fusion and filtering happen in the index (in Qdrant): dense + latent terms, + lexical BM25 when the
index has that leg (the default for new indexes).
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
from latentlex._options import ClosesIndex
from latentlex.index import DEFAULT_FUSION, LatentIndex, build_index
from latentlex.store.base import MODES, Fusion
from latentlex.store.filters import check as check_filter
from pydantic import ConfigDict, Field, field_validator, model_validator

from ._translate import (
    LEG_KEYS,
    check_k,
    document_rows,
    refuse_unknown,
    split_documents,
    text_rows,
    to_documents,
)

if TYPE_CHECKING:
    from latentlex.lexical import LexicalConfig
    from latentlex.sae import SparseAutoencoder
    from latentlex.store.base import Store
    from latentlex.terms import LatentTermEncoder

logger = logging.getLogger(__name__)

__all__ = ["LEG_KEYS", "LatentLexRetriever"]

#: ``(dense, sparse)`` or ``(dense, sparse, lexical)`` leg weights.
Weights = tuple[float, float] | tuple[float, float, float]


class LatentLexRetriever(ClosesIndex, BaseRetriever):
    """Retrieve from a latentlex hybrid index: dense + latent terms, + lexical BM25 of the words
    when the index has that leg (new indexes do by default), fused inside Qdrant.

    Every option can also be given per call: ``retriever.invoke(q, k=3, filter={...})``.
    Assigning a field later (``retriever.filter = {...}``) is validated and takes effect;
    an unknown argument or attribute (``top_k``, ``search_kwargs``) is refused, naming the
    right one.

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
        filter: a latentlex filter on metadata, e.g. ``{"lang": "en", "year": {"gte": 2020}}``,
            ``{"$or": [...]}``, ``{"tags": {"contains": "x"}}`` (see
            :mod:`latentlex.store.filters`), or a native ``qdrant_client.models.Filter``.
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
        >>> retriever.close()  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, validate_assignment=True)

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

    @model_validator(mode="before")
    @classmethod
    def _known_arguments(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            refuse_unknown(data, cls.model_fields, cls.__name__)
        return data

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in type(self).model_fields:
            try:
                refuse_unknown([name], type(self).model_fields, type(self).__name__, "attribute")
            except TypeError as e:
                raise AttributeError(str(e)) from None
        super().__setattr__(name, value)

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return mode

    @field_validator("filter")
    @classmethod
    def _valid_filter(cls, value: Any) -> Any:
        return check_filter(value)

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
        """Index texts as given (one point each) and return a retriever over them.

        Args:
            texts: the documents' texts (the backbone reads the first ~256 tokens of each;
                :meth:`from_documents` splits longer ones).
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
        refuse_unknown(retriever_kwargs, cls.model_fields, f"{cls.__name__}.from_texts")
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
        *,
        split: bool = True,
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        **kwargs: Any,
    ) -> LatentLexRetriever:
        """Index LangChain ``Document``s (ids from ``Document.id`` when set); see :meth:`from_texts`.

        Documents longer than the backbone reads are split first (``split=True``, default):
        into chunks of at most ``chunk_size`` backbone tokens (default: all it reads, 254 for
        all-MiniLM-L6-v2) overlapping by ``chunk_overlap`` (default an eighth), ids
        ``"<id>#<n>"``; the split is logged. ``split=False`` indexes them whole (truncated,
        with one warning).
        """
        docs = list(documents)
        if not split:
            texts, ids, metas = document_rows(docs)
            return cls.from_texts(texts, sae, store, metadatas=metas, ids=ids, **kwargs)
        retriever = cls.from_texts([], sae, store, **kwargs)
        retriever.add_documents(split_documents(docs, retriever.index, chunk_size, chunk_overlap))
        return retriever

    @classmethod
    def from_existing(
        cls,
        sae: SparseAutoencoder | str | os.PathLike[str] | None = None,
        store: Store | str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> LatentLexRetriever:
        """A retriever over a collection built before (a folder, ``":memory:"``, a ``Store``, or
        ``index_kwargs={"url": ...}``): nothing is added, the collection keeps its legs. The
        arguments are :meth:`from_texts`' (``encoder``, ``collection``, retriever fields, ...).
        Or wrap an open index: ``LatentLexRetriever(index=index)``."""
        return cls.from_texts([], sae, store, **kwargs)

    def add_texts(
        self,
        texts: Sequence[str],
        *,
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Add or update texts; returns the ids written."""
        return self.index.add(*text_rows(texts, metadatas, ids))

    def add_documents(self, documents: Iterable[Document]) -> list[str]:
        """Add or update ``Document``s (ids from ``Document.id`` when set); returns the ids."""
        return self.index.add(*document_rows(documents))

    async def aadd_documents(self, documents: Iterable[Document]) -> list[str]:
        """Async :meth:`add_documents`."""
        return await self.index.aadd(*document_rows(documents))

    # ------------------------------------------------------------------ retrieving
    def _call_options(self, overrides: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """``k`` and the search options of one call: the fields, overridden per call."""
        given = {name: v for name, v in overrides.items() if v is not None}
        k = check_k(given.pop("k", self.k))
        options = {
            "mode": self.mode,
            "fusion": self.fusion,
            "weights": self.weights,
            "filter": self.filter,
            **given,
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
        k, options = self._call_options(
            {"k": k, "filter": filter, "mode": mode, "fusion": fusion, "weights": weights}
        )
        hits = self.index.search(query, k, **options)
        explanations = (
            [self.index.explain(query, h.doc_id, self.explain_top).as_dict() for h in hits]
            if self.explain
            else None
        )
        return to_documents(hits, include_legs=self.include_legs, explanations=explanations)

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
        k, options = self._call_options(
            {"k": k, "filter": filter, "mode": mode, "fusion": fusion, "weights": weights}
        )
        hits = await self.index.asearch(query, k, **options)
        explanations = None
        if self.explain:
            found = await asyncio.gather(
                *(self.index.aexplain(query, h.doc_id, self.explain_top) for h in hits)
            )
            explanations = [e.as_dict() for e in found]
        return to_documents(hits, include_legs=self.include_legs, explanations=explanations)
