"""Fit an SAE on a corpus end to end: sample → encode → train → calibrate avgdl → save.

A token-mode fit trains on a sample of at most ``max_tokens`` token states (whole documents in a
seeded random order, :mod:`latentlex.sampling`), so its cost follows the budget, not the corpus;
``max_tokens=None`` (``--max-tokens all``) trains on every token. ``avgdl`` is measured on the same
sample, and the budget and the sample are recorded in :attr:`SAEConfig.fit_sample`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ._validate import canonical_layer
from .backbone import Backbone
from .corpus import Document, read_corpus
from .errors import ConfigError
from .sampling import (
    DEFAULT_MAX_TOKENS,
    cached_states,
    choose_documents,
    gather_states,
    token_counts,
)
from .states import TokenStates, encode_token_states

if TYPE_CHECKING:
    from .sae import SparseAutoencoder

logger = logging.getLogger(__name__)

__all__ = ["FitConfig", "fit_sae"]

_MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Latent Terms (Clavié et al. 2026) architecture; BM25 k1/b: Robertson's 1.2/0.75, which beat the
    # paper's 8/0.7 on SciFact's train split (0.713 vs 0.696 nDCG@10) and on LIMIT-small
    # (benchmarks/research_bm25_params.py, BENCHMARKS.md).
    "token": {"architecture": "topk", "bm25_k1": 1.2, "bm25_b": 0.75},
    # CL-SR (Park et al. 2025) defaults.
    "pooled": {
        "architecture": "batchtopk",
        "bm25_k1": 0.6,
        "bm25_b": 2.0,
        "query_k2": 1.5,
        "doc_max_terms": 24,
    },
}


@dataclass
class FitConfig:
    """What to fit and how. Field docs double as CLI help."""

    model: str | None = None
    """Backbone: a sentence-transformers name or path (default: packaged all-MiniLM-L6-v2)."""
    mode: str = "token"
    """'token' (Latent Terms: TopK SAE on every token state) or 'pooled' (CL-SR: BatchTopK on the pooled vector)."""
    width: int = 8192
    """Number of latents."""
    k: int = 16
    """Active latents per token (token mode) or per text on average (pooled mode)."""
    epochs: float = 3.0
    """Passes over the token states."""
    max_tokens: int | str | None = "auto"
    """Token budget: train on whole documents, drawn in a seeded random order, holding at most
    this many token states (None or ``"all"``: every token; ``"auto"``: 250,000 in token mode,
    every document in pooled mode, whose rows are documents)."""
    keep_special_tokens: bool = False
    """Keep [CLS]/[SEP]-like token states."""
    layer: int | list[int | None] | None = None
    """Read token states from this backbone layer (None: the final hidden state), or from several
    at once, e.g. ``[None, 1]`` (the final layer and layer 1: see BENCHMARKS.md)."""
    max_seq_length: int | None = None
    """Override the backbone's maximum tokens per text."""
    bm25_k1: float | None = None
    """BM25 k1 (default: 1.2 token mode, 0.6 pooled mode)."""
    bm25_b: float | None = None
    """BM25 b (default: 0.75 token mode, 2.0 pooled mode)."""
    batch_size: int = 32
    """Texts per backbone forward pass."""
    cache_dir: str | None = None
    """Where token states are kept between runs (default: a temporary folder, deleted afterwards)."""
    seed: int = 0
    progress: bool = True
    train: dict[str, Any] = field(default_factory=dict)
    """Extra :class:`~latentlex.training.TrainConfig` fields (lr, batch_size, ...)."""

    def __post_init__(self) -> None:
        self.layer = canonical_layer(self.layer)
        if self.mode not in _MODE_DEFAULTS:
            raise ConfigError(f"mode must be one of {sorted(_MODE_DEFAULTS)}, got {self.mode!r}")
        if self.width < 1 or self.k < 1 or self.k > self.width:
            raise ConfigError(f"need 1 <= k <= width, got k={self.k}, width={self.width}")
        if self.epochs <= 0:
            raise ConfigError(f"epochs must be > 0, got {self.epochs}")
        if self.max_tokens == "auto":
            self.max_tokens = DEFAULT_MAX_TOKENS if self.mode == "token" else None
        elif self.max_tokens == "all":
            self.max_tokens = None
        if self.max_tokens is not None and (
            not isinstance(self.max_tokens, int)
            or isinstance(self.max_tokens, bool)
            or self.max_tokens < 1
        ):
            raise ConfigError(
                f"max_tokens must be a positive int, 'all' (or None) or 'auto', "
                f"got {self.max_tokens!r}"
            )

    @property
    def budget(self) -> int | None:
        """The token budget (None: every token)."""
        return cast("int | None", self.max_tokens)


