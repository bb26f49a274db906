"""Encoding overhead, indexing throughput, search latency and index size — measured side by side.

    python benchmarks/bench_index.py --sae DIR [--docs 50000] [--out benchmarks/results]

1. Encoding: documents/s of the backbone alone (dense only) vs dense + latent terms (same texts, same
   batch size, same process, interleaved repeats). The latent leg's extra cost is the ratio.
2. Indexing into the embedded engine: documents/s writing dense-only points vs dense + latent-term points.
3. Search latency p50/p95 at ``--docs`` points (real SciFact document vectors, repeated with a small
   dense perturbation to reach that size): dense, latent (sparse) and hybrid, search only (pre-encoded
   queries) and end to end (query text -> hits, query encoding included).
4. On-disk bytes per document, dense and sparse parts separately.

The document vectors come from the token states cached by ``latentlex eval`` (``--states``, default
``.cache/states/scifact`` when it was made by the same backbone; no backbone pass), else from encoding
the texts. Latencies are measured per query with the modes interleaved (the order rotates from query to
query), after a warm-up of every path, so that a load change on a shared machine hits all modes alike;
wall-clock and process CPU time are both recorded.

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

# Before torch loads OpenMP: threads that spin while waiting make small forward passes 3-15x slower
# (and wildly variable) on a shared CPU (measured here for one query: 150-730 ms instead of 41-50 ms).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from latentlex.backbone import Backbone, BackboneBatch
from latentlex.corpus import read_corpus
from latentlex.sae import SAEConfig, SparseAutoencoder
from latentlex.sparse import SparseVector
from latentlex.states import TokenStates
from latentlex.store import CollectionSpec, EdgeStore, PointRecord, SearchRequest
from latentlex.terms import Encoded, LatentTermEncoder

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


def doc_vectors(
    encoder: LatentTermEncoder, texts: list[str], states_dir: Path | None, n: int
) -> tuple[np.ndarray, list[SparseVector], str]:
    """Dense and latent-term vectors of ``n`` real documents: from cached token states when they match
    the backbone (evenly spaced over the stored documents, no backbone pass), else by encoding texts."""
    if states_dir is not None and (states_dir / "meta.json").is_file():
        st = TokenStates.open(states_dir)
        bb = encoder.backbone
        meta = st.meta
        if (
            meta.get("backbone_fingerprint") == bb.fingerprint()
            and bool(meta.get("keep_special_tokens")) == bb.keep_special_tokens
            and meta.get("layer") == bb.layer
            and meta.get("max_seq_length") == bb.max_seq_length
        ):
            m = min(n, st.n_docs)
            sel = np.unique(np.linspace(0, st.n_docs - 1, m).round().astype(np.int64))
            dense = np.asarray(st.dense[sel], dtype=np.float32)
            sparse: list[SparseVector] = []
            off = st.offsets
            for chunk in np.array_split(np.arange(sel.size), max(1, sel.size // 64)):
                rows = sel[chunk]
                tokens = np.concatenate([st.tokens[off[i] : off[i + 1]] for i in rows])
                batch = BackboneBatch(
                    torch.from_numpy(tokens.astype(np.float32)),
                    torch.from_numpy((off[rows + 1] - off[rows]).astype(np.int64)),
                    torch.from_numpy(dense[chunk]),
                )
                sparse.extend(encoder.document_weights(i, u) for i, u in encoder.latent_mass(batch))
            return dense, sparse, f"cached fp16 token states of {sel.size} SciFact documents"
        print(f"{states_dir}: token states from another backbone/options; encoding texts instead")
    enc = encoder.encode_documents(texts[:n])
    return enc.dense, enc.sparse, f"{min(n, len(texts))} SciFact documents encoded from text"


def latency(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(samples, 50), "p95_ms": pct(samples, 95)}


def bench_search_only(
    store: EdgeStore, qenc: Encoded, n_queries: int, warmup: int = 10
) -> dict[str, dict[str, float]]:
    """Search latency with pre-encoded queries, modes interleaved per query (rotating order)."""
    modes = ("dense", "sparse", "hybrid")
    reqs = {
        mode: [
            SearchRequest(
                dense=qenc.dense[i] if mode != "sparse" else None,
                sparse=qenc.sparse[i] if mode != "dense" else None,
                k=10,
                mode=mode,
                with_legs=False,
            )
            for i in range(n_queries)
        ]
        for mode in modes
    }
    for mode in modes:
        for r in reqs[mode][:warmup]:
            store.search(r)
    times: dict[str, list[float]] = {m: [] for m in modes}
    for i in range(n_queries):
        for j in range(len(modes)):
            mode = modes[(i + j) % len(modes)]
            t0 = time.perf_counter()
            store.search(reqs[mode][i])
            times[mode].append(time.perf_counter() - t0)
    return {f"{m}_search_only": latency(times[m]) for m in modes}


def bench_end_to_end(
    encoder: LatentTermEncoder, store: EdgeStore, queries: list[str], warmup: int = 10
) -> dict[str, dict[str, float]]:
    """Query text -> hits, one query at a time, every variant through the same code shape
    (encode one text, build one request, one engine call), interleaved per query in rotating order.

    Variants: dense (``Backbone.encode_dense``), hybrid (``LatentTermEncoder.encode_queries``, legs
    off, as the search-only rows) and hybrid with per-leg scores (``LatentIndex.search``'s default).
    Each variant also records its encoding part alone and its process CPU time.
    """
    bb = encoder.backbone

    def dense_encode(q: str) -> tuple[np.ndarray, SparseVector | None]:
        return bb.encode_dense([q], is_query=True)[0], None

    def hybrid_encode(q: str) -> tuple[np.ndarray, SparseVector | None]:
        e = encoder.encode_queries([q])
        return e.dense[0], e.sparse[0]

    variants = {
        "dense": (dense_encode, "dense", False),
        "hybrid": (hybrid_encode, "hybrid", False),
        "hybrid_with_legs": (hybrid_encode, "hybrid", True),
    }

    def one(name: str, q: str) -> tuple[float, float, float]:
        encode, mode, legs = variants[name]
        c0, t0 = time.process_time(), time.perf_counter()
        dense, sparse = encode(q)
        t1 = time.perf_counter()
        store.search(SearchRequest(dense=dense, sparse=sparse, k=10, mode=mode, with_legs=legs))
        return time.perf_counter() - t0, t1 - t0, time.process_time() - c0

    names = list(variants)
    for q in queries[:warmup]:
        for name in names:
            one(name, q)
    wall: dict[str, list[float]] = {n: [] for n in names}
    enc: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for i, q in enumerate(queries):
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            w, e, c = one(name, q)
            wall[name].append(w)
            enc[name].append(e)
            cpu[name].append(c)
    out: dict[str, dict[str, float]] = {}
    for name in names:
        out[f"{name}_end_to_end"] = latency(wall[name])
    for name in ("dense", "hybrid"):
        out[f"{name}_query_encoding_part"] = latency(enc[name])
    for name in names:
        out[f"{name}_end_to_end_cpu_time"] = latency(cpu[name])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sae", default=None)
    ap.add_argument("--docs", type=int, default=50_000)
    ap.add_argument("--encode-texts", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument(
        "--vector-docs",
        type=int,
        default=2000,
        help="real documents whose vectors are repeated to reach --docs",
    )
    ap.add_argument(
        "--states",
        default=str(REPO / ".cache" / "states" / "scifact"),
        help="token-state folder of SciFact to take document vectors from ('' to encode texts)",
    )
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
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "python": platform.python_version(),
            "load_avg_before": os.getloadavg(),
        },
        "sae": {"width": sae.cfg.width, "k": sae.cfg.k, "trained": bool(args.sae)},
    }
    sample = [d.text for d in docs[: args.encode_texts]]
    result["encoding"] = bench_encoding(encoder, sample, args.repeats)
    print("encoding", json.dumps(result["encoding"]))

    # document vectors for the store: real SciFact documents, repeated to --docs
    dense_vecs, sparse_vecs, source = doc_vectors(
        encoder,
        [d.text for d in docs],
        Path(args.states) if args.states else None,
        args.vector_docs,
    )
    result["vectors"] = source
    print("vectors:", source)
    qenc = encoder.encode_queries(queries)
    tmp = Path(tempfile.mkdtemp(prefix="latentlex-bench-"))
    ident = {"bench": 1}
    try:
        dense_store, dense_secs = build(tmp / "dense", dense_vecs, None, args.docs, ident)
        dense_bytes = folder_bytes(tmp / "dense")
        full_store, full_secs = build(tmp / "full", dense_vecs, sparse_vecs, args.docs, ident)
        full_bytes = folder_bytes(tmp / "full")
        dense_store.close()
        result["indexing"] = {
            "docs": args.docs,
            "dense_only_docs_per_s": args.docs / dense_secs,
            "dense_plus_latent_docs_per_s": args.docs / full_secs,
            "terms_per_doc_mean": float(np.mean([len(v) for v in sparse_vecs])),
            "bytes_per_doc_dense": dense_bytes / args.docs,
            "bytes_per_doc_sparse": (full_bytes - dense_bytes) / args.docs,
        }
        print("indexing", json.dumps(result["indexing"]))

        result["machine"]["load_avg_latency_start"] = os.getloadavg()
        lat: dict = {}
        lat.update(bench_search_only(full_store, qenc, len(queries)))
        lat.update(bench_end_to_end(encoder, full_store, queries))
        result["machine"]["load_avg_latency_end"] = os.getloadavg()
        lat["hybrid_over_dense_end_to_end_p50"] = (
            lat["hybrid_end_to_end"]["p50_ms"] / lat["dense_end_to_end"]["p50_ms"]
        )
        lat["hybrid_over_dense_end_to_end_cpu_p50"] = (
            lat["hybrid_end_to_end_cpu_time"]["p50_ms"] / lat["dense_end_to_end_cpu_time"]["p50_ms"]
        )
        lat["hybrid_with_legs_over_dense_end_to_end_p50"] = (
            lat["hybrid_with_legs_end_to_end"]["p50_ms"] / lat["dense_end_to_end"]["p50_ms"]
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
    (out / "index.md").write_text(markdown(result, args, sae.cfg.width, sae.cfg.k))
    print((out / "index.md").read_text())


def _load(xs: tuple[float, float, float] | list[float]) -> str:
    return "/".join(f"{x:.2f}" for x in xs)


def markdown(result: dict, args: argparse.Namespace, width: int, k: int) -> str:
    e, ix, la, mc = result["encoding"], result["indexing"], result["latency"], result["machine"]
    cmd = f"python benchmarks/bench_index.py {'--sae ' + args.sae + ' ' if args.sae else ''}--docs {args.docs}"
    md = [
        "# Encoding, indexing and search benchmark",
        "",
        f"`{cmd}` — SAE width {width}, k {k} "
        f"({'trained' if args.sae else 'untrained, timings only'}); document vectors: {result['vectors']}; "
        f"{mc['cpus']} CPUs, {mc['torch_threads']} torch threads, OMP_WAIT_POLICY={mc['omp_wait_policy']}; load average (1/5/15 min) before "
        f"{_load(mc['load_avg_before'])}, during the latency runs {_load(mc['load_avg_latency_start'])} "
        f"→ {_load(mc['load_avg_latency_end'])}, after {_load(mc['load_avg_after'])} "
        "(other processes share this machine: compare ratios within this run).",
        "",
        "| what | dense only | dense + latent terms | ratio |",
        "|---|---:|---:|---:|",
        f"| encoding, docs/s ({e['texts']} SciFact docs) | {e['dense_only_docs_per_s']:.1f} | {e['dense_plus_latent_docs_per_s']:.1f} | +{100 * e['latent_overhead']:.1f} % time |",
        f"| indexing into qdrant-edge, docs/s ({ix['docs']:,} docs) | {ix['dense_only_docs_per_s']:.0f} | {ix['dense_plus_latent_docs_per_s']:.0f} | {ix['dense_only_docs_per_s'] / ix['dense_plus_latent_docs_per_s']:.2f}x slower |",
        f"| on-disk bytes per document | {ix['bytes_per_doc_dense']:.0f} | +{ix['bytes_per_doc_sparse']:.0f} (sparse part, {ix['terms_per_doc_mean']:.0f} terms/doc) | |",
        "",
        f"Search latency at {ix['docs']:,} documents, embedded engine, k = 10, {args.queries} SciFact "
        'queries, one at a time, modes interleaved per query (ms; "cpu time" rows: process CPU time, '
        "less sensitive to other processes than wall-clock):",
        "",
        "| | p50 | p95 |",
        "|---|---:|---:|",
    ]
    for key, v in la.items():
        if isinstance(v, dict):
            md.append(f"| {key.replace('_', ' ')} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} |")
    md += [
        "",
        f"End-to-end hybrid / end-to-end dense (p50): **{la['hybrid_over_dense_end_to_end_p50']:.2f}x** "
        f"wall-clock, {la['hybrid_over_dense_end_to_end_cpu_p50']:.2f}x CPU time; with per-leg scores "
        f"(`LatentIndex.search` default): {la['hybrid_with_legs_over_dense_end_to_end_p50']:.2f}x.",
        "",
    ]
    return "\n".join(md)


if __name__ == "__main__":
    main()
