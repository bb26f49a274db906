"""LatentLexVectorStore: a LlamaIndex vector store over a :class:`~latentlex.index.LatentIndex`.

The store keeps each node's text and encodes it itself: one pass of the SAE's backbone gives the
dense vector and the latent terms (and Qdrant's BM25 of the words when the index has the lexical
leg); queries are searched by their text, the legs fused inside Qdrant. LlamaIndex's embedding
step is then wasted work, so give the index :attr:`LatentLexVectorStore.embed_model`, which
computes nothing: one backbone pass per node.

Example:
    >>> from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex  # doctest: +SKIP
    >>> from llama_index.vector_stores.latentlex import LatentLexVectorStore  # doctest: +SKIP
    >>> store = LatentLexVectorStore.from_params(sae="my-sae", store="./index")  # doctest: +SKIP
    >>> docs = SimpleDirectoryReader("./docs", filename_as_id=True).load_data()  # doctest: +SKIP
    >>> index = VectorStoreIndex.from_documents(
    ...     docs, storage_context=StorageContext.from_defaults(vector_store=store),
    ...     embed_model=store.embed_model, transformations=[store.splitter()])  # doctest: +SKIP
    >>> index.as_query_engine(llm=llm).query("Who likes quokkas?")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr, model_validator
from llama_index.core.schema import BaseNode, TransformComponent
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.retrievers.latentlex.filters import REF_DOC_KEY, to_neutral
from llama_index.retrievers.latentlex.nodes import (
    backbone_splitter,
    check_mode,
    check_weights,
    node_rows,
    refuse_unknown,
    to_node,
)

from latentlex._options import ClosesIndex
from latentlex.errors import ConfigError
from latentlex.index import DEFAULT_FUSION, DEFAULT_MINMAX_WEIGHTS, LatentIndex, build_index
from latentlex.store.base import Fusion, Hit, PointRecord

if TYPE_CHECKING:
    from llama_index.core import VectorStoreIndex

    from latentlex.lexical import LexicalConfig
    from latentlex.store.base import Store
    from latentlex.terms import LatentTermEncoder

logger = logging.getLogger(__name__)

__all__ = ["LatentLexVectorStore", "PassThroughEmbedding"]

#: The settings of a store (defaults of every query; assignable later, validated).
_SETTINGS = ("mode", "fusion", "weights", "search_options")
#: Per-query keyword arguments (``as_retriever(vector_store_kwargs={...})``).
_QUERY_KWARGS = ("fusion", "weights", "rrf_k", "prefetch_limit", "mmr_threshold", "mmr_prefetch_k")
_QUERY_MODES = {
    VectorStoreQueryMode.SPARSE: "sparse",
    VectorStoreQueryMode.HYBRID: "hybrid",
    VectorStoreQueryMode.TEXT_SEARCH: "lexical",
}


class PassThroughEmbedding(BaseEmbedding):
    """An embed model that computes nothing, for :class:`LatentLexVectorStore` only.

    The store encodes each node's text itself (dense vector and latent terms from one backbone
    pass); this gives LlamaIndex's embedding step (``VectorStoreIndex``, ``IngestionPipeline``)
    an empty vector instead, so no text goes through a model twice. Its vectors are meaningless
    elsewhere.
    """

    model_name: str = "latentlex-pass-through"

    @classmethod
    def class_name(cls) -> str:
        return "LatentLexPassThroughEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return []

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return []

    def _get_text_embedding(self, text: str) -> list[float]:
        return []

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [[] for _ in texts]


def alpha_weights(alpha: float, lexical: bool) -> tuple[float, ...]:
    """LlamaIndex's hybrid ``alpha`` (1: dense only, 0: sparse only) as latentlex leg weights:
    the dense leg gets ``alpha``, the sparse side ``1 - alpha``, shared between latent terms and
    BM25 of the words as in :data:`~latentlex.index.DEFAULT_MINMAX_WEIGHTS` (1 : 2)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ConfigError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if not lexical:
        return (float(alpha), 1.0 - alpha)
    _, latent, words = DEFAULT_MINMAX_WEIGHTS
    share = latent / (latent + words)
    return (float(alpha), (1.0 - alpha) * share, (1.0 - alpha) * (1.0 - share))


