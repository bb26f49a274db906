"""``latentlex label`` and ``latentlex inspect``, in :mod:`latentlex.cli`'s registry shape.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="latentlex")
    >>> handlers = add_cli(parser.add_subparsers(dest="command"))
    >>> sorted(handlers)
    ['inspect', 'label']
"""

from __future__ import annotations

import argparse
import importlib
import inspect as pyinspect
import json
import sys
from collections.abc import Callable
from itertools import islice
from typing import Any

from ._clireg import Commands, Handler, add_commands
from ._validate import positive_int_arg
from .errors import ConfigError

__all__ = ["CLI_COMMANDS", "add_cli", "load_llm"]


def load_llm(spec: str) -> Any:
    """The LLM named by ``"module:attribute"``: an LLM object, or a zero-argument factory of one.

    Example:
        >>> load_llm("mypkg.llms:make_llm")  # doctest: +SKIP
        OpenAI(model='gpt-4o-mini', ...)
    """
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"--describe-with takes 'module:attribute', got {spec!r}")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"cannot import {module!r} for --describe-with: {e}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{module!r} has no attribute {attr!r}") from None
    if hasattr(obj, "complete") or hasattr(obj, "invoke"):
        return obj
    if isinstance(obj, type):
        return obj()  # an LLM class: its defaults
    if callable(obj):
        try:
            pyinspect.signature(obj).bind()
        except TypeError:
            return obj  # needs arguments: a ``prompt -> str`` callable
        except ValueError:  # no signature (builtins)
            return obj
        return obj()  # a zero-argument factory
    return obj


def _texts(corpus: str, max_docs: int | None) -> tuple[list[str], list[str]]:
    from .corpus import read_corpus

    docs = read_corpus(corpus)
    if max_docs is not None:
        docs = islice(docs, max_docs)
    listed = list(docs)
    return [d.id for d in listed], [d.text for d in listed]


