"""A neutral filter language, translated to both engines' native filter types.

A filter is a mapping; every entry is one condition and all of them must hold (AND):

- ``{"key": value}``: ``key`` equals ``value`` (``str``, ``int``, ``bool``; a ``float`` becomes
  the closed range ``[value, value]``, as Qdrant has no float equality);
- ``{"key": [a, b]}``: any of the listed values (all ``str`` or all ``int``; an empty list
  matches nothing);
- ``{"key": {op: arg, ...}}``: operators, all of which must hold:

  ==============================  ================================================================
  ``eq`` / ``ne``                 equal / not equal (``ne`` also matches points without the key)
  ``in`` / ``nin``                any of / none of a list (``nin`` also matches points without it)
  ``gt``, ``gte``, ``lt``, ``lte``  a range: numbers, or ISO-8601 strings for a datetime range
  ``contains``                    an array value holds this element
  ``is_empty``                    ``True``: the key is missing, ``null`` or ``[]``; ``False``: not
  ==============================  ================================================================

  (each operator may also be written with a leading ``$``: ``{"$gte": 3}``);
- ``{"$and": [f, ...]}``, ``{"$or": [f, ...]}``, ``{"$not": f}``: combine filters, nested to any
  depth up to :data:`MAX_DEPTH` (``$not`` holds when ``f`` does not).

Keys address the user metadata of a document (stored under the payload object ``metadata``;
dots address nested objects: ``"author.name"``). The special key ``doc_id`` addresses the
document id itself (a value, a list, or ``eq``/``ne``/``in``/``nin``; it becomes a point-id
condition).

Native filters are accepted too: a ``qdrant_client.models.Filter`` on every engine (the
embedded engine converts it: field match/any/except/text, ranges, is-empty, is-null, has-id,
nested conditions and filters, ``min_should``), and a ``qdrant_edge.Filter`` on the embedded engine. Their
keys are payload paths (``"metadata.lang"``). Every filter, native or neutral, is refused beyond
:data:`MAX_DEPTH` levels of nesting, :data:`MAX_CONDITIONS` conditions or :data:`MAX_VALUES`
listed values, before it reaches an engine.

Example:
    >>> f = to_qdrant({"lang": "en", "year": {"gte": 2020}})
    >>> [c.key for c in f.must]
    ['metadata.lang', 'metadata.year']
    >>> g = to_qdrant({"$or": [{"lang": "en"}, {"tags": {"contains": "x"}}], "draft": {"ne": True}})
    >>> len(g.must), len(g.must[0].should)
    (2, 2)
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from latentlex._validate import INT64, has_surrogate
from latentlex.errors import ConfigError

__all__ = [
    "DOC_ID_KEY",
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "MAX_VALUES",
    "METADATA_FIELD",
    "OPERATORS",
    "Filter",
    "check",
    "to_edge",
    "to_qdrant",
]

#: Payload object holding the user metadata; neutral keys are resolved inside it.
METADATA_FIELD = "metadata"
#: The neutral key that addresses document ids.
DOC_ID_KEY = "doc_id"
#: Deepest nesting of groups accepted (neutral ``$and``/``$or``/``$not``, native nested filters).
MAX_DEPTH = 32
#: Most conditions and groups in one filter.
MAX_CONDITIONS = 4096
#: Most values listed in one filter (``in``/``nin`` lists and id lists together).
MAX_VALUES = 100_000

_RANGE_OPS = ("gt", "gte", "lt", "lte")
#: The operators of a ``{"key": {op: arg}}`` condition (also accepted with a leading ``$``).
OPERATORS = ("eq", "ne", "in", "nin", *_RANGE_OPS, "contains", "is_empty")
_ALIASES = {"not_in": "nin", "==": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
_COMBINATORS = ("$and", "$or", "$not")
_SUPPORTED = (
    "supported: {'key': value}, {'key': [a, b]}, {'key': {op: arg}} with op in "
    + ", ".join(OPERATORS)
    + ", and {'$and': [...]}, {'$or': [...]}, {'$not': {...}}"
)

#: A neutral filter mapping, or a native filter object of the engine in use.
Filter = Mapping[str, Any] | Any


# ----------------------------------------------------------------------------------------------
# The engine-neutral tree both translations start from
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cond:
    """One condition on a payload path (``path`` is ``None`` for ``has_id``).

    ``kind``: ``match`` (value), ``any`` / ``except`` (values), ``range`` (bounds; ``datetime``
    tells which), ``text``, ``empty``, ``null``, ``has_id`` (point ids), ``nested`` (a
    :class:`_Group` applied to each object of an array).
    """

    kind: str
    path: str | None
    value: Any = None
    datetime: bool = False


@dataclass(frozen=True)
class _Group:
    """Qdrant's boolean clause: all of ``must``, one of ``should``, none of ``must_not``."""

    must: tuple[_Node, ...] = ()
    should: tuple[_Node, ...] = ()
    must_not: tuple[_Node, ...] = ()
    min_should: tuple[tuple[_Node, ...], int] | None = None


