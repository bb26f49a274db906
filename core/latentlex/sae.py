"""Sparse autoencoders over backbone states: TopK (Latent Terms), BatchTopK (CL-SR), JumpReLU.

A saved SAE is a folder with ``cfg.json`` (:class:`SAEConfig`) and ``sae.safetensors``
(``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``, plus ``threshold`` for JumpReLU).
``cfg["architecture"]`` picks the class through :data:`ARCHITECTURES`, so a new variant plugs in
with :func:`register`. This module is the model only: SAEs of other libraries are converted by
:mod:`latentlex.converters` / :mod:`latentlex.loading`, and the Hub is :mod:`latentlex.hub`.

The training forward never builds a dense ``[batch, width]`` activation matrix for autograd:
the encoder pre-activations are computed once without grad (the one dense matmul, optionally
in bf16 or through NumPy's BLAS), the top-k are selected from them, and two small autograd
functions carry the gradient through the ``k`` active latents per row only
(:mod:`latentlex.kernels`). :meth:`SparseAutoencoder.forward_naive` is
the plain dense reference they are tested against.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._validate import canonical_layer
from .errors import BackboneMismatchError, ConfigError, SAEFormatError
from .kernels import GatherDecode, GatherEncode, Pattern, topk_rows
from .labelfile import read_label_map
from .safeio import check_safetensors, read_json_capped, resolve_inside

__all__ = [
    "ARCHITECTURES",
    "FORMAT_VERSION",
    "INPUT_NORMS",
    "LOAD_DTYPES",
    "MAX_D_IN",
    "MAX_WIDTH",
    "SAE_CONFIG_NAME",
    "SAE_WEIGHTS_NAME",
    "BatchTopKSAE",
    "EncoderOutput",
    "ForwardOutput",
    "JumpReLUSAE",
    "SAEConfig",
    "SparseAutoencoder",
    "cast_weights",
    "load_dtype",
    "register",
    "topk_rows",
]

logger = logging.getLogger(__name__)

SAE_CONFIG_NAME = "cfg.json"
SAE_WEIGHTS_NAME = "sae.safetensors"
FORMAT_VERSION = 1
MAX_WIDTH = 2**20
MAX_D_IN = 16384
MAX_CONFIG_BYTES = 1 << 20
MODES = ("token", "pooled")
WEIGHT_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")
COMPUTE_DTYPES = ("fp32", "bf16")
INPUT_NORMS = ("none", "layer_norm", "constant_norm_rescale")
"""Per-input normalisations applied before encoding (SAELens ``normalize_activations``)."""
LOAD_DTYPES = ("float32", "file")
"""``dtype`` choices on load: compute in fp32 (default), or in the weights file's own dtype."""
_LN_EPS = 1e-5  # SAELens' layer_norm epsilon
MATMUL_BACKENDS = ("torch", "numpy")
_ENCODE_CHUNK = 4096  # rows per dense [rows, width] pre-activation block at inference


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class SAEConfig:
    """Everything needed to rebuild and use an SAE; saved as ``cfg.json``.

    Example:
        >>> cfg = SAEConfig(d_in=384, width=4096, k=16)
        >>> SAEConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    d_in: int
    """Input dimension (the backbone's hidden size)."""
    width: int = 8192
    """Number of latents."""
    k: int = 16
    """Active latents per row (topk) or per row on average over a batch (batchtopk)."""
    architecture: str = "topk"
    """Registry key: 'topk' (Latent Terms), 'batchtopk' (CL-SR) or 'jumprelu' (per-latent
    thresholds, inference only: SAELens JumpReLU and BatchTopK saves, latentsae JumpReLU)."""
    mode: str = "token"
    """'token' (one row per token state) or 'pooled' (one row per text)."""
    threshold: float | None = None
    """batchtopk: inference threshold θ (calibrated in training); activations ``>= θ`` are kept,
    as in latentsae. (jumprelu keeps one threshold per latent, in the weights file.)"""
    max_active: int | None = None
    """batchtopk: cap on active latents per row (default 4*k). jumprelu: optional cap (None:
    every latent over its threshold is kept, as in SAELens)."""
    input_norm: str = "none"
    """Normalisation of each input row before encoding: 'none', 'layer_norm' (subtract the
    row's mean, divide by its std + 1e-5) or 'constant_norm_rescale' (scale the row to norm
    sqrt(d_in)), as SAELens ``normalize_activations``; :meth:`SparseAutoencoder.reconstruct`
    undoes it."""
    backbone: str | None = None
    """Backbone name or path the SAE was trained on."""
    backbone_fingerprint: str | None = None
    """Fingerprint of that backbone's weights."""
    backbone_dim: int | None = None
    """That backbone's output dimension."""
    keep_special_tokens: bool = False
    """Whether [CLS]/[SEP]-like token states were kept."""
    layer: int | list[int | None] | None = None
    """Backbone layer the token states came from (None: the final hidden state), or several
    layers read together (their token states stacked, see :class:`~latentlex.backbone.Backbone`)."""
    max_seq_length: int | None = None
    """Maximum tokens per text used when training."""
    bm25_k1: float = 1.2
    """BM25 k1 of the document-side saturation."""
    bm25_b: float = 0.75
    """BM25 b of the document-side length normalisation."""
    query_k2: float | None = None
    """Pooled mode query saturation (CL-SR: 1.5)."""
    doc_max_terms: int | None = None
    """Cap on document terms (CL-SR: 24 or 65); None keeps all."""
    query_k: int | None = None
    """Token mode: latents kept per *query* token (the top ``query_k`` of the ``k`` active ones);
    None keeps all ``k``. Fewer query terms make the latent leg faster and, on LIMIT-small,
    better (8 of 16: recall@2 0.525 vs 0.490), at a small cost on SciFact train (BENCHMARKS.md)."""
    avgdl: float | None = None
    """Calibrated mean document length (latent-term mass)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Held-out fvu, l0, dead_pct, ... written after training."""
    fit_sample: dict[str, int | str | None] | None = None
    """What :func:`~latentlex.fit.fit_sae` trained on: ``budget_tokens`` (the token budget, or
    ``"all"``), ``seed``, ``tokens`` and ``docs`` (the sample: whole documents in a seeded random
    order), ``corpus_docs`` (and ``corpus_tokens`` when counted); ``avgdl`` was measured on the
    sample. None: not recorded (converted SAEs, older fits)."""
    format_version: int = FORMAT_VERSION
    """Version of this file format."""

    def __post_init__(self) -> None:
        for name in ("d_in", "width", "k", "format_version"):
            if not _is_int(getattr(self, name)):
                raise ConfigError(f"{name} must be an int, got {getattr(self, name)!r}")
        if not 0 < self.d_in <= MAX_D_IN:
            raise ConfigError(f"d_in must be in [1, {MAX_D_IN}], got {self.d_in}")
        if not 0 < self.width <= MAX_WIDTH:
            raise ConfigError(f"width must be in [1, {MAX_WIDTH}], got {self.width}")
        if not 0 < self.k <= self.width:
            raise ConfigError(f"k must be in [1, width={self.width}], got {self.k}")
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(
                f"architecture must be one of {sorted(ARCHITECTURES)}, got {self.architecture!r}"
            )
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.input_norm not in INPUT_NORMS:
            raise ConfigError(
                f"input_norm must be one of {list(INPUT_NORMS)}, got {self.input_norm!r}"
            )
        if self.format_version < 1 or self.format_version > FORMAT_VERSION:
            raise ConfigError(
                f"format_version {self.format_version} is not supported (this latentlex reads "
                f"1..{FORMAT_VERSION}); upgrade latentlex to load this SAE"
            )
        for name in ("max_active", "backbone_dim", "max_seq_length", "doc_max_terms", "query_k"):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or v < 1):
                raise ConfigError(f"{name} must be a positive int or None, got {v!r}")
        if self.max_active is not None and self.max_active > self.width:
            raise ConfigError(f"max_active must be <= width={self.width}, got {self.max_active}")
        for name in ("threshold", "query_k2", "avgdl"):
            v = getattr(self, name)
            if v is not None and (not _is_num(v) or v < 0):
                raise ConfigError(f"{name} must be a finite number >= 0 or None, got {v!r}")
        for name in ("bm25_k1", "bm25_b"):
            v = getattr(self, name)
            if not _is_num(v) or v < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
        for name in ("backbone", "backbone_fingerprint"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise ConfigError(f"{name} must be a string or None, got {v!r}")
        if not isinstance(self.keep_special_tokens, bool):
            raise ConfigError(
                f"keep_special_tokens must be a bool, got {self.keep_special_tokens!r}"
            )
        self.layer = canonical_layer(self.layer)
        if not isinstance(self.metrics, dict) or not all(
            isinstance(key, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for key, v in self.metrics.items()
        ):
            raise ConfigError("metrics must be a dict of str -> number")
        if self.fit_sample is not None and not (
            isinstance(self.fit_sample, dict)
            and all(
                isinstance(key, str) and (v is None or isinstance(v, str) or _is_int(v))
                for key, v in self.fit_sample.items()
            )
        ):
            raise ConfigError("fit_sample must be a dict of str -> int, str or None")

    @property
    def effective_max_active(self) -> int:
        """The per-row cap used by batchtopk (``max_active`` or ``min(4*k, width)``)."""
        return self.max_active if self.max_active is not None else min(4 * self.k, self.width)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        d = asdict(self)
        d["metrics"] = {key: float(v) for key, v in self.metrics.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SAEConfig:
        """Build from a dict, dropping (and logging) unknown keys.

        Raises:
            ConfigError: not a dict, a missing or invalid field, or a ``format_version`` newer
                than this latentlex reads.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"an SAE config must be a JSON object, got {type(d).__name__}")
        version = d.get("format_version", FORMAT_VERSION)
        if _is_int(version) and version > FORMAT_VERSION:
            raise ConfigError(
                f"SAE format_version {version} is newer than this latentlex supports "
                f"({FORMAT_VERSION}); upgrade latentlex"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            logger.warning("ignoring unknown SAE config keys: %s", ", ".join(map(str, unknown)))
        if "d_in" not in d:
            raise ConfigError("SAE config lacks the required field 'd_in'")
        kwargs = {key: v for key, v in d.items() if key in known}
        if isinstance(kwargs.get("metrics"), dict):
            kwargs["metrics"] = dict(kwargs["metrics"])
        return cls(**kwargs)


class EncoderOutput(NamedTuple):
    """Active latents per row, sorted by decreasing activation."""

    top_acts: Tensor
    """[N, m] float32, >= 0; zero entries are padding (batchtopk inference)."""
    top_indices: Tensor
    """[N, m] int64 latent ids."""


class ForwardOutput(NamedTuple):
    """What the training forward returns."""

    x_hat: Tensor
    """[B, d] reconstruction."""
    top_acts: Tensor
    """[B, m] activations of the selected latents (differentiable)."""
    top_indices: Tensor
    """[B, m] their latent ids."""
    fvu: Tensor
    """Fraction of variance unexplained on this batch (the main loss)."""
    auxk_loss: Tensor
    """AuxK loss (dead latents predicting the residual), already scaled; 0 without dead latents."""


# ----------------------------------------------------------------------------- the model

ARCHITECTURES: dict[str, type[SparseAutoencoder]] = {}
"""Registry: ``cfg.architecture`` -> class."""

_T = TypeVar("_T", bound="type[SparseAutoencoder]")


def register(name: str) -> Callable[[_T], _T]:
    """Class decorator adding an SAE class to :data:`ARCHITECTURES` under ``name``."""

    def deco(cls: _T) -> _T:
        ARCHITECTURES[name] = cls
        cls.architecture_name = name
        return cls

    return deco


def _fail(path: Path, why: str) -> SAEFormatError:
    return SAEFormatError(f"{path}: {why}")


@register("topk")
class SparseAutoencoder(nn.Module):
    """TopK sparse autoencoder (Gao et al. 2024).

    ``z = TopK_k(ReLU(W_enc (x - b_dec) + b_enc))``, ``x_hat = W_dec^T z + b_dec`` with
    ``W_dec`` stored ``[width, d_in]`` (rows are unit-norm atoms).

    ``SparseAutoencoder(cfg)`` returns the class registered for ``cfg.architecture`` (so a
    batchtopk config gives a :class:`BatchTopKSAE`).

    Example:
        >>> sae = SparseAutoencoder(SAEConfig(d_in=8, width=32, k=4))
        >>> out = sae.encode(torch.randn(3, 8))
        >>> tuple(out.top_indices.shape)
        (3, 4)
    """

    architecture_name = "topk"
    trainable: bool = True
    """Whether :meth:`forward` can train this architecture (JumpReLU cannot)."""
    cfg: SAEConfig

    def __new__(cls, cfg: SAEConfig | None = None, *args: Any, **kwargs: Any) -> SparseAutoencoder:
        if cfg is None:  # copy / deepcopy
            return super().__new__(cls)
        arch = getattr(cfg, "architecture", "")
        target = ARCHITECTURES.get(arch, cls)
        if cls is SparseAutoencoder:
            cls = target
        elif cls.architecture_name != arch:
            raise ConfigError(
                f"{cls.__name__} cannot run architecture {cfg.architecture!r}; "
                f"use {target.__name__} or SparseAutoencoder(cfg)"
            )
        return super().__new__(cls)

    def __init__(
        self,
        cfg: SAEConfig,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(cfg, SAEConfig):
            raise ConfigError(f"cfg must be an SAEConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        kw: dict[str, Any] = {"device": device, "dtype": dtype or torch.float32}
        w_dec = torch.randn(cfg.width, cfg.d_in, **kw)
        w_dec /= w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.W_enc = nn.Parameter(w_dec.clone())
        self.b_enc = nn.Parameter(torch.zeros(cfg.width, **kw))
        self.W_dec = nn.Parameter(w_dec)
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, **kw))
        self.compute_dtype = "fp32"
        self.matmul_backend = "torch"
        self._workspace: dict[str, Tensor] = {}
        self.labels: dict[int, str] = {}

    @classmethod
    def weight_shapes(cls, cfg: SAEConfig) -> dict[str, tuple[int, ...]]:
        """The tensors of ``sae.safetensors`` and their shapes for ``cfg``."""
        return {
            "W_enc": (cfg.width, cfg.d_in),
            "b_enc": (cfg.width,),
            "W_dec": (cfg.width, cfg.d_in),
            "b_dec": (cfg.d_in,),
        }

    # -- configuration of the training forward

    def set_compute(self, dtype: str = "fp32", backend: str = "torch") -> None:
        """How the training forward computes the dense pre-activation matmul.

        Args:
            dtype: 'fp32', or 'bf16' (bf16 inputs, fp32 accumulation; master weights stay fp32).
            backend: 'torch', or 'numpy' (NumPy's BLAS, often the faster fp32 GEMM on AMD
                CPUs); CPU fp32 only, ignored otherwise.
        """
        if dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"compute dtype must be one of {list(COMPUTE_DTYPES)}, got {dtype!r}")
        if backend not in MATMUL_BACKENDS:
            raise ConfigError(f"backend must be one of {list(MATMUL_BACKENDS)}, got {backend!r}")
        self.compute_dtype, self.matmul_backend = dtype, backend
        self._workspace.clear()

    def _buffer(
        self, name: str, shape: tuple[int, ...], like: Tensor, fill: float | None = None
    ) -> Tensor:
        buf = self._workspace.get(name)
        if buf is None or buf.shape != shape or buf.device != like.device:
            buf = torch.empty(shape, dtype=torch.float32, device=like.device)
            if fill is not None:
                buf.fill_(fill)
            self._workspace[name] = buf
        return buf

    def _preacts(self, sae_in: Tensor, *, reuse: bool = False) -> Tensor:
        """Dense ``sae_in @ W_enc^T + b_enc`` in fp32, ``[rows, width]``, without grad."""
        w, b = self.W_enc.detach(), self.b_enc.detach()
        shape = (sae_in.shape[0], self.cfg.width)
        out = self._buffer("pre", shape, sae_in) if reuse else None
        if self.compute_dtype == "bf16":
            pre = torch.mm(sae_in.to(torch.bfloat16), w.to(torch.bfloat16).t())
            if out is None:
                return pre.float().add_(b)
            return torch.add(pre, b, out=out)  # bf16 + fp32 -> fp32 in one pass
        if (
            reuse
            and out is not None
            and self.matmul_backend == "numpy"
            and sae_in.device.type == "cpu"
            and w.dtype == torch.float32
        ):
            d = self.cfg.d_in
            xa = self._buffer("x_aug", (shape[0], d + 1), sae_in, fill=1.0)  # last column: 1
            wa = self._buffer("w_aug", (shape[1], d + 1), sae_in)
            xa[:, :d].copy_(sae_in)
            wa[:, :d].copy_(w)
            wa[:, d].copy_(b)
            np.matmul(xa.numpy(), wa.numpy().T, out=out.numpy())
            return out
        sae_in = sae_in.to(w.dtype)
        if out is None:
            return torch.addmm(b, sae_in, w.t()).float()
        return torch.addmm(b, sae_in, w.t(), out=out)

    # -- selection rules (overridden by other architectures)

    def _select_train(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """Selected (pre-activation values, latent ids) of a training batch; 0 marks padding."""
        return topk_rows(pre, self.cfg.k)

    def _select_naive(self, acts: Tensor) -> tuple[Tensor, Tensor]:
        """Same rule on dense post-ReLU activations, differentiably (reference path)."""
        v, i = acts.topk(self.cfg.k, dim=1, sorted=False)
        return v, i

    def _select_infer(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        v, i = topk_rows(pre, self.cfg.k)
        return v.clamp_min_(0), i

    # -- public API

    def _normalize_input(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """``x`` normalised per row as ``cfg.input_norm`` says, and the per-row statistics.

        SAELens' runtime normalisations, step for step: ``constant_norm_rescale`` multiplies a
        row by ``coeff = sqrt(d_in) / ||x||`` (statistics ``(coeff,)``, undone by dividing by
        it); ``layer_norm`` subtracts the row's mean and divides by its (unbiased) std + 1e-5
        (statistics ``(std, mean)``, undone by ``* std + mean``, without the epsilon, as SAELens
        does).
        """
        norm = self.cfg.input_norm
        if norm == "constant_norm_rescale":
            coeff = (self.cfg.d_in**0.5) / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            return x * coeff, (coeff,)
        if norm == "layer_norm":
            mu = x.mean(dim=-1, keepdim=True)
            centred = x - mu
            std = centred.std(dim=-1, keepdim=True)
            return centred / (std + _LN_EPS), (std, mu)
        return x, ()

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 2:
            raise ValueError(
                f"encode expects a 2-D [N, {self.cfg.d_in}] tensor, got {tuple(x.shape)}"
            )
        if x.shape[1] != self.cfg.d_in:
            raise BackboneMismatchError(
                f"input has dimension {x.shape[1]} but this SAE expects {self.cfg.d_in} "
                f"(trained on backbone {self.cfg.backbone!r}); use the SAE trained for this "
                "backbone"
            )

    @torch.no_grad()
    def encode(self, x: Tensor) -> EncoderOutput:
        """Active latents of each row of ``x`` ([N, d_in], any float dtype), in fp32.

        The arithmetic runs in the weights' dtype (fp32 unless loaded with ``dtype="file"``);
        rows are processed in blocks, so memory stays bounded for any ``N``; entries of a row
        are sorted by decreasing activation, zero entries are padding.
        """
        self._check_input(x)
        w = self.W_enc
        x = x.to(device=w.device, dtype=w.dtype)
        vals: list[Tensor] = []
        idxs: list[Tensor] = []
        for chunk in x.split(_ENCODE_CHUNK):
            chunk, _ = self._normalize_input(chunk)
            pre = torch.addmm(self.b_enc, chunk - self.b_dec, w.t())
            v, i = self._select_infer(pre)
            v, order = v.float().sort(dim=1, descending=True)
            vals.append(v)
            idxs.append(i.gather(1, order))
        if not vals:
            m = self._select_infer(w.new_zeros(1, self.cfg.width))[0].shape[1]
            empty = torch.zeros(0, m, dtype=torch.float32, device=w.device)
            return EncoderOutput(empty, torch.zeros(0, m, dtype=torch.int64, device=w.device))
        m = max(v.shape[1] for v in vals)  # jumprelu: the active count varies by block
        if any(v.shape[1] != m for v in vals):
            vals = [F.pad(v, (0, m - v.shape[1])) for v in vals]
            idxs = [F.pad(i, (0, m - i.shape[1])) for i in idxs]
        return EncoderOutput(torch.cat(vals), torch.cat(idxs))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """``x_hat`` of each row of ``x``, in the input's own space (``input_norm`` undone).

        Same as ``decode(*encode(x))`` when ``cfg.input_norm`` is 'none'.
        """
        out = self.encode(x)
        y = self.decode(out.top_acts, out.top_indices)
        if self.cfg.input_norm == "none":
            return y
        _, stats = self._normalize_input(x.to(device=y.device, dtype=y.dtype))
        if self.cfg.input_norm == "constant_norm_rescale":
            return y / stats[0]
        return y * stats[0] + stats[1]

    def decode(self, top_acts: Tensor, top_indices: Tensor) -> Tensor:
        """``x_hat`` from active latents, gathering only their atoms (never ``[N, width]``)."""
        w = self.W_dec
        y = F.embedding_bag(
            top_indices.to(device=w.device, dtype=torch.int64),
            w,
            per_sample_weights=top_acts.to(device=w.device, dtype=w.dtype),
            mode="sum",
        )
        return y + self.b_dec

    def forward(
        self, x: Tensor, dead_mask: Tensor | None = None, *, k_aux: int | None = None
    ) -> ForwardOutput:
        """Training forward: reconstruction, FVU and AuxK loss, through the sparse kernels.

        Args:
            x: [B, d_in] batch.
            dead_mask: [width] bool, latents counted as dead for the AuxK loss.
            k_aux: dead latents per row in the AuxK loss (default ``d_in // 2``).
        """
        self._check_trainable()
        x = x.to(self.W_enc.dtype)
        sae_in = x - self.b_dec
        with torch.no_grad():
            pre = self._preacts(sae_in.detach(), reuse=True)
            top_pre, top_idx = self._select_train(pre)
            top_idx, order = top_idx.sort(dim=1)  # row-sorted: a valid CSR pattern
            top_pre = top_pre.gather(1, order)
            pattern = Pattern(top_idx, self.cfg.width)
        acts = GatherEncode.apply(sae_in, self.W_enc, self.b_enc, top_pre, top_idx, pattern)
        x_hat = GatherDecode.apply(acts, top_idx, self.W_dec, pattern) + self.b_dec
        return self._losses(x, sae_in, x_hat, acts, top_idx, dead_mask, k_aux)

    def forward_naive(
        self, x: Tensor, dead_mask: Tensor | None = None, *, k_aux: int | None = None
    ) -> ForwardOutput:
        """The dense reference of :meth:`forward`: dense [B, width] codes and plain autograd."""
        self._check_trainable()
        x = x.to(self.W_enc.dtype)
        sae_in = x - self.b_dec
        dense = F.relu(sae_in @ self.W_enc.t() + self.b_enc)
        acts, top_idx = self._select_naive(dense)
        z = torch.zeros_like(dense).scatter(1, top_idx, acts)
        x_hat = z @ self.W_dec + self.b_dec
        return self._losses(x, sae_in, x_hat, acts, top_idx, dead_mask, k_aux)

    def _check_trainable(self) -> None:
        if not self.trainable:
            raise ConfigError(
                f"{self.architecture_name} SAEs are inference-only in latentlex (loaded from "
                "other libraries); train a topk or batchtopk SAE"
            )
        if self.cfg.input_norm != "none":
            raise ConfigError(
                f"this SAE normalises its inputs ({self.cfg.input_norm}); latentlex trains on "
                "raw states only: train a new SAE with input_norm='none'"
            )

    def _losses(
        self,
        x: Tensor,
        sae_in: Tensor,
        x_hat: Tensor,
        acts: Tensor,
        top_idx: Tensor,
        dead_mask: Tensor | None,
        k_aux: int | None,
    ) -> ForwardOutput:
        with torch.no_grad():
            total_var = torch.linalg.vector_norm(x - x.mean(0)).square().clamp_min(1e-12)
        fvu = F.mse_loss(x_hat, x, reduction="sum") / total_var
        auxk = x_hat.new_zeros(())
        if dead_mask is not None:
            dead = dead_mask.nonzero().squeeze(1)
            if dead.numel() > 0:
                k_aux = k_aux or max(self.cfg.d_in // 2, 1)
                scale = min(dead.numel() / k_aux, 1.0)
                ka = min(k_aux, dead.numel())
                # Dense over the dead subset only: [B, n_dead] is small next to [B, width].
                aux = F.relu(sae_in @ self.W_enc[dead].t() + self.b_enc[dead])
                v, j = aux.topk(ka, dim=1, sorted=False)
                z = torch.zeros_like(aux).scatter(1, j, v)
                e_hat = z @ self.W_dec[dead]
                residual = (x - x_hat).detach()
                auxk = scale * F.mse_loss(e_hat, residual, reduction="sum") / total_var
        return ForwardOutput(x_hat, acts, top_idx, fvu, auxk)

    # -- decoder geometry (training craft)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder atom (row of ``W_dec``) to unit norm."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Remove from ``W_dec.grad`` the component parallel to each atom."""
        g = self.W_dec.grad
        if g is None:
            return
        w = self.W_dec
        parallel = torch.linalg.vecdot(g, w) / torch.linalg.vecdot(w, w).clamp_min(1e-12)
        g.addcmul_(parallel.unsqueeze(1), w, value=-1.0)

    # -- identity, persistence

    def fingerprint(self) -> str:
        """16 hex chars: a hash of the weights and of the config fields that change ``encode``."""
        h = hashlib.sha256()
        essentials = {
            key: getattr(self.cfg, key)
            for key in ("architecture", "mode", "d_in", "width", "k", "threshold")
        }
        essentials["max_active"] = self.cfg.effective_max_active
        if self.cfg.input_norm != "none":  # older fingerprints stay valid
            essentials["input_norm"] = self.cfg.input_norm
        h.update(json.dumps(essentials, sort_keys=True).encode())
        for name in self.weight_shapes(self.cfg):
            t = getattr(self, name).detach().to("cpu", torch.float32).contiguous()
            h.update(name.encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()[:16]

    def check_backbone(self, name: str | None, fingerprint: str | None, dim: int) -> None:
        """Fail unless this SAE fits a backbone of output ``dim`` (and ``fingerprint``).

        Raises:
            BackboneMismatchError: dimensions differ, or both fingerprints are known and differ.
        """
        cfg = self.cfg
        expected_dim = cfg.backbone_dim if cfg.backbone_dim is not None else cfg.d_in
        ours = (
            f"backbone {cfg.backbone!r} (dim {expected_dim}, "
            f"fingerprint {cfg.backbone_fingerprint})"
        )
        theirs = f"backbone {name!r} (dim {dim}, fingerprint {fingerprint})"
        if cfg.d_in != expected_dim:  # the config contradicts itself: say so, not "384 vs 384"
            raise BackboneMismatchError(
                f"this SAE reads vectors of dim {cfg.d_in} (d_in) but its config says its "
                f"backbone {cfg.backbone!r} has dim {expected_dim} (backbone_dim); it cannot be "
                f"used with {theirs}: the SAE folder is inconsistent, retrain or re-convert it"
            )
        if dim != cfg.d_in:
            raise BackboneMismatchError(
                f"this SAE was trained on {ours} but is used with {theirs}; load an SAE "
                "trained for this backbone or train one with latentlex fit"
            )
        if cfg.backbone_fingerprint and fingerprint and cfg.backbone_fingerprint != fingerprint:
            raise BackboneMismatchError(
                f"this SAE was trained on {ours} but is used with {theirs} (same dimension, "
                "different weights); load the matching backbone or retrain the SAE"
            )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``cfg.json`` and ``sae.safetensors`` into folder ``path`` (created if needed)."""
        from safetensors.torch import save_file

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        cfg = self.cfg.to_dict()
        cfg["architecture"] = self.architecture_name
        tensors = {
            n: getattr(self, n).detach().to("cpu").contiguous()
            for n in self.weight_shapes(self.cfg)
        }
        tmp_w = folder / (SAE_WEIGHTS_NAME + ".tmp")
        save_file(tensors, str(tmp_w), metadata={"format": "latentlex-sae"})
        os.replace(tmp_w, folder / SAE_WEIGHTS_NAME)
        tmp_c = folder / (SAE_CONFIG_NAME + ".tmp")
        tmp_c.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp_c, folder / SAE_CONFIG_NAME)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device | None = None,
        *,
        dtype: str | torch.dtype = "float32",
    ) -> SparseAutoencoder:
        """Load a folder written by :meth:`save`; the class comes from ``cfg["architecture"]``.

        Sizes are validated from ``cfg.json`` and the safetensors header before any tensor is
        read. ``dtype`` is ``"float32"`` (default) or ``"file"`` (see :func:`load_dtype`).

        Raises:
            SAEFormatError: naming the file that is missing, corrupt, of an unknown architecture
                or with shapes that disagree with the config.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise _fail(folder, "no such SAE folder (expected cfg.json + sae.safetensors)")
        # the folder is a sandbox: links out of it are refused, sizes and depth capped
        cfg_path = resolve_inside(folder, SAE_CONFIG_NAME)
        if not cfg_path.is_file():
            raise _fail(cfg_path, "missing SAE config file")
        raw = read_json_capped(cfg_path, max_bytes=MAX_CONFIG_BYTES, what="SAE config")
        if not isinstance(raw, dict):
            raise _fail(cfg_path, "must hold a JSON object")
        arch = raw.get("architecture", "topk")
        if arch not in ARCHITECTURES:
            raise _fail(
                cfg_path,
                f"unknown architecture {arch!r} (known: {', '.join(sorted(ARCHITECTURES))})",
            )
        try:
            cfg = SAEConfig.from_dict(raw)
        except (ConfigError, TypeError) as e:
            raise _fail(cfg_path, f"invalid SAE config: {e}") from e
        if cfg.backbone_dim is not None and cfg.backbone_dim != cfg.d_in:
            raise _fail(
                cfg_path,
                f"d_in={cfg.d_in} but backbone_dim={cfg.backbone_dim}: an SAE reads its "
                "backbone's vectors, so the two must be equal (this config contradicts itself)",
            )
        target = load_dtype(dtype)
        sae_cls = ARCHITECTURES[arch]
        tensors = _read_weights(
            resolve_inside(folder, SAE_WEIGHTS_NAME), sae_cls.weight_shapes(cfg), target
        )
        sae = sae_cls(cfg, device="meta")
        sae.load_state_dict(tensors, assign=True)
        sae.labels = read_label_map(folder)
        return sae.to(device) if device is not None else sae


def load_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """The compute dtype a load asks for: ``torch.float32``, or None for the file's own dtype.

    ``"float32"`` (the default everywhere) computes in fp32 whatever the file holds: a bf16 or
    fp16 file is widened exactly (no value changes), and encoding is then the same on every
    machine and close to the exact function, which is what BM25 weights and the calibrated
    ``avgdl`` are measured with; CPUs also run fp32 matmuls fastest. ``"file"`` computes in the
    dtype of the file's encoder weight, which reproduces the source library's own low-precision
    activations (in bf16, fp32 arithmetic changes a few top-k sets: near-ties round apart).

    Raises:
        ConfigError: any other value.
    """
    if dtype is None or dtype in ("float32", "fp32", torch.float32):
        return torch.float32
    if dtype == "file":
        return None
    raise ConfigError(f"dtype must be one of {list(LOAD_DTYPES)}, got {dtype!r}")


def cast_weights(tensors: dict[str, Tensor], target: torch.dtype | None) -> dict[str, Tensor]:
    """Every tensor in ``target`` (None: the dtype of ``W_enc``, the file's compute dtype)."""
    dtype = target if target is not None else tensors["W_enc"].dtype
    return {name: t.to(dtype) for name, t in tensors.items()}


def _read_weights(
    path: Path, expected: dict[str, tuple[int, ...]], target: torch.dtype | None
) -> dict[str, Tensor]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise _fail(path, "missing SAE weights file")
    check_safetensors(path, expected)  # header, shapes, dtypes and total size, before mapping
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            if keys != set(expected):
                raise _fail(path, f"holds tensors {sorted(keys)}, expected {sorted(expected)}")
            for name, shape in expected.items():
                sl = f.get_slice(name)
                got = tuple(sl.get_shape())
                if got != shape:
                    raise _fail(path, f"tensor {name} has shape {got} but cfg.json implies {shape}")
                if sl.get_dtype() not in ("F32", "F16", "BF16", "F64"):
                    raise _fail(path, f"tensor {name} has non-float dtype {sl.get_dtype()}")
            tensors = {name: f.get_tensor(name) for name in expected}
    except SAEFormatError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise _fail(path, f"corrupt or unreadable safetensors file ({e})") from e
    for name, t in tensors.items():
        if not bool(torch.isfinite(t).all()):
            raise _fail(path, f"tensor {name} holds NaN or infinite values")
    return cast_weights(tensors, target)


@register("batchtopk")
class BatchTopKSAE(SparseAutoencoder):
    """BatchTopK sparse autoencoder (CL-SR, pooled mode).

    Training keeps the ``k * B`` largest activations of the whole batch (each row first capped
    at ``cfg.effective_max_active`` candidates, the same cap inference uses); the smallest kept
    activation of each batch feeds the running mean θ (:meth:`threshold_estimate`). Inference
    keeps activations ``>= cfg.threshold`` (as latentsae does, so its BatchTopK SAEs convert
    exactly), at most ``effective_max_active`` per row; without a calibrated threshold it falls
    back to per-row top-k.
    """

    architecture_name = "batchtopk"

    def __init__(
        self,
        cfg: SAEConfig,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(cfg, device=device, dtype=dtype)
        self.track_threshold = False
        self._theta_sum = 0.0
        self._theta_count = 0

    def reset_threshold_stats(self) -> None:
        """Forget the batch thresholds seen so far."""
        self._theta_sum, self._theta_count = 0.0, 0

    def threshold_estimate(self) -> float | None:
        """Running mean of the smallest kept activation over the tracked training batches."""
        return self._theta_sum / self._theta_count if self._theta_count else None

    def _batch_keep(self, vals: Tensor) -> Tensor:
        n_keep = min(self.cfg.k * vals.shape[0], vals.numel())
        flat = vals.detach().reshape(-1)
        thr = torch.kthvalue(flat, flat.numel() - n_keep + 1).values
        keep = (vals >= thr) & (vals > 0)
        if self.training and self.track_threshold:
            kept = vals.detach()[keep]
            if kept.numel():
                self._theta_sum += float(kept.min())
                self._theta_count += 1
        return keep

    def _select_train(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        v, i = topk_rows(pre, self.cfg.effective_max_active)
        return torch.where(self._batch_keep(v), v, 0.0), i

    def _select_naive(self, acts: Tensor) -> tuple[Tensor, Tensor]:
        v, i = acts.topk(self.cfg.effective_max_active, dim=1, sorted=False)
        return v * self._batch_keep(v), i

    def _select_infer(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        theta = self.cfg.threshold
        if theta is None:
            v, i = topk_rows(pre, self.cfg.k)
            return v.clamp_min_(0), i
        v, i = topk_rows(pre, self.cfg.effective_max_active)
        v = v.clamp_min_(0)
        return torch.where(v >= theta, v, 0.0), i


@register("jumprelu")
class JumpReLUSAE(SparseAutoencoder):
    """JumpReLU sparse autoencoder (inference only): one learned threshold per latent.

    ``z_j = relu(pre_j) · [pre_j > θ_j]`` with ``pre = W_enc (x - b_dec) + b_enc`` — SAELens'
    JumpReLU (also how it saves BatchTopK SAEs: every θ_j the batch threshold) and latentsae's
    (θ = exp(log_threshold)). ``θ`` is the ``threshold`` tensor ``[width]`` of
    ``sae.safetensors``. The number of active latents varies by row: :meth:`encode` pads rows
    with zeros to the largest count of the block, or caps them at ``cfg.max_active`` (the
    strongest kept) when that is set. ``cfg.k`` is informational (the expected L0).

    Example:
        >>> cfg = SAEConfig(d_in=8, width=32, k=4, architecture="jumprelu")
        >>> sae = SparseAutoencoder(cfg)
        >>> type(sae).__name__, tuple(sae.threshold.shape)
        ('JumpReLUSAE', (32,))
    """

    architecture_name = "jumprelu"
    trainable = False
    threshold: Tensor

    def __init__(
        self,
        cfg: SAEConfig,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(cfg, device=device, dtype=dtype)
        self.register_buffer(
            "threshold", torch.zeros(cfg.width, device=device, dtype=dtype or torch.float32)
        )

    @classmethod
    def weight_shapes(cls, cfg: SAEConfig) -> dict[str, tuple[int, ...]]:
        return {**super().weight_shapes(cfg), "threshold": (cfg.width,)}

    def _select_infer(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        acts = torch.where(pre > self.threshold, pre.clamp_min(0), 0.0)
        m = int((acts > 0).sum(dim=1).max()) if acts.shape[0] else 1
        m = max(m, 1)
        if self.cfg.max_active is not None:
            m = min(m, self.cfg.max_active)
        return topk_rows(acts, m)
