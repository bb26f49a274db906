"""Corpus-scale cost: fit, encode-and-write, index size, RSS and hybrid search at 10k / 50k / 200k docs.

    python benchmarks/bench_scale.py                      # every size, one process each; then the report
    python benchmarks/bench_scale.py --sizes 10000        # one size (merged into the results)
    python benchmarks/bench_scale.py --report             # rewrite scale.md from scale.json
    python benchmarks/bench_scale.py --eval-target 50000  # the 50k `latentlex eval --fit` target
    python benchmarks/bench_scale.py --probes             # where indexing memory goes; SAE vs backbone tokens/s

The corpus is SciFact replicated: document ``i`` is SciFact's stored document ``i mod 5183`` (its
text, its token states cut to the first ``--doc-tokens`` (64) of them, its dense vector), and each
replica ``i // 5183`` has its token states and dense vector shifted by a small replica-specific
random vector (norm 5 % of the mean token-state norm), so replicas are near-duplicates, not copies.
Nothing runs through the backbone (the token states are those ``latentlex eval`` cached for
SciFact); the SAE and the engine do real work on every document:

- **fit**: :func:`latentlex.fit.fit_on_states` with the default token budget, on the replicated
  corpus (the seeded sample of whole documents, default epochs, avgdl on the sample);
- **encode and write**: one SAE pass over every document, streamed into an embedded qdrant-edge
  collection with the lexical leg, as ``latentlex eval`` writes its corpus
  (:func:`latentlex.evaluation.latent.write_states`); RSS is sampled every 0.2 s meanwhile
  (``VmRSS``), from before the collection is opened to the last write;
- **optimize**: :meth:`LatentIndex.optimize` (what ``latentlex index`` runs at the end: HNSW for the
  dense leg, immutable inverted indexes for the sparse legs), timed, with the hybrid search p50 of
  100 queries before it (appendable segments: full scan) for comparison;
- **index size** on disk after optimize; RSS split into heap (``RssAnon``) and mapped files
  (``RssFile``) at the end of the writes and after optimize;
- **hybrid search**: SciFact's 300 test queries through ``LatentIndex.search_encoded`` with the
  defaults of ``LatentIndex.search`` (three legs, MINMAX, per-leg scores), one at a time, queries
  encoded beforehand (search only, 20 warm-up queries first), then end to end (``LatentIndex.search``,
  query text to hits) for the first 100.

Each size runs in its own process (``--one N``), so peak RSS is that size's. Results go to
``benchmarks/results/scale.json`` and ``scale.md``.

``--eval-target N`` builds an N-document replicated BEIR folder whose token states are cached as
``latentlex eval`` caches them (full-length SciFact states: exactly what the backbone gives for those
texts), times ``run_eval(fit=..., systems=dense,bm25,dense+bm25,latent,hybrid)`` — everything
``latentlex eval --fit`` does after the backbone pass — and measures the backbone pass's throughput
(tokens/s, ``encode_token_states`` on 400 random SciFact documents, before and after, same process)
to compute the backbone pass of that corpus. Results go to ``benchmarks/results/scale-eval.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
from bench_index import folder_bytes, load_avg, pct  # shared measuring helpers (benchmarks/)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LATENTLEX_DATA", REPO.parent / "shared" / "data"))
STATES = REPO / ".cache" / "latentlex-eval" / "states" / "scifact"
RESULTS = REPO / "benchmarks" / "results"
WORK = REPO / ".cache" / "bench-scale"
SIZES = (10_000, 50_000, 200_000)
SHIFT = 0.05


# --------------------------------------------------------------------------- replicated corpus


class _Replicas:
    """Where replicated document ``i`` comes from: source row, replica number, token range."""

    def __init__(self, src: Any, n_docs: int, doc_tokens: int | None) -> None:
        self.src = src
        n_src = src.n_docs
        self.src_rows = np.arange(n_docs, dtype=np.int64) % n_src
        self.rep = np.arange(n_docs, dtype=np.int64) // n_src
        src_len = src.lengths if doc_tokens is None else np.minimum(src.lengths, doc_tokens)
        self.lengths = src_len[self.src_rows].astype(np.int64)
        self.offsets = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        d = src.tokens.shape[1]
        rng = np.random.default_rng(0)
        sample = np.asarray(src.tokens[:: max(1, src.tokens.shape[0] // 20_000)], np.float32)
        norm = float(np.linalg.norm(sample, axis=1).mean())
        shifts = rng.normal(size=(int(self.rep.max()) + 1, d))
        shifts *= SHIFT * norm / np.linalg.norm(shifts, axis=1, keepdims=True)
        shifts[0] = 0.0
        self.token_shift = shifts.astype(np.float32)
        dn = rng.normal(size=(int(self.rep.max()) + 1, d))
        dn *= SHIFT / np.linalg.norm(dn, axis=1, keepdims=True)
        dn[0] = 0.0
        self.dense_shift = dn.astype(np.float32)


class _Tokens:
    """``tokens[a:b]`` of the replicated corpus, read from the source memmap on demand."""

    dtype = np.dtype(np.float16)

    def __init__(self, r: _Replicas) -> None:
        self.r = r
        self.shape = (int(r.offsets[-1]), int(r.src.tokens.shape[1]))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("replicated tokens are read by contiguous slices")
        a, b, _ = key.indices(self.shape[0])
        r, off = self.r, self.r.offsets
        first = int(np.searchsorted(off, a, side="right")) - 1
        parts = []
        for doc in range(first, len(off) - 1):
            lo, hi = max(a, int(off[doc])), min(b, int(off[doc + 1]))
            if lo >= hi:
                if off[doc] >= b:
                    break
                continue
            s = int(r.src.offsets[r.src_rows[doc]]) + lo - int(off[doc])
            block = np.asarray(r.src.tokens[s : s + hi - lo], np.float32)
            parts.append((block + r.token_shift[r.rep[doc]]).astype(np.float16))
        if not parts:
            return np.zeros((0, self.shape[1]), np.float16)
        return np.concatenate(parts)


class _Dense:
    """``dense[rows]`` (slice or index array) of the replicated corpus, unit norm."""

    def __init__(self, r: _Replicas) -> None:
        self.r = r
        self.shape = (len(r.src_rows), int(r.src.dense.shape[1]))

    def __getitem__(self, key: Any) -> np.ndarray:
        rows = np.arange(self.shape[0])[key]
        v = np.asarray(self.r.src.dense[self.r.src_rows[rows]], np.float32)
        v = v + self.r.dense_shift[self.r.rep[rows]]
        return v / np.linalg.norm(v, axis=-1, keepdims=True)


class _Ids(Sequence[str]):
    """Document ids of the replicated corpus: the source id, ``#j`` for replica ``j > 0``."""

    def __init__(self, r: _Replicas) -> None:
        self.r = r

    def __len__(self) -> int:
        return len(self.r.src_rows)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        src_id = self.r.src.doc_ids[int(self.r.src_rows[i])]
        rep = int(self.r.rep[i])
        return src_id if rep == 0 else f"{src_id}#{rep}"