_Node = _Cond | _Group


class _Budget:
    """Counts conditions and listed values while a filter is read; refuses a filter too large."""

    def __init__(self) -> None:
        self.conditions = 0
        self.values = 0

    def condition(self) -> None:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise ConfigError(
                f"the filter has more than {MAX_CONDITIONS} conditions; narrow it (list many "
                f"values in one 'in' condition instead of many '==' conditions)"
            )

    def listed(self, n: int) -> None:
        self.values += n
        if self.values > MAX_VALUES:
            raise ConfigError(
                f"the filter lists more than {MAX_VALUES:,} values; split the request "
                f"(e.g. delete by ids in batches)"
            )

    @staticmethod
    def depth(depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ConfigError(
                f"the filter is nested deeper than {MAX_DEPTH} levels; flatten it "
                f"(an $and/$or takes any number of filters at one level)"
            )


# ----------------------------------------------------------------------------------------------
# Reading the neutral language
# ----------------------------------------------------------------------------------------------


def _payload_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ConfigError(f"filter keys must be non-empty strings, got {key!r}")
    return f"{METADATA_FIELD}.{key}"


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
    if value is None:
        raise ConfigError(
            f"filter {key!r}: None is not a value to match; use {{{key!r}: {{'is_empty': True}}}}"
        )
    raise ConfigError(
        f"filter {key!r}: unsupported value {value!r} (use str, int, bool, float, a list, or an "
        f"operator mapping; {_SUPPORTED})"
    )


def _check_any(key: str, values: Any, budget: _Budget) -> list[Any]:
    if not isinstance(values, (list, tuple)):
        raise ConfigError(f"filter {key!r}: 'in'/'nin' take a list, got {values!r}")
    budget.listed(len(values))
    vals = [_check_scalar(key, v) for v in values]
    if all(isinstance(v, str) for v in vals):
        return vals
    if all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return vals
    raise ConfigError(
        f"filter {key!r}: a list must hold only strings or only integers, got {vals!r}"
    )


def _check_range(key: str, spec: Mapping[str, Any]) -> _Cond:
    bounds = {op: v for op, v in spec.items() if v is not None}
    path = _payload_key(key)
    if bounds and all(isinstance(v, str) for v in bounds.values()):
        for op, v in bounds.items():
            try:
                _dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                raise ConfigError(
                    f"filter {key!r}: range bound {op}={v!r} is neither a number nor an "
                    f"ISO-8601 datetime"
                ) from None
        return _Cond("range", path, bounds, datetime=True)
    for op, v in bounds.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"filter {key!r}: range bound {op}={v!r} must be a finite number")
    return _Cond("range", path, {op: float(v) for op, v in bounds.items()})


def _equal(key: str, value: Any) -> _Cond:
    v = _check_scalar(key, value)
    path = _payload_key(key)
    if isinstance(v, float):
        return _Cond("range", path, {"gte": v, "lte": v})
    return _Cond("match", path, v)


