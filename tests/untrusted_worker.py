"""Tampered SAE folders (issue 15) and a child process that loads each through every entry point.

``make_cases(root, good)`` builds hostile variants of a good SAE folder: links out of the
folder, FIFOs, deep or huge JSON, sparse weights files over and under the size cap, headers
that lie, configs that contradict themselves. ``run_probe(cases)`` loads every case through
``SparseAutoencoder.load``, ``load_sae``, ``load_folder`` and ``from_pretrained`` in a fresh
process and reports, per attempt, the outcome, the time and the peak-RSS growth (``VmHWM``,
reset before each attempt).

Run as ``python tests/untrusted_worker.py CASES_DIR`` it prints one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = ("SparseAutoencoder.load", "load_sae", "load_folder", "from_pretrained")

#: case -> "refuse", "load" (the folder's own weights and labels) or "load_no_labels"
#: (the SAE loads, its bad labels.json is ignored with a warning, never read whole).
EXPECT = {
    "cfg_link_outside": "refuse",
    "cfg_link_etc_passwd": "refuse",
    "weights_link_outside": "refuse",
    "labels_link_etc_passwd": "refuse",
    "labels_link_outside": "refuse",
    "cfg_fifo": "refuse",
    "weights_fifo": "refuse",
    "cfg_is_a_folder": "refuse",
    "cfg_link_loop": "refuse",
    "weights_link_loop": "refuse",
    "cfg_deep_400k": "refuse",
    "cfg_deep_70": "refuse",
    "cfg_bigint_digits": "refuse",
    "cfg_backbone_dim_contradicts_d_in": "refuse",
    "weights_sparse_over_cap": "refuse",
    "weights_sparse_under_cap": "refuse",
    "header_offsets_past_end": "refuse",
    "header_tensors_overlap": "refuse",
    "header_deep": "refuse",
    "labels_300mb": "load_no_labels",
    "labels_deep": "load_no_labels",
    "folder_itself_a_link": "load",
    "link_inside_the_folder": "load",
}


def _header_only(path: Path, tensors: dict[str, tuple[list[int], str]], *, sparse: bool) -> None:
    """A safetensors file whose header is consistent with ``tensors``; with ``sparse`` the data
    region is a hole (the file claims its full size but holds almost nothing on disk)."""
    header: dict[str, Any] = {}
    offset = 0
    for name, (shape, dtype) in tensors.items():
        size = 4
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        if sparse:
            fh.truncate(8 + len(raw) + offset)
        else:
            fh.write(b"\0" * offset)


def _sae_tensors(d_in: int, width: int) -> dict[str, tuple[list[int], str]]:
    return {
        "W_enc": ([width, d_in], "F32"),
        "b_enc": ([width], "F32"),
        "W_dec": ([width, d_in], "F32"),
        "b_dec": ([d_in], "F32"),
    }


def make_cases(root: Path, good: Path) -> Path:
    """Build the hostile folders under ``root/cases`` (and ``root/outside``) from ``good``."""
    import shutil

    cases = root / "cases"
    cases.mkdir(parents=True)
    outside = root / "outside"
    shutil.copytree(good, outside)
    from safetensors.torch import load_file, save_file

    other = load_file(str(good / "sae.safetensors"))
    other["b_enc"] = other["b_enc"] + 1.0  # other weights: loading them would show
    save_file(other, str(outside / "sae.safetensors"))
    (outside / "labels.json").write_text(
        json.dumps({"format": 1, "latents": {"0": {"label": "from outside"}}})
    )
    cfg = json.loads((good / "cfg.json").read_text())

    def folder(name: str, *, cfg_: Any = None, weights: bool = True, config: bool = True) -> Path:
        f = cases / name
        f.mkdir()
        if config:
            (f / "cfg.json").write_text(cfg_ if isinstance(cfg_, str) else json.dumps(cfg_ or cfg))
        if weights:
            shutil.copy(good / "sae.safetensors", f / "sae.safetensors")
        return f

    f = folder("cfg_link_outside", config=False)
    (f / "cfg.json").symlink_to(outside / "cfg.json")
    f = folder("cfg_link_etc_passwd", config=False)
    (f / "cfg.json").symlink_to("/etc/passwd")
    f = folder("weights_link_outside", weights=False)
    (f / "sae.safetensors").symlink_to(Path("..") / ".." / "outside" / "sae.safetensors")
    f = folder("labels_link_etc_passwd")
    (f / "labels.json").symlink_to("/etc/passwd")
    f = folder("labels_link_outside")
    (f / "labels.json").symlink_to(outside / "labels.json")
    f = folder("cfg_fifo", config=False)
    os.mkfifo(f / "cfg.json")
    f = folder("weights_fifo", weights=False)
    os.mkfifo(f / "sae.safetensors")
    f = folder("cfg_link_loop", config=False)
    (f / "cfg.json").symlink_to("cfg.json")
    f = folder("weights_link_loop", weights=False)
    (f / "sae.safetensors").symlink_to("other.safetensors")
    (f / "other.safetensors").symlink_to("sae.safetensors")
    f = folder("cfg_is_a_folder", config=False)
    (f / "cfg.json").mkdir()
    folder("cfg_deep_400k", cfg_='{"d_in": 384, "x": ' + "[" * 400_000 + "]" * 400_000 + "}")
    folder(
        "cfg_deep_70",
        cfg_=json.dumps({**cfg, "metrics": {}}).replace(
            '"metrics": {}', '"x": ' + "[" * 70 + "]" * 70
        ),
    )
    folder(
        "cfg_bigint_digits",
        cfg_=json.dumps(cfg).replace(f'"width": {cfg["width"]}', '"width": 1' + "0" * 5000),
    )
    folder("cfg_backbone_dim_contradicts_d_in", cfg_={**cfg, "backbone_dim": 768})
    # 2 x 2^20 x 384 float32 = 3 GiB, over the default 2 GiB cap: refused from the config alone
    over = {**cfg, "width": 2**20, "k": 8}
    f = folder("weights_sparse_over_cap", cfg_=over, weights=False)
    _header_only(f / "sae.safetensors", _sae_tensors(cfg["d_in"], 2**20), sparse=True)
    # 2 x 65536 x 384 float32 = 192 MiB, under the cap, but a file of holes
    under = {**cfg, "width": 65536, "k": 8}
    f = folder("weights_sparse_under_cap", cfg_=under, weights=False)
    _header_only(f / "sae.safetensors", _sae_tensors(cfg["d_in"], 65536), sparse=True)
    f = folder("header_offsets_past_end", weights=False)
    raw = json.dumps(
        {
            name: {"dtype": dt, "shape": shape, "data_offsets": [0, 1 << 40]}
            for name, (shape, dt) in _sae_tensors(cfg["d_in"], cfg["width"]).items()
        }
    ).encode()
    (f / "sae.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 64)
    f = folder("header_tensors_overlap", weights=False)
    tensors = _sae_tensors(cfg["d_in"], cfg["width"])
    size = {n: 4 * int(__import__("math").prod(s)) for n, (s, _) in tensors.items()}
    header = {
        n: {"dtype": dt, "shape": s, "data_offsets": [0, size[n]]} for n, (s, dt) in tensors.items()
    }
    raw = json.dumps(header).encode()
    (f / "sae.safetensors").write_bytes(
        struct.pack("<Q", len(raw)) + raw + b"\0" * max(size.values())
    )
    f = folder("header_deep", weights=False)
    raw = ("[" * 50_000 + "]" * 50_000).encode()
    (f / "sae.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    f = folder("labels_300mb")
    with (f / "labels.json").open("wb") as fh:
        fh.truncate(300 << 20)
    f = folder("labels_deep")
    (f / "labels.json").write_text('{"format": 1, "latents": ' + "[" * 100_000 + "]" * 100_000)
    (cases / "folder_itself_a_link").symlink_to(outside, target_is_directory=True)
    f = folder("link_inside_the_folder", config=False)
    (f / "real-cfg.json").write_text(json.dumps(cfg))
    (f / "cfg.json").symlink_to("real-cfg.json")
    return cases


def _load(entry: str, folder: Path) -> Any:
    from latentlex.hub import from_pretrained
    from latentlex.loading import load_folder
    from latentlex.sae import SparseAutoencoder
    from latentlex.terms import load_sae

    if entry == "SparseAutoencoder.load":
        return SparseAutoencoder.load(folder)
    if entry == "load_sae":
        return load_sae(folder)
    if entry == "load_folder":
        return load_folder(folder)
    return from_pretrained(str(folder))


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def probe(cases: Path) -> dict[str, Any]:
    """Every case through every entry point, in this process: outcome, seconds, RSS growth."""
    import torch  # noqa: F401  (imported before the baseline)
    from latentlex.errors import LatentLexError
    from latentlex.sae import SparseAutoencoder

    outside_fp = SparseAutoencoder.load(cases.parent / "outside").fingerprint()  # also warms up
    rows = []
    for folder in sorted(cases.iterdir()):
        for entry in ENTRY_POINTS:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            before = _kib("VmRSS")
            start = time.perf_counter()
            row: dict[str, Any] = {"case": folder.name, "entry": entry}
            try:
                sae = _load(entry, folder)
            except LatentLexError as e:
                row.update(outcome="refused", error=type(e).__name__, message=str(e)[:300])
            except Exception as e:  # a crash: reported, the test fails on it
                row.update(outcome="crashed", error=type(e).__name__, message=str(e)[:300])
            else:
                row.update(
                    outcome="loaded",
                    labels=len(getattr(sae, "labels", {}) or {}),
                    outside_weights=sae.fingerprint() == outside_fp,
                )
                del sae
            row["seconds"] = time.perf_counter() - start
            row["rss_growth_mib"] = max(0, _kib("VmHWM") - before) / 1024
            rows.append(row)
    return {
        "rows": rows,
        "baseline_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_probe(cases: Path, timeout: float = 300) -> dict[str, Any]:
    """:func:`probe` in a fresh child process (a clean peak-RSS baseline, a hang is a timeout)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "core"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(cases)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"tamper probe failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    print(json.dumps(probe(Path(sys.argv[1]))))
