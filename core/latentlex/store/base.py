"""The store protocol and the engine-neutral pieces both Qdrant engines share.

A collection holds one point per document: a named dense vector (``"dense"``, cosine) and a
named sparse vector (``"latent"``, ``modifier=IDF``: Qdrant multiplies
``IDF = ln((N - n + 0.5) / (n + 0.5) + 1)`` in at query time, the caller stores
BM25-saturated document values), and optionally a third, lexical sparse vector
(``CollectionSpec.lexical_name``, e.g. ``"bm25"``, also ``modifier=IDF``: Qdrant's BM25 of
the words, see :mod:`latentlex.lexical`). The payload is
``{"doc_id": str, "text": str, "metadata": {...}, "hash": str}``; the point id is
:func:`point_id` of the document id, so re-indexing a document updates it.

A collection also records what wrote it (its *identity*: format version, SAE and backbone
fingerprints, dense dimension, ``avgdl``, ...). :meth:`Store.open` compares it, and the
schema, with what the caller expects and refuses a mismatch before anything is written.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

from latentlex.errors import CollectionMismatchError, ConfigError
from latentlex.sparse import SparseVector
from latentlex.store.filters import Filter

__all__ = [
    "FORMAT_VERSION",
    "MODES",
    "POINT_NAMESPACE",
    "AsyncStore",
    "CollectionSpec",
    "Fusion",
    "Hit",
    "PointRecord",
    "SearchRequest",
    "Store",
    "ThreadedAsyncMixin",
    "point_id",
]

#: Version of the on-disk/collection layout this code writes. Collections written by a newer
#: version are refused on open.
FORMAT_VERSION = 1
#: Namespace of the UUIDv5 point ids (fixed forever: changing it orphans every collection).
#: Largest k, prefetch limit and RRF constant accepted (bounds the work of one query).
MAX_LIMIT = 1_000_000
POINT_NAMESPACE = uuid.UUID("5b0c3a5e-6c1d-5d1e-9a4f-1a7e27e1e7e1")
#: Key of the latentlex record in collection metadata / the edge sidecar.
META_KEY = "latentlex"


def point_id(doc_id: str) -> str:
    """The Qdrant point id of a document id: ``str(uuid5(POINT_NAMESPACE, doc_id))``.

    Example:
        >>> point_id("a") == point_id("a") != point_id("b")
        True
    """
    if not isinstance(doc_id, str):
        raise TypeError(f"doc_id must be a str, got {type(doc_id).__name__}")
    return str(uuid.uuid5(POINT_NAMESPACE, doc_id))


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection must look like.

    Attributes:
        name: Collection name (overrides the store's default collection when non-empty).
        dense_dim: Dimension of the dense vector.
        identity: JSON-able record of what writes the collection (``format_version``,
            ``sae_fingerprint``, ``backbone``, ``backbone_fingerprint``, ``dense_dim``,
            ``avgdl``, ...). Compared key by key on open.
        dense_name: Name of the dense vector.
        sparse_name: Name of the sparse (latent-term) vector.
        on_disk: Keep vectors and payload on disk (memory-mapped) instead of in RAM.
        lexical_name: Name of the lexical (BM25 of the words) sparse vector, or ``None`` for a
            collection without the lexical leg.
    """

    name: str
    dense_dim: int
    identity: dict[str, Any]
    dense_name: str = "dense"
    sparse_name: str = "latent"
    on_disk: bool = False
    lexical_name: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.dense_dim, bool) or not isinstance(self.dense_dim, int):
            raise ConfigError(f"dense_dim must be an int, got {self.dense_dim!r}")
        if not 1 <= self.dense_dim <= 65536:
            raise ConfigError(f"dense_dim must lie in [1, 65536], got {self.dense_dim}")
        if not self.dense_name or not self.sparse_name or self.dense_name == self.sparse_name:
            raise ConfigError("dense_name and sparse_name must be distinct non-empty strings")
        if self.lexical_name is not None and (
            not isinstance(self.lexical_name, str)
            or not self.lexical_name
            or self.lexical_name in (self.dense_name, self.sparse_name)
        ):
            raise ConfigError(
                f"lexical_name must be None or a non-empty string distinct from dense_name and "
                f"sparse_name, got {self.lexical_name!r}"
            )
        try:
            json.dumps(self.identity, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"identity must be JSON-serialisable: {e}") from e


