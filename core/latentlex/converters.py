"""Load SAE folders of other libraries as latentlex :class:`~latentlex.sae.SparseAutoencoder`.

A registry maps a format name to a :class:`Converter`; :func:`detect_format` picks one from the
folder's ``cfg.json``. Every converter declares the tensors it needs and their shapes; shapes and
sizes are checked from ``cfg.json`` and the safetensors header *before* any tensor is read, and
the result is rewritten into latentlex's own form
``z = TopK_k(ReLU(W_enc (x - b_dec) + b_enc))``, ``x_hat = W_dec^T z + b_dec``.

Formats:

- ``latentlex``: our own folder (``cfg.json`` + ``sae.safetensors``), loaded as is.
- ``sparsify`` (EleutherAI/sparsify and the older EleutherAI/sae): ``cfg.json`` (``d_in``,
  ``expansion_factor``/``num_latents``, ``k``) + ``sae.safetensors`` with ``encoder.weight``
  ``[width, d]``, ``encoder.bias``, ``W_dec`` ``[width, d]``, ``b_dec``. Token mode by default.
- ``latentsae`` (enjalot/latent-sae): the same layout, trained on *pooled* sentence embeddings,
  so it loads in pooled mode. ``mean_center`` is folded exactly into ``b_dec``
  (``b_dec + input_mean``); ``batchtopk`` keeps its learned threshold.
- ``saelens`` (SAELens TopK): ``cfg.json`` (``d_in``, ``d_sae``, ``architecture``/
  ``activation_fn`` ``topk`` with ``k``) + ``sae_weights.safetensors`` with ``W_enc`` ``[d, width]``
  (transposed), ``b_enc``, ``W_dec`` ``[width, d]``, ``b_dec``.
  ``apply_b_dec_to_input=False`` and ``rescale_acts_by_decoder_norm=True`` are folded exactly.

Converted SAEs carry no calibrated ``avgdl``: documents cannot be BM25-weighted until
``LatentTermEncoder(sae).calibrate_avgdl(texts)`` has run on a sample of the corpus (queries work
at once).

Example:
    >>> from latentlex.converters import detect_format
    >>> detect_format({"d_in": 384, "d_sae": 3072, "architecture": "topk", "k": 32},
    ...               ["cfg.json", "sae_weights.safetensors"])
    'saelens'
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from .errors import BackboneMismatchError, ConfigError, SAEFormatError
from .sae import (
    MAX_D_IN,
    MAX_WIDTH,
    SAE_CONFIG_NAME,
    SAE_WEIGHTS_NAME,
    SAEConfig,
    SparseAutoencoder,
)

__all__ = [
    "CONVERTERS",
    "KNOWN_DIMS",
    "MODE_DEFAULTS",
    "NATIVE_FORMAT",
    "PICKLE_SUFFIXES",
    "Converted",
    "Converter",
    "LatentSAEConverter",
    "SAELensConverter",
    "SparsifyConverter",
    "check_dims",
    "detect_format",
    "format_dims",
    "load_folder",
    "max_weights_bytes",
    "read_json",
    "register_converter",
    "weights_name",
]

logger = logging.getLogger(__name__)

NATIVE_FORMAT = "latentlex"
LABELS_NAME = "labels.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
"""Weight files that need unpickling (able to run arbitrary code): never loaded."""
MAX_JSON_BYTES = 1 << 20
"""A ``cfg.json`` larger than this is refused before parsing."""

MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Latent Terms (Clavié et al. 2026): BM25 over sqrt of summed token activations.
    "token": {"bm25_k1": 1.2, "bm25_b": 0.75, "query_k2": None, "doc_max_terms": None},
    # CL-SR (Park et al. 2025) saturation; every active latent of a document is kept.
    "pooled": {"bm25_k1": 0.6, "bm25_b": 2.0, "query_k2": 1.5, "doc_max_terms": None},
}
"""Retrieval parameters given to a converted SAE, by mode."""

_FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


# ----------------------------------------------------------------------------- small helpers


def read_json(path: Path, what: str = "config") -> dict[str, Any]:
    """Parse a small JSON object file, refusing anything over 1 MiB or not an object."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise SAEFormatError(f"{path}: cannot read the {what} ({e.strerror})") from None
    if size > MAX_JSON_BYTES:
        raise SAEFormatError(
            f"{path}: {size} bytes is far too large for an SAE {what} (limit {MAX_JSON_BYTES})"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SAEFormatError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise SAEFormatError(f"{path}: must hold a JSON object, got {type(data).__name__}")
    return data


def _int_field(cfg: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = cfg.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"cfg.json field {key!r} must be a non-negative int, got {value!r}")
    return value


def check_dims(d_in: int, width: int, k: int | None = None) -> None:
    """Refuse sizes latentlex will not allocate (checked before any tensor is read).

    Raises:
        SAEFormatError: ``d_in`` outside ``[1, MAX_D_IN]``, ``width`` outside ``[1, MAX_WIDTH]``
            or ``k`` outside ``[1, width]``.
    """
    if not 0 < d_in <= MAX_D_IN:
        raise SAEFormatError(f"cfg.json claims d_in={d_in}; latentlex accepts 1..{MAX_D_IN}")
    if not 0 < width <= MAX_WIDTH:
        raise SAEFormatError(
            f"cfg.json claims width={width} latents; latentlex accepts 1..{MAX_WIDTH} "
            "(refused before allocating anything)"
        )
    if k is not None and not 0 < k <= width:
        raise SAEFormatError(f"cfg.json claims k={k}; it must be in 1..width={width}")


def max_weights_bytes(d_in: int, width: int) -> int:
    """An upper bound on an honest weights file for these sizes (fp64, a few extra vectors)."""
    return 8 * (2 * width * d_in + 4 * width + 4 * d_in) + (16 << 20)


# ----------------------------------------------------------------------------- converters


@dataclass
class Converted:
    """A foreign SAE rewritten into latentlex's parametrisation (tensors fp32, ``[width, d]``)."""

    W_enc: Tensor
    b_enc: Tensor
    W_dec: Tensor
    b_dec: Tensor
    k: int
    architecture: str = "topk"
    threshold: float | None = None
    max_active: int | None = None
    backbone: str | None = None
    """The backbone named by the source config, if any."""
    notes: list[str] = field(default_factory=list)


class Converter:
    """One foreign SAE format. Subclass, set the class attributes, and :func:`register_converter`.

    The loader calls :meth:`dims` (and refuses sizes over the limits), then checks the weights
    file against :meth:`tensor_shapes` from its header, reads the tensors and calls :meth:`convert`.
    """

    name: ClassVar[str]
    weights_name: ClassVar[str] = SAE_WEIGHTS_NAME
    default_mode: ClassVar[str] = "token"
    description: ClassVar[str] = ""

    def detect(self, cfg: Mapping[str, Any], files: Collection[str]) -> bool:
        """Whether a folder with this ``cfg.json`` and these file names is in this format."""
        raise NotImplementedError

    def layout_matches(self, cfg: Mapping[str, Any], files: Collection[str]) -> bool:
        """Whether the files could be in this format (used with a hint, e.g. a known repo)."""
        return self.detect(cfg, files)

    def dims(self, cfg: Mapping[str, Any]) -> tuple[int, int]:
        """``(d_in, width)`` claimed by the config."""
        raise NotImplementedError

    def tensor_shapes(
        self, cfg: Mapping[str, Any], d_in: int, width: int
    ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
        """``(required, optional)`` tensor names and shapes in the weights file."""
        raise NotImplementedError

    def validate(self, cfg: Mapping[str, Any]) -> None:
        """Refuse unsupported variants from the config alone (before any tensor is read)."""

    def convert(
        self, cfg: Mapping[str, Any], tensors: dict[str, Tensor], d_in: int, width: int
    ) -> Converted:
        """Rewrite the tensors (already shape-checked, fp32) into latentlex's form."""
        raise NotImplementedError


CONVERTERS: dict[str, Converter] = {}
"""Registry: format name -> converter, in detection order."""


def register_converter(converter: Converter) -> Converter:
    """Add a converter to :data:`CONVERTERS` (its ``name`` is the key)."""
    if converter.name == NATIVE_FORMAT:
        raise ConfigError(f"{NATIVE_FORMAT!r} is the native format and cannot be replaced")
    CONVERTERS[converter.name] = converter
    return converter


def _is_native(cfg: Mapping[str, Any]) -> bool:
    return (
        "width" in cfg
        and "d_in" in cfg
        and any(key in cfg for key in ("format_version", "backbone", "mode"))
    )


def detect_format(cfg: Mapping[str, Any], files: Collection[str], hint: str | None = None) -> str:
    """Name of the format of a folder holding ``files`` with this ``cfg.json``.

    Args:
        cfg: the parsed ``cfg.json``.
        files: file names in the folder.
        hint: a format name to prefer when the config alone is ambiguous (e.g. the legacy
            EleutherAI layout shared by ``sparsify`` and ``latentsae``).

    Raises:
        SAEFormatError: no registered format recognises the folder.
    """
    if _is_native(cfg):
        return NATIVE_FORMAT
    if hint is not None and hint in CONVERTERS and CONVERTERS[hint].layout_matches(cfg, files):
        return hint
    for name, conv in CONVERTERS.items():
        if conv.detect(cfg, files):
            return name
    known = ", ".join([NATIVE_FORMAT, *CONVERTERS])
    raise SAEFormatError(
        f"unrecognised SAE format (cfg.json keys: {', '.join(sorted(cfg)[:12])}); "
        f"known formats: {known}"
    )


def weights_name(fmt: str) -> str:
    """The weights file name of a format."""
    if fmt == NATIVE_FORMAT:
        return SAE_WEIGHTS_NAME
    return _converter(fmt).weights_name


def format_dims(fmt: str, cfg: Mapping[str, Any]) -> tuple[int, int]:
    """``(d_in, width)`` a config of format ``fmt`` claims."""
    if fmt == NATIVE_FORMAT:
        return _int_field(cfg, "d_in"), _int_field(cfg, "width", 8192)
    return _converter(fmt).dims(cfg)


def _converter(fmt: str) -> Converter:
    conv = CONVERTERS.get(fmt)
    if conv is None:
        known = ", ".join([NATIVE_FORMAT, *CONVERTERS])
        raise ConfigError(f"unknown SAE format {fmt!r}; known formats: {known}")
    return conv


def _eleuther_dims(cfg: Mapping[str, Any]) -> tuple[int, int]:
    d_in = _int_field(cfg, "d_in")
    width = _int_field(cfg, "num_latents", 0) or d_in * _int_field(cfg, "expansion_factor", 32)
    return d_in, width


def _eleuther_shapes(d_in: int, width: int) -> dict[str, tuple[int, ...]]:
    return {
        "encoder.weight": (width, d_in),
        "encoder.bias": (width,),
        "W_dec": (width, d_in),
        "b_dec": (d_in,),
    }


class SparsifyConverter(Converter):
    """EleutherAI/sparsify (and EleutherAI/sae) TopK checkpoints.

    ``encode(x) = TopK(ReLU(encoder(x - b_dec)))``: the same function as latentlex's, so the
    tensors map one to one. Transcoders, skip connections and ``groupmax`` are refused.
    """

    name = "sparsify"
    description = "EleutherAI sparsify / sae: cfg.json + sae.safetensors (encoder.weight, W_dec)"

    def detect(self, cfg: Mapping[str, Any], files: Collection[str]) -> bool:
        return (
            "d_in" in cfg
            and "k" in cfg
            and ("expansion_factor" in cfg or "num_latents" in cfg)
            and "d_sae" not in cfg
            and self.weights_name in files
        )

    def dims(self, cfg: Mapping[str, Any]) -> tuple[int, int]:
        return _eleuther_dims(cfg)

    def tensor_shapes(
        self, cfg: Mapping[str, Any], d_in: int, width: int
    ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
        return _eleuther_shapes(d_in, width), {}

    def validate(self, cfg: Mapping[str, Any]) -> None:
        activation = cfg.get("activation", "topk")
        if activation != "topk":
            raise SAEFormatError(
                f"{self.name}: activation {activation!r} is not supported (only 'topk')"
            )
        for flag, why in (
            ("transcode", "a transcoder predicts another module's output, not its own input"),
            ("skip_connection", "latentlex SAEs have no linear skip connection"),
            ("signed", "signed activations cannot be latent-term weights"),
        ):
            if cfg.get(flag):
                raise SAEFormatError(f"{self.name}: {flag}=true is not supported ({why})")

    def convert(
        self, cfg: Mapping[str, Any], tensors: dict[str, Tensor], d_in: int, width: int
    ) -> Converted:
        return Converted(
            W_enc=tensors["encoder.weight"],
            b_enc=tensors["encoder.bias"],
            W_dec=tensors["W_dec"],
            b_dec=tensors["b_dec"],
            k=_int_field(cfg, "k"),
        )


class LatentSAEConverter(SparsifyConverter):
    """enjalot/latent-sae (``latentsae``): EleutherAI layout trained on pooled sentence embeddings.

    Loads in pooled mode. ``mean_center`` subtracts ``input_mean`` before the SAE and adds it back
    to the reconstruction, which is exactly ``b_dec + input_mean`` in latentlex's form. Supported
    ``sae_type``: ``topk``, ``batchtopk`` (learned threshold, at most ``k`` active) and
    ``matryoshka`` (inference keeps the last level's k).
    """

    name = "latentsae"
    default_mode = "pooled"
    description = "enjalot/latent-sae: sentence-embedding SAEs, one per subfolder such as 64_8"
    _MARKERS = ("sae_type", "mean_center", "use_skip", "skip_rank", "matryoshka_sizes")

    def detect(self, cfg: Mapping[str, Any], files: Collection[str]) -> bool:
        return super().detect(cfg, files) and any(key in cfg for key in self._MARKERS)

    def layout_matches(self, cfg: Mapping[str, Any], files: Collection[str]) -> bool:
        return super().detect(cfg, files)  # legacy configs carry no latentsae-only key

    def tensor_shapes(
        self, cfg: Mapping[str, Any], d_in: int, width: int
    ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
        required = _eleuther_shapes(d_in, width)
        optional: dict[str, tuple[int, ...]] = {"batchtopk_threshold": ()}
        if cfg.get("mean_center"):
            required["input_mean"] = (d_in,)
        return required, optional

    def validate(self, cfg: Mapping[str, Any]) -> None:
        sae_type = cfg.get("sae_type", "topk")
        if sae_type not in ("topk", "batchtopk", "matryoshka"):
            raise SAEFormatError(
                f"latentsae: sae_type {sae_type!r} is not supported "
                "(supported: topk, batchtopk, matryoshka)"
            )
        if cfg.get("use_skip"):
            raise SAEFormatError("latentsae: use_skip=true is not supported (no skip connection)")
        if cfg.get("signed"):
            raise SAEFormatError("latentsae: signed=true is not supported")

    def convert(
        self, cfg: Mapping[str, Any], tensors: dict[str, Tensor], d_in: int, width: int
    ) -> Converted:
        sae_type = cfg.get("sae_type", "topk")
        b_dec = tensors["b_dec"]
        notes = []
        if cfg.get("mean_center"):
            b_dec = b_dec + tensors["input_mean"]
            notes.append("mean_center folded into b_dec")
        k = _int_field(cfg, "k")
        if sae_type == "matryoshka":
            ks = [int(s) for s in str(cfg.get("matryoshka_ks", "")).split(",") if s.strip()]
            k = ks[-1] if ks else k
        out = Converted(
            W_enc=tensors["encoder.weight"],
            b_enc=tensors["encoder.bias"],
            W_dec=tensors["W_dec"],
            b_dec=b_dec,
            k=k,
            notes=notes,
        )
        if sae_type == "batchtopk":
            theta = tensors.get("batchtopk_threshold")
            value = float(theta) if theta is not None else float(cfg.get("batchtopk_threshold", 0))
            out.architecture, out.threshold, out.max_active = "batchtopk", max(value, 0.0), k
        return out


class SAELensConverter(Converter):
    """SAELens TopK SAEs (``cfg.json`` + ``sae_weights.safetensors``; ``W_enc`` is ``[d, width]``).

    SAELens computes ``h = (x - b_dec·apply_b_dec_to_input) @ W_enc + b_enc``, optionally scaled by
    the decoder row norms before TopK; both are folded exactly (``b_enc += b_dec @ W_enc``, rows of
    ``W_enc``/``b_enc`` times the norms, ``W_dec`` divided by them). Only
    ``normalize_activations='none'`` is accepted: the other settings need statistics not stored
    in the file.
    """

    name = "saelens"
    weights_name = "sae_weights.safetensors"
    description = "SAELens: cfg.json + sae_weights.safetensors (W_enc [d, width], topk)"

    def detect(self, cfg: Mapping[str, Any], files: Collection[str]) -> bool:
        return "d_sae" in cfg and "d_in" in cfg and self.weights_name in files

    def dims(self, cfg: Mapping[str, Any]) -> tuple[int, int]:
        return _int_field(cfg, "d_in"), _int_field(cfg, "d_sae")

    def tensor_shapes(
        self, cfg: Mapping[str, Any], d_in: int, width: int
    ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
        required = {
            "W_enc": (d_in, width),
            "b_enc": (width,),
            "W_dec": (width, d_in),
            "b_dec": (d_in,),
        }
        return required, {}

    @staticmethod
    def _k(cfg: Mapping[str, Any]) -> int:
        arch = cfg.get("architecture", "standard")
        act = cfg.get("activation_fn", cfg.get("activation_fn_str"))
        if arch != "topk" and act != "topk":
            raise SAEFormatError(
                f"saelens: architecture {arch!r} (activation {act!r}) is not supported; latentlex "
                "converts TopK SAELens SAEs only"
            )
        kwargs = cfg.get("activation_fn_kwargs") or {}
        k = cfg.get("k", kwargs.get("k") if isinstance(kwargs, dict) else None)
        if k is None:
            raise SAEFormatError("saelens: a topk config must give k")
        return _int_field({"k": k}, "k")

    def validate(self, cfg: Mapping[str, Any]) -> None:
        self._k(cfg)
        norm = cfg.get("normalize_activations", "none") or "none"
        if norm != "none":
            raise SAEFormatError(
                f"saelens: normalize_activations={norm!r} is not supported: it rescales inputs "
                "with statistics that are not in the file (fold them into the weights first)"
            )

    def convert(
        self, cfg: Mapping[str, Any], tensors: dict[str, Tensor], d_in: int, width: int
    ) -> Converted:
        k = self._k(cfg)
        w_enc = tensors["W_enc"].t().contiguous()  # [width, d]
        b_enc, w_dec, b_dec = tensors["b_enc"], tensors["W_dec"], tensors["b_dec"]
        notes = []
        if not cfg.get("apply_b_dec_to_input", True):
            b_enc = b_enc + w_enc @ b_dec
            notes.append("apply_b_dec_to_input=false folded into b_enc")
        if cfg.get("rescale_acts_by_decoder_norm"):
            n = w_dec.norm(dim=1).clamp_min(1e-8)
            w_enc, b_enc, w_dec = w_enc * n[:, None], b_enc * n, w_dec / n[:, None]
            notes.append("decoder norms folded into the encoder")
        meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
        for key in ("model_name", "hook_name"):
            value = cfg.get(key, meta.get(key) if meta else None)
            if value:
                notes.append(f"{key}={value}")
        return Converted(W_enc=w_enc, b_enc=b_enc, W_dec=w_dec, b_dec=b_dec, k=k, notes=notes)


register_converter(SAELensConverter())
register_converter(LatentSAEConverter())
register_converter(SparsifyConverter())


# ----------------------------------------------------------------------------- reading


def _read_tensors(
    path: Path,
    required: Mapping[str, tuple[int, ...]],
    optional: Mapping[str, tuple[int, ...]],
) -> dict[str, Tensor]:
    """Tensors of a safetensors file, shape-checked from its header before anything is read."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            missing = sorted(set(required) - keys)
            if missing:
                raise SAEFormatError(
                    f"{path}: missing tensors {missing} (holds {sorted(keys)[:10]})"
                )
            unknown = sorted(keys - set(required) - set(optional))
            if unknown:
                raise SAEFormatError(
                    f"{path}: unexpected tensors {unknown}: this variant is not supported"
                )
            for name in keys:
                sl = f.get_slice(name)
                shape = tuple(sl.get_shape())
                want = required.get(name, optional.get(name))
                if shape != want:
                    raise SAEFormatError(
                        f"{path}: tensor {name} has shape {shape} but cfg.json implies {want}"
                    )
                dtype = sl.get_dtype()
                if dtype not in _FLOAT_DTYPES:
                    raise SAEFormatError(f"{path}: tensor {name} has non-float dtype {dtype}")
            tensors = {name: f.get_tensor(name).float() for name in keys}
    except SAEFormatError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise SAEFormatError(f"{path}: corrupt or unreadable safetensors file ({e})") from None
    for name, t in tensors.items():
        if not bool(torch.isfinite(t).all()):
            raise SAEFormatError(f"{path}: tensor {name} holds NaN or infinite values")
    return tensors


def _refuse_missing(folder: Path, wanted: str) -> SAEFormatError:
    files = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    pickled = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickled:
        return SAEFormatError(
            f"{folder}: only pickled weights here ({', '.join(pickled[:5])}); latentlex loads "
            "safetensors + JSON only, because unpickling a file can run arbitrary code. "
            "Convert the checkpoint to safetensors with the library that wrote it."
        )
    subs = sorted(p.name for p in folder.iterdir() if (p / SAE_CONFIG_NAME).is_file())
    if subs:
        return SAEFormatError(
            f"{folder} holds several SAEs; pass subfolder= one of: {', '.join(subs[:30])}"
        )
    return SAEFormatError(f"{folder}: missing {wanted} (files: {', '.join(files[:10]) or 'none'})")


KNOWN_DIMS: dict[str, int] = {
    "all-MiniLM-L6-v2": 384,
    "sentence-transformers/all-MiniLM-L6-v2": 384,
    "BAAI/bge-small-en-v1.5": 384,
    "BAAI/bge-base-en-v1.5": 768,
    "BAAI/bge-large-en-v1.5": 1024,
    "nomic-ai/nomic-embed-text-v1.5": 768,
    "facebook/contriever": 768,
    "intfloat/e5-base-v2": 768,
}
"""Output dimensions of common backbones, checked when a backbone is named by string."""


def _resolve_backbone(
    sae_cfg: dict[str, Any], backbone: Any, named: str | None, fmt: str, notes: list[str]
) -> None:
    """Fill ``backbone``/``backbone_fingerprint`` of a converted config; check the dimension."""
    if backbone is not None and not isinstance(backbone, str):
        dim = int(backbone.dim)
        if dim != sae_cfg["d_in"]:
            raise BackboneMismatchError(
                f"backbone {backbone.name!r} has dimension {dim} but this {fmt} SAE expects "
                f"d_in={sae_cfg['d_in']}"
            )
        sae_cfg["backbone"] = str(backbone.name)
        sae_cfg["backbone_fingerprint"] = backbone.fingerprint()
        return
    name = backbone if backbone is not None else named
    if name is None:
        extra = f" ({'; '.join(notes)})" if notes else ""
        raise ConfigError(
            f"this {fmt} SAE's config does not name the backbone it was trained on{extra}: pass "
            f"backbone='<sentence-transformers model>' (output dimension {sae_cfg['d_in']})"
        )
    expected = KNOWN_DIMS.get(name)
    if expected is not None and expected != sae_cfg["d_in"]:
        raise BackboneMismatchError(
            f"backbone {name!r} has dimension {expected} but this {fmt} SAE expects "
            f"d_in={sae_cfg['d_in']}"
        )
    sae_cfg["backbone"] = name


def _build(cfg: SAEConfig, conv: Converted, device: str | torch.device | None) -> SparseAutoencoder:
    sae = SparseAutoencoder(cfg, device="meta")
    state = {
        "W_enc": conv.W_enc.float().contiguous(),
        "b_enc": conv.b_enc.float().contiguous(),
        "W_dec": conv.W_dec.float().contiguous(),
        "b_dec": conv.b_dec.float().contiguous(),
    }
    sae.load_state_dict(state, assign=True)
    sae.eval()
    return sae.to(device) if device is not None else sae


def load_folder(
    folder: str | os.PathLike[str],
    *,
    sae_format: str | None = None,
    format_hint: str | None = None,
    backbone: Any = None,
    mode: str | None = None,
    device: str | torch.device | None = None,
) -> SparseAutoencoder:
    """Load an SAE folder of any registered format as a latentlex SAE.

    Args:
        folder: a folder holding ``cfg.json`` and the format's weights file.
        sae_format: force a format (see :data:`CONVERTERS`, or ``"latentlex"``).
        format_hint: a format preferred when the config alone is ambiguous.
        backbone: the backbone name (str) or a loaded :class:`~latentlex.backbone.Backbone`;
            required when a foreign config does not name it. A Backbone's dimension is checked
            now; a name's dimension is checked against :data:`KNOWN_DIMS` and again when a
            :class:`~latentlex.terms.LatentTermEncoder` is built.
        mode: ``"token"`` or ``"pooled"`` for a foreign SAE (default: the format's).
        device: where to put the weights.

    Raises:
        SAEFormatError: missing/corrupt files, pickled weights only, an unsupported variant,
            shapes that disagree with the config, or sizes over the limits.
        ConfigError: the backbone is needed but not named, or a bad ``mode``.
        BackboneMismatchError: the named backbone's dimension differs from the SAE's.

    Example:
        >>> sae = load_folder("sae-folder", backbone="all-MiniLM-L6-v2")  # doctest: +SKIP
    """
    root = Path(folder)
    if not root.is_dir():
        raise SAEFormatError(f"{root}: no such SAE folder")
    cfg_path = root / SAE_CONFIG_NAME
    if not cfg_path.is_file():
        raise _refuse_missing(root, SAE_CONFIG_NAME)
    raw = read_json(cfg_path)
    files = {p.name for p in root.iterdir()}
    if not any(name.endswith(".safetensors") for name in files):
        raise _refuse_missing(root, "safetensors weights")
    fmt = sae_format or detect_format(raw, files, format_hint)
    if mode is not None and mode not in MODE_DEFAULTS:
        raise ConfigError(f"mode must be one of {sorted(MODE_DEFAULTS)}, got {mode!r}")
    try:
        d_in, width = format_dims(fmt, raw)
    except ConfigError as e:
        raise SAEFormatError(f"{cfg_path}: {e}") from None
    check_dims(d_in, width)
    wname = weights_name(fmt)
    if not (root / wname).is_file():
        raise _refuse_missing(root, wname)
    if (root / wname).stat().st_size > max_weights_bytes(d_in, width):
        raise SAEFormatError(
            f"{root / wname}: {(root / wname).stat().st_size} bytes is more than cfg.json "
            f"(d_in={d_in}, width={width}) can explain"
        )
    if fmt == NATIVE_FORMAT:
        return _load_native(root, backbone=backbone, mode=mode, device=device)
    conv = _converter(fmt)
    try:
        conv.validate(raw)
    except (SAEFormatError, ConfigError) as e:
        raise SAEFormatError(f"{cfg_path}: {e}") from None
    required, optional = conv.tensor_shapes(raw, d_in, width)
    tensors = _read_tensors(root / wname, required, optional)
    out = conv.convert(raw, tensors, d_in, width)
    try:
        check_dims(d_in, width, out.k)
    except SAEFormatError as e:
        raise SAEFormatError(f"{cfg_path}: {e}") from None
    use_mode = mode or conv.default_mode
    sae_cfg: dict[str, Any] = {
        "d_in": d_in,
        "width": width,
        "k": out.k,
        "architecture": out.architecture,
        "mode": use_mode,
        "threshold": out.threshold,
        "max_active": out.max_active,
        "backbone_dim": d_in,
        **MODE_DEFAULTS[use_mode],
    }
    _resolve_backbone(sae_cfg, backbone, out.backbone, fmt, out.notes)
    norms = out.W_dec.norm(dim=1)
    if float((norms - 1).abs().max()) > 1e-3:
        logger.warning(
            "%s: decoder rows are not unit-norm (range %.3g..%.3g); kept as is (encode is exact)",
            root,
            float(norms.min()),
            float(norms.max()),
        )
    try:
        cfg = SAEConfig.from_dict(sae_cfg)
    except ConfigError as e:
        raise SAEFormatError(f"{cfg_path}: cannot convert this {fmt} SAE ({e})") from None
    sae = _build(cfg, out, device)
    logger.info(
        "converted %s SAE from %s: %s, width %d, k %d, %s mode%s",
        fmt,
        root,
        out.architecture,
        width,
        out.k,
        use_mode,
        f" ({'; '.join(out.notes)})" if out.notes else "",
    )
    logger.warning(
        "converted SAEs carry no calibrated avgdl: run "
        "LatentTermEncoder(sae).calibrate_avgdl(sample_of_your_documents) before encoding "
        "documents (queries work without it)"
    )
    return sae


def _load_native(
    root: Path, *, backbone: Any, mode: str | None, device: str | torch.device | None
) -> SparseAutoencoder:
    sae = SparseAutoencoder.load(root, device=device)
    if mode is not None and mode != sae.cfg.mode:
        raise ConfigError(
            f"{root}: this SAE was trained in {sae.cfg.mode} mode; it cannot be used in {mode} mode"
        )
    if isinstance(backbone, str):
        if backbone != sae.cfg.backbone:
            logger.info("using backbone %r for an SAE trained on %r", backbone, sae.cfg.backbone)
            sae.cfg.backbone = backbone
    elif backbone is not None:
        sae.check_backbone(backbone.name, backbone.fingerprint(), backbone.dim)
    sae.eval()
    return sae
