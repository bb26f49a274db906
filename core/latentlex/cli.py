"""``latentlex`` command line: train, encode, index, search, info, eval, pull, push, label, inspect."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._clireg import Commands
from ._validate import has_surrogate, positive_int_arg
from .errors import LatentLexError, StoreError

if TYPE_CHECKING:
    from .index import LatentIndex
    from .lexical import LexicalConfig

__all__ = ["main"]

_COMMANDS: Commands = {}


def command(
    name: str, help: str
) -> Callable[
    [Callable[[argparse.ArgumentParser], None]], Callable[[argparse.ArgumentParser], None]
]:
    """Register ``configure(parser)``; the handler is ``_run_<name>``."""

    def wrap(
        configure: Callable[[argparse.ArgumentParser], None],
    ) -> Callable[[argparse.ArgumentParser], None]:
        handler = globals()[f"_run_{name.replace('-', '_')}"]
        _COMMANDS[name] = (configure, handler, help)
        return configure

    return wrap


_positive_int = positive_int_arg


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
        layer=args.layer,
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


_BUDGET_HELP = (
    "token budget of the fit: train on whole documents, drawn at random (--seed), holding at most "
    "this many token states; 'all' trains on every token (default: 250000 in token mode, every "
    "document in pooled mode)"
)
_EPOCHS_HELP = "passes over the training sample (default: 6 in token mode, 3 in pooled mode)"


def _budget_arg(value: str) -> int | str:
    """``--max-tokens``: a positive integer (``250000``, ``250_000``) or ``all``."""
    if value in ("all", "auto"):
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"--max-tokens takes a positive integer or 'all'; got {value!r}"
        )
    return n


def _layer_arg(value: str) -> int | list[int | None] | None:
    """``--layer``: ``3``, ``final``, or several comma-separated (``final,1``)."""
    from ._validate import canonical_layer
    from .errors import ConfigError

    parts = [v.strip() for v in value.split(",")]
    try:
        layers = [None if v in ("final", "") else int(v) for v in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--layer takes integers or 'final', comma-separated; got {value!r}"
        ) from None
    try:
        return canonical_layer(layers)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@command("train", "fit an SAE on a corpus and save it")
def _cfg_train(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--corpus", required=True, help="corpus.jsonl, .txt (one doc per line) or a folder"
    )
    p.add_argument("--out", required=True, help="folder to write cfg.json + sae.safetensors to")
    p.add_argument(
        "--model",
        default=None,
        help="sentence-transformers name or path (default: all-MiniLM-L6-v2)",
    )
    p.add_argument("--mode", choices=["token", "pooled"], default="token")
    p.add_argument("--width", type=int, default=8192)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--epochs", type=float, default=None, help=_EPOCHS_HELP)
    p.add_argument("--max-tokens", type=_budget_arg, default="auto", help=_BUDGET_HELP)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--k1", type=float, default=None, help="BM25 k1 (default by mode)")
    p.add_argument("--b", type=float, default=None, help="BM25 b (default by mode)")
    p.add_argument("--keep-special-tokens", action="store_true")
    p.add_argument(
        "--layer",
        type=_layer_arg,
        default=None,
        help="backbone layer to read (default: final); several, comma-separated, are read "
        "together, e.g. 'final,1'",
    )
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
    p.add_argument("--top", type=_positive_int, default=10)
    p.add_argument("--json", action="store_true")


# ---------------------------------------------------------------------------- index / search / info
_MODEL_HELP = (
    "backbone the SAE was trained on: a sentence-transformers name or local path "
    "(default: the one the SAE names; the weights' fingerprint is checked either way)"
)


def _add_store_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--store", default="./latentlex-index", help="folder of the embedded engine")
    g.add_argument(
        "--url", default=None, help="Qdrant server/cluster URL (API key: $QDRANT_API_KEY)"
    )
    p.add_argument("--collection", default="latentlex")


def _check_folder_arg(flag: str, value: str | None) -> None:
    """A folder argument must be a folder, or a path where one can be created."""
    if value is None:
        return
    p = Path(value).expanduser()
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                what = "is" if q == p else f"lies under {str(q)!r}, which is"
                raise LatentLexError(f"{flag} {value!r} {what} a file, not a folder")
            return


def _check_store_arg(args: argparse.Namespace) -> None:
    """Refuse a bad --store or --url before the SAE, the backbone or the store is opened.

    On the embedded store, a ``--recreate`` swap that an earlier run did not finish is repaired
    first (:func:`_repair_swap`), whatever the command.
    """
    url = getattr(args, "url", None)
    if not url:
        store = getattr(args, "store", None)
        _check_folder_arg("--store", store)
        collection = getattr(args, "collection", None)
        if collection is not None and (
            not collection or collection.startswith(".") or any(c in collection for c in "/\\\0")
        ):
            raise LatentLexError(
                f"--collection {collection!r} is not a plain folder name (no '/', no leading '.')"
            )
        if store is not None and collection:
            live = Path(store) / collection
            _repair_swap(live, live.with_name(live.name + _OLD))
        return
    from urllib.parse import urlsplit

    from ._redact import redact_url

    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or not port_ok
        or any(c.isspace() for c in url)
    ):
        raise LatentLexError(
            f"--url {redact_url(url)!r} is not an http(s)://host[:port] URL (a password with "
            "'/', '#', '?' or '@' must be percent-encoded; better, pass the key in "
            "$QDRANT_API_KEY)"
        )


def _where(args: argparse.Namespace) -> str:
    """The store of a command, for messages (a URL with its secrets redacted)."""
    from ._redact import redact_url

    return redact_url(args.url) if args.url else str(args.store)


def _open_index(args: argparse.Namespace, **kwargs: Any) -> LatentIndex:
    import os

    from .index import LatentIndex

    _check_store_arg(args)

    encoder: Any = args.sae
    if getattr(args, "model", None):
        from .terms import LatentTermEncoder

        encoder = LatentTermEncoder(args.sae, args.model)
    collection = kwargs.pop("collection", args.collection)
    return LatentIndex(
        encoder,
        None if args.url else args.store,
        url=args.url,
        api_key=os.environ.get("QDRANT_API_KEY") if args.url else None,
        collection=collection,
        **kwargs,
    )


#: Suffixes of the folders a staged ``index --recreate`` writes (new) and sets aside (old).
_NEW, _OLD = ".latentlex-new", ".latentlex-old"


def _flock(path: Path, what: str) -> int | None:
    """An exclusive, non-blocking lock on ``path`` (a file, created if missing, or a folder);
    ``None`` where there is no ``fcntl`` (the engine's own WAL lock remains).

    Raises:
        StoreError: another process holds it (the message says ``what`` it is doing).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    fd = os.open(path, os.O_RDONLY) if path.is_dir() else os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreError(f"{what}; wait for it or close it first") from None
    return fd


@contextlib.contextmanager
def _staged_recreate(args: argparse.Namespace) -> Iterator[str]:
    """``index --recreate`` on the embedded store: build the collection beside the live one and
    swap it in only when the whole corpus is written.

    Yields the collection name to write to. One recreate per store folder runs at a time; the
    live collection stays locked (a second opener gets the usual "already open" error) and
    untouched until the swap: two folder renames. If the run fails or is interrupted, the
    half-built folder is removed and the live collection is as it was. A swap cut between its
    two renames is repaired by the next command (the old folder is put back).
    """
    from .store.edge import LOCK_FILE

    root = Path(args.store)
    root.mkdir(parents=True, exist_ok=True)
    live, new, old = (root / f"{args.collection}{x}" for x in ("", _NEW, _OLD))
    # the store folder itself is the lock of recreates and swaps (no file is added to it)
    fds = [_flock(root, f"another `latentlex index --recreate` into {root} is running")]
    try:
        _repair_swap(live, old, locked=True)
        shutil.rmtree(new, ignore_errors=True)  # the leftovers of an interrupted run
        if live.is_dir():
            fds.append(
                _flock(
                    live / LOCK_FILE,
                    f"collection {args.collection!r} at {live} is already open in another process",
                )
            )
        try:
            yield new.name
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise
        if live.is_dir():
            os.rename(live, old)
        os.rename(new, live)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        for fd in fds:
            if fd is not None:
                os.close(fd)


def _repair_swap(live: Path, old: Path, *, locked: bool = False) -> None:
    """Finish or undo a swap an earlier run did not complete (not while a recreate runs)."""
    if not old.is_dir():
        return
    fd = None
    if not locked:
        try:
            fd = _flock(live.parent, "a recreate is swapping")
        except StoreError:
            return  # a recreate is running: its own swap is under way
    try:
        if live.is_dir():
            shutil.rmtree(old, ignore_errors=True)  # the swap was done but for the cleanup
        else:
            os.rename(old, live)  # cut between the renames: the previous collection comes back
    finally:
        if fd is not None:
            os.close(fd)


def _collection_exists(args: argparse.Namespace) -> bool:
    """Whether the collection ``index`` writes to already exists (before it is opened)."""
    if args.url:
        from ._redact import redact_text, url_secrets
        from .store import ClientStore

        api_key = os.environ.get("QDRANT_API_KEY")
        store = ClientStore(args.url, api_key=api_key, collection=args.collection)
        try:
            return bool(store.client.collection_exists(args.collection))
        except Exception as exc:  # the client raises many types; one clear, redacted error
            raise StoreError(
                f"cannot reach Qdrant at {_where(args)} (checking the collection): "
                + redact_text(f"{type(exc).__name__}: {exc}", [*url_secrets(args.url), api_key])
            ) from None
        finally:
            store.close()
    from .store.edge import SHARD_DIR

    # what EdgeStore.open itself tests (a sidecar without a shard is an interrupted creation)
    shard = Path(args.store) / args.collection / SHARD_DIR
    return shard.is_dir() and any(shard.iterdir())


def _index_lexical(args: argparse.Namespace, texts: Sequence[str]) -> bool | LexicalConfig | None:
    """The ``lexical`` argument of the index ``index`` opens.

    ``--no-lexical``: ``False``. A collection that exists (and is not recreated) keeps the
    setting it was built with (``None``). A new one gets the lexical leg with the BM25 average
    document length measured on ``texts`` (the first chunk of the corpus).
    """
    if args.no_lexical:
        return False
    if not args.recreate and _collection_exists(args):
        return None
    from .lexical import LexicalConfig, measure_avg_len

    if not texts:
        return LexicalConfig()
    avg_len = measure_avg_len(texts)
    logging.getLogger(__name__).info(
        "lexical leg: BM25 avg_len %.2f measured on %d documents", avg_len, len(texts)
    )
    return LexicalConfig(avg_len=avg_len)


def _run_index(args: argparse.Namespace) -> int:
    from itertools import islice

    from tqdm.auto import tqdm

    from . import corpus

    # Nothing stored is lost by a failing run. The corpus is first checked in one streaming
    # pass (bounded memory: one line at a time and 8 bytes per document id): every line is
    # parsed and every document checked exactly as the index will store it (id, text, metadata;
    # duplicates; an empty corpus is an error). Only then are the SAE, the backbone and the store
    # opened, and only then does --recreate drop the collection. A corpus that passes the check
    # cannot fail half-way; a run stopped by something else (a kill, a store error) is resumed
    # by running it again: each chunk is written batch by batch with skip_unchanged, so what is
    # already stored with the same content is skipped. Documents are then streamed again, at
    # most --chunk-size at a time; a new collection's lexical leg gets avg_len measured on the
    # first chunk.
    #
    # --recreate on the embedded store goes one step further: the new collection is built beside
    # the live one and swapped in at the end (_staged_recreate), so even a run killed half-way
    # leaves the old collection as it was. On a server (--url) the drop happens after the
    # validation, when the SAE, the backbone and the server have been opened.
    _check_store_arg(args)
    staged = args.recreate and not args.url
    with contextlib.ExitStack() as stack:
        files = stack.enter_context(corpus.open_corpus(args.corpus))
        total_docs = corpus.validate_corpus(files)
        docs = corpus.read_corpus(files, validate=False)
        chunk = list(islice(docs, args.chunk_size))
        lexical = _index_lexical(args, [d.text for d in chunk])
        if staged:
            _check_folder_arg("--store", args.store)
        target = stack.enter_context(_staged_recreate(args)) if staged else args.collection
        index = _open_index(
            args,
            recreate=args.recreate,
            batch_size=args.batch_size,
            lexical=lexical,
            collection=target,
        )
        seen = 0
        written = 0
        with index:
            before = index.count()
            bar = tqdm(total=total_docs, desc="indexing", unit="doc", disable=args.quiet)
            try:
                while chunk:
                    for start in range(0, len(chunk), args.batch_size):
                        part = chunk[start : start + args.batch_size]
                        written += len(index.add_documents(part, skip_unchanged=True))
                        seen += len(part)
                        bar.update(len(part))
                        bar.set_postfix(written=written, skipped=seen - written, refresh=False)
                    chunk = list(islice(docs, args.chunk_size))
            finally:
                bar.close()
            total = index.count()
            # the embedded engine builds its search indexes only when asked
            if written:
                index.optimize()
    skipped = seen - written
    if skipped:
        print(f"resumed: {skipped} documents already indexed with the same content were skipped")
    print(f"indexed {written} documents ({before} before, {total} now) into {args.collection!r}")
    return 0


@command("index", "encode a corpus and write it into a collection (streamed, resumable)")
def _cfg_index(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True)
    p.add_argument("--sae", required=True, help="SAE folder (or Hub id)")
    p.add_argument("--model", default=None, help=_MODEL_HELP)
    _add_store_args(p)
    p.add_argument("--recreate", action="store_true", help="drop the collection first")
    p.add_argument(
        "--no-lexical",
        action="store_true",
        help="build the collection without the lexical BM25 leg (dense + latent terms only; "
        "by default a new collection has it, with avg_len measured on the first chunk, and an "
        "existing one keeps what it was built with)",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=64,
        help="documents encoded and written per batch",
    )
    p.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=2048,
        help="documents read from the corpus at a time (bounds memory)",
    )
    p.add_argument("--quiet", action="store_true")


