"""SparseAutoencoder: shapes, fast-vs-naive equivalence, persistence, config validation."""

from __future__ import annotations

import copy
import json
import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from latentlex.errors import BackboneMismatchError, ConfigError, SAEFormatError
from latentlex.sae import (
    ARCHITECTURES,
    MAX_WIDTH,
    SAE_CONFIG_NAME,
    SAE_WEIGHTS_NAME,
    BatchTopKSAE,
    SAEConfig,
    SparseAutoencoder,
    register,
    topk_rows,
)


def _perturbed(cfg: SAEConfig, seed: int = 0) -> SparseAutoencoder:
    """An SAE whose biases and encoder are not at their trivial init."""
    torch.manual_seed(seed)
    sae = SparseAutoencoder(cfg)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(0, 0.2)
        sae.W_enc.add_(0.2 * torch.randn_like(sae.W_enc))
    return sae


def _grads(sae: SparseAutoencoder, fn, x, dead, k_aux):  # type: ignore[no-untyped-def]
    sae.zero_grad(set_to_none=True)
    out = fn(x, dead, k_aux=k_aux)
    (out.fvu + out.auxk_loss / 32).backward()
    return out, {n: p.grad.clone() for n, p in sae.named_parameters() if p.grad is not None}


# ----------------------------------------------------------------------------- shapes, encode


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_encode_shapes_and_dtypes(dtype: torch.dtype) -> None:
    sae = _perturbed(SAEConfig(d_in=16, width=128, k=5))
    out = sae.encode(torch.randn(7, 16).to(dtype))
    assert out.top_acts.shape == (7, 5) and out.top_indices.shape == (7, 5)
    assert out.top_acts.dtype == torch.float32 and out.top_indices.dtype == torch.int64
    assert bool((out.top_acts >= 0).all())
    assert bool((out.top_acts[:, :-1] >= out.top_acts[:, 1:]).all()), "sorted descending"
    empty = sae.encode(torch.zeros(0, 16))
    assert empty.top_acts.shape == (0, 5)


def test_encode_matches_dense_reference() -> None:
    sae = _perturbed(SAEConfig(d_in=24, width=256, k=8))
    x = torch.randn(50, 24)
    out = sae.encode(x)
    dense = torch.relu((x - sae.b_dec) @ sae.W_enc.T + sae.b_enc).detach()
    ref_v, ref_i = dense.topk(8, dim=1)
    torch.testing.assert_close(out.top_acts, ref_v)
    assert torch.equal(out.top_indices, ref_i)


def test_encode_rejects_wrong_dimension() -> None:
    sae = SparseAutoencoder(SAEConfig(d_in=16, width=32, k=4))
    with pytest.raises(BackboneMismatchError, match="dimension 12"):
        sae.encode(torch.randn(3, 12))
    with pytest.raises(ValueError, match="2-D"):
        sae.encode(torch.randn(16))


