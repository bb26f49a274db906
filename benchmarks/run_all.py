"""Regenerate every benchmark result and the tables of BENCHMARKS.md, from scratch.

    python benchmarks/run_all.py            # full: SciFact, NFCorpus, LIMIT-small (about an hour on 2 cores)
    python benchmarks/run_all.py --quick    # smoke: LIMIT-small + a SciFact subset (minutes)

Steps (each writes under benchmarks/results/, or benchmarks/results-quick/ with --quick; --out DIR
writes elsewhere):
1. fit an SAE (token mode, k 16) on each dataset's own corpus: width 8192 with the library's default
   fit (a 250,000-token sample of whole documents, 6 epochs) in full mode;
   in quick mode width 4096 for 20 epochs on LIMIT-small (its corpus is 46 documents) and 1 epoch on
   the SciFact subset. The corpus is encoded once: its token states (and the dense vectors) go to
   ``--cache`` (default .cache/latentlex-eval), where ``latentlex eval`` finds them, and so do the
   fitted SAEs (keyed by dataset, corpus fingerprint, width, k, epochs and seed);
2. every system of ``latentlex eval`` on each dataset (quality + query latency, same run), written
   to ``<out>/<dataset>/results.json``, ``results.md`` and plots, and all tables to
   ``<out>/summary.md`` (+ ``summary.json``: datasets run, SAEs used, datasets skipped);
3. SAE training throughput (benchmarks/bench_training.py) and encoding/indexing/search speed
   (benchmarks/bench_index.py) — full mode only;
4. the tables in BENCHMARKS.md between the ``<!-- results -->`` markers — full mode only.

Quick mode is the CI smoke test (tests/test_bench_quick.py): LIMIT-small (46 docs, 1,000 queries),
and a SciFact subset named ``scifact-quick`` (every test query, its judged documents and seeded
random distractors up to 1,000 documents; written as a BEIR folder under the cache) when the SciFact
folder exists — without it the subset is skipped with a note.

Datasets are read from ``$LATENTLEX_DATA`` (default ``../shared/data``; LIMIT-small also ships in
examples/data).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# On a shared CPU, OpenMP threads that spin while waiting cost up to 30x: yield instead (set before
# torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LATENTLEX_DATA", REPO.parent / "shared" / "data"))
MARK_START, MARK_END = "<!-- results:start -->", "<!-- results:end -->"


@dataclass(frozen=True)
class Plan:
    """How one dataset is benchmarked."""

    width: int
    epochs: float | None = None
    """None: the library's default (FitConfig)."""
    k: int = 16
    seed: int = 0
    subset_queries: int | None = None
    """Evaluate on a subset: this many test queries (all their judged documents kept) ..."""
    subset_docs: int | None = None
    """... and seeded random distractors up to this many documents."""
    sae_from: str | None = None
    """Search with the SAE fitted for this (earlier) dataset instead of fitting one."""


FULL = {
    "scifact": Plan(width=8192),
    "nfcorpus": Plan(width=8192),
    # 46 documents (7k tokens) are too few to fit a width-8192 SAE in a few epochs: LIMIT-small is
    # searched with SciFact's SAE (no LIMIT text seen; BENCHMARKS.md compares both)
    "limit-small": Plan(width=8192, sae_from="scifact"),
}
QUICK = {
    "limit-small": Plan(width=4096, epochs=20.0),
    "scifact": Plan(width=4096, epochs=1.0, subset_queries=300, subset_docs=1000),
}


