"""SAE diagnostics (FVU, dead latents, Zipf, word neighbours) and the HTML report."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import LIMIT_SMALL
from latentlex.corpus import read_corpus
from latentlex.errors import ConfigError
from latentlex.inspect import inspect_sae, write_report, zipf_fit
from latentlex.labels import LatentLabel, LatentLabels, label_latents, load_labels

PNG = b"\x89PNG\r\n\x1a\n"
N_DOCS = 12


@pytest.fixture(scope="module")
def sae_copy(tiny_sae_dir, backbone, tmp_path_factory):
    """The tiny SAE, copied, with labels.json from the first N_DOCS texts of LIMIT-small."""
    folder = tmp_path_factory.mktemp("inspect") / "sae"
    folder.mkdir()
    for name in ("cfg.json", "sae.safetensors"):
        shutil.copyfile(tiny_sae_dir / name, folder / name)
    texts = [d.text for d in read_corpus(LIMIT_SMALL)][:N_DOCS]
    label_latents(folder, texts, backbone).save(folder)
    return folder, texts


@pytest.fixture(scope="module")
def inspected(sae_copy, backbone, tmp_path_factory):
    folder, texts = sae_copy
    out = tmp_path_factory.mktemp("inspect_out")
    return inspect_sae(folder, texts, backbone, word="Quokkas", out_dir=out), out


def test_inspect_measures_the_corpus(inspected, sae_copy):
    info, out = inspected
    folder, _ = sae_copy
    cfg = json.loads((folder / "cfg.json").read_text())
    labels = load_labels(folder)
    c = info["corpus"]
    assert c["n_docs"] == N_DOCS and c["n_rows"] == labels.meta["n_tokens"]
    assert 0 < c["fvu"] < 1 and abs(c["fvu"] - cfg["metrics"]["fvu"]) < 0.15
    assert 0 < c["l0"] <= cfg["k"]
    # two independent passes agree: latents alive on the corpus are exactly the labelled ones
    assert c["dead"] == cfg["width"] - len(labels)
    assert set(c["dead_latents"]).isdisjoint(labels.latents)
    assert all(row["doc_frequency"] >= 0.9 for row in c["always_on"])
    assert all(row["label"] == labels[row["latent"]].label for row in c["always_on"])
    assert info["trained"]["fvu"] == cfg["metrics"]["fvu"]
    z = info["zipf"]
    assert z["source"] == "corpus" and z["n"] == len(labels)
    assert math.isfinite(z["exponent"]) and z["exponent"] > 0 and 0 <= z["r2"] <= 1
    for name in ("zipf", "frequency"):
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000
    assert json.loads((out / "inspect.json").read_text()) == info
    assert info["files"]["report"] == str(out / "report.html")


def test_inspect_word_neighbours(inspected, sae_copy):
    info, _ = inspected
    labels = load_labels(sae_copy[0])
    w = info["word"]
    assert w["tokens"] == ["quo", "##kka", "##s"]
    acts = [r["activation"] for r in w["by_activation"]]
    assert acts and acts == sorted(acts, reverse=True) and acts[-1] > 0
    cos = [r["cosine"] for r in w["by_decoder_cosine"]]
    assert len(cos) == 10 and cos == sorted(cos, reverse=True) and -1 <= cos[-1] <= cos[0] <= 1
    expected = {
        j for j, lab in labels.latents.items() if "quokkas" in [t[0] for t in lab.top_words]
    }
    assert expected and {r["latent"] for r in w["in_labels"]} <= expected
    assert all(r["label"] == labels[r["latent"]].display for r in w["by_activation"])


def test_inspect_without_corpus_uses_labels(sae_copy, tmp_path, capsys):
    import argparse

    from latentlex.cli_interp import add_cli

    folder, _ = sae_copy
    info = inspect_sae(folder, out_dir=tmp_path)
    assert info["corpus"] is None and info["word"] is None
    assert info["zipf"]["source"] == "labels.json" and info["zipf"]["exponent"] > 0
    assert (tmp_path / "zipf.png").read_bytes().startswith(PNG)
    assert (tmp_path / "report.html").is_file()

    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["inspect", "--sae", str(folder), "--out", str(tmp_path / "cli")])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "Zipf exponent" in out and "report.html" in out and "512" in out
    with pytest.raises(ConfigError):
        inspect_sae(folder, always_on=0)


def test_zipf_fit_recovers_the_exponent():
    rng = np.random.default_rng(0)
    ranks = np.arange(1, 2001)
    freq = 0.5 * ranks**-1.3 * np.exp(rng.normal(0, 0.05, ranks.size))
    fit = zipf_fit(rng.permutation(freq))  # order does not matter
    assert fit["exponent"] == pytest.approx(1.3, abs=0.02) and fit["r2"] > 0.99
    assert fit["n"] == 2000
    assert zipf_fit([0.0, 0.2, 0.1, 0.0])["n"] == 2  # zeros (dead latents) are left out
    with pytest.raises(ConfigError):
        zipf_fit([0.3, 0.0])


def _toy_report(tmp_path):
    labels = LatentLabels(
        {
            3: LatentLabel(
                "<script>alert(1)</script>",
                [("quokkas", 4, 1.2)],
                [{"text": "Ann likes Quokkas & <b>tapirs</b>", "start": 10, "end": 17, "act": 2}],
                frequency=0.02,
                doc_frequency=0.5,
                description="Small marsupials",
            ),
            9: LatentLabel("likes / loves", [("likes", 40, 0.7)], [], frequency=0.1),
        }
    )
    return write_report(labels, tmp_path / "r.html", summary={"FVU": "0.35"})


def test_report_is_self_contained_and_escaped(tmp_path):
    page = _toy_report(tmp_path).read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)" in page
    assert "<mark>Quokkas</mark> &amp; &lt;b&gt;tapirs" in page
    assert "Small marsupials" in page and page.count('<tr class="lat"') == 2
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # no external assets
    assert "<link" not in page


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


def _headless(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    return subprocess.run(
        [_chromium(), *flags, *args], capture_output=True, text=True, timeout=120, check=True
    )


def test_report_renders_in_headless_chromium(inspected, sae_copy, tmp_path):
    _chromium()
    _, out = inspected
    labels = load_labels(sae_copy[0])
    url = (out / "report.html").as_uri()
    # "#q=quokkas" pre-fills the search box: the inline script filters the rows
    dom = _headless(tmp_path, "--dump-dom", url + "#q=quokkas").stdout
    assert 'data-ready="1"' in dom  # the inline script ran
    rows = re.findall(r'<tr class="lat"[^>]*>', dom)
    assert len(rows) == len(labels)
    shown = [r for r in rows if " hidden" not in r]
    expected = [j for j, lab in labels.latents.items() if "quokkas" in lab.label.lower()
                or any("quokkas" in w for w, *_ in lab.top_words)]  # fmt: skip
    assert [int(re.search(r'data-id="(\d+)"', r).group(1)) for r in shown] == expected
    assert 0 < len(shown) < len(labels)
    assert f"{len(shown)} of {len(labels)} latents" in dom
    shot = tmp_path / "report.png"
    _headless(tmp_path, "--window-size=1400,1000", f"--screenshot={shot}", url + "#q=quokkas")
    data = shot.read_bytes()
    assert data.startswith(PNG) and len(data) > 20_000
