"""The runnable examples, offline, as subprocesses (smoke tests that read what they print)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

from conftest import REPO

EXAMPLES = REPO / "examples"


def _run(script: str, *args: str, timeout: float = 300) -> str:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LATENTLEX_LLM_URL")
    }
    # OpenMP threads that sleep instead of spinning: many times faster on a shared CPU
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc.stdout


def _found(out: str) -> tuple[int, int]:
    m = re.search(r"relevant document among the sources for (\d+)/(\d+) questions", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def test_llama_index_chat_offline():
    # the example as it stands: it fits (or reuses) its own tiny SAE under .cache/examples/
    out = _run("llama_index_chat.py", "--offline")
    assert "LLM: offline mock" in out
    assert out.count("\nQ: ") == 3 and out.count("\nA: [offline mock LLM") == 3
    assert "[1] Geneva Durben.txt" in out  # "What does Geneva Durben like?"
    assert re.search(
        r"\[1\] \S.* score [0-9.]+ +sparse [0-9.]+ +dense [0-9.]+ +terms: latent \d+", out
    )
    found, asked = _found(out)
    assert asked == 3 and found >= 2  # measured: 3/3


def test_langchain_chain_offline(tiny_sae_dir):
    out = _run("langchain_chain.py", "--offline", "--sae", str(tiny_sae_dir))
    assert out.count("\nQ: ") == 3
    assert "A: [offline mock LLM, quoting the context] [Geneva Durben] Geneva Durben likes" in out
    assert "[1] Geneva Durben  score" in out and "terms: latent " in out
    found, asked = _found(out)
    assert asked == 3 and found >= 2  # measured: 3/3


def test_langchain_chain_own_folder(tmp_path, tiny_sae_dir, capsys, monkeypatch):
    # in-process (the imports are paid already): --dir, --ask and --k
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LATENTLEX_LLM_URL"):
        monkeypatch.delenv(var, raising=False)
    spec = importlib.util.spec_from_file_location(
        "langchain_chain", EXAMPLES / "langchain_chain.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "a.txt").write_text("Quokkas are small marsupials living on Rottnest Island.")
    (tmp_path / "b.md").write_text("The bassoon is a woodwind instrument with a double reed.")
    args = ["--sae", str(tiny_sae_dir), "--dir", str(tmp_path), "--k", "1"]
    assert module.main([*args, "--ask", "Where do quokkas live?"]) == 0
    out = capsys.readouterr().out
    assert "loaded 2 documents" in out and "LLM: offline mock" in out
    assert "quoting the context] [a.txt] Quokkas are small marsupials" in out


def test_qdrant_store_hybrid(tiny_sae_dir):
    out = _run("qdrant_store_hybrid.py", "--sae", str(tiny_sae_dir), "--queries", "10")
    assert "sparse modifier idf" in out.lower()
    m = re.search(r"dense ([0-9.]+)\s+sparse ([0-9.]+)\s+hybrid ([0-9.]+)", out)
    assert m, out
    assert all(0.0 <= float(x) <= 1.0 for x in m.groups())
    assert "What does Geneva Durben like? -> ['Geneva Durben'" in out