@pytest.mark.parametrize(("width", "k"), [(8192, 16), (1024, 7), (96, 3), (1000, 4), (64, 64)])
def test_topk_rows_matches_torch_topk(width: int, k: int) -> None:
    pre = torch.randn(33, width)
    v, i = topk_rows(pre, k)
    ref_v, ref_i = pre.topk(k, dim=1)
    assert torch.equal(v.sort(dim=1).values, ref_v.sort(dim=1).values)
    assert torch.equal(i.sort(dim=1).values, ref_i.sort(dim=1).values)
    assert torch.equal(pre.gather(1, i), v)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 9),
    blocks=st.integers(4, 40),
    k=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_topk_rows_property(rows: int, blocks: int, k: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    # Few distinct values: ties are common, the selected *values* must still agree.
    pre = torch.randint(-5, 5, (rows, blocks * 32), generator=g).float()
    k = min(k, blocks // 4) or 1
    v, i = topk_rows(pre, k)
    assert torch.equal(v.sort(dim=1).values, pre.topk(k, dim=1).values.sort(dim=1).values)
    assert torch.equal(pre.gather(1, i), v)
    assert all(len(set(r.tolist())) == k for r in i), "indices unique per row"


def test_decode_matches_dense_and_never_builds_width_matrix() -> None:
    sae = _perturbed(SAEConfig(d_in=12, width=300, k=6))
    enc = sae.encode(torch.randn(20, 12))
    z = torch.zeros(20, 300).scatter(1, enc.top_indices, enc.top_acts)
    torch.testing.assert_close(
        sae.decode(enc.top_acts, enc.top_indices), z @ sae.W_dec.detach() + sae.b_dec.detach()
    )
    # Width 2**20 with 8192 rows: a dense [rows, width] fp32 matrix would be 32 GiB.
    big = SparseAutoencoder(SAEConfig(d_in=4, width=MAX_WIDTH, k=3))
    acts = torch.rand(8192, 3)
    idx = torch.randint(0, MAX_WIDTH, (8192, 3))
    y = big.decode(acts, idx)
    assert y.shape == (8192, 4)
    ref = (acts.unsqueeze(-1) * big.W_dec.detach()[idx]).sum(1) + big.b_dec.detach()
    torch.testing.assert_close(y, ref)


def test_fast_forward_saves_no_dense_width_tensor_for_autograd() -> None:
    sae = _perturbed(SAEConfig(d_in=16, width=2048, k=4))
    x = torch.randn(256, 16)  # weights [2048, 16] are smaller than a [256, 2048] code matrix
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        sae(x).fvu.backward()
    assert saved and max(saved) < 256 * 2048 // 4, "fast path keeps only sparse state"
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        sae.forward_naive(x).fvu.backward()
    assert max(saved) >= 256 * 2048, "the naive reference does keep dense codes"


# ----------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
@pytest.mark.parametrize("with_dead", [False, True])
def test_fast_forward_and_grads_match_naive(arch: str, with_dead: bool) -> None:
    cfg = SAEConfig(d_in=40, width=384, k=6, architecture=arch)
    sae = _perturbed(cfg, seed=1)
    x = torch.randn(200, 40) * 2 + 0.5
    dead = None
    if with_dead:
        dead = torch.zeros(384, dtype=torch.bool)
        dead[torch.randperm(384)[:50]] = True
    fast, g_fast = _grads(sae, sae.forward, x, dead, 20)
    naive, g_naive = _grads(sae, sae.forward_naive, x, dead, 20)
    torch.testing.assert_close(fast.fvu, naive.fvu, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast.auxk_loss, naive.auxk_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast.x_hat, naive.x_hat, rtol=1e-5, atol=1e-5)
    if with_dead:
        assert float(naive.auxk_loss.detach()) > 0
    for name in g_naive:
        torch.testing.assert_close(g_fast[name], g_naive[name], rtol=1e-4, atol=1e-6, msg=name)


def test_numpy_backend_matches_torch_backend() -> None:
    sae = _perturbed(SAEConfig(d_in=32, width=256, k=5))
    x = torch.randn(128, 32)
    ref, g_ref = _grads(sae, sae.forward, x, None, None)
    sae.set_compute("fp32", "numpy")
    out, g_out = _grads(sae, sae.forward, x, None, None)
    torch.testing.assert_close(out.fvu, ref.fvu, rtol=1e-5, atol=1e-6)
    for name in g_ref:
        torch.testing.assert_close(g_out[name], g_ref[name], rtol=1e-4, atol=1e-6)


def test_bf16_compute_is_close_to_fp32() -> None:
    sae = _perturbed(SAEConfig(d_in=64, width=512, k=8))
    x = torch.randn(256, 64)
    with torch.no_grad():
        ref = sae(x)
        sae.set_compute("bf16")
        out = sae(x)
    same = (out.top_indices.sort(1).values == ref.top_indices.sort(1).values).all(1)
    assert float(same.float().mean()) > 0.8
    assert abs(float(out.fvu) - float(ref.fvu)) < 0.02 * float(ref.fvu)
    with pytest.raises(ConfigError):
        sae.set_compute("fp8")
    with pytest.raises(ConfigError):
        sae.set_compute("fp32", "cupy")


def test_decoder_geometry_helpers() -> None:
    sae = _perturbed(SAEConfig(d_in=16, width=64, k=4))
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(64, 1) * 3 + 0.1)
    sae(torch.randn(32, 16)).fvu.backward()
    sae.remove_parallel_grad()
    assert sae.W_dec.grad is not None
    dots = (sae.W_dec.grad * sae.W_dec.detach()).sum(1)
    assert float(dots.abs().max()) < 1e-5
    sae.normalize_decoder()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))


