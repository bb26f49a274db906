"""Latent terms for LlamaIndex's own stores: a sparse embedding, sparse functions, a dense embedding.

Use these when you keep LlamaIndex's stock ``QdrantVectorStore`` instead of
:class:`~llama_index.retrievers.latentlex.LatentLexRetriever`:

- :func:`latentlex_sparse_fns` gives the ``sparse_doc_fn`` / ``sparse_query_fn`` pair the store
  calls with a batch of texts; documents get BM25-saturated latent-term values, queries their
  query-side weights;
- :func:`latentlex_sparse_config` gives the ``sparse_config`` with ``modifier=IDF``: the store sets
  IDF only for its own FastEmbed models, and without IDF latent-term scores are not BM25;
- :class:`LatentLexEmbedding` is the backbone's dense vector, so both vectors come from the model
  the SAE was trained on.

Example:
    >>> from qdrant_client import QdrantClient  # doctest: +SKIP
    >>> from llama_index.vector_stores.qdrant import QdrantVectorStore  # doctest: +SKIP
    >>> doc_fn, query_fn = latentlex_sparse_fns("my-sae")  # doctest: +SKIP
    >>> store = QdrantVectorStore("docs", client=QdrantClient(":memory:"), enable_hybrid=True,
    ...     sparse_doc_fn=doc_fn, sparse_query_fn=query_fn,
    ...     sparse_config=latentlex_sparse_config())  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.embeddings.base_sparse import BaseSparseEmbedding, SparseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr

from latentlex.onepass import one_pass
from latentlex.terms import LatentTermEncoder, as_encoder

if TYPE_CHECKING:
    from latentlex.index import LatentIndex
    from latentlex.sae import SparseAutoencoder

logger = logging.getLogger(__name__)

__all__ = [
    "LatentLexEmbedding",
    "LatentLexSparseEmbedding",
    "as_encoder",
    "latentlex_sparse_config",
    "latentlex_sparse_fns",
]

#: What the stock store's ``sparse_doc_fn`` / ``sparse_query_fn`` return: indices and values lists.
BatchSparse = tuple[list[list[int]], list[list[float]]]


def latentlex_sparse_fns(
    encoder: LatentTermEncoder | LatentIndex | SparseAutoencoder | str | os.PathLike[str],
) -> tuple[Callable[[list[str]], BatchSparse], Callable[[list[str]], BatchSparse]]:
    """``(sparse_doc_fn, sparse_query_fn)`` for ``QdrantVectorStore(enable_hybrid=True, ...)``.

    Each takes a batch of texts and returns ``(indices lists, values lists)``; pair them with
    :func:`latentlex_sparse_config` so Qdrant multiplies IDF in. With :class:`LatentLexEmbedding`
    on the same encoder as the embed model, each text goes through the backbone once: the
    vector asked second comes from the pass that made the first.
    """
    cache = one_pass(as_encoder(encoder))

    def sparse_doc_fn(texts: list[str]) -> BatchSparse:
        return _lists([s for _, s in cache.encode(texts, is_query=False)])

    def sparse_query_fn(texts: list[str]) -> BatchSparse:
        return _lists([s for _, s in cache.encode(texts, is_query=True)])

    return sparse_doc_fn, sparse_query_fn


def latentlex_sparse_config(*, on_disk: bool | None = None) -> Any:
    """``qdrant_client.models.SparseVectorParams`` with ``modifier=IDF`` for the stock store."""
    from qdrant_client import models

    return models.SparseVectorParams(
        index=models.SparseIndexParams(on_disk=on_disk), modifier=models.Modifier.IDF
    )


def _lists(vectors: Sequence[Any]) -> BatchSparse:
    return [v.indices.tolist() for v in vectors], [v.values.tolist() for v in vectors]


class LatentLexSparseEmbedding(BaseSparseEmbedding):
    """LlamaIndex's sparse embedding interface over latent terms (``{latent id: weight}``).

    Texts are embedded as documents (BM25-saturated values), queries with query-side weights;
    score them against a Qdrant sparse vector with ``modifier=IDF``.

    Args:
        encoder: a :class:`LatentTermEncoder`, a ``LatentIndex``, an SAE, or an SAE folder/Hub id.

    Example:
        >>> emb = LatentLexSparseEmbedding("my-sae")  # doctest: +SKIP
        >>> emb.get_query_embedding("Who likes quokkas?")  # doctest: +SKIP
        {17: 1.9, 204: 0.7, ...}
    """

    _encoder: LatentTermEncoder = PrivateAttr()

    def __init__(self, encoder: Any, **kwargs: Any) -> None:
        enc = as_encoder(encoder)
        kwargs.setdefault("model_name", f"latentlex:{enc.sae.fingerprint()}")
        super().__init__(**kwargs)
        self._encoder = enc

    @classmethod
    def class_name(cls) -> str:
        return "LatentLexSparseEmbedding"

    @property
    def encoder(self) -> LatentTermEncoder:
        return self._encoder

    def _get_query_embedding(self, query: str) -> SparseEmbedding:
        return one_pass(self._encoder).encode([query], is_query=True)[0][1].as_dict()

    async def _aget_query_embedding(self, query: str) -> SparseEmbedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> SparseEmbedding:
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> SparseEmbedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    def _get_text_embeddings(self, texts: list[str]) -> list[SparseEmbedding]:
        return [s.as_dict() for _, s in one_pass(self._encoder).encode(texts, is_query=False)]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[SparseEmbedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)


class LatentLexEmbedding(BaseEmbedding):
    """The backbone's dense vector as a LlamaIndex embedding (the model the SAE was trained on).

    Shares its backbone pass with the sparse functions/embedding built on the same encoder.

    Example:
        >>> embed_model = LatentLexEmbedding("my-sae")  # doctest: +SKIP
        >>> len(embed_model.get_text_embedding("hello"))  # doctest: +SKIP
        384
    """

    _encoder: LatentTermEncoder = PrivateAttr()

    def __init__(self, encoder: Any, **kwargs: Any) -> None:
        enc = as_encoder(encoder)
        kwargs.setdefault("model_name", enc.backbone.name)
        super().__init__(**kwargs)
        self._encoder = enc

    @classmethod
    def class_name(cls) -> str:
        return "LatentLexEmbedding"

    def _dense(self, texts: list[str], *, is_query: bool) -> list[list[float]]:
        return [d.tolist() for d, _ in one_pass(self._encoder).encode(texts, is_query=is_query)]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._dense([query], is_query=True)[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._dense([text], is_query=False)[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._dense(texts, is_query=False)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
