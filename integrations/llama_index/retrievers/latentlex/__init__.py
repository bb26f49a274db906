"""latentlex for LlamaIndex: ``from llama_index.retrievers.latentlex import LatentLexRetriever``.

- :class:`LatentLexRetriever`: a ``BaseRetriever`` over a latentlex hybrid index (dense + latent
  terms + lexical BM25, fused in Qdrant), built from LlamaIndex documents in one call;
- :class:`LatentLexExplainPostprocessor`: labelled latent-term explanations added to retrieved
  nodes (the same as ``latentlex.postprocess.LatentLexExplainPostprocessor``);
- :class:`LatentLexSparseEmbedding`, :class:`LatentLexEmbedding`, :func:`latentlex_sparse_fns`,
  :func:`latentlex_sparse_config`: latent terms for LlamaIndex's stock ``QdrantVectorStore``;
- :func:`to_neutral`: ``MetadataFilters`` → latentlex filter mapping;
- :func:`backbone_splitter`: a ``SentenceSplitter`` sized to what the backbone reads.

The vector store (``VectorStoreIndex``, ``IngestionPipeline``):
``from llama_index.vector_stores.latentlex import LatentLexVectorStore``.

Example:
    >>> from llama_index.core import SimpleDirectoryReader  # doctest: +SKIP
    >>> from llama_index.core.chat_engine import ContextChatEngine  # doctest: +SKIP
    >>> docs = SimpleDirectoryReader("./docs", filename_as_id=True).load_data()  # doctest: +SKIP
    >>> retriever = LatentLexRetriever.from_documents(docs, sae="my-sae", store="./index")  # doctest: +SKIP
    >>> chat = ContextChatEngine.from_defaults(retriever, llm=llm)  # doctest: +SKIP
    >>> print(chat.chat("Who likes quokkas?"))  # doctest: +SKIP
"""

from __future__ import annotations

from latentlex.postprocess import LatentLexExplainPostprocessor

from .base import LEG_KEYS, REF_DOC_KEY, LatentLexRetriever
from .embeddings import (
    LatentLexEmbedding,
    LatentLexSparseEmbedding,
    latentlex_sparse_config,
    latentlex_sparse_fns,
)
from .filters import to_neutral
from .nodes import backbone_splitter, chunk_id

__all__ = [
    "LEG_KEYS",
    "REF_DOC_KEY",
    "LatentLexEmbedding",
    "LatentLexExplainPostprocessor",
    "LatentLexRetriever",
    "LatentLexSparseEmbedding",
    "backbone_splitter",
    "chunk_id",
    "latentlex_sparse_config",
    "latentlex_sparse_fns",
    "to_neutral",
]
