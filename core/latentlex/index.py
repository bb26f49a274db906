"""LatentIndex: the framework-neutral facade — add, upsert, delete, search, explain.

Texts go through :class:`~latentlex.terms.LatentTermEncoder` (one backbone pass: dense + latent
terms) into a :mod:`latentlex.store` (embedded qdrant-edge by default, a Qdrant server by URL).
With ``lexical=True`` a third leg holds Qdrant's BM25 of the words
(:mod:`latentlex.lexical`). Fusion of the legs runs inside Qdrant.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ._validate import check_json_value, has_surrogate
from .backbone import check_texts
from .errors import CollectionMismatchError, ConfigError
from .lexical import LexicalConfig, LexicalEncoder
from .mmr import check_mmr, mmr_order
from .sparse import SparseVector
from .store.base import (
    FORMAT_VERSION,
    AsyncStore,
    CollectionSpec,
    Fusion,
    Hit,
    PointRecord,
    SearchRequest,
    Store,
)
from .store.filters import Filter
from .terms import Encoded, LatentTermEncoder

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FUSION",
    "DEFAULT_MINMAX_WEIGHTS",
    "Explanation",
    "LatentIndex",
    "TermContribution",
    "build_index",
    "content_hash",
]

#: The default fusion of :meth:`LatentIndex.search` (``benchmarks/research_fusion.py`` measured
#: RRF, weighted RRF, DBSF, raw and normalised weighted sums; min-max normalisation won).
DEFAULT_FUSION = Fusion.MINMAX
#: Default ``(dense, latent terms, lexical)`` weights of the min-max fusion: the best mean of
#: SciFact-train and NFCorpus-dev nDCG@10 among the weightings that keep LIMIT-small recall@2
#: within 0.02 of its best single leg (BENCHMARKS.md, "Fusion"). Dense and latent terms come
#: from the same model and are correlated: together they weigh as much as the lexical leg.
DEFAULT_MINMAX_WEIGHTS: tuple[float, float, float] = (0.5, 0.5, 1.0)

#: Name of the lexical sparse vector in collections built with ``lexical=True``.
LEXICAL_NAME = "bm25"


def content_hash(text: str, metadata: Mapping[str, Any]) -> str:
    """Hash of what a point stores (text + metadata), used to skip unchanged documents."""
    h = hashlib.sha256(text.encode("utf-8", "surrogatepass"))
    h.update(json.dumps(metadata, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


@dataclass
class TermContribution:
    """One latent term shared by a query and a document.

    ``contribution = query_weight * idf * doc_weight``: the term's share of the sparse-leg score.
    """

    latent: int
    label: str
    query_weight: float
    doc_weight: float
    idf: float
    contribution: float


@dataclass
class Explanation:
    """Why a document matched a query: its sparse-leg score, split into latent terms.

    ``sum(t.contribution for t in terms_all) == sparse_score`` (the score Qdrant returned).
    """

    query: str
    doc_id: str
    sparse_score: float
    dense_score: float
    terms: list[TermContribution]
    n_shared: int
    terms_all: list[TermContribution] = field(default_factory=list, repr=False)

    def table(self) -> str:
        """A plain-text table of the top terms."""
        lines = [
            f"{self.doc_id!r}: sparse {self.sparse_score:.3f} (from {self.n_shared} shared latent "
            f"terms), dense cosine {self.dense_score:.3f}",
            f"  {'latent':>7}  {'label':<28} {'q':>6} {'d':>6} {'idf':>6} {'contrib':>8}",
        ]
        for t in self.terms:
            lines.append(
                f"  {t.latent:>7}  {t.label[:28]:<28} {t.query_weight:6.2f} {t.doc_weight:6.2f} "
                f"{t.idf:6.2f} {t.contribution:8.3f}"
            )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "sparse_score": self.sparse_score,
            "dense_score": self.dense_score,
            "n_shared": self.n_shared,
            "terms": [t.__dict__ for t in self.terms],
        }


def build_index(
    sae: Any = None,
    store: Store | str | os.PathLike[str] | None = None,
    *,
    encoder: LatentTermEncoder | None = None,
    collection: str = "latentlex",
    recreate: bool = False,
    lexical: bool | LexicalConfig | None = None,
    index_kwargs: Mapping[str, Any] | None = None,
) -> LatentIndex:
    """The :class:`LatentIndex` the adapters' ``from_documents``/``from_texts`` build.

    ``sae`` (an SAE, folder or Hub id) or ``encoder``; ``store`` or ``index_kwargs["url"]``;
    ``lexical`` given once, here or in ``index_kwargs``.
    """
    from .terms import as_encoder

    if encoder is None and sae is None:
        raise ConfigError("give sae= (an SAE, folder or Hub id) or encoder=")
    kwargs = dict(index_kwargs or {})
    if store is None and "url" not in kwargs:
        raise ConfigError(
            "give store= (a folder, ':memory:' or a Store) or index_kwargs={'url': ...}"
        )
    if "lexical" in kwargs:
        if lexical is not None:
            raise ConfigError("give lexical= once (not also in index_kwargs)")
        lexical = kwargs.pop("lexical")
    enc = encoder if encoder is not None else as_encoder(sae)
    return LatentIndex(
        enc, store, collection=collection, recreate=recreate, lexical=lexical, **kwargs
    )


def _open_store(
    store: Store | str | os.PathLike[str] | None,
    *,
    url: str | None,
    api_key: str | None,
    collection: str,
    **store_kwargs: Any,
) -> Store:
    from .store import ClientStore, EdgeStore

    if store is not None and not isinstance(store, (str, os.PathLike)):
        return store
    if url is not None:
        return ClientStore(url, api_key=api_key, collection=collection, **store_kwargs)
    if store is None:
        raise ConfigError("give a store path (embedded engine), url= (Qdrant server) or a Store")
    if str(store) == ":memory:":
        return ClientStore(location=":memory:", collection=collection, **store_kwargs)
    return EdgeStore(Path(store), collection=collection, **store_kwargs)


class LatentIndex:
    """A hybrid dense + latent-term (+ lexical BM25) index in Qdrant.

    Args:
        encoder: the :class:`LatentTermEncoder` (or an SAE folder / Hub id to build one from).
        store: a folder for the embedded engine (default), ``":memory:"`` for qdrant-client's local
            mode, or any :class:`~latentlex.store.Store`.
        url / api_key: a Qdrant server, cluster or cloud instead (``ClientStore``).
        collection: collection name.
        recreate: drop and rebuild the collection.
        async_store: an async store for the ``a*`` methods (e.g. ``AsyncClientStore`` on the same
            server); default: the store's own async twins, else the sync store in a worker thread.
        batch_size: documents encoded and written per batch.
        lexical: the third leg, Qdrant's BM25 of the words, stored as a sparse vector ``"bm25"``
            with the IDF modifier and fused in Qdrant with the other two. ``None`` (default):
            on for a new collection (default :class:`~latentlex.lexical.LexicalConfig`), and an
            existing collection keeps what it was built with. ``True``/``False`` or a config
            force it (``avg_len`` is best measured on the corpus with
            :func:`~latentlex.lexical.measure_avg_len`; ``latentlex index`` does). Part of the
            collection's identity: reopening with another explicit setting is refused.

    Example:
        >>> index = LatentIndex("my-sae", "./index")  # doctest: +SKIP
        >>> index.add(["Qdrant is a vector database."], ids=["q1"])  # doctest: +SKIP
        >>> index.search("vector db", k=1)[0].doc_id  # doctest: +SKIP
        'q1'
    """

    def __init__(
        self,
        encoder: LatentTermEncoder | str | os.PathLike[str],
        store: Store | str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        collection: str = "latentlex",
        recreate: bool = False,
        async_store: AsyncStore | None = None,
        batch_size: int = 64,
        lexical: bool | LexicalConfig | None = None,
        **store_kwargs: Any,
    ) -> None:
        auto_lexical = lexical is None
        if isinstance(lexical, LexicalConfig):
            lexical_config: LexicalConfig | None = lexical
        elif lexical is None or isinstance(lexical, bool):
            lexical_config = LexicalConfig() if lexical in (None, True) else None
        else:
            raise ConfigError(
                f"lexical must be a bool or a LexicalConfig, got {type(lexical).__name__}"
            )
        self.lexical_config = lexical_config
        self.lexical_encoder = None if lexical_config is None else LexicalEncoder(lexical_config)
        if not isinstance(encoder, LatentTermEncoder):
            encoder = LatentTermEncoder(encoder)
        self.encoder = encoder
        self.store = _open_store(
            store, url=url, api_key=api_key, collection=collection, **store_kwargs
        )
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.spec = self._spec(collection)
        try:
            self.store.open(self.spec, recreate=recreate)
        except CollectionMismatchError as err:
            adopted = self._adopt_lexical(err.stored) if auto_lexical else None
            if adopted is None:
                raise
            # lexical=None: an existing collection keeps the lexical leg it was built with
            self.lexical_config = adopted if isinstance(adopted, LexicalConfig) else None
            self.lexical_encoder = (
                None if self.lexical_config is None else LexicalEncoder(self.lexical_config)
            )
            self.spec = self._spec(collection)
            self.store.open(self.spec, recreate=recreate)
        if async_store is None and isinstance(self.store, AsyncStore):
            async_store = self.store
        self._astore = async_store
        self._async_opened = async_store is self.store
        self.labels: dict[int, str] = dict(getattr(encoder.sae, "labels", None) or {})

    # ------------------------------------------------------------------ identity
    def _spec(self, collection: str) -> CollectionSpec:
        return CollectionSpec(
            name=collection,
            dense_dim=self.encoder.dim,
            identity=self.identity_record(),
            lexical_name=None if self.lexical_config is None else LEXICAL_NAME,
        )

    @staticmethod
    def _adopt_lexical(stored: Mapping[str, Any] | None) -> LexicalConfig | bool | None:
        """The lexical setting of an existing collection (``False``: none), or ``None`` if its
        record cannot tell."""
        if not stored:
            return None
        if stored.get("lexical_name") is None:
            return False
        cfg = (stored.get("identity") or {}).get("lexical")
        if not isinstance(cfg, Mapping):
            return None
        try:
            return LexicalConfig(**cfg)
        except (TypeError, ConfigError):
            return None

    def identity_record(self) -> dict[str, Any]:
        """What this index writes into its collection, and checks on open (with the lexical
        leg, its :meth:`LexicalConfig.as_dict` under ``"lexical"``)."""
        cfg = self.encoder.sae.cfg
        record: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "sae_fingerprint": self.encoder.sae.fingerprint(),
            "backbone": self.encoder.backbone.name,
            "backbone_fingerprint": self.encoder.backbone.fingerprint(),
            "dense_dim": self.encoder.dim,
            "mode": cfg.mode,
            "avgdl": None if cfg.avgdl is None else round(float(cfg.avgdl), 6),
            "bm25_k1": cfg.bm25_k1,
            "bm25_b": cfg.bm25_b,
        }
        if self.lexical_config is not None:
            record["lexical"] = self.lexical_config.as_dict()
        return record

    def close(self) -> None:
        """Release the store; idempotent (an ``async_store`` of its own: :meth:`aclose`)."""
        self.store.close()

    async def aclose(self) -> None:
        """Release the async store (when it is another object) and the store; idempotent."""
        astore = self._astore
        if astore is not None and astore is not self.store and self._async_opened:
            await astore.aclose()
            self._async_opened = False
        await asyncio.to_thread(self.store.close)

    async def __aenter__(self) -> LatentIndex:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> LatentIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def _records(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None,
        metadata: Sequence[Mapping[str, Any]] | None,
    ) -> list[tuple[str, str, dict[str, Any], str]]:
        texts = check_texts(texts)
        if ids is None:
            ids = [content_hash(t, {}) for t in texts]
        else:
            if isinstance(ids, str):
                raise TypeError("ids must be a list of strings, not a single string")
            ids = list(ids)
            for i, doc_id in enumerate(ids):
                if not isinstance(doc_id, str):
                    raise TypeError(f"ids[{i}] must be a str, got {type(doc_id).__name__}")
                if not doc_id:
                    raise ValueError(f"ids[{i}] is empty: document ids must be non-empty strings")
                if has_surrogate(doc_id):
                    raise ValueError(f"ids[{i}] holds a lone surrogate character (not valid UTF-8)")
        if len(ids) != len(texts):
            raise ValueError(f"got {len(ids)} ids for {len(texts)} texts")
        metas: list[dict[str, Any]]
        if metadata is None:
            metas = [{} for _ in texts]
        else:
            if isinstance(metadata, Mapping):
                raise TypeError("metadata must be a list of mappings, one per text")
            metas = []
            for i, m in enumerate(metadata):
                if not isinstance(m, Mapping):
                    raise TypeError(f"metadata[{i}] must be a mapping, got {type(m).__name__}")
                _check_metadata(m)
                metas.append(dict(m))
            if len(metas) != len(texts):
                raise ValueError(f"got {len(metas)} metadata entries for {len(texts)} texts")
        # duplicate ids in one call: the last one wins
        last: dict[str, int] = {doc_id: i for i, doc_id in enumerate(ids)}
        return [
            (ids[i], texts[i], metas[i], content_hash(texts[i], metas[i]))
            for i in sorted(last.values())
        ]

    @property
    def lexical(self) -> bool:
        """Whether this index has the lexical (BM25) leg."""
        return self.lexical_encoder is not None

    def _lexical_docs(self, texts: Sequence[str]) -> list[SparseVector | None]:
        """The lexical vectors of documents (``None`` each without the lexical leg)."""
        if self.lexical_encoder is None:
            return [None] * len(texts)
        return list(self.lexical_encoder.encode_documents(texts))

    def _encode_points(
        self, rows: Sequence[tuple[str, str, dict[str, Any], str]]
    ) -> tuple[list[PointRecord], int]:
        """The points of ``rows`` and how many of their texts the backbone truncated."""
        texts = [r[1] for r in rows]
        enc = self.encoder.encode_documents(texts, warn_truncated=False)
        lex = self._lexical_docs(texts)
        points = [
            PointRecord(doc_id, enc.dense[i], enc.sparse[i], text, meta, h, lex[i])
            for i, (doc_id, text, meta, h) in enumerate(rows)
        ]
        return points, enc.truncated

    def _warn_truncated(self, truncated: int, total: int) -> None:
        """One warning per call that wrote documents, however many batches it took."""
        if truncated:
            logger.warning(
                "%d of %d documents were longer than the backbone reads (%d tokens) and were "
                "truncated: their ends are not searchable. Split them first (the adapters' "
                "from_documents do by default; latentlex.chunking.split_text)",
                truncated,
                total,
                self.encoder.backbone.max_seq_length,
            )

    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        *,
        skip_unchanged: bool = False,
        progress: bool = False,
    ) -> list[str]:
        """Add or update documents (an existing id is overwritten, never duplicated).

        Args:
            texts: the documents.
            ids: document ids (default: a hash of the text).
            metadata: one JSON-serialisable mapping per text (filterable).
            skip_unchanged: skip ids already stored with the same text and metadata (resuming).
            progress: show a progress bar.

        Returns:
            The ids written (after de-duplication: the last occurrence of an id wins).
        """
        rows = self._records(texts, ids, metadata)
        written: list[str] = []
        truncated = 0
        bar = tqdm(total=len(rows), desc="indexing", unit="doc", disable=not progress)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            if skip_unchanged:
                stored = self.store.hashes([r[0] for r in chunk])
                chunk = [r for r in chunk if stored.get(r[0]) != r[3]]
            if chunk:
                points, cut = self._encode_points(chunk)
                self.store.upsert(points)
                truncated += cut
                written.extend(r[0] for r in chunk)
            bar.update(min(self.batch_size, len(rows) - start))
        bar.close()
        self._warn_truncated(truncated, len(written))
        return written

    upsert = add

    def add_encoded(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        encoded: Encoded,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        *,
        progress: bool = False,
    ) -> list[str]:
        """Write documents already encoded by :meth:`LatentTermEncoder.encode_documents` (or
        ``encode_states``), in input order; no backbone pass. With the lexical leg, its vectors
        are computed from ``texts``."""
        if len(encoded) != len(texts):
            raise ValueError(f"got {len(encoded)} encodings for {len(texts)} texts")
        rows = self._records(texts, ids, metadata)
        position = {doc_id: i for i, doc_id in enumerate(ids)}
        bar = tqdm(total=len(rows), desc="writing", unit="doc", disable=not progress)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            lex = self._lexical_docs([r[1] for r in chunk])
            self.store.upsert(
                [
                    PointRecord(
                        doc_id,
                        encoded.dense[position[doc_id]],
                        encoded.sparse[position[doc_id]],
                        text,
                        meta,
                        h,
                        lex[n],
                    )
                    for n, (doc_id, text, meta, h) in enumerate(chunk)
                ]
            )
            bar.update(len(chunk))
        bar.close()
        return [r[0] for r in rows]

    def add_documents(self, docs: Iterable[Any], **kwargs: Any) -> list[str]:
        """Add :class:`~latentlex.corpus.Document` objects (``id``, ``text``, ``metadata``)."""
        docs = list(docs)
        return self.add(
            [d.text for d in docs], [d.id for d in docs], [d.metadata for d in docs], **kwargs
        )

    def delete(self, ids: Sequence[str] | None = None, *, filter: Filter | None = None) -> None:
        """Delete documents by id, or every document a filter matches."""
        if (ids is None) == (filter is None):
            raise ConfigError("give exactly one of ids or filter")
        if ids is not None:
            if isinstance(ids, str):
                raise TypeError("ids must be a list of strings, not a single string")
            self.store.delete(list(ids))
        else:
            self.store.delete_where(filter)

    def get(self, ids: Sequence[str]) -> list[PointRecord]:
        """Stored documents (text, metadata, vectors) in the order asked; missing ids skipped."""
        if isinstance(ids, str):
            raise TypeError("ids must be a list of strings, not a single string")
        return self.store.get(list(ids))

    def count(self, filter: Filter | None = None) -> int:
        """Number of documents (matching ``filter``)."""
        return self.store.count(filter)

    def scroll(self, filter: Filter | None = None, limit: int = 10_000) -> list[PointRecord]:
        """Up to ``limit`` stored documents matching ``filter`` (text and metadata, no vectors)."""
        _check_limit(limit)
        return self.store.scroll(filter, limit)

    def optimize(self) -> bool:
        """Build the engine's search structures now; call it after a bulk load.

        The embedded engine (qdrant-edge) runs no optimizer in the background: until this runs,
        new points sit in appendable segments searched without those indexes (the dense leg by
        full scan), so search time grows about linearly with the collection (BENCHMARKS.md, "Corpus scale"). ``optimize`` merges them
        into indexed segments (HNSW for the dense leg, immutable inverted indexes for the sparse
        legs) and vacuums deleted points; it blocks, and its cost grows with the collection.
        ``latentlex index`` runs it at the end of every run. A Qdrant server optimizes by itself
        in the background: there this does nothing and returns False.

        Returns:
            Whether the engine changed anything.
        """
        opt = getattr(self.store, "optimize", None)
        return bool(opt()) if callable(opt) else False

    def clear(self) -> None:
        """Delete every document: the collection is dropped and created again, empty (its
        identity and legs unchanged; IDF statistics start afresh)."""
        self.store.open(self.spec, recreate=True)

    # ------------------------------------------------------------------ searching
    def _lexical_queries(self, queries: Sequence[str], mode: str) -> list[SparseVector] | None:
        """The lexical query vectors (``None`` without the lexical leg or when not used)."""
        if self.lexical_encoder is None or mode not in ("hybrid", "lexical"):
            return None
        return self.lexical_encoder.encode_queries(queries)

    def _check_mode(self, mode: str) -> None:
        if mode == "lexical" and self.lexical_encoder is None:
            raise ConfigError(
                "mode 'lexical' needs an index with the lexical leg: LatentIndex(..., lexical=True)"
            )

    def _requests(
        self,
        enc: Encoded | None,
        *,
        k: int,
        mode: str,
        fusion: str | Fusion,
        weights: Sequence[float] | None,
        rrf_k: int,
        prefetch_limit: int | None,
        filter: Filter | None,
        with_legs: bool,
        lexical: Sequence[SparseVector] | None = None,
        n: int | None = None,
    ) -> list[SearchRequest]:
        self._check_mode(mode)
        if n is None:
            n = len(enc) if enc is not None else len(lexical or ())
        if enc is not None and len(enc) != n:
            raise ValueError(f"got {len(enc)} encoded queries for {n} queries")
        if lexical is not None:
            if self.lexical_encoder is None:
                raise ConfigError(
                    "lexical query vectors were given, but this index has no lexical leg "
                    "(LatentIndex(..., lexical=True))"
                )
            if isinstance(lexical, SparseVector):
                raise TypeError("lexical must be a list of SparseVector, one per query")
            lexical = list(lexical)
            if len(lexical) != n:
                raise ValueError(f"got {len(lexical)} lexical vectors for {n} queries")
            for i, v in enumerate(lexical):
                if not isinstance(v, SparseVector):
                    raise TypeError(f"lexical[{i}] must be a SparseVector, got {type(v).__name__}")
        if mode == "lexical" and lexical is None:
            raise ConfigError("mode 'lexical' needs lexical query vectors")
        if mode != "lexical" and enc is None:
            raise ConfigError(f"mode {mode!r} needs encoded queries")
        use_lexical = lexical is not None and mode in ("hybrid", "lexical")
        if weights is None:
            default = DEFAULT_MINMAX_WEIGHTS if Fusion(fusion) is Fusion.MINMAX else (1.0,) * 3
            weights = default if use_lexical and mode == "hybrid" else default[:2]
        w = tuple(float(x) for x in weights)
        if len(w) == 3 and not use_lexical:
            if mode == "hybrid":
                raise ConfigError(
                    "three weights (dense, sparse, lexical) need the lexical leg: an index built "
                    "with lexical=True (and, for search_encoded, lexical query vectors)"
                )
            w = w[:2]  # the weights of a single-leg mode are unused
        return [
            SearchRequest(
                dense=enc.dense[i] if enc is not None and mode in ("hybrid", "dense") else None,
                sparse=enc.sparse[i] if enc is not None and mode in ("hybrid", "sparse") else None,
                k=k,
                mode=mode,
                fusion=Fusion(fusion),
                weights=w,
                rrf_k=rrf_k,
                prefetch_limit=prefetch_limit,
                filter=filter,
                with_legs=with_legs and mode == "hybrid",
                lexical=lexical[i] if use_lexical and lexical is not None else None,
            )
            for i in range(n)
        ]

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        mode: str = "hybrid",
        fusion: str | Fusion = DEFAULT_FUSION,
        weights: Sequence[float] | None = None,
        rrf_k: int = 60,
        prefetch_limit: int | None = None,
        filter: Filter | None = None,
        with_legs: bool = True,
    ) -> list[Hit]:
        """Search with one query.

        Args:
            query: the query text.
            k: number of hits.
            mode: ``"hybrid"`` (the legs fused in Qdrant: dense + latent terms, + lexical BM25
                when the index has it), ``"dense"``, ``"sparse"`` (latent terms) or
                ``"lexical"`` (BM25 of the words alone; needs ``lexical=True``).
            fusion: ``"minmax"`` (default: each leg's scores min-max normalised over its
                candidates, then a weighted sum; the best fusion measured, see BENCHMARKS.md),
                ``"rrf"`` (weighted when ``weights`` differ), ``"dbsf"`` or ``"weighted"``
                (linear sum of raw leg scores).
            weights: ``(dense, sparse)`` or ``(dense, sparse, lexical)`` leg weights (with two,
                the lexical leg weighs 1.0). ``None``: :data:`DEFAULT_MINMAX_WEIGHTS` for
                ``"minmax"``, all 1.0 for the other fusions.
            rrf_k: RRF rank constant.
            prefetch_limit: candidates per leg (default ``max(50, 5k)``).
            filter: ``{"key": value}`` / ``{"key": [a, b]}`` / ``{"key": {"gte": x}}`` on metadata,
                applied to every leg.
            with_legs: fill each hit's per-leg score and rank.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        return self.search_batch(
            [query], k, mode=mode, fusion=fusion, weights=weights, rrf_k=rrf_k,
            prefetch_limit=prefetch_limit, filter=filter, with_legs=with_legs,
        )[0]  # fmt: skip

    def search_batch(self, queries: Sequence[str], k: int = 10, **options: Any) -> list[list[Hit]]:
        """Search many queries at once (one encoder pass, one engine batch)."""
        reqs = self._text_requests(queries, k, options)
        return [_tie_break(hits) for hits in self.store.search_batch(reqs)] if reqs else []

    def _text_requests(
        self, queries: Sequence[str], k: int, options: Mapping[str, Any]
    ) -> list[SearchRequest]:
        """Encode query texts (no backbone pass in ``lexical`` mode) into requests."""
        queries = check_texts(queries, "queries")
        opts = _search_defaults(options)  # refuse unknown options before encoding
        mode = opts["mode"]
        self._check_mode(mode)
        lexical = self._lexical_queries(queries, mode)
        enc: Encoded | None = None
        if mode == "dense":  # the backbone alone: no SAE work for a leg that is not searched
            dense = self.encoder.backbone.encode_dense(
                queries, batch_size=self.encoder.batch_size, is_query=True
            )
            enc = Encoded(dense, [SparseVector.empty() for _ in queries])
        elif mode != "lexical":
            enc = self.encoder.encode_queries(queries)
        return self._requests(enc, k=k, lexical=lexical, n=len(queries), **opts)

    def search_encoded(
        self,
        queries: Encoded,
        k: int = 10,
        *,
        lexical: Sequence[SparseVector] | None = None,
        **options: Any,
    ) -> list[list[Hit]]:
        """Search with queries already encoded by :meth:`LatentTermEncoder.encode_queries`.

        Args:
            queries: the encoded queries.
            k: number of hits.
            lexical: the lexical query vectors, one per query
                (:meth:`LexicalEncoder.encode_queries`), for an index with the lexical leg.
                Without them, ``hybrid`` fuses only the dense and latent-term legs, even on an
                index that has the lexical leg (and ``mode="lexical"`` is refused).
            **options: as for :meth:`search`.
        """
        opts = _search_defaults(options)
        if opts["mode"] == "lexical" and lexical is None:
            raise ConfigError("search_encoded in mode 'lexical' needs lexical= query vectors")
        reqs = self._requests(queries, k=k, lexical=lexical, n=len(queries), **opts)
        return [_tie_break(hits) for hits in self.store.search_batch(reqs)] if reqs else []

    def relevance_fn(self, **options: Any) -> Callable[[float], float]:
        """``score -> relevance in [0, 1]`` for hits of a text search with these ``options``.

        Min-max fusion divides by the total leg weight (its largest possible score), RRF by
        the score of a document first in every leg, DBSF by the number of legs; a dense score
        (cosine) maps to ``(1 + s) / 2``; unbounded scores (BM25 of the latent terms or the
        words, the weighted sum of raw scores) to ``s / (1 + s)``. Order is preserved.
        """
        opts = _search_defaults(options)
        mode, fusion = opts["mode"], Fusion(opts["fusion"])
        self._check_mode(mode)
        n_legs = 3 if self.lexical else 2
        if mode == "dense":
            return lambda s: _clip01((1.0 + s) / 2.0)
        if mode in ("sparse", "lexical") or fusion is Fusion.WEIGHTED:
            return lambda s: _clip01(max(s, 0.0) / (1.0 + max(s, 0.0)))
        weights = opts["weights"]
        if weights is None:
            default = DEFAULT_MINMAX_WEIGHTS if fusion is Fusion.MINMAX else (1.0,) * 3
            weights = default[:n_legs]
        w = [float(x) for x in weights] + [1.0] * (n_legs - len(weights))
        if fusion is Fusion.MINMAX:
            top = sum(w)
        elif fusion is Fusion.RRF:
            k = opts["rrf_k"]
            top = sum(1.0 / (1.0 / x + k - 1.0) for x in w if x > 0)
        else:  # DBSF: each leg's scores normalised to about [0, 1]
            top = float(n_legs)
        return lambda s: _clip01(s / top) if top > 0 else 0.0

    def search_mmr(
        self,
        query: str,
        k: int = 4,
        *,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **options: Any,
    ) -> list[Hit]:
        """Maximal marginal relevance: ``fetch_k`` candidates by :meth:`search` (same
        ``options``), then ``k`` of them picked one at a time for their dense similarity to the
        query less their highest similarity to those already picked (``lambda_mult`` 1:
        relevance only, 0: difference only). Hits keep their search scores, in pick order."""
        check_mmr(k, fetch_k, lambda_mult)
        reqs = self._text_requests([query], max(k, fetch_k), options)
        hits = _tie_break(self.store.search_batch(reqs)[0])
        recs = self.store.get([h.doc_id for h in hits])
        return self._mmr(reqs[0], query, hits, recs, k, lambda_mult)

    def _mmr(
        self,
        req: SearchRequest,
        query: str,
        hits: list[Hit],
        recs: Sequence[PointRecord],
        k: int,
        lambda_mult: float,
    ) -> list[Hit]:
        dense = {r.doc_id: r.dense for r in recs if r.dense is not None}
        hits = [h for h in hits if h.doc_id in dense]
        if not hits:
            return []
        q = req.dense
        if q is None:  # sparse/lexical modes carry no dense query vector
            q = self.encoder.backbone.encode_dense([query], is_query=True)[0]
        order = mmr_order(q, np.stack([dense[h.doc_id] for h in hits]), k, lambda_mult)
        return [hits[i] for i in order]

    # ------------------------------------------------------------------ explaining
    def explain(self, query: str, doc_id: str, top: int = 10) -> Explanation:
        """Which latent terms made ``doc_id`` match ``query``, and by how much.

        Each shared latent ``j`` contributes ``q_j * IDF_j * d_j``. ``IDF_j`` is read from Qdrant
        itself (a one-term sparse query scored against the document), so the contributions sum to
        the sparse-leg score Qdrant returns for this document.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ConfigError(f"top must be a positive int, got {top!r}")
        if not isinstance(doc_id, str):
            raise TypeError(f"doc_id must be a str, got {type(doc_id).__name__}")
        recs = self.store.get([doc_id])
        if not recs:
            raise KeyError(f"no document with id {doc_id!r}")
        rec = recs[0]
        enc = self.encoder.encode_queries([query])
        q, qd = enc.sparse[0], enc.dense[0]
        d = rec.sparse if rec.sparse is not None else SparseVector.empty()
        shared, qi, di = np.intersect1d(
            q.indices, d.indices, assume_unique=True, return_indices=True
        )
        only_doc = {"doc_id": doc_id}
        reqs = (
            [SearchRequest(None, q, k=1, mode="sparse", filter=only_doc, with_legs=False)]
            if len(shared)
            else []
        )
        reqs += [
            SearchRequest(
                None,
                SparseVector(np.array([j], np.uint32), np.array([1.0], np.float32)),
                k=1,
                mode="sparse",
                filter=only_doc,
                with_legs=False,
            )
            for j in shared
        ]
        results = self.store.search_batch(reqs) if reqs else []
        sparse_score = results[0][0].score if results and results[0] else 0.0
        terms: list[TermContribution] = []
        for n, j in enumerate(shared.tolist()):
            dw = float(d.values[di[n]])
            hits = results[n + 1]
            idf = hits[0].score / dw if hits and dw > 0 else 0.0
            qw = float(q.values[qi[n]])
            terms.append(
                TermContribution(j, self.labels.get(j, f"latent {j}"), qw, dw, idf, qw * idf * dw)
            )
        terms.sort(key=lambda t: -t.contribution)
        dense_score = 0.0
        if rec.dense is not None:
            norm = float(np.linalg.norm(qd) * np.linalg.norm(rec.dense))
            dense_score = float(np.dot(qd, rec.dense) / norm) if norm > 0 else 0.0
        return Explanation(query, doc_id, sparse_score, dense_score, terms[:top], len(terms), terms)

    # ------------------------------------------------------------------ async twins
    async def _aopen(self) -> AsyncStore | None:
        if self._astore is not None and not self._async_opened:
            await self._astore.aopen(self.spec)
            self._async_opened = True
        return self._astore

    async def aadd(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        *,
        skip_unchanged: bool = False,
    ) -> list[str]:
        """Async :meth:`add`: encoding runs in a worker thread, writes through the async store."""
        astore = await self._aopen()
        if astore is None:
            return await asyncio.to_thread(
                self.add, texts, ids, metadata, skip_unchanged=skip_unchanged
            )
        rows = self._records(texts, ids, metadata)
        written: list[str] = []
        truncated = 0
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            if skip_unchanged:
                stored = await astore.ahashes([r[0] for r in chunk])
                chunk = [r for r in chunk if stored.get(r[0]) != r[3]]
            if chunk:
                points, cut = await asyncio.to_thread(self._encode_points, chunk)
                await astore.aupsert(points)
                truncated += cut
                written.extend(r[0] for r in chunk)
        self._warn_truncated(truncated, len(written))
        return written

    aupsert = aadd

    async def asearch(self, query: str, k: int = 10, **options: Any) -> list[Hit]:
        """Async :meth:`search`."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        return (await self.asearch_batch([query], k, **options))[0]

    async def asearch_batch(
        self, queries: Sequence[str], k: int = 10, **options: Any
    ) -> list[list[Hit]]:
        """Async :meth:`search_batch`: encoding in a worker thread, I/O through the async store."""
        astore = await self._aopen()
        reqs = await asyncio.to_thread(self._text_requests, queries, k, options)
        if not reqs:
            return []
        if astore is None:
            results = await asyncio.to_thread(self.store.search_batch, reqs)
        else:
            results = await astore.asearch_batch(reqs)
        return [_tie_break(hits) for hits in results]

    async def adelete(
        self, ids: Sequence[str] | None = None, *, filter: Filter | None = None
    ) -> None:
        """Async :meth:`delete`."""
        astore = await self._aopen()
        if astore is None:
            await asyncio.to_thread(self.delete, ids, filter=filter)
        elif (ids is None) == (filter is None):
            raise ConfigError("give exactly one of ids or filter")
        elif ids is not None:
            await astore.adelete(list(ids))
        else:
            await astore.adelete_where(filter)

    async def aget(self, ids: Sequence[str]) -> list[PointRecord]:
        """Async :meth:`get`."""
        astore = await self._aopen()
        if astore is None:
            return await asyncio.to_thread(self.get, ids)
        return await astore.aget(list(ids))

    async def acount(self, filter: Filter | None = None) -> int:
        """Async :meth:`count`."""
        astore = await self._aopen()
        if astore is None:
            return await asyncio.to_thread(self.count, filter)
        return await astore.acount(filter)

    async def ascroll(self, filter: Filter | None = None, limit: int = 10_000) -> list[PointRecord]:
        """Async :meth:`scroll`."""
        _check_limit(limit)
        return await self._astore_call("scroll", filter, limit)  # type: ignore[no-any-return]

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        astore = await self._aopen()
        if astore is None:
            await asyncio.to_thread(self.clear)
        else:
            await astore.aopen(self.spec, recreate=True)

    async def asearch_mmr(
        self,
        query: str,
        k: int = 4,
        *,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **options: Any,
    ) -> list[Hit]:
        """Async :meth:`search_mmr`."""
        check_mmr(k, fetch_k, lambda_mult)
        reqs = await asyncio.to_thread(self._text_requests, [query], max(k, fetch_k), options)
        hits = _tie_break((await self._astore_call("search_batch", reqs))[0])
        recs = await self._astore_call("get", [h.doc_id for h in hits])
        return await asyncio.to_thread(self._mmr, reqs[0], query, hits, recs, k, lambda_mult)

    async def _astore_call(self, name: str, *args: Any) -> Any:
        """``store.<name>(*args)`` through the async store, or the store in a worker thread."""
        astore = await self._aopen()
        if astore is None:
            return await asyncio.to_thread(getattr(self.store, name), *args)
        return await getattr(astore, f"a{name}")(*args)

    async def aexplain(self, query: str, doc_id: str, top: int = 10) -> Explanation:
        """Async :meth:`explain` (runs in a worker thread)."""
        return await asyncio.to_thread(self.explain, query, doc_id, top)


