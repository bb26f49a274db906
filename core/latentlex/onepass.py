"""One backbone pass for both vectors, even when a framework asks for them separately.

The frameworks' stock Qdrant stores (LlamaIndex ``QdrantVectorStore``, langchain-qdrant in hybrid
mode) ask one object for the dense vectors and another for the sparse vectors of the same texts, one
after the other. :class:`OnePass` remembers the last texts encoded (dense and sparse together, from
one forward pass) so the second request is served from memory. One cache is shared per encoder
(:func:`one_pass`); it holds the last 4096 texts of each side (LlamaIndex embeds up to 2048 nodes
before it writes them). Both adapters use it.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from .sparse import SparseVector
from .terms import LatentTermEncoder

__all__ = ["OnePass", "one_pass"]

_CACHES: weakref.WeakKeyDictionary[LatentTermEncoder, OnePass] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class OnePass:
    """Encode texts once, serve their dense and sparse vectors to whoever asks next.

    Args:
        encoder: the :class:`LatentTermEncoder`.
        size: texts remembered per side (documents, queries), least recently used dropped.
    """

    def __init__(self, encoder: LatentTermEncoder, size: int = 4096) -> None:
        self.encoder = encoder
        self.size = size
        self._memo: dict[bool, OrderedDict[str, tuple[np.ndarray, SparseVector]]] = {
            False: OrderedDict(),
            True: OrderedDict(),
        }
        self._lock = threading.Lock()

    def encode(
        self, texts: Sequence[str], *, is_query: bool
    ) -> list[tuple[np.ndarray, SparseVector]]:
        """``(dense, sparse)`` per text, encoding only the texts not seen recently."""
        memo = self._memo[is_query]
        with self._lock:
            have = {t: memo[t] for t in texts if t in memo}
            for t in have:
                memo.move_to_end(t)
        missing = [t for t in dict.fromkeys(texts) if t not in have]
        if missing:
            encode = self.encoder.encode_queries if is_query else self.encoder.encode_documents
            enc = encode(missing)
            new = {t: (enc.dense[i], enc.sparse[i]) for i, t in enumerate(missing)}
            have.update(new)
            with self._lock:
                memo.update(new)
                while len(memo) > self.size:
                    memo.popitem(last=False)
        return [have[t] for t in texts]


def one_pass(encoder: LatentTermEncoder) -> OnePass:
    """The :class:`OnePass` shared by every adapter built on ``encoder``."""
    with _LOCK:
        cache = _CACHES.get(encoder)
        if cache is None:
            cache = _CACHES[encoder] = OnePass(encoder)
        return cache
