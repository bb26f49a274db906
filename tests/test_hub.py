"""Hub sharing and foreign SAE formats: converters against reference math, a fake Hub for the
real download/upload code paths, the offline cache. Nothing here touches the internet."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import pytest
import torch
from fake_hub import FakeHub
from latentlex.converters import CONVERTERS, detect_format
from latentlex.errors import BackboneMismatchError, ConfigError, HubError, SAEFormatError
from latentlex.hub import (
    CLI_COMMANDS,
    add_cli,
    from_pretrained,
    model_card,
    push_to_hub,
    stage_for_upload,
)
from latentlex.loading import load_folder
from latentlex.sae import SAEConfig, SparseAutoencoder
from safetensors.torch import save_file

SECRET = "hf_test_secret_token_123"
D, W, K = 16, 64, 4


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A fake Hub on 127.0.0.1 (token-protected writes), HF_ENDPOINT pointing at it."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the fake speaks LFS, not Xet
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "default-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with FakeHub(token=SECRET) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake


def tiny_sae(seed: int = 0, **cfg) -> SparseAutoencoder:
    torch.manual_seed(seed)
    base = {"d_in": D, "width": W, "k": K, "backbone": "all-MiniLM-L6-v2", "avgdl": 12.5}
    sae = SparseAutoencoder(SAEConfig(**{**base, **cfg}))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    sae.cfg.metrics = {"fvu": 0.25, "l0": 4.0, "dead_pct": 1.5, "scifact_ndcg@10": 0.71}
    return sae


def weights(seed: int, width: int = W, d: int = D) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w_dec = torch.randn(width, d, generator=g)
    return {
        "enc": torch.randn(width, d, generator=g) / d**0.5,
        "b_enc": torch.randn(width, generator=g) * 0.1,
        "dec": w_dec / w_dec.norm(dim=1, keepdim=True),
        "b_dec": torch.randn(d, generator=g) * 0.1,
    }


def write(folder: Path, cfg: dict, tensors: dict[str, torch.Tensor], name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / name))
    return folder


def write_eleuther(folder: Path, seed: int = 0, extra: dict | None = None, **cfg) -> dict:
    w = weights(seed)
    tensors = {
        "encoder.weight": w["enc"],
        "encoder.bias": w["b_enc"],
        "W_dec": w["dec"],
        "b_dec": w["b_dec"],
        **(extra or {}),
    }
    base = {"expansion_factor": W // D, "normalize_decoder": True, "num_latents": 0, "k": K}
    write(folder, {**base, **cfg, "d_in": D}, tensors, "sae.safetensors")
    return w


def check_codes(sae: SparseAutoencoder, x: torch.Tensor, pre: torch.Tensor, k: int) -> None:
    """``sae.encode(x)`` keeps the k largest of ``relu(pre)``, with the same values."""
    ref_v, ref_i = torch.relu(pre).topk(k, dim=1)
    out = sae.encode(x)
    assert torch.allclose(out.top_acts, ref_v, atol=1e-5)
    for got, want in zip(out.top_indices.tolist(), ref_i.tolist(), strict=True):
        assert set(got) == set(want)


# ----------------------------------------------------------------------------- converters


def test_registry_and_detection(tmp_path):
    assert list(CONVERTERS) == ["saelens", "latentsae", "sparsify"]
    assert detect_format({"d_in": 8, "d_sae": 32, "k": 4}, ["sae_weights.safetensors"]) == "saelens"
    legacy = {"d_in": 8, "expansion_factor": 4, "k": 4}
    assert detect_format(legacy, ["sae.safetensors"]) == "sparsify"
    # latentsae 0.1.x writes the same keys: its folders are named {k}_{expansion_factor}
    assert detect_format(legacy, ["sae.safetensors"], "4_4") == "latentsae"
    assert detect_format(legacy, ["sae.safetensors"], "sae_4_4.run1") == "latentsae"
    assert detect_format(legacy, ["sae.safetensors"], "8_4") == "sparsify"  # k differs
    assert detect_format({**legacy, "activation": "topk"}, ["sae.safetensors"], "4_4") == "sparsify"
    assert detect_format({**legacy, "sae_type": "topk"}, ["sae.safetensors"]) == "latentsae"
    assert detect_format(tiny_sae().cfg.to_dict(), ["sae.safetensors"]) == "latentlex"
    with pytest.raises(SAEFormatError, match="known formats"):
        detect_format({"foo": 1}, ["cfg.json"])


def test_sparsify_matches_reference_math(tmp_path):
    w = write_eleuther(tmp_path / "s", activation="topk", transcode=False, skip_connection=False)
    sae = from_pretrained(str(tmp_path / "s"), backbone="my/backbone")
    assert (sae.cfg.mode, sae.cfg.architecture, sae.cfg.width, sae.cfg.k) == ("token", "topk", W, K)
    assert sae.cfg.backbone == "my/backbone" and sae.cfg.avgdl is None
    x = torch.randn(7, D)
    check_codes(sae, x, (x - w["b_dec"]) @ w["enc"].T + w["b_enc"], K)
    out = sae.encode(x)
    z = torch.zeros(7, W).scatter(1, out.top_indices, out.top_acts)
    assert torch.allclose(
        sae.decode(out.top_acts, out.top_indices), z @ w["dec"] + w["b_dec"], atol=1e-5
    )


def test_foreign_sae_needs_a_backbone_of_the_right_dimension(tmp_path):
    write_eleuther(tmp_path / "s")
    with pytest.raises(ConfigError, match="backbone="):
        load_folder(tmp_path / "s")
    with pytest.raises(BackboneMismatchError, match="768"):
        load_folder(tmp_path / "s", backbone="BAAI/bge-base-en-v1.5")


@pytest.mark.parametrize(
    ("flag", "match"),
    [
        ({"transcode": True}, "transcode"),
        ({"skip_connection": True}, "skip_connection"),
        ({"activation": "groupmax"}, "groupmax"),
    ],
)
def test_sparsify_unsupported_variants_are_refused(tmp_path, flag, match):
    write_eleuther(tmp_path / "s", **flag)
    with pytest.raises(SAEFormatError, match=match):
        load_folder(tmp_path / "s", backbone="b")


def test_wrong_shapes_name_the_file_and_tensor(tmp_path):
    folder = tmp_path / "s"
    write_eleuther(folder, extra={"encoder.weight": torch.zeros(W, D + 1)})
    with pytest.raises(SAEFormatError, match=r"sae\.safetensors.*encoder\.weight.*shape"):
        load_folder(folder, backbone="b")


def test_latentsae_mean_center_folds_into_b_dec_and_loads_pooled(tmp_path):
    mean = torch.randn(D)
    w = write_eleuther(
        tmp_path / "l",
        extra={"input_mean": mean},
        sae_type="topk",
        mean_center=True,
        use_skip=False,
    )
    sae = load_folder(tmp_path / "l", backbone="my/backbone")
    assert sae.cfg.mode == "pooled" and sae.cfg.bm25_k1 == 0.6 and sae.cfg.query_k2 == 1.5
    x = torch.randn(5, D)
    # latentsae: pre = relu(encoder((x - input_mean) - b_dec)); x_hat = W_dec^T z + b_dec + mean
    check_codes(sae, x, ((x - mean) - w["b_dec"]) @ w["enc"].T + w["b_enc"], K)
    out = sae.encode(x)
    z = torch.zeros(5, W).scatter(1, out.top_indices, out.top_acts)
    ref = z @ w["dec"] + w["b_dec"] + mean
    assert torch.allclose(sae.decode(out.top_acts, out.top_indices), ref, atol=1e-5)


def test_backbone_named_by_the_config_only_when_sentence_transformers(tmp_path):
    minilm = "sentence-transformers/all-MiniLM-L6-v2"
    write_eleuther(tmp_path / "a", sae_type="TOPK", model=minilm)
    with pytest.raises(BackboneMismatchError, match="384"):  # named, and its dimension checked
        load_folder(tmp_path / "a")
    write_eleuther(tmp_path / "b", sae_type="TOPK", embedding_model="my/llm")
    with pytest.raises(ConfigError, match=r"names 'my/llm', which is not a sentence-transformers"):
        load_folder(tmp_path / "b")
    assert load_folder(tmp_path / "b", backbone="my/llm").cfg.backbone == "my/llm"
    write_eleuther(tmp_path / "c", sae_type="TOPK", model="/etc/passwd-folder")
    with pytest.raises(ConfigError, match="backbone="):  # a path in a file is never a backbone
        load_folder(tmp_path / "c")


def test_latentsae_batchtopk_keeps_its_threshold(tmp_path):
    extra = {"batchtopk_threshold": torch.tensor(0.05)}
    write_eleuther(tmp_path / "b", extra=extra, sae_type="batchtopk")
    sae = load_folder(tmp_path / "b", backbone="b")
    assert sae.cfg.architecture == "batchtopk"
    assert sae.cfg.threshold == pytest.approx(0.05) and sae.cfg.max_active == K
    acts = sae.encode(torch.randn(9, D)).top_acts
    assert acts.shape[1] == K and bool(((acts == 0) | (acts >= 0.05)).all())


def test_latentsae_unsupported_type_refused_before_reading_weights(tmp_path):
    folder = tmp_path / "j"
    folder.mkdir()
    (folder / "cfg.json").write_text(
        json.dumps({"d_in": D, "expansion_factor": 4, "k": K, "sae_type": "GATED"})
    )
    (folder / "sae.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SAEFormatError, match="'GATED' is not supported: a gate path"):
        load_folder(folder, backbone="b")


@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("rescale", [False, True])
def test_saelens_topk_transposed_and_folded_exactly(tmp_path, apply_b_dec, rescale):
    w = weights(3)
    w_dec = w["dec"] * torch.rand(W, 1).add(0.5)  # decoder norms != 1
    cfg = {
        "architecture": "topk",
        "d_in": D,
        "d_sae": W,
        "k": K,
        "apply_b_dec_to_input": apply_b_dec,
        "rescale_acts_by_decoder_norm": rescale,
        "normalize_activations": "none",
        "metadata": {"model_name": "gpt2", "hook_name": "blocks.8.hook_resid_pre"},
    }
    tensors = {"W_enc": w["enc"].T, "b_enc": w["b_enc"], "W_dec": w_dec, "b_dec": w["b_dec"]}
    write(tmp_path / "s", cfg, tensors, "sae_weights.safetensors")
    sae = load_folder(tmp_path / "s", backbone="b")
    x = torch.randn(6, D)
    # SAELens: h = (x - b_dec*apply) @ W_enc + b_enc, times ||W_dec|| when rescaling; TopK; decode
    h = (x - w["b_dec"] * apply_b_dec) @ w["enc"].T + w["b_enc"]
    n = w_dec.norm(dim=1)
    if rescale:
        h = h * n
    check_codes(sae, x, h, K)
    v, i = torch.relu(h).topk(K, dim=1)
    z = torch.zeros(6, W).scatter(1, i, v)
    ref = (z / n if rescale else z) @ w_dec + w["b_dec"]
    out = sae.encode(x)
    assert torch.allclose(sae.decode(out.top_acts, out.top_indices), ref, atol=1e-4)


def test_saelens_old_style_config_and_refusals(tmp_path):
    w = weights(4)
    tensors = {"W_enc": w["enc"].T, "b_enc": w["b_enc"], "W_dec": w["dec"], "b_dec": w["b_dec"]}
    old = {"d_in": D, "d_sae": W, "architecture": "standard", "activation_fn_str": "topk"}
    write(
        tmp_path / "old",
        {**old, "activation_fn_kwargs": {"k": 3}},
        tensors,
        "sae_weights.safetensors",
    )
    assert load_folder(tmp_path / "old", backbone="b").cfg.k == 3
    write(
        tmp_path / "relu", {**old, "activation_fn_str": "relu"}, tensors, "sae_weights.safetensors"
    )
    with pytest.raises(SAEFormatError, match="TopK"):
        load_folder(tmp_path / "relu", backbone="b")
    norm = {
        "d_in": D,
        "d_sae": W,
        "architecture": "topk",
        "k": 3,
        "normalize_activations": "expected_average_only_in",
    }
    write(tmp_path / "ln", norm, tensors, "sae_weights.safetensors")
    with pytest.raises(SAEFormatError, match=r"dataset-wide factor .* outside this file"):
        load_folder(tmp_path / "ln", backbone="b")
    write(
        tmp_path / "w",
        {**norm, "normalize_activations": "covariance_whitening"},
        tensors,
        "sae_weights.safetensors",
    )
    with pytest.raises(SAEFormatError, match=r"whitens inputs .* not in this file"):
        load_folder(tmp_path / "w", backbone="b")


def test_absurd_width_is_refused_before_reading_weights(tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps({"d_in": D, "num_latents": 10**9, "k": K}))
    (folder / "sae.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(SAEFormatError, match="width=1000000000"):
        load_folder(folder, backbone="b")


def test_pickle_only_folder_is_refused(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "cfg.json").write_text(json.dumps({"d_in": D, "expansion_factor": 4, "k": K}))
    (tmp_path / "p" / "sae.pt").write_bytes(b"\x80\x04pickled")
    with pytest.raises(SAEFormatError, match="unpickling"):
        load_folder(tmp_path / "p", backbone="b")


def test_bad_config_files_and_paths(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "cfg.json").write_text("{not json")
    with pytest.raises(SAEFormatError, match=r"cfg\.json.*JSON"):
        from_pretrained(str(folder))
    (folder / "cfg.json").write_text(" " * (1 << 20) + "{}")
    with pytest.raises(SAEFormatError, match=r"too large|over the .*limit"):
        from_pretrained(str(folder))
    for sub in ("../x", "/etc", "a/../../b", "a\\b"):
        with pytest.raises(ConfigError):
            from_pretrained(str(folder), subfolder=sub)
    with pytest.raises(SAEFormatError, match="no such SAE folder"):
        from_pretrained(str(tmp_path / "missing"))
    with pytest.raises(SAEFormatError, match="not a Hub id"):
        from_pretrained("a/b/c")


def test_local_folder_with_subfolder_and_native_checks(tmp_path):
    sae = tiny_sae()
    sae.save(tmp_path / "repo" / "v1")
    with pytest.raises(SAEFormatError, match=r"subfolder=.*v1"):
        from_pretrained(str(tmp_path / "repo"))
    got = from_pretrained(str(tmp_path / "repo"), subfolder="v1")
    assert got.fingerprint() == sae.fingerprint() and not got.training
    with pytest.raises(ConfigError, match="token mode"):
        from_pretrained(str(tmp_path / "repo"), subfolder="v1", mode="pooled")


def test_model_card_and_staging(tmp_path):
    sae = tiny_sae()
    card = model_card(sae, "me/minilm-lt")
    assert card.startswith("---\nlibrary_name: latentlex\n")
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card
    for text in (
        "| FVU (held-out) | 0.250 |",
        "| dead latents | 1.50 % |",
        "| scifact_ndcg@10 | 0.71 |",
    ):
        assert text in card
    import latentlex

    assert f'pip install "latentlex=={latentlex.__version__}"' in card
    assert 'from_pretrained("me/minilm-lt")' in card and "calibrate_avgdl" not in card
    out = stage_for_upload(sae, "me/minilm-lt", tmp_path / "stage")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "cfg.json", "sae.safetensors"]
    (tmp_path / "stage" / "labels.json").write_text("{broken")
    with pytest.raises(SAEFormatError, match=r"labels\.json"):
        stage_for_upload(tmp_path / "stage", "me/minilm-lt", tmp_path / "stage")


# ----------------------------------------------------------------------------- the Hub


def test_push_then_pull_through_the_hub(hub, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    sae = tiny_sae()
    folder = tmp_path / "sae"
    sae.save(folder)
    (folder / "labels.json").write_text(json.dumps({"0": "python functions"}))
    (folder / "extra.pt").write_bytes(b"never uploaded")
    url = push_to_hub(folder, "me/minilm-lt", token=SECRET)
    sha = hub.repos["me/minilm-lt"].branches["main"]
    assert url == f"{hub.url}/me/minilm-lt/commit/{sha}"
    assert hub.repos["me/minilm-lt"].private
    files = hub.files("me/minilm-lt")
    assert sorted(files) == ["README.md", "cfg.json", "labels.json", "sae.safetensors"]
    assert any(p.startswith("/lfs/") for p in hub.paths_requested("PUT"))  # weights went via LFS
    assert b"library_name: latentlex" in files["README.md"]

    with pytest.raises(HubError, match="not found"):  # private: no token, no access
        from_pretrained("me/minilm-lt", cache_dir=tmp_path / "c0")
    got = from_pretrained("me/minilm-lt", token=SECRET, cache_dir=tmp_path / "cache")
    assert got.fingerprint() == sae.fingerprint() and got.cfg.avgdl == 12.5
    gets = [p for p in hub.paths_requested("GET") if "/resolve/" in p]
    assert sorted(p.rsplit("/", 1)[1] for p in gets) == [
        "cfg.json",
        "labels.json",
        "sae.safetensors",
    ]
    assert SECRET not in caplog.text
    assert all(auth == f"Bearer {SECRET}" for m, p, auth in hub.requests if m == "POST")


def test_cache_then_offline_and_corrupt_cache(hub, tmp_path, monkeypatch):
    sae = tiny_sae()
    hub.add_repo("me/pub", {"cfg.json": b"", "sae.safetensors": b""})
    stage = stage_for_upload(sae, "me/pub", tmp_path / "stage")
    hub.commit(
        "me/pub", {n: (stage / n).read_bytes() for n in ("cfg.json", "sae.safetensors")}, "sae"
    )
    cache = tmp_path / "cache"
    assert from_pretrained("me/pub", cache_dir=cache).fingerprint() == sae.fingerprint()
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert from_pretrained("me/pub", cache_dir=cache).fingerprint() == sae.fingerprint()
    with pytest.raises(HubError, match="not in the local Hub cache"):
        from_pretrained("me/other", cache_dir=cache)
    blob = Path(os.path.realpath(next(cache.rglob("snapshots/*/sae.safetensors"))))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(SAEFormatError, match=r"me/pub/sae\.safetensors.*corrupt"):
        from_pretrained("me/pub", cache_dir=cache)


def test_unreachable_hub_falls_back_to_the_cache(hub, tmp_path, monkeypatch):
    sae = tiny_sae()
    stage = stage_for_upload(sae, "me/pub", tmp_path / "stage")
    hub.add_repo("me/pub", {n: (stage / n).read_bytes() for n in ("cfg.json", "sae.safetensors")})
    cache = tmp_path / "cache"
    from_pretrained("me/pub", cache_dir=cache)
    url = hub.url
    hub.stop()
    monkeypatch.setenv("HF_ENDPOINT", url)  # now refuses connections
    assert from_pretrained("me/pub", cache_dir=cache).fingerprint() == sae.fingerprint()


def test_revision_pins_a_commit(hub, tmp_path, monkeypatch):
    first, second = tiny_sae(1), tiny_sae(2)
    push_to_hub(first, "me/rev", token=SECRET)
    sha1 = hub.repos["me/rev"].branches["main"]
    push_to_hub(second, "me/rev", token=SECRET, commit_message="v2")
    cache = tmp_path / "cache"
    kw = {"token": SECRET, "cache_dir": cache}
    assert from_pretrained("me/rev", **kw).fingerprint() == second.fingerprint()
    assert from_pretrained("me/rev", revision=sha1, **kw).fingerprint() == first.fingerprint()
    push_to_hub(first, "me/rev", revision="v1-branch", token=SECRET)
    assert (
        from_pretrained("me/rev", revision="v1-branch", **kw).fingerprint() == first.fingerprint()
    )
    n = len(hub.requests)
    assert from_pretrained("me/rev", revision=sha1, **kw).fingerprint() == first.fingerprint()
    assert len(hub.requests) == n  # a pinned commit in the cache needs no network
    with pytest.raises(HubError, match="no such revision"):
        from_pretrained("me/rev", revision="nope", **kw)


def test_corrupt_download_is_reported_and_not_cached(hub, tmp_path):
    stage = stage_for_upload(tiny_sae(), "me/bad", tmp_path / "stage")
    hub.add_repo("me/bad", {n: (stage / n).read_bytes() for n in ("cfg.json", "sae.safetensors")})
    hub.repos["me/bad"].corrupt.add("sae.safetensors")
    cache = tmp_path / "cache"
    with pytest.raises(SAEFormatError, match=r"me/bad/sae\.safetensors.*corrupt.*sha256"):
        from_pretrained("me/bad", cache_dir=cache)
    assert not list(cache.rglob("snapshots/*/sae.safetensors"))
    hub.repos["me/bad"].corrupt.clear()
    assert from_pretrained("me/bad", cache_dir=cache).cfg.width == W


def test_pickle_only_repo_and_oversized_config_are_refused(hub, tmp_path):
    cfg = {"d_in": D, "expansion_factor": 4, "k": K}
    hub.add_repo("me/pickle", {"cfg.json": json.dumps(cfg).encode(), "pytorch_model.bin": b"\x80"})
    with pytest.raises(SAEFormatError, match=r"only pickled weights \(pytorch_model\.bin\)"):
        from_pretrained("me/pickle", backbone="b", cache_dir=tmp_path / "c")
    huge = {"d_in": D, "num_latents": 10**9, "k": K}
    hub.add_repo("me/huge", {"cfg.json": json.dumps(huge).encode(), "sae.safetensors": b"\0" * 99})
    with pytest.raises(SAEFormatError, match="width=1000000000"):
        from_pretrained("me/huge", backbone="b", cache_dir=tmp_path / "c")
    resolved = [p for p in hub.paths_requested("GET") if "/resolve/" in p]
    assert not [p for p in resolved if p.endswith((".bin", ".safetensors"))]


def latentsae_repo_files(seed: int = 5) -> dict[str, bytes]:
    """The layout of enjalot/sae-all-MiniLM-L6-v2-FineWeb-RedPajama-Pile-150M (legacy cfg)."""
    from safetensors.torch import save

    w = weights(seed, width=3072, d=384)
    cfg = {"expansion_factor": 8, "normalize_decoder": True, "num_latents": 0, "k": 64}
    tensors = {"encoder.weight": w["enc"], "encoder.bias": w["b_enc"], "W_dec": w["dec"]}
    return {
        "64_8/cfg.json": json.dumps({**cfg, "multi_topk": False, "d_in": 384}).encode(),
        "64_8/sae.safetensors": save({**tensors, "b_dec": w["b_dec"]}),
        "128_4/cfg.json": json.dumps(
            {**cfg, "k": 128, "expansion_factor": 4, "d_in": 384}
        ).encode(),
        "128_4/sae.safetensors": b"never downloaded in this test",
        "README.md": b"# SAEs on all-MiniLM-L6-v2 embeddings\n",
    }


def test_latentsae_repo_gives_a_working_pooled_sae(hub, tmp_path, backbone):
    from latentlex.terms import LatentTermEncoder

    repo = "enjalot/sae-all-MiniLM-L6-v2-FineWeb-RedPajama-Pile-150M"
    hub.add_repo(repo, latentsae_repo_files())
    with pytest.raises(SAEFormatError, match="subfolder= one of: 128_4, 64_8"):
        from_pretrained(repo, cache_dir=tmp_path / "c")
    # latentsae configs do not name their backbone: the message says what to pass
    with pytest.raises(ConfigError, match=r"does not name the backbone.*backbone="):
        from_pretrained(repo, subfolder="64_8", cache_dir=tmp_path / "c")
    minilm = "sentence-transformers/all-MiniLM-L6-v2"
    sae = from_pretrained(repo, subfolder="64_8", cache_dir=tmp_path / "c", backbone=minilm)
    cfg = sae.cfg
    assert (cfg.mode, cfg.architecture, cfg.width, cfg.k) == ("pooled", "topk", 3072, 64)
    assert cfg.backbone == "sentence-transformers/all-MiniLM-L6-v2" and cfg.avgdl is None
    assert not [
        p for p in hub.paths_requested("GET") if p.startswith(f"/{repo}/resolve/") and "128_4" in p
    ]

    enc = LatentTermEncoder(sae, backbone)
    texts = ["sparse autoencoders for retrieval", "Qdrant stores dense and sparse vectors"]
    queries = enc.encode_queries(texts)
    codes = sae.encode(torch.from_numpy(queries.dense))
    for vec, idx in zip(queries.sparse, codes.top_indices, strict=True):
        assert 0 < len(vec) <= 64 and set(vec.indices.tolist()) <= set(idx.tolist())
    with pytest.raises(ConfigError, match="calibrate_avgdl"):
        enc.encode_documents(texts)
    enc.calibrate_avgdl(texts)
    assert all(len(v) > 0 for v in enc.encode_documents(texts).sparse)


def test_cli_pull_and_push(hub, tmp_path, monkeypatch, capsys):
    parser = argparse.ArgumentParser(prog="latentlex")
    handlers = add_cli(parser.add_subparsers(dest="command", required=True))
    assert set(handlers) == set(CLI_COMMANDS) == {"pull", "push"}
    sae = tiny_sae()
    sae.save(tmp_path / "sae")

    args = parser.parse_args(["push", str(tmp_path / "sae"), "me/cli", "--dry-run"])
    assert args.handler(args) == 0 and (tmp_path / "sae" / "README.md").is_file()
    assert "me/cli" not in hub.repos

    monkeypatch.setenv("HF_TOKEN", SECRET)
    args = parser.parse_args(["push", str(tmp_path / "sae"), "me/cli", "--public"])
    assert args.handler(args) == 0
    assert not hub.repos["me/cli"].private and "README.md" in hub.files("me/cli")
    assert capsys.readouterr().out.strip().endswith(hub.repos["me/cli"].branches["main"])

    args = parser.parse_args(["pull", "me/cli", "--out", str(tmp_path / "pulled")])
    assert args.handler(args) == 0
    assert SparseAutoencoder.load(tmp_path / "pulled").fingerprint() == sae.fingerprint()
    assert "width 64" in capsys.readouterr().out


def test_push_refuses_offline_and_invalid_input(hub, tmp_path, monkeypatch):
    with pytest.raises(ConfigError):
        push_to_hub(tiny_sae(), "not a repo id", token=SECRET)
    with pytest.raises(SAEFormatError):
        push_to_hub(tmp_path / "missing", "me/x", token=SECRET)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        push_to_hub(tiny_sae(), "me/x", token=SECRET)
    assert "me/x" not in hub.repos
