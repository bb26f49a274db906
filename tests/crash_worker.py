"""Child processes and shared harness of the reliability tests and benchmark (issue 8).

As a script it runs the ``latentlex`` CLI and announces every store write on stdout, so that a
parent can SIGKILL it at a chosen write and run the same command again::

    python tests/crash_worker.py index --corpus c.jsonl --sae SAE --store DIR --quiet

Every :meth:`EdgeStore.upsert` prints ``UPSERT-BEGIN <n> <points>`` before the engine write and
``UPSERT-END <n> <points>`` once it returned (acknowledged and flushed), ``<n>`` counting from 1;
``$LATENTLEX_TEST_PAUSE`` seconds of sleep follow each acknowledged write. Memory lines (KiB):
``PEAK-BEFORE-FIRST-WRITE`` (model loaded, corpus read, first batch encoded), ``RSS-END`` and
``RUSAGE`` (peak RSS); the last line is ``EXIT <status>`` (the CLI's).

``python tests/crash_worker.py untrusted DIR`` loads every case folder under ``DIR`` through each
SAE entry point and prints one JSON line of outcomes, seconds and peak-RSS growth.

The parent side lives here too (:class:`Worker`, :func:`synthetic_corpus`, :func:`hammer_threads`,
:func:`hammer_asyncio`, :func:`make_untrusted_cases`), so tests and benchmark measure alike.
"""

from __future__ import annotations

import json
import os
import queue
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))

WORDS = [
    "quokka",
    "tapir",
    "otter",
    "lemur",
    "heron",
    "falcon",
    "cedar",
    "maple",
    "birch",
    "willow",
    "river",
    "canyon",
    "glacier",
    "delta",
    "harbor",
    "market",
    "ledger",
    "invoice",
    "tariff",
    "bond",
    "equity",
    "yield",
    "protein",
    "enzyme",
    "neuron",
    "synapse",
    "kernel",
    "compiler",
    "parser",
    "socket",
    "packet",
    "router",
    "cipher",
    "vector",
    "matrix",
    "tensor",
    "gradient",
    "lattice",
    "prism",
    "violin",
    "cello",
    "sonata",
    "opera",
    "ballad",
    "mural",
    "fresco",
    "sculpture",
    "pottery",
    "loom",
    "saddle",
    "anchor",
    "beacon",
]


def synthetic_corpus(path: Path, n: int, seed: int = 0) -> dict[str, str]:
    """Write ``n`` short BEIR-style documents to ``path`` (jsonl); returns ``{id: text}``."""
    rng = random.Random(seed)
    docs: dict[str, str] = {}
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            words = rng.choices(WORDS, k=rng.randint(6, 14))
            text = f"Document {i}: " + " ".join(words) + "."
            doc_id = f"doc-{i:06d}"
            docs[doc_id] = text
            meta = {"n": i, "group": i % 7}
            f.write(json.dumps({"_id": doc_id, "text": text, "metadata": meta}) + "\n")
    return docs


class Worker:
    """A child running this script; its stdout lines are read by a thread.

    Args:
        args: CLI arguments (``["index", "--corpus", ...]``).
        threads: torch threads in the child (1 is fastest on a shared, loaded CPU).
        pause: seconds the child sleeps after each acknowledged write.
    """

    def __init__(self, args: list[str], *, threads: int = 1, pause: float = 0.0) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        env["LATENTLEX_TEST_THREADS"] = str(threads)
        env["LATENTLEX_TEST_PAUSE"] = str(pause)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "core"), env.get("PYTHONPATH", "")])
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._err: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._err.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def wait_for(self, prefix: str, timeout: float) -> str:
        """Read lines until one starts with ``prefix``; returns it.

        Raises:
            TimeoutError: not seen in ``timeout`` seconds, or the child ended first.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {prefix!r} within {timeout} s; stderr:\n{self.stderr}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise TimeoutError(f"child ended before {prefix!r}; stderr:\n{self.stderr}")
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)

    def finish(self, timeout: float) -> int:
        """Wait for the child to exit; returns its status (all stdout lines are in ``lines``)."""
        rc = self.proc.wait(timeout=timeout)
        while True:
            try:
                line = self._queue.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return rc

    @property
    def acknowledged(self) -> int:
        """Points of the writes announced as returned (``UPSERT-END``) so far."""
        return sum(int(x.split()[2]) for x in self.lines if x.startswith("UPSERT-END"))

    def reported_mib(self, prefix: str) -> float | None:
        """A memory figure the child reported in KiB (``RUSAGE``: peak RSS, ``RSS-END``: RSS at
        exit, ``PEAK-BEFORE-FIRST-WRITE``: peak RSS before the first write), in MiB."""
        for line in self.lines:
            if line.startswith(prefix + " "):
                kib = int(line.split()[1])
                return kib / 1024 if kib >= 0 else None
        return None

    @property
    def peak_rss_mib(self) -> float | None:
        """The child's peak RSS, once it reported it."""
        return self.reported_mib("RUSAGE")