#: Limits of one --filter value (JSON): a filter is a few conditions, never a document.
MAX_FILTER_BYTES = 64 << 10
MAX_FILTER_DEPTH = 8


def _parse_filters(items: list[str]) -> dict[str, object] | None:
    """``--filter key=value`` items; a value is parsed as JSON when it is JSON, else a string.

    Raises:
        ConfigError: not ``key=value``, or a JSON value over 64 KiB or nested deeper than 8.
    """
    from .errors import ConfigError
    from .safeio import loads_capped

    if not items:
        return None
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--filter takes key=value, got {item!r}")
        where = f"--filter {key}"
        parsed: object
        if value.lstrip()[:1] in ("{", "["):
            parsed = loads_capped(
                value, where=where, max_bytes=MAX_FILTER_BYTES, max_depth=MAX_FILTER_DEPTH
            )
        else:
            try:
                parsed = loads_capped(value, where=where, max_bytes=MAX_FILTER_BYTES)
            except ConfigError:
                parsed = value  # a plain string
        if isinstance(parsed, str) and len(parsed.encode("utf-8", "surrogatepass")) > (
            MAX_FILTER_BYTES
        ):
            raise ConfigError(f"{where}: over the {MAX_FILTER_BYTES:,}-byte limit")
        out[key] = parsed
    return out


