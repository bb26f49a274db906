"""Regenerate every benchmark result and the tables of BENCHMARKS.md, from scratch.

    python benchmarks/run_all.py            # full: SciFact, NFCorpus, LIMIT-small (about an hour on 2 cores)
    python benchmarks/run_all.py --quick    # smoke: LIMIT-small only, an SAE fitted on its corpus (minutes)

Steps (each writes under benchmarks/results/, or results-quick/ with --quick):
1. fit the default SAE (token mode, width 8192, k 16) on each dataset's own corpus (cached in .cache/);
2. ``latentlex eval`` with every system on each dataset (quality + query latency, same run);
3. SAE training throughput (benchmarks/bench_training.py) and encoding/indexing/search speed
   (benchmarks/bench_index.py) — full mode only;
4. the tables in BENCHMARKS.md between the ``<!-- results -->`` markers.

Datasets are read from ``$LATENTLEX_DATA`` (default ``../shared/data``; LIMIT-small also ships in
examples/data).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LATENTLEX_DATA", REPO.parent / "shared" / "data"))
MARK_START, MARK_END = "<!-- results:start -->", "<!-- results:end -->"


def dataset_dir(name: str) -> Path:
    if name == "limit-small" and not (DATA / name).is_dir():
        return REPO / "examples" / "data" / "limit-small"
    return DATA / name


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def table(results: list[dict]) -> str:
    metrics = list(results[0]["metrics"])
    head = "| system | " + " | ".join(metrics) + " | query p50 ms | query p95 ms |"
    rows = [head, "|---" * (len(metrics) + 3) + "|"]
    best = {m: max(r["metrics"][m] for r in results) for m in metrics}
    for r in results:
        cells = []
        for m in metrics:
            v = r["metrics"][m]
            cells.append(f"**{v:.4f}**" if v == best[m] else f"{v:.4f}")
        rows.append(
            f"| {r['system']} | "
            + " | ".join(cells)
            + f" | {r.get('query_p50_ms', float('nan')):.2f} | {r.get('query_p95_ms', float('nan')):.2f} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--datasets", default=None, help="comma-separated (default: by mode)")
    args = ap.parse_args()
    out = REPO / "benchmarks" / ("results-quick" if args.quick else "results")
    out.mkdir(parents=True, exist_ok=True)
    names = (
        args.datasets.split(",")
        if args.datasets
        else (["limit-small", "scifact"] if args.quick else ["scifact", "nfcorpus", "limit-small"])
    )
    exe = [sys.executable, "-m", "latentlex.cli"]
    sections = []
    for name in names:
        cmd = [*exe, "eval", "--dataset", str(dataset_dir(name)), "--fit", "--out", str(out / name)]
        if args.quick:
            cmd += ["--width", "4096", "--k", "16", "--epochs", "40"]
        run(cmd)
        results = json.loads((out / name / "results.json").read_text())
        results = results["results"] if isinstance(results, dict) else results
        sections.append(f"### {name}\n\n{table(results)}\n")
    if not args.quick:
        run([sys.executable, "benchmarks/bench_training.py"])
        sae = REPO / ".cache" / "latentlex-eval" / "saes"
        fitted = sorted(p for p in sae.glob("scifact-*") if (p / "cfg.json").is_file())
        run(
            [
                sys.executable,
                "benchmarks/bench_index.py",
                *(["--sae", str(fitted[0])] if fitted else []),
            ]
        )
        for extra in ("training.md", "index.md"):
            if (out / extra).is_file():
                sections.append((out / extra).read_text())
    body = "\n".join(sections)
    (out / "summary.md").write_text(body)
    bench = REPO / "BENCHMARKS.md"
    if not args.quick and bench.is_file():
        text = bench.read_text()
        if MARK_START in text and MARK_END in text:
            head, rest = text.split(MARK_START, 1)
            _, tail = rest.split(MARK_END, 1)
            bench.write_text(f"{head}{MARK_START}\n{body}\n{MARK_END}{tail}")
    print(body)


if __name__ == "__main__":
    main()