@dataclass
class PointRecord:
    """One document as stored.

    ``dense`` comes back unit-normalised from :meth:`Store.get` (cosine collections store
    normalised vectors). ``lexical`` is the BM25 vector of the text (see
    :mod:`latentlex.lexical`); it is written only to collections with a lexical leg
    (``CollectionSpec.lexical_name``) and ignored by others.
    """

    doc_id: str
    dense: np.ndarray | None
    sparse: SparseVector | None
    text: str
    metadata: dict[str, Any]
    hash: str = ""
    lexical: SparseVector | None = None


@dataclass
class Hit:
    """One search result.

    ``score`` is the fused score (or the leg's own score in ``dense``/``sparse``/``lexical``
    mode). The leg fields tell where the document stood in each leg's prefetch list (rank 1 =
    best); they are ``None`` when it was not in that list, when legs were not asked for, or
    (``lexical_*``) when the query had no lexical leg.
    """

    doc_id: str
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    dense_score: float | None = None
    sparse_score: float | None = None
    dense_rank: int | None = None
    sparse_rank: int | None = None
    lexical_score: float | None = None
    lexical_rank: int | None = None

    def legs(self) -> dict[str, Any]:
        """Each leg's score and rank (``None`` where absent), by field name."""
        return {
            "dense_score": self.dense_score,
            "sparse_score": self.sparse_score,
            "lexical_score": self.lexical_score,
            "dense_rank": self.dense_rank,
            "sparse_rank": self.sparse_rank,
            "lexical_rank": self.lexical_rank,
        }


class Fusion(str, Enum):
    """How the dense, sparse (and lexical) legs are fused (by Qdrant; MINMAX: see below).

    - ``RRF``: reciprocal rank fusion as Qdrant computes it, ``Σ_leg 1 / (rank / w_leg +
      rrf_k − 1)`` with 1-based ranks in each leg's prefetch list (unweighted:
      ``1 / (rrf_k + rank − 1)``); weighted RRF when the weights are not all 1.
    - ``DBSF``: distribution-based score fusion (each leg's scores mapped by
      ``(s − (μ − 3σ)) / 6σ``, sample σ, then summed); takes no weights.
    - ``WEIGHTED``: ``w_dense · dense_score + w_sparse · sparse_score (+ w_lex ·
      lexical_score)`` (a Qdrant formula over the prefetches; a missing leg counts 0). The raw
      scales differ (cosine vs. BM25), so choose the weights accordingly.
    - ``MINMAX``: score-normalised fusion, ``Σ_leg w_leg · (s − min_leg) / (max_leg − min_leg)``
      with each leg's min and max taken over its own ``prefetch_limit`` candidates for this query
      (a document missing from a leg gets 0 there). The engine runs the legs (with the filter,
      ``prefetch_limit`` deep); the embedded store finishes the min-max arithmetic on the scores
      of that same round trip (:func:`fuse_minmax`) and reads the ``k`` hits' payloads by id; a
      server store sends the per-query constants back as a Qdrant formula query over the
      prefetches (a second round trip, which keeps the legs' payloads off the network). Unlike
      RRF it keeps how
      far ahead a leg's best document is, and unlike DBSF it is not thrown by a leg's score
      distribution; it is the best fusion measured in ``benchmarks/research_fusion.py``.
    """

    RRF = "rrf"
    DBSF = "dbsf"
    WEIGHTED = "weighted"
    MINMAX = "minmax"


#: Search modes: the legs fused, or one leg alone (``sparse``: latent terms; ``lexical``: BM25).
MODES = ("hybrid", "dense", "sparse", "lexical")
_MODES = MODES


