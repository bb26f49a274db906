"""LlamaIndex ``MetadataFilters`` → latentlex's neutral filter mapping.

The neutral language (:mod:`latentlex.store.filters`) has AND/OR/NOT groups nested to any depth
and every operator below, so everything LlamaIndex can say maps over except full-text matching:

========================  ==============================================================
LlamaIndex                neutral
========================  ==============================================================
``AND`` / ``OR`` groups   ``{"$and": [...]}`` / ``{"$or": [...]}`` (nested groups too)
``NOT`` group             ``{"$not": {"$or": [...]}}`` (none of its filters holds)
``EQ`` / ``NE``           ``{"key": {"eq": v}}`` / ``{"key": {"ne": v}}``
``IN`` / ``NIN``          ``{"key": {"in": [...]}}`` / ``{"key": {"nin": [...]}}``
``GT/GTE/LT/LTE``         ``{"key": {"gt": x}}``, ...
``CONTAINS``              ``{"key": {"contains": v}}`` (an array value holds ``v``)
``ANY`` / ``ALL``         ``in`` / one ``contains`` per value, AND-ed
``IS_EMPTY``              ``{"key": {"is_empty": True}}`` (missing, null or ``[]``)
========================  ==============================================================

``TEXT_MATCH`` and ``TEXT_MATCH_INSENSITIVE`` raise :class:`~latentlex.errors.ConfigError`. The key
``doc_id`` (and ``document_id``) means the node's source document, as in LlamaIndex's other
vector stores: it becomes the stored ``ref_doc_id``.

Example:
    >>> from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
    >>> to_neutral(MetadataFilters(filters=[
    ...     MetadataFilter(key="year", value=2000, operator=">="),
    ...     MetadataFilter(key="kind", value="animal"),
    ... ]))
    {'$and': [{'year': {'gte': 2000}}, {'kind': {'eq': 'animal'}}]}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from latentlex.errors import ConfigError
from latentlex.store.filters import MAX_DEPTH
from latentlex.store.filters import check as check_filter

__all__ = ["REF_DOC_KEY", "to_neutral"]

#: Metadata key under which a node's source document id is stored.
REF_DOC_KEY = "ref_doc_id"

_OPS = {
    FilterOperator.EQ: "eq",
    FilterOperator.NE: "ne",
    FilterOperator.GT: "gt",
    FilterOperator.GTE: "gte",
    FilterOperator.LT: "lt",
    FilterOperator.LTE: "lte",
    FilterOperator.IN: "in",
    FilterOperator.NIN: "nin",
    FilterOperator.ANY: "in",
    FilterOperator.CONTAINS: "contains",
}
_SUPPORTED = "==, !=, >, >=, <, <=, in, nin, any, all, contains, is_empty; AND, OR, NOT groups"


def to_neutral(filters: MetadataFilters | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Translate LlamaIndex ``MetadataFilters`` (a neutral mapping or a native
    ``qdrant_client`` filter passes through, checked).

    Raises:
        ConfigError: an operator the neutral language cannot express (named in the message), or
            a filter past the depth/size limits.
    """
    if filters is None:
        return None
    if not isinstance(filters, MetadataFilters):
        try:
            checked: Any = check_filter(filters)
        except ConfigError as e:
            raise ConfigError(
                f"filters must be llama_index MetadataFilters, a latentlex filter mapping or a "
                f"qdrant_client Filter: {e}"
            ) from None
        return checked
    out = _group(filters, 0)
    if out is None:
        return None
    check_filter(out)
    return out


def _group(filters: MetadataFilters, depth: int) -> dict[str, Any] | None:
    if depth > MAX_DEPTH:
        raise ConfigError(f"MetadataFilters nested deeper than {MAX_DEPTH} levels; flatten them")
    parts = []
    for f in filters.filters:
        part = _group(f, depth + 1) if isinstance(f, MetadataFilters) else _one(f)
        if part is not None:
            parts.append(part)
    if not parts:
        return None
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.NOT:
        return {"$not": parts[0] if len(parts) == 1 else {"$or": parts}}
    if len(parts) == 1:
        return parts[0]
    return {"$or" if condition == FilterCondition.OR else "$and": parts}


def _one(f: MetadataFilter) -> dict[str, Any]:
    op = FilterOperator(getattr(f, "operator", FilterOperator.EQ))
    key = REF_DOC_KEY if f.key in ("doc_id", "document_id") else f.key
    value = f.value
    if op == FilterOperator.IS_EMPTY:
        return {key: {"is_empty": True}}
    if op == FilterOperator.ALL:
        values: list[Any] = list(value) if isinstance(value, list) else [value]
        if not values:
            raise ConfigError(f"filter {f.key!r}: 'all' needs at least one value")
        return {"$and": [{key: {"contains": v}} for v in values]}
    if op not in _OPS:
        raise ConfigError(
            f"filter {f.key!r}: operator {op.value!r} cannot be expressed in latentlex filters "
            f"(supported: {_SUPPORTED})"
        )
    name = _OPS[op]
    arg: Any = value
    if name in ("in", "nin") and not isinstance(value, list):
        arg = [value]
    return {key: {name: arg}}
