"""LlamaIndex <-> latentlex translation shared by the retriever and the vector store.

A node is stored as one latentlex document: id = node id, text = the node's text (no metadata),
metadata = the node's metadata plus ``ref_doc_id`` (its source document, for filters and
``delete_ref_doc``) and, for any node but a plain ``TextNode`` (id, text, metadata, source),
LlamaIndex's own ``_node_content`` / ``_node_type`` (relationships, excluded keys, templates,
character offsets), so a hit comes back as the node that was written.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.schema import (
    BaseNode,
    MetadataMode,
    NodeRelationship,
    RelatedNodeInfo,
    TextNode,
    TransformComponent,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from latentlex._options import check_weights
from latentlex._options import refuse_unknown as _refuse_unknown
from latentlex.errors import ConfigError
from latentlex.store.base import MODES

from .filters import REF_DOC_KEY

if TYPE_CHECKING:
    from latentlex.index import LatentIndex

logger = logging.getLogger("llama_index.retrievers.latentlex")

__all__ = [
    "NODE_KEYS",
    "backbone_splitter",
    "check_mode",
    "check_weights",
    "chunk_id",
    "node_rows",
    "refuse_unknown",
    "to_node",
]

#: Metadata keys latentlex adds to stored nodes (not the user's).
NODE_KEYS = ("_node_content", "_node_type", REF_DOC_KEY)


def chunk_id(i: int, doc: BaseNode) -> str:
    """Deterministic node ids for the default splitter: ``"<document id>#<chunk number>"``.

    Re-indexing a document with a stable id updates its chunks instead of duplicating them.
    """
    return f"{doc.node_id}#{i}"


def _plain(node: BaseNode) -> bool:
    """Whether ``node`` is a ``TextNode`` with nothing but an id, text, metadata and a source:
    then those are all that is stored (no ``_node_content``)."""
    if type(node) is not TextNode:
        return False
    bare = TextNode(id_=node.node_id, text=node.text, metadata=node.metadata)
    source = node.relationships.get(NodeRelationship.SOURCE)
    if source is not None:
        bare.relationships[NodeRelationship.SOURCE] = source
    skip = {"embedding"}
    return bool(
        node.model_dump(mode="json", exclude=skip) == bare.model_dump(mode="json", exclude=skip)
    )


def node_rows(nodes: Iterable[BaseNode]) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """``(texts, ids, metadatas)`` for :meth:`LatentIndex.add`: the text without metadata, the
    node id, and the metadata with ``ref_doc_id`` and, unless the node is a plain ``TextNode``,
    the node's own fields."""
    texts, ids, metas = [], [], []
    for node in nodes:
        if not isinstance(node, BaseNode):
            raise TypeError(f"expected LlamaIndex nodes, got {type(node).__name__}")
        if _plain(node):
            meta = dict(node.metadata)
        else:
            meta = node_to_metadata_dict(node, remove_text=True, flat_metadata=False)
            for key in ("doc_id", "document_id", REF_DOC_KEY):  # LlamaIndex's copies of ref_doc_id
                meta.pop(key, None)
        if node.ref_doc_id is not None:
            meta[REF_DOC_KEY] = node.ref_doc_id
        texts.append(node.get_content(metadata_mode=MetadataMode.NONE))
        ids.append(node.node_id)
        metas.append(meta)
    return texts, ids, metas


def to_node(doc_id: str, text: str, metadata: Mapping[str, Any]) -> BaseNode:
    """The node a stored document came from (a plain ``TextNode`` for documents written
    without LlamaIndex's node fields)."""
    meta = dict(metadata)
    if "_node_content" in meta:
        try:
            node = metadata_dict_to_node(meta, text=text)
        except (ValueError, TypeError) as e:  # written by something else: keep what is there
            logger.debug("document %r: unreadable _node_content (%s)", doc_id, e)
        else:
            node.id_ = doc_id
            return node
    ref = meta.pop(REF_DOC_KEY, None)
    for key in NODE_KEYS:
        meta.pop(key, None)
    node = TextNode(id_=doc_id, text=text, metadata=meta)
    if isinstance(ref, str):
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=ref)
    return node


def backbone_splitter(
    index: LatentIndex, chunk_size: int | None = None, chunk_overlap: int | None = None
) -> TransformComponent:
    """LlamaIndex's ``SentenceSplitter`` counting the backbone's own tokens, at most
    ``chunk_size`` per node (default: all the backbone reads, 254 for all-MiniLM-L6-v2;
    LlamaIndex's default 1024 tiktoken tokens would be truncated), overlapping by
    ``chunk_overlap`` (default an eighth), with node ids ``"<doc id>#<n>"``."""
    from llama_index.core.node_parser import SentenceSplitter

    from latentlex.chunking import chunk_limit, default_overlap, token_counter

    backbone = index.encoder.backbone
    size = chunk_limit(backbone) if chunk_size is None else chunk_size
    overlap = default_overlap(size) if chunk_overlap is None else chunk_overlap
    return SentenceSplitter(
        chunk_size=size,
        chunk_overlap=overlap,
        tokenizer=token_counter(backbone),
        id_func=chunk_id,
    )


def split(
    documents: Sequence[BaseNode],
    transformations: Sequence[TransformComponent],
    show_progress: bool = False,
) -> list[BaseNode]:
    """Run ``transformations`` over documents (LlamaIndex's ``run_transformations``)."""
    from llama_index.core.ingestion import run_transformations

    return list(
        run_transformations(list(documents), list(transformations), show_progress=show_progress)
    )


def check_mode(mode: Any, index: LatentIndex) -> str:
    """A search mode the index can run."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "lexical" and not index.lexical:
        raise ConfigError(
            "mode 'lexical' needs an index with the lexical leg (LatentIndex(..., "
            "lexical=True), the default for new collections)"
        )
    return str(mode)


#: Names users reach for that mean something else here, and what to use instead.
_RIGHT_NAME = {
    "top_k": "use similarity_top_k",
    "k": "use similarity_top_k",
    "filter": "use filters",
    "search_kwargs": "use the arguments themselves (similarity_top_k=, filters=, mode=, ...)",
    "vector_store_query_mode": "use mode",
}


#: :func:`latentlex._options.refuse_unknown` naming LlamaIndex's usual wrong names.
refuse_unknown = functools.partial(_refuse_unknown, right_names=_RIGHT_NAME)
