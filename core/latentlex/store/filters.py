"""A neutral filter language, translated to both engines' native filter types.

A filter is a mapping; every entry is one condition and all of them must hold (AND):

- ``{"key": value}`` matches points whose ``key`` equals ``value`` (``str``, ``int``, ``bool``;
  a ``float`` becomes the closed range ``[value, value]``, as Qdrant has no float equality);
- ``{"key": [a, b]}`` matches any of the listed values (all ``str`` or all ``int``; an empty
  list matches nothing);
- ``{"key": {"gte": 1, "lt": 5}}`` is a range (operators ``gt``, ``gte``, ``lt``, ``lte``;
  numbers, or ISO-8601 strings for a datetime range).

Keys address the user metadata of a document (stored under the payload object ``metadata``;
dots address nested objects: ``"author.name"``). The special key ``doc_id`` addresses the
document id itself (a value or a list of values; it becomes a point-id condition).

A native filter object of the engine in use (``qdrant_client.models.Filter`` for the client
stores, ``qdrant_edge.Filter`` for the edge store) passes through untouched.

Example:
    >>> f = to_qdrant({"lang": "en", "year": {"gte": 2020}})
    >>> [c.key for c in f.must]
    ['metadata.lang', 'metadata.year']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from latentlex._validate import INT64, has_surrogate
from latentlex.errors import ConfigError

__all__ = ["DOC_ID_KEY", "METADATA_FIELD", "Filter", "to_edge", "to_qdrant"]

#: Payload object holding the user metadata; neutral keys are resolved inside it.
METADATA_FIELD = "metadata"
#: The neutral key that addresses document ids.
DOC_ID_KEY = "doc_id"
_RANGE_OPS = frozenset({"gt", "gte", "lt", "lte"})

#: A neutral filter mapping, or a native filter object of the engine in use.
Filter = Mapping[str, Any] | Any


def _payload_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ConfigError(f"filter keys must be non-empty strings, got {key!r}")
    return f"{METADATA_FIELD}.{key}"


def _check_any(key: str, values: Sequence[Any]) -> list[Any]:
    vals = [_check_scalar(key, v) for v in values]
    if all(isinstance(v, str) for v in vals):
        return vals
    if all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return vals
    raise ConfigError(
        f"filter {key!r}: a list must hold only strings or only integers, got {vals!r}"
    )


def _check_range(key: str, spec: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Validate a range spec; returns ``(bounds, is_datetime)``."""
    unknown = set(spec) - _RANGE_OPS
    if unknown or not spec:
        raise ConfigError(
            f"filter {key!r}: a range takes the operators {sorted(_RANGE_OPS)}, "
            f"got {sorted(spec)!r}"
        )
    bounds = {op: v for op, v in spec.items() if v is not None}
    if all(isinstance(v, str) for v in bounds.values()) and bounds:
        return bounds, True
    for op, v in bounds.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"filter {key!r}: range bound {op}={v!r} must be a number")
    return {op: float(v) for op, v in bounds.items()}, False


def _check_scalar(key: str, value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"filter {key!r}: value {value!r} is not finite")
        return value
    if isinstance(value, str) and has_surrogate(value):
        raise ConfigError(f"filter {key!r}: the value holds a lone surrogate (not valid UTF-8)")
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
        raise ConfigError(f"filter {key!r}: integer {value} is outside the 64-bit range")
    if isinstance(value, (str, int, bool)):
        return value
    raise ConfigError(
        f"filter {key!r}: unsupported value {value!r} (use str, int, bool, float, a list, "
        f"or a range mapping)"
    )


def _doc_ids(value: Any) -> list[str]:
    from latentlex.store.base import point_id

    ids = [value] if isinstance(value, str) else value
    if not isinstance(ids, (list, tuple)) or not all(isinstance(v, str) for v in ids):
        raise ConfigError(f"filter 'doc_id' takes a string or a list of strings, got {value!r}")
    return [point_id(v) for v in ids]


def _check_mapping(filter: Any) -> Mapping[str, Any]:
    if not isinstance(filter, Mapping):
        raise ConfigError(
            f"unsupported filter {type(filter).__name__}: give a mapping (see "
            f"latentlex.store.filters) or the native Filter of the engine in use"
        )
    return filter


def to_qdrant(filter: Filter | None) -> Any:
    """Translate a neutral filter to ``qdrant_client.models.Filter`` (``None`` stays ``None``).

    Raises:
        ConfigError: the filter is malformed or a native filter of another engine.
    """
    from qdrant_client import models

    if filter is None or isinstance(filter, models.Filter):
        return filter
    spec = _check_mapping(filter)
    must: list[Any] = []
    for key, value in spec.items():
        if key == DOC_ID_KEY:
            must.append(models.HasIdCondition(has_id=list[Any](_doc_ids(value))))
            continue
        path = _payload_key(key)
        if isinstance(value, Mapping):
            bounds, is_dt = _check_range(key, value)
            rng: Any = models.DatetimeRange(**bounds) if is_dt else models.Range(**bounds)
            must.append(models.FieldCondition(key=path, range=rng))
        elif isinstance(value, (list, tuple)):
            must.append(
                models.FieldCondition(key=path, match=models.MatchAny(any=_check_any(key, value)))
            )
        else:
            v = _check_scalar(key, value)
            if isinstance(v, float):
                must.append(models.FieldCondition(key=path, range=models.Range(gte=v, lte=v)))
            else:
                must.append(models.FieldCondition(key=path, match=models.MatchValue(value=v)))
    return models.Filter(must=must)


def to_edge(filter: Filter | None) -> Any:
    """Translate a neutral filter to ``qdrant_edge.Filter`` (``None`` stays ``None``).

    Raises:
        ConfigError: the filter is malformed or a native filter of another engine.
    """
    import qdrant_edge as qe

    if filter is None or isinstance(filter, qe.Filter):
        return filter
    spec = _check_mapping(filter)
    must: list[Any] = []
    for key, value in spec.items():
        if key == DOC_ID_KEY:
            must.append(qe.HasIdCondition(set(_doc_ids(value))))
            continue
        path = _payload_key(key)
        if isinstance(value, Mapping):
            bounds, is_dt = _check_range(key, value)
            rng: Any = qe.RangeDateTime(**bounds) if is_dt else qe.RangeFloat(**bounds)
            must.append(qe.FieldCondition(key=path, range=rng))
        elif isinstance(value, (list, tuple)):
            must.append(qe.FieldCondition(key=path, match=qe.MatchAny(_check_any(key, value))))
        else:
            v = _check_scalar(key, value)
            if isinstance(v, float):
                must.append(qe.FieldCondition(key=path, range=qe.RangeFloat(gte=v, lte=v)))
            else:
                must.append(qe.FieldCondition(key=path, match=qe.MatchValue(v)))
    return qe.Filter(must=must)