def _weights(value: str) -> tuple[float, ...]:
    """``--weights``: two or three comma-separated numbers."""
    try:
        weights = tuple(float(x) for x in value.split(","))
    except ValueError:
        weights = ()
    if len(weights) not in (2, 3):
        raise argparse.ArgumentTypeError(
            f"takes 2 (dense,sparse) or 3 (dense,sparse,lexical) comma-separated numbers, "
            f"got {value!r}"
        )
    return weights


def _leg(score: float | None, rank: int | None) -> str:
    """A leg's cell in the search table: ``score #rank``, or ``-`` when the hit is not in it."""
    if score is None:
        return "-"
    return f"{score:.3f}" if rank is None else f"{score:.3f} #{rank}"


def _run_search(args: argparse.Namespace) -> int:
    from .index import DEFAULT_FUSION

    filters = _parse_filters(args.filter)  # refused before the model loads and the store opens
    _check_store_arg(args)
    if not args.url and not _collection_exists(args):
        raise StoreError(
            f"no latentlex collection {args.collection!r} in {args.store}: build it with "
            "latentlex index, or check --store and --collection"
        )
    index = _open_index(args, read_only=True)  # a missing collection is an error, not created
    with index:
        hits = index.search(
            args.query,
            k=args.k,
            mode=args.mode,
            fusion=args.fusion or DEFAULT_FUSION,
            weights=args.weights,
            filter=filters,
        )
        if args.json:
            print(json.dumps([h.__dict__ for h in hits], default=str))
            return 0
        lexical = index.lexical or any(h.lexical_score is not None for h in hits)
        legs = f"{'dense':>12}  {'latent':>12}" + (f"  {'lexical':>12}" if lexical else "")
        print(f"{'#':>2}  {'score':>7}  {legs}  doc")
        for rank, h in enumerate(hits, 1):
            cells = [_leg(h.dense_score, h.dense_rank), _leg(h.sparse_score, h.sparse_rank)]
            if lexical:
                cells.append(_leg(h.lexical_score, h.lexical_rank))
            row = "  ".join(f"{c:>12}" for c in cells)
            print(f"{rank:>2}  {h.score:7.3f}  {row}  {h.doc_id}: {h.text[:70]!r}")
            if args.explain:
                print(index.explain(args.query, h.doc_id, top=args.explain_top).table())
    return 0