def dataset_dir(name: str) -> Path:
    if name == "limit-small" and not (DATA / name).is_dir():
        return REPO / "examples" / "data" / "limit-small"
    return DATA / name


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def table(results: list[dict]) -> str:
    metrics = list(results[0]["metrics"])
    sig = next((r["significance"] for r in results if r.get("significance")), None)
    head = "| system | " + " | ".join(metrics) + " | 1-query p50 ms | 1-query p95 ms |"
    rows = [head, "|---" * (len(metrics) + 3) + "|"]
    if sig is not None:
        rows[0] += f" hybrid − this, {sig['metric']} (p) |"
        rows[1] += "---|"
    best = {m: max(r["metrics"][m] for r in results) for m in metrics}
    for r in results:
        cells = []
        for m in metrics:
            v = r["metrics"][m]
            cells.append(f"**{v:.4f}**" if v == best[m] else f"{v:.4f}")
        p50, p95 = r.get("query_p50_ms"), r.get("query_p95_ms")
        row = (
            f"| {r['system']} | "
            + " | ".join(cells)
            + f" | {float('nan') if p50 is None else p50:.2f}"
            + f" | {float('nan') if p95 is None else p95:.2f} |"
        )
        if sig is not None:
            vs = sig["vs"].get(r["system"])
            row += f" {vs['diff']:+.4f} ({vs['p']:.2g}) |" if vs else " – |"
        rows.append(row)
    text = "\n".join(rows)
    if sig is not None:
        text += f"\n\np: {sig['test']}, over {next(iter(sig['vs'].values()))['n']} queries.\n"
    return text


def prepare(name: str, plan: Plan, cache: Path) -> Path:
    """The BEIR folder to evaluate: the dataset itself, or its subset written under ``cache``."""
    src = dataset_dir(name)
    if plan.subset_queries is None:
        return src
    from latentlex.evaluation.beir import load_beir, subset, write_beir

    small = subset(load_beir(src), plan.subset_queries, seed=plan.seed, n_docs=plan.subset_docs)
    # The folder name is the dataset name in every cache and report: distinct from the full set.
    dest = cache / "datasets" / f"{name}-quick"
    write_beir(small, dest)
    print(f"{name}: subset of {len(small.queries)} queries, {len(small.corpus)} docs -> {dest}")
    return dest


