"""The CLI's command registry shape, shared by :mod:`latentlex.cli` and the modules that add
commands to it (:mod:`latentlex.hub`, :mod:`latentlex.cli_interp`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]
Commands = dict[str, tuple[Configure, Handler, str]]
"""``name -> (configure(parser), handler(args) -> exit code, help)``."""


def add_commands(
    subparsers: Any, commands: Mapping[str, tuple[Configure, Handler, str]]
) -> dict[str, Handler]:
    """Add ``commands`` to an argparse sub-parser set; returns their handlers.

    Each parser also gets ``handler`` as a default, so ``args.handler(args)`` runs it.
    """
    handlers: dict[str, Handler] = {}
    for name, (configure, handler, help_) in commands.items():
        p = subparsers.add_parser(name, help=help_, description=help_)
        configure(p)
        p.set_defaults(handler=handler)
        handlers[name] = handler
    return handlers
