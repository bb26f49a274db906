"""latentlex for LlamaIndex: ``from llama_index.retrievers.latentlex import LatentLexRetriever``.

- :class:`LatentLexRetriever`: a ``BaseRetriever`` over a latentlex hybrid index (dense + latent
  terms + lexical BM25, fused in Qdrant), built from LlamaIndex documents in one call;
- :class:`LatentLexSparseEmbedding`, :class:`LatentLexEmbedding`, :func:`latentlex_sparse_fns`,
  :func:`latentlex_sparse_config`: latent terms for LlamaIndex's stock ``QdrantVectorStore``;
- :func:`to_neutral`: ``MetadataFilters`` → latentlex filter mapping.

Example:
    >>> from llama_index.core import SimpleDirectoryReader  # doctest: +SKIP
    >>> from llama_index.core.chat_engine import ContextChatEngine  # doctest: +SKIP
    >>> docs = SimpleDirectoryReader("./docs").load_data()  # doctest: +SKIP
    >>> retriever = LatentLexRetriever.from_documents(docs, sae="my-sae", store="./index")  # doctest: +SKIP
    >>> chat = ContextChatEngine.from_defaults(retriever, llm=llm)  # doctest: +SKIP
    >>> print(chat.chat("Who likes quokkas?"))  # doctest: +SKIP
"""

from __future__ import annotations

from .base import LEG_KEYS, REF_DOC_KEY, LatentLexRetriever, chunk_id
from .embeddings import (
    LatentLexEmbedding,
    LatentLexSparseEmbedding,
    latentlex_sparse_config,
    latentlex_sparse_fns,
)
from .filters import to_neutral

__all__ = [
    "LEG_KEYS",
    "REF_DOC_KEY",
    "LatentLexEmbedding",
    "LatentLexRetriever",
    "LatentLexSparseEmbedding",
    "chunk_id",
    "latentlex_sparse_config",
    "latentlex_sparse_fns",
    "to_neutral",
]
