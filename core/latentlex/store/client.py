"""Stores on ``qdrant-client``: a Qdrant server, cluster or Cloud by URL, or local mode.

:class:`ClientStore` wraps ``QdrantClient`` (its ``a``-prefixed twins run in a worker thread);
:class:`AsyncClientStore` wraps ``AsyncQdrantClient`` with the same methods as coroutines.
The collection's identity record lives in Qdrant's collection metadata (server >= 1.16, and
the client's local mode), under the key ``"latentlex"``.

Local mode (``location=":memory:"`` or ``path=...``) is the client's pure-Python engine: exact
and feature-complete for everything used here (RRF with k and weights, DBSF, formulas, IDF),
but slow — use :class:`~latentlex.store.edge.EdgeStore` for an embedded collection of any size.

Example:
    >>> import numpy as np
    >>> from latentlex.sparse import SparseVector
    >>> from latentlex.store import ClientStore, CollectionSpec, PointRecord, SearchRequest
    >>> store = ClientStore(location=":memory:")
    >>> store.open(CollectionSpec("docs", dense_dim=2, identity={"format_version": 1}))
    >>> store.upsert([PointRecord("a", np.array([1.0, 0.0]), SparseVector.from_dict({3: 1.0}),
    ...                           "alpha", {})])
    >>> store.count()
    1
    >>> store.close()
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from latentlex._redact import redact_text, redact_url, url_secrets
from latentlex.errors import CollectionMismatchError, ConfigError, LatentLexError, StoreError
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
    hashes_of,
    hits_with_legs,
    index_target,
    make_record,
    minmax_terms,
    needs_legs,
    point_id,
    prepare_points,
    records_in_order,
    schema_mismatch,
    split_legs,
    two_phase,
)
from latentlex.store.filters import Filter, to_qdrant

__all__ = ["AsyncClientStore", "ClientStore"]

logger = logging.getLogger(__name__)

_BATCH = 256


def _describe(e: Exception) -> str:
    status = getattr(e, "status_code", None)
    if status is not None:
        content = getattr(e, "content", b"")
        text = content.decode(errors="replace") if isinstance(content, bytes) else str(content)
        return f"HTTP {status} {getattr(e, 'reason_phrase', '')}: {text[:500]}".strip()
    return f"{type(e).__name__}: {e}"


_T = TypeVar("_T")


class _Call:
    """One client method call an operation asks for: ``what`` names it in error messages."""

    __slots__ = ("args", "kwargs", "method", "what")

    def __init__(self, what: str, method: str, *args: Any, **kwargs: Any) -> None:
        self.what, self.method, self.args, self.kwargs = what, method, args, kwargs


#: An operation: yields the client calls it needs, receives their results, returns its own.
_Op = Generator[_Call, Any, _T]


class _Core:
    """Connection-independent half of the client stores: options, request builders, parsers."""

    def __init__(
        self,
        *,
        url: str | None,
        location: str | None,
        path: str | None,
        api_key: str | None,
        https: bool | None,
        prefer_grpc: bool,
        collection: str,
        shard_number: int | None,
        replication_factor: int | None,
        on_disk: bool,
        quantization: Any,
        timeout: float | None,
        read_only: bool,
        client_kwargs: dict[str, Any],
    ) -> None:
        if sum(x is not None for x in (url, location, path)) > 1:
            raise ConfigError("give at most one of url, location and path")
        self.collection = collection
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        self.on_disk = on_disk
        self.quantization = quantization
        self.read_only = read_only
        self.local = (
            path is not None
            or location == ":memory:"
            or (url is None and location is None and path is None)
        )
        if url is None and location is None and path is None:
            location = ":memory:"
        # secrets (the URL's user-info, api_key=..., the API key) never reach a message
        self._secrets = [*url_secrets(url), api_key]
        self.where = (
            _redact(url) if url else (f"local path {path}" if path else f"local {location}")
        )
        self.options: dict[str, Any] = {
            "url": url,
            "location": location,
            "path": None if path is None else str(path),
            "api_key": api_key,
            "https": https,
            "prefer_grpc": prefer_grpc,
            "timeout": timeout,
            **client_kwargs,
        }
        if path is not None:
            # the async twins call from worker threads; calls are serialised by our lock
            self.options["force_disable_check_same_thread"] = True
        self.options = {k: v for k, v in self.options.items() if v is not None}
        self.spec: CollectionSpec | None = None
        self.record: dict[str, Any] | None = None

    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Turn client/transport exceptions into one clear :class:`StoreError`."""
        try:
            yield
        except LatentLexError:
            raise
        except Exception as e:
            name = type(e).__name__
            if name in (
                "ResponseHandlingException",
                "ConnectError",
                "ConnectTimeout",
            ) or isinstance(e, (ConnectionError, TimeoutError)):
                raise StoreError(
                    redact_text(
                        f"cannot reach Qdrant at {self.where} ({what}): {e}; check the URL, the "
                        f"server and the network",
                        self._secrets,
                    )
                ) from e
            raise StoreError(
                redact_text(f"Qdrant at {self.where}: {what} failed: {_describe(e)}", self._secrets)
            ) from e

    # -- collection -----------------------------------------------------------------------------

    def quantization_config(self) -> Any:
        from qdrant_client import models

        q = self.quantization
        if q is None or not isinstance(q, str):
            return q
        if q in ("int8", "scalar"):
            return models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
            )
        if q == "binary":
            return models.BinaryQuantization(
                binary=models.BinaryQuantizationConfig(always_ram=True)
            )
        raise ConfigError(
            f"quantization must be 'int8', 'binary', None or a qdrant config, got {q!r}"
        )

    def create_kwargs(self, spec: CollectionSpec) -> dict[str, Any]:
        from qdrant_client import models

        on_disk = spec.on_disk or self.on_disk
        sparse_names = [spec.sparse_name] + (
            [spec.lexical_name] if spec.lexical_name is not None else []
        )
        kwargs: dict[str, Any] = {
            "collection_name": self.collection,
            "vectors_config": {
                spec.dense_name: models.VectorParams(
                    size=spec.dense_dim, distance=models.Distance.COSINE, on_disk=on_disk or None
                )
            },
            "sparse_vectors_config": {
                name: models.SparseVectorParams(
                    index=models.SparseIndexParams(on_disk=on_disk or None),
                    modifier=models.Modifier.IDF,
                )
                for name in sparse_names
            },
            "metadata": {META_KEY: make_record(spec, spec.identity)},
            "on_disk_payload": on_disk or None,
            "shard_number": self.shard_number,
            "replication_factor": self.replication_factor,
            "quantization_config": self.quantization_config(),
        }
        return {k: v for k, v in kwargs.items() if v is not None}

    def validate(self, info: Any, spec: CollectionSpec) -> dict[str, Any]:
        """Check a ``CollectionInfo`` against ``spec``; returns the stored record."""
        from qdrant_client import models

        params = info.config.params
        vectors = params.vectors
        if isinstance(vectors, models.VectorParams):
            vectors = {"": vectors}
        dense = {
            n: (int(v.size), str(getattr(v.distance, "value", v.distance)).lower())
            for n, v in (vectors or {}).items()
        }
        sparse = {
            n: v.modifier == models.Modifier.IDF for n, v in (params.sparse_vectors or {}).items()
        }
        metadata = getattr(info.config, "metadata", None) or {}
        record = metadata.get(META_KEY)
        try:
            schema_mismatch(self.collection, spec, dense=dense, sparse=sparse)
        except CollectionMismatchError as e:
            e.stored = dict(record) if isinstance(record, dict) else None
            raise
        return check_record(self.collection, record, spec)

    @staticmethod
    def has_record(info: Any) -> bool:
        metadata = getattr(info.config, "metadata", None) or {}
        return META_KEY in metadata

    def no_metadata(self) -> StoreError:
        return StoreError(
            f"Qdrant at {self.where} did not keep the collection metadata latentlex records its "
            f"identity in (needs Qdrant >= 1.16); upgrade the server"
        )

    def begin_open(self, spec: CollectionSpec, recreate: bool) -> None:
        self.spec, self.record = None, None
        self.collection = spec.name or self.collection
        if self.read_only and recreate:
            raise StoreError("recreate=True needs a writable store (read_only=False)")

    def missing(self) -> StoreError:
        return StoreError(
            f"collection {self.collection!r} not found at {self.where} (read-only open); build "
            f"it first, or check the collection name"
        )

    def writable(self) -> CollectionSpec:
        spec = self.opened()
        if self.read_only:
            raise StoreError(f"collection {self.collection!r} was opened read-only")
        return spec

    def opened(self) -> CollectionSpec:
        if self.spec is None:
            raise StoreError("the store is not open: call open(spec) first")
        return self.spec

    # -- points ---------------------------------------------------------------------------------

    def points(self, batch: Sequence[PointRecord], spec: CollectionSpec) -> list[Any]:
        from qdrant_client import models

        out = []
        for rec in batch:
            vector: dict[str, Any] = {}
            if rec.dense is not None:
                vector[spec.dense_name] = [float(x) for x in rec.dense]
            if rec.sparse is not None and len(rec.sparse):
                vector[spec.sparse_name] = rec.sparse.to_qdrant()
            if spec.lexical_name is not None and rec.lexical is not None and len(rec.lexical):
                vector[spec.lexical_name] = rec.lexical.to_qdrant()
            out.append(
                models.PointStruct(
                    id=point_id(rec.doc_id), vector=vector, payload=build_payload(rec)
                )
            )
        return out

    @staticmethod
    def delete_where_selector(filter: Filter) -> Any:
        from qdrant_client import models

        if not filter:
            raise ConfigError(
                "delete_where needs a non-empty filter (refusing to delete everything)"
            )
        return models.FilterSelector(filter=to_qdrant(filter))

    # -- queries --------------------------------------------------------------------------------

    def requests(
        self,
        req: SearchRequest,
        spec: CollectionSpec,
        norms: Sequence[tuple[float, float, float]] | None = None,
    ) -> list[Any]:
        """The queries of one request: the final one, then the legs alone if asked.

        ``norms``: the per-leg ``(scale, offset, default)`` of a ``MINMAX`` request, measured
        from its legs (see :func:`~latentlex.store.base.minmax_terms`); its legs are not re-run.
        """
        from qdrant_client import models

        legs, flt = self.leg_queries(req, spec)
        if req.mode in ("dense", "sparse", "lexical"):
            q, using = legs[0]
            return [
                models.QueryRequest(
                    query=q, using=using, filter=flt, limit=req.k, with_payload=True
                )
            ]
        n = req.candidates
        prefetch = [models.Prefetch(query=q, using=using, filter=flt, limit=n) for q, using in legs]
        weights = [float(w) for w in req.leg_weights]
        query: Any
        if req.fusion is Fusion.RRF:
            unweighted = all(w == 1.0 for w in weights)
            query = models.RrfQuery(
                rrf=models.Rrf(k=req.rrf_k, weights=None if unweighted else weights)
            )
        elif req.fusion is Fusion.DBSF:
            query = models.FusionQuery(fusion=models.Fusion.DBSF)
        elif req.fusion is Fusion.MINMAX:
            assert norms is not None, "MINMAX needs the legs' scores first"
            query = models.FormulaQuery(
                formula=models.SumExpression(
                    sum=[
                        models.SumExpression(
                            sum=[models.MultExpression(mult=[a, f"$score[{i}]"]), b_]
                        )
                        for i, (a, b_, _) in enumerate(norms)
                    ]
                ),
                defaults={f"$score[{i}]": d for i, (_, _, d) in enumerate(norms)},
            )
        else:
            query = models.FormulaQuery(
                formula=models.SumExpression(
                    sum=[
                        models.MultExpression(mult=[w, f"$score[{i}]"])
                        for i, w in enumerate(weights)
                    ]
                ),
                defaults={f"$score[{i}]": 0.0 for i in range(len(weights))},
            )
        out = [models.QueryRequest(prefetch=prefetch, query=query, limit=req.k, with_payload=True)]
        if needs_legs(req) and norms is None:
            out += self.leg_requests(req, spec)
        return out

    def leg_queries(
        self, req: SearchRequest, spec: CollectionSpec
    ) -> tuple[list[tuple[Any, str | None]], Any]:
        """``(query, vector name)`` of each leg (one in a single-leg mode) and the filter."""
        lexical_name = check_lexical(req, spec, self.collection)
        flt = to_qdrant(req.filter)
        leg: dict[str, tuple[Any, str | None]] = {
            "dense": (
                None if req.dense is None else [float(x) for x in req.dense],
                spec.dense_name,
            ),
            "sparse": (None if req.sparse is None else req.sparse.to_qdrant(), spec.sparse_name),
            "lexical": (None if req.lexical is None else req.lexical.to_qdrant(), lexical_name),
        }
        if req.mode in leg:
            return [leg[req.mode]], flt
        return [leg["dense"], leg["sparse"]] + ([leg["lexical"]] if req.three_legs else []), flt

    def leg_requests(self, req: SearchRequest, spec: CollectionSpec) -> list[Any]:
        """Each leg of a hybrid request alone (ids and scores, ``candidates`` deep)."""
        from qdrant_client import models

        legs, flt = self.leg_queries(req, spec)
        return [
            models.QueryRequest(
                query=q, using=using, filter=flt, limit=req.candidates, with_payload=False
            )
            for q, using in legs
        ]

    def first_phase(
        self, reqs: Sequence[SearchRequest], spec: CollectionSpec
    ) -> dict[int, list[Any]]:
        """The leg queries of the ``MINMAX`` requests, by request position."""
        return {i: self.leg_requests(r, spec) for i, r in enumerate(reqs) if two_phase(r)}

    @staticmethod
    def leg_scores(
        first: Mapping[int, Sequence[Any]], responses: Sequence[Any]
    ) -> dict[int, list[list[tuple[str, float]]]]:
        """Split the first phase's responses into each request's leg results."""
        out: dict[int, list[list[tuple[str, float]]]] = {}
        pos = 0
        for i, plan in first.items():
            out[i] = [
                [(str(p.id), float(p.score)) for p in leg.points]
                for leg in responses[pos : pos + len(plan)]
            ]
            pos += len(plan)
        return out

    def plans(
        self,
        reqs: Sequence[SearchRequest],
        spec: CollectionSpec,
        pre: Mapping[int, Sequence[Sequence[tuple[str, float]]]],
    ) -> list[list[Any]]:
        """The second (or only) phase: every request's queries."""
        return [
            self.requests(r, spec, minmax_terms(pre[i], r.leg_weights) if i in pre else None)
            for i, r in enumerate(reqs)
        ]

    @staticmethod
    def hits(
        reqs: Sequence[SearchRequest],
        plans: Sequence[Sequence[Any]],
        responses: Sequence[Any],
        pre: Mapping[int, Sequence[Sequence[tuple[str, float]]]] | None = None,
    ) -> list[list[Hit]]:
        out: list[list[Hit]] = []
        pos = 0
        for i, (req, plan) in enumerate(zip(reqs, plans, strict=True)):
            res = responses[pos : pos + len(plan)]
            pos += len(plan)
            fused = [(str(p.id), float(p.score), p.payload) for p in res[0].points]
            legs: Sequence[Sequence[tuple[str, float]]] = [
                [(str(p.id), float(p.score)) for p in leg.points] for leg in res[1:]
            ]
            if pre is not None and i in pre and req.with_legs:
                legs = pre[i]
            out.append(hits_with_legs(fused, req, *split_legs(req, legs)))
        return out

    # -- operations, each written once: generators of client calls (see _ClientStoreBase) -------

    def open_op(self, spec: CollectionSpec, recreate: bool) -> _Op[None]:
        """Create the collection if missing, else validate it."""
        self.begin_open(spec, recreate)
        name = self.collection
        exists = yield _Call("checking the collection", "collection_exists", name)
        if exists and recreate:
            logger.info("dropping collection %r at %s", name, self.where)
            yield _Call("deleting the collection", "delete_collection", name)
            exists = False
        created = False
        if not exists:
            if self.read_only:
                raise self.missing()
            try:
                yield _Call(
                    "creating the collection", "create_collection", **self.create_kwargs(spec)
                )
                created = True
                logger.info("created collection %r at %s", name, self.where)
            except StoreError as err:
                # created concurrently by someone else: validate theirs
                if not (yield _Call("checking the collection", "collection_exists", name)):
                    raise err
        info = yield _Call("reading the collection", "get_collection", name)
        if created and not self.has_record(info):
            yield _Call("deleting the collection", "delete_collection", name)
            raise self.no_metadata()
        self.spec, self.record = spec, self.validate(info, spec)

    def upsert_op(self, points: Sequence[PointRecord]) -> _Op[None]:
        spec = self.writable()
        batch = prepare_points(points, spec.dense_dim)
        for part in chunks(batch, _BATCH):
            structs = self.points(part, spec)
            yield _Call("upsert", "upsert", self.collection, points=structs, wait=True)

    def delete_op(self, doc_ids: Sequence[str]) -> _Op[None]:
        from qdrant_client import models

        self.writable()
        for part in chunks([point_id(d) for d in doc_ids], 4096):
            selector = models.PointIdsList(points=list(part))
            yield _Call("delete", "delete", self.collection, selector, wait=True)

    def delete_where_op(self, filter: Filter) -> _Op[None]:
        self.writable()
        selector = self.delete_where_selector(filter)
        yield _Call("delete_where", "delete", self.collection, selector, wait=True)

    def index_field_op(self, key: str, kind: str) -> _Op[None]:
        from qdrant_client import models

        self.writable()
        path = index_target(key, kind)
        if self.local:
            return  # local mode scans payloads anyway (and warns on payload indexes)
        schema = models.PayloadSchemaType(kind)
        yield _Call(
            f"indexing {path}", "create_payload_index", self.collection, path,
            field_schema=schema, wait=True,
        )  # fmt: skip

    def get_op(self, doc_ids: Sequence[str]) -> _Op[list[PointRecord]]:
        spec = self.opened()
        ids = [point_id(d) for d in doc_ids]
        recs = yield _Call(
            "retrieve", "retrieve", self.collection, ids, with_payload=True, with_vectors=True
        )
        return records_in_order(recs, doc_ids, spec)

    def count_op(self, filter: Filter | None) -> _Op[int]:
        self.opened()
        flt = to_qdrant(filter)
        res = yield _Call("count", "count", self.collection, count_filter=flt, exact=True)
        return int(res.count)

    def hashes_op(self, doc_ids: Sequence[str]) -> _Op[dict[str, str]]:
        self.opened()
        out: dict[str, str] = {}
        for part in chunks([point_id(d) for d in doc_ids], 4096):
            recs = yield _Call(
                "retrieve", "retrieve", self.collection, list(part),
                with_payload=["doc_id", "hash"], with_vectors=False,
            )  # fmt: skip
            out.update(hashes_of(recs))
        return out

    def scroll_op(self, filter: Filter | None, limit: int) -> _Op[list[PointRecord]]:
        spec = self.opened()
        flt = to_qdrant(filter)
        found: list[Any] = []
        offset = None
        while len(found) < limit:
            page, offset = yield _Call(
                "scroll", "scroll", self.collection, scroll_filter=flt,
                limit=min(1024, limit - len(found)), offset=offset, with_payload=True,
                with_vectors=False,
            )  # fmt: skip
            found.extend(page)
            if offset is None:
                break
        return records_in_order(found, doc_ids_of(found), spec)

    def search_op(self, reqs: Sequence[SearchRequest]) -> _Op[list[list[Hit]]]:
        spec = self.opened()
        if not reqs:
            return []
        first = self.first_phase(reqs, spec)
        pre = {}
        if first:
            responses = yield _Call(
                "query", "query_batch_points", self.collection,
                requests=[q for plan in first.values() for q in plan],
            )  # fmt: skip
            pre = self.leg_scores(first, responses)
        plans = self.plans(reqs, spec, pre)
        responses = yield _Call(
            "query", "query_batch_points", self.collection,
            requests=[q for plan in plans for q in plan],
        )  # fmt: skip
        return self.hits(reqs, plans, responses, pre)