def fit(folder: Path, plan: Plan, cache: Path) -> Path:
    """Fit (or reuse) the SAE of one dataset, sharing the token states with ``run_eval``."""
    from latentlex.evaluation.beir import load_beir
    from latentlex.fit import FitConfig, fit_sae

    ds = load_beir(folder)
    defaults = FitConfig(mode="token", epochs=plan.epochs)  # the fit's default budget and epochs
    budget, epochs = defaults.budget, defaults.epochs
    key = f"{ds.name}-{ds.fingerprint[:12]}-w{plan.width}-k{plan.k}-e{epochs:g}-s{plan.seed}"
    sae_dir = cache / "saes" / f"{key}-t{budget or 'all'}-token"
    if (sae_dir / "cfg.json").is_file():
        print(f"{ds.name}: reusing SAE {sae_dir}", flush=True)
        return sae_dir
    t0 = time.perf_counter()
    # fit_sae reads the folder with the same ids and texts as run_eval, so the token states it
    # writes here are the ones run_eval reuses: the corpus goes through the backbone once.
    cfg = FitConfig(
        width=plan.width,
        k=plan.k,
        epochs=epochs,
        seed=plan.seed,
        mode="token",
        cache_dir=str(cache / "states" / ds.name),
        progress=False,
    )
    sae = fit_sae(folder, sae_dir, cfg)
    m = sae.cfg.metrics
    print(
        f"{ds.name}: fitted SAE width {plan.width} k {plan.k} epochs {epochs:g} "
        f"(FVU {m.get('fvu', float('nan')):.3f}) in {time.perf_counter() - t0:.0f}s -> {sae_dir}",
        flush=True,
    )
    return sae_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="the smoke run (see above)")
    ap.add_argument("--datasets", default=None, help="comma-separated (default: by mode)")
    ap.add_argument("--systems", default=None, help="comma-separated (default: every system)")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default: benchmarks/results, or benchmarks/results-quick)",
    )
    ap.add_argument(
        "--cache",
        type=Path,
        default=REPO / ".cache" / "latentlex-eval",
        help="token states, dense vectors, SAEs and subsets (default: .cache/latentlex-eval)",
    )
    ap.add_argument(
        "--render-only",
        action="store_true",
        help="rebuild summary.md and the BENCHMARKS.md tables from the results.json files already "
        "in --out, running nothing",
    )
    args = ap.parse_args(argv)
    plans = QUICK if args.quick else FULL
    out = (
        args.out or REPO / "benchmarks" / ("results-quick" if args.quick else "results")
    ).resolve()
    cache = args.cache.resolve()
    names = args.datasets.split(",") if args.datasets else list(plans)
    unknown = [n for n in names if n not in plans]
    if unknown:
        ap.error(f"unknown datasets {unknown}; choose from {list(plans)}")
    missing = {
        n: f"{dataset_dir(n)} not found (set LATENTLEX_DATA)"
        for n in names
        if not (dataset_dir(n) / "corpus.jsonl").is_file()
    }
    if (
        missing and not args.quick and not args.render_only
    ):  # a partial BENCHMARKS.md would mislead: fail before any work
        for name, why in missing.items():
            print(f"error: {name}: {why}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)

    sections: list[str] = []
    summary: dict[str, Any] = {"mode": "quick" if args.quick else "full", "datasets": {}}
    summary["skipped"] = missing
    saes: dict[str, Path] = {}
    for name in names:
        plan = plans[name]
        if args.render_only:
            done = out / name / "results.json"
            if done.is_file():
                results = json.loads(done.read_text())
                r0 = results[0]
                sections.append(
                    f"### {r0['dataset']} ({r0['n_docs']} docs, {r0['n_queries']} queries)\n\n"
                    f"{table(results)}\n"
                )
            continue
        if name in missing:
            print(f"note: skipping {name}: {missing[name]}", flush=True)
            sections.append(f"### {name}\n\nSkipped: {missing[name]}.\n")
            continue
        from latentlex.evaluation.run import DEFAULT_SYSTEMS, run_eval

        folder = prepare(name, plan, cache)
        if plan.sae_from is not None and plan.sae_from not in saes:
            saes[plan.sae_from] = fit(dataset_dir(plan.sae_from), FULL[plan.sae_from], cache)
        saes[name] = sae_dir = (
            saes[plan.sae_from] if plan.sae_from is not None else fit(folder, plan, cache)
        )
        t0 = time.perf_counter()
        results: list[dict[str, Any]] = run_eval(
            folder,
            sae=sae_dir,
            systems=args.systems.split(",") if args.systems else DEFAULT_SYSTEMS,
            out_dir=out / folder.name,
            cache_dir=cache,
        )
        r0 = results[0]
        print(f"{r0['dataset']}: evaluated in {time.perf_counter() - t0:.0f}s", flush=True)
        summary["datasets"][r0["dataset"]] = {
            "source": name,
            "folder": str(folder),
            "n_docs": r0["n_docs"],
            "n_queries": r0["n_queries"],
            "sae": str(sae_dir),
            "fit": asdict(plan),
            "results": str(out / folder.name / "results.json"),
        }
        sections.append(
            f"### {r0['dataset']} ({r0['n_docs']} docs, {r0['n_queries']} queries)\n\n"
            f"{table(results)}\n"
        )
    if not args.quick and not args.render_only:
        run([sys.executable, "benchmarks/bench_training.py"])
        bench_index = [sys.executable, "benchmarks/bench_index.py", "--out", str(out)]
        run(bench_index + (["--sae", str(saes["scifact"])] if "scifact" in saes else []))
    tables = "\n".join(sections)  # what BENCHMARKS.md shows; the speed reports stay in their files
    if not args.quick:
        # bench_training writes to benchmarks/results whatever --out is.
        for extra in (REPO / "benchmarks" / "results" / "training.md", out / "index.md"):
            if extra.is_file():
                sections.append(extra.read_text())
    body = "\n".join(sections)
    (out / "summary.md").write_text(body)
    if not args.render_only:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    bench = REPO / "BENCHMARKS.md"
    if not args.quick and bench.is_file():
        text = bench.read_text()
        if MARK_START in text and MARK_END in text:
            head, rest = text.split(MARK_START, 1)
            _, tail = rest.split(MARK_END, 1)
            bench.write_text(f"{head}{MARK_START}\n{tables}\n{MARK_END}{tail}")
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
