"""SAE formats of other libraries: detection, and their weights rewritten into latentlex's form.

A registry maps a format name to a :class:`Converter`; :func:`detect_format` picks one from the
folder's ``cfg.json``, its file names and the folder's own name. Every converter declares the
tensors it needs and their shapes (checked from ``cfg.json`` and the safetensors header *before*
any tensor is read, by :mod:`latentlex.loading`) and rewrites them into latentlex's
``pre = W_enc (x - b_dec) + b_enc`` (TopK / BatchTopK / JumpReLU selection on ``pre``),
``x_hat = W_dec^T z + b_dec``. Each format below was checked against files saved by the real
library (``scripts/make_sae_fixtures.py``, ``tests/fixtures/saes``).

Formats:

- ``latentlex``: our own folder (``cfg.json`` + ``sae.safetensors``), loaded as is.
- ``sparsify`` (EleutherAI/sparsify 1.x and the older EleutherAI/sae): ``cfg.json`` (``d_in``,
  ``expansion_factor``/``num_latents``, ``k``) + ``sae.safetensors`` with ``encoder.weight``
  ``[width, d]``, ``encoder.bias``, ``W_dec`` ``[width, d]``, ``b_dec``. Token mode by default.
  A trainer checkpoint (``config.json``, ``state.pt``, one folder per hookpoint) is loaded one
  hookpoint at a time with ``subfolder="layers.0"``.
- ``latentsae`` (enjalot/latent-sae): the same layout, trained on *pooled* sentence embeddings,
  so it loads in pooled mode. 0.2.x configs carry ``sae_type`` (written upper case, ``"TOPK"``:
  read in any case); ``mean_center`` is folded exactly into ``b_dec`` (``b_dec + input_mean``);
  ``batchtopk`` keeps its learned threshold (activations ``>=`` it, at most ``k``);
  ``matryoshka`` encodes with its last level's k; ``jumprelu`` keeps ``exp(log_threshold)``
  per latent and its ``jumprelu_max_active`` cap. 0.1.x configs have no ``sae_type`` and the
  same keys as old EleutherAI/sae configs: they are told apart by the folder latentsae writes,
  named ``{k}_{expansion_factor}`` (``64_8`` on the Hub, ``sae_64_8.<run>`` in training).
- ``saelens`` (SAELens 6.x): ``cfg.json`` (``d_in``, ``d_sae``, ``architecture``) +
  ``sae_weights.safetensors`` with ``W_enc`` ``[d, width]`` (transposed), ``b_enc``, ``W_dec``
  ``[width, d]``, ``b_dec``. ``topk`` (``save_inference_model`` and ``save_model``):
  ``apply_b_dec_to_input=False`` and ``rescale_acts_by_decoder_norm=True`` are folded exactly.
  ``jumprelu`` (also how SAELens saves BatchTopK SAEs for inference; ``save_model`` of a
  ``batchtopk`` SAE is read the same way, its ``topk_threshold`` for every latent) becomes a
  latentlex JumpReLU SAE. ``normalize_activations`` ``layer_norm`` and
  ``constant_norm_rescale`` are per-input and run at encode time (``SAEConfig.input_norm``);
  ``expected_average_only_in`` and ``covariance_whitening`` need statistics SAELens keeps in
  its trainer, not in the file, and are refused until folded. ``metadata.model_name`` names the
  backbone when it is a sentence-transformers model.

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

import logging
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from .errors import ConfigError, SAEFormatError
from .sae import MAX_D_IN, MAX_WIDTH, SAE_CONFIG_NAME, SAE_WEIGHTS_NAME
from .safeio import check_model_name, read_json_capped

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
    "is_sentence_transformer",
    "max_weights_bytes",
    "missing_files_error",
    "read_json",
    "register_converter",
    "weights_name",
]

logger = logging.getLogger(__name__)

NATIVE_FORMAT = "latentlex"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
"""Weight files that need unpickling (able to run arbitrary code): never loaded."""
MAX_JSON_BYTES = 1 << 20
"""A ``cfg.json`` larger than this is refused before parsing."""
TRAINER_CONFIG_NAME = "config.json"
"""A sparsify trainer checkpoint's run config (names the model in ``"model"``)."""

MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Latent Terms (Clavié et al. 2026): BM25 over sqrt of summed token activations.
    "token": {"bm25_k1": 1.2, "bm25_b": 0.75, "query_k2": None, "doc_max_terms": None},
    # CL-SR (Park et al. 2025) saturation; every active latent of a document is kept.
    "pooled": {"bm25_k1": 0.6, "bm25_b": 2.0, "query_k2": 1.5, "doc_max_terms": None},
}
"""Retrieval parameters given to a converted SAE, by mode."""

KNOWN_DIMS: dict[str, int] = {
    "all-MiniLM-L6-v2": 384,
    "sentence-transformers/all-MiniLM-L6-v2": 384,
    "sentence-transformers/all-MiniLM-L12-v2": 384,
    "sentence-transformers/all-mpnet-base-v2": 768,
    "all-mpnet-base-v2": 768,
    "BAAI/bge-small-en-v1.5": 384,
    "BAAI/bge-base-en-v1.5": 768,
    "BAAI/bge-large-en-v1.5": 1024,
    "nomic-ai/nomic-embed-text-v1.5": 768,
    "facebook/contriever": 768,
    "intfloat/e5-base-v2": 768,
}
"""Output dimensions of common sentence-transformers backbones, checked when one is named."""

_BACKBONE_KEYS = ("model", "model_name", "embedding_model", "backbone", "base_model")
"""Config keys that may name the model an SAE was trained on (sparsify's trainer config,
latentsae or hand-written configs)."""


# ----------------------------------------------------------------------------- small helpers


def read_json(path: Path, what: str = "config") -> dict[str, Any]:
    """Parse a small JSON object file, refusing anything over 1 MiB, nested deeper than 64
    levels, not a regular file, or not an object."""
    data = read_json_capped(path, max_bytes=MAX_JSON_BYTES, what=f"SAE {what}")
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


def is_sentence_transformer(name: str) -> bool:
    """Whether a model name read from a config is a sentence-transformers model latentlex knows.

    Only such names become the backbone of a converted SAE by themselves: an LLM named by
    SAELens (``gpt2``) or sparsify (``EleutherAI/pythia-160m``) gives token states latentlex's
    sentence-transformers backbone does not produce, so those still need ``backbone=``.
    """
    return name in KNOWN_DIMS or name.startswith("sentence-transformers/")


def missing_files_error(
    where: str, files: Collection[str], subs: Collection[str], wanted: str, *, remote: bool = False
) -> SAEFormatError:
    """The error for a folder without a loadable SAE, saying what to pass instead.

    Args:
        where: the folder (or ``repo/subfolder``) for the message.
        files: file names in it.
        subs: its subfolders that hold an SAE (``cfg.json`` + safetensors).
        wanted: the file that is missing.
        remote: a Hub repository (the advice differs).
    """
    subs = sorted(subs)
    trainer = TRAINER_CONFIG_NAME in files or any(f.endswith("state.pt") for f in files)
    if subs and wanted == SAE_CONFIG_NAME and trainer:
        return SAEFormatError(
            f"{where} is a sparsify trainer checkpoint (its run config, optimizer state and one "
            f"SAE folder per hookpoint): load one hookpoint with subfolder={subs[0]!r} (one of: "
            f"{', '.join(subs[:30])})"
        )
    if subs and wanted == SAE_CONFIG_NAME:
        return SAEFormatError(
            f"{where} holds several SAEs; pass subfolder= one of: {', '.join(subs[:30])}"
        )
    pickled = sorted(f for f in files if f.endswith(PICKLE_SUFFIXES))
    if pickled and (SAE_CONFIG_NAME in files or remote):
        advice = (
            "Ask the author for a safetensors export."
            if remote
            else "Convert the checkpoint to safetensors with the library that wrote it."
        )
        offers = "offers only pickled weights" if remote else "only pickled weights here"
        return SAEFormatError(
            f"{where}: {offers} ({', '.join(pickled[:5])}); latentlex loads "
            f"safetensors + JSON only, because unpickling a file can run arbitrary code. {advice}"
        )
    if remote:
        return SAEFormatError(f"{where}: no {wanted} in this repository folder")
    return SAEFormatError(
        f"{where}: missing {wanted}; not an SAE folder (an SAE folder holds cfg.json and "
        "safetensors weights)"
    )


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
    """batchtopk: the scalar threshold."""
    thresholds: Tensor | None = None
    """jumprelu: the per-latent thresholds ``[width]``."""
    max_active: int | None = None
    input_norm: str = "none"
    backbone: str | None = None
    """The backbone named by the source config, if it names a sentence-transformers model."""
    notes: list[str] = field(default_factory=list)

    def tensors(self) -> dict[str, Tensor]:
        """The weights of a latentlex SAE of this architecture."""
        out = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        if self.thresholds is not None:
            out["threshold"] = self.thresholds
        return out