def _operator(op: Any) -> str:
    name = op[1:] if isinstance(op, str) and op.startswith("$") else op
    name = _ALIASES.get(name, name)
    if name not in OPERATORS:
        raise ConfigError(f"unknown filter operator {op!r}; {_SUPPORTED}")
    return str(name)


def _field(key: str, value: Any, budget: _Budget) -> list[_Node]:
    """The conditions of one ``key: value`` entry (several for an operator mapping)."""
    if isinstance(value, (list, tuple)):
        budget.condition()
        return [_Cond("any", _payload_key(key), _check_any(key, value, budget))]
    if not isinstance(value, Mapping):
        budget.condition()
        return [_equal(key, value)]
    if not value:
        raise ConfigError(f"filter {key!r}: an empty operator mapping; {_SUPPORTED}")
    ops = {_operator(op): arg for op, arg in value.items()}
    out: list[_Node] = []
    ranges = {op: ops.pop(op) for op in _RANGE_OPS if op in ops}
    if ranges:
        budget.condition()
        out.append(_check_range(key, ranges))
    for op, arg in ops.items():
        budget.condition()
        path = _payload_key(key)
        if op in ("eq", "contains"):
            out.append(_equal(key, arg))
        elif op == "ne":
            out.append(_Group(must_not=(_equal(key, arg),)))
        elif op == "in":
            out.append(_Cond("any", path, _check_any(key, arg, budget)))
        elif op == "nin":
            out.append(_Group(must_not=(_Cond("any", path, _check_any(key, arg, budget)),)))
        else:  # is_empty
            if not isinstance(arg, bool):
                raise ConfigError(f"filter {key!r}: 'is_empty' takes True or False, got {arg!r}")
            empty = _Cond("empty", path)
            out.append(empty if arg else _Group(must_not=(empty,)))
    return out


def _doc_ids(value: Any, budget: _Budget) -> list[_Node]:
    from latentlex.store.base import point_id

    def ids(v: Any) -> tuple[str, ...]:
        many = [v] if isinstance(v, str) else v
        if not isinstance(many, (list, tuple)) or not all(isinstance(x, str) for x in many):
            raise ConfigError(f"filter 'doc_id' takes a string or a list of strings, got {v!r}")
        budget.listed(len(many))
        return tuple(point_id(x) for x in many)

    budget.condition()
    if not isinstance(value, Mapping):
        return [_Cond("has_id", None, ids(value))]
    out: list[_Node] = []
    for op, arg in value.items():
        name = _operator(op)
        if name not in ("eq", "in", "ne", "nin"):
            raise ConfigError(f"filter 'doc_id' takes eq, in, ne or nin, got {op!r}")
        cond = _Cond("has_id", None, ids(arg))
        out.append(cond if name in ("eq", "in") else _Group(must_not=(cond,)))
    return out


def _neutral(spec: Any, budget: _Budget, depth: int) -> _Group:
    _Budget.depth(depth)
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"a filter inside $and/$or/$not must be a mapping, got {type(spec).__name__}"
        )
    must: list[_Node] = []
    for key, value in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(f"{key} takes a non-empty list of filters, got {value!r}")
            budget.condition()
            children = tuple(_neutral(f, budget, depth + 1) for f in value)
            if key == "$and":
                must.extend(_splice(children))
            else:
                must.append(_Group(should=children))
        elif key == "$not":
            budget.condition()
            must.append(_Group(must_not=(_neutral(value, budget, depth + 1),)))
        elif isinstance(key, str) and key.startswith("$"):
            raise ConfigError(f"unknown filter combinator {key!r}; use {', '.join(_COMBINATORS)}")
        elif key == DOC_ID_KEY:
            must.extend(_doc_ids(value, budget))
        else:
            must.extend(_field(key, value, budget))
    return _Group(must=tuple(must))


