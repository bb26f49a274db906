"""latentlex against SAEs saved by the real libraries (latentsae 0.1.3 / 0.2.0, eai-sparsify 1.3.3,
sae-lens 6.54.12), with the activations and reconstructions those libraries computed themselves.

The folders under ``tests/fixtures/saes`` were written by ``scripts/make_sae_fixtures.py`` in one
environment per library (each library's own save function, in its Hub layout); no library is
needed here. Each case must load with the right format, mode and architecture, give the same
active latents for every input row (the sets, not only the values), activations within 1e-5 and
reconstructions within 1e-5 (fp32; absolute, plus 1e-5 relative for values above 1: the same
sums in another order differ by a few ulps).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from latentlex.errors import ConfigError, SAEFormatError
from latentlex.hub import from_pretrained
from latentlex.loading import load_folder
from latentlex.sae import SparseAutoencoder
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures" / "saes"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TOL = 1e-5


def _cases() -> list[Path]:
    return sorted(p.parent for p in FIXTURES.rglob("reference.json"))


def _reference(ref_dir: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    return json.loads((ref_dir / "reference.json").read_text()), load_file(
        str(ref_dir / "reference.safetensors")
    )


def _load(ref_dir: Path, meta: dict, **kw) -> SparseAutoencoder:
    """Load a case the way a user would: the repository folder (+ subfolder) when there is one."""
    backbone = None if "backbone" in meta else "test/backbone"
    if meta["case"] == "trainer root":
        root, sub = ref_dir.parent / "trainer-root", meta["subfolder"]
    elif "subfolder" in meta:
        root, sub = ref_dir.parent, meta["subfolder"]
    else:
        return load_folder(ref_dir, backbone=backbone, **kw)
    return from_pretrained(str(root), subfolder=sub, backbone=backbone, **kw)


def _dense(sae: SparseAutoencoder, x: torch.Tensor) -> torch.Tensor:
    out = sae.encode(x)
    dense = torch.zeros(x.shape[0], sae.cfg.width)
    return dense.scatter_add(1, out.top_indices, out.top_acts.float())


def _active_sets(acts: torch.Tensor) -> list[set[int]]:
    return [set(torch.nonzero(row > 0).flatten().tolist()) for row in acts]


def _ids(cases: list[Path]) -> list[str]:
    return [str(p.relative_to(FIXTURES)) for p in cases]


CASES = [p for p in _cases() if _reference(p)[0].get("dtype") != "bfloat16"]
BF16 = [p for p in _cases() if _reference(p)[0].get("dtype") == "bfloat16"]


def test_every_library_and_variant_is_covered():
    made = {(m["library"].split()[0], m["case"]) for m, _ in map(_reference, _cases())}
    libraries = {lib for lib, _ in made}
    assert libraries == {"latentsae", "eai-sparsify", "sae-lens"}
    for case in ("topk", "mean-centred", "batchtopk", "matryoshka", "0.1 no sae_type"):
        assert ("latentsae", case) in made
    for case in ("per-layer", "trainer root", "per-layer bf16"):
        assert ("eai-sparsify", case) in made
    for case in (
        "topk-inference",
        "topk-model-rescale",
        "topk-inference-no-b-dec",
        "jumprelu-model",
        "jumprelu-inference",
        "batchtopk-save-inference-model",
        "topk-layer_norm",
        "topk-constant_norm_rescale",
    ):
        assert ("sae-lens", case) in made


@pytest.mark.parametrize("ref_dir", CASES, ids=_ids(CASES))
def test_matches_the_library(ref_dir: Path):
    meta, ref = _reference(ref_dir)
    sae = _load(ref_dir, meta)
    cfg = sae.cfg
    assert (cfg.mode, cfg.architecture) == (meta["mode"], meta["architecture"]), meta
    assert cfg.input_norm == meta.get("input_norm", "none")
    if "k" in meta:
        assert cfg.k == meta["k"]
    if "backbone" in meta:  # named by the library's own config, not passed
        assert cfg.backbone == meta["backbone"]
    x = ref["x"]
    got = _dense(sae, x)
    want = ref["acts"]
    assert _active_sets(got) == _active_sets(want)
    torch.testing.assert_close(got, want, rtol=TOL, atol=TOL)
    torch.testing.assert_close(sae.reconstruct(x), ref["recon"], rtol=TOL, atol=TOL)
    if cfg.input_norm == "none":  # decode(encode(x)) is the reconstruction itself
        out = sae.encode(x)
        with torch.no_grad():
            recon = sae.decode(out.top_acts, out.top_indices)
        torch.testing.assert_close(recon, ref["recon"], rtol=TOL, atol=TOL)


def test_latentsae_batchtopk_keeps_activations_equal_to_its_threshold():
    """The fixture's threshold is an activation the SAE produces for row 0 (latentsae: '>=')."""
    ref_dir = FIXTURES / "latentsae-0.2" / "batchtopk" / "8_2"
    meta, ref = _reference(ref_dir)
    sae = _load(ref_dir, meta)
    theta = sae.cfg.threshold
    assert theta is not None and theta > 0
    row = ref["acts"][0]
    assert bool((row == torch.tensor(theta, dtype=torch.float32)).any())  # kept by latentsae
    got = _dense(sae, ref["x"][:1])[0]
    assert _active_sets(got[None]) == _active_sets(row[None])