@dataclass(frozen=True)
class SearchRequest:
    """One query.

    Attributes:
        dense: Query dense vector (required for ``hybrid`` and ``dense`` modes).
        sparse: Query latent-term weights (required for ``hybrid`` and ``sparse`` modes).
        k: Number of hits.
        mode: ``"hybrid"``, ``"dense"``, ``"sparse"`` or ``"lexical"`` (the lexical leg alone).
        fusion: Fusion method for ``hybrid``.
        weights: ``(dense, sparse)`` or ``(dense, sparse, lexical)`` weights for weighted RRF and
            ``WEIGHTED``; with two weights and a lexical query the lexical weight is 1.0.
        rrf_k: The RRF rank constant.
        prefetch_limit: Candidates each leg contributes to the fusion; ``None`` means
            ``max(50, 5 * k)``.
        filter: A neutral filter mapping (see :mod:`latentlex.store.filters`) or a native filter;
            applied to every leg.
        with_legs: Attach each hit's leg scores and ranks (runs the legs alone in the same
            batch as the fused query).
        lexical: Query BM25 vector of the lexical leg (required for ``lexical`` mode; in
            ``hybrid`` mode it adds a third prefetch to the fusion). Only for collections with a
            lexical leg.
    """

    dense: np.ndarray | None
    sparse: SparseVector | None
    k: int = 10
    mode: str = "hybrid"
    fusion: Fusion = Fusion.RRF
    weights: tuple[float, ...] = (1.0, 1.0)
    rrf_k: int = 60
    prefetch_limit: int | None = None
    filter: Filter | None = None
    with_legs: bool = True
    lexical: SparseVector | None = None

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ConfigError(f"mode must be one of {_MODES}, got {self.mode!r}")
        object.__setattr__(self, "fusion", Fusion(self.fusion))
        for name in ("k", "prefetch_limit", "rrf_k"):
            v = getattr(self, name)
            if v is None and name == "prefetch_limit":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_LIMIT:
                raise ConfigError(f"{name} must be an int in [1, {MAX_LIMIT:,}], got {v!r}")
        try:
            weights = tuple(float(w) for w in self.weights)
        except (TypeError, ValueError):
            weights = ()
        if len(weights) not in (2, 3) or not all(math.isfinite(w) for w in weights):
            raise ConfigError(
                f"weights must be two (dense, sparse) or three (dense, sparse, lexical) finite "
                f"floats, got {self.weights}"
            )
        object.__setattr__(self, "weights", weights)
        if self.lexical is not None and not isinstance(self.lexical, SparseVector):
            raise ConfigError(
                f"lexical must be a SparseVector or None, got {type(self.lexical).__name__}"
            )
        if len(weights) == 3 and self.lexical is None:
            raise ConfigError(
                "a third (lexical) weight needs a lexical query vector (SearchRequest.lexical); "
                "give two weights (dense, sparse) without one"
            )
        if self.mode in ("hybrid", "dense") and self.dense is None:
            raise ConfigError(f"mode {self.mode!r} needs a dense query vector")
        if self.mode in ("hybrid", "sparse") and self.sparse is None:
            raise ConfigError(f"mode {self.mode!r} needs a sparse query vector")
        if self.mode == "lexical" and self.lexical is None:
            raise ConfigError("mode 'lexical' needs a lexical query vector")
        if self.mode == "hybrid" and self.fusion is Fusion.DBSF and any(w != 1.0 for w in weights):
            raise ConfigError(
                "DBSF fusion takes no weights in Qdrant; use Fusion.RRF (weighted RRF) or "
                "Fusion.WEIGHTED"
            )

    @property
    def three_legs(self) -> bool:
        """Whether a ``hybrid`` request fuses three legs (a lexical query was given)."""
        return self.mode == "hybrid" and self.lexical is not None

    @property
    def leg_weights(self) -> tuple[float, ...]:
        """The weight of each fused leg: two, or three (lexical weight 1.0 unless given)."""
        if not self.three_legs:
            return self.weights[:2]
        return self.weights if len(self.weights) == 3 else (*self.weights, 1.0)

    @property
    def candidates(self) -> int:
        """Candidates per leg: ``prefetch_limit`` or ``max(50, 5 * k)``."""
        if self.prefetch_limit is not None:
            return self.prefetch_limit
        return min(max(50, 5 * self.k), MAX_LIMIT)


