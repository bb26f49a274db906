"""Reliability figures at full size (issue 8): crash safety, concurrency, memory, bounds.

Measured here, on the embedded (qdrant-edge) store with a tiny token-mode SAE:

- crash safety: ``latentlex index`` of 5,000 synthetic documents SIGKILLed at three random points
  (mid-write or mid-encoding), re-run each time; then exactly N points, no duplicates, every text
  and content hash intact, every acknowledged write durable, "resumed" reported;
- concurrency: 8 threads (then 8 asyncio tasks) searching for 60 s while another adds and deletes:
  searches/s, errors, short answers;
- memory: peak RSS of ``latentlex index`` over 10,000 and 50,000 synthetic documents;
- bounds: ``k = 10,000`` and a 100,000-character query against the 50,000-document collection;
- payload floats: how many random float metadata values come back from qdrant-edge unchanged;
- one big document (issue 15): peak RSS and time of ``latentlex index`` on one 20 MB document
  in a fresh process, against a one-line document (and, with ``--before REV``, the old code);
- untrusted input (issue 15): ``tests/test_untrusted_input.py`` with 400 fuzzed corpora, and the
  untrusted-file parts of ``tests/test_reliability.py``: probes per kind, failures, tracebacks;
- the default reliability and fuzz tests (``pytest -s``), whose printed figures are collected.

    python benchmarks/bench_reliability.py                 # ~20 min on 2 loaded cores
    python benchmarks/bench_reliability.py --quick         # smaller sizes, ~6 min

Writes ``benchmarks/results/reliability.json`` and ``reliability.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "core"))
sys.path.insert(0, str(REPO / "tests"))
CACHE = REPO / ".cache" / "bench"
RESULTS = REPO / "benchmarks" / "results"
LIMIT_SMALL = REPO / "examples" / "data" / "limit-small"
TEST_FILES = ("tests/test_reliability.py", "tests/test_fuzz.py")

from crash_worker import (  # noqa: E402  (tests/ on the path first)
    Worker,
    hammer_asyncio,
    hammer_threads,
    synthetic_corpus,
)


def say(msg: str) -> None:
    print(msg, flush=True)


def tiny_sae() -> Path:
    """The tests' tiny SAE (width 512, k 8, LIMIT-small, 4 epochs), fitted once and cached."""
    out = CACHE / "reliability-tiny-sae"
    if (out / "sae.safetensors").is_file():
        return out
    from latentlex.backbone import Backbone
    from latentlex.corpus import read_corpus
    from latentlex.fit import fit_sae

    texts = [d.text for d in read_corpus(LIMIT_SMALL)]
    fit_sae(texts, out, backbone=Backbone(device="cpu"), width=512, k=8, epochs=4, progress=False)
    return out


def index_args(corpus: Path, sae: Path, store: Path, batch: int) -> list[str]:
    where = ["--corpus", str(corpus), "--sae", str(sae), "--store", str(store)]
    return ["index", *where, "--batch-size", str(batch), "--quiet"]


# ------------------------------------------------------------------------------------ crash


