"""LatentLexVectorStore: a LangChain ``VectorStore`` over a :class:`~latentlex.index.LatentIndex`.

The store computes its own vectors: each text goes once through the SAE's backbone, which gives
its dense vector and its latent terms (plus Qdrant's BM25 of the words when the index has the
lexical leg); searches take query text and fuse the legs inside Qdrant. It works with LangChain's
indexing API (``langchain_core.indexing.index`` with a record manager) and passes LangChain's
standard vector store tests.

Example:
    >>> from langchain_latentlex import LatentLexVectorStore  # doctest: +SKIP
    >>> store = LatentLexVectorStore.from_documents(docs, sae="my-sae", store="./index")  # doctest: +SKIP
    >>> store.similarity_search_with_score("Who likes quokkas?", k=2)  # doctest: +SKIP
    >>> chain = store.as_retriever(search_kwargs={"k": 4, "filter": {"lang": "en"}}) | ...  # doctest: +SKIP
    >>> # later, in another session:
    >>> store = LatentLexVectorStore.from_existing(sae="my-sae", store="./index")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from latentlex._options import ClosesIndex, check_weights
from latentlex.errors import ConfigError
from latentlex.index import DEFAULT_FUSION, LatentIndex, build_index
from latentlex.store.base import MODES, Fusion, Hit
from latentlex.store.filters import check as check_filter
from latentlex.terms import LatentTermEncoder

from ._translate import (
    check_k,
    document_rows,
    refuse_unknown,
    split_documents,
    text_rows,
    to_documents,
)
from .embeddings import LatentLexEmbeddings

if TYPE_CHECKING:
    from latentlex.lexical import LexicalConfig
    from latentlex.store.base import Store

__all__ = ["LatentLexVectorStore"]

#: The settings of a store (defaults of every search; per-call arguments override them).
_SETTINGS = ("mode", "fusion", "weights", "filter", "search_options")
#: Per-call search arguments beyond ``k`` and ``filter``.
_CALL_OPTIONS = ("mode", "fusion", "weights", "rrf_k", "prefetch_limit")


class LatentLexVectorStore(ClosesIndex, VectorStore):
    """A LangChain vector store on a latentlex hybrid index (dense + latent terms, + BM25 of the
    words), fused inside Qdrant; embedded Qdrant in a folder, ``":memory:"``, or a server.

    Args:
        index: the :class:`~latentlex.index.LatentIndex` (build one with :meth:`from_texts`,
            :meth:`from_documents` or :meth:`from_existing`).
        mode: the default search: ``"hybrid"`` (every leg fused), ``"dense"``, ``"sparse"``
            (latent terms) or ``"lexical"`` (BM25 of the words).
        fusion: ``"minmax"`` (default), ``"rrf"``, ``"dbsf"`` or ``"weighted"``.
        weights: ``(dense, sparse)`` or ``(dense, sparse, lexical)`` leg weights (``None``: the
            fusion's defaults).
        filter: a default filter (see :mod:`latentlex.store.filters`: ``{"lang": "en"}``,
            ``{"$or": [...]}``, ``{"year": {"gte": 2020}}``, ...) or a native
            ``qdrant_client.models.Filter``; a ``filter=`` per call replaces it.
        search_options: further :meth:`LatentIndex.search` options (``rrf_k``,
            ``prefetch_limit``).

    Every search takes ``k``, ``filter`` and any of ``mode``, ``fusion``, ``weights``,
    ``rrf_k``, ``prefetch_limit`` per call (so does ``as_retriever(search_kwargs=...)``); an
    unknown one is refused. Assigning a setting later (``store.mode = "sparse"``) is validated
    and takes effect; an unknown attribute is refused. Relevance scores
    (:meth:`similarity_search_with_relevance_scores`) lie in [0, 1]: see
    :meth:`LatentIndex.relevance_fn`. Document ids default to a hash of the text.
    """

    index: LatentIndex
    mode: str
    fusion: Fusion
    weights: tuple[float, ...] | None
    filter: Any
    search_options: dict[str, Any]

    def __init__(
        self,
        index: LatentIndex,
        *,
        mode: str = "hybrid",
        fusion: str | Fusion = DEFAULT_FUSION,
        weights: Sequence[float] | None = None,
        filter: Any = None,
        search_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(index, LatentIndex):
            raise ConfigError(
                f"index must be a latentlex LatentIndex, got {type(index).__name__}; use "
                f"LatentLexVectorStore.from_texts/from_documents/from_existing"
            )
        object.__setattr__(self, "index", index)
        self.mode = mode
        self.fusion = fusion  # type: ignore[assignment]
        self.weights = weights  # type: ignore[assignment]
        self.filter = filter
        self.search_options = search_options  # type: ignore[assignment]
        self._embeddings: LatentLexEmbeddings | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        if name in ("k", "top_k"):
            raise AttributeError(
                f"{type(self).__name__} has no default {name}: give k= per call "
                f"(similarity_search(query, k=4)) or as_retriever(search_kwargs={{'k': 4}})"
            )
        if name not in _SETTINGS:
            try:
                refuse_unknown([name], _SETTINGS, type(self).__name__, "setting")
            except TypeError as e:
                raise AttributeError(str(e)) from None
        object.__setattr__(self, name, self._validated(name, value))

    def _validated(self, name: str, value: Any) -> Any:
        if name == "mode":
            if value not in MODES:
                raise ConfigError(f"mode must be one of {MODES}, got {value!r}")
            if value == "lexical" and not self.index.lexical:
                raise ConfigError("mode 'lexical' needs an index with the lexical leg")
            return value
        if name == "fusion":
            return Fusion(value)
        if name == "weights":
            return check_weights(value)
        if name == "filter":
            return check_filter(value)
        options = dict(value or {})
        refuse_unknown(options, ("rrf_k", "prefetch_limit", "with_legs"), "search_options")
        return options

    def __repr__(self) -> str:
        return f"LatentLexVectorStore({self.index.store!r}, mode={self.mode!r})"

    @property
    def embeddings(self) -> Embeddings:
        """The backbone's dense vectors as LangChain ``Embeddings`` (the store does not need
        them: it encodes texts itself)."""
        if self._embeddings is None:
            self._embeddings = LatentLexEmbeddings(self.index.encoder)
        return self._embeddings

    # ------------------------------------------------------------------ building
    @classmethod
    def from_texts(  # type: ignore[override]
        cls,
        texts: Iterable[str],
        embedding: Any = None,
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        sae: Any = None,
        store: Store | str | os.PathLike[str] | None = None,
        encoder: LatentTermEncoder | None = None,
        collection: str = "latentlex",
        recreate: bool = False,
        lexical: bool | LexicalConfig | None = None,
        index_kwargs: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> LatentLexVectorStore:
        """Index texts as given (one point each) and return the store.

        Args:
            texts / metadatas / ids: the documents (default ids: a hash of the text).
            embedding: optional: a :class:`~langchain_latentlex.LatentLexEmbeddings` (its
                encoder is used) or anything ``sae=`` takes; other embeddings are refused, the
                store encodes with the SAE's backbone.
            sae: the SAE (object, folder or Hub id); or ``encoder``.
            store: a folder (embedded Qdrant), ``":memory:"`` or a latentlex ``Store``;
                ``index_kwargs={"url": ...}`` for a Qdrant server.
            collection / recreate: the collection; drop and rebuild it first.
            lexical: the lexical BM25 leg (default: on for a new collection, an existing one
                keeps its setting).
            index_kwargs: further :class:`LatentIndex` arguments (``url``, ``api_key``, ...).
            **settings: the store's settings (``mode``, ``fusion``, ``weights``, ``filter``,
                ``search_options``).
        """
        vs = cls.from_existing(
            sae, store, embedding=embedding, encoder=encoder, collection=collection,
            recreate=recreate, lexical=lexical, index_kwargs=index_kwargs, **settings,
        )  # fmt: skip
        vs.add_texts(texts, metadatas, ids=ids)
        return vs

    @classmethod
    def from_documents(  # type: ignore[override]
        cls,
        documents: Iterable[Document],
        embedding: Any = None,
        *,
        split: bool = True,
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        **kwargs: Any,
    ) -> LatentLexVectorStore:
        """Index ``Document`` s (ids from ``Document.id`` when set); see :meth:`from_texts`.

        Documents longer than the backbone reads are split first (``split=True``, default):
        chunks of at most ``chunk_size`` backbone tokens (default: all it reads, 254 for
        all-MiniLM-L6-v2), overlapping by ``chunk_overlap`` (default an eighth), ids
        ``"<id>#<n>"``; the split is logged. ``split=False`` indexes them whole (truncated,
        with one warning).
        """
        ids = kwargs.pop("ids", None)
        vs = cls.from_texts([], embedding, **kwargs)
        docs = list(documents)
        if split:
            if ids is not None:
                raise ConfigError("ids= cannot name the chunks of split documents: set Document.id")
            docs = split_documents(docs, vs.index, chunk_size, chunk_overlap)
        vs.add_documents(docs, ids=ids)
        return vs

    @classmethod
    def from_existing(
        cls,
        sae: Any = None,
        store: Store | str | os.PathLike[str] | None = None,
        *,
        embedding: Any = None,
        encoder: LatentTermEncoder | None = None,
        collection: str = "latentlex",
        recreate: bool = False,
        lexical: bool | LexicalConfig | None = None,
        index_kwargs: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> LatentLexVectorStore:
        """The store on a collection built before (nothing is added; it keeps its legs): the
        same SAE, the same ``store`` (folder, ``":memory:"``, ``Store``, or
        ``index_kwargs={"url": ...}``) and ``collection``. Re-opening a folder already open in
        this process (a notebook cell run again) shares the open collection."""
        refuse_unknown(settings, _SETTINGS, f"{cls.__name__}.from_existing")
        if embedding is not None:
            if isinstance(embedding, LatentLexEmbeddings):
                encoder = encoder or embedding.encoder
            elif isinstance(embedding, Embeddings):
                raise ConfigError(
                    f"LatentLexVectorStore encodes texts with the SAE's own backbone (dense and "
                    f"latent terms from one pass); it cannot use {type(embedding).__name__}. "
                    f"Pass sae=... (or embedding=LatentLexEmbeddings(...))"
                )
            else:
                sae = sae if sae is not None else embedding
        index = build_index(
            sae, store, encoder=encoder, collection=collection, recreate=recreate,
            lexical=lexical, index_kwargs=index_kwargs,
        )  # fmt: skip
        return cls(index, **settings)

    # ------------------------------------------------------------------ writing
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Add or update texts (an existing id is replaced); returns their ids in order."""
        rows = text_rows(texts, metadatas, ids)
        self._add_kwargs(kwargs)
        self.index.add(*rows)
        return rows[1]

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async :meth:`add_texts`."""
        rows = text_rows(texts, metadatas, ids)
        self._add_kwargs(kwargs)
        await self.index.aadd(*rows)
        return rows[1]

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Add or update ``Document`` s (ids: ``ids=``, else ``Document.id``, else a hash of the
        text); returns their ids in order."""
        rows = document_rows(documents, kwargs.pop("ids", None))
        self._add_kwargs(kwargs)
        self.index.add(*rows)
        return rows[1]

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Async :meth:`add_documents`."""
        rows = document_rows(documents, kwargs.pop("ids", None))
        self._add_kwargs(kwargs)
        await self.index.aadd(*rows)
        return rows[1]

    @staticmethod
    def _add_kwargs(kwargs: Mapping[str, Any]) -> None:
        # LangChain's indexing API passes its batch_size: the index writes in its own batches
        refuse_unknown(kwargs, ("batch_size",), "add_documents/add_texts")

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete by ids (missing ones are ignored), or ``filter=`` what a filter matches;
        with neither, delete everything."""
        ids, flt = self._delete_args(ids, kwargs)
        if ids is not None:
            self.index.delete(ids)
        elif flt is not None:
            self.index.delete(filter=flt)
        else:
            self.index.clear()
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Async :meth:`delete`."""
        ids, flt = self._delete_args(ids, kwargs)
        if ids is not None:
            await self.index.adelete(ids)
        elif flt is not None:
            await self.index.adelete(filter=flt)
        else:
            await self.index.aclear()
        return True

    @staticmethod
    def _delete_args(ids: Any, kwargs: dict[str, Any]) -> tuple[list[str] | None, Any]:
        flt = kwargs.pop("filter", None)
        refuse_unknown(kwargs, ("filter",), "delete")
        if ids is not None and flt is not None:
            raise ConfigError("give ids or filter=, not both")
        if isinstance(ids, str):
            raise TypeError("ids must be a list of strings, not a single string")
        return (None if ids is None else list(ids)), flt

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents of ``ids`` in that order (missing ones skipped)."""
        return self._records_to_documents(self.index.get(list(ids)))

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Async :meth:`get_by_ids`."""
        return self._records_to_documents(await self.index.aget(list(ids)))

    @staticmethod
    def _records_to_documents(records: Sequence[Any]) -> list[Document]:
        return [Document(id=r.doc_id, page_content=r.text, metadata=r.metadata) for r in records]

    # ------------------------------------------------------------------ searching
    def _options(
        self, k: Any, filter: Any, kwargs: Mapping[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """``k`` and the search options of one call (settings, overridden per call)."""
        refuse_unknown(kwargs, _CALL_OPTIONS, "search")
        options = {
            "mode": self.mode,
            "fusion": self.fusion,
            "weights": self.weights,
            "filter": self.filter if filter is None else filter,
            "with_legs": False,
            **self.search_options,
            **kwargs,
        }
        return check_k(k), options

    def _scored(self, hits: Sequence[Hit]) -> list[tuple[Document, float]]:
        return list(zip(to_documents(hits), (h.score for h in hits), strict=True))

    def similarity_search(
        self, query: str, k: int = 4, filter: Any = None, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` best documents for ``query`` (hybrid by default)."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: Any = None, **kwargs: Any
    ) -> list[Document]:
        """Async :meth:`similarity_search`."""
        found = await self.asimilarity_search_with_score(query, k, filter, **kwargs)
        return [doc for doc, _ in found]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Any = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """``(document, score)`` pairs, best first; the score is the fused score (or the
        leg's own in a single-leg mode)."""
        k, options = self._options(k, filter, kwargs)
        return self._scored(self.index.search(query, k, **options))

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: Any = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async :meth:`similarity_search_with_score`."""
        k, options = self._options(k, filter, kwargs)
        return self._scored(await self.index.asearch(query, k, **options))

    def _relevance(
        self, scored: list[tuple[Document, float]], options: Mapping[str, Any]
    ) -> list[tuple[Document, float]]:
        fn = self.index.relevance_fn(**options)
        return [(doc, fn(score)) for doc, score in scored]

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        filter = kwargs.pop("filter", None)
        _, options = self._options(k, filter, kwargs)
        return self._relevance(
            self.similarity_search_with_score(query, k, filter, **kwargs), options
        )

    async def _asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        filter = kwargs.pop("filter", None)
        _, options = self._options(k, filter, kwargs)
        found = await self.asimilarity_search_with_score(query, k, filter, **kwargs)
        return self._relevance(found, options)

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return self.index.relevance_fn(
            mode=self.mode, fusion=self.fusion, weights=self.weights, **self.search_options
        )

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Any = None,
        **kwargs: Any,
    ) -> list[Document]:
        """``fetch_k`` candidates by the store's search, then ``k`` of them picked for
        relevance and difference (:meth:`LatentIndex.search_mmr`)."""
        k, options = self._options(k, filter, kwargs)
        hits = self.index.search_mmr(
            query, k, fetch_k=check_k(fetch_k, "fetch_k"), lambda_mult=lambda_mult, **options
        )
        return to_documents(hits)

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Any = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Async :meth:`max_marginal_relevance_search`."""
        k, options = self._options(k, filter, kwargs)
        hits = await self.index.asearch_mmr(
            query, k, fetch_k=check_k(fetch_k, "fetch_k"), lambda_mult=lambda_mult, **options
        )
        return to_documents(hits)

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """Not available: the store searches by query text (its vectors come from the SAE's
        backbone, one pass for every leg)."""
        raise NotImplementedError(
            "LatentLexVectorStore searches by query text: use similarity_search(query)"
        )

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """Not available (see :meth:`similarity_search_by_vector`)."""
        return await asyncio.to_thread(self.similarity_search_by_vector, embedding, k)