@runtime_checkable
class Store(Protocol):
    """A Qdrant collection holding dense + latent-term vectors (sync API)."""

    def open(self, spec: CollectionSpec, *, recreate: bool = False) -> None:
        """Create the collection if missing, else validate it; ``recreate`` drops it first."""
        ...

    def identity(self) -> dict[str, Any] | None:
        """The identity record of the open collection."""
        ...

    def upsert(self, points: Sequence[PointRecord]) -> None:
        """Insert or update; returns once durable. Duplicate doc ids: the last one wins."""
        ...

    def delete(self, doc_ids: Sequence[str]) -> None:
        """Delete documents by id (missing ids are ignored)."""
        ...

    def delete_where(self, filter: Filter) -> None:
        """Delete the documents a (non-empty) filter matches."""
        ...

    def get(self, doc_ids: Sequence[str]) -> list[PointRecord]:
        """The stored documents, with vectors, in the order asked (missing ids skipped)."""
        ...

    def count(self, filter: Filter | None = None) -> int:
        """Exact number of documents (matching ``filter``)."""
        ...

    def hashes(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """``doc_id -> content hash`` of the documents present."""
        ...

    def index_field(self, key: str, kind: str) -> None:
        """Build a payload index on a metadata key (speeds up filters on it)."""
        ...

    def scroll(self, filter: Filter | None = None, limit: int = 10_000) -> list[PointRecord]:
        """Up to ``limit`` stored documents matching ``filter`` (text and metadata, no vectors)."""
        ...

    def search(self, req: SearchRequest) -> list[Hit]:
        """Run one query."""
        ...

    def search_batch(self, reqs: Sequence[SearchRequest]) -> list[list[Hit]]:
        """Run several queries in one engine batch."""
        ...

    def close(self) -> None:
        """Release the engine (idempotent)."""
        ...


@runtime_checkable
class AsyncStore(Protocol):
    """The async twins of :class:`Store` (same semantics, coroutines prefixed with ``a``)."""

    async def aopen(self, spec: CollectionSpec, *, recreate: bool = False) -> None: ...
    async def aidentity(self) -> dict[str, Any] | None: ...
    async def aupsert(self, points: Sequence[PointRecord]) -> None: ...
    async def adelete(self, doc_ids: Sequence[str]) -> None: ...
    async def adelete_where(self, filter: Filter) -> None: ...
    async def aget(self, doc_ids: Sequence[str]) -> list[PointRecord]: ...
    async def acount(self, filter: Filter | None = None) -> int: ...
    async def ahashes(self, doc_ids: Sequence[str]) -> dict[str, str]: ...
    async def aindex_field(self, key: str, kind: str) -> None: ...
    async def ascroll(
        self, filter: Filter | None = None, limit: int = 10_000
    ) -> list[PointRecord]: ...
    async def asearch(self, req: SearchRequest) -> list[Hit]: ...
    async def asearch_batch(self, reqs: Sequence[SearchRequest]) -> list[list[Hit]]: ...
    async def aclose(self) -> None: ...


# ----------------------------------------------------------------------------------------------
# Helpers shared by the engines
# ----------------------------------------------------------------------------------------------


#: Payload index kinds accepted by ``index_field``.
INDEX_KINDS = ("keyword", "integer", "float", "bool", "datetime")


def index_target(key: str, kind: str) -> str:
    """The payload path of a metadata key to index; validates ``kind``."""
    from latentlex.store.filters import METADATA_FIELD

    if kind not in INDEX_KINDS:
        raise ConfigError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
    if not isinstance(key, str) or not key or key == "doc_id":
        raise ConfigError(f"index_field takes a metadata key, got {key!r}")
    return f"{METADATA_FIELD}.{key}"


def make_record(spec: CollectionSpec, identity: Mapping[str, Any]) -> dict[str, Any]:
    """The record a collection keeps about itself (collection metadata / edge sidecar).

    ``lexical_name`` is recorded only for collections with a lexical leg (so the records of
    two-leg collections are unchanged)."""
    record: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "dense_name": spec.dense_name,
        "sparse_name": spec.sparse_name,
        "dense_dim": spec.dense_dim,
        "identity": json.loads(json.dumps(dict(identity))),
    }
    if spec.lexical_name is not None:
        record["lexical_name"] = spec.lexical_name
    return record


def _rebuild_hint(name: str) -> str:
    return (
        f"Rebuild it: open a new collection name, or pass recreate=True to drop and rebuild "
        f"{name!r} (this deletes its documents)."
    )