def _splice(groups: Sequence[_Group]) -> list[_Node]:
    """The members of AND-ed groups: a group that is a bare conjunction joins its parent's."""
    out: list[_Node] = []
    for g in groups:
        if not g.should and not g.must_not and g.min_should is None:
            out.extend(g.must)
        else:
            out.append(g)
    return out


# ----------------------------------------------------------------------------------------------
# Reading native filters (limits; qdrant_client -> tree for the embedded engine)
# ----------------------------------------------------------------------------------------------


def _items(x: Any) -> list[Any]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _from_client(flt: Any, budget: _Budget, depth: int) -> _Group:
    """A ``qdrant_client.models.Filter`` as the neutral tree (refusing what cannot be converted)."""
    _Budget.depth(depth)
    parts = [
        tuple(_client_cond(c, budget, depth) for c in _items(getattr(flt, name, None)))
        for name in ("must", "should", "must_not")
    ]
    min_should = None
    ms = getattr(flt, "min_should", None)
    if ms is not None:
        min_should = (
            tuple(_client_cond(c, budget, depth) for c in _items(ms.conditions)),
            int(ms.min_count),
        )
    return _Group(parts[0], parts[1], parts[2], min_should)


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, (_dt.datetime, _dt.date)) else v


#: The parts of a qdrant_client ``FieldCondition`` (one is set).
_FIELD_PARTS: tuple[str, ...] = ("match", "range", "is_empty", "is_null", "values_count")
_FIELD_PARTS += ("geo_radius", "geo_bounding_box", "geo_polygon")


def _client_cond(c: Any, budget: _Budget, depth: int) -> _Node:
    from qdrant_client import models as m

    budget.condition()
    if isinstance(c, m.Filter):
        return _from_client(c, budget, depth + 1)
    if isinstance(c, m.NestedCondition):
        return _Cond("nested", c.nested.key, _from_client(c.nested.filter, budget, depth + 1))
    if isinstance(c, m.HasIdCondition):
        budget.listed(len(c.has_id))
        return _Cond(
            "has_id", None, tuple(str(i) if not isinstance(i, int) else i for i in c.has_id)
        )
    if isinstance(c, m.IsEmptyCondition):
        return _Cond("empty", c.is_empty.key)
    if isinstance(c, m.IsNullCondition):
        return _Cond("null", c.is_null.key)
    if isinstance(c, m.FieldCondition):
        set_fields = [f for f in _FIELD_PARTS if getattr(c, f, None) is not None]
        if set_fields == ["match"]:
            match = c.match
            if isinstance(match, m.MatchValue):
                return _Cond("match", c.key, match.value)
            if isinstance(match, m.MatchAny):
                budget.listed(len(match.any))
                return _Cond("any", c.key, list(match.any))
            if isinstance(match, m.MatchExcept):
                values = list(match.except_)
                budget.listed(len(values))
                return _Cond("except", c.key, values)
            if isinstance(match, m.MatchText):
                return _Cond("text", c.key, match.text)
        elif set_fields == ["range"]:
            r = c.range
            bounds = {op: getattr(r, op) for op in _RANGE_OPS if getattr(r, op) is not None}
            if isinstance(r, m.DatetimeRange):
                return _Cond("range", c.key, {k: _iso(v) for k, v in bounds.items()}, True)
            return _Cond("range", c.key, {k: float(v) for k, v in bounds.items()})
        elif set_fields in (["is_empty"], ["is_null"]):
            want = getattr(c, set_fields[0])
            cond = _Cond("empty" if set_fields == ["is_empty"] else "null", c.key)
            return cond if want else _Group(must_not=(cond,))
        what = f"FieldCondition({', '.join(set_fields) or 'nothing'} on {c.key!r})"
    else:
        what = type(c).__name__
    raise ConfigError(
        f"the embedded engine cannot take the qdrant_client filter condition {what}; it converts "
        f"FieldCondition with MatchValue/MatchAny/MatchExcept/MatchText or a Range/DatetimeRange, "
        f"IsEmptyCondition, IsNullCondition, HasIdCondition, NestedCondition, nested Filter and min_should (or "
        f"give a qdrant_edge.Filter, or a neutral mapping: {_SUPPORTED})"
    )


