"""Latent terms for ``langchain_qdrant.QdrantVectorStore`` (``RetrievalMode.HYBRID`` / ``SPARSE``).

- :class:`LatentLexSparseEmbeddings`: langchain-qdrant's ``SparseEmbeddings`` over latent terms
  (documents: BM25-saturated values; queries: query-side weights);
- :func:`latentlex_sparse_vector_params`: the ``sparse_vector_params`` with ``modifier=IDF``,
  which langchain-qdrant never sets itself (without it the scores are not BM25);
- :class:`LatentLexEmbeddings`: the backbone's dense vector, so both legs come from the model the
  SAE was trained on, from one backbone pass per text (:mod:`latentlex.onepass`).

Example:
    >>> from langchain_qdrant import QdrantVectorStore, RetrievalMode  # doctest: +SKIP
    >>> store = QdrantVectorStore.from_texts(
    ...     texts, embedding=LatentLexEmbeddings("my-sae"),
    ...     sparse_embedding=LatentLexSparseEmbeddings("my-sae"),
    ...     retrieval_mode=RetrievalMode.HYBRID, location=":memory:",
    ...     sparse_vector_params=latentlex_sparse_vector_params())  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_qdrant import SparseEmbeddings, SparseVector
from latentlex.onepass import one_pass
from latentlex.terms import as_encoder

logger = logging.getLogger(__name__)

__all__ = [
    "LatentLexEmbeddings",
    "LatentLexSparseEmbeddings",
    "as_encoder",
    "latentlex_sparse_vector_params",
]


def latentlex_sparse_vector_params(*, on_disk: bool | None = None) -> dict[str, Any]:
    """``sparse_vector_params`` for ``QdrantVectorStore.from_texts/from_documents``: IDF on."""
    from qdrant_client import models

    return {
        "index": models.SparseIndexParams(on_disk=on_disk),
        "modifier": models.Modifier.IDF,
    }


class LatentLexSparseEmbeddings(SparseEmbeddings):
    """langchain-qdrant sparse embeddings made of SAE latent terms.

    Args:
        encoder: a :class:`LatentTermEncoder`, a ``LatentIndex``, an SAE, or an SAE folder/Hub id.

    Example:
        >>> sparse = LatentLexSparseEmbeddings("my-sae")  # doctest: +SKIP
        >>> sparse.embed_query("Who likes quokkas?").indices[:3]  # doctest: +SKIP
        [17, 204, 311]
    """

    def __init__(self, encoder: Any) -> None:
        self.encoder = as_encoder(encoder)

    def embed_documents(self, texts: list[str]) -> list[SparseVector]:
        return [_lc(s) for _, s in one_pass(self.encoder).encode(texts, is_query=False)]

    def embed_query(self, text: str) -> SparseVector:
        return _lc(one_pass(self.encoder).encode([text], is_query=True)[0][1])

    async def aembed_documents(self, texts: list[str]) -> list[SparseVector]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> SparseVector:
        return await asyncio.to_thread(self.embed_query, text)


class LatentLexEmbeddings(Embeddings):
    """The backbone's dense vector as LangChain ``Embeddings``.

    Shares its backbone pass with :class:`LatentLexSparseEmbeddings` on the same encoder.

    Example:
        >>> len(LatentLexEmbeddings("my-sae").embed_query("hello"))  # doctest: +SKIP
        384
    """

    def __init__(self, encoder: Any) -> None:
        self.encoder = as_encoder(encoder)

    def _dense(self, texts: list[str], *, is_query: bool) -> list[list[float]]:
        return [d.tolist() for d, _ in one_pass(self.encoder).encode(texts, is_query=is_query)]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._dense(texts, is_query=False)

    def embed_query(self, text: str) -> list[float]:
        return self._dense([text], is_query=True)[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)


def _lc(vector: Any) -> SparseVector:
    return SparseVector(indices=vector.indices.tolist(), values=vector.values.tolist())