def check_record(name: str, stored: Any, spec: CollectionSpec) -> dict[str, Any]:
    """Compare a collection's stored record with what ``spec`` expects; returns the record.

    Raises:
        CollectionMismatchError: no record, a newer format, or any differing key (all named).
    """
    if stored is None or not isinstance(stored, Mapping) or "identity" not in stored:
        raise CollectionMismatchError(
            f"collection {name!r} exists but carries no latentlex record (it was not written by "
            f"latentlex, or its creation was interrupted). {_rebuild_hint(name)}"
        )
    version = stored.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CollectionMismatchError(
            f"collection {name!r} was written by a newer latentlex (format_version {version!r}, "
            f"this one reads up to {FORMAT_VERSION}). Upgrade latentlex, or {_rebuild_hint(name)}"
        )
    wanted = make_record(spec, spec.identity)
    diffs: list[str] = []
    for key in ("dense_name", "sparse_name", "dense_dim"):
        if stored.get(key) != wanted[key]:
            diffs.append(f"{key}: collection has {stored.get(key)!r}, expected {wanted[key]!r}")
    if stored.get("lexical_name") != wanted.get("lexical_name"):
        have_lex, want_lex = stored.get("lexical_name"), wanted.get("lexical_name")
        why = (
            "it was built without the lexical leg"
            if have_lex is None
            else "it was built with a lexical leg"
            if want_lex is None
            else "its lexical leg has another name"
        )
        diffs.append(
            f"lexical_name: collection has {have_lex!r}, expected {want_lex!r} ({why}; open it "
            f"with lexical={have_lex is not None} or rebuild it)"
        )
    have, want = stored.get("identity") or {}, wanted["identity"]
    for key in sorted(set(have) | set(want)):
        if have.get(key, "<absent>") != want.get(key, "<absent>"):
            diffs.append(
                f"identity.{key}: collection has {have.get(key, '<absent>')!r}, "
                f"expected {want.get(key, '<absent>')!r}"
            )
    if diffs:
        raise CollectionMismatchError(
            f"collection {name!r} was written by something else: "
            + "; ".join(diffs)
            + f". {_rebuild_hint(name)}",
            stored=dict(stored),
        )
    return dict(stored)


def schema_mismatch(
    name: str,
    spec: CollectionSpec,
    *,
    dense: Mapping[str, tuple[int, str]],
    sparse: Mapping[str, bool],
) -> None:
    """Check the engine's own schema of a collection.

    Args:
        name: Collection name (for the message).
        spec: What is expected.
        dense: ``vector name -> (size, distance name lower-case)``.
        sparse: ``sparse vector name -> has the IDF modifier`` (the latent-term and, when
            ``spec.lexical_name`` is set, the lexical vector must have it).

    Raises:
        CollectionMismatchError: naming every difference.
    """
    diffs: list[str] = []
    if spec.dense_name not in dense:
        diffs.append(f"no dense vector {spec.dense_name!r} (has {sorted(dense)})")
    else:
        size, distance = dense[spec.dense_name]
        if size != spec.dense_dim:
            diffs.append(
                f"dense vector {spec.dense_name!r} has dim {size}, expected {spec.dense_dim}"
            )
        if distance != "cosine":
            diffs.append(
                f"dense vector {spec.dense_name!r} uses {distance} distance, expected cosine"
            )
    if spec.sparse_name not in sparse:
        diffs.append(f"no sparse vector {spec.sparse_name!r} (has {sorted(sparse)})")
    elif not sparse[spec.sparse_name]:
        diffs.append(f"sparse vector {spec.sparse_name!r} lacks modifier=IDF")
    if spec.lexical_name is not None:
        if spec.lexical_name not in sparse:
            diffs.append(
                f"no lexical sparse vector {spec.lexical_name!r} (lexical_name; the collection "
                f"was built without the lexical leg; has {sorted(sparse)})"
            )
        elif not sparse[spec.lexical_name]:
            diffs.append(f"lexical sparse vector {spec.lexical_name!r} lacks modifier=IDF")
    if diffs:
        raise CollectionMismatchError(
            f"collection {name!r} has the wrong schema: "
            + "; ".join(diffs)
            + f". {_rebuild_hint(name)}"
        )


