"""latentlex's own systems in the evaluation harness: latent terms alone and the hybrids, in Qdrant.

One :class:`LatentBench` per (dataset, SAE): the corpus' token states are computed once (and cached
on disk, keyed by backbone and corpus), turned into latent terms without another backbone pass,
written once into an embedded qdrant-edge collection, and searched with many configurations
(dense, latent, hybrid with RRF/DBSF/weighted fusion) — each a :class:`LatentSystem`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..index import LatentIndex
from ..lexical import LexicalConfig, measure_avg_len
from ..sparse import SparseVector
from ..states import TokenStates, encode_token_states
from ..terms import Encoded, LatentTermEncoder
from .baselines import BaseSystem, Run
from .beir import BeirDataset

logger = logging.getLogger(__name__)

__all__ = ["LatentBench", "LatentSystem"]


class LatentBench:
    """A dataset indexed once with one SAE, searchable with many configurations.

    Args:
        encoder: the :class:`LatentTermEncoder` (SAE + backbone).
        states_dir: where the corpus' token states are cached (reused when backbone and corpus match).
        work_dir: where the embedded collection is written (default: a temporary folder).
    """

    def __init__(
        self,
        encoder: LatentTermEncoder,
        states_dir: str | Path,
        work_dir: str | Path | None = None,
    ) -> None:
        self.encoder = encoder
        self.states_dir = Path(states_dir)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="latentlex-bench-")
            work_dir = self._tmp.name
        self.work_dir = Path(work_dir)
        self.index: LatentIndex | None = None
        self._fingerprint: str | None = None
        self._queries: dict[str, tuple[list[str], Encoded, list[SparseVector], float]] = {}
        self.stats: dict[str, float] = {}

    def states(self, ds: BeirDataset) -> TokenStates:
        """The corpus' token states (encoded now, or reused from the cache)."""
        return encode_token_states(
            self.encoder.backbone,
            ds.doc_ids,
            ds.doc_texts(),
            self.states_dir,
            progress=False,
        )

    def build(self, ds: BeirDataset) -> None:
        """Encode (from cached token states) and write the corpus; a no-op if already built."""
        if self._fingerprint == ds.fingerprint:
            return
        states = self.states(ds)
        t0 = time.perf_counter()
        enc = self.encoder.encode_states(states)
        t_sae = time.perf_counter() - t0
        texts = dict(zip(ds.doc_ids, ds.doc_texts(), strict=True))
        if self.index is not None:
            self.index.close()
        # the lexical leg's BM25 length normalisation, calibrated on this corpus (as the CLI does)
        lexical = LexicalConfig(avg_len=measure_avg_len(ds.doc_texts()))
        self.index = LatentIndex(
            self.encoder,
            self.work_dir / "edge",
            collection=ds.name,
            recreate=True,
            batch_size=512,
            lexical=lexical,
        )
        t0 = time.perf_counter()
        self.index.add_encoded(states.doc_ids, [texts[i] for i in states.doc_ids], enc)
        t_write = time.perf_counter() - t0
        nnz = np.array([len(v) for v in enc.sparse])
        self.stats = {
            "sae_encode_seconds": t_sae,
            "write_seconds": t_write,
            "docs": float(len(nnz)),
            "terms_per_doc_mean": float(nnz.mean()) if nnz.size else 0.0,
            "terms_per_doc_p95": float(np.percentile(nnz, 95)) if nnz.size else 0.0,
            "backbone_seconds": float(states.meta.get("seconds", float("nan"))),
        }
        self._fingerprint = ds.fingerprint
        self._queries.clear()
        logger.info("%s: %d docs written, %.0f latent terms/doc", ds.name, len(nnz), nnz.mean())

    def queries(
        self, queries: Mapping[str, str]
    ) -> tuple[list[str], Encoded, list[SparseVector], float]:
        """Queries encoded once (batched; dense, latent terms and lexical) and reused by every
        configuration."""
        key = str(hash(tuple(queries.items())))
        if key not in self._queries:
            qids = list(queries)
            texts = [queries[q] for q in qids]
            t0 = time.perf_counter()
            enc = self.encoder.encode_queries(texts)
            assert self.index is not None and self.index.lexical_encoder is not None
            lexical = self.index.lexical_encoder.encode_queries(texts)
            per_query = (time.perf_counter() - t0) / max(1, len(qids))
            self._queries = {key: (qids, enc, lexical, per_query)}
        return self._queries[key]

    def close(self) -> None:
        if self.index is not None:
            self.index.close()
            self.index = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class LatentSystem(BaseSystem):
    """One search configuration over a :class:`LatentBench` (``mode``, ``fusion``, ``weights``, ...).

    ``query_seconds`` holds the search-only latency of each query (one engine call each, run one at a
    time, as a user would) plus the query's share of the batched encoding time.
    """

    def __init__(
        self, name: str, bench: LatentBench, *, lexical: bool = False, **options: Any
    ) -> None:
        super().__init__(name)
        self.bench = bench
        self.lexical = lexical
        self.options = options
        self.search_seconds: list[float] = []
        mode = options.get("mode", "hybrid")
        if mode not in ("hybrid", "dense", "sparse", "lexical"):
            raise ConfigError(f"unknown mode {mode!r}")

    def _index(self, ds: BeirDataset) -> None:
        self.bench.build(ds)

    def index(self, ds: BeirDataset) -> None:
        """Build (once per bench); ``index_seconds`` is the whole pipeline's: backbone pass (when its
        time was recorded with the cached token states), SAE encoding and writing."""
        super().index(ds)
        st = self.bench.stats
        backbone = st.get("backbone_seconds", float("nan"))
        self.index_seconds = (
            st["sae_encode_seconds"]
            + st["write_seconds"]
            + (backbone if backbone == backbone else 0.0)  # NaN: not recorded
        )

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        if not self.is_indexed or self.bench.index is None:
            from .baselines import NotIndexedError

            raise NotIndexedError(f"{self.name}: call index(ds) before search()")
        qids, enc, lexical, encode_each = self.bench.queries(queries)
        index = self.bench.index
        run: Run = {}
        self.search_seconds = []
        opts = {"with_legs": False, **self.options}
        use_lexical = self.lexical or self.options.get("mode") == "lexical"
        for i, qid in enumerate(qids):
            one = Encoded(enc.dense[i : i + 1], enc.sparse[i : i + 1])
            lex = lexical[i : i + 1] if use_lexical else None
            t0 = time.perf_counter()
            hits = index.search_encoded(one, k, lexical=lex, **opts)[0]
            self.search_seconds.append(time.perf_counter() - t0)
            run[qid] = {h.doc_id: float(h.score) for h in hits}
        self.query_seconds = [s + encode_each for s in self.search_seconds]
        return run

    def _search_one(
        self, text: str, k: int
    ) -> dict[str, float]:  # pragma: no cover - search() overrides
        raise NotImplementedError
