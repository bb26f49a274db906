"""LatentLexRetriever: a LlamaIndex retriever over a :class:`~latentlex.index.LatentIndex`.

It translates types and delegates: LlamaIndex nodes in (``add_nodes``), ``NodeWithScore`` out
(``retrieve`` / ``aretrieve``); ranking, fusion and filtering happen in the index (in Qdrant):
dense + latent terms, + lexical BM25 when the index has that leg (the default for new indexes).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import (
    BaseNode,
    MetadataMode,
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
    TransformComponent,
)
from llama_index.core.vector_stores.types import MetadataFilters

from latentlex.errors import ConfigError
from latentlex.index import DEFAULT_FUSION, LatentIndex, build_index
from latentlex.store.base import MODES, Fusion, Hit

from .filters import to_neutral

if TYPE_CHECKING:
    from latentlex.lexical import LexicalConfig
    from latentlex.sae import SparseAutoencoder
    from latentlex.store.base import Store
    from latentlex.terms import LatentTermEncoder

logger = logging.getLogger(__name__)

__all__ = ["LEG_KEYS", "REF_DOC_KEY", "LatentLexRetriever", "chunk_id"]

#: Metadata key under which a node's source document id is stored (and restored as its SOURCE).
REF_DOC_KEY = "ref_doc_id"
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


def chunk_id(i: int, doc: BaseNode) -> str:
    """Deterministic node ids for the default splitter: ``"<document id>#<chunk number>"``.

    Re-indexing a document with a stable id updates its chunks instead of duplicating them.
    """
    return f"{doc.node_id}#{i}"


class LatentLexRetriever(BaseRetriever):
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
        filters: LlamaIndex ``MetadataFilters`` (EQ, IN/ANY, CONTAINS, GT/GTE/LT/LTE joined by
            AND) or a latentlex filter mapping such as ``{"year": {"gte": 2020}}``.
        include_legs: add ``dense_score``, ``sparse_score``, ``lexical_score``, ``dense_rank``,
            ``sparse_rank`` and ``lexical_rank`` to each node's metadata (hybrid mode; a leg's
            fields are ``None`` where the node was not among its candidates, and the lexical
            ones always on an index without the lexical leg).
        explain: add ``explanation`` (the latent terms behind the sparse score,
            :meth:`LatentIndex.explain` as a dict) to each node's metadata.
        explain_top: latent terms kept per explanation.
        search_options: further :meth:`LatentIndex.search` options (``rrf_k``, ``prefetch_limit``).

    Example:
        >>> from llama_index.core import SimpleDirectoryReader  # doctest: +SKIP
        >>> from llama_index.core.query_engine import RetrieverQueryEngine  # doctest: +SKIP
        >>> docs = SimpleDirectoryReader("./docs").load_data()  # doctest: +SKIP
        >>> retriever = LatentLexRetriever.from_documents(docs, sae="my-sae", store="./index")  # doctest: +SKIP
        >>> engine = RetrieverQueryEngine.from_args(retriever, llm=llm)  # doctest: +SKIP
        >>> engine.query("Who likes quokkas?")  # doctest: +SKIP
    """

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
    ) -> None:
        if not isinstance(index, LatentIndex):
            raise ConfigError(
                f"index must be a latentlex LatentIndex, got {type(index).__name__}; build one "
                f"with LatentLexRetriever.from_documents(...) or LatentIndex(sae, store)"
            )
        if isinstance(similarity_top_k, bool) or not isinstance(similarity_top_k, int):
            raise ConfigError(f"similarity_top_k must be an int, got {similarity_top_k!r}")
        if similarity_top_k < 1:
            raise ConfigError(f"similarity_top_k must be >= 1, got {similarity_top_k}")
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "lexical" and not index.lexical:
            raise ConfigError(
                "mode 'lexical' needs an index with the lexical leg (LatentIndex(..., "
                "lexical=True), the default for new collections)"
            )
        self.index = index
        self.similarity_top_k = similarity_top_k
        self.mode = mode
        self.fusion = Fusion(fusion)
        self.weights = _weights(weights)
        self.filters = filters
        self.include_legs = include_legs
        self.explain = explain
        self.explain_top = explain_top
        self.search_options = dict(search_options or {})
        self._neutral_filter = to_neutral(filters)  # fail fast on what cannot be expressed
        super().__init__(callback_manager=callback_manager, verbose=verbose)

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
        collection: str = "latentlex",
        recreate: bool = False,
        lexical: bool | LexicalConfig | None = None,
        show_progress: bool = False,
        index_kwargs: Mapping[str, Any] | None = None,
        **retriever_kwargs: Any,
    ) -> LatentLexRetriever:
        """Split LlamaIndex documents into nodes, index them, and return a retriever.

        Args:
            documents: LlamaIndex ``Document``s (e.g. from ``SimpleDirectoryReader``) or nodes.
            sae: the SAE (object, folder or Hub id); or give ``encoder``.
            store: where the index lives: a folder (embedded Qdrant), ``":memory:"``, or a
                latentlex ``Store``; ``index_kwargs={"url": ...}`` for a Qdrant server.
            encoder: an already built :class:`LatentTermEncoder` (instead of ``sae``).
            transformations: node parsers/extractors to run (default: LlamaIndex's
                ``SentenceSplitter`` at ``Settings.chunk_size``, with deterministic node ids
                ``"<doc id>#<n>"``).
            collection / recreate: the collection name; drop and rebuild it first.
            lexical: the lexical BM25 leg (:class:`LatentIndex`'s ``lexical``): ``None``
                (default) builds a new collection with it and keeps an existing collection's
                setting; ``True``/``False`` or a :class:`~latentlex.lexical.LexicalConfig`
                force it.
            show_progress: progress bars while splitting and indexing.
            index_kwargs: further :class:`LatentIndex` arguments (``url``, ``api_key``, ...).
            **retriever_kwargs: arguments of :class:`LatentLexRetriever` (``similarity_top_k``, ...).
        """
        index = build_index(
            sae, store, encoder=encoder, collection=collection, recreate=recreate,
            lexical=lexical, index_kwargs=index_kwargs,
        )  # fmt: skip
        retriever = cls(index, **retriever_kwargs)
        retriever.add_documents(
            documents, transformations=transformations, show_progress=show_progress
        )
        return retriever

    def add_documents(
        self,
        documents: Sequence[BaseNode],
        *,
        transformations: Sequence[TransformComponent] | None = None,
        show_progress: bool = False,
    ) -> list[str]:
        """Split documents with ``transformations`` (default splitter) and index the nodes."""
        return self.add_nodes(
            _split(documents, transformations, show_progress), progress=show_progress
        )

    def add_nodes(self, nodes: Sequence[BaseNode], *, progress: bool = False) -> list[str]:
        """Index nodes as they are: node id → document id, text, metadata (+ source doc id).

        Returns:
            The node ids written.
        """
        texts, ids, metas = _node_rows(nodes)
        return self.index.add(texts, ids, metas, progress=progress)

    async def aadd_nodes(self, nodes: Sequence[BaseNode]) -> list[str]:
        """Async :meth:`add_nodes`."""
        texts, ids, metas = _node_rows(nodes)
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
            meta = dict(hit.metadata)
            ref = meta.pop(REF_DOC_KEY, None)
            extra: dict[str, Any] = {}
            if self.include_legs:
                extra.update(
                    dense_score=hit.dense_score,
                    sparse_score=hit.sparse_score,
                    lexical_score=hit.lexical_score,
                    dense_rank=hit.dense_rank,
                    sparse_rank=hit.sparse_rank,
                    lexical_rank=hit.lexical_rank,
                )
            if explanations is not None:
                extra["explanation"] = explanations[n]
            meta.update(extra)
            node = TextNode(
                id_=hit.doc_id,
                text=hit.text,
                metadata=meta,
                excluded_llm_metadata_keys=list(extra),
                excluded_embed_metadata_keys=list(extra),
            )
            if isinstance(ref, str) and ref != hit.doc_id:
                node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=ref)
            out.append(NodeWithScore(node=node, score=hit.score))
        return out


