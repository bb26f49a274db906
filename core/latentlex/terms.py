"""Texts → a dense vector plus a sparse vector of latent terms, from one backbone forward pass.

Token mode (Latent Terms, Clavié et al. 2026): every kept token state goes through the TopK SAE,
activations are summed per latent (``u_j``) and square-rooted (``w_j = sqrt(u_j)``). Queries send
``w_j``; documents store the BM25-saturated value
``f (k1 + 1) / (f + k1 (1 - b + b |d| / avgdl))`` with ``f = w_j`` and ``|d| = Σ_j w_j``, so that a
Qdrant sparse vector with ``modifier=IDF`` scores exactly BM25 over latent ids.

Pooled mode (CL-SR, Park et al. 2025): the backbone's pooled vector goes through a BatchTopK SAE with a
calibrated threshold; documents keep their top ``doc_max_terms`` latents and store
``tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl))`` with ``dl`` the number kept; queries send
``tf (k2 + 1) / (tf + k2)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .backbone import _DEFAULT_ALIASES, Backbone, BackboneBatch, check_texts
from .errors import ConfigError
from .sparse import SparseVector
from .states import TokenStates

if TYPE_CHECKING:
    from .sae import SparseAutoencoder

logger = logging.getLogger(__name__)

__all__ = ["Encoded", "LatentTermEncoder", "as_encoder", "pool_latents"]


@dataclass
class Encoded:
    """Dense vectors ``[n, d]`` (float32) and one :class:`SparseVector` per text, in input order."""

    dense: np.ndarray
    sparse: list[SparseVector]
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.sparse)


def pool_latents(
    top_acts: torch.Tensor, top_indices: torch.Tensor, lengths: torch.Tensor, width: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sum the active latents of each text's tokens: ``u_j = Σ_t z_{t,j}``.

    Args:
        top_acts / top_indices: ``[T, k]`` activations and latent ids of the packed tokens.
        lengths: ``[B]`` tokens per text (sums to ``T``).
        width: the SAE width (number of latents).

    Returns:
        For each text, ``(latent ids ascending (int64), u (float32))`` with zero activations removed.
    """
    n = int(lengths.numel())
    if top_acts.numel() == 0:
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        return [empty for _ in range(n)]
    k = top_acts.shape[1]
    seg = torch.repeat_interleave(
        torch.arange(n, device=top_acts.device), lengths.to(top_acts.device)
    )
    keys = (seg[:, None] * width + top_indices).reshape(-1)
    acts = top_acts.reshape(-1).float()
    nz = acts > 0
    keys, acts = keys[nz], acts[nz]
    uniq, inverse = torch.unique(keys, return_inverse=True)
    sums = torch.zeros(uniq.numel(), dtype=torch.float32, device=acts.device)
    sums.index_add_(0, inverse, acts)
    uniq_np, sums_np = uniq.cpu().numpy(), sums.cpu().numpy()
    owner = uniq_np // width
    bounds = np.searchsorted(owner, np.arange(n + 1))
    del k
    return [
        (uniq_np[bounds[i] : bounds[i + 1]] - i * width, sums_np[bounds[i] : bounds[i + 1]])
        for i in range(n)
    ]


