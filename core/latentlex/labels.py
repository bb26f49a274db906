"""Human-readable labels of SAE latents, without an LLM.

A corpus is streamed once through the backbone and the SAE:

- **token mode**: for each latent, the surface *words* it fires on (word pieces merged through
  the fast tokenizer's ``word_ids`` and offsets), with counts and mean activations, and a few
  short in-context snippets of its strongest occurrences. Words are ranked by
  ``total activation × precision`` (precision: the share of the word's occurrences on which the
  latent fires, smoothed), so a latent's label names what it is *for*, not merely what is frequent.
- **pooled mode** (CL-SR): each latent's top-activating texts, and their distinctive words in the
  c-TF-IDF style (``tf(w, class) · log(1 + A / f(w))`` with the class being the latent's top
  texts).

Memory stays bounded: top-N lists per latent, and (latent, word) statistics pruned to the
strongest words per latent once ``max_pairs`` is exceeded.

Labels are stored as ``labels.json`` beside the SAE; the data model and the file format
(:class:`LatentLabels`, :func:`load_labels`, :func:`read_label_map`) live in
:mod:`latentlex.labelfile` and are re-exported here.

Example:
    >>> labels = label_sae("my-sae", "corpus.jsonl", max_docs=2000)  # doctest: +SKIP
    >>> labels.as_label_map()[123]  # doctest: +SKIP
    'quokkas / tapirs / otters'
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import count, islice, pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import ConfigError, LatentLexError, SAEFormatError
from .labelfile import (
    LABELS_FORMAT,
    LABELS_NAME,
    LatentLabel,
    LatentLabels,
    load_labels,
    read_label_map,
)
from .sae import SparseAutoencoder
from .terms import LatentTermEncoder

if TYPE_CHECKING:
    from .backbone import Backbone

logger = logging.getLogger(__name__)

__all__ = [
    "LABELS_FORMAT",
    "LABELS_NAME",
    "LatentLabel",
    "LatentLabels",
    "label_latents",
    "label_sae",
    "load_labels",
    "read_label_map",
]

_WORD_RE = re.compile(r"[^\W\d_][\w'-]*")
_ROUND = 5
_WINDOW = 60  # characters of context on each side of an example's word


# ----------------------------------------------------------------------------- helpers


def _snippet(text: str, start: int, end: int, window: int = 60) -> tuple[str, int, int]:
    """A window of ``text`` around ``[start, end)``, cut at spaces, and the span inside it."""
    a = max(0, start - window)
    b = min(len(text), end + window)
    if a > 0:
        sp = text.find(" ", a, start)
        a = sp + 1 if sp != -1 else a
    if b < len(text):
        sp = text.rfind(" ", end, b)
        b = sp if sp != -1 else b
    pre = "…" if a > 0 else ""
    post = "…" if b < len(text) else ""
    body = re.sub(r"\s", " ", text[a:b])
    return pre + body + post, len(pre) + start - a, len(pre) + end - a


def _label_from(words: Sequence[tuple[str, int, float]], n: int) -> str:
    alnum = [w for w, _, _ in words if any(ch.isalnum() for ch in w)]
    chosen = alnum[:n] if alnum else [w for w, _, _ in words[:n]]
    return " / ".join(chosen) if chosen else "(no words)"


def _group_max(keys: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique keys (ascending) and the max of ``vals`` per key."""
    if keys.size == 0:
        return keys, vals
    order = np.argsort(keys, kind="stable")
    k, v = keys[order], vals[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    return k[starts], np.maximum.reduceat(v, starts)


class _TopN:
    """Bounded top-N lists per latent (deterministic: ties keep the earlier entry)."""

    def __init__(self, width: int, n: int) -> None:
        self.n = n
        self.entries: dict[int, list[tuple[float, int, Any]]] = {}
        self.floor = np.full(width, -np.inf, dtype=np.float64)

    def candidates(self, latents: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """Indices of ``(latent, act)`` pairs that could enter their latent's list, grouped."""
        if self.n == 0 or latents.size == 0:
            return np.zeros(0, dtype=np.int64)
        idx = np.flatnonzero(acts > self.floor[latents])
        if idx.size == 0:
            return idx
        order = np.lexsort((-acts[idx], latents[idx]))
        idx = idx[order]
        lat = latents[idx]
        starts = np.flatnonzero(np.r_[True, lat[1:] != lat[:-1]])
        rank = np.arange(idx.size) - np.repeat(starts, np.diff(np.r_[starts, idx.size]))
        return idx[rank < self.n]

    def push(self, latent: int, items: list[tuple[float, int, Any]], dedupe: bool = True) -> None:
        merged = self.entries.get(latent, []) + items
        merged.sort(key=lambda e: (-e[0], e[1]))
        kept: list[tuple[float, int, Any]] = []
        seen: set[Any] = set()
        for e in merged:
            key = e[2][0] if dedupe else e[1]
            if key in seen:
                continue
            seen.add(key)
            kept.append(e)
            if len(kept) == self.n:
                break
        self.entries[latent] = kept
        if len(kept) == self.n:
            self.floor[latent] = kept[-1][0]


def _chunks(items: Iterable[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


# ----------------------------------------------------------------------------- token alignment


@dataclass
class _Occurrences:
    """Word occurrences of one backbone batch, aligned with its packed token states."""

    tok_occ: np.ndarray  # [T] occurrence index of each kept token, -1 when unaligned
    occ_doc: np.ndarray  # [n_occ] position of the text in the batch
    occ_span: np.ndarray  # [n_occ, 2] character span in the text
    occ_word: list[str]  # [n_occ] normalised surface word
    skipped: int  # texts whose tokenisation did not match the backbone's


def _align(backbone: Backbone, texts: Sequence[str], lengths: Sequence[int]) -> _Occurrences:
    """Map each kept token state of ``backbone.forward(texts)`` to a whole-word occurrence.

    The text is re-tokenised with the fast tokenizer (offsets and ``word_ids``), the backbone's
    keep rule is applied (special tokens, document prompt), and the count is checked against
    the backbone's: a text that disagrees is left unaligned (``-1``) and counted as skipped.
    """
    tok = backbone.tokenizer
    if not getattr(tok, "is_fast", False):
        raise LatentLexError(
            f"labelling needs a fast (Rust) tokenizer for word offsets; {backbone.name!r} has "
            f"{type(tok).__name__}"
        )
    prompt = backbone.document_prompt or ""
    special = set(tok.all_special_ids)
    # the prefixes the backbone itself read (same first tokens, bounded tokeniser input)
    texts, _ = backbone.cut_texts(list(texts))
    enc = tok(
        [prompt + t for t in texts],
        truncation=True,
        max_length=backbone.max_seq_length,
        return_offsets_mapping=True,
        add_special_tokens=True,
    )
    tok_occ_parts: list[np.ndarray] = []
    occ_doc: list[int] = []
    occ_span: list[tuple[int, int]] = []
    occ_word: list[str] = []
    skipped = 0
    plen = len(prompt)
    n_layers = len(backbone.layers)  # a backbone reading several layers repeats each token
    for i, text in enumerate(texts):
        ids = enc["input_ids"][i]
        offsets = enc["offset_mapping"][i]
        wids = enc.word_ids(i)
        n_rows = int(lengths[i])
        n_expected = n_rows // n_layers
        kept: list[int] = []
        for p, tid in enumerate(ids):
            is_special = tid in special
            if is_special and not backbone.keep_special_tokens:
                continue
            if not is_special and offsets[p][0] < plen:
                continue  # a prompt token
            kept.append(p)
        if len(kept) != n_expected or n_rows % n_layers:
            skipped += 1
            tok_occ_parts.append(np.full(n_rows, -1, dtype=np.int64))
            logger.debug("text %d: %d tokens here, %d in the backbone", i, len(kept), n_expected)
            continue
        tok_occ = np.empty(len(kept), dtype=np.int64)
        prev: int | None = None
        for j, p in enumerate(kept):
            w = wids[p]
            if w is None or w != prev:
                s, e = offsets[p]
                if w is None:
                    word = tok.convert_ids_to_tokens(ids[p])
                    s = e = 0
                else:
                    s, e = s - plen, e - plen
                    word = text[s:e].lower()
                occ_doc.append(i)
                occ_span.append((s, e))
                occ_word.append(word)
            else:
                s0 = occ_span[-1][0]
                e = offsets[p][1] - plen
                occ_span[-1] = (s0, e)
                occ_word[-1] = text[s0:e].lower()
            tok_occ[j] = len(occ_word) - 1
            prev = w
        tok_occ_parts.append(np.tile(tok_occ, n_layers))
    return _Occurrences(
        np.concatenate(tok_occ_parts) if tok_occ_parts else np.zeros(0, np.int64),
        np.asarray(occ_doc, dtype=np.int64),
        np.asarray(occ_span, dtype=np.int64).reshape(-1, 2),
        occ_word,
        skipped,
    )


# ----------------------------------------------------------------------------- statistics


class _TokenModeStats:
    """Streaming statistics of token mode (bounded memory)."""

    def __init__(self, width: int, n_examples: int, max_pairs: int, keep_words: int) -> None:
        self.width = width
        self.vocab: dict[str, int] = {}
        self.words: list[str] = []
        self.word_freq = np.zeros(1024, dtype=np.int64)
        self.fires = np.zeros(width, dtype=np.int64)
        self.doc_fires = np.zeros(width, dtype=np.int64)
        self.pair_keys = np.zeros(0, dtype=np.int64)
        self.pair_count = np.zeros(0, dtype=np.int64)
        self.pair_sum = np.zeros(0, dtype=np.float64)
        self._buf_keys: list[np.ndarray] = []
        self._buf_acts: list[np.ndarray] = []
        self._buffered = 0
        self.max_pairs = max_pairs
        self.keep_words = keep_words
        self.pruned = False
        self.top = _TopN(width, n_examples)
        self.n_tokens = 0
        self.n_docs = 0
        self.seq = 0

    def _word_ids(self, words: list[str]) -> np.ndarray:
        out = np.empty(len(words), dtype=np.int64)
        for i, w in enumerate(words):
            wid = self.vocab.get(w)
            if wid is None:
                wid = self.vocab[w] = len(self.words)
                self.words.append(w)
            out[i] = wid
        if len(self.words) > self.word_freq.size:
            grown = np.zeros(max(len(self.words), 2 * self.word_freq.size), dtype=np.int64)
            grown[: self.word_freq.size] = self.word_freq
            self.word_freq = grown
        return out

    def update(
        self,
        acts: np.ndarray,
        latents: np.ndarray,
        lengths: np.ndarray,
        occ: _Occurrences,
        texts: Sequence[str],
        doc_ids: Sequence[str],
    ) -> None:
        t, k = acts.shape
        n = lengths.size
        self.n_tokens += t
        self.n_docs += n
        active = acts > 0
        self.fires += np.bincount(latents[active], minlength=self.width)
        tok_doc = np.repeat(np.arange(n), lengths)
        doc_keys = np.unique((tok_doc[:, None] * self.width + latents)[active])
        self.doc_fires += np.bincount(doc_keys % self.width, minlength=self.width)
        if not occ.occ_word:
            return
        wids = self._word_ids(occ.occ_word)
        self.word_freq[: wids.max() + 1] += np.bincount(wids)
        flat_occ = np.repeat(occ.tok_occ, k)
        flat_lat = latents.reshape(-1)
        flat_act = acts.reshape(-1)
        ok = (flat_act > 0) & (flat_occ >= 0)
        keys, best = _group_max(flat_occ[ok] * self.width + flat_lat[ok], flat_act[ok])
        occ_id = keys // self.width
        lat = keys % self.width
        self._buf_keys.append((lat << 32) | wids[occ_id])
        self._buf_acts.append(best.astype(np.float64))
        self._buffered += keys.size
        if self._buffered > 1_000_000:
            self._merge()
        # examples: the strongest occurrences of each latent
        cand = self.top.candidates(lat, best)
        if cand.size:
            grouped: dict[int, list[tuple[float, int, Any]]] = {}
            c_occ = occ_id[cand].tolist()
            c_doc = occ.occ_doc[occ_id[cand]].tolist()
            c_span = occ.occ_span[occ_id[cand]].tolist()
            for o, d, (s, e), j, act in zip(
                c_occ, c_doc, c_span, lat[cand].tolist(), best[cand].tolist(), strict=True
            ):
                # texts are not kept: a window around the word, cut into a snippet at the end
                a = max(0, s - _WINDOW - 20)
                window = (texts[d][a : e + _WINDOW + 20], s - a, e - a, a > 0)
                ident = (doc_ids[d], occ.occ_word[o])
                grouped.setdefault(j, []).append((act, self.seq + o, (ident, window)))
            for j, items in grouped.items():
                self.top.push(j, items)
        self.seq += len(occ.occ_word)

    def _merge(self) -> None:
        if not self._buf_keys:
            return
        keys = np.concatenate([self.pair_keys, *self._buf_keys])
        counts = np.concatenate(
            [self.pair_count, *(np.ones(b.size, np.int64) for b in self._buf_keys)]
        )
        sums = np.concatenate([self.pair_sum, *self._buf_acts])
        self._buf_keys, self._buf_acts, self._buffered = [], [], 0
        uniq, inv = np.unique(keys, return_inverse=True)
        self.pair_keys = uniq
        self.pair_count = np.bincount(inv, weights=counts, minlength=uniq.size).astype(np.int64)
        self.pair_sum = np.bincount(inv, weights=sums, minlength=uniq.size).astype(np.float64)
        if self.pair_keys.size > self.max_pairs:
            self._prune()

    def _prune(self) -> None:
        """Keep the ``keep_words`` strongest words of each latent (approximate heavy hitters)."""
        lat = self.pair_keys >> 32
        order = np.lexsort((-self.pair_sum, lat))
        lat_sorted = lat[order]
        starts = np.flatnonzero(np.r_[True, lat_sorted[1:] != lat_sorted[:-1]])
        rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
        keep = np.sort(order[rank < self.keep_words])
        self.pair_keys = self.pair_keys[keep]
        self.pair_count = self.pair_count[keep]
        self.pair_sum = self.pair_sum[keep]
        self.pruned = True

    def finish(self, n_top_words: int, label_words: int) -> dict[int, LatentLabel]:
        self._merge()
        out: dict[int, LatentLabel] = {}
        lat = self.pair_keys >> 32
        wid = self.pair_keys & 0xFFFFFFFF
        # total activation x precision, the precision shrunk towards 0 for rare words
        score = self.pair_sum * (self.pair_count / (self.word_freq[wid] + 1))
        order = np.lexsort((wid, -self.pair_count, -score, lat))
        lat_sorted = lat[order]
        starts: list[int] = []
        if order.size:
            starts = np.flatnonzero(np.r_[True, lat_sorted[1:] != lat_sorted[:-1]]).tolist()
        bounds = [*starts, order.size]
        n_tok = max(self.n_tokens, 1)
        n_doc = max(self.n_docs, 1)
        w_list = wid[order].tolist()
        c_list = self.pair_count[order].tolist()
        m_list = (self.pair_sum[order] / self.pair_count[order]).tolist()
        for a, b in pairwise(bounds):
            j = int(lat_sorted[a])
            words = [
                (self.words[w_list[r]], c_list[r], m_list[r])
                for r in range(a, min(b, a + n_top_words))
            ]
            out[j] = LatentLabel(
                label=_label_from(words, label_words),
                top_words=words,
                examples=_examples(self.top.entries.get(j, [])),
                frequency=float(self.fires[j]) / n_tok,
                doc_frequency=float(self.doc_fires[j]) / n_doc,
            )
        for j in np.flatnonzero(self.fires).tolist():  # fired only on unaligned texts
            if j not in out:
                out[j] = LatentLabel(
                    "(no words)",
                    frequency=float(self.fires[j]) / n_tok,
                    doc_frequency=float(self.doc_fires[j]) / n_doc,
                )
        return dict(sorted(out.items()))


def _examples(entries: list[tuple[float, int, Any]]) -> list[dict[str, Any]]:
    out = []
    for act, _, payload in entries:
        (doc, _word), (text, s, e, cut) = payload
        snip, a, b = _snippet(text, s, e, _WINDOW)
        if cut and not snip.startswith("…"):
            snip, a, b = "…" + snip, a + 1, b + 1
        out.append({"text": snip, "start": a, "end": b, "act": round(act, _ROUND), "doc": doc})
    return out


class _PooledModeStats:
    """Streaming statistics of pooled mode: top texts per latent, then c-TF-IDF words."""

    def __init__(self, width: int, n_class_docs: int) -> None:
        self.width = width
        self.fires = np.zeros(width, dtype=np.int64)
        self.top = _TopN(width, n_class_docs)
        self.word_freq: Counter[str] = Counter()
        self.doc_words: dict[int, Counter[str]] = {}
        self.n_docs = 0
        self.n_words = 0

    def update(
        self, acts: np.ndarray, latents: np.ndarray, texts: Sequence[str], doc_ids: Sequence[str]
    ) -> None:
        n = acts.shape[0]
        active = acts > 0
        keys = np.unique((np.arange(n)[:, None] * self.width + latents)[active])
        self.fires += np.bincount(keys % self.width, minlength=self.width)
        counters = [Counter(m.lower() for m in _WORD_RE.findall(t)) for t in texts]
        for c in counters:
            self.word_freq.update(c)
            self.n_words += sum(c.values())
        rows = np.repeat(np.arange(n), acts.shape[1])[active.reshape(-1)]
        lat = latents[active]
        val = acts[active].astype(np.float64)
        cand = self.top.candidates(lat, val)
        grouped: dict[int, list[tuple[float, int, Any]]] = {}
        for c in cand.tolist():
            r = int(rows[c])
            seq = self.n_docs + r
            grouped.setdefault(int(lat[c]), []).append(
                (float(val[c]), seq, (seq, doc_ids[r], texts[r][:400]))
            )
            self.doc_words.setdefault(seq, counters[r])
        for j, items in grouped.items():
            self.top.push(j, items)
        self.n_docs += n
        if len(self.doc_words) > 4 * self.width * max(self.top.n, 1):
            self._gc()

    def _gc(self) -> None:
        live = {e[1] for lst in self.top.entries.values() for e in lst}
        self.doc_words = {s: c for s, c in self.doc_words.items() if s in live}

    def finish(self, n_top_words: int, label_words: int, n_examples: int) -> dict[int, LatentLabel]:
        self._gc()
        n_doc = max(self.n_docs, 1)
        sizes = [
            sum(sum(self.doc_words[e[1]].values()) for e in lst)
            for lst in self.top.entries.values()
        ]
        avg_class = (sum(sizes) / len(sizes)) if sizes else 1.0
        out: dict[int, LatentLabel] = {}
        for j in np.flatnonzero(self.fires).tolist():
            entries = self.top.entries.get(j, [])
            tf: dict[str, float] = {}
            docs_with: dict[str, list[float]] = {}
            for act, seq, _ in entries:
                for w, c in self.doc_words[seq].items():
                    tf[w] = tf.get(w, 0.0) + act * c
                    docs_with.setdefault(w, []).append(act)
            total = sum(tf.values()) or 1.0
            scored = sorted(
                ((-(tf[w] / total) * math.log(1 + avg_class / self.word_freq[w]), w) for w in tf),
            )
            words = [
                (w, len(docs_with[w]), float(np.mean(docs_with[w])))
                for _, w in scored[:n_top_words]
            ]
            examples = [
                {
                    "text": text + ("…" if len(text) == 400 else ""),
                    "start": 0,
                    "end": 0,
                    "act": round(act, _ROUND),
                    "doc": doc,
                }
                for act, _, (_, doc, text) in entries[:n_examples]
            ]
            freq = float(self.fires[j]) / n_doc
            out[j] = LatentLabel(
                _label_from(words, label_words), words, examples, freq, doc_frequency=freq
            )
        return out


# ----------------------------------------------------------------------------- entry points


def _as_encoder(
    sae: SparseAutoencoder | LatentTermEncoder | str | os.PathLike[str],
    backbone: Backbone | str | None,
) -> LatentTermEncoder:
    if isinstance(sae, LatentTermEncoder):
        return sae
    return LatentTermEncoder(sae, backbone)


def label_latents(
    sae: SparseAutoencoder | LatentTermEncoder | str | os.PathLike[str],
    texts: Iterable[str],
    backbone: Backbone | str | None = None,
    *,
    doc_ids: Iterable[str] | None = None,
    max_docs: int | None = None,
    top_words: int = 10,
    label_words: int = 3,
    n_examples: int = 8,
    class_docs: int = 20,
    batch_size: int = 32,
    block_size: int = 2048,
    max_pairs: int = 2_000_000,
    keep_words: int = 256,
    progress: bool = False,
) -> LatentLabels:
    """Label every latent that fires on ``texts`` (no LLM).

    Args:
        sae: an SAE, an SAE folder / Hub id, or a :class:`~latentlex.terms.LatentTermEncoder`.
        texts: the corpus (any iterable: it is streamed in blocks of ``block_size``).
        backbone: the backbone (default: the one the SAE names).
        doc_ids: ids of the texts (default: their positions) shown with the examples.
        max_docs: stop after this many texts.
        top_words: words kept per latent.
        label_words: words joined into the one-line label.
        n_examples: in-context snippets (token mode) or top texts (pooled mode) kept per latent.
        class_docs: pooled mode: top texts per latent that its c-TF-IDF words come from.
        batch_size: texts per backbone forward pass.
        block_size: texts read at a time (length-sorted inside a block).
        max_pairs: (latent, word) pairs held before pruning to ``keep_words`` per latent.
        keep_words: words kept per latent when pruning.
        progress: show a progress bar.

    Returns:
        The labels, with ``meta`` recording the SAE fingerprint, mode and corpus counts.

    Example:
        >>> labels = label_latents("my-sae", ["Quokkas live on Rottnest."])  # doctest: +SKIP
        >>> sorted(labels.as_label_map().items())[:1]  # doctest: +SKIP
        [(17, 'quokkas / rottnest')]
    """
    for name, v in (
        ("top_words", top_words),
        ("label_words", label_words),
        ("batch_size", batch_size),
        ("block_size", block_size),
        ("keep_words", keep_words),
        ("max_pairs", max_pairs),
        ("class_docs", class_docs),
    ):
        if v < 1:
            raise ConfigError(f"{name} must be >= 1, got {v}")
    if n_examples < 0:
        raise ConfigError(f"n_examples must be >= 0, got {n_examples}")
    if max_docs is not None and max_docs < 1:
        raise ConfigError(f"max_docs must be >= 1 or None, got {max_docs}")
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of strings, not a single string")
    enc = _as_encoder(sae, backbone)
    model, bb = enc.sae, enc.backbone
    width, mode = model.cfg.width, model.cfg.mode
    ids_iter: Iterable[str] = doc_ids if doc_ids is not None else map(str, count())
    pairs: Iterable[tuple[str, str]] = zip(ids_iter, texts, strict=doc_ids is not None)
    if max_docs is not None:
        pairs = islice(pairs, max_docs)
    token_stats = (
        _TokenModeStats(width, n_examples, max_pairs, keep_words) if mode == "token" else None
    )
    pooled_stats = (
        _PooledModeStats(width, max(class_docs, n_examples)) if mode == "pooled" else None
    )
    skipped = 0
    bar = tqdm(desc="labelling", unit="doc", disable=not progress, leave=False)
    with torch.inference_mode():
        for block in _chunks(pairs, block_size):
            block_ids = [b[0] for b in block]
            block_texts = [b[1] for b in block]
            for pos, batch in bb.iter_batches(block_texts, batch_size=batch_size):
                b_texts = [block_texts[i] for i in pos]
                b_ids = [block_ids[i] for i in pos]
                if token_stats is not None:
                    out = model.encode(batch.token_states)
                    occ = _align(bb, b_texts, batch.lengths.tolist())
                    skipped += occ.skipped
                    token_stats.update(
                        out.top_acts.cpu().numpy(),
                        out.top_indices.cpu().numpy(),
                        batch.lengths.cpu().numpy(),
                        occ,
                        b_texts,
                        b_ids,
                    )
                else:
                    assert pooled_stats is not None
                    out = model.encode(batch.dense)
                    pooled_stats.update(
                        out.top_acts.cpu().numpy(), out.top_indices.cpu().numpy(), b_texts, b_ids
                    )
                bar.update(len(pos))
    bar.close()
    if skipped:
        logger.warning(
            "%d texts could not be aligned word by word with the backbone's tokens; their "
            "words were not counted",
            skipped,
        )
    if token_stats is not None:
        latents = token_stats.finish(top_words, label_words)
        n_docs, n_tokens = token_stats.n_docs, token_stats.n_tokens
        pruned = token_stats.pruned
    else:
        assert pooled_stats is not None
        latents = pooled_stats.finish(top_words, label_words, n_examples)
        n_docs, n_tokens, pruned = pooled_stats.n_docs, None, False
    if n_docs == 0:
        raise ConfigError("label_latents needs at least one text")
    from . import __version__

    meta = {
        "mode": mode,
        "width": width,
        "sae_fingerprint": model.fingerprint(),
        "backbone": bb.name,
        "n_docs": n_docs,
        "n_tokens": n_tokens,
        "skipped_docs": skipped,
        "pruned": pruned,
        "labelled": len(latents),
        "latentlex": __version__,
    }
    logger.info("labelled %d of %d latents from %d texts", len(latents), width, n_docs)
    return LatentLabels(latents, meta)


def label_sae(
    sae_dir: str | os.PathLike[str],
    corpus: str | os.PathLike[str] | Sequence[str],
    *,
    backbone: Backbone | str | None = None,
    keep_descriptions: bool = True,
    **options: Any,
) -> LatentLabels:
    """Label the SAE in folder ``sae_dir`` from ``corpus`` and write ``sae_dir/labels.json``.

    Args:
        sae_dir: the SAE folder (``cfg.json`` + ``sae.safetensors``).
        corpus: a corpus path (see :func:`~latentlex.corpus.read_corpus`) or a list of texts.
        backbone: the backbone (default: the one the SAE names).
        keep_descriptions: keep the LLM descriptions of an existing ``labels.json`` written for
            the same SAE weights.
        **options: passed to :func:`label_latents` (``max_docs``, ``top_words``, ...).

    Example:
        >>> label_sae("my-sae", "data/scifact", max_docs=2000)  # doctest: +SKIP
    """
    folder = Path(sae_dir)
    sae = SparseAutoencoder.load(folder)
    ids: Iterable[str] | None = options.pop("doc_ids", None)
    texts: Iterable[str]
    if isinstance(corpus, str | os.PathLike):
        if ids is not None:
            raise ConfigError("doc_ids come from the corpus file; pass them only with a text list")
        from .corpus import read_corpus

        docs = read_corpus(corpus)
        max_docs = options.get("max_docs")
        if max_docs is not None:
            docs = islice(docs, max_docs)
        listed = list(docs)
        ids, texts = [d.id for d in listed], [d.text for d in listed]
    else:
        texts = corpus
    labels = label_latents(sae, texts, backbone, doc_ids=ids, **options)
    old_path = folder / LABELS_NAME
    if keep_descriptions and old_path.is_file():
        try:
            old = load_labels(old_path)
        except SAEFormatError as e:
            logger.warning("not keeping descriptions: %s", e)
        else:
            if old.meta.get("sae_fingerprint") == labels.meta["sae_fingerprint"]:
                kept = 0
                for j, lab in labels.latents.items():
                    if j in old.latents and old.latents[j].description:
                        lab.description = old.latents[j].description
                        kept += 1
                if kept:
                    logger.info("kept %d LLM descriptions from the previous labels", kept)
    labels.save(folder)
    return labels