# ----------------------------------------------------------------------------- batchtopk


def test_batchtopk_threshold_tracking_and_inference() -> None:
    cfg = SAEConfig(d_in=16, width=128, k=4, architecture="batchtopk", mode="pooled")
    sae = _perturbed(cfg)
    assert isinstance(sae, BatchTopKSAE)
    x = torch.randn(64, 16)
    # Training keeps k*B activations over the whole batch, rows vary.
    out = sae(x)
    active = (out.top_acts > 0).sum(1)
    assert int(active.sum()) == 4 * 64
    assert int(active.max()) > int(active.min())
    assert sae.threshold_estimate() is None  # not tracking yet
    sae.track_threshold = True
    kept_mins = []
    for _ in range(3):
        acts = sae(torch.randn(64, 16)).top_acts.detach()
        kept_mins.append(float(acts[acts > 0].min()))
    assert sae.threshold_estimate() == pytest.approx(np.mean(kept_mins), rel=1e-6)
    # Without a calibrated θ inference falls back to per-row top-k.
    enc = sae.encode(x)
    assert enc.top_acts.shape == (64, 4)
    # With θ: every kept activation is > θ, padding is zero, at most max_active per row.
    sae.cfg.threshold = float(sae.threshold_estimate() or 0.0)
    enc = sae.encode(x)
    assert enc.top_acts.shape == (64, cfg.effective_max_active)
    nz = enc.top_acts[enc.top_acts > 0]
    assert bool((nz > sae.cfg.threshold).all())
    dense = torch.relu((x - sae.b_dec) @ sae.W_enc.T + sae.b_enc).detach()
    expected = (dense > sae.cfg.threshold).sum(1).clamp(max=cfg.effective_max_active)
    assert torch.equal((enc.top_acts > 0).sum(1), expected)
    sae.cfg.threshold *= 2
    assert int((sae.encode(x).top_acts > 0).sum()) < int(expected.sum())


# ----------------------------------------------------------------------------- registry, identity


def test_constructor_dispatches_on_architecture_and_copies() -> None:
    sae = SparseAutoencoder(SAEConfig(d_in=8, width=16, k=2, architecture="batchtopk"))
    assert type(sae) is BatchTopKSAE
    assert type(copy.deepcopy(sae)) is BatchTopKSAE
    with pytest.raises(ConfigError, match="cannot run"):
        BatchTopKSAE(SAEConfig(d_in=8, width=16, k=2))
    assert set(ARCHITECTURES) >= {"topk", "batchtopk"}


def test_fingerprint_is_stable_and_sensitive() -> None:
    sae = _perturbed(SAEConfig(d_in=8, width=32, k=3))
    fp = sae.fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert sae.fingerprint() == fp
    assert copy.deepcopy(sae).fingerprint() == fp
    with torch.no_grad():
        sae.W_dec[0, 0] += 1e-3
    assert sae.fingerprint() != fp
    other = copy.deepcopy(sae)
    other.cfg.k = 4
    assert other.fingerprint() != sae.fingerprint()


def test_check_backbone() -> None:
    sae = SparseAutoencoder(
        SAEConfig(
            d_in=8, width=16, k=2, backbone="mini", backbone_fingerprint="abc", backbone_dim=8
        )
    )
    sae.check_backbone("mini", "abc", 8)
    sae.check_backbone("mini", None, 8)  # unknown fingerprint: dims decide
    with pytest.raises(BackboneMismatchError, match=r"'mini'.*dim 8.*'big'.*dim 768"):
        sae.check_backbone("big", "abc", 768)
    with pytest.raises(BackboneMismatchError, match=r"fingerprint abc.*fingerprint zzz"):
        sae.check_backbone("mini-2", "zzz", 8)


