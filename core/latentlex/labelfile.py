"""``labels.json``: the labels of an SAE's latents, as data (:class:`LatentLabels`), read and written.

This module is the file format only; how labels are computed from a corpus is
:mod:`latentlex.labels`. It imports nothing else of latentlex's, so the SAE model can attach
the labels of its folder when it loads (:meth:`~latentlex.sae.SparseAutoencoder.load`).

Layout::

    {"format": 1, "meta": {...}, "latents": {"123": {"label": "quokkas / tapirs / otters",
     "top_words": [["quokkas", 3, 1.52], ...], "examples": [{"text": ..., "start": ..., "end": ...,
     "act": ..., "doc": ...}], "frequency": 0.0012, "doc_frequency": 0.06, "description": null}}}
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SAEFormatError
from .safeio import MAX_LABELS_BYTES, read_json_capped, resolve_inside

__all__ = [
    "LABELS_FORMAT",
    "LABELS_NAME",
    "LatentLabel",
    "LatentLabels",
    "load_labels",
    "read_label_map",
]

logger = logging.getLogger(__name__)

LABELS_NAME = "labels.json"
LABELS_FORMAT = 1
_ROUND = 5


# ----------------------------------------------------------------------------- data model


@dataclass
class LatentLabel:
    """What is known about one latent.

    Attributes:
        label: a one-line label from its top words (``"quokkas / tapirs / otters"``).
        top_words: ``(word, count, mean activation)``, best first.
        examples: strongest occurrences: ``{"text", "start", "end", "act", "doc"}`` (``start:end``
            is the word inside ``text``; both 0 in pooled mode).
        frequency: share of token states (token mode) or texts (pooled mode) it fires on.
        doc_frequency: share of texts it fires on at least once.
        description: a short LLM description (see :mod:`latentlex.describe`), or None.
    """

    label: str
    top_words: list[tuple[str, int, float]] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    frequency: float = 0.0
    doc_frequency: float | None = None
    description: str | None = None

    @property
    def display(self) -> str:
        """The description when there is one, else the label."""
        return self.description or self.label

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "top_words": [[w, int(c), round(float(a), _ROUND)] for w, c, a in self.top_words],
            "examples": self.examples,
            "frequency": round(float(self.frequency), 8),
            "doc_frequency": None
            if self.doc_frequency is None
            else round(float(self.doc_frequency), 8),
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatentLabel:
        if not isinstance(d, dict) or not isinstance(d.get("label"), str):
            raise ValueError("each latent needs a string 'label'")
        words = []
        for item in d.get("top_words") or []:
            if not isinstance(item, list | tuple) or len(item) != 3:
                raise ValueError(f"top_words entries are [word, count, mean_act], got {item!r}")
            words.append((str(item[0]), int(item[1]), float(item[2])))
        examples = d.get("examples") or []
        if not isinstance(examples, list):
            raise ValueError("'examples' must be a list")
        desc = d.get("description")
        if desc is not None and not isinstance(desc, str):
            raise ValueError("'description' must be a string or null")
        dfreq = d.get("doc_frequency")
        return cls(
            label=d["label"],
            top_words=words,
            examples=[e if isinstance(e, dict) else {"text": str(e)} for e in examples],
            frequency=float(d.get("frequency") or 0.0),
            doc_frequency=None if dfreq is None else float(dfreq),
            description=desc,
        )


@dataclass
class LatentLabels:
    """Labels of an SAE's latents (only latents seen firing have an entry).

    Example:
        >>> labels = LatentLabels({3: LatentLabel("quokkas / tapirs")})
        >>> labels.as_label_map()
        {3: 'quokkas / tapirs'}
    """

    latents: dict[int, LatentLabel] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.latents)

    def __contains__(self, latent: object) -> bool:
        return latent in self.latents

    def __getitem__(self, latent: int) -> LatentLabel:
        return self.latents[latent]

    def __iter__(self) -> Iterator[int]:
        return iter(self.latents)

    def as_label_map(self, *, prefer_description: bool = True) -> dict[int, str]:
        """``{latent id: text}`` for :class:`~latentlex.index.LatentIndex` (its ``labels``).

        Args:
            prefer_description: use the LLM description where there is one.
        """
        return {
            j: (lab.display if prefer_description else lab.label) for j, lab in self.latents.items()
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": LABELS_FORMAT,
            "meta": self.meta,
            "latents": {str(j): self.latents[j].to_dict() for j in sorted(self.latents)},
        }

    @classmethod
    def from_dict(cls, d: Any, source: str = "labels") -> LatentLabels:
        """Parse the ``labels.json`` structure.

        Raises:
            SAEFormatError: the structure is not a labels file this latentlex reads.
        """
        if not isinstance(d, dict) or not isinstance(d.get("latents"), dict):
            raise SAEFormatError(f"{source}: expected an object with a 'latents' object")
        version = d.get("format", LABELS_FORMAT)
        if not isinstance(version, int) or version < 1 or version > LABELS_FORMAT:
            raise SAEFormatError(
                f"{source}: labels format {version!r} is not supported (this latentlex reads "
                f"1..{LABELS_FORMAT}); upgrade latentlex"
            )
        latents: dict[int, LatentLabel] = {}
        for key, value in d["latents"].items():
            try:
                j = int(key)
                if j < 0:
                    raise ValueError("latent ids are >= 0")
                latents[j] = LatentLabel.from_dict(value)
            except (TypeError, ValueError) as e:
                raise SAEFormatError(f"{source}: latent {key!r}: {e}") from None
        meta = d.get("meta")
        return cls(latents, dict(meta) if isinstance(meta, dict) else {})

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``labels.json`` (``path`` is the SAE folder or the file itself), atomically."""
        p = Path(path)
        if p.is_dir() or not p.suffix:
            p.mkdir(parents=True, exist_ok=True)
            p = p / LABELS_NAME
        tmp = p.with_name(p.name + ".tmp")
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=1)
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, p)
        return p


def _labels_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    # inside an SAE folder: a link out of the folder is refused (the folder is a sandbox)
    return resolve_inside(p, LABELS_NAME) if p.is_dir() else p


def load_labels(path: str | os.PathLike[str]) -> LatentLabels:
    """Read ``labels.json`` from an SAE folder (or the file's own path).

    Raises:
        SAEFormatError: the file is missing, not JSON, or not a labels file.

    Example:
        >>> labels = load_labels("my-sae")  # doctest: +SKIP
        >>> index.labels = labels.as_label_map()  # doctest: +SKIP
    """
    p = _labels_path(path)
    if not p.is_file():
        raise SAEFormatError(f"{p}: no labels file; create one with `latentlex label`")
    data = read_json_capped(p, max_bytes=MAX_LABELS_BYTES, what="labels file")
    return LatentLabels.from_dict(data, str(p))


def read_label_map(folder: str | os.PathLike[str]) -> dict[int, str]:
    """``load_labels(folder).as_label_map()``, or ``{}`` when the folder has no (valid) labels.

    Meant for :meth:`SparseAutoencoder.load`: a broken ``labels.json`` is logged, never fatal.
    """
    p = _labels_path(folder)
    if not p.is_file():
        return {}
    try:
        return load_labels(p).as_label_map()
    except SAEFormatError as e:
        logger.warning("ignoring latent labels: %s", e)
        return {}
