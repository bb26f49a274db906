"""Reading untrusted files with bounded cost: capped JSON, a folder sandbox, safetensors headers.

Everything latentlex reads from a user's disk or from the Hub goes through these helpers:

- :func:`loads_capped` / :func:`read_json_capped`: JSON with a size cap (checked before the
  text is parsed, and on the bytes actually read, so a FIFO or ``/dev/urandom`` cannot stream
  forever) and a nesting-depth cap (deep input is refused with a one-line error instead of
  Python's ``RecursionError``; oversized integers are refused too).
- :func:`resolve_inside`: the file ``name`` of an SAE folder, refused when it (or a symlink on
  its way) leads outside the folder, or when it is not a regular file. A Hub snapshot's files
  are links into the repository's blob store: :func:`sandbox` widens the allowed root to that
  repository's cache folder while it is loaded.
- :func:`check_safetensors`: a safetensors file's header parsed by hand (nothing mapped, no
  tensor read), its tensors checked against the shapes a config implies, float dtypes only, and
  the float32 size they would take against :func:`max_sae_bytes`; a file with holes (a sparse
  file claiming gigabytes it does not hold) is refused.
- :func:`check_model_name`: a backbone named *by a file* (an SAE config) must be a model name,
  never a filesystem path; a path is something only the user passes.

Example:
    >>> loads_capped('{"a": [1, 2]}', where="x.json")
    {'a': [1, 2]}
    >>> loads_capped("[" * 100 + "]" * 100, where="x.json")
    Traceback (most recent call last):
    ...
    latentlex.errors.ConfigError: x.json: JSON nested deeper than 64 levels
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import stat
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, LatentLexError, SAEFormatError

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_LABELS_BYTES",
    "TensorInfo",
    "check_model_name",
    "check_safetensors",
    "inspect_safetensors",
    "json_depth",
    "loads_capped",
    "max_sae_bytes",
    "read_json_capped",
    "resolve_inside",
    "sandbox",
]

#: Size cap of a configuration file (``cfg.json``, a collection's record, ...).
MAX_CONFIG_BYTES = 1 << 20
#: Size cap of an SAE's ``labels.json``.
MAX_LABELS_BYTES = 64 << 20
#: Nesting cap of any JSON latentlex parses (configs are 2-3 levels deep; payloads at most 32).
MAX_JSON_DEPTH = 64
#: Size cap of a safetensors header (the format's own limit is 100 MB).
MAX_HEADER_BYTES = 16 << 20
#: Default cap on an SAE's weights once loaded as float32 (``LATENTLEX_MAX_SAE_BYTES`` overrides).
DEFAULT_MAX_SAE_BYTES = 2 << 30
_MAX_SAE_ENV = "LATENTLEX_MAX_SAE_BYTES"
#: A file over this size whose disk blocks cover less than half of it is a sparse file.
_SPARSE_MIN_BYTES = 64 << 20

_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")

_ROOT: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "latentlex_sandbox", default=None
)


# ----------------------------------------------------------------------------- JSON


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, ``[]`` is 1); stops past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def loads_capped(
    text: str | bytes,
    *,
    where: str,
    max_bytes: int = MAX_CONFIG_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    error: type[LatentLexError] = ConfigError,
) -> Any:
    """Parse JSON ``text``, refusing more than ``max_bytes`` or nesting deeper than ``max_depth``.

    Raises:
        error: (``ConfigError`` by default) ``"<where>: <why>"``, one line, for oversized,
            too deep, non-UTF-8 or invalid JSON, or an integer of more than 4300 digits.
    """
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise error(f"{where}: {size:,} bytes of JSON, over the {max_bytes:,}-byte limit")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{where}: not valid UTF-8 (byte {e.start}: {e.reason})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(
            f"{where}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})"
        ) from None
    except RecursionError:
        raise error(f"{where}: JSON nested deeper than {max_depth} levels") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise error(f"{where}: invalid JSON ({e})") from None
    if json_depth(value, max_depth) > max_depth:
        raise error(f"{where}: JSON nested deeper than {max_depth} levels")
    return value


def _open_regular(path: Path, error: type[LatentLexError], what: str) -> int:
    """A read-only descriptor of ``path``, refused unless it is a regular file (no FIFO, device)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{path}: not a regular file; the {what} must be a plain file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes_capped(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    what: str = "file",
    error: type[LatentLexError] = SAEFormatError,
) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (checked before and while reading)."""
    p = Path(path)
    fd = _open_regular(p, error, what)
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            raise error(f"{p}: {size:,} bytes, over the {max_bytes:,}-byte limit for the {what}")
        try:
            data = fh.read(max_bytes + 1)
        except OSError as e:
            raise error(f"{p}: cannot read the {what} ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise error(f"{p}: over the {max_bytes:,}-byte limit for the {what}")
    return data


def read_json_capped(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_CONFIG_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    what: str = "JSON file",
    error: type[LatentLexError] = SAEFormatError,
) -> Any:
    """Parse the JSON file ``path`` with :func:`loads_capped`'s limits (size checked first).

    Raises:
        error: (``SAEFormatError`` by default) naming the file: missing, not a regular file,
            over the size or depth cap, not UTF-8, or not JSON.
    """
    data = read_bytes_capped(path, max_bytes=max_bytes, what=what, error=error)
    return loads_capped(
        data, where=str(path), max_bytes=max_bytes, max_depth=max_depth, error=error
    )


# ----------------------------------------------------------------------------- sandbox


@contextlib.contextmanager
def sandbox(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Allow the files of SAE folders under ``root`` to link anywhere inside ``root``.

    A Hub cache keeps a snapshot's files as links into the repository's ``blobs/``: loading
    a snapshot sets its repository folder as the root. Outside this block, each SAE folder is
    its own root.
    """
    resolved = Path(root).resolve()
    token = _ROOT.set(resolved)
    try:
        yield resolved
    finally:
        _ROOT.reset(token)