# --------------------------------------------------------------------------------- concurrency

QUERIES = ("quokka", "otters near the river delta", "", "cipher " * 40, "Document 7", "日本語")


def _new_stats(readers: int) -> dict[str, Any]:
    return {
        "readers": readers,
        "searches": 0,
        "short_answers": 0,
        "errors": 0,
        "error_kinds": {},
        "writes": 0,
        "deletes": 0,
    }


def _error(stats: dict[str, Any], e: BaseException) -> None:
    stats["errors"] += 1
    key = f"{type(e).__name__}: {str(e)[:120]}"
    stats["error_kinds"][key] = stats["error_kinds"].get(key, 0) + 1


def hammer_threads(index: Any, seconds: float, readers: int = 8, k: int = 5) -> dict[str, Any]:
    """``readers`` threads search while one thread adds and deletes, for ``seconds``.

    The index must hold at least ``k`` documents that the writer never touches, so that every
    answer has exactly ``k`` hits (a shorter one counts as ``short_answers``).
    """
    stats = _new_stats(readers)
    lock = threading.Lock()
    done = threading.Event()

    def reader(j: int) -> None:
        i = j
        while not done.is_set():
            try:
                hits = index.search(QUERIES[i % len(QUERIES)], k)
                with lock:
                    stats["searches"] += 1
                    stats["short_answers"] += len(hits) != k
            except Exception as e:  # counted, reported by the caller
                with lock:
                    _error(stats, e)
            i += 1

    def writer() -> None:
        prev: list[str] | None = None
        n = 0
        while not done.is_set():
            try:
                ids = [f"volatile-{n}-{j}" for j in range(4)]
                index.add([f"volatile {n} {j}: herons and cedars" for j in range(4)], ids=ids)
                with lock:
                    stats["writes"] += 1
                if prev:
                    index.delete(prev)
                    with lock:
                        stats["deletes"] += 1
                prev, n = ids, n + 1
            except Exception as e:
                with lock:
                    _error(stats, e)

    threads = [threading.Thread(target=reader, args=(j,)) for j in range(readers)]
    threads.append(threading.Thread(target=writer))
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    done.set()
    for t in threads:
        t.join(timeout=120)
    stats["seconds"] = time.perf_counter() - start
    stats["hung_threads"] = sum(t.is_alive() for t in threads)
    stats["searches_per_s"] = stats["searches"] / stats["seconds"]
    return stats


def hammer_asyncio(index: Any, seconds: float, readers: int = 8, k: int = 5) -> dict[str, Any]:
    """The asyncio twin of :func:`hammer_threads`: ``readers`` tasks on ``asearch`` while a task
    runs ``aadd``/``adelete``."""
    import asyncio

    stats = _new_stats(readers)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        async def reader(j: int) -> None:
            i = j
            while loop.time() < deadline:
                try:
                    hits = await index.asearch(QUERIES[i % len(QUERIES)], k)
                    stats["searches"] += 1
                    stats["short_answers"] += len(hits) != k
                except Exception as e:
                    _error(stats, e)
                i += 1

        async def writer() -> None:
            prev: list[str] | None = None
            n = 0
            while loop.time() < deadline:
                try:
                    ids = [f"avolatile-{n}-{j}" for j in range(4)]
                    texts = [f"async volatile {n} {j}: falcons" for j in range(4)]
                    await index.aadd(texts, ids=ids)
                    stats["writes"] += 1
                    if prev:
                        await index.adelete(prev)
                        stats["deletes"] += 1
                    prev, n = ids, n + 1
                except Exception as e:
                    _error(stats, e)

        await asyncio.wait_for(
            asyncio.gather(*(reader(j) for j in range(readers)), writer()), seconds + 120
        )

    start = time.perf_counter()
    asyncio.run(run())
    stats["seconds"] = time.perf_counter() - start
    stats["searches_per_s"] = stats["searches"] / stats["seconds"]
    return stats


# ------------------------------------------------------------------------------ untrusted files

