"""``latentlex`` command line: train, encode, index, search, info, eval."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from .errors import LatentLexError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Handler, str]] = {}


def command(
    name: str, help: str
) -> Callable[[Callable[[argparse.ArgumentParser], None]], Callable[[argparse.ArgumentParser], None]]:
    """Register ``configure(parser)``; the handler is ``_run_<name>``."""

    def wrap(
        configure: Callable[[argparse.ArgumentParser], None],
    ) -> Callable[[argparse.ArgumentParser], None]:
        handler = globals()[f"_run_{name.replace('-', '_')}"]
        _COMMANDS[name] = (configure, handler, help)
        return configure

    return wrap


# ---------------------------------------------------------------------------- train
def _run_train(args: argparse.Namespace) -> int:
    from .fit import FitConfig, fit_sae

    train_extra = {}
    if args.lr is not None:
        train_extra["lr"] = args.lr
    cfg = FitConfig(
        model=args.model,
        mode=args.mode,
        width=args.width,
        k=args.k,
        epochs=args.epochs,
        max_tokens=args.max_tokens,
        keep_special_tokens=args.keep_special_tokens,
        bm25_k1=args.k1,
        bm25_b=args.b,
        cache_dir=args.cache_dir,
        seed=args.seed,
        progress=not args.quiet,
        train=train_extra,
    )
    sae = fit_sae(args.corpus, args.out, cfg)
    m = sae.cfg.metrics
    print(
        f"saved {args.out}: mode={sae.cfg.mode} width={sae.cfg.width} k={sae.cfg.k} "
        f"FVU={m.get('fvu', float('nan')):.3f} L0={m.get('l0', float('nan')):.1f} "
        f"dead={m.get('dead_pct', float('nan')):.1f}% avgdl={sae.cfg.avgdl:.1f}"
    )
    return 0


@command("train", "fit an SAE on a corpus and save it")
def _cfg_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True, help="corpus.jsonl, .txt (one doc per line) or a folder")
    p.add_argument("--out", required=True, help="folder to write cfg.json + sae.safetensors to")
    p.add_argument("--model", default=None, help="sentence-transformers name or path (default: all-MiniLM-L6-v2)")
    p.add_argument("--mode", choices=["token", "pooled"], default="token")
    p.add_argument("--width", type=int, default=8192)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--k1", type=float, default=None, help="BM25 k1 (default by mode)")
    p.add_argument("--b", type=float, default=None, help="BM25 b (default by mode)")
    p.add_argument("--keep-special-tokens", action="store_true")
    p.add_argument("--cache-dir", default=None, help="keep token states here between runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")


# ---------------------------------------------------------------------------- encode
def _run_encode(args: argparse.Namespace) -> int:
    from .terms import LatentTermEncoder

    enc = LatentTermEncoder(args.sae, args.model)
    texts = list(args.text)
    out = enc.encode_queries(texts) if args.query else enc.encode_documents(texts)
    for text, vec in zip(texts, out.sparse, strict=True):
        top = vec.top(args.top)
        pairs = sorted(top.as_dict().items(), key=lambda kv: -kv[1])
        if args.json:
            print(json.dumps({"text": text, "n_terms": len(vec), "top": pairs}))
        else:
            shown = ", ".join(f"{i}:{w:.2f}" for i, w in pairs)
            print(f"{text[:60]!r}: {len(vec)} latent terms; top {shown}")
    return 0


@command("encode", "print the latent terms of texts")
def _cfg_encode(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", nargs="+")
    p.add_argument("--sae", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--query", action="store_true", help="query-side weights")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--json", action="store_true")


# ---------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentlex", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (configure, _, help_) in _COMMANDS.items():
        configure(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler = _COMMANDS[args.command][1]
    try:
        return handler(args)
    except LatentLexError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
