"""A LlamaIndex node postprocessor that explains retrieved nodes with labelled latent terms.

``LatentLexExplainPostprocessor(index=...)`` runs :meth:`LatentIndex.explain` for each retrieved
node after the fact and stores the result in the node's metadata (excluded from the text the
LLM and the embedder see, unless asked). ``llama_index`` is imported only when the class is first
used, so ``import latentlex.postprocess`` works without it.

Example:
    >>> from latentlex.postprocess import LatentLexExplainPostprocessor  # doctest: +SKIP
    >>> post = LatentLexExplainPostprocessor(index=index, top=3)  # doctest: +SKIP
    >>> nodes = post.postprocess_nodes(nodes, query_str="who likes quokkas?")  # doctest: +SKIP
    >>> nodes[0].node.metadata["latent_terms"]  # doctest: +SKIP
    'quokkas / tapirs (2.31); likes (0.52)'
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import LatentLexError

if TYPE_CHECKING:
    from .index import Explanation

logger = logging.getLogger(__name__)

__all__ = [
    "LatentLexExplainPostprocessor",  # noqa: F822 - built on first access (lazy llama_index)
    "default_doc_id",
    "summarize_explanation",
]

EXPLANATION_KEY = "latent_explanation"
SUMMARY_KEY = "latent_terms"


def default_doc_id(node: Any) -> str:
    """The latentlex document id of a LlamaIndex node: ``metadata["doc_id"]``, else its node id."""
    meta = getattr(node, "metadata", None) or {}
    doc_id = meta.get("doc_id")
    return str(doc_id) if doc_id is not None else str(node.node_id)


def summarize_explanation(expl: Explanation, top: int = 5) -> str:
    """A one-line summary: ``"label (contribution); ..."`` of the strongest shared terms.

    Example:
        >>> from latentlex.index import Explanation, TermContribution
        >>> e = Explanation("q", "d", 1.5, 0.2, [TermContribution(3, "quokkas", 1, 1, 1.5, 1.5)], 1)
        >>> summarize_explanation(e)
        'quokkas (1.50)'
    """
    return "; ".join(f"{t.label} ({t.contribution:.2f})" for t in expl.terms[:top])


def _build() -> type:
    try:
        from llama_index.core.bridge.pydantic import Field
        from llama_index.core.postprocessor.types import BaseNodePostprocessor
        from llama_index.core.schema import NodeWithScore, QueryBundle
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise LatentLexError(
            "LatentLexExplainPostprocessor needs llama-index-core: "
            "pip install 'latentlex[llama-index]'"
        ) from e

    class LatentLexExplainPostprocessor(BaseNodePostprocessor):
        """Add latent-term explanations (with latent labels) to retrieved nodes' metadata.

        Args:
            index: the :class:`~latentlex.index.LatentIndex` the nodes came from (its ``labels``
                name the latents).
            top: terms kept per explanation.
            metadata_key: where the explanation dict goes (``terms``: latent, label, weights,
                idf, contribution).
            summary_key: where a one-line summary goes (None: none).
            show_to_llm: let the LLM see these metadata entries (default: hidden from the LLM
                and the embedder).
            doc_id_fn: node -> latentlex document id (default: ``metadata["doc_id"]`` or the
                node id).
        """

        index: Any = Field(exclude=True)
        top: int = Field(default=5, ge=1)
        metadata_key: str = Field(default=EXPLANATION_KEY)
        summary_key: str | None = Field(default=SUMMARY_KEY)
        show_to_llm: bool = Field(default=False)
        doc_id_fn: Callable[[Any], str] = Field(default=default_doc_id, exclude=True)

        @classmethod
        def class_name(cls) -> str:
            return "LatentLexExplainPostprocessor"

        def _postprocess_nodes(
            self,
            nodes: list[NodeWithScore],
            query_bundle: QueryBundle | None = None,
        ) -> list[NodeWithScore]:
            if query_bundle is None:
                raise ValueError("LatentLexExplainPostprocessor needs the query (query_bundle)")
            query = query_bundle.query_str
            for nws in nodes:
                node = nws.node
                doc_id = self.doc_id_fn(node)
                try:
                    expl = self.index.explain(query, doc_id, top=self.top)
                except KeyError:
                    logger.debug("node %s: document %r is not in the index", node.node_id, doc_id)
                    continue
                node.metadata[self.metadata_key] = expl.as_dict()
                keys = [self.metadata_key]
                if self.summary_key:
                    node.metadata[self.summary_key] = summarize_explanation(expl, self.top)
                    keys.append(self.summary_key)
                for key in keys:
                    if key not in node.excluded_embed_metadata_keys:
                        node.excluded_embed_metadata_keys.append(key)
                    if not self.show_to_llm and key not in node.excluded_llm_metadata_keys:
                        node.excluded_llm_metadata_keys.append(key)
            return nodes

    return LatentLexExplainPostprocessor


_CACHE: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    if name == "LatentLexExplainPostprocessor":
        if name not in _CACHE:
            _CACHE[name] = _build()
        return _CACHE[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