_SEARCH_OPTIONS = {
    "mode": "hybrid",
    "fusion": DEFAULT_FUSION,
    "weights": None,
    "rrf_k": 60,
    "prefetch_limit": None,
    "filter": None,
    "with_legs": True,
}


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, float(x)))


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000_000:
        raise ConfigError(f"limit must be an int in [1, 10,000,000], got {limit!r}")


def _tie_break(hits: list[Hit]) -> list[Hit]:
    """Equal scores (frequent with RRF) in a stable order: by doc id."""
    return sorted(hits, key=lambda h: (-h.score, h.doc_id))


def _search_defaults(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set(_SEARCH_OPTIONS)
    if unknown:
        raise TypeError(
            f"unknown search options {sorted(unknown)}; allowed: {sorted(_SEARCH_OPTIONS)}"
        )
    weights = options.get("weights")
    if weights is not None and (
        isinstance(weights, (str, bytes))
        or not isinstance(weights, Sequence)
        or len(weights) not in (2, 3)
        or not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights)
        or not all(math.isfinite(float(w)) and float(w) >= 0 for w in weights)
    ):
        raise ConfigError(
            f"weights must be two (dense, sparse) or three (dense, sparse, lexical) finite, "
            f"non-negative numbers, got {weights!r}"
        )
    return {**_SEARCH_OPTIONS, **options}


def _check_metadata(meta: Mapping[str, Any]) -> None:
    """Refuse metadata Qdrant cannot store exactly, before any encoding (TypeError/ValueError naming the key)."""
    for key, value in meta.items():
        if not isinstance(key, str):
            raise TypeError(f"metadata key {key!r} is not a str")
        check_json_value(value, f"metadata key {key!r}")
