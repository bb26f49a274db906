"""Checks of user-given options shared by the framework adapters: unknown names refused with
the right one named, leg weights, and the close/context-manager protocol of index owners."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigError

if TYPE_CHECKING:
    from .index import LatentIndex

__all__ = ["ClosesIndex", "check_weights", "refuse_unknown"]

_Self = TypeVar("_Self", bound="ClosesIndex")


def refuse_unknown(
    given: Iterable[str],
    known: Iterable[str],
    owner: str,
    what: str = "argument",
    right_names: Mapping[str, str] | None = None,
) -> None:
    """Raise naming the right name for each unknown one (never silently ignore it).

    Args:
        given: the names given.
        known: the names accepted.
        owner: who refuses (for the message).
        what: ``"argument"``, ``"attribute"``, ``"setting"``, ...
        right_names: ``wrong name -> hint`` for names users reach for that mean something
            else here (``{"top_k": "use k="}``).

    Raises:
        TypeError: an unknown name, with a hint.
    """
    known = sorted(known)
    for name in given:
        if name in known:
            continue
        if right_names and name in right_names:
            hint = right_names[name]
        else:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
        raise TypeError(f"{owner} has no {what} {name!r}: {hint}")


def check_weights(weights: Any) -> tuple[float, ...] | None:
    """Leg weights as a tuple of two or three floats (``None`` stays ``None``).

    Raises:
        ConfigError: not two or three numbers.
    """
    if weights is None:
        return None
    try:
        out = tuple(float(w) for w in weights)
    except (TypeError, ValueError):
        out = ()
    if len(out) not in (2, 3) or isinstance(weights, (str, bytes)):
        raise ConfigError(
            f"weights must be two (dense, sparse) or three (dense, sparse, lexical) numbers, "
            f"got {weights!r}"
        )
    return out


class ClosesIndex:
    """``close()`` / ``aclose()`` and (async) context managers for an object owning a
    :class:`~latentlex.index.LatentIndex` (the adapters' retrievers and vector stores)."""

    def _owned_index(self) -> LatentIndex:
        return self.index  # type: ignore[attr-defined, no-any-return]

    def close(self) -> None:
        """Close the index (and its store); idempotent."""
        self._owned_index().close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await self._owned_index().aclose()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
