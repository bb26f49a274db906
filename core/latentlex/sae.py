"""Sparse autoencoders over backbone states: TopK (Latent Terms) and BatchTopK (CL-SR).

A saved SAE is a folder with ``cfg.json`` (:class:`SAEConfig`) and ``sae.safetensors``
(``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``). ``cfg["architecture"]`` picks the class through
:data:`ARCHITECTURES`, so a new variant plugs in with :func:`register`.

The training forward never builds a dense ``[batch, width]`` activation matrix for autograd:
the encoder pre-activations are computed once without grad (the one dense matmul, optionally
in bf16 or through NumPy's BLAS), the top-k are selected from them, and two small autograd
functions carry the gradient through the ``k`` active latents per row only
(:class:`_GatherEncode`, :class:`_GatherDecode`). :meth:`SparseAutoencoder.forward_naive` is
the plain dense reference they are tested against.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
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

__all__ = [
    "ARCHITECTURES",
    "FORMAT_VERSION",
    "MAX_D_IN",
    "MAX_WIDTH",
    "SAE_CONFIG_NAME",
    "SAE_WEIGHTS_NAME",
    "BatchTopKSAE",
    "EncoderOutput",
    "ForwardOutput",
    "SAEConfig",
    "SparseAutoencoder",
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
    """Registry key: 'topk' (Latent Terms) or 'batchtopk' (CL-SR)."""
    mode: str = "token"
    """'token' (one row per token state) or 'pooled' (one row per text)."""
    threshold: float | None = None
    """batchtopk: inference threshold θ (calibrated in training)."""
    max_active: int | None = None
    """batchtopk: cap on active latents per row (default 4*k)."""
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


# ----------------------------------------------------------------------------- hot path kernels


def topk_rows(pre: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` largest entries of each row of ``pre`` (values, int64 indices), unordered.

    Wide rows go through block maxima: a row's top-k entries all lie in its ``k`` blocks with
    the largest maxima, so only ``k * 32`` candidates per row need a real top-k (on CPU,
    ``torch.topk`` costs far more per element than a block-max pass). Same result as
    ``pre.topk(k)`` up to the order of entries and the choice among ties.
    """
    n, width = pre.shape
    bs = 32
    nb = width // bs
    if width % bs or nb < 4 * k or pre.device.type != "cpu":
        v, i = pre.topk(k, dim=1, sorted=False)
        return v, i
    blocks = pre.view(n, nb, bs).amax(dim=2).topk(k, dim=1, sorted=False).indices  # [n, k]
    rows = torch.arange(n, device=pre.device).unsqueeze(1) * nb
    cand = pre.view(n * nb, bs).index_select(0, (blocks + rows).view(-1)).view(n, k * bs)
    v, j = cand.topk(k, dim=1, sorted=False)
    idx = blocks.gather(1, torch.div(j, bs, rounding_mode="floor")) * bs + j.remainder(bs)
    return v, idx