def test_bf16_file_computes_like_the_library_with_dtype_file():
    (ref_dir,) = BF16
    _, ref = _reference(ref_dir)
    sae = load_folder(ref_dir, backbone="test/backbone", dtype="file")
    assert sae.W_enc.dtype == torch.bfloat16
    got = _dense(sae, ref["x"])
    assert _active_sets(got) == _active_sets(ref["acts"])
    assert torch.equal(got, ref["acts"])  # the same bf16 arithmetic, bit for bit
    default = load_folder(ref_dir, backbone="test/backbone")  # fp32 by default
    assert default.W_enc.dtype == torch.float32
    torch.testing.assert_close(default.W_enc, sae.W_enc.float(), rtol=0, atol=0)  # exact widen
    # fp32 arithmetic on the same weights: the shared active latents agree to bf16 rounding (a
    # few near-ties can swap in or out of a row's top-k: that is what dtype="file" avoids)
    fp32 = _dense(default, ref["x"])
    both = (fp32 > 0) & (ref["acts"] > 0)
    assert int(both.sum()) >= 0.8 * int((ref["acts"] > 0).sum())
    torch.testing.assert_close(fp32[both], ref["acts"][both], rtol=2e-2, atol=2e-2)
    with pytest.raises(ConfigError, match="dtype must be one of"):
        load_folder(ref_dir, backbone="test/backbone", dtype="float16")


def test_latentsae_01_is_pooled_latentsae_by_its_folder_name(tmp_path):
    repo = FIXTURES / "latentsae-0.1" / "repo"
    cfg = json.loads((repo / "8_2" / "cfg.json").read_text())
    assert "sae_type" not in cfg and "activation" not in cfg  # nothing in the config says so
    assert from_pretrained(str(repo), subfolder="8_2", backbone="b").cfg.mode == "pooled"
    # the same files in a folder named otherwise look like an old EleutherAI/sae checkpoint
    other = tmp_path / "layers.3"
    other.mkdir()
    for p in (repo / "8_2").iterdir():
        (other / p.name).write_bytes(p.read_bytes())
    assert load_folder(other, backbone="b").cfg.mode == "token"
    assert load_folder(other, backbone="b", sae_format="latentsae").cfg.mode == "pooled"


def test_sparsify_trainer_root_points_to_a_subfolder():
    root = FIXTURES / "sparsify-1.3" / "trainer-root"
    with pytest.raises(SAEFormatError, match=r"trainer checkpoint.*subfolder='layers\.0'"):
        from_pretrained(str(root))
    sae = from_pretrained(str(root), subfolder="layers.0")
    # config.json (the run config beside the hookpoints) names the model
    assert sae.cfg.backbone == MINILM and sae.cfg.mode == "token"


def test_saelens_llm_model_name_still_needs_a_backbone():
    ref_dir = FIXTURES / "saelens-6" / "topk-inference"
    assert json.loads((ref_dir / "cfg.json").read_text())["metadata"]["model_name"] == "gpt2"
    with pytest.raises(ConfigError, match=r"names 'gpt2', which is not a sentence-transformers"):
        load_folder(ref_dir)


def test_converted_sae_saves_and_reloads_identically(tmp_path):
    for case in ("saelens-6/jumprelu-model", "saelens-6/topk-layer_norm"):
        ref_dir = FIXTURES / case
        meta, ref = _reference(ref_dir)
        sae = _load(ref_dir, meta)
        sae.save(tmp_path / case)
        back = SparseAutoencoder.load(tmp_path / case)
        assert back.fingerprint() == sae.fingerprint()
        assert torch.equal(_dense(back, ref["x"]), _dense(sae, ref["x"]))