def _weights(weights: Sequence[float] | None) -> tuple[float, ...] | None:
    """Leg weights as a tuple of two or three floats (``None`` stays ``None``)."""
    if weights is None:
        return None
    try:
        out = tuple(float(w) for w in weights)
    except (TypeError, ValueError):
        out = ()
    if len(out) not in (2, 3) or isinstance(weights, (str, bytes)):
        raise ConfigError(
            f"weights must be two (dense, sparse) or three (dense, sparse, lexical) numbers, "
            f"got {weights!r}"
        )
    return out


def _split(
    documents: Sequence[BaseNode],
    transformations: Sequence[TransformComponent] | None,
    show_progress: bool,
) -> list[BaseNode]:
    from llama_index.core import Settings
    from llama_index.core.ingestion import run_transformations
    from llama_index.core.node_parser import SentenceSplitter

    if transformations is None:
        transformations = [
            SentenceSplitter(
                chunk_size=Settings.chunk_size,
                chunk_overlap=Settings.chunk_overlap,
                id_func=chunk_id,
            )
        ]
    return list(
        run_transformations(list(documents), list(transformations), show_progress=show_progress)
    )


def _node_rows(nodes: Sequence[BaseNode]) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    texts, ids, metas = [], [], []
    for node in nodes:
        if not isinstance(node, BaseNode):
            raise TypeError(f"expected LlamaIndex nodes, got {type(node).__name__}")
        meta = dict(node.metadata)
        ref = node.ref_doc_id
        if ref is not None and ref != node.node_id:
            meta[REF_DOC_KEY] = ref
        texts.append(node.get_content(metadata_mode=MetadataMode.NONE))
        ids.append(node.node_id)
        metas.append(meta)
    return texts, ids, metas
