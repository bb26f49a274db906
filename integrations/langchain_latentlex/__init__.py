"""latentlex for LangChain: ``from langchain_latentlex import LatentLexRetriever``.

- :class:`LatentLexVectorStore`: a ``VectorStore`` over a latentlex hybrid index (dense + latent
  terms + lexical BM25, fused in Qdrant): add/delete/get by id, similarity search with scores,
  MMR, ``as_retriever``, LangChain's indexing API;
- :class:`LatentLexRetriever`: a ``BaseRetriever`` over the same kind of index, built from
  ``Document``s or texts in one call;
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
from .vectorstores import LatentLexVectorStore

__all__ = [
    "LEG_KEYS",
    "LatentLexEmbeddings",
    "LatentLexRetriever",
    "LatentLexSparseEmbeddings",
    "LatentLexVectorStore",
    "latentlex_sparse_vector_params",
]