# ----------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_save_load_round_trip_is_bit_identical(tmp_path, arch: str) -> None:  # type: ignore[no-untyped-def]
    cfg = SAEConfig(
        d_in=16, width=96, k=4, architecture=arch, backbone="mini", metrics={"fvu": 0.25}
    )
    sae = _perturbed(cfg)
    if arch == "batchtopk":
        sae.cfg.threshold = 0.3
    sae.save(tmp_path / "sae")
    assert {p.name for p in (tmp_path / "sae").iterdir()} == {SAE_CONFIG_NAME, SAE_WEIGHTS_NAME}
    loaded = SparseAutoencoder.load(tmp_path / "sae")
    assert type(loaded) is type(sae)
    assert loaded.cfg == sae.cfg
    assert loaded.fingerprint() == sae.fingerprint()
    assert all(p.requires_grad for p in loaded.parameters())
    x = torch.randn(40, 16)
    a, b = sae.encode(x), loaded.encode(x)
    assert torch.equal(a.top_acts, b.top_acts) and torch.equal(a.top_indices, b.top_indices)
    assert torch.equal(sae.decode(*a), loaded.decode(*b))
    # A loaded SAE can keep training.
    loaded(x).fvu.backward()
    assert loaded.W_enc.grad is not None


def _saved(tmp_path):  # type: ignore[no-untyped-def]
    folder = tmp_path / "sae"
    SparseAutoencoder(SAEConfig(d_in=8, width=32, k=3)).save(folder)
    return folder


def _edit_cfg(folder, **changes):  # type: ignore[no-untyped-def]
    path = folder / SAE_CONFIG_NAME
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


def test_load_missing_folder_and_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SAEFormatError, match="no such SAE folder"):
        SparseAutoencoder.load(tmp_path / "nope")
    folder = _saved(tmp_path)
    (folder / SAE_WEIGHTS_NAME).unlink()
    with pytest.raises(SAEFormatError, match=r"sae\.safetensors: missing"):
        SparseAutoencoder.load(folder)
    (folder / SAE_CONFIG_NAME).unlink()
    with pytest.raises(SAEFormatError, match=r"cfg\.json: missing"):
        SparseAutoencoder.load(folder)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "(not valid|invalid) JSON"),
        ("[1, 2]", "must hold a JSON object"),
        (b"\xff\xfe\x00", "not valid (JSON|UTF-8)"),
    ],
)
def test_load_invalid_json(tmp_path, content, match) -> None:  # type: ignore[no-untyped-def]
    folder = _saved(tmp_path)
    path = folder / SAE_CONFIG_NAME
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(SAEFormatError, match=rf"cfg\.json: {match}"):
        SparseAutoencoder.load(folder)