def bench_crash(sae: Path, work: Path, n: int, kills: int, seed: int = 0) -> dict[str, Any]:
    from latentlex.index import LatentIndex, content_hash
    from latentlex.terms import LatentTermEncoder

    corpus = work / f"crash-{n}.jsonl"
    docs = synthetic_corpus(corpus, n, seed=seed)
    store = work / f"crash-store-{n}"
    batch = 64
    args = index_args(corpus, sae, store, batch)
    writes = -(-n // batch)
    rng = random.Random(seed)
    rounds: list[dict[str, Any]] = []
    encoder = LatentTermEncoder(sae)
    present = 0
    for r in range(kills):
        left = -(-(n - present) // batch)
        if left < 3:
            break
        kill_at = rng.randint(2, max(2, left - 1))
        delay = rng.uniform(0.0, 0.03)
        start = time.perf_counter()
        worker = Worker(args)
        worker.wait_for(f"UPSERT-BEGIN {kill_at} ", timeout=3600)
        time.sleep(delay)  # land anywhere in the write or the next batch's encoding
        worker.kill()
        seconds = time.perf_counter() - start
        with LatentIndex(encoder, store) as index:
            after = index.count()
            recs = index.get(list(docs))
            intact = all(
                x.text == docs[x.doc_id] and x.hash == content_hash(x.text, x.metadata)
                for x in recs
            )
        acked = worker.acknowledged
        rounds.append(
            {
                "round": r + 1,
                "killed_at_write_of_run": kill_at,
                "kill_delay_ms": round(delay * 1000, 1),
                "points_before_run": present,
                "acknowledged_in_run": acked,
                "points_after_kill": after,
                "acknowledged_durable": after >= present + acked,
                "at_most_the_write_in_flight_extra": after <= present + acked + batch,
                "texts_intact": intact and len(recs) == after,
                "seconds": round(seconds, 1),
            }
        )
        say(f"  crash round {r + 1}: {rounds[-1]}")
        present = after
    start = time.perf_counter()
    final = Worker(args)
    rc = final.finish(timeout=7200)
    seconds = time.perf_counter() - start
    out = "\n".join(final.lines)
    with LatentIndex(encoder, store) as index:
        count = index.count()
        recs = index.get(list(docs))
    ok = (
        rc == 0
        and count == n
        and len(recs) == n
        and len({x.doc_id for x in recs}) == n
        and all(
            x.text == docs[x.doc_id] and x.hash == content_hash(x.text, x.metadata) for x in recs
        )
    )
    return {
        "docs": n,
        "batch_size": batch,
        "writes_per_full_run": writes,
        "kills": len(rounds),
        "rounds": rounds,
        "final_exit_status": rc,
        "final_resumed_line": f"resumed: {present} documents" in out,
        "final_points": count,
        "duplicates": len(recs) - len({x.doc_id for x in recs}),
        "all_texts_and_hashes_intact": ok,
        "final_run_seconds": round(seconds, 1),
    }


# ------------------------------------------------------------------------------ concurrency


def bench_concurrency(sae: Path, work: Path, seconds: float) -> dict[str, Any]:
    import torch
    from latentlex.index import LatentIndex
    from latentlex.terms import LatentTermEncoder

    torch.set_num_threads(1)
    encoder = LatentTermEncoder(sae)
    docs = synthetic_corpus(work / "conc.jsonl", 1000, seed=3)
    out: dict[str, Any] = {}
    with LatentIndex(encoder, work / "conc-store") as index:
        index.add(list(docs.values()), ids=list(docs))
        for name, fn in (("threads", hammer_threads), ("asyncio", hammer_asyncio)):
            before = index.count()
            stats = fn(index, seconds=seconds, readers=8, k=5)
            stats["count_consistent"] = index.count() == before + 4
            stats["searches_per_s"] = round(stats["searches_per_s"], 2)
            stats["seconds"] = round(stats["seconds"], 1)
            say(f"  {name}: {stats}")
            out[name] = stats
        # a second opener of the same path, in this process (other processes: see crash)
        from latentlex.errors import StoreError

        try:
            LatentIndex(encoder, work / "conc-store")
        except StoreError as e:
            out["second_opener"] = f"StoreError: {str(e)[:160]}"
        else:  # pragma: no cover - a regression
            out["second_opener"] = "NOT REFUSED"
    return out


# ----------------------------------------------------------------------------------- memory


def bench_memory(sae: Path, work: Path, sizes: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": []}
    for n in sizes:
        corpus = work / f"mem-{n}.jsonl"
        synthetic_corpus(corpus, n, seed=7)
        store = work / f"mem-store-{n}"
        start = time.perf_counter()
        worker = Worker(index_args(corpus, sae, store, 64))
        rc = worker.finish(timeout=7200)
        seconds = time.perf_counter() - start
        run = {
            "docs": n,
            "exit_status": rc,
            "peak_rss_mib": round(worker.peak_rss_mib or -1, 1),
            "peak_before_first_write_mib": round(
                worker.reported_mib("PEAK-BEFORE-FIRST-WRITE") or -1, 1
            ),
            "rss_at_exit_mib": round(worker.reported_mib("RSS-END") or -1, 1),
            "seconds": round(seconds, 1),
            "docs_per_s": round(n / seconds, 1),
            "store_mib": round(
                sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 2**20, 1
            ),
        }
        say(f"  memory: {run}")
        out["runs"].append(run)
        out["largest_store"] = str(store)
    runs = out["runs"]
    if len(runs) >= 2:
        a, b = runs[0], runs[-1]
        per_doc = (b["peak_rss_mib"] - a["peak_rss_mib"]) / (b["docs"] - a["docs"]) * 2**20
        out["rss_growth_bytes_per_doc"] = round(per_doc, 1)
        out["extrapolated_peak_rss_mib_at_1M_docs"] = round(
            b["peak_rss_mib"] + per_doc * (1_000_000 - b["docs"]) / 2**20, 0
        )
    out["under_3_gib"] = all(r["peak_rss_mib"] < 3 * 1024 for r in runs)
    return out


# ----------------------------------------------------------------------------------- bounds


def bench_bounds(sae: Path, store: Path) -> dict[str, Any]:
    import torch
    from latentlex.index import LatentIndex
    from latentlex.terms import LatentTermEncoder

    torch.set_num_threads(1)
    encoder = LatentTermEncoder(sae)
    query = ("tapir quokka " * 8000)[:100_000]
    out: dict[str, Any] = {}
    with LatentIndex(encoder, store) as index:
        out["collection_points"] = index.count()
        for name, q, k in (
            ("k=10000", "quokka", 10_000),
            ("100k-char query, k=10", query, 10),
            ("100k-char query, k=10000", query, 10_000),
        ):
            start = time.perf_counter()
            hits = index.search(q, k)
            out[name] = {"seconds": round(time.perf_counter() - start, 3), "hits": len(hits)}
        start = time.perf_counter()
        index.explain(query, index.search(query, 1)[0].doc_id)
        out["explain 100k-char query"] = {"seconds": round(time.perf_counter() - start, 3)}
    say(f"  bounds: {out}")
    return out


def bench_float_payloads(n: int = 4000) -> dict[str, Any]:
    """Random float metadata through qdrant-edge: how many come back bit-identical."""
    import numpy as np
    from latentlex.store import CollectionSpec, EdgeStore, PointRecord

    rng = random.Random(0)
    values = [rng.uniform(-1e6, 1e6) for _ in range(n // 2)]
    values += [rng.random() * 10.0 ** rng.randint(-300, 300) for _ in range(n - n // 2)]
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeStore(tmp)
        store.open(CollectionSpec("f", 2, {"format_version": 1}))
        pts = [
            PointRecord(f"d{i}", np.array([1.0, 0.0]), None, "t", {"v": v})
            for i, v in enumerate(values)
        ]
        store.upsert(pts)
        got = store.get([p.doc_id for p in pts])
        store.close()
    back = [g.metadata["v"] for g in got]
    diffs = [abs(a - b) / max(abs(a), 1e-300) for a, b in zip(values, back, strict=True) if a != b]
    out = {
        "values": n,
        "bit_identical": n - len(diffs),
        "changed": len(diffs),
        "max_relative_change": max(diffs, default=0.0),
    }
    say(f"  float payloads: {out}")
    return out


# ------------------------------------------------------------------------------ the tests


def run_default_tests() -> dict[str, Any]:
    """The default reliability + fuzz tests, with their printed figures."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *TEST_FILES, "-s", "-q", "-p", "no:cacheprovider", "-rxX"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    text = proc.stdout
    figures = dict(re.findall(r"\[reliability\] ([^:]+): (.*)", text))
    fuzz = re.search(r"^fuzz: .*$", text, re.MULTILINE)
    summary = text.strip().splitlines()[-1] if text.strip() else proc.stderr[-500:]
    xfails = re.findall(r"^XFAIL (\S+) - (.*)$", text, re.MULTILINE)
    return {
        "exit_status": proc.returncode,
        "summary": summary,
        "seconds": round(time.perf_counter() - start, 1),
        "figures": figures,
        "fuzz": fuzz.group(0) if fuzz else None,
        "known_bugs": [{"test": t, "reason": r} for t, r in xfails],
    }


# ----------------------------------------------------------------------- untrusted input

_INDEX_ONE = """
import json, resource, sys, time
start = time.perf_counter()
from latentlex.cli import main
rc = main(["index", "--corpus", sys.argv[1], "--sae", sys.argv[2], "--store", sys.argv[3],
           "--quiet"])
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({"rc": rc, "seconds": round(time.perf_counter() - start, 1),
                  "peak_rss_mib": round(int(status["VmHWM"].split()[0]) / 1024),
                  "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def _index_one(core: Path, corpus: Path, sae: Path, store: Path) -> dict[str, Any]:
    """``latentlex index`` of ``corpus`` in a fresh process running the code under ``core``:
    exit status, wall seconds (start-up included) and peak RSS: ``VmHWM``, the process's own
    high-water mark (``ru_maxrss`` is reported too, but on Linux a child started by a large
    parent inherits the parent's figure at fork, so it is a floor, not the child's peak)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(core))
    proc = subprocess.run(
        [sys.executable, "-c", _INDEX_ONE, str(corpus), str(sae), str(store)],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        return {"error": (proc.stderr or proc.stdout)[-500:]}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def bench_big_document(sae: Path, work: Path, mb: int, before: str | None = None) -> dict[str, Any]:
    """Peak RSS and time of indexing one ``mb``-MB document, against a one-line document (the
    process's own baseline); with ``before``, the same with the code of that git revision."""
    words = ("quokka", "tapir", "otter", "glacier", "bassoon", "river", "island", "reed")
    text = " ".join(words[i % len(words)] + str(i % 997) for i in range(mb * 200_000))
    big = work / "big.jsonl"
    big.write_text(json.dumps({"_id": "big", "text": text[: mb * 1_000_000]}) + "\n")
    small = work / "small.jsonl"
    small.write_text(json.dumps({"_id": "small", "text": "one quokka"}) + "\n")
    cores = {"now": REPO / "core"}
    if before:
        old = work / "before"
        old.mkdir()
        archive = subprocess.run(
            ["git", "archive", before, "core/latentlex"], cwd=REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        cores[f"before ({before})"] = old / "core"
    out: dict[str, Any] = {"document_mb": round(big.stat().st_size / 1e6, 1)}
    for name, core in cores.items():
        for label, corpus in (("one-line document", small), (f"{mb} MB document", big)):
            store = work / f"store-{len(out)}"
            run = _index_one(core, corpus, sae, store)
            say(f"  {name}, {label}: {run}")
            out[f"{name}: {label}"] = run
    return out


def run_untrusted_tests(fuzz_corpora: int) -> dict[str, Any]:
    """``tests/test_untrusted_input.py`` (issue 15) with ``fuzz_corpora`` generated corpora:
    probes run per kind, failures, and the figures it prints."""
    start = time.perf_counter()
    env = dict(os.environ, LATENTLEX_FUZZ_CORPORA=str(fuzz_corpora))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/test_untrusted_input.py",
            "tests/test_reliability.py",
            "-k",
            "not sigkill and not threads and not asyncio",
            "-s",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=7200,
        env=env,
    )
    text = proc.stdout
    # the short summary (-rA): one "OUTCOME tests/file.py::test[params]" line per test
    outcomes = re.findall(r"^(PASSED|FAILED|ERROR|SKIPPED) tests/\S+?::(\w+)", text, re.MULTILINE)
    per_test: dict[str, dict[str, int]] = {}
    for outcome, name in outcomes:
        per_test.setdefault(name, {}).setdefault(outcome, 0)
        per_test[name][outcome] += 1
    return {
        "exit_status": proc.returncode,
        "summary": text.strip().splitlines()[-1] if text.strip() else proc.stderr[-500:],
        "seconds": round(time.perf_counter() - start, 1),
        "tracebacks_in_output": text.count("Traceback (most recent call last)"),
        "figures": re.findall(r"\[untrusted\] (.*)", text),
        "per_test": per_test,
    }


# ------------------------------------------------------------------------------ report


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# Reliability benchmark",
        "",
        f"`{res['command']}` — {res['machine']}. Load average before/after: "
        f"{res['load_before']} / {res['load_after']} (other processes share the CPU).",
        "",
    ]
    for run in res.get("partial_runs", []):
        lines += [
            f"Updated by `{run['command']}` (load {run['load_before']} / {run['load_after']}).",
            "",
        ]
    c = res.get("crash")
    if c:
        lines += [
            f"## Crash safety ({c['docs']:,} docs, SIGKILL x{c['kills']}, then resume)",
            "",
            "| round | killed at write | delay ms | points before | acknowledged | points after kill | acknowledged durable | texts intact |",
            "|---:|---:|---:|---:|---:|---:|:-:|:-:|",
        ]
        for r in c["rounds"]:
            lines.append(
                f"| {r['round']} | {r['killed_at_write_of_run']} | {r['kill_delay_ms']} | "
                f"{r['points_before_run']:,} | {r['acknowledged_in_run']:,} | "
                f"{r['points_after_kill']:,} | {r['acknowledged_durable']} | {r['texts_intact']} |"
            )
        lines += [
            "",
            f"Final run: exit {c['final_exit_status']}, reported resume {c['final_resumed_line']}, "
            f"{c['final_points']:,} points, {c['duplicates']} duplicates, all texts and hashes "
            f"intact: {c['all_texts_and_hashes_intact']} ({c['final_run_seconds']} s).",
            "",
        ]
    k = res.get("concurrency")
    if k:
        lines += [
            "## Concurrency (8 searchers + 1 writer adding and deleting)",
            "",
            "| variant | seconds | searches | searches/s | errors | short answers | writes | deletes |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name in ("threads", "asyncio"):
            s = k[name]
            lines.append(
                f"| {name} | {s['seconds']} | {s['searches']:,} | {s['searches_per_s']} | "
                f"{s['errors']} | {s['short_answers']} | {s['writes']} | {s['deletes']} |"
            )
        lines += ["", f"Second opener of the same path: {k['second_opener']}", ""]
    m = res.get("memory")
    if m:
        lines += [
            "## Memory of `latentlex index` (peak RSS of the process)",
            "",
            "| docs | peak RSS MiB | peak before 1st write MiB | RSS at exit MiB | seconds | docs/s | store MiB |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in m["runs"]:
            lines.append(
                f"| {r['docs']:,} | {r['peak_rss_mib']:,} | {r['peak_before_first_write_mib']:,} | "
                f"{r['rss_at_exit_mib']:,} | {r['seconds']} | {r['docs_per_s']} | {r['store_mib']} |"
            )
        if "rss_growth_bytes_per_doc" in m:
            lines += [
                "",
                f"Growth {m['rss_growth_bytes_per_doc']} bytes/doc; extrapolated peak at 1M docs: "
                f"{m['extrapolated_peak_rss_mib_at_1M_docs']:,.0f} MiB. Under 3 GiB: {m['under_3_gib']}.",
            ]
        lines.append("")
    b = res.get("bounds")
    if b:
        lines += [f"## Bounds ({b['collection_points']:,}-point collection)", ""]
        lines += [f"- {k_}: {v}" for k_, v in b.items() if k_ != "collection_points"]
        lines.append("")
    f = res.get("float_payloads")
    if f:
        lines += [
            "## Float metadata through qdrant-edge",
            "",
            f"{f['bit_identical']:,} of {f['values']:,} random floats came back bit-identical; "
            f"{f['changed']:,} changed by at most {f['max_relative_change']:.2g} (relative).",
            "",
        ]
    big = res.get("big_document")
    if big:
        lines += [
            f"## One {big['document_mb']} MB document (`latentlex index`, fresh process)",
            "",
            "| code | corpus | exit | seconds | peak RSS MiB (VmHWM) | ru_maxrss MiB |",
            "|---|---|--:|--:|--:|--:|",
        ]
        for key, run in big.items():
            if key == "document_mb":
                continue
            code, _, corpus = key.partition(": ")
            lines.append(
                f"| {code} | {corpus} | {run.get('rc', 'x')} | {run.get('seconds', '-')} | "
                f"{run.get('peak_rss_mib', run.get('error', '-'))} | "
                f"{run.get('ru_maxrss_mib', '-')} |"
            )
        lines += [
            "",
            "ru_maxrss of a child started by this (large) process starts at the parent's figure "
            "on Linux: VmHWM is the child's own peak.",
            "",
        ]
    u = res.get("untrusted")
    if u:
        lines += [
            "## Untrusted input (`tests/test_untrusted_input.py` + untrusted parts of "
            "`tests/test_reliability.py`)",
            "",
            f"{u['summary']} ({u['seconds']} s); tracebacks printed: {u['tracebacks_in_output']}.",
            "",
        ]
        lines += [f"- {x}" for x in u["figures"]]
        lines += ["", "| test | passed | failed |", "|---|--:|--:|"]
        for name, counts in sorted(u["per_test"].items()):
            lines.append(
                f"| `{name}` | {counts.get('PASSED', 0)} | "
                f"{counts.get('FAILED', 0) + counts.get('ERROR', 0)} |"
            )
        lines.append("")
    t = res.get("tests")
    if t:
        lines += [
            "## Default tests (`pytest tests/test_reliability.py tests/test_fuzz.py -s`)",
            "",
            f"{t['summary']} ({t['seconds']} s).",
            "",
        ]
        if t["fuzz"]:
            lines += [f"- {t['fuzz']}"]
        lines += [f"- {k_}: {v}" for k_, v in t["figures"].items()]
        if t["known_bugs"]:
            lines += ["", "Known bugs (expected failures until the proposed fixes land):", ""]
            lines += [f"- `{x['test']}`: {x['reason']}" for x in t["known_bugs"]]
        lines.append("")
    return "\n".join(lines)


ALL_PARTS = ("crash", "concurrency", "memory", "bounds", "floats", "big", "untrusted", "tests")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (1,000 docs, 10 s, 10k)")
    p.add_argument("--crash-docs", type=int, default=5000)
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--seconds", type=float, default=60.0, help="concurrency run length")
    p.add_argument("--memory-docs", type=int, nargs="+", default=[10_000, 50_000])
    p.add_argument(
        "--only",
        nargs="+",
        default=list(ALL_PARTS),
    )
    p.add_argument("--big-mb", type=int, default=20, help="size of the one big document")
    p.add_argument(
        "--before", default=None, help="also index the big document with this git revision's code"
    )
    p.add_argument("--fuzz-corpora", type=int, default=400, help="generated corpora to index")
    args = p.parse_args()
    if args.quick:
        args.crash_docs, args.seconds, args.memory_docs = 1000, 10.0, [2_000, 10_000]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    res: dict[str, Any] = {
        "command": "python benchmarks/bench_reliability.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} (1 thread per process)",
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    sae = tiny_sae()
    with tempfile.TemporaryDirectory(prefix="latentlex-rel-") as tmp:
        work = Path(tmp)
        if "crash" in args.only:
            say(f"crash safety: {args.crash_docs} docs, {args.kills} kills")
            res["crash"] = bench_crash(sae, work, args.crash_docs, args.kills)
        if "concurrency" in args.only:
            say(f"concurrency: {args.seconds} s each")
            res["concurrency"] = bench_concurrency(sae, work, args.seconds)
        if "memory" in args.only:
            say(f"memory: {args.memory_docs}")
            res["memory"] = bench_memory(sae, work, args.memory_docs)
            if "bounds" in args.only:
                res["bounds"] = bench_bounds(sae, Path(res["memory"]["largest_store"]))
            res["memory"].pop("largest_store", None)
        if "floats" in args.only:
            res["float_payloads"] = bench_float_payloads()
        if "big" in args.only:
            say(f"one {args.big_mb} MB document")
            res["big_document"] = bench_big_document(sae, work, args.big_mb, args.before)
    if "untrusted" in args.only:
        say(f"untrusted input tests ({args.fuzz_corpora} fuzzed corpora)")
        res["untrusted"] = run_untrusted_tests(args.fuzz_corpora)
        say(f"  {res['untrusted']['summary']}")
    if "tests" in args.only:
        say("default tests (pytest -s)")
        res["tests"] = run_default_tests()
        say(f"  {res['tests']['summary']}")
    res["load_after"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous = RESULTS / "reliability.json"
    if set(args.only) != set(ALL_PARTS) and previous.is_file():
        # a partial run (--only) updates its own sections and keeps the others' figures
        kept = json.loads(previous.read_text())
        runs = kept.setdefault("partial_runs", [])
        runs.append({k: res[k] for k in ("command", "machine", "load_before", "load_after")})
        res = {**kept, **{k: v for k, v in res.items() if k not in runs[-1]}}
    (RESULTS / "reliability.json").write_text(json.dumps(res, indent=2) + "\n")
    (RESULTS / "reliability.md").write_text(markdown(res) + "\n")
    say(f"wrote {RESULTS / 'reliability.json'} and reliability.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