def replicated_states(n_docs: int, doc_tokens: int | None) -> Any:
    """A :class:`~latentlex.states.TokenStates` view of the replicated corpus (nothing copied)."""
    from latentlex.states import TokenStates

    src = TokenStates.open(STATES)
    r = _Replicas(src, n_docs, doc_tokens)
    meta = {**src.meta, "total_tokens": int(r.offsets[-1]), "n_docs": n_docs, "replicated": True}
    return TokenStates(
        src.path,
        _Tokens(r),  # type: ignore[arg-type]
        _Dense(r),  # type: ignore[arg-type]
        r.offsets,
        _Ids(r),  # type: ignore[arg-type]
        meta,
    )


# --------------------------------------------------------------------------- measuring


def rss_detail() -> dict[str, float]:
    """RssAnon (heap: what the process holds) and RssFile (mapped files, e.g. the engine's
    memory-mapped segments: page cache the kernel can drop), MB."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("RssAnon:", "RssFile:")):
                key, value = line.split(":", 1)
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """Peak ``VmRSS`` (MB) while a block runs, sampled every 0.2 s."""

    def __enter__(self) -> RssSampler:
        self.start = rss_mb()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.end = rss_mb()
        self.peak = max(self.peak, self.end)


# --------------------------------------------------------------------------- one size


def run_one(
    n_docs: int, doc_tokens: int | None, work: Path, max_tokens: int | str = "auto"
) -> dict[str, Any]:
    from latentlex.backbone import Backbone
    from latentlex.evaluation.beir import load_beir
    from latentlex.evaluation.latent import write_states
    from latentlex.fit import FitConfig, fit_on_states
    from latentlex.index import LatentIndex
    from latentlex.lexical import LexicalConfig, measure_avg_len
    from latentlex.terms import Encoded, LatentTermEncoder

    ds = load_beir(DATA / "scifact", split="test")
    texts_by_id = dict(zip(ds.doc_ids, ds.doc_texts(), strict=True))
    bb = Backbone()
    states = replicated_states(n_docs, doc_tokens)
    out: dict[str, Any] = {
        "docs": n_docs,
        "doc_tokens_cap": doc_tokens,
        "tokens": int(states.meta["total_tokens"]),
        "load_before": load_avg(),
    }

    t0, c0 = time.perf_counter(), time.process_time()
    sae = fit_on_states(states, bb, FitConfig(progress=False, max_tokens=max_tokens))
    out["fit_seconds"] = round(time.perf_counter() - t0, 1)
    out["fit_cpu_seconds"] = round(time.process_time() - c0, 1)
    out["fit_sample"] = sae.cfg.fit_sample
    out["fit_fvu"] = round(float(sae.cfg.metrics["fvu"]), 4)
    out["avgdl"] = round(float(sae.cfg.avgdl or 0.0), 2)
    encoder = LatentTermEncoder(sae, bb)

    def texts(ids: list[str]) -> list[str]:
        return [texts_by_id[i.split("#", 1)[0]] for i in ids]

    lexical = LexicalConfig(avg_len=measure_avg_len(ds.doc_texts()))  # = the replicas' mean
    edge = work / f"edge-{n_docs}"
    shutil.rmtree(edge, ignore_errors=True)
    with RssSampler() as rss:
        t0, c0 = time.perf_counter(), time.process_time()
        index = LatentIndex(
            encoder, edge, collection="scale", recreate=True, batch_size=512, lexical=lexical
        )
        stats = write_states(index, states, texts, optimize=False)
        out["encode_write_seconds"] = round(time.perf_counter() - t0, 1)
        out["encode_write_cpu_seconds"] = round(time.process_time() - c0, 1)
        out["rss_mb_detail_end_of_writes"] = rss_detail()
    out["sae_encode_seconds"] = round(stats["sae_encode_seconds"], 1)
    out["write_seconds"] = round(stats["write_seconds"], 1)
    out["docs_per_s"] = round(n_docs / out["encode_write_seconds"], 1)
    out["terms_per_doc"] = round(stats["terms_per_doc_mean"], 1)
    out["rss_mb"] = {
        "before": round(rss.start, 1),
        "peak_indexing": round(rss.peak, 1),
        "after": round(rss.end, 1),
    }
    out["index_bytes_unoptimized"] = folder_bytes(edge)
    out["points"] = index.count()

    queries = [ds.queries[q] for q in ds.queries]
    enc = encoder.encode_queries(queries)
    assert index.lexical_encoder is not None
    lex = index.lexical_encoder.encode_queries(queries)

    def search_only(i: int) -> tuple[float, float]:
        one = Encoded(enc.dense[i : i + 1], enc.sparse[i : i + 1])
        t, c = time.perf_counter(), time.process_time()
        index.search_encoded(one, 10, lexical=lex[i : i + 1])
        return time.perf_counter() - t, time.process_time() - c

    for i in range(20):  # warm-up
        search_only(i)
    # as written (appendable segments, full scan), then after LatentIndex.optimize()
    raw = [search_only(i)[0] for i in range(100)]
    out["hybrid_search_unoptimized_ms"] = {
        "p50": round(pct(raw, 50), 2),
        "p95": round(pct(raw, 95), 2),
        "queries": len(raw),
    }
    with RssSampler() as rss_opt:
        t0, c0 = time.perf_counter(), time.process_time()
        index.optimize()
        out["optimize_seconds"] = round(time.perf_counter() - t0, 1)
        out["optimize_cpu_seconds"] = round(time.process_time() - c0, 1)
    out["rss_mb"]["peak_optimize"] = round(rss_opt.peak, 1)
    out["rss_mb_detail_after_optimize"] = rss_detail()
    out["index_bytes"] = folder_bytes(edge)
    for i in range(20):  # warm-up
        search_only(i)
    times, cpus = zip(*[search_only(i) for i in range(len(queries))], strict=True)
    e2e, e2e_cpu = [], []
    for q in queries[:100]:
        t, c = time.perf_counter(), time.process_time()
        index.search(q, 10)
        e2e.append(time.perf_counter() - t)
        e2e_cpu.append(time.process_time() - c)
    for key, wall, cpu in (("hybrid_search_ms", times, cpus),
                           ("hybrid_end_to_end_ms", e2e, e2e_cpu)):  # fmt: skip
        out[key] = {
            "p50": round(pct(list(wall), 50), 2),
            "p95": round(pct(list(wall), 95), 2),
            "cpu_p50": round(pct(list(cpu), 50), 2),
            "cpu_p95": round(pct(list(cpu), 95), 2),
            "queries": len(wall),
        }
    index.close()
    shutil.rmtree(edge, ignore_errors=True)
    out["load_after"] = load_avg()
    return out


# --------------------------------------------------------------------------- the eval target


def _write_replicated_beir(n_docs: int, root: Path, cache: Path) -> tuple[Path, dict[str, Any]]:
    """A BEIR folder of ``n_docs`` SciFact replicas (same texts) and its token-state cache, as
    ``latentlex eval`` would have written it (full-length states: what the backbone gives)."""
    from latentlex.backbone import Backbone
    from latentlex.evaluation.beir import load_beir
    from latentlex.states import TokenStates, corpus_hash, states_folder_name

    name = f"scifact-x{n_docs}"
    folder = root / name
    src_ds = load_beir(DATA / "scifact", split="test")
    src = TokenStates.open(STATES)
    n_src = len(src_ds.doc_ids)
    ids = [d if i < n_src else f"{d}#{i // n_src}" for i, d in
           ((i, src_ds.doc_ids[i % n_src]) for i in range(n_docs))]  # fmt: skip
    if not (folder / "corpus.jsonl").is_file():
        (folder / "qrels").mkdir(parents=True, exist_ok=True)
        with (folder / "corpus.jsonl").open("w") as fh:
            for i, doc_id in enumerate(ids):
                doc = src_ds.corpus[src_ds.doc_ids[i % n_src]]
                fh.write(json.dumps({**doc, "_id": doc_id}) + "\n")
        shutil.copy(DATA / "scifact" / "queries.jsonl", folder / "queries.jsonl")
        shutil.copy(DATA / "scifact" / "qrels" / "test.tsv", folder / "qrels" / "test.tsv")
    ds = load_beir(folder, split="test")
    assert ds.doc_ids == ids
    bb = Backbone()
    out = cache / "states" / states_folder_name(ds.name, bb)
    if not (out / "meta.json").is_file():
        out.mkdir(parents=True, exist_ok=True)
        row_of = {d: r for r, d in enumerate(src.doc_ids)}
        src_rows = np.array([row_of[src_ds.doc_ids[i % n_src]] for i in range(n_docs)])
        lengths = src.lengths[src_rows]
        with (out / "tokens.f16").open("wb") as fh:
            for r in src_rows.tolist():  # corpus order (stored order is free)
                a, b = int(src.offsets[r]), int(src.offsets[r + 1])
                fh.write(np.ascontiguousarray(src.tokens[a:b]).tobytes())
        offsets = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        np.save(out / "offsets.npy", offsets)
        np.save(out / "dense.npy", np.asarray(src.dense[src_rows], np.float32))
        (out / "doc_ids.json").write_text(json.dumps(ids))
        meta = {
            **{
                k: src.meta[k]
                for k in (
                    "format",
                    "backbone",
                    "backbone_fingerprint",
                    "dim",
                    "keep_special_tokens",
                    "layer",
                    "max_seq_length",
                )
            },
            "corpus_hash": corpus_hash(ds.doc_ids, ds.doc_texts()),
            "max_tokens": None,
            "total_tokens": int(offsets[-1]),
            "n_docs": n_docs,
            "truncated": None,
            "seconds": 0.0,  # replicated: no backbone pass was timed (estimated below)
        }
        (out / "meta.json").write_text(json.dumps(meta, indent=2))
    meta = json.loads((out / "meta.json").read_text())
    return folder, meta


def backbone_tokens_per_s(n: int = 400, seed: int = 1) -> dict[str, float]:
    """The backbone pass's throughput: ``encode_token_states`` on ``n`` random SciFact documents
    (the eval's own backbone pass, its batching and length sorting), token states per second."""
    from latentlex.backbone import Backbone
    from latentlex.evaluation.beir import load_beir
    from latentlex.states import encode_token_states

    ds = load_beir(DATA / "scifact", split="test")
    pick = np.random.default_rng(seed).choice(len(ds.doc_ids), n, replace=False)
    texts = ds.doc_texts()
    bb = Backbone()
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        st = encode_token_states(
            bb, [ds.doc_ids[i] for i in pick], [texts[i] for i in pick], tmp, progress=False
        )
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        tokens = int(st.meta["total_tokens"])
    return {
        "tokens": tokens,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "tokens_per_s": round(tokens / seconds),
        "tokens_per_cpu_s": round(tokens / cpu),
    }


def eval_target(n_docs: int) -> dict[str, Any]:
    from latentlex.evaluation.run import run_eval

    root, cache = WORK / "beir", WORK / "eval-cache"
    t0 = time.perf_counter()
    folder, meta = _write_replicated_beir(n_docs, root, cache)
    setup_s = time.perf_counter() - t0
    shutil.rmtree(cache / "saes", ignore_errors=True)  # fit afresh
    load0 = load_avg()
    before = backbone_tokens_per_s()
    systems = ["dense", "bm25", "dense+bm25", "latent", "hybrid"]
    fit = {"width": 8192, "k": 16, "mode": "token", "max_tokens": "auto"}  # default epochs
    t0, c0 = time.perf_counter(), time.process_time()
    results = run_eval(folder, fit=fit, systems=systems, cache_dir=cache,
                       out_dir=WORK / "eval-out")  # fmt: skip
    after_s, after_cpu = time.perf_counter() - t0, time.process_time() - c0
    after = backbone_tokens_per_s()
    (sae_dir,) = list((cache / "saes").iterdir())
    sae_cfg = json.loads((sae_dir / "cfg.json").read_text())
    tps = (before["tokens_per_s"] + after["tokens_per_s"]) / 2
    backbone_s = meta["total_tokens"] / tps
    tpc = (before["tokens_per_cpu_s"] + after["tokens_per_cpu_s"]) / 2
    backbone_cpu = meta["total_tokens"] / tpc
    lat = next(r for r in results if r["system"] == "latent")["latent_stats"]
    return {
        "docs": n_docs,
        "tokens": meta["total_tokens"],
        "systems": systems,
        "setup_seconds": round(setup_s, 1),
        "after_backbone_seconds": round(after_s, 1),
        "after_backbone_cpu_seconds": round(after_cpu, 1),
        "fit_seconds": sae_cfg["metrics"].get("seconds_total"),
        "fit_sample": sae_cfg.get("fit_sample"),
        "sae_encode_seconds": round(lat["sae_encode_seconds"], 1),
        "write_seconds": round(lat["write_seconds"], 1),
        "optimize_seconds": round(lat.get("optimize_seconds", float("nan")), 1),
        "backbone_tokens_per_s": {"before": before, "after": after, "mean": round(tps)},
        "backbone_pass_seconds_estimated": round(backbone_s, 1),
        "backbone_pass_cpu_seconds_estimated": round(backbone_cpu, 1),
        "after_over_backbone": round(after_s / backbone_s, 3),
        "after_over_backbone_cpu": round(after_cpu / backbone_cpu, 3),
        "per_system": {
            r["system"]: {
                "index_seconds": r["index_seconds"],
                "query_p50_ms": r["query_p50_ms"],
                "batch_qps": r["batch_qps"],
            }
            for r in results
        },
        "load": [load0, load_avg()],
    }


# --------------------------------------------------------------------------- probes


def probes(n_docs: int = 20_000, doc_tokens: int = 64) -> dict[str, Any]:
    """Where indexing memory goes, and the SAE pass against the backbone pass (token states/s).

    The default fit on ``n_docs`` replicated documents is saved, then :func:`probe_memory` runs in
    a fresh process (so that memory the fit freed cannot hide what writing allocates). Throughput:
    one SAE pass over 1,024 stored SciFact documents against ``encode_token_states`` on 200 random
    SciFact documents, same process, one after the other.
    """
    from latentlex.backbone import Backbone
    from latentlex.fit import FitConfig, fit_on_states
    from latentlex.sampling import gather_states
    from latentlex.states import TokenStates
    from latentlex.terms import LatentTermEncoder

    bb = Backbone()
    sae_dir = WORK / "probe-sae"
    sae = fit_on_states(replicated_states(n_docs, doc_tokens), bb, FitConfig(progress=False))
    sae.save(sae_dir)
    out: dict[str, Any] = {"docs": n_docs, "doc_tokens_cap": doc_tokens, "load_before": load_avg()}
    tmp = WORK / "probe-memory.json"
    cmd = [sys.executable, __file__, "--probe-memory", str(sae_dir), "--json", str(tmp),
           "--doc-tokens", str(doc_tokens), "--sizes", str(n_docs)]  # fmt: skip
    subprocess.run(cmd, check=True)
    out["memory"] = json.loads(tmp.read_text())
    encoder = LatentTermEncoder(sae, bb)
    sample = gather_states(TokenStates.open(STATES), np.arange(1024))  # stored, full length
    t0 = time.perf_counter()
    for _ in encoder.iter_encode_states(sample, docs_per_batch=256):
        pass
    sae_tps = int(sample.meta["total_tokens"]) / (time.perf_counter() - t0)
    bb_tps = backbone_tokens_per_s(200)["tokens_per_s"]
    out["throughput"] = {
        "sae_pass_tokens_per_s": round(sae_tps),
        "backbone_tokens_per_s": bb_tps,
        "sae_over_backbone": round(bb_tps / sae_tps, 3),
    }
    out["load_after"] = load_avg()
    return out


def probe_memory(sae_dir: str, n_docs: int, doc_tokens: int, mark: int = 5_000) -> dict[str, Any]:
    """``RssAnon`` every ``mark`` documents (1) for the SAE pass alone, (2) writing into the
    embedded engine with Python's own heap traced (``tracemalloc``), (3) writing with
    ``on_disk=True`` and an optimize at every mark. Run in a fresh process by :func:`probes`."""
    import tracemalloc

    from latentlex.evaluation.beir import load_beir
    from latentlex.index import LatentIndex
    from latentlex.store import EdgeStore
    from latentlex.terms import LatentTermEncoder

    ds = load_beir(DATA / "scifact", split="test")
    by_id = dict(zip(ds.doc_ids, ds.doc_texts(), strict=True))
    encoder = LatentTermEncoder(sae_dir)
    states = replicated_states(n_docs, doc_tokens)

    def texts(ids: list[str]) -> list[str]:
        return [by_id[i.split("#", 1)[0]] for i in ids]

    def run(write: str | None) -> list[dict[str, float]]:
        folder = WORK / f"probe-{write}"
        shutil.rmtree(folder, ignore_errors=True)
        index = None
        if write is not None:
            store = EdgeStore(folder, collection="probe", on_disk=write == "on_disk")
            index = LatentIndex(encoder, store, collection="probe", batch_size=512)
            tracemalloc.start()
        marks = [{"docs": 0, "rss_anon_mb": rss_detail()["RssAnon"]}]
        for rows, enc in encoder.iter_encode_states(states, docs_per_batch=256):
            if index is not None:
                ids = [states.doc_ids[r] for r in rows]
                index.add_encoded(ids, texts(ids), enc)
            if rows.stop // mark != rows.start // mark:
                if write == "on_disk":
                    assert index is not None
                    index.optimize()
                row = {"docs": rows.stop, "rss_anon_mb": rss_detail()["RssAnon"]}
                if index is not None:
                    row["python_heap_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
                marks.append(row)
        if index is not None:
            tracemalloc.stop()
            index.close()
        shutil.rmtree(folder, ignore_errors=True)
        return marks

    return {"sae_pass_only": run(None), "writing": run("ram"), "on_disk_optimized": run("on_disk")}


# --------------------------------------------------------------------------- report


def write_report(data: dict[str, Any], path: Path) -> None:
    rows = sorted(data.get("sizes", {}).values(), key=lambda r: r["docs"])
    lines = [
        "# Corpus-scale cost",
        "",
        "`python benchmarks/bench_scale.py` — SciFact replicated to each size (token states cut to "
        f"the first {rows[0]['doc_tokens_cap'] if rows else '?'} per document, each replica shifted "
        "by a small random vector; texts and lexical leg: the source document's); the SAE (8192 / "
        "16, default token budget and epochs) and the embedded engine do real work on every "
        "document. One process per size. Search: SciFact's 300 test queries, default hybrid "
        "(three legs, MINMAX, per-leg scores), one at a time.",
        "",
        "| docs | token states | fit s / CPU s | encode+write s / CPU s (SAE s) | optimize s "
        "| index MB | RSS MB: before / peak indexing (heap at end of writes) "
        "| search p50 ms before optimize | hybrid search p50 / p95 ms (CPU p50) "
        "| end to end p50 / p95 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    nan = float("nan")
    for r in rows:
        s, e = r["hybrid_search_ms"], r["hybrid_end_to_end_ms"]
        heap = r.get("rss_mb_detail_end_of_writes", {}).get("RssAnon", nan)
        lines.append(
            f"| {r['docs']:,} | {r['tokens']:,} "
            f"| {r['fit_seconds']:.0f} / {r.get('fit_cpu_seconds', nan):.0f} "
            f"| {r['encode_write_seconds']:.0f} / "
            f"{r.get('encode_write_cpu_seconds', nan):.0f} ({r['sae_encode_seconds']:.0f}) "
            f"| {r.get('optimize_seconds', nan):.0f} "
            f"| {r['index_bytes'] / 2**20:.0f} "
            f"| {r['rss_mb']['before']:.0f} / {r['rss_mb']['peak_indexing']:.0f} ({heap:.0f}) "
            f"| {r.get('hybrid_search_unoptimized_ms', {}).get('p50', nan):.1f} "
            f"| {s['p50']:.1f} / {s['p95']:.1f} ({s.get('cpu_p50', nan):.1f}) "
            f"| {e['p50']:.1f} / {e['p95']:.1f} |"
        )
    if rows:
        fs = rows[0].get("fit_sample") or {}
        lines += [
            "",
            f"Fit sample: {fs.get('tokens', 0):,} token states ({fs.get('docs', 0):,} documents, "
            f"budget {fs.get('budget_tokens')}), the same at every size.",
        ]
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        growth = b["docs"] / a["docs"]
        p50 = b["hybrid_search_ms"]["p50"] / a["hybrid_search_ms"]["p50"]
        cpu50 = b["hybrid_search_ms"].get("cpu_p50", 0) / max(
            a["hybrid_search_ms"].get("cpu_p50", 0), 1e-9
        )
        peak = (b["rss_mb"]["peak_indexing"] - b["rss_mb"]["before"]) / max(
            1.0, a["rss_mb"]["peak_indexing"] - a["rss_mb"]["before"]
        )
        lines += [
            "",
            f"From {a['docs']:,} to {b['docs']:,} documents ({growth:.0f}x): hybrid search p50 "
            f"x{p50:.2f} (CPU x{cpu50:.2f}), RSS growth while indexing x{peak:.2f}, "
            f"encode+write time x{b['encode_write_seconds'] / a['encode_write_seconds']:.1f}, "
            f"index size x{b['index_bytes'] / a['index_bytes']:.1f}, fit time "
            f"x{b['fit_seconds'] / a['fit_seconds']:.2f}.",
        ]
    ev = data.get("eval_target")
    if ev:
        lines += [
            "",
            f"## `latentlex eval --fit` at {ev['docs']:,} documents ({ev['tokens']:,} token states)",
            "",
            "`python benchmarks/bench_scale.py --eval-target 50000`: SciFact replicated (full-length "
            "token states cached as latentlex eval caches them), "
            f"`--systems {','.join(ev['systems'])}`, default fit.",
            "",
            f"- everything after the backbone pass: **{ev['after_backbone_seconds']:.0f} s**, "
            f"{ev.get('after_backbone_cpu_seconds', float('nan')):.0f} CPU s "
            f"(fit {ev['fit_seconds']:.0f} s on {ev['fit_sample']['tokens']:,} token states, "
            f"SAE pass {ev['sae_encode_seconds']:.0f} s, writing {ev['write_seconds']:.0f} s, "
            f"optimize {ev.get('optimize_seconds', float('nan')):.0f} s, "
            "the rest: baselines and searches);",
            f"- backbone pass: {ev['backbone_tokens_per_s']['mean']:,} token states/s measured "
            "(encode_token_states on 400 random SciFact documents, before and after, same process) "
            f"-> {ev['backbone_pass_seconds_estimated']:.0f} s for this corpus "
            f"({ev.get('backbone_pass_cpu_seconds_estimated', float('nan')):.0f} CPU s);",
            f"- ratio: **{100 * ev['after_over_backbone']:.0f} %** of the backbone pass in wall "
            f"time, {100 * ev.get('after_over_backbone_cpu', float('nan')):.0f} % in CPU time "
            "(target <= 25 %).",
        ]
    lines += [
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores shared "
        f"with other jobs; load averages are in scale.json.",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--doc-tokens", type=int, default=64, help="token states kept per document")
    ap.add_argument("--max-tokens", default="auto", help="fit budget (default: the library's)")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--eval-target", type=int, default=None)
    ap.add_argument(
        "--probes", action="store_true", help="memory attribution and SAE/backbone tokens/s"
    )
    ap.add_argument("--probe-memory", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS / "scale.json"))
    args = ap.parse_args()
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.is_file() else {"sizes": {}}
    WORK.mkdir(parents=True, exist_ok=True)
    if args.probe_memory is not None:
        res = probe_memory(args.probe_memory, int(args.sizes), args.doc_tokens)
        Path(args.json).write_text(json.dumps(res, indent=1))
        return
    if args.one is not None:
        budget = args.max_tokens if args.max_tokens in ("auto", "all") else int(args.max_tokens)
        res = run_one(args.one, args.doc_tokens, WORK, budget)
        Path(args.json).write_text(json.dumps(res, indent=1))
        return
    if args.eval_target is not None:
        data["eval_target"] = eval_target(args.eval_target)
        print(json.dumps(data["eval_target"]), flush=True)
    elif args.probes:
        data["probes"] = probes()
        print(json.dumps(data["probes"]), flush=True)
    elif not args.report:
        for n in [int(x) for x in args.sizes.split(",")]:
            tmp = WORK / f"one-{n}.json"
            cmd = [sys.executable, __file__, "--one", str(n), "--json", str(tmp),
                   "--doc-tokens", str(args.doc_tokens), "--max-tokens", args.max_tokens]  # fmt: skip
            subprocess.run(cmd, check=True)
            data["sizes"][str(n)] = json.loads(tmp.read_text())
            print(json.dumps(data["sizes"][str(n)]), flush=True)
            out.write_text(json.dumps(data, indent=1))
            write_report(data, out.with_suffix(".md"))
    out.write_text(json.dumps(data, indent=1))
    write_report(data, out.with_suffix(".md"))


if __name__ == "__main__":
    main()
