"""Token states of a corpus on disk: encode once, train and calibrate many times.

A 50k-document corpus has ~10 GB of fp16 token states: they are streamed to a flat file as they are
computed and read back as a memory map, so no step holds them all in memory.

Folder layout (all plain arrays + JSON, no pickle)::

    tokens.f16      raw float16 [total_tokens, d]
    dense.npy       float32 [n_docs, d] (the backbone's pooled vectors)
    offsets.npy     int64 [n_docs + 1]: document i owns tokens[offsets[i]:offsets[i+1]]
    doc_ids.json    the document ids, in stored order
    meta.json       backbone name and fingerprint, dim, options, corpus hash, counts (written last)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .backbone import Backbone, check_texts
from .errors import LatentLexError
from .safeio import read_json_capped

logger = logging.getLogger(__name__)

__all__ = [
    "TokenStates",
    "corpus_hash",
    "encode_token_states",
    "model_slug",
    "states_folder_name",
]

_FORMAT = 1
#: Size cap of a token-state folder's ``doc_ids.json`` (tens of millions of ids).
_MAX_IDS_BYTES = 4 << 30


def corpus_hash(ids: Sequence[str], texts: Sequence[str]) -> str:
    """A short hash of a corpus' ids and texts (for cache keys)."""
    h = hashlib.sha256()
    for i, t in zip(ids, texts, strict=True):
        h.update(i.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\1")
    return h.hexdigest()[:16]


@dataclass
class TokenStates:
    """Read-only view of an encoded corpus folder."""

    path: Path
    tokens: np.ndarray  # memmap float16 [T, d]
    dense: np.ndarray  # float32 [n, d]
    offsets: np.ndarray  # int64 [n + 1]
    doc_ids: list[str]
    meta: dict[str, Any]

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> TokenStates:
        p = Path(path)
        meta_file = p / "meta.json"
        if not meta_file.is_file():
            raise LatentLexError(f"{p}: not a complete token-state folder (meta.json missing)")
        meta = read_json_capped(meta_file, what="token-state record", error=LatentLexError)
        if not isinstance(meta, dict):
            raise LatentLexError(f"{meta_file}: not a token-state record")
        if meta.get("format") != _FORMAT:
            raise LatentLexError(f"{p}: token-state format {meta.get('format')} is not {_FORMAT}")
        d, total = int(meta["dim"]), int(meta["total_tokens"])
        tokens: np.ndarray
        if total:
            tokens = np.memmap(p / "tokens.f16", dtype=np.float16, mode="r", shape=(total, d))
        else:
            tokens = np.zeros((0, d), np.float16)
        offsets = np.load(p / "offsets.npy", allow_pickle=False)
        dense = np.load(p / "dense.npy", allow_pickle=False)
        doc_ids = read_json_capped(
            p / "doc_ids.json", max_bytes=_MAX_IDS_BYTES, what="id list", error=LatentLexError
        )
        return cls(p, tokens, dense, offsets, doc_ids, meta)

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def doc_range(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Packed tokens and lengths of stored documents ``start:stop``."""
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        return np.asarray(self.tokens[a:b]), self.lengths[start:stop]


def model_slug(name: str) -> str:
    """A file-name-safe short name of a backbone: the last part of its name or path
    (``/models/all-mpnet-base-v2`` and ``sentence-transformers/all-mpnet-base-v2`` both give
    ``all-mpnet-base-v2``)."""
    last = str(name).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or "model"
    return re.sub(r"[^A-Za-z0-9._+-]", "_", last)[:80]


def states_folder_name(name: str, backbone: Backbone) -> str:
    """The cache folder name of a corpus' token states as ``backbone`` reads them: ``name``, plus
    the model's short name when it is not the default backbone (``scifact-all-mpnet-base-v2``),
    ``-special`` when special tokens are kept and ``-L{layers}`` when not the final layer alone
    (``scifact``, ``scifact-L1``, ``scifact-Lfinal+1``), so that SAEs reading different models or
    layers never overwrite each other's cache."""
    from .backbone import DEFAULT_MODEL

    parts = [name]
    if backbone.name != DEFAULT_MODEL:
        parts.append(model_slug(backbone.name))
    if backbone.keep_special_tokens:
        parts.append("special")
    if backbone.layer is not None:
        parts.append("L" + "+".join("final" if x is None else str(x) for x in backbone.layers))
    return "-".join(parts)


def encode_token_states(
    backbone: Backbone,
    ids: Sequence[str],
    texts: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    max_tokens: int | None = None,
    progress: bool = True,
    reuse: bool = True,
) -> TokenStates:
    """Encode a corpus once and write its token states and dense vectors to ``out_dir``.

    With ``reuse=True`` a complete folder made from the same backbone, options and corpus is opened as it
    is. ``max_tokens`` stops after that many token states (documents are kept whole).
    """
    texts = check_texts(texts)
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
    out = Path(out_dir)
    key = {
        "format": _FORMAT,
        "backbone": backbone.name,
        "backbone_fingerprint": backbone.fingerprint(),
        "dim": backbone.dim,
        "keep_special_tokens": backbone.keep_special_tokens,
        "layer": backbone.layer,
        "max_seq_length": backbone.max_seq_length,
        "corpus_hash": corpus_hash(ids, texts),
        "max_tokens": max_tokens,
    }
    if reuse and (out / "meta.json").is_file():
        try:
            cached = TokenStates.open(out)
            if all(cached.meta.get(k) == v for k, v in key.items()):
                logger.info("reusing token states in %s", out)
                return cached
        except (LatentLexError, OSError, ValueError, KeyError):
            pass
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    d = backbone.dim
    t0 = time.perf_counter()
    order = np.argsort([-len(t) for t in texts], kind="stable")
    total, truncated = 0, 0
    lengths: list[int] = []
    kept: list[int] = []
    dense_rows: list[np.ndarray] = []
    bar = tqdm(total=len(texts), desc="encoding", unit="doc", disable=not progress, leave=False)
    with (out / "tokens.f16").open("wb") as fh:
        for start in range(0, len(order), batch_size):
            pos = order[start : start + batch_size]
            batch = backbone.forward([texts[i] for i in pos])
            fh.write(batch.token_states.to("cpu").half().numpy().tobytes())
            total += int(batch.lengths.sum())
            truncated += batch.truncated
            lengths.extend(batch.lengths.tolist())
            kept.extend(pos.tolist())
            dense_rows.append(batch.dense.cpu().numpy().astype(np.float32))
            bar.update(len(pos))
            bar.set_postfix(tokens=total)
            if max_tokens is not None and total >= max_tokens:
                break
    bar.close()
    if truncated:
        logger.warning(
            "%d of %d documents were longer than %d tokens and were truncated",
            truncated,
            len(kept),
            backbone.max_seq_length,
        )
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    np.save(out / "offsets.npy", offsets)
    np.save(out / "dense.npy", np.concatenate(dense_rows) if dense_rows else np.zeros((0, d)))
    (out / "doc_ids.json").write_text(json.dumps([ids[i] for i in kept]))
    meta = {
        **key,
        "total_tokens": total,
        "n_docs": len(kept),
        "truncated": truncated,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return TokenStates.open(out)