def build_payload(rec: PointRecord) -> dict[str, Any]:
    """The payload of a point; validates JSON-ability of the metadata.

    Raises:
        TypeError: a metadata value is not JSON-serialisable (the message names its key).
    """
    if not isinstance(rec.doc_id, str) or not rec.doc_id:
        raise TypeError(f"doc_id must be a non-empty str, got {rec.doc_id!r}")
    if not isinstance(rec.metadata, Mapping):
        raise TypeError(
            f"metadata of {rec.doc_id!r} must be a mapping, got {type(rec.metadata).__name__}"
        )
    for key, value in rec.metadata.items():
        if not isinstance(key, str):
            raise TypeError(f"metadata of {rec.doc_id!r}: key {key!r} is not a str")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"metadata of {rec.doc_id!r}: value of key {key!r} is not JSON-serialisable "
                f"({type(value).__name__}): {e}"
            ) from None
    return {
        "doc_id": rec.doc_id,
        "text": str(rec.text),
        "metadata": dict(rec.metadata),
        "hash": str(rec.hash),
    }


def prepare_points(points: Sequence[PointRecord], dense_dim: int) -> list[PointRecord]:
    """Validate a batch before any write; duplicates collapse to the last occurrence.

    Raises:
        TypeError: bad doc id or metadata.
        ConfigError: a vector of the wrong shape or with non-finite values, or a point with
            no vector at all.
    """
    last: dict[str, PointRecord] = {}
    for rec in points:
        build_payload(rec)
        if rec.dense is None and rec.sparse is None and rec.lexical is None:
            raise ConfigError(f"point {rec.doc_id!r} has neither a dense nor a sparse vector")
        if rec.dense is not None:
            d = np.asarray(rec.dense)
            if d.shape != (dense_dim,):
                raise ConfigError(
                    f"point {rec.doc_id!r}: dense vector has shape {d.shape}, "
                    f"expected ({dense_dim},)"
                )
            if not np.all(np.isfinite(d)):
                raise ConfigError(f"point {rec.doc_id!r}: dense vector has non-finite values")
        if rec.sparse is not None and not np.all(np.isfinite(rec.sparse.values)):
            raise ConfigError(f"point {rec.doc_id!r}: sparse vector has non-finite values")
        if rec.lexical is not None:
            if not isinstance(rec.lexical, SparseVector):
                raise ConfigError(
                    f"point {rec.doc_id!r}: lexical must be a SparseVector, got "
                    f"{type(rec.lexical).__name__}"
                )
            if not np.all(np.isfinite(rec.lexical.values)):
                raise ConfigError(f"point {rec.doc_id!r}: lexical vector has non-finite values")
        last.pop(rec.doc_id, None)
        last[rec.doc_id] = rec
    return list(last.values())


def _engine_sparse(sp: Any) -> SparseVector | None:
    """An engine's sparse vector (``.indices``, ``.values``) as a :class:`SparseVector`."""
    if sp is None:
        return None
    return SparseVector(np.asarray(sp.indices, dtype=np.int64), np.asarray(sp.values))


def records_in_order(
    retrieved: Sequence[Any], doc_ids: Sequence[str], spec: CollectionSpec
) -> list[PointRecord]:
    """Engine records (``.payload``, ``.vector`` as a dict) to :class:`PointRecord` s, in the
    order of ``doc_ids`` (ids not retrieved are skipped)."""
    by_doc: dict[str, PointRecord] = {}
    for r in retrieved:
        p = r.payload or {}
        vec = r.vector if isinstance(r.vector, dict) else {}
        sp, dense = vec.get(spec.sparse_name), vec.get(spec.dense_name)
        lex = None if spec.lexical_name is None else vec.get(spec.lexical_name)
        rec = PointRecord(
            doc_id=str(p.get("doc_id", "")),
            dense=None if dense is None else np.asarray(dense, dtype=np.float32),
            sparse=_engine_sparse(sp),
            text=str(p.get("text", "")),
            metadata=dict(p.get("metadata") or {}),
            hash=str(p.get("hash", "")),
            lexical=_engine_sparse(lex),
        )
        by_doc[rec.doc_id] = rec
    return [by_doc[d] for d in doc_ids if d in by_doc]


def doc_ids_of(retrieved: Sequence[Any]) -> list[str]:
    """The document ids of engine records (``.payload["doc_id"]``), in their order."""
    return [str((r.payload or {}).get("doc_id", "")) for r in retrieved]


def hashes_of(retrieved: Sequence[Any]) -> dict[str, str]:
    """``doc_id -> hash`` from engine records retrieved with those two payload fields."""
    out: dict[str, str] = {}
    for r in retrieved:
        p = r.payload or {}
        out[str(p.get("doc_id", ""))] = str(p.get("hash", ""))
    return out