class Converter:
    """One foreign SAE format. Subclass, set the class attributes, and :func:`register_converter`.

    The loader calls :meth:`dims` (and refuses sizes over the limits), :meth:`validate`, then
    checks the weights file against :meth:`tensor_shapes` from its header, reads the tensors and
    calls :meth:`convert`.
    """

    name: ClassVar[str]
    weights_name: ClassVar[str] = SAE_WEIGHTS_NAME
    default_mode: ClassVar[str] = "token"
    description: ClassVar[str] = ""

    def detect(self, cfg: Mapping[str, Any], files: Collection[str], folder: str = "") -> bool:
        """Whether a folder named ``folder`` with this ``cfg.json`` and files is in this format."""
        raise NotImplementedError

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

    def named_backbone(
        self, cfg: Mapping[str, Any], context: Mapping[str, Any] | None = None
    ) -> tuple[str | None, str | None]:
        """``(backbone, other)``: a sentence-transformers model the config (or the run config
        ``context`` beside it) names, else None and any other model name it gives (for the
        message)."""
        for source in (cfg, context or {}):
            for key in _BACKBONE_KEYS:
                value = source.get(key)
                if isinstance(value, str) and value:
                    if is_sentence_transformer(value):
                        return check_model_name(value, f"cfg.json {key!r}"), None
                    return None, value
        return None, None


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


def detect_format(cfg: Mapping[str, Any], files: Collection[str], folder: str = "") -> str:
    """Name of the format of a folder holding ``files`` with this ``cfg.json``.

    Args:
        cfg: the parsed ``cfg.json``.
        files: file names in the folder.
        folder: the folder's own name (latentsae 0.1.x SAEs are known by it, see
            :class:`LatentSAEConverter`).

    Raises:
        SAEFormatError: no registered format recognises the folder.
    """
    if _is_native(cfg):
        return NATIVE_FORMAT
    for name, conv in CONVERTERS.items():
        if conv.detect(cfg, files, folder):
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
    return converter(fmt).weights_name


def format_dims(fmt: str, cfg: Mapping[str, Any]) -> tuple[int, int]:
    """``(d_in, width)`` a config of format ``fmt`` claims."""
    if fmt == NATIVE_FORMAT:
        return _int_field(cfg, "d_in"), _int_field(cfg, "width", 8192)
    return converter(fmt).dims(cfg)


def converter(fmt: str) -> Converter:
    """The registered converter of format ``fmt``.

    Raises:
        ConfigError: no such format.
    """
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

    def detect(self, cfg: Mapping[str, Any], files: Collection[str], folder: str = "") -> bool:
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


_LATENTSAE_FOLDER = re.compile(r"^(?:sae_)?(\d+)_(\d+)(?:\..*)?$")
"""latentsae 0.1.x folder names: ``{k}_{expansion_factor}`` on the Hub (``Sae.load_from_hub``'s
``k_expansion``), ``sae_{k}_{expansion_factor}.<run>`` from its trainer."""
_SPARSIFY_ONLY = ("activation", "transcode", "skip_connection", "signed")
"""Keys sparsify (and later EleutherAI/sae) configs write and latentsae's never do."""


def _sae_type(cfg: Mapping[str, Any]) -> str:
    """latentsae's ``sae_type``, lower case: 0.2.x writes the enum name (``"TOPK"``)."""
    raw = str(cfg.get("sae_type", "topk") or "topk")
    return raw.rsplit(".", 1)[-1].lower()  # "TOPK", "topk", "SaeType.TOPK" -> "topk"


