"""The sparse kernels of the SAE training forward (and the fast top-k of inference).

The training forward never builds a dense ``[batch, width]`` activation matrix for autograd:
the encoder pre-activations are computed once without grad, the top-k are selected from them,
and two small autograd functions carry the gradient through the ``k`` active latents per row
only (:class:`GatherEncode`, :class:`GatherDecode`), sharing one transposed sparsity pattern
(:class:`Pattern`). :meth:`latentlex.sae.SparseAutoencoder.forward_naive` is the plain dense
reference they are tested against.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["GatherDecode", "GatherEncode", "Pattern", "topk_rows"]


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


class Pattern:
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


class GatherEncode(torch.autograd.Function):
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
        pattern: Pattern,
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


class GatherDecode(torch.autograd.Function):
    """``y[b] = Σ_i acts[b, i] · W_dec[idx[b, i]]`` (no bias), gathering only active atoms."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, acts: Tensor, indices: Tensor, w_dec: Tensor, pattern: Pattern
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