_DOC = """
    Args:
        url: Server URL (``http://host:6333``, Qdrant Cloud URL, ...).
        location: ``":memory:"`` for the client's in-memory local mode (also the default when
            no url, location or path is given), or a URL.
        path: Folder for the client's persisted local mode.
        api_key: API key (Qdrant Cloud).
        https: Force HTTPS on/off.
        prefer_grpc: Use gRPC instead of REST.
        collection: Collection used when the spec passed to ``open`` has an empty name.
        shard_number: Shards of a new collection (cluster).
        replication_factor: Replicas of a new collection (cluster).
        on_disk: Vectors, sparse index and payload on disk (also ``CollectionSpec.on_disk``).
        quantization: ``"int8"``, ``"binary"`` or a ``qdrant_client.models`` quantization
            config for the dense vector of a new collection.
        timeout: Request timeout in seconds.
        read_only: Refuse writes, and refuse to create a missing collection.
        client: Use this existing client instead of building one (options above that build a
            client are then ignored).
        **client_kwargs: Passed to the client constructor (e.g. ``check_compatibility=False``).
"""


class _ClientStoreBase:
    """What both client stores share: construction, properties, the identity record.

    Every operation is written once, as a generator of client calls (:class:`_Core`'s ``*_op``
    methods); :class:`ClientStore` runs them against ``QdrantClient``, :class:`AsyncClientStore`
    awaits them on ``AsyncQdrantClient``.
    """

    _ASYNC = False

    def __init__(
        self,
        url: str | None = None,
        *,
        location: str | None = None,
        path: str | None = None,
        api_key: str | None = None,
        https: bool | None = None,
        prefer_grpc: bool = False,
        collection: str = "latentlex",
        shard_number: int | None = None,
        replication_factor: int | None = None,
        on_disk: bool = False,
        quantization: Any = None,
        timeout: float | None = 10.0,
        read_only: bool = False,
        client: Any = None,
        **client_kwargs: Any,
    ) -> None:
        self._core = _Core(
            url=url, location=location, path=path, api_key=api_key, https=https,
            prefer_grpc=prefer_grpc, collection=collection, shard_number=shard_number,
            replication_factor=replication_factor, on_disk=on_disk, quantization=quantization,
            timeout=timeout, read_only=read_only, client_kwargs=client_kwargs,
        )  # fmt: skip
        # local mode is pure Python and not thread-safe: serialise the sync store's calls on it
        local_sync = self._core.local and client is None and not self._ASYNC
        self._lock: Any = threading.RLock() if local_sync else contextlib.nullcontext()
        self._owns_client = client is None
        if client is not None:
            self._client = client
        else:
            import qdrant_client

            make = qdrant_client.AsyncQdrantClient if self._ASYNC else qdrant_client.QdrantClient
            with self._core.errors("connecting"):
                self._client = make(**self._core.options)

    @property
    def collection(self) -> str:
        """Name of the (last) opened collection."""
        return self._core.collection

    @property
    def client(self) -> Any:
        """The underlying ``QdrantClient`` / ``AsyncQdrantClient``."""
        return self._client

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._core.where!r}, collection={self.collection!r})"

    def _identity(self) -> dict[str, Any] | None:
        rec = self._core.record
        return None if rec is None else dict(rec["identity"])