@command("search", "search a collection; --explain shows the latent terms behind each hit")
def _cfg_search(p: argparse.ArgumentParser) -> None:
    p.add_argument("query")
    p.add_argument("--sae", required=True)
    p.add_argument("--model", default=None, help=_MODEL_HELP)
    _add_store_args(p)
    p.add_argument("--k", type=_positive_int, default=10)
    p.add_argument(
        "--mode",
        choices=["hybrid", "dense", "sparse", "lexical"],
        default="hybrid",
        help="hybrid: the collection's legs fused (dense + latent terms, + lexical BM25 when "
        "it has that leg); or one leg alone (sparse = latent terms, lexical = BM25 of the words)",
    )
    p.add_argument(
        "--fusion",
        choices=["minmax", "rrf", "dbsf", "weighted"],
        default=None,
        help="how the hybrid legs are fused in Qdrant (default: latentlex.index.DEFAULT_FUSION, "
        "minmax)",
    )
    p.add_argument(
        "--weights",
        type=_weights,
        default=None,
        help="leg weights: dense,sparse or dense,sparse,lexical (default: the fusion's own)",
    )
    p.add_argument("--filter", action="append", default=[], help="key=value (value parsed as JSON)")
    p.add_argument("--explain", action="store_true")
    p.add_argument("--explain-top", type=_positive_int, default=5)
    p.add_argument("--json", action="store_true")


