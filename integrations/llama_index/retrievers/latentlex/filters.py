"""LlamaIndex ``MetadataFilters`` → latentlex's neutral filter mapping.

The neutral language (:mod:`latentlex.store.filters`) is a conjunction of per-key conditions:
equality, any-of a list, and ranges. What maps onto it:

========================  =====================================
LlamaIndex operator        neutral condition
========================  =====================================
``EQ``                     ``{"key": value}``
``IN`` / ``ANY``           ``{"key": [a, b]}``
``CONTAINS``               ``{"key": value}`` (Qdrant matches an element of an array field)
``GT/GTE/LT/LTE``          ``{"key": {"gt": x, ...}}`` (bounds on one key merge)
nested ``AND`` groups      flattened
========================  =====================================

Everything else (``OR``, ``NOT``, ``NE``, ``NIN``, ``ALL``, text match, ``IS_EMPTY``, two
different values for one key) cannot be expressed and raises :class:`~latentlex.errors.ConfigError`.

Example:
    >>> from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
    >>> to_neutral(MetadataFilters(filters=[
    ...     MetadataFilter(key="year", value=2000, operator=">="),
    ...     MetadataFilter(key="year", value=2020, operator="<"),
    ...     MetadataFilter(key="kind", value="animal"),
    ... ]))
    {'year': {'gte': 2000, 'lt': 2020}, 'kind': 'animal'}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_index.core.vector_stores.types import (
    ExactMatchFilter,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from latentlex.errors import ConfigError

__all__ = ["to_neutral"]

_RANGES = {
    FilterOperator.GT: "gt",
    FilterOperator.GTE: "gte",
    FilterOperator.LT: "lt",
    FilterOperator.LTE: "lte",
}
_LISTS = (FilterOperator.IN, FilterOperator.ANY)
_VALUES = (FilterOperator.EQ, FilterOperator.CONTAINS)


def to_neutral(filters: MetadataFilters | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Translate LlamaIndex ``MetadataFilters`` (or pass a neutral mapping through).

    Raises:
        ConfigError: a condition the neutral filter language cannot express (named in the message).
    """
    if filters is None:
        return None
    if isinstance(filters, Mapping):
        return dict(filters)
    if not isinstance(filters, MetadataFilters):
        raise ConfigError(
            f"filters must be llama_index MetadataFilters or a latentlex filter mapping, "
            f"got {type(filters).__name__}"
        )
    out: dict[str, Any] = {}
    _merge(filters, out)
    return out or None


def _merge(filters: MetadataFilters, out: dict[str, Any]) -> None:
    condition = filters.condition or FilterCondition.AND
    if condition != FilterCondition.AND and len(filters.filters) > 1:
        raise ConfigError(
            f"latentlex filters are conjunctions: condition {condition.value!r} cannot be "
            f"expressed; use AND, or pass a native qdrant_client Filter to LatentIndex.search"
        )
    if condition == FilterCondition.NOT:
        raise ConfigError("latentlex filters cannot express NOT; use AND conditions only")
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            _merge(f, out)
        elif isinstance(f, (MetadataFilter, ExactMatchFilter)):
            op = getattr(f, "operator", FilterOperator.EQ)
            _add(out, f.key, FilterOperator(op), f.value)
        else:  # pragma: no cover - pydantic already restricts the type
            raise ConfigError(f"unsupported filter {f!r}")


def _add(out: dict[str, Any], key: str, op: FilterOperator, value: Any) -> None:
    if op in _RANGES:
        if isinstance(value, (list, str)) or value is None:
            raise ConfigError(f"filter {key!r}: {op.value!r} needs a number, got {value!r}")
        current = out.setdefault(key, {})
        if not isinstance(current, dict):
            raise ConfigError(f"filter {key!r}: cannot combine a range with an equality condition")
        bound = _RANGES[op]
        if bound in current and current[bound] != value:
            raise ConfigError(f"filter {key!r}: two different {op.value!r} bounds")
        current[bound] = value
        return
    if op in _LISTS:
        if not isinstance(value, list):
            value = [value]
        cond: Any = list(value)
    elif op in _VALUES:
        if isinstance(value, list) or value is None:
            raise ConfigError(f"filter {key!r}: {op.value!r} needs a single value, got {value!r}")
        cond = value
    else:
        raise ConfigError(
            f"filter {key!r}: operator {op.value!r} cannot be expressed in latentlex filters "
            f"(supported: ==, in, any, contains, >, >=, <, <=, joined with AND)"
        )
    if key in out and out[key] != cond:
        raise ConfigError(f"filter {key!r}: two different conditions on one key cannot be ANDed")
    out[key] = cond