def test_load_unknown_architecture(tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = _saved(tmp_path)
    _edit_cfg(folder, architecture="gated")
    with pytest.raises(SAEFormatError, match=r"cfg\.json: unknown architecture 'gated'"):
        SparseAutoencoder.load(folder)


@pytest.mark.parametrize(
    "changes",
    [{"width": 2**31}, {"d_in": 10**6}, {"k": 0}, {"width": "8192"}, {"format_version": 99}],
)
def test_load_refuses_hostile_or_invalid_config(tmp_path, monkeypatch, changes) -> None:  # type: ignore[no-untyped-def]
    folder = _saved(tmp_path)
    _edit_cfg(folder, **changes)

    def no_alloc(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("allocated before validating")

    monkeypatch.setattr(torch, "randn", no_alloc)
    with pytest.raises(SAEFormatError, match=r"cfg\.json: invalid SAE config"):
        SparseAutoencoder.load(folder)


def test_load_corrupt_safetensors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = _saved(tmp_path)
    path = folder / SAE_WEIGHTS_NAME
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SAEFormatError, match=r"sae\.safetensors: .*(corrupt|does not fit)"):
        SparseAutoencoder.load(folder)
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(SAEFormatError, match=r"sae\.safetensors: .*(corrupt|invalid)"):
        SparseAutoencoder.load(folder)


def test_load_shape_mismatch_and_bad_tensors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file

    folder = _saved(tmp_path)
    _edit_cfg(folder, width=64)
    with pytest.raises(SAEFormatError, match=r"W_(enc|dec) has shape \(32, 8\).*\(64, 8\)"):
        SparseAutoencoder.load(folder)
    _edit_cfg(folder, width=32)
    good = {
        "W_enc": torch.zeros(32, 8),
        "b_enc": torch.zeros(32),
        "W_dec": torch.zeros(32, 8),
        "b_dec": torch.zeros(8),
    }
    save_file({k: v for k, v in good.items() if k != "b_dec"}, str(folder / SAE_WEIGHTS_NAME))
    with pytest.raises(SAEFormatError, match=r"missing tensors \['b_dec'\]|expected"):
        SparseAutoencoder.load(folder)
    save_file({**good, "b_dec": torch.full((8,), float("nan"))}, str(folder / SAE_WEIGHTS_NAME))
    with pytest.raises(SAEFormatError, match="NaN"):
        SparseAutoencoder.load(folder)
    save_file({**good, "b_dec": torch.zeros(8, dtype=torch.int32)}, str(folder / SAE_WEIGHTS_NAME))
    with pytest.raises(SAEFormatError, match="non-float"):
        SparseAutoencoder.load(folder)


def test_registry_plugs_in_new_architecture(tmp_path) -> None:  # type: ignore[no-untyped-def]
    @register("test-double-k")
    class DoubleK(SparseAutoencoder):
        def _select_infer(self, pre):  # type: ignore[no-untyped-def]
            v, i = topk_rows(pre, 2 * self.cfg.k)
            return v.clamp_min_(0), i

    try:
        sae = SparseAutoencoder(SAEConfig(d_in=8, width=32, k=2, architecture="test-double-k"))
        assert type(sae) is DoubleK
        sae.save(tmp_path / "x")
        loaded = SparseAutoencoder.load(tmp_path / "x")
        assert type(loaded) is DoubleK
        assert loaded.encode(torch.randn(3, 8)).top_acts.shape == (3, 4)
    finally:
        del ARCHITECTURES["test-double-k"]


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0},
        {"width": MAX_WIDTH + 1},
        {"d_in": 0},
        {"d_in": 16385},
        {"k": 0},
        {"k": 65},
        {"architecture": "nope"},
        {"mode": "sentence"},
        {"threshold": -1.0},
        {"threshold": float("nan")},
        {"max_active": 0},
        {"max_active": 65},
        {"bm25_k1": -1},
        {"avgdl": float("inf")},
        {"width": True},
        {"metrics": {"fvu": "low"}},
        {"backbone": 3},
        {"format_version": 2},
    ],
)
def test_config_validation(kwargs) -> None:  # type: ignore[no-untyped-def]
    base = {"d_in": 8, "width": 64, "k": 4}
    with pytest.raises(ConfigError):
        SAEConfig(**{**base, **kwargs})


def test_from_dict_is_lenient_but_not_about_versions(caplog) -> None:  # type: ignore[no-untyped-def]
    cfg = SAEConfig(d_in=8, width=64, k=4, mode="pooled", query_k2=1.5, metrics={"l0": 4.0})
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert SAEConfig.from_dict(d) == cfg
    with caplog.at_level(logging.WARNING, logger="latentlex.sae"):
        got = SAEConfig.from_dict({**d, "hook_name": "blocks.6", "dtype": "float32"})
    assert got == cfg
    assert "hook_name" in caplog.text and "dtype" in caplog.text
    with pytest.raises(ConfigError, match="newer"):
        SAEConfig.from_dict({**d, "format_version": 7})
    with pytest.raises(ConfigError, match="d_in"):
        SAEConfig.from_dict({"width": 64})
    with pytest.raises(ConfigError):
        SAEConfig.from_dict([1, 2])  # type: ignore[arg-type]
    assert SAEConfig(d_in=8, k=4, architecture="batchtopk").effective_max_active == 16


# ----------------------------------------------------------------------------- JumpReLU, layering


def _jumprelu(width: int = 32, d: int = 8, **cfg) -> SparseAutoencoder:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=d, width=width, k=4, architecture="jumprelu", **cfg))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.2)
        sae.threshold.copy_(torch.linspace(-0.2, 0.8, width))  # one threshold per latent
    return sae