def hits_with_legs(
    fused: Sequence[tuple[str, float, Mapping[str, Any] | None]],
    req: SearchRequest,
    dense_leg: Sequence[tuple[str, float]] | None,
    sparse_leg: Sequence[tuple[str, float]] | None,
    lexical_leg: Sequence[tuple[str, float]] | None = None,
) -> list[Hit]:
    """Turn engine results into :class:`Hit` s, attaching leg scores and 1-based ranks.

    Args:
        fused: ``(point id, score, payload)`` of the final ranking.
        req: The request (its mode decides which leg the final score belongs to).
        dense_leg: ``(point id, score)`` of the dense leg alone, or ``None``.
        sparse_leg: Same for the sparse leg.
        lexical_leg: Same for the lexical leg (``None`` when the request has none).
    """
    d = {pid: (s, r) for r, (pid, s) in enumerate(dense_leg or (), start=1)}
    s_ = {pid: (s, r) for r, (pid, s) in enumerate(sparse_leg or (), start=1)}
    lx = {pid: (s, r) for r, (pid, s) in enumerate(lexical_leg or (), start=1)}
    hits: list[Hit] = []
    for rank, (pid, score, payload) in enumerate(fused, start=1):
        p = payload or {}
        hit = Hit(
            doc_id=str(p.get("doc_id", "")),
            score=float(score),
            text=str(p.get("text", "")),
            metadata=dict(p.get("metadata") or {}),
        )
        if req.with_legs:
            if req.mode == "dense":
                hit.dense_score, hit.dense_rank = float(score), rank
            elif req.mode == "sparse":
                hit.sparse_score, hit.sparse_rank = float(score), rank
            elif req.mode == "lexical":
                hit.lexical_score, hit.lexical_rank = float(score), rank
            else:
                if pid in d:
                    hit.dense_score, hit.dense_rank = float(d[pid][0]), d[pid][1]
                if pid in s_:
                    hit.sparse_score, hit.sparse_rank = float(s_[pid][0]), s_[pid][1]
                if pid in lx:
                    hit.lexical_score, hit.lexical_rank = float(lx[pid][0]), lx[pid][1]
        hits.append(hit)
    return hits


def needs_legs(req: SearchRequest) -> bool:
    """Whether the legs (two, or three with a lexical query) must run alone beside the fused
    query."""
    return req.with_legs and req.mode == "hybrid"


def two_phase(req: SearchRequest) -> bool:
    """Whether a request needs its legs' scores before the fused query (``MINMAX`` fusion)."""
    return req.mode == "hybrid" and req.fusion is Fusion.MINMAX


def minmax_terms(
    legs: Sequence[Sequence[tuple[str, float]]], weights: Sequence[float]
) -> list[tuple[float, float, float]]:
    """Per leg ``(scale, offset, default)`` of the min-max fusion formula.

    A leg contributes ``scale · $score + offset``, which is ``w · (s − lo) / (hi − lo)``; a
    document missing from the leg takes ``default`` (= ``lo``) and so contributes 0. A leg whose
    candidates all score the same gives ``w`` to each of them; an empty leg gives nothing.
    """
    out: list[tuple[float, float, float]] = []
    for leg, w in zip(legs, weights, strict=True):
        if not leg:
            out.append((0.0, 0.0, 0.0))
            continue
        scores = [s for _, s in leg]
        lo, hi = min(scores), max(scores)
        if hi > lo:
            scale = float(w) / (hi - lo)
            out.append((scale, -scale * lo, lo))
        else:
            out.append((float(w), -float(w) * (lo - 1.0), lo - 1.0))
    return out


def fuse_minmax(
    legs: Sequence[Sequence[tuple[str, float]]], weights: Sequence[float], k: int
) -> list[tuple[str, float]]:
    """The top ``k`` of the ``MINMAX`` fusion of ``legs`` (each leg's ``(point id, score)``).

    The same arithmetic as the engine's formula query over the legs as prefetches (see
    :func:`minmax_terms`): every candidate of any leg gets ``Σ_leg scale · s + offset``, a leg it
    is missing from contributing 0. Ties are broken by point id, so the order is deterministic.
    Computing it here from the legs the engine returned saves the second engine query that the
    formula would need (the legs' scores set its constants), with the same hits.
    """
    terms = minmax_terms(legs, weights)
    fused: dict[str, float] = {}
    for leg, (scale, offset, _) in zip(legs, terms, strict=True):
        for pid, score in leg:
            fused[pid] = fused.get(pid, 0.0) + (scale * score + offset)
    ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
    return ranked[:k]


