"""Encoding overhead, indexing throughput, search latency and index size — measured side by side.

    python benchmarks/bench_index.py --sae DIR [--docs 50000] [--out benchmarks/results]

1. Encoding: documents/s of the backbone alone (dense only) vs dense + latent terms (same texts, same
   batch size, same process, interleaved repeats). The latent leg's extra cost is the ratio.
2. Indexing into the embedded engine: documents/s writing dense-only points vs dense + latent-term points.
3. Search latency p50/p95 at ``--docs`` points (the real SciFact documents' vectors, repeated with a small
   dense perturbation to reach that size): dense, latent (sparse) and hybrid, search only (pre-encoded
   queries) and end to end (query encoding included).
4. On-disk bytes per document, dense and sparse parts separately.

Without ``--sae``, an untrained SAE of the same shape is used (timings only; quality is not measured here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from latentlex.backbone import Backbone
from latentlex.corpus import read_corpus
from latentlex.sae import SAEConfig, SparseAutoencoder
from latentlex.sparse import SparseVector
from latentlex.store import CollectionSpec, EdgeStore, PointRecord, SearchRequest
from latentlex.terms import LatentTermEncoder

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LATENTLEX_DATA", REPO.parent / "shared" / "data"))


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def bench_encoding(encoder: LatentTermEncoder, texts: list[str], repeats: int) -> dict:
    bb = encoder.backbone
    bb.encode_dense(texts[:32])  # warm-up
    encoder.encode_documents(texts[:32])
    dense_t, both_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        bb.encode_dense(texts, batch_size=encoder.batch_size)
        dense_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        encoder.encode_documents(texts)
        both_t.append(time.perf_counter() - t0)
    d, b = statistics.median(dense_t), statistics.median(both_t)
    return {
        "texts": len(texts),
        "repeats": repeats,
        "dense_only_docs_per_s": len(texts) / d,
        "dense_plus_latent_docs_per_s": len(texts) / b,
        "latent_overhead": b / d - 1,
    }


def build(
    path: Path, dense: np.ndarray, sparse: list[SparseVector] | None, n: int, identity: dict
) -> tuple[EdgeStore, float]:
    store = EdgeStore(path, collection="bench", flush=False)
    store.open(CollectionSpec("bench", dense.shape[1], identity), recreate=True)
    m = dense.shape[0]
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    batch: list[PointRecord] = []
    for i in range(n):
        j = i % m
        vec = (
            dense[j] if i < m else dense[j] + rng.normal(0, 0.02, dense.shape[1]).astype(np.float32)
        )
        batch.append(
            PointRecord(f"d{i}", vec, sparse[j] if sparse is not None else None, f"doc {i}", {})
        )
        if len(batch) == 1000:
            store.upsert(batch)
            batch = []
    if batch:
        store.upsert(batch)
    store.flush()
    secs = time.perf_counter() - t0
    store.optimize()
    return store, secs


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sae", default=None)
    ap.add_argument("--docs", type=int, default=50_000)
    ap.add_argument("--encode-texts", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args()

    bb = Backbone()
    if args.sae:
        sae = SparseAutoencoder.load(args.sae)
    else:
        sae = SparseAutoencoder(SAEConfig(d_in=bb.dim, width=8192, k=16, avgdl=1300.0))
    encoder = LatentTermEncoder(sae, bb)
    docs = list(read_corpus(DATA / "scifact"))
    with open(DATA / "scifact" / "queries.jsonl") as fh:
        queries = [json.loads(line)["text"] for line in fh][: args.queries]
    result: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "load_avg_before": os.getloadavg(),
        },
        "sae": {"width": sae.cfg.width, "k": sae.cfg.k, "trained": bool(args.sae)},
    }
    sample = [d.text for d in docs[: args.encode_texts]]
    result["encoding"] = bench_encoding(encoder, sample, args.repeats)
    print("encoding", json.dumps(result["encoding"]))

    # document vectors for the store: real SciFact encodings (up to 2,000), repeated to --docs
    enc = encoder.encode_documents([d.text for d in docs[:2000]])
    qenc = encoder.encode_queries(queries)
    tmp = Path(tempfile.mkdtemp(prefix="latentlex-bench-"))
    ident = {"bench": 1}
    try:
        dense_store, dense_secs = build(tmp / "dense", enc.dense, None, args.docs, ident)
        dense_bytes = folder_bytes(tmp / "dense")
        full_store, full_secs = build(tmp / "full", enc.dense, enc.sparse, args.docs, ident)
        full_bytes = folder_bytes(tmp / "full")
        dense_store.close()
        result["indexing"] = {
            "docs": args.docs,
            "dense_only_docs_per_s": args.docs / dense_secs,
            "dense_plus_latent_docs_per_s": args.docs / full_secs,
            "terms_per_doc_mean": float(np.mean([len(v) for v in enc.sparse])),
            "bytes_per_doc_dense": dense_bytes / args.docs,
            "bytes_per_doc_sparse": (full_bytes - dense_bytes) / args.docs,
        }
        print("indexing", json.dumps(result["indexing"]))

        lat: dict[str, dict[str, float]] = {}
        for mode in ("dense", "sparse", "hybrid"):
            times = []
            for i in range(len(queries)):
                req = SearchRequest(
                    dense=qenc.dense[i] if mode != "sparse" else None,
                    sparse=qenc.sparse[i] if mode != "dense" else None,
                    k=10,
                    mode=mode,
                    with_legs=False,
                )
                t0 = time.perf_counter()
                full_store.search(req)
                times.append(time.perf_counter() - t0)
            lat[f"{mode}_search_only"] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
        for mode in ("dense", "hybrid"):
            times = []
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                e = encoder.encode_queries([q]) if mode == "hybrid" else None
                dv = e.dense[0] if e is not None else bb.encode_dense([q], is_query=True)[0]
                req = SearchRequest(
                    dense=dv,
                    sparse=e.sparse[0] if e is not None else None,
                    k=10,
                    mode=mode,
                    with_legs=False,
                )
                full_store.search(req)
                times.append(time.perf_counter() - t0)
                del i
            lat[f"{mode}_end_to_end"] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
        lat["hybrid_over_dense_end_to_end_p50"] = (
            lat["hybrid_end_to_end"]["p50_ms"] / lat["dense_end_to_end"]["p50_ms"]
        )
        result["latency"] = lat
        print("latency", json.dumps(lat))
        full_store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["machine"]["load_avg_after"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.json").write_text(json.dumps(result, indent=1))
    e, ix, la = result["encoding"], result["indexing"], result["latency"]
    md = [
        "# Encoding, indexing and search benchmark",
        "",
        f"`python benchmarks/bench_index.py {'--sae ' + args.sae if args.sae else ''} --docs {args.docs}` — "
        f"SAE width {sae.cfg.width}, k {sae.cfg.k} ({'trained' if args.sae else 'untrained, timings only'}); "
        f"{os.cpu_count()} CPUs, load average before/after {result['machine']['load_avg_before']} / {result['machine']['load_avg_after']} "
        "(other processes share this machine: compare ratios within this run).",
        "",
        "| what | dense only | dense + latent terms | ratio |",
        "|---|---:|---:|---:|",
        f"| encoding, docs/s ({e['texts']} SciFact docs) | {e['dense_only_docs_per_s']:.1f} | {e['dense_plus_latent_docs_per_s']:.1f} | +{100 * e['latent_overhead']:.1f} % time |",
        f"| indexing into qdrant-edge, docs/s ({ix['docs']:,} docs) | {ix['dense_only_docs_per_s']:.0f} | {ix['dense_plus_latent_docs_per_s']:.0f} | {ix['dense_only_docs_per_s'] / ix['dense_plus_latent_docs_per_s']:.2f}x slower |",
        f"| on-disk bytes per document | {ix['bytes_per_doc_dense']:.0f} | +{ix['bytes_per_doc_sparse']:.0f} (sparse part, {ix['terms_per_doc_mean']:.0f} terms/doc) | |",
        "",
        f"Search latency at {ix['docs']:,} documents, embedded engine, k = 10 (ms):",
        "",
        "| | p50 | p95 |",
        "|---|---:|---:|",
    ]
    for key, v in la.items():
        if isinstance(v, dict):
            md.append(f"| {key.replace('_', ' ')} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} |")
    md += [
        "",
        f"End-to-end hybrid / end-to-end dense (p50): **{la['hybrid_over_dense_end_to_end_p50']:.2f}x**",
        "",
    ]
    (out / "index.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