def _check_native(flt: Any, children: Any) -> None:
    """Walk a native filter without recursion, refusing it past the depth and size limits.

    ``children(node)`` gives the nested filter-like nodes of a node and the number of values it
    lists.
    """
    budget = _Budget()
    stack = [(flt, 0)]
    while stack:
        node, depth = stack.pop()
        _Budget.depth(depth)
        kids, n_values = children(node)
        budget.listed(n_values)
        for kid in kids:
            budget.condition()
            stack.append((kid, depth + 1))


def _client_children(node: Any) -> tuple[list[Any], int]:
    from qdrant_client import models as m

    if isinstance(node, m.Filter):
        kids = [c for name in ("must", "should", "must_not") for c in _items(getattr(node, name))]
        if node.min_should is not None:
            kids += _items(node.min_should.conditions)
        return kids, 0
    if isinstance(node, m.NestedCondition):
        return [node.nested.filter], 0
    if isinstance(node, m.HasIdCondition):
        return [], len(node.has_id)
    match = getattr(node, "match", None)
    if isinstance(match, m.MatchAny):
        return [], len(match.any)
    if isinstance(match, m.MatchExcept):
        return [], len(match.except_)
    return [], 0


def _edge_children(node: Any) -> tuple[list[Any], int]:
    import qdrant_edge as qe

    if isinstance(node, qe.Filter):
        kids = [c for name in ("must", "should", "must_not") for c in _items(getattr(node, name))]
        if node.min_should is not None:
            kids += _items(node.min_should.conditions)
        return kids, 0
    if isinstance(node, qe.NestedCondition):
        return [node.filter], 0
    if isinstance(node, qe.HasIdCondition):
        return [], len(node.point_ids)
    match = getattr(node, "match", None)
    if isinstance(match, (qe.MatchAny, qe.MatchExcept)):
        return [], len(match.value)
    return [], 0


# ----------------------------------------------------------------------------------------------
# Writing each engine's filter
# ----------------------------------------------------------------------------------------------


def _qdrant_node(node: _Node) -> Any:
    from qdrant_client import models as m

    if isinstance(node, _Group):
        return m.Filter(
            must=[_qdrant_node(n) for n in node.must] or None,
            should=[_qdrant_node(n) for n in node.should] or None,
            must_not=[_qdrant_node(n) for n in node.must_not] or None,
            min_should=None
            if node.min_should is None
            else m.MinShould(
                conditions=[_qdrant_node(n) for n in node.min_should[0]],
                min_count=node.min_should[1],
            ),
        )
    k, key, v = node.kind, node.path, node.value
    if k == "has_id":
        return m.HasIdCondition(has_id=list(v))
    assert key is not None
    if k == "empty":
        return m.IsEmptyCondition(is_empty=m.PayloadField(key=key))
    if k == "null":
        return m.IsNullCondition(is_null=m.PayloadField(key=key))
    if k == "nested":
        return m.NestedCondition(nested=m.Nested(key=key, filter=_qdrant_node(v)))
    if k == "range":
        return m.FieldCondition(
            key=key, range=m.DatetimeRange(**v) if node.datetime else m.Range(**v)
        )
    match: Any = {
        "match": lambda: m.MatchValue(value=v),
        "any": lambda: m.MatchAny(any=list(v)),
        "except": lambda: m.MatchExcept(**{"except": list(v)}),
        "text": lambda: m.MatchText(text=v),
    }[k]()
    return m.FieldCondition(key=key, match=match)


