"""The Qdrant seam: one store protocol, two engines.

- :class:`EdgeStore`: the embedded default, Qdrant's engine in-process (``qdrant-edge``),
  persisted in a local folder.
- :class:`ClientStore` / :class:`AsyncClientStore`: ``qdrant-client`` — a server, cluster or
  Qdrant Cloud by URL, or the client's local mode (``":memory:"`` / ``path=``).

Both fuse the dense and latent-term legs (and, in collections with ``lexical_name``, a third
lexical BM25 leg) inside Qdrant (RRF, weighted RRF, DBSF, or a weighted sum formula) and
validate a collection's schema and identity before writing to it.
"""

from __future__ import annotations

from latentlex.store.base import (
    FORMAT_VERSION,
    POINT_NAMESPACE,
    AsyncStore,
    CollectionSpec,
    Fusion,
    Hit,
    PointRecord,
    SearchRequest,
    Store,
    point_id,
)
from latentlex.store.client import AsyncClientStore, ClientStore
from latentlex.store.edge import EdgeStore
from latentlex.store.filters import Filter

__all__ = [
    "FORMAT_VERSION",
    "POINT_NAMESPACE",
    "AsyncClientStore",
    "AsyncStore",
    "ClientStore",
    "CollectionSpec",
    "EdgeStore",
    "Filter",
    "Fusion",
    "Hit",
    "PointRecord",
    "SearchRequest",
    "Store",
    "point_id",
]