ENTRY_POINTS = ("SparseAutoencoder.load", "load_sae", "load_folder", "from_pretrained")
#: case -> what every entry point must do: refuse, or load the folder's own safetensors.
UNTRUSTED_EXPECT = {
    "width_1e9": "refuse",
    "sparsify_width_1e9": "refuse",
    "max_dims_header_only": "refuse",
    "header_length_bomb": "refuse",
    "huge_cfg_json": "refuse",
    "pickle_only": "refuse",
    "pickle_beside_safetensors": "load",
    "nan_weights": "refuse",
    "int_weights": "refuse",
    "shape_disagrees": "refuse",
    "path_keys_in_cfg": "load",
    "weights_symlink_dev_zero": "refuse",
    "cfg_symlink_dev_urandom": "refuse",
    "subfolder_symlink_escape": "refuse",
    "subfolder_dotdot": "refuse",
}


#: cases that pass a subfolder (only ``from_pretrained`` takes one)
SUBFOLDER_CASES = {"subfolder_symlink_escape": "sub", "subfolder_dotdot": "../outside"}


class _Evil:
    """Unpickling this creates the file ``path`` (proof that a pickle was executed)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def _safetensors_header_only(path: Path, tensors: dict[str, tuple[list[int], str]]) -> None:
    """A safetensors file whose header claims ``tensors`` but that holds no data at all."""
    header: dict[str, Any] = {}
    offset = 0
    for name, (shape, dtype) in tensors.items():
        size = 4
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)


def make_untrusted_cases(root: Path, good: Path) -> Path:
    """Build hostile SAE folders under ``root/cases`` from a good SAE folder ``good``.

    Returns the cases folder; ``root/PWNED`` appears if any pickle is ever executed.
    """
    import pickle
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    cases = root / "cases"
    cases.mkdir(parents=True)
    cfg = json.loads((good / "cfg.json").read_text())
    weights = good / "sae.safetensors"
    evil = pickle.dumps(_Evil(str(root / "PWNED")))

    def folder(name: str, cfg_: dict[str, Any] | None = None, with_weights: bool = True) -> Path:
        f = cases / name
        f.mkdir()
        (f / "cfg.json").write_text(json.dumps(cfg if cfg_ is None else cfg_))
        if with_weights:
            shutil.copy(weights, f / "sae.safetensors")
        return f

    folder("width_1e9", {**cfg, "width": 10**9})
    f = folder("sparsify_width_1e9", {"d_in": cfg["d_in"], "num_latents": 10**9, "k": 8}, False)
    shutil.copy(weights, f / "sae.safetensors")
    big = {**cfg, "d_in": 16384, "width": 2**20, "backbone_dim": 16384}
    f = folder("max_dims_header_only", big, False)
    _safetensors_header_only(
        f / "sae.safetensors",
        {
            "W_enc": ([2**20, 16384], "F32"),
            "b_enc": ([2**20], "F32"),
            "W_dec": ([2**20, 16384], "F32"),
            "b_dec": ([16384], "F32"),
        },
    )
    f = folder("header_length_bomb", with_weights=False)
    (f / "sae.safetensors").write_bytes((2**62).to_bytes(8, "little") + b"{}")
    folder("huge_cfg_json", {**cfg, "pad": "x" * (32 << 20)})
    f = folder("pickle_only", with_weights=False)
    for name in ("sae.bin", "sae.pt", "pytorch_model.bin"):
        (f / name).write_bytes(evil)
    f = folder("pickle_beside_safetensors")
    (f / "sae.pt").write_bytes(evil)
    tensors = load_file(str(weights))
    nan = dict(tensors)
    nan["W_enc"] = nan["W_enc"].clone()
    nan["W_enc"][0, 0] = float("nan")
    f = folder("nan_weights", with_weights=False)
    save_file(nan, str(f / "sae.safetensors"))
    f = folder("int_weights", with_weights=False)
    save_file({k: v.to(torch.int32) for k, v in tensors.items()}, str(f / "sae.safetensors"))
    folder("shape_disagrees", {**cfg, "width": cfg["width"] * 2})
    outside = root / "outside"
    outside.mkdir()
    other = dict(tensors)
    other["b_enc"] = other["b_enc"] + 1.0
    save_file(other, str(outside / "sae.safetensors"))
    (outside / "cfg.json").write_text(json.dumps(cfg))
    (outside / "sae.bin").write_bytes(evil)
    folder(
        "path_keys_in_cfg",
        {
            **cfg,
            "weights": "../../outside/sae.safetensors",
            "weights_path": str(outside / "sae.safetensors"),
            "labels_path": "/etc/passwd",
            "checkpoint": "../../outside/sae.bin",
        },
    )
    f = folder("weights_symlink_dev_zero", with_weights=False)
    (f / "sae.safetensors").symlink_to("/dev/zero")
    f = cases / "cfg_symlink_dev_urandom"
    f.mkdir()
    (f / "cfg.json").symlink_to("/dev/urandom")
    shutil.copy(weights, f / "sae.safetensors")
    f = cases / "subfolder_symlink_escape"
    f.mkdir()
    (f / "sub").symlink_to(outside)
    (cases / "subfolder_dotdot").mkdir()
    return cases


def _load_case(entry: str, folder: Path) -> Any:
    from latentlex.hub import from_pretrained
    from latentlex.loading import load_folder
    from latentlex.sae import SparseAutoencoder
    from latentlex.terms import load_sae

    sub = SUBFOLDER_CASES.get(folder.name)
    if sub is not None:
        return from_pretrained(str(folder), subfolder=sub, backbone="all-MiniLM-L6-v2")
    if entry == "SparseAutoencoder.load":
        return SparseAutoencoder.load(folder)
    if entry == "load_sae":
        return load_sae(folder)
    if entry == "load_folder":
        return load_folder(folder, backbone="all-MiniLM-L6-v2")
    return from_pretrained(str(folder), backbone="all-MiniLM-L6-v2")


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux ``clear_refs``); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def probe_untrusted(cases: Path) -> dict[str, Any]:
    """Load every case through every entry point (in this process); time and peak-RSS growth.

    The growth of one attempt is its peak RSS (``VmHWM``, reset before each attempt) minus the
    RSS before it; without ``/proc`` it falls back to the growth of ``ru_maxrss``.
    """
    import torch  # noqa: F401  (imported before the baseline)
    from latentlex.errors import LatentLexError
    from latentlex.sae import SparseAutoencoder

    own = SparseAutoencoder.load(cases.parent / "outside")  # warm-up, and a fingerprint to tell
    outside_fp = own.fingerprint()
    exact = _reset_peak() and _status_kib("VmHWM") is not None
    out: dict[str, Any] = {
        "baseline_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_measure": "VmHWM reset per attempt" if exact else "ru_maxrss growth",
        "cases": [],
    }
    for folder in sorted(p for p in cases.iterdir() if p.is_dir()):
        entries = ("from_pretrained",) if folder.name in SUBFOLDER_CASES else ENTRY_POINTS
        for entry in entries:
            if exact:
                _reset_peak()
                before = _status_kib("VmRSS") or 0
            else:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            start = time.perf_counter()
            row: dict[str, Any] = {"case": folder.name, "entry": entry}
            try:
                sae = _load_case(entry, folder)
            except LatentLexError as e:
                row.update(outcome="refused", error=type(e).__name__, message=str(e)[:300])
            except Exception as e:
                row.update(outcome="crashed", error=type(e).__name__, message=str(e)[:300])
            else:
                row.update(outcome="loaded", loaded_outside=sae.fingerprint() == outside_fp)
                del sae
            row["seconds"] = time.perf_counter() - start
            after = (
                _status_kib("VmHWM")
                if exact
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            )
            row["rss_growth_mib"] = max(0, (after or 0) - before) / 1024
            out["cases"].append(row)
    out["pickle_executed"] = (cases.parent / "PWNED").exists()
    return out


def run_untrusted_probe(cases: Path, timeout: float = 600) -> dict[str, Any]:
    """:func:`probe_untrusted` in a fresh child (a clean peak-RSS baseline)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "core"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "untrusted", str(cases)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"untrusted probe failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------------------- child side


def _announce(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    import torch

    torch.set_num_threads(int(os.environ.get("LATENTLEX_TEST_THREADS", "1")))

    from latentlex.cli import main as cli_main
    from latentlex.store.edge import EdgeStore

    original = EdgeStore.upsert
    count = [0]

    pause = float(os.environ.get("LATENTLEX_TEST_PAUSE", "0") or 0)

    def upsert(self: EdgeStore, points: Any) -> None:
        count[0] += 1
        n = len(points)
        if count[0] == 1:  # model loaded, corpus read, first batch encoded
            _announce(f"PEAK-BEFORE-FIRST-WRITE {_status_kib('VmHWM') or -1}")
        _announce(f"UPSERT-BEGIN {count[0]} {n}")
        original(self, points)
        _announce(f"UPSERT-END {count[0]} {n}")
        if pause:
            time.sleep(pause)

    EdgeStore.upsert = upsert  # type: ignore[method-assign]
    status = cli_main(argv)
    _announce(f"RSS-END {_status_kib('VmRSS') or -1}")
    _announce(f"RUSAGE {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
    _announce(f"EXIT {status}")
    return status


if __name__ == "__main__":
    if sys.argv[1:2] == ["untrusted"]:
        print(json.dumps(probe_untrusted(Path(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
