"""Maximal marginal relevance: pick results that are relevant and unlike each other.

Example:
    >>> import numpy as np
    >>> q = np.array([1.0, 0.0])
    >>> docs = np.array([[1.0, 0.0], [0.99, 0.1], [0.6, 0.8]])
    >>> mmr_order(q, docs, k=2, lambda_mult=1.0)   # relevance only: the two nearest
    [0, 1]
    >>> mmr_order(q, docs, k=2, lambda_mult=0.3)   # the near-duplicate gives way
    [0, 2]
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ConfigError

__all__ = ["check_mmr", "mmr_order"]


def check_mmr(k: int, fetch_k: int, lambda_mult: float) -> None:
    """Validate MMR arguments.

    Raises:
        ConfigError: naming the bad argument.
    """
    for name, v in (("k", k), ("fetch_k", fetch_k)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be a positive int, got {v!r}")
    if (
        isinstance(lambda_mult, bool)
        or not isinstance(lambda_mult, (int, float))
        or not math.isfinite(lambda_mult)
        or not 0.0 <= lambda_mult <= 1.0
    ):
        raise ConfigError(f"lambda_mult must be a number in [0, 1], got {lambda_mult!r}")


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def mmr_order(query: np.ndarray, docs: np.ndarray, k: int, lambda_mult: float) -> list[int]:
    """Indices of up to ``k`` rows of ``docs``, picked greedily by
    ``lambda_mult * cos(query, d) - (1 - lambda_mult) * max cos(d, picked)``."""
    docs = np.asarray(docs, dtype=np.float64)
    if docs.ndim != 2 or not len(docs):
        return []
    d = _unit(docs)
    relevance = d @ _unit(np.asarray(query, dtype=np.float64))
    picked = [int(np.argmax(relevance))]
    closest = d @ d[picked[0]]  # each row's highest similarity to a picked row
    while len(picked) < min(k, len(d)):
        score = lambda_mult * relevance - (1.0 - lambda_mult) * closest
        score[picked] = -np.inf
        nxt = int(np.argmax(score))
        picked.append(nxt)
        closest = np.maximum(closest, d @ d[nxt])
    return picked