# ---------------------------------------------------------------------------- label
def _cfg_label(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sae", required=True, help="SAE folder; labels.json is written into it")
    p.add_argument("--corpus", default=None, help="corpus.jsonl, .txt or a folder to label from")
    p.add_argument("--max-docs", type=positive_int_arg, default=None, help="use at most N texts")
    p.add_argument("--model", default=None, help="backbone (default: the one the SAE names)")
    p.add_argument("--top-words", type=int, default=10, help="words kept per latent")
    p.add_argument("--examples", type=int, default=8, help="snippets kept per latent")
    p.add_argument(
        "--fresh", action="store_true", help="drop the LLM descriptions of an existing labels.json"
    )
    p.add_argument(
        "--describe-with",
        default=None,
        metavar="MODULE:ATTR",
        help="also write LLM descriptions with this LlamaIndex LLM / LangChain chat model "
        "(an object or a zero-argument factory); resumable",
    )
    p.add_argument(
        "--describe-only", action="store_true", help="skip labelling (needs labels.json)"
    )
    p.add_argument("--max-calls", type=int, default=None, help="at most N LLM calls this run")
    p.add_argument("--llm-batch", type=int, default=16, help="LLM calls between two saves")
    p.add_argument("--yes", action="store_true", help="do not ask before the LLM calls")
    p.add_argument("--quiet", action="store_true")


def _confirm(args: argparse.Namespace) -> Callable[[Any], bool]:
    def ask(estimate: Any) -> bool:
        print(f"LLM descriptions: {estimate}")
        if args.yes or estimate.n_calls == 0:
            return True
        if not sys.stdin.isatty():
            print("not a terminal: re-run with --yes to make these calls")
            return False
        return input("proceed? [y/N] ").strip().lower() in ("y", "yes")

    return ask


def _run_label(args: argparse.Namespace) -> int:
    from .labels import label_sae, load_labels

    if args.describe_only:
        if args.describe_with is None:
            raise ConfigError("--describe-only needs --describe-with MODULE:ATTR")
        labels = load_labels(args.sae)
    else:
        if args.corpus is None:
            raise ConfigError("--corpus is required (unless --describe-only)")
        ids, texts = _texts(args.corpus, args.max_docs)
        labels = label_sae(
            args.sae,
            texts,
            backbone=args.model,
            keep_descriptions=not args.fresh,
            top_words=args.top_words,
            n_examples=args.examples,
            progress=not args.quiet,
            doc_ids=ids,
        )
        meta = labels.meta
        print(
            f"labelled {len(labels)} of {meta.get('width')} latents from {meta.get('n_docs')} "
            f"texts; wrote {args.sae}/labels.json"
        )
        for j in sorted(labels.latents, key=lambda j: -labels[j].frequency)[:5]:
            print(f"  {j:>6}  {labels[j].display}")
    if args.describe_with is not None:
        from .describe import describe_latents

        llm = load_llm(args.describe_with)
        result = describe_latents(
            args.sae,
            llm,
            batch_size=args.llm_batch,
            max_calls=args.max_calls,
            confirm=_confirm(args),
            progress=not args.quiet,
        )
        if result.cancelled:
            return 1
        print(
            f"described {len(result.described)} latents ({result.skipped} already described, "
            f"{len(result.failed)} without a usable answer) in {result.calls} calls"
        )
    return 0


# ---------------------------------------------------------------------------- inspect
def _cfg_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sae", required=True, help="SAE folder")
    p.add_argument("--corpus", default=None, help="re-measure FVU/L0/dead and the Zipf curve on it")
    p.add_argument("--max-docs", type=positive_int_arg, default=None)
    p.add_argument("--word", default=None, help="list the latents closest to this word")
    p.add_argument("--out", default=None, help="write zipf.png, frequency.png, report.html here")
    p.add_argument("--model", default=None, help="backbone (default: the one the SAE names)")
    p.add_argument("--top", type=positive_int_arg, default=10)
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--quiet", action="store_true")


def _print_latents(title: str, rows: list[dict[str, Any]], score: str) -> None:
    print(title)
    for r in rows:
        print(f"  {r['latent']:>6}  {r[score]:>8.3f}  {r.get('label') or ''}")


def _run_inspect(args: argparse.Namespace) -> int:
    from .inspect import inspect_sae

    texts = _texts(args.corpus, args.max_docs)[1] if args.corpus else None
    info = inspect_sae(
        args.sae,
        texts,
        args.model,
        word=args.word,
        out_dir=args.out,
        top=args.top,
        progress=not args.quiet,
    )
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    s, t, c, z = info["sae"], info["trained"], info["corpus"], info["zipf"]
    print(
        f"{s['path']}: {s['architecture']} SAE, {s['mode']} mode, width {s['width']}, k {s['k']}, "
        f"backbone {s['backbone']}; {s['labelled']} latents labelled"
    )
    if t:
        print("trained: " + ", ".join(f"{k}={v:.3f}" for k, v in t.items()))
    if c:
        print(
            f"corpus ({c['n_docs']} texts, {c['n_rows']} rows): FVU={c['fvu']:.3f} "
            f"L0={c['l0']:.1f} dead={c['dead']} ({c['dead_pct']:.1f}%), "
            f"always-on={c['always_on_count']}"
        )
    if z:
        print(f"Zipf exponent {z['exponent']:.2f} (R² {z['r2']:.2f}, from {z['source']})")
    w = info["word"]
    if w:
        print(f"word {w['word']!r} -> tokens {w['tokens']}")
        _print_latents("  by activation:", w["by_activation"], "activation")
        _print_latents("  by decoder cosine:", w["by_decoder_cosine"], "cosine")
    for name, path in info["files"].items():
        print(f"wrote {name}: {path}")
    return 0


CLI_COMMANDS: Commands = {
    "label": (_cfg_label, _run_label, "label SAE latents from a corpus (optionally with an LLM)"),
    "inspect": (_cfg_inspect, _run_inspect, "SAE diagnostics: FVU, dead, Zipf, HTML report"),
}
"""``latentlex label`` / ``latentlex inspect``, in :mod:`latentlex.cli`'s registry shape."""


def add_cli(subparsers: Any) -> dict[str, Handler]:
    """Add ``label`` and ``inspect`` to an argparse sub-parser set; returns their handlers.

    Each parser also gets ``handler`` as a default, so ``args.handler(args)`` runs it.
    """
    return add_commands(subparsers, CLI_COMMANDS)
