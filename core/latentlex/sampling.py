"""The fit's sample: whole documents, in a seeded random order, up to a token budget.

An SAE fitted on a sample of a corpus' token states does about as well as one fitted on all of
them (BENCHMARKS.md, "The fit's token budget"), so :func:`~latentlex.fit.fit_sae` trains on at most
:data:`DEFAULT_MAX_TOKENS` token states by default and its cost stops growing with the corpus.
The sample is made of whole documents, so the SAE's ``avgdl`` is measured on it too (no SAE pass
over the whole corpus), and it is the same whether the corpus' token states are already cached
(their lengths are read) or not (the documents' tokens are counted with the backbone's
tokenizer, and only the sample is encoded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backbone import Backbone
from .errors import LatentLexError
from .states import TokenStates, corpus_hash

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "cached_states",
    "choose_documents",
    "gather_states",
    "token_counts",
]

DEFAULT_MAX_TOKENS = 250_000
"""Token states a token-mode fit samples by default (measured: BENCHMARKS.md, "The fit's token budget")."""

_CHUNK = 512  # documents whose tokens are counted at a time


def choose_documents(
    n_docs: int,
    budget: int,
    seed: int,
    lengths: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Positions of the sampled documents, ascending.

    Documents are visited in the order of a permutation seeded by ``seed`` and taken while their
    tokens fit in ``budget`` (the first document is always taken); the first one that would not
    fit ends the sample. ``lengths(positions)`` gives the token counts of some positions, so
    that only the documents visited are ever counted.
    """
    order = np.random.default_rng(seed).permutation(n_docs)
    taken: list[np.ndarray] = []
    total = 0
    for start in range(0, n_docs, _CHUNK):
        pos = order[start : start + _CHUNK]
        cum = total + np.cumsum(np.asarray(lengths(pos), dtype=np.int64))
        fit = int(np.searchsorted(cum, budget, side="right"))
        if start == 0:
            fit = max(fit, 1)
        taken.append(pos[:fit])
        if fit < len(pos):
            break
        total = int(cum[-1])
    return np.sort(np.concatenate(taken)) if taken else np.zeros(0, np.int64)


def token_counts(backbone: Backbone, texts: Sequence[str]) -> np.ndarray:
    """Token states the backbone keeps per text (as :meth:`Backbone.forward` counts them:
    truncated at its maximum length, special tokens dropped unless kept, once per layer read)."""
    tok = backbone.tokenizer
    ids = tok(
        list(texts),
        add_special_tokens=True,
        truncation=True,
        max_length=backbone.max_seq_length,
        verbose=False,
    )["input_ids"]
    special = set() if backbone.keep_special_tokens else set(tok.all_special_ids)
    n = np.array([sum(1 for t in row if t not in special) for row in ids], dtype=np.int64)
    return n * len(backbone.layers)


def cached_states(
    backbone: Backbone, ids: Sequence[str], texts: Sequence[str], folder: str | Path | None
) -> TokenStates | None:
    """The complete token states of this corpus in ``folder`` as ``backbone`` reads them, or None
    (no folder, another corpus, backbone or option, a stopped encoding, an unreadable folder)."""
    if folder is None or not (Path(folder) / "meta.json").is_file():
        return None
    try:
        states = TokenStates.open(folder)
    except (LatentLexError, OSError, ValueError, KeyError):  # unreadable: not a cache hit
        return None
    meta = states.meta
    want: dict[str, Any] = {
        "backbone_fingerprint": backbone.fingerprint(),
        "dim": backbone.dim,
        "keep_special_tokens": backbone.keep_special_tokens,
        "layer": backbone.layer,
        "max_seq_length": backbone.max_seq_length,
        "max_tokens": None,
    }
    if any(meta.get(k) != v for k, v in want.items()) or states.n_docs != len(ids):
        return None
    if meta.get("corpus_hash") != corpus_hash(ids, texts):
        return None
    return states


def gather_states(states: TokenStates, rows: np.ndarray) -> TokenStates:
    """An in-memory :class:`TokenStates` of some stored documents (``rows``, in stored order)."""
    rows = np.asarray(rows, dtype=np.int64)
    off = states.offsets
    parts = [np.asarray(states.tokens[off[r] : off[r + 1]]) for r in rows.tolist()]
    d = states.tokens.shape[1]
    tokens = np.concatenate(parts) if parts else np.zeros((0, d), np.float16)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(off[rows + 1] - off[rows], out=offsets[1:])
    meta = {**states.meta, "total_tokens": int(offsets[-1]), "n_docs": len(rows)}
    return TokenStates(
        states.path,
        tokens,
        np.asarray(states.dense[rows], dtype=np.float32),
        offsets,
        [states.doc_ids[r] for r in rows.tolist()],
        meta,
    )