class LatentTermEncoder:
    """Encode texts into dense vectors and latent-term sparse vectors in one pass.

    Args:
        sae: a :class:`~latentlex.sae.SparseAutoencoder` or a folder/Hub id to load one from.
        backbone: the backbone the SAE was trained on (default: the one its config names, loaded offline
            when local). A backbone whose dimension or fingerprint differs is refused.
        batch_size: texts per forward pass.

    Example:
        >>> enc = LatentTermEncoder("path/to/sae")  # doctest: +SKIP
        >>> docs = enc.encode_documents(["Qdrant stores vectors."])  # doctest: +SKIP
        >>> docs.dense.shape, len(docs.sparse[0]) > 0  # doctest: +SKIP
        ((1, 384), True)
    """

    def __init__(
        self,
        sae: SparseAutoencoder | str | os.PathLike[str],
        backbone: Backbone | str | None = None,
        *,
        batch_size: int = 32,
        device: str | None = None,
        check_fingerprint: bool = True,
    ) -> None:
        from .sae import SparseAutoencoder

        if not isinstance(sae, SparseAutoencoder):
            sae = load_sae(sae, device=device, backbone=backbone)
        self.sae = sae
        cfg = sae.cfg
        if backbone is None or isinstance(backbone, str):
            if (
                backbone is None
                and cfg.backbone is not None
                and (cfg.backbone not in _DEFAULT_ALIASES)
            ):
                # a name read from the SAE's own files: a model name, never a path (a path is
                # only taken from the caller)
                from .safeio import check_model_name

                check_model_name(cfg.backbone, "the SAE's cfg.json")
            backbone = Backbone(
                backbone if backbone is not None else cfg.backbone,
                device=device,
                keep_special_tokens=cfg.keep_special_tokens,
                max_seq_length=cfg.max_seq_length,
                layer=cfg.layer,
            )
        elif cfg.mode == "token" and (
            backbone.layer != cfg.layer or backbone.keep_special_tokens != cfg.keep_special_tokens
        ):
            raise ConfigError(
                f"the SAE was trained on token states of layer {cfg.layer} with "
                f"keep_special_tokens={cfg.keep_special_tokens}, but the backbone gives layer "
                f"{backbone.layer} with keep_special_tokens={backbone.keep_special_tokens}: build "
                "Backbone(..., layer=..., keep_special_tokens=...) to match, or pass backbone=None"
            )
        self.backbone = backbone
        sae.check_backbone(
            backbone.name,
            backbone.fingerprint() if check_fingerprint else None,
            backbone.dim,
        )
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.sae.to(backbone.device)
        self.sae.eval()

    # ------------------------------------------------------------------ config views
    @property
    def mode(self) -> str:
        return self.sae.cfg.mode

    @property
    def width(self) -> int:
        return self.sae.cfg.width

    @property
    def dim(self) -> int:
        return self.backbone.dim

    # ------------------------------------------------------------------ weighting
    def latent_mass(
        self, batch: BackboneBatch, *, is_query: bool = False
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Raw per-text latent activations: sums over tokens (token mode) or the pooled code.

        For queries in token mode, ``SAEConfig.query_k`` (when set) keeps only each token's
        strongest ``query_k`` latents.
        """
        with torch.inference_mode():
            if self.mode == "token":
                enc = self.sae.encode(batch.token_states)
                acts, ids = enc.top_acts, enc.top_indices
                qk = self.sae.cfg.query_k
                if is_query and qk is not None and qk < acts.shape[1]:
                    acts, ids = acts[:, :qk], ids[:, :qk]  # rows are sorted by activation
                return pool_latents(acts, ids, batch.lengths, self.width)
            enc = self.sae.encode(batch.dense)
            ones = torch.ones(batch.dense.shape[0], dtype=torch.long)
            return pool_latents(enc.top_acts, enc.top_indices, ones, self.width)

    def document_weights(self, idx: np.ndarray, mass: np.ndarray) -> SparseVector:
        """BM25-saturated document values for one text's latent mass."""
        cfg = self.sae.cfg
        if cfg.avgdl is None or cfg.avgdl <= 0:
            raise ConfigError(
                "this SAE has no calibrated avgdl: call calibrate_avgdl(...) on a corpus "
                "(latentlex train does it) before encoding documents"
            )
        if idx.size == 0:
            return SparseVector.empty()
        k1, b = cfg.bm25_k1, cfg.bm25_b
        if self.mode == "token":
            f = np.sqrt(mass.astype(np.float64))
            dl = f.sum()
        else:
            f = mass.astype(np.float64)
            if cfg.doc_max_terms is not None and f.size > cfg.doc_max_terms:
                keep = np.sort(np.argpartition(-f, cfg.doc_max_terms - 1)[: cfg.doc_max_terms])
                idx, f = idx[keep], f[keep]
            dl = float(f.size)
        values = f * (k1 + 1) / (f + k1 * (1 - b + b * dl / cfg.avgdl))
        vec = SparseVector(idx, values.astype(np.float32))
        if self.mode == "token" and cfg.doc_max_terms is not None:
            vec = vec.top(cfg.doc_max_terms)
        return vec

    def query_weights(self, idx: np.ndarray, mass: np.ndarray) -> SparseVector:
        """Query-side values: ``sqrt(u)`` (token mode) or ``tf (k2+1)/(tf+k2)`` (pooled mode)."""
        if idx.size == 0:
            return SparseVector.empty()
        if self.mode == "token":
            return SparseVector(idx, np.sqrt(mass).astype(np.float32))
        k2 = self.sae.cfg.query_k2 if self.sae.cfg.query_k2 is not None else 1.5
        tf = mass.astype(np.float64)
        return SparseVector(idx, (tf * (k2 + 1) / (tf + k2)).astype(np.float32))

    def document_length(self, mass: np.ndarray) -> float:
        """``|d|`` of one document, as avgdl averages it."""
        if self.mode == "token":
            return float(np.sqrt(mass.astype(np.float64)).sum())
        cap = self.sae.cfg.doc_max_terms
        return float(min(mass.size, cap) if cap is not None else mass.size)

    # ------------------------------------------------------------------ encoding
    def _encode(
        self, texts: Sequence[str], *, is_query: bool, progress: bool, warn_truncated: bool = True
    ) -> Encoded:
        texts = check_texts(texts)
        n = len(texts)
        dense = np.zeros((n, self.dim), dtype=np.float32)
        sparse: list[SparseVector] = [SparseVector.empty()] * n
        truncated = 0
        weigh = self.query_weights if is_query else self.document_weights
        bar = tqdm(total=n, desc="encoding", unit="text", disable=not progress, leave=False)
        for pos, batch in self.backbone.iter_batches(
            texts, batch_size=self.batch_size, is_query=is_query
        ):
            dense[pos] = batch.dense.cpu().numpy()
            masses = self.latent_mass(batch, is_query=is_query)
            for p, (idx, mass) in zip(pos.tolist(), masses, strict=True):
                sparse[p] = weigh(idx, mass)
            truncated += batch.truncated
            bar.update(len(pos))
        bar.close()
        if truncated and warn_truncated:
            logger.warning(
                "%d of %d texts were longer than %d tokens and were truncated",
                truncated,
                n,
                self.backbone.max_seq_length,
            )
        return Encoded(dense, sparse, truncated)

    def encode_documents(
        self, texts: Sequence[str], *, progress: bool = False, warn_truncated: bool = True
    ) -> Encoded:
        """Dense vectors and BM25-saturated latent-term vectors for documents.

        Empty or whitespace-only texts get an empty sparse vector and the model's dense vector.
        Texts longer than the backbone reads are truncated, with a warning unless
        ``warn_truncated=False`` (a caller encoding in batches warns once itself, from
        :attr:`Encoded.truncated`).
        """
        return self._encode(texts, is_query=False, progress=progress, warn_truncated=warn_truncated)

    def encode_queries(
        self, texts: Sequence[str], *, progress: bool = False, warn_truncated: bool = True
    ) -> Encoded:
        """Dense vectors and query-side latent-term weights."""
        return self._encode(texts, is_query=True, progress=progress, warn_truncated=warn_truncated)

    def encode_states(self, states: TokenStates, *, is_query: bool = False) -> Encoded:
        """Encode a pre-computed :class:`~latentlex.states.TokenStates` folder (no backbone pass).

        Rows follow ``states.doc_ids``. The whole corpus is held in memory: to write a large one,
        stream :meth:`iter_encode_states` instead.
        """
        n = states.n_docs
        sparse: list[SparseVector] = []
        for _, enc in self.iter_encode_states(states, is_query=is_query):
            sparse.extend(enc.sparse)
        return Encoded(np.asarray(states.dense[:n], dtype=np.float32), sparse)

    def iter_encode_states(
        self, states: TokenStates, *, is_query: bool = False, docs_per_batch: int = 256
    ) -> Iterator[tuple[range, Encoded]]:
        """Encode stored token states batch by batch (one SAE pass, bounded memory).

        Yields ``(rows, encoded)``: the stored rows (positions in ``states.doc_ids``) of each
        batch and their dense and latent-term vectors. Documents are weighted with the SAE's
        own ``avgdl`` (set by the fit, on its sample), as :meth:`encode_documents` does, so the
        corpus needs no SAE pass of its own to measure it.
        """
        weigh = self.query_weights if is_query else self.document_weights
        start = 0
        for batch in iter_state_batches(states, docs_per_batch):
            masses = self.latent_mass(batch, is_query=is_query)
            rows = range(start, start + len(masses))
            start = rows.stop
            sparse = [weigh(idx, mass) for idx, mass in masses]
            yield rows, Encoded(batch.dense.numpy(), sparse)

    def calibrate_avgdl(
        self, texts: Sequence[str] | TokenStates, *, progress: bool = False
    ) -> float:
        """Measure the mean document length in latent-term mass on ``texts`` and store it in the SAE config."""
        if isinstance(texts, TokenStates):
            batches: Iterable[BackboneBatch] = iter_state_batches(texts)
            n = texts.n_docs
        else:
            items = check_texts(texts)
            batches = (b for _, b in self.backbone.iter_batches(items, batch_size=self.batch_size))
            n = len(items)
        if n == 0:
            raise ConfigError("calibrate_avgdl needs at least one document")
        total = 0.0
        for batch in tqdm(batches, desc="avgdl", disable=not progress, leave=False):
            total += sum(self.document_length(m) for _, m in self.latent_mass(batch))
        avgdl = total / n
        self.sae.cfg.avgdl = max(avgdl, 1e-6)
        return self.sae.cfg.avgdl


def as_encoder(source: Any) -> LatentTermEncoder:
    """A :class:`LatentTermEncoder` from an encoder, a ``LatentIndex``, an SAE or an SAE folder/Hub id."""
    if isinstance(source, LatentTermEncoder):
        return source
    encoder = getattr(source, "encoder", None)
    if isinstance(encoder, LatentTermEncoder):
        return encoder
    return LatentTermEncoder(source)


def iter_state_batches(states: TokenStates, docs_per_batch: int = 256) -> Iterator[BackboneBatch]:
    """Batches of stored documents from a token-state folder, as if the backbone had just produced them."""
    for start in range(0, states.n_docs, docs_per_batch):
        stop = min(start + docs_per_batch, states.n_docs)
        tokens, lengths = states.doc_range(start, stop)
        yield BackboneBatch(
            torch.from_numpy(np.array(tokens, dtype=np.float32)),
            torch.from_numpy(np.asarray(lengths, dtype=np.int64)),
            torch.from_numpy(np.asarray(states.dense[start:stop], dtype=np.float32)),
        )


def load_sae(
    path: str | os.PathLike[str], device: str | None = None, backbone: Any = None
) -> SparseAutoencoder:
    """Load an SAE from a local folder of any format, or from the Hub.

    See :func:`latentlex.hub.from_pretrained`; ``backbone`` is needed only for a converted SAE
    whose config does not name its sentence-transformers model.
    """
    from .hub import from_pretrained

    return from_pretrained(path, device=device, backbone=backbone)