class ClientStore(_ClientStoreBase, ThreadedAsyncMixin):
    __doc__ = "A :class:`~latentlex.store.base.Store` on ``qdrant_client.QdrantClient``.\n" + _DOC

    def __enter__(self) -> ClientStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, op: _Op[_T]) -> _T:
        """Drive an operation: each call it yields runs on the client, its result sent back."""
        try:
            call = next(op)
            while True:
                try:
                    with self._lock, self._core.errors(call.what):
                        result = getattr(self._client, call.method)(*call.args, **call.kwargs)
                except StoreError as e:
                    call = op.throw(e)
                else:
                    call = op.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def open(self, spec: CollectionSpec, *, recreate: bool = False) -> None:
        """Create the collection if missing, else validate it (see :meth:`Store.open`).

        Raises:
            CollectionMismatchError: the collection differs from ``spec`` (nothing is written).
            StoreError: Qdrant is unreachable, or the collection is missing on a read-only store.
        """
        self._run(self._core.open_op(spec, recreate))

    def identity(self) -> dict[str, Any] | None:
        """The identity record of the open collection (``None`` before :meth:`open`)."""
        return self._identity()

    def close(self) -> None:
        """Close the client if this store built it (idempotent)."""
        if self._owns_client:
            with self._lock, self._core.errors("closing"):
                self._client.close()
        self._core.spec = None

    def upsert(self, points: Sequence[PointRecord]) -> None:
        """Insert or update documents; returns once Qdrant acknowledged (``wait=True``).

        An empty sparse (or lexical) vector is stored as no vector. ``PointRecord.lexical`` is
        written only when the collection has a lexical leg."""
        self._run(self._core.upsert_op(points))

    def delete(self, doc_ids: Sequence[str]) -> None:
        """Delete documents by id (missing ids are ignored)."""
        self._run(self._core.delete_op(doc_ids))

    def delete_where(self, filter: Filter) -> None:
        """Delete the documents a non-empty filter matches."""
        self._run(self._core.delete_where_op(filter))

    def index_field(self, key: str, kind: str) -> None:
        """Build a payload index on a metadata key (``kind``: keyword, integer, float, bool,
        datetime). A no-op in local mode."""
        self._run(self._core.index_field_op(key, kind))

    def get(self, doc_ids: Sequence[str]) -> list[PointRecord]:
        """Stored documents with vectors, in the order asked; missing ids are skipped."""
        return self._run(self._core.get_op(doc_ids))

    def count(self, filter: Filter | None = None) -> int:
        """Exact number of documents (matching ``filter``)."""
        return self._run(self._core.count_op(filter))

    def hashes(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """``doc_id -> content hash`` of the documents present."""
        return self._run(self._core.hashes_op(doc_ids))

    def scroll(self, filter: Filter | None = None, limit: int = 10_000) -> list[PointRecord]:
        """Up to ``limit`` stored documents matching ``filter`` (text and metadata, no vectors)."""
        return self._run(self._core.scroll_op(filter, limit))

    def search(self, req: SearchRequest) -> list[Hit]:
        """Run one query; fusion happens in Qdrant."""
        return self.search_batch([req])[0]

    def search_batch(self, reqs: Sequence[SearchRequest]) -> list[list[Hit]]:
        """Run several queries (with their legs) in one ``query_batch_points`` call."""
        return self._run(self._core.search_op(reqs))


class AsyncClientStore(_ClientStoreBase):
    __doc__ = (
        "The :class:`ClientStore` API as coroutines, on ``qdrant_client.AsyncQdrantClient``.\n\n"
        "Every method is a coroutine under its plain name (``await store.search(req)``) and under "
        "the ``a``-prefixed name of :class:`~latentlex.store.base.AsyncStore` "
        "(``await store.asearch(req)``).\n" + _DOC
    )

    _ASYNC = True

    async def __aenter__(self) -> AsyncClientStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self, op: _Op[_T]) -> _T:
        """Drive an operation: each call it yields is awaited on the client."""
        try:
            call = next(op)
            while True:
                try:
                    with self._core.errors(call.what):
                        result = await getattr(self._client, call.method)(*call.args, **call.kwargs)
                except StoreError as e:
                    call = op.throw(e)
                else:
                    call = op.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def open(self, spec: CollectionSpec, *, recreate: bool = False) -> None:
        """Async :meth:`ClientStore.open`."""
        await self._run(self._core.open_op(spec, recreate))

    async def identity(self) -> dict[str, Any] | None:
        """The identity record of the open collection (``None`` before :meth:`open`)."""
        return self._identity()

    async def upsert(self, points: Sequence[PointRecord]) -> None:
        """Async :meth:`ClientStore.upsert`."""
        await self._run(self._core.upsert_op(points))

    async def delete(self, doc_ids: Sequence[str]) -> None:
        """Async :meth:`ClientStore.delete`."""
        await self._run(self._core.delete_op(doc_ids))

    async def delete_where(self, filter: Filter) -> None:
        """Async :meth:`ClientStore.delete_where`."""
        await self._run(self._core.delete_where_op(filter))

    async def index_field(self, key: str, kind: str) -> None:
        """Async :meth:`ClientStore.index_field`."""
        await self._run(self._core.index_field_op(key, kind))

    async def get(self, doc_ids: Sequence[str]) -> list[PointRecord]:
        """Async :meth:`ClientStore.get`."""
        return await self._run(self._core.get_op(doc_ids))

    async def count(self, filter: Filter | None = None) -> int:
        """Async :meth:`ClientStore.count`."""
        return await self._run(self._core.count_op(filter))

    async def hashes(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """Async :meth:`ClientStore.hashes`."""
        return await self._run(self._core.hashes_op(doc_ids))

    async def scroll(self, filter: Filter | None = None, limit: int = 10_000) -> list[PointRecord]:
        """Async :meth:`ClientStore.scroll`."""
        return await self._run(self._core.scroll_op(filter, limit))

    async def search(self, req: SearchRequest) -> list[Hit]:
        """Async :meth:`ClientStore.search`."""
        return (await self.search_batch([req]))[0]

    async def search_batch(self, reqs: Sequence[SearchRequest]) -> list[list[Hit]]:
        """Async :meth:`ClientStore.search_batch`."""
        return await self._run(self._core.search_op(reqs))

    async def close(self) -> None:
        """Close the client if this store built it (idempotent)."""
        if self._owns_client:
            with self._core.errors("closing"):
                await self._client.close()
        self._core.spec = None

    # the AsyncStore names
    aopen = open
    aidentity = identity
    aupsert = upsert
    adelete = delete
    adelete_where = delete_where
    aindex_field = index_field
    aget = get
    acount = count
    ahashes = hashes
    ascroll = scroll
    asearch = search
    asearch_batch = search_batch
    aclose = close


def _redact(url: str) -> str:
    """A URL without its user-info and secret query values, for messages and logs."""
    return redact_url(url)
