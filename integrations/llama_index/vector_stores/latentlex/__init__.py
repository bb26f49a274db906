"""latentlex as a LlamaIndex vector store: ``from llama_index.vector_stores.latentlex import LatentLexVectorStore``.

- :class:`LatentLexVectorStore`: a ``BasePydanticVectorStore`` (``stores_text=True``) over a
  latentlex hybrid index, for ``VectorStoreIndex`` / ``StorageContext`` / ``IngestionPipeline``;
- :class:`PassThroughEmbedding`: the embed model to use with it (the store encodes node text
  itself, one backbone pass per node).

Example:
    >>> from llama_index.core import StorageContext, VectorStoreIndex  # doctest: +SKIP
    >>> store = LatentLexVectorStore.from_params(sae="my-sae", store="./index")  # doctest: +SKIP
    >>> index = store.index_documents(docs)  # doctest: +SKIP
    >>> index.as_retriever(similarity_top_k=5).retrieve("Who likes quokkas?")  # doctest: +SKIP
"""

from __future__ import annotations

from .base import LatentLexVectorStore, PassThroughEmbedding, alpha_weights

__all__ = ["LatentLexVectorStore", "PassThroughEmbedding", "alpha_weights"]