def test_jumprelu_keeps_each_latent_over_its_own_threshold() -> None:
    sae = _jumprelu()
    x = torch.randn(50, 8)
    pre = (x - sae.b_dec) @ sae.W_enc.detach().T + sae.b_enc.detach()
    ref = torch.relu(pre) * (pre > sae.threshold)  # SAELens' JumpReLU
    out = sae.encode(x)
    dense = torch.zeros(50, 32).scatter_add(1, out.top_indices, out.top_acts)
    assert torch.allclose(dense, ref, atol=1e-6)
    counts = (ref > 0).sum(1)
    assert out.top_acts.shape[1] == int(counts.max()) and int(counts.min()) < int(counts.max())
    one_by_one = torch.cat(
        [  # blocks of different widths are padded to one
            torch.zeros(1, 32).scatter_add(1, o.top_indices, o.top_acts)
            for o in (sae.encode(x[i : i + 1]) for i in range(50))
        ]
    )
    assert torch.allclose(one_by_one, ref, atol=1e-6)


def test_jumprelu_cap_save_load_and_no_training(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sae = _jumprelu(max_active=3)
    x = torch.randn(20, 8)
    out = sae.encode(x)
    assert out.top_acts.shape[1] <= 3
    sae.save(tmp_path / "j")
    back = SparseAutoencoder.load(tmp_path / "j")
    assert type(back).__name__ == "JumpReLUSAE" and torch.equal(back.threshold, sae.threshold)
    assert back.fingerprint() == sae.fingerprint()
    assert torch.equal(back.encode(x).top_acts, out.top_acts)
    with pytest.raises(ConfigError, match="inference-only"):
        sae.forward(x)


def test_input_norm_encodes_normalised_rows_and_is_not_trained() -> None:
    torch.manual_seed(1)
    sae = SparseAutoencoder(SAEConfig(d_in=8, width=32, k=4, input_norm="layer_norm"))
    x = torch.randn(6, 8) * 3 + 1
    ln = (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-5)
    plain = SparseAutoencoder(SAEConfig(d_in=8, width=32, k=4))
    plain.load_state_dict(sae.state_dict())
    assert torch.equal(sae.encode(x).top_indices, plain.encode(ln).top_indices)
    out = plain.encode(ln)
    y = plain.decode(out.top_acts, out.top_indices)
    undone = y * x.std(1, keepdim=True) + x.mean(1, keepdim=True)
    assert torch.allclose(sae.reconstruct(x), undone, atol=1e-5)
    assert sae.fingerprint() != plain.fingerprint()
    with pytest.raises(ConfigError, match="normalises its inputs"):
        sae.forward(x)
    with pytest.raises(ConfigError, match="input_norm"):
        SAEConfig(d_in=8, width=32, k=4, input_norm="whitening")


def test_batchtopk_keeps_an_activation_equal_to_the_threshold() -> None:
    from latentlex.sae import BatchTopKSAE

    torch.manual_seed(2)
    sae = SparseAutoencoder(SAEConfig(d_in=8, width=32, k=4, architecture="batchtopk"))
    assert isinstance(sae, BatchTopKSAE)
    x = torch.randn(1, 8)
    pre = (x - sae.b_dec) @ sae.W_enc.detach().T + sae.b_enc.detach()
    sae.cfg.threshold = float(pre.max())  # exactly the largest activation
    acts = sae.encode(x).top_acts
    assert int((acts > 0).sum()) == 1  # '>=' keeps it ('>' kept nothing)


def test_load_dtype_file_keeps_bf16(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sae = SparseAutoencoder(SAEConfig(d_in=8, width=32, k=4)).to(torch.bfloat16)
    sae.save(tmp_path / "b")
    assert SparseAutoencoder.load(tmp_path / "b").W_enc.dtype == torch.float32
    kept = SparseAutoencoder.load(tmp_path / "b", dtype="file")
    assert kept.W_enc.dtype == torch.bfloat16
    assert kept.encode(torch.randn(3, 8)).top_acts.dtype == torch.float32


def test_modules_are_layered() -> None:
    """The SAE model imports nothing of formats, loading, the Hub, terms or labels (no cycle)."""
    import subprocess
    import sys

    code = (
        "import sys, latentlex.sae, latentlex.converters, latentlex.loading;"
        "bad = [m for m in ('latentlex.hub', 'latentlex.hub_download', 'latentlex.terms',"
        " 'latentlex.labels', 'latentlex.card') if m in sys.modules];"
        "import latentlex.hub; bad += [m for m in ('latentlex.terms', 'latentlex.labels')"
        " if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert not hasattr(SparseAutoencoder, "from_pretrained")
