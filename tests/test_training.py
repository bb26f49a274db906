"""train_sae: learning a known sparse dictionary, AuxK revival, streaming, metrics, config."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from latentlex.errors import ConfigError
from latentlex.sae import BatchTopKSAE, SAEConfig, SparseAutoencoder
from latentlex.training import (
    MAX_HELDOUT_ROWS,
    TrainConfig,
    _heldout_rows,
    _lr_lambda,
    _RowStream,
    default_lr,
    train_sae,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny problems: OpenMP barriers cost more than they save on a shared 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sparse_data(
    n: int, d: int = 32, atoms: int = 64, active: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Rows made of ``active`` unit atoms of a known dictionary, positive weights, tiny noise."""
    rng = np.random.default_rng(seed)
    dictionary = rng.normal(size=(atoms, d))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)
    idx = np.argsort(rng.random((n, atoms)), axis=1)[:, :active]
    weights = rng.uniform(0.5, 2.0, size=(n, active))
    x = np.einsum("na,nad->nd", weights, dictionary[idx]) + 0.01 * rng.normal(size=(n, d))
    return (x + 0.5).astype(np.float32), dictionary


def quiet(**kw: object) -> TrainConfig:
    return TrainConfig(**{"progress": False, **kw})  # type: ignore[arg-type]


def test_learns_a_known_sparse_dictionary() -> None:
    data, dictionary = sparse_data(6_000)
    sae, report = train_sae(
        data, quiet(width=128, k=3, batch_size=256, epochs=10, lr=2e-2), device="cpu"
    )
    # A rank-3 linear code leaves ~90 % of this variance; the sparse structure is found.
    assert report.fvu < 0.1, report.fvu
    assert report.l0 == pytest.approx(3.0)
    atoms = sae.W_dec.detach().numpy()
    best = (dictionary @ atoms.T).max(axis=1)
    assert np.mean(best > 0.9) > 0.8, "most true atoms are recovered as decoder atoms"
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(128))
    m = sae.cfg.metrics
    assert m["fvu"] == report.fvu and m["l0"] == report.l0 and m["dead_pct"] == report.dead_pct
    assert m["tokens_seen"] == report.tokens_seen == 10 * (6_000 - 120) // 256 * 256
    assert report.tokens_per_s > 0 and report.seconds > 0
    assert report.history and report.history[-1]["step"] == report.tokens_seen // 256
    assert report.history[-1]["fvu"] < report.history[0]["fvu"]
    assert not sae.training


def test_auxk_revives_latents_that_never_fire() -> None:
    """Latents that lose every top-k contest get no gradient, unless AuxK gives them one."""
    data, _ = sparse_data(8_000, seed=1)
    x_all = torch.from_numpy(data)
    starved = torch.arange(48)

    def run(auxk_coef: float) -> tuple[int, bool]:
        torch.manual_seed(0)
        sae = SparseAutoencoder(SAEConfig(d_in=32, width=96, k=4))
        with torch.no_grad():
            sae.b_dec.copy_(x_all.mean(0))
            sae.W_enc[starved] *= 0.01  # tiny activations: never among the top 4
        before = sae.W_enc[starved].detach().clone()
        opt = torch.optim.AdamW(sae.parameters(), lr=3e-3, weight_decay=0.0)
        since_fired = torch.zeros(96, dtype=torch.int64)
        for step in range(100):
            x = x_all[(step * 256) % 7_936 :][:256]
            dead = since_fired >= 512
            out = sae(x, dead if bool(dead.any()) else None, k_aux=16)
            (out.fvu + auxk_coef * out.auxk_loss).backward()
            sae.remove_parallel_grad()
            opt.step()
            opt.zero_grad()
            sae.normalize_decoder()
            since_fired += 256
            since_fired[out.top_indices[out.top_acts.detach() > 0]] = 0
        fired = torch.unique(sae.encode(x_all).top_indices)
        revived = int(torch.isin(starved, fired).sum())
        untouched = torch.equal(sae.W_enc[starved].detach(), before)
        return revived, untouched

    revived_without, untouched = run(0.0)
    assert revived_without == 0 and untouched
    revived_with, untouched = run(1.0)
    assert not untouched
    assert revived_with >= 12, revived_with


