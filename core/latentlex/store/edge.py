"""The embedded default store: Qdrant's own engine in-process (``qdrant-edge``).

Layout under ``path``: one folder per collection, holding

- ``shard/``: the ``qdrant_edge.EdgeShard`` (segments, WAL, ``edge_config.json``);
- ``latentlex.json``: the collection's identity record (edge shards have no collection
  metadata, so it lives in this sidecar, written atomically *before* the shard is created);
- ``.lock``: an advisory lock held while the collection is open, so a second process gets a
  clear :class:`StoreError` instead of the engine's WAL error.

Within one process, every ``EdgeStore`` opening the same collection folder shares one open
shard (a notebook cell that builds its index again reuses the collection the previous run
left open); the shard and the lock are released when the last of them closes.

The engine takes concurrent calls: many threads may search while one upserts (measured; no
Python-side lock). Every write is flushed before it returns.

Example:
    >>> import numpy as np, tempfile
    >>> from latentlex.sparse import SparseVector
    >>> from latentlex.store import CollectionSpec, EdgeStore, PointRecord, SearchRequest
    >>> store = EdgeStore(tempfile.mkdtemp())
    >>> store.open(CollectionSpec("docs", dense_dim=2, identity={"format_version": 1}))
    >>> store.upsert([PointRecord("a", np.array([1.0, 0.0]), SparseVector.from_dict({3: 1.0}),
    ...                           "alpha", {"lang": "en"})])
    >>> [h.doc_id for h in store.search(SearchRequest(np.array([1.0, 0.0]),
    ...                                               SparseVector.from_dict({3: 1.0})))]
    ['a']
    >>> store.close()
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from latentlex.errors import CollectionMismatchError, ConfigError, LatentLexError, StoreError
from latentlex.safeio import read_json_capped
from latentlex.store.base import (
    META_KEY,
    CollectionSpec,
    Fusion,
    Hit,
    PointRecord,
    SearchRequest,
    ThreadedAsyncMixin,
    build_payload,
    check_lexical,
    check_record,
    chunks,
    doc_ids_of,
    fuse_minmax,
    hashes_of,
    hits_with_legs,
    index_target,
    make_record,
    needs_legs,
    point_id,
    prepare_points,
    records_in_order,
    schema_mismatch,
    split_legs,
    two_phase,
)
from latentlex.store.filters import Filter, to_edge

try:  # POSIX advisory locks; elsewhere the engine's own WAL lock still refuses a 2nd opener
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["EdgeStore"]

logger = logging.getLogger(__name__)

SIDECAR = "latentlex.json"
SHARD_DIR = "shard"
LOCK_FILE = ".lock"
_BATCH = 512


@contextlib.contextmanager
def _engine(what: str) -> Iterator[None]:
    """Turn the engine's bare exceptions into one clear :class:`StoreError`."""
    try:
        yield
    except LatentLexError:
        raise
    except Exception as e:
        raise StoreError(f"edge store: {what} failed: {e}") from e


class _OpenFolder:
    """A collection folder open in this process: one shard and one lock, shared by every
    :class:`EdgeStore` on it (see :data:`_OPEN`)."""

    def __init__(self, key: str, lock_fd: int | None) -> None:
        self.key = key
        self.lock_fd = lock_fd
        self.shard: Any = None
        self.users = 0
        self.mutex = threading.RLock()  # serialises open/recreate/close on the folder


#: Collection folders open in this process, by resolved path.
_OPEN: dict[str, _OpenFolder] = {}
_OPEN_LOCK = threading.Lock()


def _check_name(name: str) -> str:
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or name.startswith("."):
        raise ConfigError(f"invalid collection name {name!r}: use a plain folder name")
    return name