def _run_info(args: argparse.Namespace) -> int:
    import os

    from ._redact import redact_text, url_secrets
    from .safeio import MAX_CONFIG_BYTES, read_json_capped
    from .store import ClientStore, CollectionSpec, EdgeStore
    from .store.base import META_KEY

    _check_store_arg(args)
    record: dict[str, object]
    if args.url:
        from qdrant_client import QdrantClient

        api_key = os.environ.get("QDRANT_API_KEY")
        secrets = [*url_secrets(args.url), api_key]
        client = None
        try:
            client = QdrantClient(url=args.url, api_key=api_key, timeout=10)
            meta = client.get_collection(args.collection).config.metadata or {}
            record = dict(meta.get(META_KEY) or {})
            count = client.count(args.collection, exact=True).count
        except Exception as exc:  # the client raises many types; report them as one clear error
            raise StoreError(
                f"cannot read collection {args.collection!r} at {_where(args)}: "
                + redact_text(f"{type(exc).__name__}: {exc}", secrets)
            ) from None
        finally:
            if client is not None:
                client.close()
        del ClientStore
    else:
        sidecar = Path(args.store) / args.collection / "latentlex.json"
        if not sidecar.is_file():
            raise StoreError(f"no latentlex collection {args.collection!r} in {args.store}")
        data = read_json_capped(
            sidecar, max_bytes=MAX_CONFIG_BYTES, what="collection record", error=StoreError
        )
        try:
            record = dict(data[META_KEY])
            lexical_name = record.get("lexical_name")
            spec = CollectionSpec(
                name=args.collection,
                dense_dim=int(record["dense_dim"]),  # type: ignore[call-overload]
                identity=dict(record["identity"]),  # type: ignore[call-overload]
                dense_name=str(record["dense_name"]),
                sparse_name=str(record["sparse_name"]),
                lexical_name=None if lexical_name is None else str(lexical_name),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(
                f"{sidecar}: not a latentlex collection record ({type(exc).__name__}: {exc}); "
                "rebuild the collection with latentlex index --recreate"
            ) from None
        store = EdgeStore(args.store, collection=args.collection, read_only=True)
        store.open(spec)
        try:
            count = store.count()
        finally:
            store.close()
    summary = {"collection": args.collection, "points": count, "lexical": _lexical_info(record)}
    print(json.dumps({**summary, **record}, indent=2))
    return 0


def _lexical_info(record: dict[str, Any]) -> dict[str, Any] | None:
    """The lexical leg of a collection record: its vector name and BM25 parameters, or ``None``
    for a collection without it."""
    name = record.get("lexical_name")
    if name is None:
        return None
    identity = record.get("identity")
    config = identity.get("lexical") if isinstance(identity, dict) else None
    return {"vector": name, **(config if isinstance(config, dict) else {})}


@command("info", "what a collection holds and what wrote it (legs, lexical BM25 parameters)")
def _cfg_info(p: argparse.ArgumentParser) -> None:
    _add_store_args(p)


# ---------------------------------------------------------------------------- eval
def _run_eval(args: argparse.Namespace) -> int:
    from .evaluation.run import run_eval

    fit = None
    if args.layer is not None and not args.fit:
        raise LatentLexError("--layer goes with --fit (an SAE given by --sae reads its own layers)")
    if args.fit:
        fit = {"width": args.width, "k": args.k, "epochs": args.epochs, "mode": args.mode}
        fit["max_tokens"] = args.max_tokens
        if args.layer is not None:
            fit["layer"] = args.layer
    results = run_eval(
        args.dataset,
        sae=args.sae,
        model=args.model,
        fit=fit,
        systems=args.systems.split(",") if args.systems else None or _default_systems(),
        split=args.split,
        out_dir=args.out,
        n_queries=args.queries,
    )
    metric_names = list(results[0]["metrics"]) if results else []
    head = "".join(f"{m:>11}" for m in metric_names)
    print(f"{'system':<18}{head}{'1-query p50 ms':>16}{'batched q/s':>13}")
    for r in results:
        cells = "".join(f"{r['metrics'][m]:>11.4f}" for m in metric_names)
        p50, qps = r.get("query_p50_ms"), r.get("batch_qps")
        print(
            f"{r['system']:<18}{cells}{float('nan') if p50 is None else p50:>16.2f}"
            f"{float('nan') if qps is None else qps:>13.1f}"
        )
    print(
        "1-query: one query at a time, encoding included; batched: all queries encoded in one "
        "call, then searched (the same for every system)"
    )
    return 0


def _default_systems() -> list[str]:
    from .evaluation.run import DEFAULT_SYSTEMS

    return list(DEFAULT_SYSTEMS)


@command("eval", "evaluate latentlex and baselines on a BEIR-layout dataset, side by side")
def _cfg_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", required=True, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sae", default=None, help="SAE folder or Hub id for the latent systems")
    g.add_argument("--fit", action="store_true", help="fit an SAE on the dataset's corpus (cached)")
    p.add_argument(
        "--model",
        default=None,
        help="backbone (sentence-transformers name or path) of every system: dense baselines, "
        "token states and the fitted SAE (default: the packaged all-MiniLM-L6-v2)",
    )
    p.add_argument("--width", type=int, default=8192)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--epochs", type=float, default=None, help=_EPOCHS_HELP)
    p.add_argument(
        "--max-tokens", type=_budget_arg, default="auto", help="with --fit: " + _BUDGET_HELP
    )
    p.add_argument("--mode", choices=["token", "pooled"], default="token")
    p.add_argument(
        "--layer",
        type=_layer_arg,
        default=None,
        help="with --fit: backbone layer(s) the SAE reads, e.g. 'final,1' (default: final)",
    )
    p.add_argument("--systems", default=None, help="comma-separated (default: all)")
    p.add_argument("--split", default="test")
    p.add_argument(
        "--queries",
        type=_positive_int,
        default=None,
        help="evaluate a random subset of queries",
    )
    p.add_argument("--out", default=None, help="write results.json, results.md and plots here")