def test_train_sae_feeds_dead_latents_to_auxk(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    original = SparseAutoencoder.forward

    def spy(self, x, dead_mask=None, *, k_aux=None):  # type: ignore[no-untyped-def]
        seen.append(0 if dead_mask is None else int(dead_mask.sum()))
        assert k_aux == 5
        return original(self, x, dead_mask, k_aux=k_aux)

    monkeypatch.setattr(SparseAutoencoder, "forward", spy)
    data, _ = sparse_data(4_000, d=10, atoms=8, active=1)
    _, report = train_sae(
        data, quiet(width=64, k=1, batch_size=200, epochs=2, dead_tokens=400), device="cpu"
    )
    assert seen[0] == 0 and max(seen) > 0, "8 true atoms, 64 latents: some die and enter AuxK"
    assert report.dead_pct > 0


def test_naive_and_fast_training_agree() -> None:
    data, _ = sparse_data(6_000, seed=2)
    cfg = dict(width=64, k=3, batch_size=500, epochs=1, lr=3e-3, matmul_backend="torch")
    _, fast = train_sae(data, quiet(**cfg), device="cpu")  # type: ignore[arg-type]
    _, naive = train_sae(data, quiet(**cfg, implementation="naive"), device="cpu")  # type: ignore[arg-type]
    assert fast.tokens_seen == naive.tokens_seen
    assert fast.fvu == pytest.approx(naive.fvu, abs=2e-3)
    assert fast.history[-1]["fvu"] == pytest.approx(naive.history[-1]["fvu"], abs=2e-3)


def test_memmap_float16_and_batchtopk_pooled(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data, _ = sparse_data(5_000, seed=3)
    path = tmp_path / "rows.f16"
    mm = np.memmap(path, dtype=np.float16, mode="w+", shape=data.shape)
    mm[:] = data
    mm.flush()
    ro = np.memmap(path, dtype=np.float16, mode="r", shape=data.shape)
    template = SAEConfig(
        d_in=32, width=8192, mode="pooled", backbone="mini", bm25_k1=0.6, bm25_b=2.0
    )
    sae, report = train_sae(
        ro,
        quiet(width=96, k=3, architecture="batchtopk", batch_size=250, epochs=6, lr=1e-2),
        template,
        d_in=32,
        device="cpu",
    )
    assert isinstance(sae, BatchTopKSAE)
    assert (sae.cfg.width, sae.cfg.mode, sae.cfg.backbone, sae.cfg.bm25_b) == (
        96,
        "pooled",
        "mini",
        2.0,
    )
    assert template.width == 8192, "the template is not modified"
    assert sae.cfg.threshold is not None and sae.cfg.threshold > 0
    assert report.fvu < 0.45
    # The calibrated θ gives about k active latents per row on held-out data, varying per row.
    assert 1.5 < report.l0 < 6.0, report.l0
    active = (sae.encode(torch.from_numpy(data[:500])).top_acts > 0).sum(1)
    assert int(active.max()) > int(active.min())


def test_row_stream_covers_training_rows_once_per_epoch() -> None:
    n = 1_000
    data = np.arange(n, dtype=np.float32)[:, None].repeat(2, axis=1)
    rng = np.random.default_rng(0)
    held = _heldout_rows(n, 0.05, rng)
    assert held.size == 50
    stream = _RowStream(data, held, batch_size=50, buffer_rows=200, rng=rng)
    assert stream.chunk_rows < n, "read in chunks"
    batches = iter(stream)
    seen = np.concatenate([next(batches)[:, 0] for _ in range(19)]).astype(int)
    assert len(seen) == 950 == len(set(seen.tolist()))
    assert not set(seen.tolist()) & set(held.tolist())
    assert not np.array_equal(seen[:100], np.sort(seen[:100])), "rows are shuffled"
    second = np.concatenate([next(batches)[:, 0] for _ in range(19)]).astype(int)
    assert sorted(second.tolist()) == sorted(seen.tolist())


def test_heldout_is_capped() -> None:
    rng = np.random.default_rng(0)
    assert _heldout_rows(10_000_000, 0.02, rng).size == MAX_HELDOUT_ROWS
    assert _heldout_rows(10, 0.02, rng).size == 1
    assert _heldout_rows(10, 0.0, rng).size == 0


def test_schedule_and_default_lr() -> None:
    f = _lr_lambda(total=100, warmup=5)
    assert f(0) == pytest.approx(0.2) and f(4) == pytest.approx(1.0)
    assert f(5) == pytest.approx(1.0) and f(99) < 0.01
    assert f(52) == pytest.approx(0.5, abs=0.02)
    assert default_lr(16384) > default_lr(65536) > 0
    assert default_lr(32768) == pytest.approx(1e-3) and default_lr(8192) == pytest.approx(2e-3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0},
        {"k": 9, "width": 8},
        {"architecture": "jumprelu"},
        {"epochs": 0},
        {"batch_size": 0},
        {"lr": -1.0},
        {"warmup_frac": 1.0},
        {"heldout_frac": -0.1},
        {"compute_dtype": "fp16"},
        {"matmul_backend": "mkl"},
        {"implementation": "triton"},
        {"k_aux": 0},
    ],
)
def test_train_config_validation(kwargs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError):
        TrainConfig(**kwargs)


def test_data_validation() -> None:
    cfg = quiet(width=16, k=2, batch_size=8, epochs=1)
    with pytest.raises(ConfigError, match="2-D"):
        train_sae(np.zeros(10, np.float32), cfg)
    with pytest.raises(ConfigError, match="float"):
        train_sae(np.zeros((10, 4), np.int32), cfg)
    with pytest.raises(ConfigError, match="d_in=5"):
        train_sae(np.zeros((10, 4), np.float32), cfg, d_in=5)


def test_tiny_data_and_no_progress_output(capsys) -> None:  # type: ignore[no-untyped-def]
    data, _ = sparse_data(100, d=8, atoms=4, active=1)
    _, report = train_sae(data, TrainConfig(width=16, k=1, epochs=1), device="cpu")
    assert report.tokens_seen == 98  # batch lowered to the 98 training rows
    assert np.isfinite(report.fvu)
    captured = capsys.readouterr()
    assert "SAE" not in captured.err, "no progress bar when stderr is not a terminal"