class LatentSAEConverter(SparsifyConverter):
    """enjalot/latent-sae (``latentsae``): EleutherAI layout trained on pooled sentence embeddings.

    Loads in pooled mode. ``mean_center`` subtracts ``input_mean`` before the SAE and adds it back
    to the reconstruction, which is exactly ``b_dec + input_mean`` in latentlex's form. Supported
    ``sae_type`` (any case): ``topk``; ``batchtopk`` (learned threshold, activations ``>=`` it, at
    most ``k`` active); ``matryoshka`` (inference keeps the last level's k); ``jumprelu``
    (per-latent ``exp(log_threshold)``, at most ``jumprelu_max_active``).

    Detected by a latentsae-only key (``sae_type``, ``mean_center``, ...) or, for 0.1.x configs
    (the same keys as an old EleutherAI/sae config), by the folder name latentsae gives its SAEs:
    ``{k}_{expansion_factor}`` matching the config.
    """

    name = "latentsae"
    default_mode = "pooled"
    description = "enjalot/latent-sae: sentence-embedding SAEs, one per subfolder such as 64_8"
    _MARKERS = ("sae_type", "mean_center", "use_skip", "skip_rank", "matryoshka_sizes")
    _REFUSED: ClassVar[dict[str, str]] = {
        "gated": "a gate path picks the latents and a separate magnitude path sets their values",
        "lista": "its latents inhibit each other through the decoder before the top-k",
        "cosine": "its encoder scores cosine similarity blended with the input norm, not W x + b",
        "abstopk": "its activations are signed, and latent-term weights cannot be negative",
    }

    def detect(self, cfg: Mapping[str, Any], files: Collection[str], folder: str = "") -> bool:
        if not super().detect(cfg, files, folder):
            return False
        if any(key in cfg for key in self._MARKERS):
            return True
        if any(key in cfg for key in _SPARSIFY_ONLY):
            return False
        match = _LATENTSAE_FOLDER.match(folder)
        return bool(
            match
            and int(match.group(1)) == cfg.get("k")
            and int(match.group(2)) == cfg.get("expansion_factor")
        )

    def tensor_shapes(
        self, cfg: Mapping[str, Any], d_in: int, width: int
    ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
        required = _eleuther_shapes(d_in, width)
        optional: dict[str, tuple[int, ...]] = {"batchtopk_threshold": ()}
        if cfg.get("mean_center"):
            required["input_mean"] = (d_in,)
        if _sae_type(cfg) == "jumprelu":
            required["log_threshold"] = (width,)
        return required, optional

    def validate(self, cfg: Mapping[str, Any]) -> None:
        sae_type = _sae_type(cfg)
        if sae_type in self._REFUSED:
            raise SAEFormatError(
                f"latentsae: sae_type {cfg.get('sae_type')!r} is not supported: "
                f"{self._REFUSED[sae_type]} (supported: topk, batchtopk, matryoshka, jumprelu)"
            )
        if sae_type not in ("topk", "batchtopk", "matryoshka", "jumprelu"):
            raise SAEFormatError(
                f"latentsae: sae_type {cfg.get('sae_type')!r} is not supported "
                "(supported: topk, batchtopk, matryoshka, jumprelu)"
            )
        if cfg.get("use_skip"):
            raise SAEFormatError(
                "latentsae: use_skip=true is not supported (its skip connection carries part "
                "of the reconstruction; latentlex SAEs have none)"
            )
        if cfg.get("signed"):
            raise SAEFormatError("latentsae: signed=true is not supported")
        if sae_type == "matryoshka" and not self._matryoshka_ks(cfg):
            raise SAEFormatError("latentsae: a matryoshka config must give matryoshka_ks")

    @staticmethod
    def _matryoshka_ks(cfg: Mapping[str, Any]) -> list[int]:
        text = str(cfg.get("matryoshka_ks", "") or "")
        try:
            return [int(s) for s in text.split(",") if s.strip()]
        except ValueError:
            raise SAEFormatError(f"latentsae: bad matryoshka_ks {text!r}") from None

    def convert(
        self, cfg: Mapping[str, Any], tensors: dict[str, Tensor], d_in: int, width: int
    ) -> Converted:
        sae_type = _sae_type(cfg)
        b_dec = tensors["b_dec"]
        notes = [f"sae_type {sae_type}"]
        if cfg.get("mean_center"):
            b_dec = b_dec + tensors["input_mean"]
            notes.append("mean_center folded into b_dec")
        k = _int_field(cfg, "k")
        if sae_type == "matryoshka":
            k = self._matryoshka_ks(cfg)[-1]
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
        elif sae_type == "jumprelu":
            cap = _int_field(cfg, "jumprelu_max_active", 512)
            out.architecture = "jumprelu"
            out.thresholds = tensors["log_threshold"].exp()
            out.max_active = min(max(cap, 1), width)
            out.k = min(k, width)
        return out


class SAELensConverter(Converter):
    """SAELens 6.x TopK and JumpReLU SAEs (``cfg.json`` + ``sae_weights.safetensors``).

    SAELens computes ``h = (norm(x) - b_dec·apply_b_dec_to_input) @ W_enc + b_enc`` with
    ``W_enc`` ``[d, width]``; TopK optionally scales ``h`` by the decoder row norms before the
    top-k; JumpReLU keeps ``relu(h)`` where ``h > threshold``. ``apply_b_dec_to_input=False``
    and the decoder-norm scaling are folded exactly (``b_enc += W_enc b_dec``; rows of
    ``W_enc``/``b_enc`` times the norms, ``W_dec`` divided by them). ``norm`` is a per-input
    runtime normalisation (``layer_norm``, ``constant_norm_rescale``), kept as
    ``SAEConfig.input_norm``.
    """

    name = "saelens"
    weights_name = "sae_weights.safetensors"
    description = "SAELens: cfg.json + sae_weights.safetensors (W_enc [d, width]; topk, jumprelu)"
    _RUNTIME_NORMS = ("layer_norm", "constant_norm_rescale")
    _REFUSED_NORMS: ClassVar[dict[str, str]] = {
        "expected_average_only_in": (
            "it scales every input by a dataset-wide factor that SAELens estimates while "
            "training and keeps outside this file (SAE.fold_activation_norm_scaling_factor "
            "folds it into the weights; a folded SAE says 'none')"
        ),
        "covariance_whitening": (
            "it whitens inputs with a mean and matrix that SAELens keeps in its trainer, not "
            "in this file (its trainer folds them into the weights at the end; a folded SAE "
            "says 'none')"
        ),
    }

    def detect(self, cfg: Mapping[str, Any], files: Collection[str], folder: str = "") -> bool:
        return "d_sae" in cfg and "d_in" in cfg and self.weights_name in files

    def dims(self, cfg: Mapping[str, Any]) -> tuple[int, int]:
        return _int_field(cfg, "d_in"), _int_field(cfg, "d_sae")

    @staticmethod
    def _arch(cfg: Mapping[str, Any]) -> str:
        arch = cfg.get("architecture", "standard")
        act = cfg.get("activation_fn", cfg.get("activation_fn_str"))
        if arch == "topk" or act == "topk":
            return "topk"
        if arch in ("jumprelu", "batchtopk"):
            return str(arch)
        raise SAEFormatError(
            f"saelens: architecture {arch!r} (activation {act!r}) is not supported; latentlex "
            "converts SAELens TopK and JumpReLU SAEs (BatchTopK SAEs are saved as JumpReLU)"
        )

    def tensor_shapes(
        self, cfg: Mapping[str, Any], d_in: int, width: int
    ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
        required: dict[str, tuple[int, ...]] = {
            "W_enc": (d_in, width),
            "b_enc": (width,),
            "W_dec": (width, d_in),
            "b_dec": (d_in,),
        }
        arch = self._arch(cfg)
        if arch == "jumprelu":
            required["threshold"] = (width,)
        elif arch == "batchtopk":
            required["topk_threshold"] = ()
        return required, {}

    @staticmethod
    def _k(cfg: Mapping[str, Any]) -> float | None:
        """k of a TopK / BatchTopK config (``k``, ``activation_fn_kwargs.k`` or, for a BatchTopK
        SAE saved as JumpReLU, ``metadata.training_architecture_details.k``)."""
        kwargs = cfg.get("activation_fn_kwargs") or {}
        meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
        details = meta.get("training_architecture_details") if meta else None
        for source in (cfg, kwargs, details):
            if isinstance(source, dict):
                value = source.get("k")
                if (
                    isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and math.isfinite(value)
                    and value > 0
                ):
                    return float(value)
        return None

    def validate(self, cfg: Mapping[str, Any]) -> None:
        arch = self._arch(cfg)
        if arch == "topk":
            k = self._k(cfg)
            if k is None or not float(k).is_integer():
                raise SAEFormatError(f"saelens: a topk config must give an integer k, got {k!r}")
        norm = cfg.get("normalize_activations", "none") or "none"
        if norm in self._REFUSED_NORMS:
            raise SAEFormatError(
                f"saelens: normalize_activations={norm!r} is not supported: "
                f"{self._REFUSED_NORMS[norm]}"
            )
        if norm not in ("none", *self._RUNTIME_NORMS):
            raise SAEFormatError(f"saelens: normalize_activations={norm!r} is not supported")
        reshape = cfg.get("reshape_activations", "none") or "none"
        if reshape != "none":
            raise SAEFormatError(
                f"saelens: reshape_activations={reshape!r} is not supported (a hook_z SAE reads "
                "attention heads' outputs, not the hidden states a backbone gives)"
            )

    def named_backbone(
        self, cfg: Mapping[str, Any], context: Mapping[str, Any] | None = None
    ) -> tuple[str | None, str | None]:
        meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
        merged = {**(meta or {}), **{k: v for k, v in cfg.items() if k != "metadata"}}
        return super().named_backbone(merged, context)

    def convert(
        self, cfg: Mapping[str, Any], tensors: dict[str, Tensor], d_in: int, width: int
    ) -> Converted:
        arch = self._arch(cfg)
        w_enc = tensors["W_enc"].t().contiguous()  # [width, d]
        b_enc, w_dec, b_dec = tensors["b_enc"], tensors["W_dec"], tensors["b_dec"]
        notes = [f"architecture {arch}"]
        if not cfg.get("apply_b_dec_to_input", True):
            b_enc = b_enc + w_enc @ b_dec
            notes.append("apply_b_dec_to_input=false folded into b_enc")
        # jumprelu inference configs have no rescale flag; a batchtopk save_model keeps its own
        if arch != "jumprelu" and cfg.get("rescale_acts_by_decoder_norm"):
            n = w_dec.norm(dim=1).clamp_min(1e-8)
            w_enc, b_enc, w_dec = w_enc * n[:, None], b_enc * n, w_dec / n[:, None]
            notes.append("decoder norms folded into the encoder")
        norm = cfg.get("normalize_activations", "none") or "none"
        if norm != "none":
            notes.append(f"normalize_activations={norm} runs per input")
        meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
        for key in ("model_name", "hook_name"):
            value = cfg.get(key, meta.get(key) if meta else None)
            if value:
                notes.append(f"{key}={value}")
        k = self._k(cfg)
        out = Converted(
            W_enc=w_enc,
            b_enc=b_enc,
            W_dec=w_dec,
            b_dec=b_dec,
            k=int(k) if arch == "topk" and k is not None else 0,
            input_norm=norm,
            notes=notes,
        )
        if arch == "topk":
            return out
        if arch == "jumprelu":
            out.thresholds = tensors["threshold"]
        else:  # batchtopk save_model: SAELens' inference save puts this in every latent
            out.thresholds = torch.full((width,), float(tensors["topk_threshold"]))
        out.architecture = "jumprelu"
        # k is informational for JumpReLU: BatchTopK's average k when known
        out.k = min(width, max(1, round(k))) if k is not None else min(width, 32)
        if k is None:
            notes.append(f"no k in the config: expected L0 recorded as {out.k}")
        return out


register_converter(SAELensConverter())
register_converter(LatentSAEConverter())
register_converter(SparsifyConverter())