def split_legs(
    req: SearchRequest, legs: Sequence[Sequence[tuple[str, float]]]
) -> tuple[
    Sequence[tuple[str, float]] | None,
    Sequence[tuple[str, float]] | None,
    Sequence[tuple[str, float]] | None,
]:
    """The results of the lone legs of one request as ``(dense, sparse, lexical)``."""
    if not legs:
        return None, None, None
    if len(legs) == 3:
        return legs[0], legs[1], legs[2]
    return legs[0], legs[1], None


def check_lexical(req: SearchRequest, spec: CollectionSpec, collection: str) -> str | None:
    """The lexical vector name a request uses (``None`` without a lexical query).

    Raises:
        ConfigError: the request has a lexical query but the collection has no lexical leg.
    """
    if req.lexical is None:
        return None
    if spec.lexical_name is None:
        raise ConfigError(
            f"the query has a lexical vector but collection {collection!r} was opened without "
            f"a lexical leg (CollectionSpec.lexical_name / LatentIndex(lexical=True))"
        )
    return spec.lexical_name


def chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """Split a sequence into consecutive pieces of at most ``size``."""
    return [seq[i : i + size] for i in range(0, len(seq), size)]


class ThreadedAsyncMixin:
    """Adds the ``a``-prefixed twins, each running the sync method via :func:`asyncio.to_thread`.

    Fit for engines that take concurrent calls from several threads (both Qdrant engines do).
    """

    def _sync(self) -> Store:
        return cast("Store", self)

    async def aopen(self, spec: CollectionSpec, *, recreate: bool = False) -> None:
        """Async :meth:`Store.open`."""
        await asyncio.to_thread(self._sync().open, spec, recreate=recreate)

    async def aidentity(self) -> dict[str, Any] | None:
        """Async :meth:`Store.identity`."""
        return await asyncio.to_thread(self._sync().identity)

    async def aupsert(self, points: Sequence[PointRecord]) -> None:
        """Async :meth:`Store.upsert`."""
        await asyncio.to_thread(self._sync().upsert, points)

    async def adelete(self, doc_ids: Sequence[str]) -> None:
        """Async :meth:`Store.delete`."""
        await asyncio.to_thread(self._sync().delete, doc_ids)

    async def adelete_where(self, filter: Filter) -> None:
        """Async :meth:`Store.delete_where`."""
        await asyncio.to_thread(self._sync().delete_where, filter)

    async def aget(self, doc_ids: Sequence[str]) -> list[PointRecord]:
        """Async :meth:`Store.get`."""
        return await asyncio.to_thread(self._sync().get, doc_ids)

    async def acount(self, filter: Filter | None = None) -> int:
        """Async :meth:`Store.count`."""
        return await asyncio.to_thread(self._sync().count, filter)

    async def ahashes(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """Async :meth:`Store.hashes`."""
        return await asyncio.to_thread(self._sync().hashes, doc_ids)

    async def aindex_field(self, key: str, kind: str) -> None:
        """Async :meth:`Store.index_field`."""
        await asyncio.to_thread(self._sync().index_field, key, kind)

    async def ascroll(self, filter: Filter | None = None, limit: int = 10_000) -> list[PointRecord]:
        """Async :meth:`Store.scroll`."""
        return await asyncio.to_thread(self._sync().scroll, filter, limit)

    async def asearch(self, req: SearchRequest) -> list[Hit]:
        """Async :meth:`Store.search`."""
        return await asyncio.to_thread(self._sync().search, req)

    async def asearch_batch(self, reqs: Sequence[SearchRequest]) -> list[list[Hit]]:
        """Async :meth:`Store.search_batch`."""
        return await asyncio.to_thread(self._sync().search_batch, reqs)

    async def aclose(self) -> None:
        """Async :meth:`Store.close`."""
        await asyncio.to_thread(self._sync().close)
