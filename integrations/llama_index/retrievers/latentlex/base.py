"""LatentLexRetriever: a LlamaIndex retriever over a :class:`~latentlex.index.LatentIndex`.

It translates types and delegates (:mod:`.nodes` holds the translation it shares with
:class:`llama_index.vector_stores.latentlex.LatentLexVectorStore`): LlamaIndex nodes in
(``add_nodes``), ``NodeWithScore`` out (``retrieve`` / ``aretrieve``); ranking, fusion and
filtering happen in the index (in Qdrant): dense + latent terms, + lexical BM25 when the index has
that leg (the default for new indexes).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle, TransformComponent
from llama_index.core.vector_stores.types import MetadataFilters

from latentlex._options import ClosesIndex
from latentlex.errors import ConfigError
from latentlex.index import DEFAULT_FUSION, LatentIndex, build_index
from latentlex.store.base import Fusion, Hit

from .filters import REF_DOC_KEY, to_neutral
from .nodes import (
    backbone_splitter,
    check_mode,
    check_weights,
    chunk_id,
    node_rows,
    refuse_unknown,
    split,
    to_node,
)

if TYPE_CHECKING:
    from latentlex.lexical import LexicalConfig
    from latentlex.sae import SparseAutoencoder
    from latentlex.store.base import Store
    from latentlex.terms import LatentTermEncoder

logger = logging.getLogger(__name__)

__all__ = ["LEG_KEYS", "REF_DOC_KEY", "LatentLexRetriever", "chunk_id"]

#: Metadata keys added with ``include_legs=True`` / ``explain=True`` (kept out of LLM prompts).
LEG_KEYS = (
    "dense_score",
    "sparse_score",
    "lexical_score",
    "dense_rank",
    "sparse_rank",
    "lexical_rank",
    "explanation",
)
#: The retriever's settings: constructor arguments, assignable later (validated).
_SETTINGS = (
    "similarity_top_k",
    "mode",
    "fusion",
    "weights",
    "filters",
    "include_legs",
    "explain",
    "explain_top",
    "search_options",
)
#: Attributes LlamaIndex's ``BaseRetriever`` sets itself.
_BASE_ATTRIBUTES = ("callback_manager", "object_map")


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")
    return value


class LatentLexRetriever(ClosesIndex, BaseRetriever):
    """Retrieve from a latentlex hybrid index: dense + latent terms, + lexical BM25 of the words
    when the index has that leg (new indexes do by default), fused inside Qdrant.

    Args:
        index: the :class:`~latentlex.index.LatentIndex` to search.
        similarity_top_k: number of nodes returned.
        mode: ``"hybrid"`` (all the index's legs fused), ``"dense"``, ``"sparse"`` (latent terms
            only) or ``"lexical"`` (BM25 of the words only; needs an index with that leg).
        fusion: ``"minmax"`` (default, :data:`latentlex.index.DEFAULT_FUSION`), ``"rrf"``,
            ``"dbsf"`` or ``"weighted"`` (fused inside Qdrant).
        weights: ``(dense, sparse)`` or ``(dense, sparse, lexical)`` leg weights; ``None``
            (default): the fusion's defaults (:data:`latentlex.index.DEFAULT_MINMAX_WEIGHTS`
            for ``"minmax"``, all 1.0 otherwise). Three weights need the lexical leg.
        filters: LlamaIndex ``MetadataFilters`` (every operator but text match, AND/OR/NOT
            groups nested; see :func:`~llama_index.retrievers.latentlex.to_neutral`), a latentlex
            filter mapping such as ``{"year": {"gte": 2020}}``, or a ``qdrant_client`` Filter.
        include_legs: add ``dense_score``, ``sparse_score``, ``lexical_score``, ``dense_rank``,
            ``sparse_rank`` and ``lexical_rank`` to each node's metadata (hybrid mode; a leg's
            fields are ``None`` where the node was not among its candidates, and the lexical
            ones always on an index without the lexical leg).
        explain: add ``explanation`` (the latent terms behind the sparse score,
            :meth:`LatentIndex.explain` as a dict) to each node's metadata.
        explain_top: latent terms kept per explanation.
        search_options: further :meth:`LatentIndex.search` options (``rrf_k``, ``prefetch_limit``).

    Each setting can be assigned later (``retriever.filters = ...``): it is validated and used
    by the next retrieval. An unknown argument or attribute (``top_k``) is refused, naming the
    right one.

    Example:
        >>> from llama_index.core import SimpleDirectoryReader  # doctest: +SKIP
        >>> from llama_index.core.query_engine import RetrieverQueryEngine  # doctest: +SKIP
        >>> docs = SimpleDirectoryReader("./docs", filename_as_id=True).load_data()  # doctest: +SKIP
        >>> retriever = LatentLexRetriever.from_documents(docs, sae="my-sae", store="./index")  # doctest: +SKIP
        >>> engine = RetrieverQueryEngine.from_args(retriever, llm=llm)  # doctest: +SKIP
        >>> engine.query("Who likes quokkas?")  # doctest: +SKIP
        >>> retriever.close()  # doctest: +SKIP
    """

    index: LatentIndex
    similarity_top_k: int
    mode: str
    fusion: Fusion
    weights: tuple[float, ...] | None
    filters: MetadataFilters | Mapping[str, Any] | None
    include_legs: bool
    explain: bool
    explain_top: int
    search_options: dict[str, Any]
    _neutral_filter: dict[str, Any] | None

    def __init__(
        self,
        index: LatentIndex,
        similarity_top_k: int = 10,
        *,
        mode: str = "hybrid",
        fusion: str | Fusion = DEFAULT_FUSION,
        weights: tuple[float, float] | tuple[float, float, float] | None = None,
        filters: MetadataFilters | Mapping[str, Any] | None = None,
        include_legs: bool = False,
        explain: bool = False,
        explain_top: int = 10,
        search_options: Mapping[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
        **unknown: Any,
    ) -> None:
        refuse_unknown(unknown, (*_SETTINGS, "callback_manager", "verbose"), "LatentLexRetriever")
        if not isinstance(index, LatentIndex):
            raise ConfigError(
                f"index must be a latentlex LatentIndex, got {type(index).__name__}; build one "
                f"with LatentLexRetriever.from_documents(...) or LatentIndex(sae, store)"
            )
        object.__setattr__(self, "index", index)
        self.similarity_top_k = similarity_top_k
        self.mode = mode
        self.fusion = fusion  # type: ignore[assignment]
        self.weights = weights  # type: ignore[assignment]
        self.filters = filters
        self.include_legs = include_legs
        self.explain = explain
        self.explain_top = explain_top
        self.search_options = search_options  # type: ignore[assignment]
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name in _BASE_ATTRIBUTES:
            object.__setattr__(self, name, value)
            return
        if name not in _SETTINGS:
            try:
                refuse_unknown([name], _SETTINGS, type(self).__name__, "setting")
            except TypeError as e:
                raise AttributeError(str(e)) from None
        if name == "filters":
            # fail fast on what cannot be expressed; the translation is what searches use
            object.__setattr__(self, "_neutral_filter", to_neutral(value))
        object.__setattr__(self, name, self._validated(name, value))

    def _validated(self, name: str, value: Any) -> Any:
        if name in ("similarity_top_k", "explain_top"):
            return _positive(name, value)
        if name == "mode":
            return check_mode(value, self.index)
        if name == "fusion":
            return Fusion(value)
        if name == "weights":
            return check_weights(value)
        if name == "search_options":
            options = dict(value or {})
            refuse_unknown(options, ("rrf_k", "prefetch_limit"), "search_options")
            return options
        return value

    # ------------------------------------------------------------------ building
    @classmethod
    def from_documents(
        cls,
        documents: Sequence[BaseNode],
        sae: SparseAutoencoder | str | os.PathLike[str] | None = None,
        store: Store | str | os.PathLike[str] | None = None,
        *,
        encoder: LatentTermEncoder | None = None,
        transformations: Sequence[TransformComponent] | None = None,
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        collection: str = "latentlex",
        recreate: bool = False,
        lexical: bool | LexicalConfig | None = None,
        show_progress: bool = False,
        index_kwargs: Mapping[str, Any] | None = None,
        **retriever_kwargs: Any,
    ) -> LatentLexRetriever:
        """Split LlamaIndex documents into nodes, index them, and return a retriever.

        Args:
            documents: LlamaIndex ``Document``s (e.g. from ``SimpleDirectoryReader(...,
                filename_as_id=True)``: stable ids, so re-indexing updates) or nodes.
            sae: the SAE (object, folder or Hub id); or give ``encoder``.
            store: where the index lives: a folder (embedded Qdrant), ``":memory:"``, or a
                latentlex ``Store``; ``index_kwargs={"url": ...}`` for a Qdrant server.
            encoder: an already built :class:`LatentTermEncoder` (instead of ``sae``).
            transformations: node parsers/extractors to run. Default: LlamaIndex's
                ``SentenceSplitter`` counting the backbone's own tokens, ``chunk_size`` per
                node (default: all the backbone reads, 254 tokens for all-MiniLM-L6-v2, not
                LlamaIndex's 1024, which the backbone would truncate), ``chunk_overlap``
                (default an eighth), node ids ``"<doc id>#<n>"``.
            collection / recreate: the collection name; drop and rebuild it first.
            lexical: the lexical BM25 leg (:class:`LatentIndex`'s ``lexical``): ``None``
                (default) builds a new collection with it and keeps an existing collection's
                setting; ``True``/``False`` or a :class:`~latentlex.lexical.LexicalConfig`
                force it.
            show_progress: progress bars while splitting and indexing.
            index_kwargs: further :class:`LatentIndex` arguments (``url``, ``api_key``, ...).
            **retriever_kwargs: arguments of :class:`LatentLexRetriever` (``similarity_top_k``, ...).
        """
        retriever = cls.from_existing(
            sae, store, encoder=encoder, collection=collection, recreate=recreate,
            lexical=lexical, index_kwargs=index_kwargs, **retriever_kwargs,
        )  # fmt: skip
        retriever.add_documents(
            documents,
            transformations=transformations,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            show_progress=show_progress,
        )
        return retriever

    @classmethod
    def from_existing(
        cls,
        sae: SparseAutoencoder | str | os.PathLike[str] | None = None,
        store: Store | str | os.PathLike[str] | None = None,
        *,
        encoder: LatentTermEncoder | None = None,
        collection: str = "latentlex",
        recreate: bool = False,
        lexical: bool | LexicalConfig | None = None,
        index_kwargs: Mapping[str, Any] | None = None,
        **retriever_kwargs: Any,
    ) -> LatentLexRetriever:
        """A retriever over a collection built before: the same SAE, ``store`` and
        ``collection``; nothing is added and the collection keeps its legs. Re-opening a folder
        still open in this process (a notebook cell run again) shares the open collection. Or
        wrap an open index: ``LatentLexRetriever(index)``."""
        refuse_unknown(
            retriever_kwargs, (*_SETTINGS, "callback_manager", "verbose"), f"{cls.__name__}"
        )
        index = build_index(
            sae, store, encoder=encoder, collection=collection, recreate=recreate,
            lexical=lexical, index_kwargs=index_kwargs,
        )  # fmt: skip
        return cls(index, **retriever_kwargs)

    def add_documents(
        self,
        documents: Sequence[BaseNode],
        *,
        transformations: Sequence[TransformComponent] | None = None,
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        show_progress: bool = False,
    ) -> list[str]:
        """Split documents (``transformations``, default: the backbone-sized splitter, see
        :meth:`from_documents`) and index the nodes."""
        if transformations is None:
            transformations = [backbone_splitter(self.index, chunk_size, chunk_overlap)]
        elif chunk_size is not None or chunk_overlap is not None:
            raise ConfigError(
                "chunk_size/chunk_overlap set the default splitter: not with transformations="
            )
        nodes = split(documents, transformations, show_progress)
        logger.info(
            "split %d documents into %d nodes (%s)",
            len(documents),
            len(nodes),
            ", ".join(type(t).__name__ for t in transformations),
        )
        return self.add_nodes(nodes, progress=show_progress)

    def add_nodes(self, nodes: Sequence[BaseNode], *, progress: bool = False) -> list[str]:
        """Index nodes as they are: node id → document id, text, metadata (+ source doc id).

        Returns:
            The node ids written.
        """
        texts, ids, metas = node_rows(nodes)
        return self.index.add(texts, ids, metas, progress=progress)

    async def aadd_nodes(self, nodes: Sequence[BaseNode]) -> list[str]:
        """Async :meth:`add_nodes`."""
        texts, ids, metas = node_rows(nodes)
        return await self.index.aadd(texts, ids, metas)

    # ------------------------------------------------------------------ retrieving
    def _options(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "fusion": self.fusion,
            "weights": self.weights,
            "filter": self._neutral_filter,
            "with_legs": self.include_legs,
            **self.search_options,
        }

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_bundle.query_str
        hits = self.index.search(query, self.similarity_top_k, **self._options())
        explanations = (
            [self.index.explain(query, h.doc_id, self.explain_top).as_dict() for h in hits]
            if self.explain
            else None
        )
        return self._to_nodes(hits, explanations)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_bundle.query_str
        hits = await self.index.asearch(query, self.similarity_top_k, **self._options())
        explanations = None
        if self.explain:
            found = await asyncio.gather(
                *(self.index.aexplain(query, h.doc_id, self.explain_top) for h in hits)
            )
            explanations = [e.as_dict() for e in found]
        return self._to_nodes(hits, explanations)

    def _to_nodes(
        self, hits: list[Hit], explanations: list[dict[str, Any]] | None
    ) -> list[NodeWithScore]:
        out = []
        for n, hit in enumerate(hits):
            node = to_node(hit.doc_id, hit.text, hit.metadata)
            extra: dict[str, Any] = {}
            if self.include_legs:
                extra.update(hit.legs())
            if explanations is not None:
                extra["explanation"] = explanations[n]
            node.metadata.update(extra)
            for key in extra:
                for excluded in (
                    node.excluded_llm_metadata_keys,
                    node.excluded_embed_metadata_keys,
                ):
                    if key not in excluded:
                        excluded.append(key)
            out.append(NodeWithScore(node=node, score=hit.score))
        return out