# ---------------------------------------------------------------------------- main
from .hub import CLI_COMMANDS as _HUB_COMMANDS  # noqa: E402

_COMMANDS.update(_HUB_COMMANDS)

from .cli_interp import CLI_COMMANDS as _INTERP_COMMANDS  # noqa: E402

_COMMANDS.update(_INTERP_COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentlex", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (configure, _, help_) in _COMMANDS.items():
        configure(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # OpenMP threads that spin while idle cost one-query latency 3-10x on a busy machine; the
    # CLI sets the passive policy unless the user chose one (it must be set before torch loads).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ._redact import redact_text

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for h in logging.getLogger().handlers:
        if not any(isinstance(f, _RedactingFilter) for f in h.filters):
            h.addFilter(_RedactingFilter())
    handler = _COMMANDS[args.command][1]
    secrets = [os.environ.get("QDRANT_API_KEY"), os.environ.get("HF_TOKEN")]
    try:
        # checked before any work: a file where a folder is expected, text that is not UTF-8
        for flag in ("cache_dir", "out"):
            _check_folder_arg(f"--{flag.replace('_', '-')}", getattr(args, flag, None))
        _check_text_args(args)
        return handler(args)
    except LatentLexError as exc:
        # one line, secrets redacted (a URL's user-info, api_key=..., the QDRANT_API_KEY value)
        message = " ".join(str(exc).split("\n"))
        print(f"error: {redact_text(message, secrets)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused (no space, permission, name too long, ...)
        logging.getLogger(__name__).debug("file system error", exc_info=True)
        where = f"{exc.filename}: " if exc.filename else ""
        why = exc.strerror or str(exc)
        print(f"error: {redact_text(where + why, secrets)}", file=sys.stderr)
        return 2


#: Arguments that are file-system paths (non-UTF-8 bytes are legitimate in a file name).
_PATH_ARGS = frozenset(
    {"corpus", "sae", "store", "out", "cache_dir", "dataset", "dir", "model", "backbone", "repo"}
)


def _check_text_args(args: argparse.Namespace) -> None:
    """Text arguments must be UTF-8: the shell passes other bytes as lone surrogates."""
    for name, value in vars(args).items():
        if name in _PATH_ARGS:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and has_surrogate(item):
                flag = name if name in ("text", "query", "repo") else f"--{name.replace('_', '-')}"
                raise LatentLexError(f"{flag}: holds bytes that are not valid UTF-8 text")


class _RedactingFilter(logging.Filter):
    """Redacts URLs' user-info and secret query values in every log line the CLI prints."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ._redact import redact_text

        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error report
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
