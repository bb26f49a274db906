"""Fit a sparse autoencoder on a stream of token (or pooled) vectors, fast on CPU.

The data may be a NumPy memmap much larger than memory: it is read in chunks (chunk order
shuffled per epoch, rows shuffled inside a bounded buffer), never whole. A fixed held-out
subset of rows gives the final FVU, L0 and dead-latent share, written to ``sae.cfg.metrics``.

Training craft (Gao et al. 2024): unit-norm decoder atoms (gradient component parallel to each
atom removed before the step, renormalised after it), ``W_enc = W_dec`` at init, ``b_dec`` at
the data mean, AuxK loss on dead latents, AdamW with warm-up then cosine decay, gradient
clipping.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import ConfigError
from .sae import ARCHITECTURES, BatchTopKSAE, ForwardOutput, SAEConfig, SparseAutoencoder

__all__ = [
    "TrainConfig",
    "TrainReport",
    "default_lr",
    "make_optimizer",
    "train_sae",
    "train_step",
]

logger = logging.getLogger(__name__)

MAX_HELDOUT_ROWS = 65_536
"""Held-out rows are capped at this many (2 % of a 10 GB memmap would be ~260k rows)."""
MEAN_SAMPLE_ROWS = 65_536
"""Rows sampled to initialise ``b_dec`` at the data mean."""
AUXK_MAX_DEAD = 1024
"""At most this many dead latents (a fresh random subset each step) enter the AuxK loss."""


def default_lr(width: int) -> float:
    """The learning rate used when ``TrainConfig.lr`` is None: ``1e-3 * sqrt(32768 / width)``.

    The Latent Terms paper's 1e-3 at its width 32,768, scaled as 1/sqrt(width) (Gao et al.
    2024): 2e-3 at width 8192. Measured on 288k SciFact MiniLM token states (width 8192, k 16,
    batch 4096, 140 steps), held-out FVU was 0.61 at 2.8e-4 (EleutherAI/sparsify's default for
    this width, tuned for billions of tokens), 0.40 at 1.1e-3 and 0.29 at 3e-3: the corpora
    fitted here are small, so the higher rate wins.
    """
    return 1e-3 * math.sqrt(32768 / width)


@dataclass
class TrainConfig:
    """How to train. Field docs double as CLI help.

    Example:
        >>> TrainConfig(width=4096, k=16, epochs=1.0).batch_size
        4096
    """

    width: int = 8192
    """Number of latents."""
    k: int = 16
    """Active latents per row (batchtopk: per row on average)."""
    architecture: str = "topk"
    """'topk' (Latent Terms) or 'batchtopk' (CL-SR)."""
    epochs: float = 3.0
    """Passes over the training rows (fractions allowed)."""
    batch_size: int = 4096
    """Rows per optimizer step."""
    lr: float | None = None
    """AdamW learning rate; None: :func:`default_lr` of the width."""
    warmup_frac: float = 0.05
    """Share of the steps with a linear warm-up (then cosine decay to 0)."""
    auxk_coef: float = 1 / 32
    """Weight of the AuxK loss."""
    k_aux: int | None = None
    """Dead latents per row in the AuxK loss (default d_in // 2)."""
    dead_tokens: int = 10_000_000
    """A latent not fired within this many rows is dead for AuxK (capped at a quarter epoch)."""
    grad_clip: float = 1.0
    """Max global gradient norm (<= 0: no clipping)."""
    seed: int = 0
    """Seed of the init, the held-out split and the data order."""
    compute_dtype: str = "auto"
    """Dense encoder matmul: 'fp32', 'bf16' or 'auto' (bf16 where the hardware has it)."""
    heldout_frac: float = 0.02
    """Share of rows held out for the final metrics (at most 65,536 rows)."""
    buffer_rows: int = 262_144
    """Rows in the shuffle buffer (bounds memory for memmapped data)."""
    progress: bool = True
    """Show a progress bar (only on a terminal)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    matmul_backend: str = "auto"
    """CPU fp32 encoder matmul: 'torch', 'numpy' (NumPy's BLAS) or 'auto' (timed at start)."""
    implementation: str = "fast"
    """'fast' (sparse kernels, fused AdamW) or 'naive' (dense reference, for tests/benchmarks)."""

    def __post_init__(self) -> None:
        ints = ("width", "k", "batch_size", "dead_tokens", "seed", "buffer_rows")
        for name in ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ConfigError(f"{name} must be an int, got {v!r}")
        if self.width < 1 or not 0 < self.k <= self.width:
            raise ConfigError(f"need 1 <= k <= width, got k={self.k}, width={self.width}")
        trainable = sorted(name for name, cls in ARCHITECTURES.items() if cls.trainable)
        if self.architecture not in trainable:
            raise ConfigError(
                f"architecture must be one of {trainable}, got {self.architecture!r}"
                + (
                    " (inference only: loaded from other libraries, not trained by latentlex)"
                    if self.architecture in ARCHITECTURES
                    else ""
                )
            )
        if not self.epochs > 0 or not math.isfinite(self.epochs):
            raise ConfigError(f"epochs must be > 0, got {self.epochs}")
        if self.batch_size < 1 or self.buffer_rows < 1 or self.dead_tokens < 1:
            raise ConfigError("batch_size, buffer_rows and dead_tokens must be >= 1")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be > 0 or None, got {self.lr}")
        if not 0 <= self.warmup_frac < 1:
            raise ConfigError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")
        if not 0 <= self.heldout_frac < 1:
            raise ConfigError(f"heldout_frac must be in [0, 1), got {self.heldout_frac}")
        if self.auxk_coef < 0 or self.weight_decay < 0:
            raise ConfigError("auxk_coef and weight_decay must be >= 0")
        if self.k_aux is not None and (not isinstance(self.k_aux, int) or self.k_aux < 1):
            raise ConfigError(f"k_aux must be a positive int or None, got {self.k_aux!r}")
        if self.compute_dtype not in ("auto", "fp32", "bf16"):
            raise ConfigError(
                f"compute_dtype must be 'auto', 'fp32' or 'bf16', got {self.compute_dtype!r}"
            )
        if self.matmul_backend not in ("auto", "torch", "numpy"):
            raise ConfigError(
                f"matmul_backend must be 'auto', 'torch' or 'numpy', got {self.matmul_backend!r}"
            )
        if self.implementation not in ("fast", "naive"):
            raise ConfigError(
                f"implementation must be 'fast' or 'naive', got {self.implementation!r}"
            )


@dataclass
class TrainReport:
    """What a training run measured (held-out metrics, throughput, loss history)."""

    fvu: float
    l0: float
    dead_pct: float
    tokens_seen: int
    seconds: float
    tokens_per_s: float
    history: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------- data stream


class _RowStream:
    """Endless shuffled batches of the training rows of ``data`` (excluding held-out rows)."""

    def __init__(
        self,
        data: np.ndarray,
        held: np.ndarray,
        batch_size: int,
        buffer_rows: int,
        rng: np.random.Generator,
    ) -> None:
        self.data, self.batch_size, self.rng = data, batch_size, rng
        n = data.shape[0]
        self.held_mask: np.ndarray | None = None
        if held.size:
            self.held_mask = np.zeros(n, dtype=bool)
            self.held_mask[held] = True
        self.buffer_rows = max(buffer_rows, batch_size)
        self.chunk_rows = max(1, min(n, max(batch_size // 4, self.buffer_rows // 16)))
        self.n_chunks = -(-n // self.chunk_rows)

    def _read(self, c: int) -> np.ndarray:
        start = c * self.chunk_rows
        end = min(start + self.chunk_rows, self.data.shape[0])
        rows = np.asarray(self.data[start:end])
        if self.held_mask is not None:
            rows = rows[~self.held_mask[start:end]]
        return rows

    def __iter__(self) -> Iterator[np.ndarray]:
        carry = self.data[:0]
        while True:
            order = self.rng.permutation(self.n_chunks)
            pos = 0
            while pos < len(order):
                parts = [carry]
                size = len(carry)
                while size < self.buffer_rows and pos < len(order):
                    part = self._read(int(order[pos]))
                    pos += 1
                    parts.append(part)
                    size += len(part)
                buf = np.concatenate(parts)
                perm = self.rng.permutation(len(buf))
                n_full = len(buf) // self.batch_size * self.batch_size
                for i in range(0, n_full, self.batch_size):
                    yield buf[perm[i : i + self.batch_size]]
                carry = buf[perm[n_full:]]


def _heldout_rows(n: int, frac: float, rng: np.random.Generator) -> np.ndarray:
    n_held = min(round(n * frac), MAX_HELDOUT_ROWS, n - 1)
    if frac > 0 and n >= 2:
        n_held = max(n_held, 1)
    if n_held <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(rng.choice(n, size=n_held, replace=False))


def _sample_rows(
    data: np.ndarray, held: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Up to ``n`` random training rows as float32 (sorted reads: memmap friendly)."""
    total = data.shape[0]
    if total - held.size <= n:
        mask = np.ones(total, dtype=bool)
        mask[held] = False
        return np.asarray(data[np.flatnonzero(mask)], dtype=np.float32)
    picks = np.sort(rng.choice(total, size=min(total, n + held.size), replace=False))
    picks = np.setdiff1d(picks, held, assume_unique=True)[:n]
    return np.asarray(data[picks], dtype=np.float32)


# ----------------------------------------------------------------------------- compute choices


def _cpu_has_fast_bf16() -> bool:
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:
            continue
    return False


def _resolve_dtype(requested: str, device: torch.device) -> str:
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu" and _cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def _pick_backend(sae: SparseAutoencoder, batch: int, requested: str) -> str:
    """'numpy' when NumPy's BLAS makes the training step faster on this CPU, else 'torch'.

    Times a forward + backward pass with each (the BLAS and torch thread pools interact, so
    the GEMM alone would not tell), best of two, on random rows.
    """
    if requested != "auto":
        return requested
    if sae.W_enc.device.type != "cpu" or sae.compute_dtype != "fp32":
        return "torch"
    if batch * sae.cfg.width * sae.cfg.d_in < 200_000_000:
        return "torch"
    x = torch.randn(batch, sae.cfg.d_in) + sae.b_dec.detach()
    best: dict[str, float] = {}
    for _ in range(2):
        for backend in ("torch", "numpy"):
            sae.set_compute("fp32", backend)
            t0 = time.perf_counter()
            sae(x).fvu.backward()
            best[backend] = min(best.get(backend, math.inf), time.perf_counter() - t0)
            sae.zero_grad(set_to_none=True)
    choice = "numpy" if best["numpy"] < 0.95 * best["torch"] else "torch"
    logger.info(
        "training step: torch GEMM %.0f ms, numpy GEMM %.0f ms -> %s",
        best["torch"] * 1e3,
        best["numpy"] * 1e3,
        choice,
    )
    return choice


def make_optimizer(
    sae: SparseAutoencoder, lr: float, weight_decay: float = 0.0, *, naive: bool = False
) -> torch.optim.Optimizer:
    """AdamW: fused (one kernel over all parameters) unless ``naive`` (torch's default loop)."""
    params = list(sae.parameters())
    if naive:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)


def _lr_lambda(total: int, warmup: int) -> Any:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return f


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def _evaluate(sae: SparseAutoencoder, rows: torch.Tensor, batch: int) -> tuple[float, float]:
    """Held-out FVU (Σ‖x−x̂‖² / Σ‖x−mean‖²) and mean active latents per row."""
    mean = rows.mean(0)
    err = var = 0.0
    active = 0
    for chunk in rows.split(batch):
        enc = sae.encode(chunk)
        x_hat = sae.decode(enc.top_acts, enc.top_indices)
        err += float((chunk - x_hat).pow(2).sum())
        var += float((chunk - mean).pow(2).sum())
        active += int((enc.top_acts > 0).sum())
    return err / max(var, 1e-12), active / max(rows.shape[0], 1)


# ----------------------------------------------------------------------------- training


def train_step(
    sae: SparseAutoencoder,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    dead_mask: torch.Tensor | None = None,
    *,
    k_aux: int | None = None,
    auxk_coef: float = 1 / 32,
    grad_clip: float = 1.0,
    naive: bool = False,
) -> ForwardOutput:
    """One optimizer step: loss, backward, atom-parallel gradient removed, clip, step, renorm."""
    forward = sae.forward_naive if naive else sae.forward
    out = forward(x, dead_mask, k_aux=k_aux)
    (out.fvu + auxk_coef * out.auxk_loss).backward()
    sae.remove_parallel_grad()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(sae.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sae.normalize_decoder()
    return out


def _validate_data(data: np.ndarray, d_in: int | None) -> None:
    if not isinstance(data, np.ndarray) or data.ndim != 2:
        raise ConfigError(
            f"data must be a 2-D numpy array [rows, dim], got {type(data).__name__} "
            f"with shape {getattr(data, 'shape', None)}"
        )
    if data.dtype not in (np.float16, np.float32, np.float64):
        raise ConfigError(f"data must be float16/float32/float64, got {data.dtype}")
    if data.shape[0] < 2:
        raise ConfigError(f"need at least 2 rows to train, got {data.shape[0]}")
    if d_in is not None and d_in != data.shape[1]:
        raise ConfigError(f"d_in={d_in} but the data has dimension {data.shape[1]}")


def _build_sae_cfg(cfg: TrainConfig, sae_cfg: SAEConfig | None, d: int) -> SAEConfig:
    if sae_cfg is None:
        return SAEConfig(d_in=d, width=cfg.width, k=cfg.k, architecture=cfg.architecture)
    ours = {"d_in": d, "width": cfg.width, "k": cfg.k, "architecture": cfg.architecture}
    differing = {
        key: getattr(sae_cfg, key) for key, v in ours.items() if getattr(sae_cfg, key) != v
    }
    if differing:
        logger.warning(
            "sae_cfg %s replaced by the data / TrainConfig values %s",
            differing,
            {key: ours[key] for key in differing},
        )
    return dataclasses.replace(
        sae_cfg,
        d_in=d,
        width=cfg.width,
        k=cfg.k,
        architecture=cfg.architecture,
        metrics=dict(sae_cfg.metrics),
    )


def train_sae(
    data: np.ndarray,
    cfg: TrainConfig,
    sae_cfg: SAEConfig | None = None,
    *,
    d_in: int | None = None,
    device: str | None = None,
) -> tuple[SparseAutoencoder, TrainReport]:
    """Train an SAE on the rows of ``data`` and measure it on held-out rows.

    Args:
        data: [N, d] float16/float32 array, possibly an ``np.memmap`` far larger than memory.
        cfg: training settings.
        sae_cfg: template for the saved config (backbone, mode, BM25 parameters, ...); its
            ``d_in``/``width``/``k``/``architecture`` are replaced by the data's dimension and
            ``cfg``'s values.
        d_in: expected dimension (checked against the data).
        device: torch device (default: 'cuda' when available, else 'cpu').

    Returns:
        The trained SAE (in eval mode, metrics in ``sae.cfg.metrics``; batchtopk: calibrated
        ``cfg.threshold``) and a :class:`TrainReport`.

    Example:
        >>> data = np.random.default_rng(0).normal(size=(20_000, 32)).astype(np.float32)
        >>> sae, report = train_sae(data, TrainConfig(width=64, k=4, batch_size=512, epochs=1,
        ...                                           progress=False))
        >>> report.fvu < 1.0
        True
    """
    _validate_data(data, d_in)
    n_rows, d = data.shape
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    held = _heldout_rows(n_rows, cfg.heldout_frac, rng)
    n_train = n_rows - held.size
    batch = min(cfg.batch_size, n_train)
    if batch < cfg.batch_size:
        logger.warning("only %d training rows: batch size lowered to %d", n_train, batch)
    total_steps = max(1, int(cfg.epochs * n_train) // batch)
    warmup = max(1, round(cfg.warmup_frac * total_steps)) if cfg.warmup_frac > 0 else 0
    dead_window = min(cfg.dead_tokens, max(batch, n_train // 4))
    k_aux = cfg.k_aux or max(1, d // 2)
    lr = cfg.lr if cfg.lr is not None else default_lr(cfg.width)

    sae = SparseAutoencoder(_build_sae_cfg(cfg, sae_cfg, d), device=dev)
    with torch.no_grad():
        sample = _sample_rows(data, held, MEAN_SAMPLE_ROWS, rng)
        sae.b_dec.copy_(torch.from_numpy(sample.mean(0)))
    del sample
    if held.size:
        eval_rows = torch.from_numpy(np.asarray(data[held], dtype=np.float32))
    else:
        logger.warning("heldout_frac=0: metrics are measured on training rows")
        eval_rows = torch.from_numpy(_sample_rows(data, held, MAX_HELDOUT_ROWS, rng))
    eval_rows = eval_rows.to(dev)

    dtype = _resolve_dtype(cfg.compute_dtype, dev)
    sae.set_compute(dtype, "torch")
    if cfg.implementation == "fast":
        sae.set_compute(dtype, _pick_backend(sae, batch, cfg.matmul_backend))
    optimizer = make_optimizer(sae, lr, cfg.weight_decay, naive=cfg.implementation == "naive")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total_steps, warmup))
    logger.info(
        "training %s SAE d=%d width=%d k=%d on %d rows (%d held out): %d steps of %d, lr %.2e, "
        "%s %s on %s",
        sae.cfg.architecture,
        d,
        cfg.width,
        cfg.k,
        n_train,
        held.size,
        total_steps,
        batch,
        lr,
        cfg.implementation,
        f"{sae.compute_dtype}/{sae.matmul_backend}",
        dev,
    )

    since_fired = torch.zeros(cfg.width, dtype=torch.int64, device=dev)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    history: list[dict[str, Any]] = []
    log_every = max(1, total_steps // 100)
    fvu_ema = math.nan
    tokens = 0
    sae.train()
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total_steps,
        desc="SAE",
        unit="step",
        disable=not cfg.progress or not sys.stderr.isatty(),
    )
    stream = iter(_RowStream(data, held, batch, cfg.buffer_rows, rng))
    t_start = time.perf_counter()
    try:
        for step in range(total_steps):
            if isinstance(sae, BatchTopKSAE) and step == total_steps // 2:
                sae.reset_threshold_stats()
                sae.track_threshold = True
            x = torch.from_numpy(next(stream)).to(dev, torch.float32, non_blocking=True)
            dead = since_fired >= dead_window
            n_dead = int(dead.sum())
            if n_dead > AUXK_MAX_DEAD:
                ids = dead.nonzero().squeeze(1)
                pick = ids[torch.randperm(ids.numel(), generator=gen, device=dev)[:AUXK_MAX_DEAD]]
                dead = torch.zeros_like(dead)
                dead[pick] = True
            out = train_step(
                sae,
                optimizer,
                x,
                dead if n_dead else None,
                k_aux=k_aux,
                auxk_coef=cfg.auxk_coef,
                grad_clip=cfg.grad_clip,
                naive=cfg.implementation == "naive",
            )
            scheduler.step()
            with torch.no_grad():
                fired = out.top_indices[out.top_acts.detach() > 0]
                since_fired += x.shape[0]
                since_fired[fired] = 0
            tokens += x.shape[0]
            fvu = float(out.fvu.detach())
            fvu_ema = fvu if math.isnan(fvu_ema) else 0.9 * fvu_ema + 0.1 * fvu
            if step % log_every == 0 or step == total_steps - 1:
                elapsed = time.perf_counter() - t_start
                history.append(
                    {
                        "step": step + 1,
                        "tokens": tokens,
                        "fvu": fvu_ema,
                        "auxk": float(out.auxk_loss.detach()),
                        "lr": scheduler.get_last_lr()[0],
                        "dead_pct": 100.0 * n_dead / cfg.width,
                        "tokens_per_s": tokens / max(elapsed, 1e-9),
                    }
                )
                bar.set_postfix(fvu=f"{fvu_ema:.3f}", tok_s=f"{tokens / max(elapsed, 1e-9):,.0f}")
            bar.update(1)
    finally:
        bar.close()
    seconds = time.perf_counter() - t_start

    if isinstance(sae, BatchTopKSAE):
        sae.track_threshold = False
        sae.cfg.threshold = sae.threshold_estimate()
    sae.set_compute()  # frees the training workspace
    sae.eval()
    fvu, l0 = _evaluate(sae, eval_rows, batch)
    dead_pct = 100.0 * float((since_fired >= dead_window).float().mean())
    report = TrainReport(
        fvu=fvu,
        l0=l0,
        dead_pct=dead_pct,
        tokens_seen=tokens,
        seconds=seconds,
        tokens_per_s=tokens / max(seconds, 1e-9),
        history=history,
    )
    sae.cfg.metrics.update(
        {
            "fvu": fvu,
            "l0": l0,
            "dead_pct": dead_pct,
            "tokens_seen": float(tokens),
            "train_seconds": seconds,
            "tokens_per_s": report.tokens_per_s,
            "epochs": tokens / n_train,
            "lr": lr,
            "heldout_rows": float(eval_rows.shape[0]),
        }
    )
    logger.info(
        "SAE trained: held-out FVU %.4f, L0 %.1f, dead %.1f%%, %.0f tokens/s",
        fvu,
        l0,
        dead_pct,
        report.tokens_per_s,
    )
    return sae, report