def _edge_node(node: _Node) -> Any:
    import qdrant_edge as qe

    if isinstance(node, _Group):
        return qe.Filter(
            must=[_edge_node(n) for n in node.must] or None,
            should=[_edge_node(n) for n in node.should] or None,
            must_not=[_edge_node(n) for n in node.must_not] or None,
            min_should=None
            if node.min_should is None
            else qe.MinShould([_edge_node(n) for n in node.min_should[0]], node.min_should[1]),
        )
    k, key, v = node.kind, node.path, node.value
    if k == "has_id":
        return qe.HasIdCondition(set(v))
    assert key is not None
    if k == "empty":
        return qe.IsEmptyCondition(key)
    if k == "null":
        return qe.IsNullCondition(key)
    if k == "nested":
        return qe.NestedCondition(key, _edge_node(v))
    if k == "range":
        return qe.FieldCondition(
            key=key, range=qe.RangeDateTime(**v) if node.datetime else qe.RangeFloat(**v)
        )
    match: Any = {
        "match": lambda: qe.MatchValue(v),
        "any": lambda: qe.MatchAny(list(v)),
        "except": lambda: qe.MatchExcept(list(v)),
        "text": lambda: qe.MatchText(v),
    }[k]()
    return qe.FieldCondition(key=key, match=match)


def _unsupported(filter: Any, engine: str) -> ConfigError:
    return ConfigError(
        f"unsupported filter {type(filter).__name__} for the {engine}: give a mapping "
        f"({_SUPPORTED}; see latentlex.store.filters) or a qdrant_client.models.Filter"
        + (" or a qdrant_edge.Filter" if engine == "embedded engine" else "")
    )


def check(filter: Filter | None) -> Filter | None:
    """Validate a filter without translating it (``None`` passes); returns it unchanged.

    Raises:
        ConfigError: the filter is malformed, too deep or too large (the message says what is
            supported).
    """
    if filter is None:
        return None
    if isinstance(filter, Mapping):
        _neutral(filter, _Budget(), 0)
        return filter
    if _is_client_filter(filter):
        _check_native(filter, _client_children)
        return filter
    if _is_edge_filter(filter):
        _check_native(filter, _edge_children)
        return filter
    raise _unsupported(filter, "store")


def _is_client_filter(filter: Any) -> bool:
    from qdrant_client import models

    return isinstance(filter, models.Filter)


def _is_edge_filter(filter: Any) -> bool:
    try:
        import qdrant_edge as qe
    except ImportError:  # pragma: no cover - qdrant-edge is a dependency
        return False
    return isinstance(filter, qe.Filter)


def to_qdrant(filter: Filter | None) -> Any:
    """Translate a filter to ``qdrant_client.models.Filter`` (``None`` stays ``None``).

    A native ``qdrant_client`` filter passes through untouched once its size is checked.

    Raises:
        ConfigError: the filter is malformed, too deep or too large, or a ``qdrant_edge.Filter``.
    """
    if filter is None:
        return None
    if _is_client_filter(filter):
        _check_native(filter, _client_children)
        return filter
    if not isinstance(filter, Mapping):
        if _is_edge_filter(filter):
            raise ConfigError(
                "a qdrant_edge.Filter works only on the embedded engine (EdgeStore); give a "
                "neutral mapping or a qdrant_client.models.Filter"
            )
        raise _unsupported(filter, "Qdrant client store")
    return _qdrant_node(_neutral(filter, _Budget(), 0))


def to_edge(filter: Filter | None) -> Any:
    """Translate a filter to ``qdrant_edge.Filter`` (``None`` stays ``None``).

    A native ``qdrant_edge`` filter passes through untouched once its size is checked (the
    engine crashes the process on one nested thousands deep); a ``qdrant_client`` filter is
    converted.

    Raises:
        ConfigError: the filter is malformed, too deep or too large, or holds a native
            condition the conversion does not cover (the message lists what it covers).
    """
    if filter is None:
        return None
    if _is_edge_filter(filter):
        _check_native(filter, _edge_children)
        return filter
    if _is_client_filter(filter):
        _check_native(filter, _client_children)
        return _edge_node(_from_client(filter, _Budget(), 0))
    if not isinstance(filter, Mapping):
        raise _unsupported(filter, "embedded engine")
    return _edge_node(_neutral(filter, _Budget(), 0))