class EdgeStore(ThreadedAsyncMixin):
    """A :class:`~latentlex.store.base.Store` on ``qdrant_edge.EdgeShard``, persisted at ``path``.

    Args:
        path: Folder holding the collections (created if missing).
        collection: Collection used when the spec passed to :meth:`open` has an empty name.
        read_only: Refuse writes, and refuse to create a missing collection.
        on_disk: Keep vectors and payload memory-mapped on disk instead of in RAM (also set
            by ``CollectionSpec.on_disk``); only used when creating.
        max_search_threads: Size of the engine's search thread pool (``None``: per CPU).
        flush: Flush after every write (acknowledged = durable). Turn off only for bulk loads
            that call :meth:`flush` themselves.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        collection: str = "latentlex",
        *,
        read_only: bool = False,
        on_disk: bool = False,
        max_search_threads: int | None = None,
        flush: bool = True,
    ) -> None:
        self.path = Path(path)
        self.collection = collection
        self.read_only = read_only
        self.on_disk = on_disk
        self.max_search_threads = max_search_threads
        self.auto_flush = flush
        self._held: _OpenFolder | None = None
        self._spec: CollectionSpec | None = None
        self._record: dict[str, Any] | None = None

    @property
    def _shard(self) -> Any:
        """The open shard (shared with the other stores of this process on the same folder)."""
        return None if self._held is None else self._held.shard

    def __repr__(self) -> str:
        state = "open" if self._shard is not None else "closed"
        return f"EdgeStore(path={str(self.path)!r}, collection={self.collection!r}, {state})"

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lifecycle ------------------------------------------------------------------------------

    def _folder(self) -> Path:
        return self.path / self.collection

    def _lock(self, folder: Path) -> int | None:
        """Take the folder's advisory lock (``None``: no locking here)."""
        if fcntl is None:
            return None
        lock_path = folder / LOCK_FILE
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if self.read_only:
                return None  # a read-only medium: nobody can write there anyway
            raise StoreError(f"cannot create {lock_path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError(
                f"collection {self.collection!r} at {folder} is already open in another process; "
                f"close it there first — an embedded edge collection has one process at a time "
                f"(use a Qdrant server via ClientStore to share it between processes)"
            ) from None
        return fd

    def _acquire(self, folder: Path) -> _OpenFolder:
        """Join the folder's shared entry in this process (taking the lock if first)."""
        key = str(folder.resolve())
        with _OPEN_LOCK:
            held = _OPEN.get(key)
            if held is None:
                held = _OPEN[key] = _OpenFolder(key, self._lock(folder))
            else:
                logger.info(
                    "edge collection at %s is already open in this process: sharing it", folder
                )
            held.users += 1
            return held

    @staticmethod
    def _release(held: _OpenFolder) -> None:
        """Leave the folder's shared entry; the last one out closes the shard and unlocks."""
        with _OPEN_LOCK:
            held.users -= 1
            if held.users > 0:
                return
            _OPEN.pop(held.key, None)
        with held.mutex:
            shard, held.shard = held.shard, None
            try:
                if shard is not None:
                    with _engine("closing"):
                        shard.close()
            finally:
                if held.lock_fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(held.lock_fd)  # closing the descriptor releases the flock
                    held.lock_fd = None

    def _edge_config(self, spec: CollectionSpec) -> Any:
        import qdrant_edge as qe

        on_disk = spec.on_disk or self.on_disk
        memory = qe.Memory.Cold if on_disk else None
        sparse_vectors = {
            spec.sparse_name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf, memory=memory)
        }
        if spec.lexical_name is not None:
            sparse_vectors[spec.lexical_name] = qe.EdgeSparseVectorParams(
                modifier=qe.Modifier.Idf, memory=memory
            )
        return qe.EdgeConfig(
            vectors={
                spec.dense_name: qe.EdgeVectorParams(
                    size=spec.dense_dim, distance=qe.Distance.Cosine, memory=memory
                )
            },
            sparse_vectors=sparse_vectors,
            payload_memory=qe.Memory.Cold if on_disk else qe.Memory.Cached,
            max_search_threads=self.max_search_threads,
            # let optimize() vacuum segments of any size (the default skips those under 1000
            # vectors), so that deleted points leave the IDF statistics once it has run
            optimizers=qe.EdgeOptimizersConfig(vacuum_min_vector_number=1),
        )

    def _validate_existing(self, folder: Path, spec: CollectionSpec) -> dict[str, Any]:
        """Check the engine schema and the sidecar record; returns the record."""
        shard = folder / SHARD_DIR
        try:  # both files are read with a size and depth cap (latentlex.safeio)
            record = (
                read_json_capped(folder / SIDECAR, what="collection record", error=StoreError)[
                    META_KEY
                ]
                if os.path.lexists(folder / SIDECAR)
                else None
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StoreError(f"cannot read {folder / SIDECAR}: {e}") from None
        try:
            cfg = read_json_capped(shard / "edge_config.json", error=ConfigError)
            dense = {
                n: (int(v["size"]), str(v.get("distance", "")).lower())
                for n, v in (cfg.get("vectors") or {}).items()
            }
            sparse = {
                n: str((v or {}).get("modifier", "")).lower() == "idf"
                for n, v in (cfg.get("sparse_vectors") or {}).items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            logger.debug("edge_config.json of %s unreadable (%s); relying on the sidecar", shard, e)
        else:
            try:
                schema_mismatch(self.collection, spec, dense=dense, sparse=sparse)
            except CollectionMismatchError as e:
                e.stored = dict(record) if isinstance(record, dict) else None
                raise
        return check_record(self.collection, record, spec)

    def open(self, spec: CollectionSpec, *, recreate: bool = False) -> None:
        """Create the collection if missing, else validate it (see :meth:`Store.open`).

        Raises:
            CollectionMismatchError: the collection differs from ``spec`` (nothing is written).
            StoreError: the path is not writable, the collection is missing on a read-only
                store, or another process has it open.
        """
        import qdrant_edge as qe

        self.close()
        self.collection = _check_name(spec.name or self.collection)
        folder = self._folder()
        shard_dir = folder / SHARD_DIR
        if self.read_only and recreate:
            raise StoreError("recreate=True needs a writable store (read_only=False)")
        if self.read_only and not (shard_dir / "edge_config.json").exists():
            raise StoreError(
                f"collection {self.collection!r} not found at {folder} (read-only open); build it "
                f"first, or check the path and collection name"
            )
        if not self.read_only:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(
                    f"cannot create the collection folder {folder}: {e.strerror or e}; "
                    f"choose a writable path"
                ) from None
        held = self._acquire(folder)
        try:
            held.mutex.acquire()
            if recreate:
                logger.info("dropping edge collection %r at %s", self.collection, folder)
                if held.users > 1:
                    logger.warning(
                        "recreate=True drops collection %r that %d other store(s) of this process "
                        "have open: they now see the new, empty collection",
                        self.collection,
                        held.users - 1,
                    )
                old, held.shard = held.shard, None
                if old is not None:
                    with _engine("closing"):
                        old.close()
                shutil.rmtree(shard_dir, ignore_errors=True)
                (folder / SIDECAR).unlink(missing_ok=True)
            exists = shard_dir.is_dir() and any(shard_dir.iterdir())
            if exists:
                record = self._validate_existing(folder, spec)
                if held.shard is None:
                    with _engine(f"loading {shard_dir}"):
                        held.shard = qe.EdgeShard.load(str(shard_dir))
            else:
                record = make_record(spec, spec.identity)
                tmp = folder / (SIDECAR + ".tmp")
                try:
                    tmp.write_text(json.dumps({META_KEY: record}, indent=1, sort_keys=True))
                    os.replace(tmp, folder / SIDECAR)
                except OSError as e:
                    raise StoreError(
                        f"cannot write {folder / SIDECAR}: {e.strerror or e}"
                    ) from None
                with _engine(f"creating {shard_dir}"):
                    held.shard = qe.EdgeShard.create(str(shard_dir), self._edge_config(spec))
                logger.info("created edge collection %r at %s", self.collection, folder)
        except BaseException:
            held.mutex.release()
            self._release(held)
            raise
        held.mutex.release()
        self._held, self._spec, self._record = held, spec, record

    def close(self) -> None:
        """Flush and release the shard and the lock (idempotent); a shard other stores of this
        process still use stays open for them."""
        held, self._held = self._held, None
        if held is None:
            return
        try:
            with held.mutex:
                if held.shard is not None and not self.read_only:
                    with _engine("flush"):
                        held.shard.flush()
        finally:
            self._release(held)

    def identity(self) -> dict[str, Any] | None:
        """The identity record of the open collection (``None`` before :meth:`open`)."""
        return None if self._record is None else dict(self._record["identity"])

    def _open_shard(self) -> Any:
        if self._shard is None:
            raise StoreError("the edge store is not open: call open(spec) first")
        return self._shard

    def _writable(self) -> tuple[Any, CollectionSpec]:
        shard = self._open_shard()
        if self.read_only:
            raise StoreError(f"collection {self.collection!r} was opened read-only")
        assert self._spec is not None
        return shard, self._spec

    def flush(self) -> None:
        """Persist pending writes (only needed with ``flush=False``)."""
        with _engine("flush"):
            self._open_shard().flush()

    def optimize(self) -> bool:
        """Run the segment optimizers now; blocks; returns whether anything changed.

        Builds indexes and vacuums segments with >= 20 % deleted points. Until a segment is
        vacuumed the engine's IDF statistics still count its deleted points (updates are
        counted right away), so run this after large deletions."""
        shard, _ = self._writable()
        with _engine("optimize"):
            return bool(shard.optimize())

    # -- writes ---------------------------------------------------------------------------------

    def _point(self, rec: PointRecord, spec: CollectionSpec) -> Any:
        import qdrant_edge as qe

        vector: dict[str, Any] = {}
        if rec.dense is not None:
            vector[spec.dense_name] = [float(x) for x in rec.dense]
        if rec.sparse is not None and len(rec.sparse):
            vector[spec.sparse_name] = rec.sparse.to_edge()
        if spec.lexical_name is not None and rec.lexical is not None and len(rec.lexical):
            vector[spec.lexical_name] = rec.lexical.to_edge()
        return qe.Point(point_id(rec.doc_id), vector, build_payload(rec))

    def upsert(self, points: Sequence[PointRecord]) -> None:
        """Insert or update documents; durable on return. See :meth:`Store.upsert`.

        An empty sparse (or lexical) vector is stored as no vector (the engine would not count
        it in IDF statistics either way). ``PointRecord.lexical`` is written only when the
        collection has a lexical leg.
        """
        import qdrant_edge as qe

        shard, spec = self._writable()
        batch = prepare_points(points, spec.dense_dim)
        for part in chunks(batch, _BATCH):
            pts = [self._point(rec, spec) for rec in part]
            with _engine("upsert"):
                shard.update(qe.UpdateOperation.upsert_points(pts))
        self._after_write(shard)

    def _after_write(self, shard: Any) -> None:
        if self.auto_flush:
            with _engine("flush"):
                shard.flush()

    def delete(self, doc_ids: Sequence[str]) -> None:
        """Delete documents by id (missing ids are ignored)."""
        import qdrant_edge as qe

        shard, _ = self._writable()
        ids = [point_id(d) for d in doc_ids]
        for part in chunks(ids, 4096):
            with _engine("delete"):
                shard.update(qe.UpdateOperation.delete_points(list(part)))
        self._after_write(shard)

    def delete_where(self, filter: Filter) -> None:
        """Delete the documents a non-empty filter matches."""
        import qdrant_edge as qe

        shard, _ = self._writable()
        if not filter:
            raise ConfigError(
                "delete_where needs a non-empty filter (refusing to delete everything)"
            )
        with _engine("delete_where"):
            shard.update(qe.UpdateOperation.delete_points_by_filter(to_edge(filter)))
        self._after_write(shard)

    def index_field(self, key: str, kind: str) -> None:
        """Build a payload index on a metadata key (``kind``: keyword, integer, float, bool,
        datetime). Filtered dense searches scan every point without one."""
        import qdrant_edge as qe

        shard, _ = self._writable()
        path = index_target(key, kind)
        schema = getattr(qe.PayloadSchemaType, kind.capitalize())
        with _engine(f"indexing {path}"):
            shard.update(qe.UpdateOperation.create_field_index(path, schema))
        self._after_write(shard)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, doc_ids: Sequence[str]) -> list[PointRecord]:
        """Stored documents with vectors, in the order asked; missing ids are skipped."""
        shard = self._open_shard()
        spec = self._spec
        assert spec is not None
        with _engine("retrieve"):
            recs = shard.retrieve([point_id(d) for d in doc_ids], True, True)
        return records_in_order(recs, doc_ids, spec)

    def count(self, filter: Filter | None = None) -> int:
        """Exact number of documents (matching ``filter``)."""
        import qdrant_edge as qe

        shard = self._open_shard()
        with _engine("count"):
            return int(shard.count(qe.CountRequest(exact=True, filter=to_edge(filter))))

    def hashes(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """``doc_id -> content hash`` of the documents present."""
        shard = self._open_shard()
        out: dict[str, str] = {}
        for part in chunks([point_id(d) for d in doc_ids], 4096):
            with _engine("retrieve"):
                recs = shard.retrieve(list(part), ["doc_id", "hash"], False)
            out.update(hashes_of(recs))
        return out

    def scroll(self, filter: Filter | None = None, limit: int = 10_000) -> list[PointRecord]:
        """Up to ``limit`` stored documents matching ``filter`` (text and metadata, no vectors)."""
        import qdrant_edge as qe

        shard = self._open_shard()
        spec = self._spec
        assert spec is not None
        flt = to_edge(filter)
        found: list[Any] = []
        offset = None
        while len(found) < limit:
            page = qe.ScrollRequest(
                offset=offset, limit=min(1024, limit - len(found)), filter=flt,
                with_payload=True, with_vector=False,
            )  # fmt: skip
            with _engine("scroll"):
                recs, offset = shard.scroll(page)
            found.extend(recs)
            if offset is None:
                break
        return records_in_order(found, doc_ids_of(found), spec)

    def _requests(self, req: SearchRequest) -> list[Any]:
        """The engine queries of one request: the final one, then the legs alone if asked
        (``MINMAX`` requests are sent as their legs alone: see :meth:`search_batch`)."""
        import qdrant_edge as qe

        legs, flt = self._leg_queries(req)
        if req.mode in ("dense", "sparse", "lexical"):
            return [qe.QueryRequest(limit=req.k, query=legs[0], filter=flt, with_payload=True)]
        n = req.candidates
        prefetches = [qe.Prefetch(limit=n, query=q, filter=flt) for q in legs]
        weights = [float(w) for w in req.leg_weights]
        fusion: Any
        E = qe.Expression
        if req.fusion is Fusion.RRF:
            unweighted = all(w == 1.0 for w in weights)
            fusion = qe.Fusion.Rrf(k=req.rrf_k, weights=None if unweighted else weights)
        elif req.fusion is Fusion.DBSF:
            fusion = qe.Fusion.Dbsf()
        else:
            fusion = qe.Formula(
                E.Sum(
                    [
                        E.Mult([E.Constant(w), E.Variable(f"$score[{i}]")])
                        for i, w in enumerate(weights)
                    ]
                ),
                defaults={f"$score[{i}]": 0.0 for i in range(len(weights))},
            )
        out = [qe.QueryRequest(limit=req.k, prefetches=prefetches, query=fusion, with_payload=True)]
        if needs_legs(req):
            out += self._leg_requests(req)
        return out

    def _leg_queries(self, req: SearchRequest) -> tuple[list[Any], Any]:
        """The request's leg queries (one in a single-leg mode) and its engine filter."""
        import qdrant_edge as qe

        spec = self._spec
        assert spec is not None
        lexical_name = check_lexical(req, spec, self.collection)
        flt = to_edge(req.filter)
        dense_q = sparse_q = lexical_q = None
        if req.dense is not None:
            dense_q = qe.Query.Nearest([float(x) for x in req.dense], using=spec.dense_name)
        if req.sparse is not None:
            sparse_q = qe.Query.Nearest(req.sparse.to_edge(), using=spec.sparse_name)
        if req.lexical is not None:
            lexical_q = qe.Query.Nearest(req.lexical.to_edge(), using=lexical_name)
        if req.mode in ("dense", "sparse", "lexical"):
            return [{"dense": dense_q, "sparse": sparse_q, "lexical": lexical_q}[req.mode]], flt
        return [dense_q, sparse_q] + ([lexical_q] if req.three_legs else []), flt

    def _leg_requests(self, req: SearchRequest) -> list[Any]:
        """Each leg of a hybrid request alone (ids and scores, ``candidates`` deep)."""
        import qdrant_edge as qe

        legs, flt = self._leg_queries(req)
        return [
            qe.QueryRequest(limit=req.candidates, query=q, filter=flt, with_payload=False)
            for q in legs
        ]

    def search(self, req: SearchRequest) -> list[Hit]:
        """Run one query; fusion happens in the engine."""
        return self.search_batch([req])[0]

    def search_batch(self, reqs: Sequence[SearchRequest]) -> list[list[Hit]]:
        """Run several queries (with their legs) as one engine batch.

        ``MINMAX`` requests send only their legs; the min-max fusion is finished on the scores of
        that same batch (:func:`~latentlex.store.base.fuse_minmax`, the engine's formula
        arithmetic) and the ``k`` hits' payloads are read by id: one engine query per request.
        """
        import qdrant_edge as qe

        shard = self._open_shard()
        if not reqs:
            return []
        plans = [self._leg_requests(r) if two_phase(r) else self._requests(r) for r in reqs]
        flat = [q for plan in plans for q in plan]
        with _engine("query"):
            results = shard.query_batch(qe.QueryBatchRequest(flat))
        out: list[list[Hit]] = []
        fused_ids: dict[int, list[tuple[str, float]]] = {}
        legs_of: list[list[list[tuple[str, float]]]] = []
        pos = 0
        for i, (req, plan) in enumerate(zip(reqs, plans, strict=True)):
            res = results[pos : pos + len(plan)]
            pos += len(plan)
            legs = [[(str(p.id), float(p.score)) for p in leg] for leg in res]
            if two_phase(req):
                fused_ids[i] = fuse_minmax(legs, req.leg_weights, req.k)
                legs_of.append(legs)
            else:
                legs_of.append(legs[1:])
        payloads: dict[str, Any] = {}
        wanted = list(dict.fromkeys(pid for top in fused_ids.values() for pid, _ in top))
        if wanted:
            with _engine("retrieve"):
                recs = shard.retrieve(wanted, True, False)
            payloads = {str(r.id): r.payload for r in recs}
        pos = 0
        for i, (req, plan) in enumerate(zip(reqs, plans, strict=True)):
            res = results[pos : pos + len(plan)]
            pos += len(plan)
            if i in fused_ids:
                fused = [(pid, sc, payloads.get(pid)) for pid, sc in fused_ids[i]]
            else:
                fused = [(str(p.id), float(p.score), p.payload) for p in res[0]]
            out.append(hits_with_legs(fused, req, *split_legs(req, legs_of[i])))
        return out
