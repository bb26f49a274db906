"""The lexical leg: Qdrant's own BM25 sparse vectors, computed client-side.

Documents and queries go through ``qdrant_edge.Bm25`` (the tokenizer Qdrant uses for its
server-side BM25 inference: word tokenizer, lower-casing, the language's stop words and
Snowball stemmer). Tokens are hashed to sparse indices; a document value is the saturated term
frequency ``tf (k1 + 1) / (tf + k1 (1 − b + b · len / avg_len))``, a query value is 1.0 per
unique token. The sparse vector is stored with ``modifier=IDF``, so Qdrant multiplies in
``IDF = ln((N − n + 0.5) / (n + 0.5) + 1)`` at query time and a query's score is classic BM25.

The values are computed here for both engines (embedded ``qdrant-edge`` and ``qdrant-client``
against a server), so both score identically.

Example:
    >>> enc = LexicalEncoder(LexicalConfig(avg_len=8.0))
    >>> doc = enc.encode_documents(["Sea otters hold hands while sleeping."])[0]
    >>> len(doc), len(enc.encode_query("otter")), len(enc.encode_query("the of and"))
    (5, 1, 0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentlex.errors import ConfigError
from latentlex.sparse import SparseVector

__all__ = ["LexicalConfig", "LexicalEncoder", "measure_avg_len"]


def _bm25(k1: float, b: float, avg_len: float, language: str) -> Any:
    """A ``qdrant_edge.Bm25`` model; its errors become :class:`ConfigError`."""
    import qdrant_edge as qe

    try:
        return qe.Bm25(qe.Bm25Config(k=k1, b=b, avg_len=avg_len, language=language))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"invalid lexical (BM25) configuration: {e}") from None


@dataclass(frozen=True)
class LexicalConfig:
    """Parameters of the lexical BM25 leg (Qdrant's ``Bm25Config``).

    Attributes:
        k1: Term-frequency saturation (``>= 0``).
        b: Length normalisation, in ``[0, 1]``.
        avg_len: Average document length in tokens (``> 0``); Qdrant's default is 256.
            :func:`measure_avg_len` measures it on a corpus.
        language: Tokenizer language (stop words and stemmer), e.g. ``"english"``.

    Example:
        >>> LexicalConfig(avg_len=120.0).as_dict()
        {'k1': 1.2, 'b': 0.75, 'avg_len': 120.0, 'language': 'english'}
    """

    k1: float = 1.2
    b: float = 0.75
    avg_len: float = 256.0
    language: str = "english"

    def __post_init__(self) -> None:
        for name in ("k1", "b", "avg_len"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"lexical {name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.k1 < 0:
            raise ConfigError(f"lexical k1 must be >= 0, got {self.k1}")
        if not 0.0 <= self.b <= 1.0:
            raise ConfigError(f"lexical b must lie in [0, 1], got {self.b}")
        if self.avg_len <= 0:
            raise ConfigError(f"lexical avg_len must be > 0, got {self.avg_len}")
        if not isinstance(self.language, str) or not self.language:
            raise ConfigError(f"lexical language must be a non-empty str, got {self.language!r}")
        _bm25(self.k1, self.b, self.avg_len, self.language)  # refuses an unknown language

    def as_dict(self) -> dict[str, Any]:
        """The parameters as a JSON-able mapping (part of a collection's identity)."""
        return {"k1": self.k1, "b": self.b, "avg_len": self.avg_len, "language": self.language}


def _to_sparse(vec: Any) -> SparseVector:
    """A ``qdrant_edge.SparseVector`` as a :class:`SparseVector` (sorted, unique indices)."""
    idx = np.asarray(vec.indices, dtype=np.int64)
    val = np.asarray(vec.values, dtype=np.float32)
    if idx.size == 0:
        return SparseVector.empty()
    uniq, inverse = np.unique(idx, return_inverse=True)
    if uniq.size != idx.size:  # defensive: keep the largest value of a repeated index
        merged = np.full(uniq.size, -np.inf, dtype=np.float32)
        np.maximum.at(merged, inverse, val)
        return SparseVector(uniq, merged)
    order = np.argsort(idx, kind="stable")
    return SparseVector(idx[order], val[order])


def _check_texts(texts: Sequence[str], what: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, not a single string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] must be a str, got {type(t).__name__}")
    return out


class LexicalEncoder:
    """Texts to BM25 sparse vectors with Qdrant's tokenizer (``qdrant_edge.Bm25``).

    Args:
        config: The BM25 parameters (default :class:`LexicalConfig`).

    Text without any indexable token (empty, or only stop words) gives an empty vector.
    """

    def __init__(self, config: LexicalConfig | None = None) -> None:
        if config is None:
            config = LexicalConfig()
        if not isinstance(config, LexicalConfig):
            raise ConfigError(f"config must be a LexicalConfig, got {type(config).__name__}")
        self.config = config
        self._model = _bm25(config.k1, config.b, config.avg_len, config.language)

    def __repr__(self) -> str:
        return f"LexicalEncoder({self.config!r})"

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """Saturated term frequencies of each document (to store with the IDF modifier)."""
        return [_to_sparse(self._model.embed_document(t)) for t in _check_texts(texts, "texts")]

    def encode_query(self, text: str) -> SparseVector:
        """1.0 per unique token of a query."""
        if not isinstance(text, str):
            raise TypeError(f"query must be a str, got {type(text).__name__}")
        return _to_sparse(self._model.embed_query(text))

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        """:meth:`encode_query` of each text."""
        return [_to_sparse(self._model.embed_query(t)) for t in _check_texts(texts, "queries")]


def measure_avg_len(texts: Sequence[str], language: str = "english") -> float:
    """Mean token count of ``texts`` as Qdrant's BM25 tokenizer sees it (at least 1.0).

    With ``b = 0`` a document value is ``tf (k + 1) / (tf + k)``; inverting it recovers ``tf``
    exactly, and the sum of ``tf`` is the document length the engine uses (stop words
    excluded).

    Example:
        >>> measure_avg_len(["the otters sleep", "otters hold hands, otters drift"])
        3.5
    """
    texts = _check_texts(texts, "texts")
    k = 1.2
    probe = _bm25(k, 0.0, 256.0, language)
    total = 0.0
    for t in texts:
        v = np.asarray(probe.embed_document(t).values, dtype=np.float64)
        total += float(np.rint(v * k / (k + 1.0 - v)).sum())
    return max(total / max(len(texts), 1), 1.0)
