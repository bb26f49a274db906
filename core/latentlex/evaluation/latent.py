"""latentlex's own systems in the evaluation harness: latent terms alone and the hybrids, in Qdrant.

One :class:`LatentBench` per (dataset, SAE): the corpus' token states are computed once (and cached
on disk, keyed by backbone and corpus), turned into latent terms without another backbone pass — one
SAE pass, streamed batch by batch into an embedded qdrant-edge collection (:func:`write_states`),
with the SAE's own ``avgdl`` as ``latentlex index`` uses it — and searched with many configurations
(dense, latent, hybrid with RRF/DBSF/weighted fusion), each a :class:`LatentSystem` whose queries
are encoded and timed as every other system's are (:class:`~.baselines.BaseSystem`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..index import LatentIndex
from ..lexical import LexicalConfig, measure_avg_len
from ..sparse import SparseVector
from ..states import TokenStates, encode_token_states
from ..terms import Encoded, LatentTermEncoder
from .baselines import BaseSystem
from .beir import BeirDataset

logger = logging.getLogger(__name__)

__all__ = ["LatentBench", "LatentSystem", "write_states"]


def write_states(
    index: LatentIndex,
    states: TokenStates,
    texts: Callable[[list[str]], list[str]],
    *,
    docs_per_batch: int = 256,
    optimize: bool = True,
) -> dict[str, float]:
    """Encode a corpus' stored token states and write them into ``index``, batch by batch.

    One SAE pass (:meth:`LatentTermEncoder.iter_encode_states`, the SAE's own ``avgdl``) and
    memory bounded by a batch, whatever the corpus' size; then, as ``latentlex index`` does,
    :meth:`LatentIndex.optimize` builds the engine's search indexes (``optimize=False`` skips it).

    Args:
        index: the index to write to (its encoder's SAE encodes the states).
        states: the token states (rows in ``states.doc_ids`` order).
        texts: the texts of some document ids (for the payload and the lexical leg).
        docs_per_batch: documents encoded and written at a time.

    Returns:
        ``sae_encode_seconds``, ``write_seconds`` (lexical encoding and upserts),
        ``optimize_seconds``, ``docs`` and the latent terms per document (mean, p95).
    """
    t_sae = t_write = 0.0
    nnz = np.zeros(states.n_docs, dtype=np.int32)
    it = index.encoder.iter_encode_states(states, docs_per_batch=docs_per_batch)
    while True:
        t0 = time.perf_counter()
        item = next(it, None)
        t_sae += time.perf_counter() - t0
        if item is None:
            break
        rows, enc = item
        ids = [states.doc_ids[r] for r in rows]
        t0 = time.perf_counter()
        index.add_encoded(ids, texts(ids), enc)
        t_write += time.perf_counter() - t0
        nnz[rows.start : rows.stop] = [len(v) for v in enc.sparse]
    t0 = time.perf_counter()
    if optimize:
        index.optimize()
    return {
        "sae_encode_seconds": t_sae,
        "write_seconds": t_write,
        "optimize_seconds": time.perf_counter() - t0,
        "docs": float(nnz.size),
        "terms_per_doc_mean": float(nnz.mean()) if nnz.size else 0.0,
        "terms_per_doc_p95": float(np.percentile(nnz, 95)) if nnz.size else 0.0,
    }


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
        stats = write_states(self.index, states, lambda ids: [texts[i] for i in ids])
        self.stats = {
            **stats,
            "avgdl": float(self.encoder.sae.cfg.avgdl or float("nan")),
            "backbone_seconds": float(states.meta.get("seconds", float("nan"))),
        }
        self._fingerprint = ds.fingerprint
        logger.info(
            "%s: %d docs written, %.0f latent terms/doc",
            ds.name,
            int(stats["docs"]),
            stats["terms_per_doc_mean"],
        )

    def close(self) -> None:
        if self.index is not None:
            self.index.close()
            self.index = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class LatentSystem(BaseSystem):
    """One search configuration over a :class:`LatentBench` (``mode``, ``fusion``, ``weights``, ...).

    Queries are encoded as :meth:`LatentIndex.search` encodes them (backbone + SAE, and the lexical
    leg's vectors when this configuration fuses it) and searched with
    :meth:`LatentIndex.search_encoded`, inside :class:`BaseSystem`'s timed loops: ``query_seconds``
    is one query at a time, encoding included, as for every other system.
    """

    def __init__(
        self, name: str, bench: LatentBench, *, lexical: bool = False, **options: Any
    ) -> None:
        super().__init__(name)
        self.bench = bench
        self.lexical = lexical
        self.options = options
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

    def _live_index(self) -> LatentIndex:
        if not self.is_indexed or self.bench.index is None:
            from .baselines import NotIndexedError

            raise NotIndexedError(f"{self.name}: call index(ds) before search()")
        return self.bench.index

    def _encode_queries(self, texts: list[str]) -> list[Any]:
        index = self._live_index()
        mode = self.options.get("mode", "hybrid")
        enc = self.bench.encoder.encode_queries(texts) if mode != "lexical" else None
        lex: list[SparseVector] | None = None
        if (self.lexical or mode == "lexical") and index.lexical_encoder is not None:
            lex = index.lexical_encoder.encode_queries(texts)
        return [
            (
                None if enc is None else Encoded(enc.dense[i : i + 1], enc.sparse[i : i + 1]),
                None if lex is None else lex[i : i + 1],
            )
            for i in range(len(texts))
        ]

    def _search_encoded(self, query: Any, k: int) -> dict[str, float]:
        enc, lex = query
        opts = {"with_legs": False, **self.options}
        hits = self._live_index().search_encoded(enc, k, lexical=lex, **opts)[0]
        return {h.doc_id: float(h.score) for h in hits}

    def _search_one(self, text: str, k: int) -> dict[str, float]:
        return self._search_encoded(self._encode_queries([text])[0], k)