def resolve_inside(
    folder: str | os.PathLike[str],
    name: str,
    *,
    error: type[LatentLexError] = SAEFormatError,
) -> Path:
    """``folder/name`` with every symlink resolved, refused when it leaves the folder.

    The folder itself is resolved first (a link the user passed is theirs to follow); the file
    must then lie inside it, or inside the root :func:`sandbox` set when the folder is in that
    root. A missing file is returned as is (the caller reports it); an existing one must be a
    regular file.

    Raises:
        error: (``SAEFormatError`` by default) the file leads outside the folder, or is a
            FIFO, device or folder.
    """
    base = Path(folder).expanduser()
    p = base / name
    try:
        real_base = base.resolve()
        target = p.resolve()
    except (RuntimeError, OSError) as e:  # a symlink loop, a name too long, ...
        raise error(f"{p}: cannot be resolved ({e})") from None
    root = _ROOT.get()
    if root is None or not real_base.is_relative_to(root):
        root = real_base
    if not target.is_relative_to(root):
        raise error(
            f"{p}: leads outside the SAE folder (to {target}); an SAE folder must hold its own "
            "files, so links out of it are refused"
        )
    if not os.path.lexists(p):
        return p
    try:
        st = target.stat()
    except OSError:
        return p  # a dangling link inside the folder: reported as missing by the caller
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{p}: not a regular file")
    return target


# ----------------------------------------------------------------------------- safetensors


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors header."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int


