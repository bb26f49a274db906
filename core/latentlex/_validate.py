"""Small input checks shared by the public entry points."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError

__all__ = [
    "INT64",
    "LayerSpec",
    "canonical_layer",
    "check_json_value",
    "has_surrogate",
    "positive_int_arg",
]

INT64 = (-(2**63), 2**63 - 1)
_MAX_DEPTH = 32


def positive_int_arg(value: str) -> int:
    """An ``argparse`` type: a whole number in ``[1, sys.maxsize]``."""
    import argparse
    import sys

    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a whole number >= 1, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    if n > sys.maxsize:
        raise argparse.ArgumentTypeError(f"must be <= {sys.maxsize}, got {n}")
    return n


def has_surrogate(s: str) -> bool:
    """Whether ``s`` holds a lone surrogate (not encodable as UTF-8, so not storable)."""
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_json_value(value: Any, where: str, depth: int = 0) -> None:
    """Refuse what a Qdrant payload cannot hold exactly, naming ``where``.

    Raises:
        TypeError: a value that is not JSON (or a mapping key that is not a string).
        ValueError: NaN/infinity, an int outside int64, a lone surrogate, or nesting deeper than 32.
    """
    if depth > _MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise ValueError(f"{where}: integer {value} is outside the 64-bit range Qdrant stores")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: NaN and infinity cannot be stored")
        return
    if isinstance(value, str):
        if has_surrogate(value):
            raise ValueError(f"{where}: the string holds a lone surrogate (not valid UTF-8)")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a str")
            if has_surrogate(k):
                raise ValueError(f"{where}: key {k!r} holds a lone surrogate")
            check_json_value(v, f"{where}.{k}", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_json_value(v, f"{where}[{i}]", depth + 1)
        return
    raise TypeError(f"{where}: a {type(value).__name__} is not JSON-serialisable")


#: A layer to read (``None``: the final hidden state) or several, in row order.
LayerSpec = int | None | Sequence[int | None]


def canonical_layer(layer: LayerSpec) -> int | list[int | None] | None:
    """The stored form of a layer choice: ``None``, an int, or a list of two or more distinct
    layers (JSON-stable, so SAE configs and cache keys compare equal after a round trip).

    Raises:
        ConfigError: not an int, ``None`` or a sequence of them; empty; repeated layers.
    """
    if layer is None:
        return None
    if isinstance(layer, int) and not isinstance(layer, bool):
        return layer
    if isinstance(layer, (str, bytes)) or not isinstance(layer, Sequence):
        raise ConfigError(f"layer must be an int, None or a sequence of them, got {layer!r}")
    seq = list(layer)
    if not seq or any(
        x is not None and (isinstance(x, bool) or not isinstance(x, int)) for x in seq
    ):
        raise ConfigError(f"layer must be an int, None or a sequence of them, got {layer!r}")
    if len(set(seq)) != len(seq):
        raise ConfigError(f"layers must be distinct, got {layer!r}")
    return seq[0] if len(seq) == 1 else seq
