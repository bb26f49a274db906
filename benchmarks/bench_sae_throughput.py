"""SAE training throughput (tokens/s) and one-query SAE encode time at d = 384 (all-MiniLM-L6-v2)
and d = 768 (all-mpnet-base-v2), measured in one process, configurations interleaved.

    python benchmarks/bench_sae_throughput.py            # ~10 min on 2 cores

Training: ``latentlex.training.train_sae`` (the library's fast sparse path, batch 4,096, AdamW,
AuxK) on the same number of rows per configuration. Rows are Gaussian with the backbone's
dimension: the kernels' cost depends on shapes, not values (quality is measured elsewhere). Each
configuration is trained ``--rounds`` times, the configurations alternating, and the median is
reported. Query encode: ``SparseAutoencoder.encode`` of one query's token states (12 tokens) in
fp32 and in bf16 (weights cast once), p50 over ``--queries`` calls, alternating. Writes
``benchmarks/results/sae_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from latentlex.sae import SAEConfig, SparseAutoencoder
from latentlex.training import TrainConfig, _cpu_has_fast_bf16, train_sae

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [(384, 8192, 16), (768, 8192, 16), (768, 16384, 16)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=40_960, help="training rows per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    data = {d: rng.normal(size=(args.rows, d)).astype(np.float16) for d in {c[0] for c in CONFIGS}}
    train: dict[str, list[float]] = {f"d{d}-w{w}-k{k}": [] for d, w, k in CONFIGS}
    for _ in range(args.rounds):
        for d, w, k in CONFIGS:
            cfg = TrainConfig(width=w, k=k, epochs=1.0, batch_size=4096, progress=False)
            _, report = train_sae(data[d], cfg, device="cpu")
            train[f"d{d}-w{w}-k{k}"].append(report.tokens_per_s)
    enc: dict[str, list[float]] = {}
    saes = {}
    for d, w, k in CONFIGS:
        sae = SparseAutoencoder(SAEConfig(d_in=d, width=w, k=k)).eval()
        saes[(d, w, "fp32")] = sae
        saes[(d, w, "bf16")] = (
            SparseAutoencoder(SAEConfig(d_in=d, width=w, k=k)).to(torch.bfloat16).eval()
        )
    queries = {d: torch.from_numpy(rng.normal(size=(12, d)).astype(np.float32)) for d in data}
    for _ in range(args.queries):
        for (d, w, dtype), sae in saes.items():
            t0 = time.perf_counter()
            sae.encode(queries[d])
            enc.setdefault(f"d{d}-w{w}-{dtype}", []).append(time.perf_counter() - t0)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "fast_bf16_on_this_cpu": _cpu_has_fast_bf16(),
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "rows_per_run": args.rows,
        "training_tokens_per_s": {n: statistics.median(v) for n, v in train.items()},
        "training_runs": train,
        "query_encode_p50_ms": {n: 1e3 * statistics.median(v) for n, v in enc.items()},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sae_throughput.json").write_text(json.dumps(result, indent=1))
    md = [
        "# SAE training throughput and query encode time by backbone dimension",
        "",
        f"`python benchmarks/bench_sae_throughput.py` — {result['machine']['cpus']} CPUs, "
        f"{result['machine']['torch_threads']} torch threads, fast bf16 on this CPU: "
        f"{result['machine']['fast_bf16_on_this_cpu']}; {args.rows:,} Gaussian rows per run, "
        f"median of {args.rounds} interleaved runs; other processes share this machine "
        f"(load average after: {result['machine']['load_avg_after']}): compare ratios.",
        "",
        "| d / width / k | training tokens/s | vs d 384 / 8192 | one-query SAE encode p50 fp32 (ms) | bf16 (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    base = result["training_tokens_per_s"]["d384-w8192-k16"]
    for d, w, k in CONFIGS:
        tps = result["training_tokens_per_s"][f"d{d}-w{w}-k{k}"]
        e32 = result["query_encode_p50_ms"][f"d{d}-w{w}-fp32"]
        e16 = result["query_encode_p50_ms"][f"d{d}-w{w}-bf16"]
        md.append(f"| {d} / {w} / {k} | {tps:,.0f} | {tps / base:.2f}x | {e32:.2f} | {e16:.2f} |")
    (out / "sae_throughput.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
