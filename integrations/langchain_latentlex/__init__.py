"""latentlex for LangChain: ``from langchain_latentlex import LatentLexRetriever``.

- :class:`LatentLexRetriever`: a ``BaseRetriever`` over a latentlex hybrid index (dense + latent
  terms + lexical BM25, fused in Qdrant), built from ``Document``s or texts in one call;
- :class:`LatentLexSparseEmbeddings`, :class:`LatentLexEmbeddings`,
  :func:`latentlex_sparse_vector_params`: latent terms for ``langchain_qdrant.QdrantVectorStore``.

Example:
    >>> retriever = LatentLexRetriever.from_texts(
    ...     ["Quokkas live on Rottnest Island."], sae="my-sae", store="./index")  # doctest: +SKIP
    >>> chain = retriever | format_docs | prompt | llm  # doctest: +SKIP
"""

from __future__ import annotations

from .embeddings import (
    LatentLexEmbeddings,
    LatentLexSparseEmbeddings,
    latentlex_sparse_vector_params,
)
from .retrievers import LEG_KEYS, LatentLexRetriever

__all__ = [
    "LEG_KEYS",
    "LatentLexEmbeddings",
    "LatentLexRetriever",
    "LatentLexSparseEmbeddings",
    "latentlex_sparse_vector_params",
]