def fit_sae(
    corpus: str | os.PathLike[str] | list[str] | list[Document],
    out_dir: str | os.PathLike[str] | None = None,
    config: FitConfig | None = None,
    *,
    backbone: Backbone | None = None,
    **overrides: Any,
) -> SparseAutoencoder:
    """Train an SAE on a corpus and save it.

    Args:
        corpus: a corpus path (BEIR ``corpus.jsonl``, ``.txt``, or a folder), a list of texts, or
            a list of :class:`~latentlex.corpus.Document` (their ids key the token-state cache).
        out_dir: where to save the SAE folder (``cfg.json`` + ``sae.safetensors``); None: don't save.
        config: a :class:`FitConfig`; keyword ``overrides`` replace its fields.
        backbone: an already loaded :class:`Backbone` (else built from ``config.model``).

    Example:
        >>> sae = fit_sae("data/corpus.jsonl", "my-sae", width=4096, k=16)  # doctest: +SKIP
    """
    from .sae import SAEConfig
    from .terms import LatentTermEncoder
    from .training import TrainConfig, train_sae

    cfg = config or FitConfig()
    if overrides:
        cfg = FitConfig(**{**cfg.__dict__, **overrides})
    t0 = time.perf_counter()
    if isinstance(corpus, list) and corpus and all(isinstance(d, Document) for d in corpus):
        docs_ = [d for d in corpus if isinstance(d, Document)]
        texts = [d.text for d in docs_]
        ids = [d.id for d in docs_]
    elif isinstance(corpus, list):
        texts = cast("list[str]", corpus)  # non-str items are refused by the backbone
        ids = [str(i) for i in range(len(texts))]
    else:
        docs = list(read_corpus(corpus))
        texts = [d.text for d in docs]
        ids = [d.id for d in docs]
    if not texts:
        raise ConfigError("the corpus has no documents")
    if backbone is None:
        backbone = Backbone(
            cfg.model,
            keep_special_tokens=cfg.keep_special_tokens,
            max_seq_length=cfg.max_seq_length,
            layer=cfg.layer,
        )
    defaults = _MODE_DEFAULTS[cfg.mode]
    sae_cfg = SAEConfig(
        d_in=backbone.dim,
        width=cfg.width,
        k=cfg.k,
        architecture=defaults["architecture"],
        mode=cfg.mode,
        backbone=backbone.name,
        backbone_fingerprint=backbone.fingerprint(),
        backbone_dim=backbone.dim,
        keep_special_tokens=backbone.keep_special_tokens,
        layer=backbone.layer,
        max_seq_length=backbone.max_seq_length,
        bm25_k1=cfg.bm25_k1 if cfg.bm25_k1 is not None else defaults["bm25_k1"],
        bm25_b=cfg.bm25_b if cfg.bm25_b is not None else defaults["bm25_b"],
        query_k2=defaults.get("query_k2"),
        doc_max_terms=defaults.get("doc_max_terms"),
    )
    train_cfg = TrainConfig(
        width=cfg.width,
        k=cfg.k,
        architecture=defaults["architecture"],
        epochs=cfg.epochs,
        seed=cfg.seed,
        progress=cfg.progress,
        **cfg.train,
    )
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if cfg.cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="latentlex-states-")
        cache = Path(tmp.name)
    else:
        cache = Path(cfg.cache_dir)
    try:
        states, sample = _sample_states(backbone, ids, texts, cache, cfg)
        data = states.tokens if cfg.mode == "token" else states.dense
        logger.info("training on %d vectors of dim %d", data.shape[0], data.shape[1])
        sae, report = train_sae(
            np.asarray(data) if cfg.mode == "pooled" else data, train_cfg, sae_cfg
        )
        encoder = LatentTermEncoder(sae, backbone)
        encoder.calibrate_avgdl(states, progress=cfg.progress)  # on the sample: budget-sized
        sae.cfg.fit_sample = sample
        sae.cfg.metrics = {
            **sae.cfg.metrics,
            "train_vectors": int(data.shape[0]),
            "train_docs": int(states.n_docs),
            "seconds_total": round(time.perf_counter() - t0, 1),
        }
        logger.info(
            "fitted SAE on %d of %d documents (%d token states): FVU %.3f, L0 %.1f, "
            "dead %.1f%%, avgdl %.1f",
            states.n_docs,
            len(texts),
            int(states.meta["total_tokens"]),
            report.fvu,
            report.l0,
            report.dead_pct,
            sae.cfg.avgdl,
        )
        if out_dir is not None:
            sae.save(out_dir)
        return sae
    finally:
        if tmp is not None:
            tmp.cleanup()


