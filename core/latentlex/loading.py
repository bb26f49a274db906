"""Load a local SAE folder of any format (latentlex's own or a converted one) as a latentlex SAE.

:func:`load_folder` detects the format (:func:`latentlex.converters.detect_format`), checks the
sizes the config claims and the weights file's header before reading a tensor, converts, fills
the backbone (named by the caller, or by the config when it names a sentence-transformers
model), and attaches the folder's ``labels.json``. The Hub side is :mod:`latentlex.hub`.

Example:
    >>> sae = load_folder("sae-folder", backbone="all-MiniLM-L6-v2")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .converters import (
    KNOWN_DIMS,
    MODE_DEFAULTS,
    NATIVE_FORMAT,
    TRAINER_CONFIG_NAME,
    Converted,
    check_dims,
    converter,
    detect_format,
    format_dims,
    max_weights_bytes,
    missing_files_error,
    read_json,
    weights_name,
)
from .errors import BackboneMismatchError, ConfigError, SAEFormatError
from .labelfile import read_label_map
from .sae import (
    SAE_CONFIG_NAME,
    SAEConfig,
    SparseAutoencoder,
    cast_weights,
    load_dtype,
)
from .safeio import check_safetensors, resolve_inside

__all__ = ["load_folder"]

logger = logging.getLogger(__name__)


def _read_tensors(
    path: Path,
    required: Mapping[str, tuple[int, ...]],
    optional: Mapping[str, tuple[int, ...]],
) -> dict[str, Tensor]:
    """Tensors of a safetensors file in their own dtype, checked from its header first."""
    from safetensors import SafetensorError, safe_open

    check_safetensors(path, required, optional)  # header, shapes, dtypes, total: before mapping
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise SAEFormatError(f"{path}: corrupt or unreadable safetensors file ({e})") from None
    for name, t in tensors.items():
        if not bool(torch.isfinite(t).all()):
            raise SAEFormatError(f"{path}: tensor {name} holds NaN or infinite values")
    return tensors


def _sae_subfolders(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if (p / SAE_CONFIG_NAME).is_file() and any(p.glob("*.safetensors"))
    )


def _refuse_missing(folder: Path, wanted: str) -> SAEFormatError:
    # Never list a folder's contents in a message: the path may be any folder (/etc, ~);
    # missing_files_error names pickled files only in an SAE-looking folder (with cfg.json).
    files = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return missing_files_error(str(folder), files, _sae_subfolders(folder), wanted)


def _trainer_context(root: Path) -> dict[str, Any]:
    """The sparsify run config beside a hookpoint folder (it names the model), if any."""
    parent = root.resolve().parent
    path = parent / TRAINER_CONFIG_NAME
    if not path.is_file():
        return {}
    try:
        return read_json(resolve_inside(parent, TRAINER_CONFIG_NAME), "run config")
    except (SAEFormatError, ConfigError) as e:
        logger.info("ignoring %s: %s", path, e)
        return {}


def _resolve_backbone(
    sae_cfg: dict[str, Any],
    backbone: Any,
    named: str | None,
    other: str | None,
    fmt: str,
    notes: list[str],
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
        said = (
            f"its config names {other!r}, which is not a sentence-transformers model latentlex "
            "knows"
            if other
            else "its config does not name the backbone it was trained on"
        )
        raise ConfigError(
            f"this {fmt} SAE needs a backbone: {said}{extra}; pass "
            f"backbone='<sentence-transformers model>' (output dimension {sae_cfg['d_in']})"
        )
    expected = KNOWN_DIMS.get(name)
    if expected is not None and expected != sae_cfg["d_in"]:
        raise BackboneMismatchError(
            f"backbone {name!r} has dimension {expected} but this {fmt} SAE expects "
            f"d_in={sae_cfg['d_in']}"
        )
    if backbone is None:
        logger.info("%s SAE: backbone %r, as its config names", fmt, name)
    sae_cfg["backbone"] = name


def _build(
    cfg: SAEConfig,
    conv: Converted,
    target: torch.dtype | None,
    file_dtype: torch.dtype,
    device: str | torch.device | None,
) -> SparseAutoencoder:
    sae = SparseAutoencoder(cfg, device="meta")
    state = {name: t.float().contiguous() for name, t in conv.tensors().items()}
    state = cast_weights(state, target if target is not None else file_dtype)
    sae.load_state_dict(state, assign=True)
    sae.eval()
    return sae.to(device) if device is not None else sae


def load_folder(
    folder: str | os.PathLike[str],
    *,
    sae_format: str | None = None,
    backbone: Any = None,
    mode: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
    folder_name: str | None = None,
) -> SparseAutoencoder:
    """Load an SAE folder of any registered format as a latentlex SAE.

    Args:
        folder: a folder holding ``cfg.json`` and the format's weights file.
        sae_format: force a format (see :data:`~latentlex.converters.CONVERTERS`, or
            ``"latentlex"``).
        backbone: the backbone name (str) or a loaded :class:`~latentlex.backbone.Backbone`;
            required when a foreign config does not name a sentence-transformers model
            (SAELens ``metadata.model_name``, sparsify's run config ``model``, ...). A Backbone's
            dimension is checked now; a name's dimension is checked against
            :data:`~latentlex.converters.KNOWN_DIMS` and again when a
            :class:`~latentlex.terms.LatentTermEncoder` is built.
        mode: ``"token"`` or ``"pooled"`` for a foreign SAE (default: the format's).
        device: where to put the weights.
        dtype: ``"float32"`` (default: compute in fp32 whatever the file holds) or ``"file"``
            (compute in the file's dtype, like the source library); see
            :func:`latentlex.sae.load_dtype` for why fp32 is the default.
        folder_name: the name detection sees (default: the folder's own name; a Hub snapshot
            passes its subfolder's).

    Raises:
        SAEFormatError: missing/corrupt files, pickled weights only, an unsupported variant,
            shapes that disagree with the config, or sizes over the limits.
        ConfigError: the backbone is needed but not named, or a bad ``mode`` / ``dtype``.
        BackboneMismatchError: the named backbone's dimension differs from the SAE's.
    """
    root = Path(folder)
    if not root.is_dir():
        raise SAEFormatError(f"{root}: no such SAE folder")
    target = load_dtype(dtype)
    cfg_path = resolve_inside(root, SAE_CONFIG_NAME)  # the folder is a sandbox: no link out
    if not cfg_path.is_file():
        raise _refuse_missing(root, SAE_CONFIG_NAME)
    raw = read_json(cfg_path)
    files = {p.name for p in root.iterdir()}
    if not any(name.endswith(".safetensors") for name in files):
        raise _refuse_missing(root, "safetensors weights")
    name = folder_name if folder_name is not None else root.resolve().name
    fmt = sae_format or detect_format(raw, files, name)
    if mode is not None and mode not in MODE_DEFAULTS:
        raise ConfigError(f"mode must be one of {sorted(MODE_DEFAULTS)}, got {mode!r}")
    try:
        d_in, width = format_dims(fmt, raw)
    except ConfigError as e:
        raise SAEFormatError(f"{cfg_path}: {e}") from None
    check_dims(d_in, width)
    wname = weights_name(fmt)
    wpath = resolve_inside(root, wname)
    if not wpath.is_file():
        raise _refuse_missing(root, wname)
    if wpath.stat().st_size > max_weights_bytes(d_in, width):
        raise SAEFormatError(
            f"{root / wname}: {wpath.stat().st_size} bytes is more than cfg.json "
            f"(d_in={d_in}, width={width}) can explain"
        )
    if fmt == NATIVE_FORMAT:
        return _load_native(root, backbone=backbone, mode=mode, device=device, dtype=dtype)
    conv = converter(fmt)
    try:
        conv.validate(raw)
    except (SAEFormatError, ConfigError) as e:
        raise SAEFormatError(f"{cfg_path}: {e}") from None
    required, optional = conv.tensor_shapes(raw, d_in, width)
    tensors = _read_tensors(wpath, required, optional)
    file_dtype = tensors["W_enc" if "W_enc" in tensors else "encoder.weight"].dtype
    out = conv.convert(raw, {n: t.float() for n, t in tensors.items()}, d_in, width)
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
        "input_norm": out.input_norm,
        "backbone_dim": d_in,
        **MODE_DEFAULTS[use_mode],
    }
    named, other = conv.named_backbone(raw, _trainer_context(root))
    _resolve_backbone(sae_cfg, backbone, named, other, fmt, out.notes)
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
    sae = _build(cfg, out, target, file_dtype, device)
    sae.labels = read_label_map(root)
    logger.info(
        "converted %s SAE from %s: %s, width %d, k %d, %s mode, %s%s",
        fmt,
        root,
        out.architecture,
        width,
        out.k,
        use_mode,
        sae.W_enc.dtype,
        f" ({'; '.join(out.notes)})" if out.notes else "",
    )
    logger.warning(
        "converted SAEs carry no calibrated avgdl: run "
        "LatentTermEncoder(sae).calibrate_avgdl(sample_of_your_documents) before encoding "
        "documents (queries work without it)"
    )
    return sae


def _load_native(
    root: Path,
    *,
    backbone: Any,
    mode: str | None,
    device: str | torch.device | None,
    dtype: str | torch.dtype,
) -> SparseAutoencoder:
    sae = SparseAutoencoder.load(root, device=device, dtype=dtype)
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
