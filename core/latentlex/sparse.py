"""A tiny sparse vector type that maps 1:1 onto Qdrant's sparse vectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SparseVector"]


@dataclass(frozen=True)
class SparseVector:
    """Latent-term weights of one text: parallel arrays of latent ids and weights.

    ``indices`` are unique, sorted ascending (``uint32``); ``values`` are ``float32``.

    Example:
        >>> v = SparseVector.from_dict({7: 0.5, 2: 1.0})
        >>> v.indices.tolist(), v.values.tolist()
        ([2, 7], [1.0, 0.5])
    """

    indices: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        idx = np.asarray(self.indices)
        val = np.asarray(self.values, dtype=np.float32)
        if idx.ndim != 1 or val.ndim != 1 or idx.shape != val.shape:
            raise ValueError(
                f"indices and values must be 1-D arrays of equal length, got shapes "
                f"{idx.shape} and {val.shape}"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= 2**32):
            raise ValueError("sparse indices must lie in [0, 2**32)")
        idx = idx.astype(np.uint32, copy=False)
        if idx.size > 1 and not bool(np.all(idx[1:] > idx[:-1])):
            order = np.argsort(idx, kind="stable")
            idx, val = idx[order], val[order]
            if bool(np.any(idx[1:] == idx[:-1])):
                raise ValueError("sparse indices must be unique")
        object.__setattr__(self, "indices", idx)
        object.__setattr__(self, "values", val)

    @classmethod
    def empty(cls) -> SparseVector:
        """A vector with no non-zero entry."""
        return cls(np.zeros(0, np.uint32), np.zeros(0, np.float32))

    @classmethod
    def from_dict(cls, weights: dict[int, float]) -> SparseVector:
        """Build from a ``{latent_id: weight}`` mapping."""
        if not weights:
            return cls.empty()
        keys = np.fromiter(weights.keys(), dtype=np.int64, count=len(weights))
        vals = np.fromiter(weights.values(), dtype=np.float32, count=len(weights))
        return cls(keys, vals)

    def __len__(self) -> int:
        return int(self.indices.size)

    def as_dict(self) -> dict[int, float]:
        """``{latent_id: weight}``."""
        return dict(zip(self.indices.tolist(), self.values.tolist(), strict=True))

    def top(self, n: int) -> SparseVector:
        """The ``n`` largest entries (all of them when ``n`` is at least ``len(self)``)."""
        if n >= len(self):
            return self
        keep = np.sort(np.argpartition(-self.values, n - 1)[:n])
        return SparseVector(self.indices[keep], self.values[keep])

    def dot(self, other: SparseVector) -> float:
        """Inner product with another sparse vector."""
        _, a, b = np.intersect1d(
            self.indices, other.indices, assume_unique=True, return_indices=True
        )
        return float(np.dot(self.values[a].astype(np.float64), other.values[b]))

    def to_qdrant(self) -> Any:
        """As ``qdrant_client.models.SparseVector``."""
        from qdrant_client import models

        return models.SparseVector(indices=self.indices.tolist(), values=self.values.tolist())

    def to_edge(self) -> Any:
        """As ``qdrant_edge.SparseVector`` (the embedded engine's type)."""
        import qdrant_edge

        return qdrant_edge.SparseVector(indices=self.indices.tolist(), values=self.values.tolist())