class _Pattern:
    """The transposed sparsity pattern of a ``[B, m]`` latent-index matrix (CSR over latents).

    Built once per batch and shared by encoder and decoder backward: ``t_matmul(values, dense)``
    is ``S^T @ dense`` for the ``[B, width]`` sparse matrix ``S`` with ``values`` at ``indices``,
    i.e. the weight gradient ``Σ_{(b,i): idx=j} values[b,i] * dense[b]`` in O(B·m·d).
    """

    def __init__(self, indices: Tensor, width: int) -> None:
        flat = indices.reshape(-1)
        self.order = torch.argsort(flat, stable=True)
        m = indices.shape[1]
        self.cols = torch.div(self.order, m, rounding_mode="floor")
        counts = torch.bincount(flat, minlength=width)
        self.crow = torch.zeros(width + 1, dtype=torch.int64, device=indices.device)
        torch.cumsum(counts, 0, out=self.crow[1:])
        self.shape = (width, indices.shape[0])

    def t_matmul(self, values: Tensor, dense: Tensor) -> Tensor:
        vals = values.reshape(-1)[self.order].to(dense.dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            s = torch.sparse_csr_tensor(
                self.crow, self.cols, vals, self.shape, check_invariants=False
            )
            return s @ dense


def _rowwise_dot(indices: Tensor, weight: Tensor, grad: Tensor) -> Tensor:
    """``out[b, i] = weight[indices[b, i]] · grad[b]`` without a dense ``[B, width]`` product.

    ``indices`` must be sorted along each row (a valid CSR pattern); a sampled matmul computes
    only those ``B * m`` dot products.
    """
    n, m = indices.shape
    crow = torch.arange(0, n * m + 1, m, device=indices.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(
            crow,
            indices.reshape(-1),
            torch.zeros(n * m, dtype=grad.dtype, device=grad.device),
            (n, weight.shape[0]),
            check_invariants=False,
        )
        out = torch.sparse.sampled_addmm(pattern, grad, weight.t(), beta=0.0)
    return out.values().view(n, m)


class _GatherEncode(torch.autograd.Function):
    """``acts = relu(top_pre)``; backward touches only the selected latents of each row.

    ``top_pre`` holds the pre-activations ``sae_in · W_enc[idx] + b_enc[idx]`` already
    computed (without grad) by the dense selection matmul; entries zeroed by the caller are
    inactive padding.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        sae_in: Tensor,
        w_enc: Tensor,
        b_enc: Tensor,
        top_pre: Tensor,
        indices: Tensor,
        pattern: _Pattern,
    ) -> Tensor:
        acts = top_pre.clamp_min(0)
        ctx.save_for_backward(sae_in, w_enc, indices, acts)
        ctx.pattern = pattern
        return acts

    @staticmethod
    def backward(ctx: Any, grad_acts: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        sae_in, w_enc, indices, acts = ctx.saved_tensors
        g = grad_acts * (acts > 0)
        grad_in = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_in = F.embedding_bag(indices, w_enc, per_sample_weights=g, mode="sum")
        if ctx.needs_input_grad[1]:
            grad_w = ctx.pattern.t_matmul(g, sae_in)
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(w_enc.shape[0], dtype=g.dtype, device=g.device)
            grad_b.index_add_(0, indices.reshape(-1), g.reshape(-1))
        return grad_in, grad_w, grad_b, None, None, None


class _GatherDecode(torch.autograd.Function):
    """``y[b] = Σ_i acts[b, i] · W_dec[idx[b, i]]`` (no bias), gathering only active atoms."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, acts: Tensor, indices: Tensor, w_dec: Tensor, pattern: _Pattern
    ) -> Tensor:
        ctx.save_for_backward(acts, indices, w_dec)
        ctx.pattern = pattern
        return F.embedding_bag(indices, w_dec, per_sample_weights=acts, mode="sum")

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        acts, indices, w_dec = ctx.saved_tensors
        grad_acts = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_acts = _rowwise_dot(indices, w_dec, grad_out)
        if ctx.needs_input_grad[2]:
            grad_w = ctx.pattern.t_matmul(acts, grad_out)
        return grad_acts, None, grad_w, None


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

    @torch.no_grad()
    def encode(self, x: Tensor) -> EncoderOutput:
        """Active latents of each row of ``x`` ([N, d_in], any float dtype), in fp32.

        Rows are processed in blocks, so memory stays bounded for any ``N``; entries of a row
        are sorted by decreasing activation.
        """
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
        w = self.W_enc
        x = x.to(device=w.device, dtype=w.dtype)
        vals: list[Tensor] = []
        idxs: list[Tensor] = []
        for chunk in x.split(_ENCODE_CHUNK):
            pre = torch.addmm(self.b_enc, chunk - self.b_dec, w.t())
            v, i = self._select_infer(pre)
            v, order = v.float().sort(dim=1, descending=True)
            vals.append(v)
            idxs.append(i.gather(1, order))
        if not vals:
            m = self._select_infer(x.new_zeros(1, self.cfg.width))[0].shape[1]
            return EncoderOutput(x.new_zeros(0, m), torch.zeros(0, m, dtype=torch.int64))
        return EncoderOutput(torch.cat(vals), torch.cat(idxs))

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
        x = x.to(self.W_enc.dtype)
        sae_in = x - self.b_dec
        with torch.no_grad():
            pre = self._preacts(sae_in.detach(), reuse=True)
            top_pre, top_idx = self._select_train(pre)
            top_idx, order = top_idx.sort(dim=1)  # row-sorted: a valid CSR pattern
            top_pre = top_pre.gather(1, order)
            pattern = _Pattern(top_idx, self.cfg.width)
        acts = _GatherEncode.apply(sae_in, self.W_enc, self.b_enc, top_pre, top_idx, pattern)
        x_hat = _GatherDecode.apply(acts, top_idx, self.W_dec, pattern) + self.b_dec
        return self._losses(x, sae_in, x_hat, acts, top_idx, dead_mask, k_aux)

    def forward_naive(
        self, x: Tensor, dead_mask: Tensor | None = None, *, k_aux: int | None = None
    ) -> ForwardOutput:
        """The dense reference of :meth:`forward`: dense [B, width] codes and plain autograd."""
        x = x.to(self.W_enc.dtype)
        sae_in = x - self.b_dec
        dense = F.relu(sae_in @ self.W_enc.t() + self.b_enc)
        acts, top_idx = self._select_naive(dense)
        z = torch.zeros_like(dense).scatter(1, top_idx, acts)
        x_hat = z @ self.W_dec + self.b_dec
        return self._losses(x, sae_in, x_hat, acts, top_idx, dead_mask, k_aux)

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
        h.update(json.dumps(essentials, sort_keys=True).encode())
        for name in WEIGHT_NAMES:
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
        if dim != cfg.d_in or dim != expected_dim:
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
        tensors = {n: getattr(self, n).detach().to("cpu").contiguous() for n in WEIGHT_NAMES}
        tmp_w = folder / (SAE_WEIGHTS_NAME + ".tmp")
        save_file(tensors, str(tmp_w), metadata={"format": "latentlex-sae"})
        os.replace(tmp_w, folder / SAE_WEIGHTS_NAME)
        tmp_c = folder / (SAE_CONFIG_NAME + ".tmp")
        tmp_c.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp_c, folder / SAE_CONFIG_NAME)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], device: str | torch.device | None = None
    ) -> SparseAutoencoder:
        """Load a folder written by :meth:`save`; the class comes from ``cfg["architecture"]``.

        Sizes are validated from ``cfg.json`` and the safetensors header before any tensor is
        read.

        Raises:
            SAEFormatError: naming the file that is missing, corrupt, of an unknown architecture
                or with shapes that disagree with the config.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise _fail(folder, "no such SAE folder (expected cfg.json + sae.safetensors)")
        cfg_path = folder / SAE_CONFIG_NAME
        if not cfg_path.is_file():
            raise _fail(cfg_path, "missing SAE config file")
        if cfg_path.stat().st_size > MAX_CONFIG_BYTES:
            raise _fail(cfg_path, f"larger than {MAX_CONFIG_BYTES:,} bytes: not an SAE config")
        try:
            raw = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _fail(cfg_path, f"not valid JSON ({e})") from e
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
        tensors = _read_weights(folder / SAE_WEIGHTS_NAME, cfg)
        sae = ARCHITECTURES[arch](cfg, device="meta")
        sae.load_state_dict(tensors, assign=True)
        from .labels import read_label_map

        sae.labels = read_label_map(folder)
        return sae.to(device) if device is not None else sae

    @classmethod
    def from_pretrained(
        cls, repo_id_or_path: str | os.PathLike[str], **kwargs: Any
    ) -> SparseAutoencoder:
        """Load from a local folder or the Hugging Face Hub; see :func:`latentlex.hub.from_pretrained`."""
        from .hub import from_pretrained

        return from_pretrained(repo_id_or_path, **kwargs)


def _read_weights(path: Path, cfg: SAEConfig) -> dict[str, Tensor]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise _fail(path, "missing SAE weights file")
    expected = {
        "W_enc": (cfg.width, cfg.d_in),
        "b_enc": (cfg.width,),
        "W_dec": (cfg.width, cfg.d_in),
        "b_dec": (cfg.d_in,),
    }
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
            tensors = {name: f.get_tensor(name).float() for name in expected}
    except SAEFormatError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise _fail(path, f"corrupt or unreadable safetensors file ({e})") from e
    for name, t in tensors.items():
        if not bool(torch.isfinite(t).all()):
            raise _fail(path, f"tensor {name} holds NaN or infinite values")
    return tensors


@register("batchtopk")
class BatchTopKSAE(SparseAutoencoder):
    """BatchTopK sparse autoencoder (CL-SR, pooled mode).

    Training keeps the ``k * B`` largest activations of the whole batch (each row first capped
    at ``cfg.effective_max_active`` candidates, the same cap inference uses); the smallest kept
    activation of each batch feeds the running mean θ (:meth:`threshold_estimate`). Inference
    keeps activations ``> cfg.threshold``, at most ``effective_max_active`` per row; without a
    calibrated threshold it falls back to per-row top-k.
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
        return torch.where(v > theta, v, 0.0), i