def _sample_states(
    backbone: Backbone,
    ids: list[str],
    texts: list[str],
    cache: Path,
    cfg: FitConfig,
) -> tuple[TokenStates, dict[str, int | str | None]]:
    """The token states the fit trains on, and the record of how they were sampled.

    Without a budget: the whole corpus (encoded, or read from ``cache``). With one: the sampled
    documents' states, gathered from ``cache`` when it already holds the whole corpus (e.g.
    ``latentlex eval``'s token-state cache: no backbone pass), otherwise encoded there alone
    (the rest of the corpus is never run through the backbone).
    """
    budget = cfg.budget
    record: dict[str, int | str | None] = {
        "budget_tokens": "all" if budget is None else budget,
        "seed": cfg.seed,
        "corpus_docs": len(texts),
        "corpus_tokens": None,
    }

    def encode(sub_ids: list[str], sub_texts: list[str]) -> TokenStates:
        return encode_token_states(
            backbone, sub_ids, sub_texts, cache, batch_size=cfg.batch_size, progress=cfg.progress
        )

    full = cached_states(backbone, ids, texts, cache)
    if budget is None:
        states = full if full is not None else encode(ids, texts)
        record["corpus_tokens"] = int(states.meta["total_tokens"])
    elif full is not None:
        row_of = {doc_id: r for r, doc_id in enumerate(full.doc_ids)}
        rows = np.array([row_of[i] for i in ids], dtype=np.int64)
        lengths = full.lengths[rows]
        chosen = choose_documents(len(ids), budget, cfg.seed, lambda pos: lengths[pos])
        states = full if len(chosen) == len(ids) else gather_states(full, np.sort(rows[chosen]))
        record["corpus_tokens"] = int(full.meta["total_tokens"])
    else:
        chosen = choose_documents(
            len(ids), budget, cfg.seed, lambda pos: token_counts(backbone, [texts[i] for i in pos])
        )
        if len(chosen) == len(ids):
            states = encode(ids, texts)
            record["corpus_tokens"] = int(states.meta["total_tokens"])
        else:
            states = encode([ids[i] for i in chosen], [texts[i] for i in chosen])
    record["tokens"] = int(states.meta["total_tokens"])
    record["docs"] = states.n_docs
    if states.n_docs < len(ids):
        logger.info(
            "token budget %d: fitting on %d of %d documents (%d token states, seed %d)",
            budget,
            states.n_docs,
            len(ids),
            record["tokens"],
            cfg.seed,
        )
    return states, record
