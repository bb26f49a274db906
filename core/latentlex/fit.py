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

__all__ = ["FitConfig", "fit_on_states", "fit_sae"]

_MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Latent Terms (Clavié et al. 2026) architecture; BM25 k1/b: Robertson's 1.2/0.75, which beat the
    # paper's 8/0.7 on SciFact's train split (0.713 vs 0.696 nDCG@10) and on LIMIT-small
    # (benchmarks/research_bm25_params.py, BENCHMARKS.md).
    # Epochs: passes over the fit's sample. A 250k-token sample trained for 6 epochs matches every
    # token for 3 (BENCHMARKS.md, "The fit's token budget": chosen on SciFact train / NFCorpus dev).
    "token": {"architecture": "topk", "bm25_k1": 1.2, "bm25_b": 0.75, "epochs": 6.0},
    # CL-SR (Park et al. 2025) defaults.
    "pooled": {
        "architecture": "batchtopk",
        "bm25_k1": 0.6,
        "bm25_b": 2.0,
        "query_k2": 1.5,
        "doc_max_terms": 24,
        "epochs": 3.0,
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
    epochs: float | None = None
    """Passes over the training sample (None: 6 in token mode, over the token budget's sample;
    3 in pooled mode)."""
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
        if self.epochs is None:
            self.epochs = float(_MODE_DEFAULTS[self.mode]["epochs"])
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

    In token mode the SAE trains on at most ``config.max_tokens`` token states by default: whole
    documents, drawn in a random order seeded by ``config.seed`` (:mod:`latentlex.sampling`).
    When ``config.cache_dir`` already holds the whole corpus' token states (``latentlex eval``'s
    cache), the sample is read from it (no backbone pass); otherwise only the sampled documents
    are run through the backbone. ``avgdl`` is measured on the sample; the budget and the sample
    are recorded in the SAE's :attr:`~latentlex.sae.SAEConfig.fit_sample`.

    Args:
        corpus: a corpus path (BEIR ``corpus.jsonl``, ``.txt``, or a folder), a list of texts, or
            a list of :class:`~latentlex.corpus.Document` (their ids key the token-state cache).
        out_dir: where to save the SAE folder (``cfg.json`` + ``sae.safetensors``); None: don't save.
        config: a :class:`FitConfig`; keyword ``overrides`` replace its fields.
        backbone: an already loaded :class:`Backbone` (else built from ``config.model``).

    Example:
        >>> sae = fit_sae("data/corpus.jsonl", "my-sae", width=4096, k=16)  # doctest: +SKIP
    """
    cfg = _config(config, overrides)
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
    full = cached_states(backbone, ids, texts, cfg.cache_dir)
    if full is not None:
        row_of = {doc_id: r for r, doc_id in enumerate(full.doc_ids)}
        rows = np.array([row_of[i] for i in ids], dtype=np.int64)
        states, sample = _sample_cached(full, rows, cfg)
        return _train(states, sample, backbone, cfg, out_dir, t0)
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if cfg.cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="latentlex-states-")
        cache = Path(tmp.name)
    else:
        cache = Path(cfg.cache_dir)
    try:
        states, sample = _sample_texts(backbone, ids, texts, cache, cfg)
        return _train(states, sample, backbone, cfg, out_dir, t0)
    finally:
        if tmp is not None:
            tmp.cleanup()


def fit_on_states(
    states: TokenStates,
    backbone: Backbone,
    config: FitConfig | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> SparseAutoencoder:
    """Train an SAE on a corpus' token states already encoded (no backbone pass).

    As :func:`fit_sae` does with a cache of the whole corpus: the documents are sampled from
    ``states`` by the token budget (in stored order, seeded by ``config.seed``), the SAE trains
    on the sample and ``avgdl`` is measured on it.

    Args:
        states: the whole corpus' token states (:func:`~latentlex.states.encode_token_states`).
        backbone: the backbone that read them (its name, fingerprint and layers go in the SAE).
        config: a :class:`FitConfig` (its ``cache_dir`` and ``batch_size`` are unused); keyword
            ``overrides`` replace its fields.
        out_dir: where to save the SAE folder; None: don't save.
    """
    cfg = _config(config, overrides)
    t0 = time.perf_counter()
    if states.n_docs == 0:
        raise ConfigError("the token states hold no documents")
    sample_states, sample = _sample_cached(states, np.arange(states.n_docs), cfg)
    return _train(sample_states, sample, backbone, cfg, out_dir, t0)


def _config(config: FitConfig | None, overrides: dict[str, Any]) -> FitConfig:
    cfg = config or FitConfig()
    return FitConfig(**{**cfg.__dict__, **overrides}) if overrides else cfg


def _train(
    states: TokenStates,
    sample: dict[str, int | str | None],
    backbone: Backbone,
    cfg: FitConfig,
    out_dir: str | os.PathLike[str] | None,
    t0: float,
) -> SparseAutoencoder:
    """Train on the sampled token states, measure avgdl on them, record the sample, save."""
    from .sae import SAEConfig
    from .terms import LatentTermEncoder
    from .training import TrainConfig, train_sae

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
        epochs=cast(float, cfg.epochs),
        seed=cfg.seed,
        progress=cfg.progress,
        **cfg.train,
    )
    data = states.tokens if cfg.mode == "token" else states.dense
    logger.info("training on %d vectors of dim %d", data.shape[0], data.shape[1])
    sae, report = train_sae(np.asarray(data) if cfg.mode == "pooled" else data, train_cfg, sae_cfg)
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
        "fitted SAE on %d of %s documents (%d token states): FVU %.3f, L0 %.1f, dead %.1f%%, "
        "avgdl %.1f",
        states.n_docs,
        sample["corpus_docs"],
        int(states.meta["total_tokens"]),
        report.fvu,
        report.l0,
        report.dead_pct,
        sae.cfg.avgdl,
    )
    if out_dir is not None:
        sae.save(out_dir)
    return sae


def _record(cfg: FitConfig, corpus_docs: int) -> dict[str, int | str | None]:
    budget = cfg.budget
    return {
        "budget_tokens": "all" if budget is None else budget,
        "seed": cfg.seed,
        "corpus_docs": corpus_docs,
        "corpus_tokens": None,
    }


def _finish(
    states: TokenStates, record: dict[str, int | str | None], cfg: FitConfig
) -> tuple[TokenStates, dict[str, int | str | None]]:
    record["tokens"] = int(states.meta["total_tokens"])
    record["docs"] = states.n_docs
    if cfg.budget is not None and states.n_docs < cast(int, record["corpus_docs"]):
        logger.info(
            "token budget %d: fitting on %d of %s documents (%d token states, seed %d)",
            cfg.budget,
            states.n_docs,
            record["corpus_docs"],
            record["tokens"],
            cfg.seed,
        )
    return states, record


def _sample_cached(
    full: TokenStates, rows: np.ndarray, cfg: FitConfig
) -> tuple[TokenStates, dict[str, int | str | None]]:
    """The sample drawn from a whole corpus' token states; ``rows``: the stored row of each
    corpus document, in corpus order (the order the seeded permutation runs over)."""
    record = _record(cfg, len(rows))
    record["corpus_tokens"] = int(full.meta["total_tokens"])
    if cfg.budget is None:
        return _finish(full, record, cfg)
    lengths = full.lengths[rows]
    chosen = choose_documents(len(rows), cfg.budget, cfg.seed, lambda pos: lengths[pos])
    states = full if len(chosen) == len(rows) else gather_states(full, np.sort(rows[chosen]))
    return _finish(states, record, cfg)


def _sample_texts(
    backbone: Backbone,
    ids: list[str],
    texts: list[str],
    cache: Path,
    cfg: FitConfig,
) -> tuple[TokenStates, dict[str, int | str | None]]:
    """The sample of a corpus not encoded yet: its documents' tokens are counted with the
    backbone's tokenizer along the seeded order, and only the sampled ones are encoded (into
    ``cache``); without a budget, the whole corpus is."""
    record = _record(cfg, len(ids))

    def encode(sub_ids: list[str], sub_texts: list[str]) -> TokenStates:
        return encode_token_states(
            backbone, sub_ids, sub_texts, cache, batch_size=cfg.batch_size, progress=cfg.progress
        )

    if cfg.budget is not None:
        chosen = choose_documents(
            len(ids),
            cfg.budget,
            cfg.seed,
            lambda pos: token_counts(backbone, [texts[i] for i in pos]),
        )
        if len(chosen) < len(ids):
            return _finish(
                encode([ids[i] for i in chosen], [texts[i] for i in chosen]), record, cfg
            )
    states = encode(ids, texts)
    record["corpus_tokens"] = int(states.meta["total_tokens"])
    return _finish(states, record, cfg)