def max_sae_bytes() -> int:
    """The cap on an SAE's float32 weights (``LATENTLEX_MAX_SAE_BYTES``, default 2 GiB)."""
    raw = os.environ.get(_MAX_SAE_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_SAE_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{_MAX_SAE_ENV} must be a number of bytes, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{_MAX_SAE_ENV} must be >= 1, got {value}")
    return value


def inspect_safetensors(
    path: str | os.PathLike[str], *, error: type[LatentLexError] = SAEFormatError
) -> dict[str, TensorInfo]:
    """Read and check a safetensors header without mapping the file.

    Checks that the header is a bounded JSON object, that every tensor has a known dtype, a shape
    of non-negative ints, and data offsets that match its size, and that the tensors cover the
    data region exactly (what the format requires).

    Raises:
        error: naming the file and what is wrong.
    """
    p = Path(path)
    fd = _open_regular(p, error, "safetensors file")
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(8)
        if len(head) < 8:
            raise error(f"{p}: too short for a safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise error(
                f"{p}: corrupt safetensors file (its header claims {n:,} bytes, the file holds "
                f"{size:,})"
            )
        raw = fh.read(n)
    header = loads_capped(raw, where=str(p), max_bytes=MAX_HEADER_BYTES, max_depth=4, error=error)
    if not isinstance(header, dict):
        raise error(f"{p}: corrupt safetensors header (not a JSON object)")
    data_len = size - 8 - n
    out: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise error(f"{p}: corrupt safetensors header (tensor {name!r})")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _DTYPE_BYTES:
            raise error(f"{p}: tensor {name!r} has an unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape
        ):
            raise error(f"{p}: tensor {name!r} has an invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise error(f"{p}: tensor {name!r} has invalid data offsets {offsets!r}")
        count = 1
        for d in shape:
            count *= d
        nbytes = count * _DTYPE_BYTES[dtype]
        begin, end = offsets
        if not 0 <= begin <= end <= data_len or end - begin != nbytes:
            raise error(
                f"{p}: tensor {name!r} ({dtype} {shape}) does not fit its data offsets "
                f"{offsets} in a {data_len:,}-byte data region"
            )
        out[str(name)] = TensorInfo(dtype, tuple(shape), nbytes)
        spans.append((begin, end))
    spans.sort()
    cursor = 0
    for begin, end in spans:
        if begin != cursor:
            raise error(f"{p}: corrupt safetensors file (tensor data overlaps or has gaps)")
        cursor = end
    if cursor != data_len:
        raise error(
            f"{p}: corrupt safetensors file (tensors cover {cursor:,} of {data_len:,} data bytes)"
        )
    return out


def _is_sparse(path: Path, size: int) -> bool:
    """Whether a large file has holes (its disk blocks cover less than half of it)."""
    if size < _SPARSE_MIN_BYTES:
        return False
    blocks = getattr(os.stat(path), "st_blocks", None)
    return blocks is not None and blocks * 512 < size // 2


def check_safetensors(
    path: str | os.PathLike[str],
    required: Mapping[str, tuple[int, ...]],
    optional: Mapping[str, tuple[int, ...]] | None = None,
    *,
    max_bytes: int | None = None,
    error: type[LatentLexError] = SAEFormatError,
) -> dict[str, TensorInfo]:
    """Check an SAE weights file against the shapes its config implies, before mapping it.

    Args:
        path: the safetensors file.
        required: tensor name -> shape every file must hold.
        optional: tensors a file may also hold.
        max_bytes: cap on the float32 size of all tensors (default :func:`max_sae_bytes`).
        error: the exception raised.

    Raises:
        error: missing or unexpected tensors, a shape or dtype that disagrees, weights over the
            cap, a sparse file, or a corrupt header.
    """
    p = Path(path)
    optional = optional or {}
    cap = max_sae_bytes() if max_bytes is None else max_bytes
    want = {**optional, **required}
    floats = 0
    for shape in want.values():
        count = 1
        for d in shape:
            count *= int(d)
        floats += count
    if floats * 4 > cap:
        raise error(
            f"{p}: the config implies {floats * 4:,} bytes of float32 weights, over the "
            f"{cap:,}-byte limit (set {_MAX_SAE_ENV} to load a larger SAE on purpose)"
        )
    tensors = inspect_safetensors(p, error=error)
    missing = sorted(set(required) - set(tensors))
    if missing:
        raise error(f"{p}: missing tensors {missing} (holds {sorted(tensors)[:10]})")
    unknown = sorted(set(tensors) - set(want))
    if unknown:
        raise error(f"{p}: unexpected tensors {unknown[:10]}: this variant is not supported")
    for name, info in tensors.items():
        if info.shape != tuple(want[name]):
            raise error(
                f"{p}: tensor {name} has shape {info.shape} but the config implies "
                f"{tuple(want[name])}"
            )
        if info.dtype not in FLOAT_DTYPES:
            raise error(f"{p}: tensor {name} has non-float dtype {info.dtype}")
    size = p.stat().st_size
    if _is_sparse(p, size):
        raise error(
            f"{p}: a sparse file ({size:,} bytes claimed, far fewer on disk): not a real "
            "weights file"
        )
    return tensors


# ----------------------------------------------------------------------------- model names

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")


def check_model_name(name: str, where: str) -> str:
    """A backbone name read from a file: a model name (``org/name`` or ``name``), never a path.

    Raises:
        ConfigError: ``name`` is a filesystem path (absolute, ``~``, ``..``, backslashes, or a
            folder that exists here), which only the user may pass (``--model`` / ``backbone=``).
    """
    if not isinstance(name, str):
        raise ConfigError(f"{where}: backbone must be a model name, got {name!r}")
    local = False
    with contextlib.suppress(OSError, ValueError):
        local = os.path.lexists(name)
    if not _MODEL_NAME.match(name) or ".." in name or name.endswith(".") or local:
        raise ConfigError(
            f"{where}: backbone {name!r} is a filesystem path, not a model name; a path is only "
            "taken from you: pass the backbone yourself (--model PATH, or backbone=PATH)"
        )
    return name