class LatentLexVectorStore(ClosesIndex, BasePydanticVectorStore):
    """A LlamaIndex vector store on a latentlex hybrid index (dense + latent terms, + BM25 of the
    words), fused inside Qdrant: embedded Qdrant in a folder, ``":memory:"``, or a server.

    Query modes: ``DEFAULT`` runs the store's ``mode`` (``"hybrid"`` unless set, so
    ``index.as_retriever()`` returns what :class:`~llama_index.retrievers.latentlex.LatentLexRetriever`
    does), ``HYBRID`` the fused legs (``alpha`` weighs them: :func:`alpha_weights`), ``SPARSE``
    the latent terms alone, ``TEXT_SEARCH`` BM25 of the words alone, ``MMR`` maximal marginal
    relevance over the store's mode (``mmr_threshold``: its lambda). ``filters``, ``doc_ids``,
    ``node_ids``, ``similarity_top_k``, ``hybrid_top_k`` and ``sparse_top_k`` (candidates per
    leg) apply; a query needs its text (``query_str``), which LlamaIndex's retrievers pass.

    Args:
        index: the :class:`~latentlex.index.LatentIndex` (or build one: :meth:`from_params`).
        mode: what ``DEFAULT`` queries run: ``"hybrid"``, ``"dense"``, ``"sparse"`` or
            ``"lexical"``.
        fusion: ``"minmax"`` (default), ``"rrf"``, ``"dbsf"`` or ``"weighted"``.
        weights: ``(dense, sparse)`` or ``(dense, sparse, lexical)`` leg weights (``None``: the
            fusion's defaults).
        search_options: further :meth:`LatentIndex.search` options (``rrf_k``, ``prefetch_limit``).

    Settings can be assigned later (validated, used by the next query); an unknown argument or
    attribute is refused, naming the right one.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, validate_assignment=True)

    stores_text: bool = True
    is_embedding_query: bool = False
    flat_metadata: bool = False
    mode: str = "hybrid"
    fusion: Fusion = DEFAULT_FUSION
    weights: tuple[float, ...] | None = None
    search_options: dict[str, Any] = Field(default_factory=dict)

    _index: LatentIndex = PrivateAttr()
    _warned_embeddings: bool = PrivateAttr(default=False)

    def __init__(self, index: LatentIndex, **settings: Any) -> None:
        if not isinstance(index, LatentIndex):
            raise ConfigError(
                f"index must be a latentlex LatentIndex, got {type(index).__name__}; use "
                f"LatentLexVectorStore.from_params(sae=..., store=...)"
            )
        refuse_unknown(settings, _SETTINGS, type(self).__name__)
        super().__init__(**settings)
        self._index = index
        check_mode(self.mode, index)

    @model_validator(mode="before")
    @classmethod
    def _check_settings(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = dict(data)
            if data.get("weights") is not None:
                data["weights"] = check_weights(data["weights"])
            options = dict(data.get("search_options") or {})
            refuse_unknown(options, ("rrf_k", "prefetch_limit"), "search_options")
        return data

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            if name not in type(self).model_fields:
                try:
                    refuse_unknown([name], _SETTINGS, type(self).__name__, "setting")
                except TypeError as e:
                    raise AttributeError(str(e)) from None
            if name == "mode":
                value = check_mode(value, self._index)
            elif name == "weights":
                value = check_weights(value)
            elif name == "search_options":
                refuse_unknown(dict(value or {}), ("rrf_k", "prefetch_limit"), "search_options")
        super().__setattr__(name, value)

    @classmethod
    def class_name(cls) -> str:
        return "LatentLexVectorStore"

    # ------------------------------------------------------------------ building
    @classmethod
    def from_params(
        cls,
        sae: Any = None,
        store: Store | str | os.PathLike[str] | None = None,
        *,
        encoder: LatentTermEncoder | None = None,
        collection: str = "latentlex",
        recreate: bool = False,
        lexical: bool | LexicalConfig | None = None,
        index_kwargs: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> LatentLexVectorStore:
        """Open (or create) a collection: ``sae`` (an SAE, folder or Hub id) or ``encoder``;
        ``store`` a folder (embedded Qdrant), ``":memory:"`` or a latentlex ``Store``, or
        ``index_kwargs={"url": ...}`` for a server; ``lexical``: the BM25 leg (default: on for
        a new collection, an existing one keeps its setting); ``settings``: the store's."""
        refuse_unknown(settings, _SETTINGS, cls.__name__)
        index = build_index(
            sae, store, encoder=encoder, collection=collection, recreate=recreate,
            lexical=lexical, index_kwargs=index_kwargs,
        )  # fmt: skip
        return cls(index, **settings)

    @classmethod
    def from_existing(
        cls, sae: Any = None, store: Any = None, **kwargs: Any
    ) -> LatentLexVectorStore:
        """The store on a collection built before (the same SAE, ``store`` and ``collection``);
        then ``VectorStoreIndex.from_vector_store(store, embed_model=store.embed_model)`` or
        :meth:`as_index`. Re-opening a folder still open in this process (a notebook cell run
        again) shares the open collection. Same arguments as :meth:`from_params`."""
        return cls.from_params(sae, store, **kwargs)

    @property
    def client(self) -> Any:
        """The latentlex store (``EdgeStore`` / ``ClientStore``) under the index."""
        return self._index.store

    @property
    def latent_index(self) -> LatentIndex:
        """The :class:`~latentlex.index.LatentIndex` this store writes to and searches."""
        return self._index

    @property
    def embed_model(self) -> BaseEmbedding:
        """The embed model to give ``VectorStoreIndex`` / ``IngestionPipeline``: it computes
        nothing, as the store encodes node text itself (one backbone pass per node)."""
        return PassThroughEmbedding()

    def splitter(
        self, chunk_size: int | None = None, chunk_overlap: int | None = None
    ) -> TransformComponent:
        """A ``SentenceSplitter`` sized to what the backbone reads (default: all of it, 254
        backbone tokens for all-MiniLM-L6-v2): pass it as ``transformations=[...]``. LlamaIndex's
        default 1024-token chunks would be truncated by the backbone (with a warning)."""
        return backbone_splitter(self._index, chunk_size, chunk_overlap)

    def index_documents(
        self,
        documents: Sequence[BaseNode],
        *,
        transformations: Sequence[TransformComponent] | None = None,
        show_progress: bool = False,
        **index_kwargs: Any,
    ) -> VectorStoreIndex:
        """``VectorStoreIndex.from_documents`` on this store with its embed model and, unless
        ``transformations`` are given, its backbone-sized :meth:`splitter`."""
        from llama_index.core import StorageContext, VectorStoreIndex

        if transformations is None:
            transformations = [self.splitter()]
            logger.info(
                "splitting %d documents into nodes of at most %d backbone tokens",
                len(documents),
                transformations[0].chunk_size,  # type: ignore[attr-defined]
            )
        return VectorStoreIndex.from_documents(
            documents,  # type: ignore[arg-type]
            storage_context=StorageContext.from_defaults(vector_store=self),
            embed_model=self.embed_model,
            transformations=list(transformations),
            show_progress=show_progress,
            **index_kwargs,
        )

    def as_index(self, **index_kwargs: Any) -> VectorStoreIndex:
        """``VectorStoreIndex.from_vector_store`` on this store, with its embed model."""
        from llama_index.core import VectorStoreIndex

        return VectorStoreIndex.from_vector_store(
            self, embed_model=self.embed_model, **index_kwargs
        )

    def _owned_index(self) -> LatentIndex:
        return self._index

    # ------------------------------------------------------------------ writing
    def _rows(self, nodes: Sequence[BaseNode]) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        if not self._warned_embeddings and any(n.embedding for n in nodes):
            self._warned_embeddings = True
            logger.warning(
                "LatentLexVectorStore encodes node text itself (dense vector and latent terms "
                "from one backbone pass) and ignores the embeddings the embed model computed: "
                "pass embed_model=store.embed_model to skip that work"
            )
        return node_rows(nodes)

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Encode and write nodes (an existing node id is replaced); returns their ids."""
        texts, ids, metas = self._rows(nodes)
        self._index.add(texts, ids, metas)
        return ids

    async def async_add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Async :meth:`add`."""
        texts, ids, metas = self._rows(nodes)
        await self._index.aadd(texts, ids, metas)
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete the nodes of a source document."""
        refuse_unknown(delete_kwargs, (), "delete")
        self._index.delete(filter={REF_DOC_KEY: ref_doc_id})

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Async :meth:`delete`."""
        refuse_unknown(delete_kwargs, (), "adelete")
        await self._index.adelete(filter={REF_DOC_KEY: ref_doc_id})

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete nodes by id, by ``filters``, or those of ``node_ids`` that match ``filters``."""
        refuse_unknown(delete_kwargs, (), "delete_nodes")
        if filters is None and node_ids is not None:
            self._index.delete(list(node_ids))
        else:
            self._index.delete(filter=self._selection(node_ids, filters, required=True))

    async def adelete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Async :meth:`delete_nodes`."""
        refuse_unknown(delete_kwargs, (), "adelete_nodes")
        if filters is None and node_ids is not None:
            await self._index.adelete(list(node_ids))
        else:
            await self._index.adelete(filter=self._selection(node_ids, filters, required=True))

    def clear(self) -> None:
        """Delete every node (the collection is emptied; its settings stay)."""
        self._index.clear()

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        await self._index.aclear()

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _selection(
        node_ids: Sequence[str] | None,
        filters: MetadataFilters | Mapping[str, Any] | None,
        doc_ids: Sequence[str] | None = None,
        *,
        required: bool = False,
    ) -> dict[str, Any] | None:
        """One neutral filter: ``filters`` AND node id in ``node_ids`` AND source in ``doc_ids``
        (an empty or missing list restricts nothing)."""
        parts: list[dict[str, Any]] = []
        neutral = to_neutral(filters)
        if neutral:
            parts.append(neutral)
        if node_ids:
            parts.append({"doc_id": list(node_ids)})
        if doc_ids:
            parts.append({REF_DOC_KEY: {"in": list(doc_ids)}})
        if not parts:
            if required:
                raise ConfigError("give node_ids or filters (clear() deletes every node)")
            return None
        return parts[0] if len(parts) == 1 else {"$and": parts}

    @staticmethod
    def _nodes(records: Sequence[PointRecord]) -> list[BaseNode]:
        return [to_node(r.doc_id, r.text, r.metadata) for r in records]

    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        """Stored nodes: by id (in that order, missing ones skipped), by ``filters``, or all."""
        if filters is None and node_ids is not None:
            return self._nodes(self._index.get(list(node_ids)))
        return self._nodes(self._index.scroll(self._selection(node_ids, filters)))

    async def aget_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        """Async :meth:`get_nodes`."""
        if filters is None and node_ids is not None:
            return self._nodes(await self._index.aget(list(node_ids)))
        return self._nodes(await self._index.ascroll(self._selection(node_ids, filters)))

    # ------------------------------------------------------------------ querying
    def _search(
        self, query: VectorStoreQuery, kwargs: Mapping[str, Any]
    ) -> tuple[str, int, dict[str, Any], tuple[int, float] | None]:
        """``(query text, k, search options, (fetch_k, lambda) for MMR or None)``."""
        refuse_unknown(kwargs, _QUERY_KWARGS, "query")
        if query.query_str is None:
            raise ConfigError(
                "LatentLexVectorStore searches by query text: VectorStoreQuery.query_str is "
                "missing (LlamaIndex's retrievers pass it, as the store sets is_embedding_query "
                "to False)"
            )
        qmode = VectorStoreQueryMode(query.mode)
        if qmode in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
            mode = self.mode
        elif qmode in _QUERY_MODES:
            mode = _QUERY_MODES[qmode]
        else:
            raise ConfigError(
                f"query mode {qmode.value!r} is not supported: DEFAULT (the store's mode, "
                f"{self.mode!r}), HYBRID, SPARSE (latent terms), TEXT_SEARCH (BM25 of the words) "
                f"or MMR"
            )
        k = query.similarity_top_k
        if qmode == VectorStoreQueryMode.HYBRID and query.hybrid_top_k:
            k = query.hybrid_top_k
        weights = kwargs.get("weights", self.weights)
        if query.alpha is not None:
            if mode != "hybrid":
                raise ConfigError(f"alpha weighs the legs of hybrid search, not of mode {mode!r}")
            weights = alpha_weights(query.alpha, self._index.lexical)
        options: dict[str, Any] = {
            "mode": mode,
            "fusion": kwargs.get("fusion", self.fusion),
            "weights": weights,
            "filter": self._selection(query.node_ids, query.filters, query.doc_ids),
            "with_legs": False,
            **self.search_options,
        }
        for name in ("rrf_k", "prefetch_limit"):
            if name in kwargs:
                options[name] = kwargs[name]
        if query.sparse_top_k:
            options["prefetch_limit"] = max(query.sparse_top_k, k)
        mmr = None
        if qmode == VectorStoreQueryMode.MMR:
            threshold = kwargs.get("mmr_threshold", query.mmr_threshold)
            fetch_k = kwargs.get("mmr_prefetch_k", max(20, 4 * k))
            mmr = (fetch_k, 0.5 if threshold is None else threshold)
        return query.query_str, k, options, mmr

    @staticmethod
    def _result(hits: Sequence[Hit]) -> VectorStoreQueryResult:
        return VectorStoreQueryResult(
            nodes=[to_node(h.doc_id, h.text, h.metadata) for h in hits],
            similarities=[h.score for h in hits],
            ids=[h.doc_id for h in hits],
        )

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Search by the query's text (see the class docstring for the modes)."""
        text, k, options, mmr = self._search(query, kwargs)
        if mmr is not None:
            hits = self._index.search_mmr(text, k, fetch_k=mmr[0], lambda_mult=mmr[1], **options)
        else:
            hits = self._index.search(text, k, **options)
        return self._result(hits)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Async :meth:`query`."""
        text, k, options, mmr = self._search(query, kwargs)
        if mmr is not None:
            hits = await self._index.asearch_mmr(
                text, k, fetch_k=mmr[0], lambda_mult=mmr[1], **options
            )
        else:
            hits = await self._index.asearch(text, k, **options)
        return self._result(hits)
