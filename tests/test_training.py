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


# ----------------------------------------------------------------------------- fit budget


def test_choose_documents_is_seeded_nested_and_within_budget() -> None:
    from latentlex.sampling import choose_documents

    lengths = np.random.default_rng(3).integers(5, 60, size=2_000)
    small = choose_documents(2_000, 5_000, 0, lambda pos: lengths[pos])
    large = choose_documents(2_000, 20_000, 0, lambda pos: lengths[pos])
    assert 0 < lengths[small].sum() <= 5_000 and 0 < lengths[large].sum() <= 20_000
    assert lengths[small].sum() > 5_000 - 60  # stops only when the next document would not fit
    assert set(small) < set(large)  # one seeded order: a larger budget extends the sample
    assert np.all(np.diff(large) > 0)
    other = choose_documents(2_000, 5_000, 1, lambda pos: lengths[pos])
    assert set(other) != set(small)
    everything = choose_documents(2_000, 10**9, 0, lambda pos: lengths[pos])
    assert np.array_equal(everything, np.arange(2_000))
    # the first document is taken even when it alone exceeds the budget
    assert len(choose_documents(2_000, 1, 0, lambda pos: lengths[pos])) == 1
    # only the documents visited are counted
    asked: list[int] = []
    choose_documents(2_000, 600, 0, lambda pos: asked.extend(pos.tolist()) or lengths[pos])
    assert len(asked) <= 512


def test_fit_config_budget_defaults_and_all_is_explicit() -> None:
    from latentlex.fit import FitConfig
    from latentlex.sampling import DEFAULT_MAX_TOKENS

    assert FitConfig().budget == DEFAULT_MAX_TOKENS
    assert FitConfig(mode="pooled").budget is None  # pooled rows are documents: all of them
    assert FitConfig(max_tokens="all").budget is None
    assert FitConfig(max_tokens=None).budget is None
    assert FitConfig(max_tokens=1234).budget == 1234
    for bad in (0, -5, "lots", 1.5, True):
        with pytest.raises(ConfigError, match="max_tokens"):
            FitConfig(max_tokens=bad)  # type: ignore[arg-type]


def test_fit_config_epochs_default_by_mode_and_cli_leaves_them_to_it() -> None:
    """6 passes over the token budget's sample (token mode), 3 in pooled mode; the CLI's --epochs
    default is the library's, and an explicit value wins everywhere."""
    from latentlex.cli import build_parser
    from latentlex.fit import FitConfig

    assert FitConfig().epochs == 6.0
    assert FitConfig(mode="pooled").epochs == 3.0
    assert FitConfig(epochs=1.5).epochs == 1.5
    assert FitConfig(mode="pooled", epochs=2).epochs == 2
    with pytest.raises(ConfigError, match="epochs"):
        FitConfig(epochs=0)
    parser = build_parser()
    train = parser.parse_args(["train", "--corpus", "c.jsonl", "--out", "o"])
    ev = parser.parse_args(["eval", "--dataset", "d", "--fit"])
    assert train.epochs is None and ev.epochs is None
    assert parser.parse_args(["train", "--corpus", "c", "--out", "o", "--epochs", "2"]).epochs == 2


_WORDS = [
    "otter",
    "tapir",
    "quokka",
    "lemur",
    "heron",
    "falcon",
    "comet",
    "nebula",
    "quasar",
    "enzyme",
    "protein",
    "kinase",
    "glacier",
    "delta",
    "basalt",
    "granite",
    "sonnet",
    "ballad",
    "fugue",
    "violin",
]


def _corpus(n: int) -> list:  # type: ignore[type-arg]
    from latentlex.corpus import Document

    rng = np.random.default_rng(0)
    return [
        Document(f"d{i}", " ".join(rng.choice(_WORDS, size=int(rng.integers(3, 25)))))
        for i in range(n)
    ]


def test_fit_samples_whole_documents_within_the_budget_and_records_it(backbone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With a budget, only the sampled documents are run through the backbone, the SAE trains
    on their token states alone, avgdl is measured on them, and the config records it all."""
    from unittest import mock

    from latentlex.fit import fit_sae
    from latentlex.sae import SparseAutoencoder
    from latentlex.sampling import token_counts
    from latentlex.terms import LatentTermEncoder

    docs = _corpus(120)
    counts = token_counts(backbone, [d.text for d in docs])
    budget = int(counts.sum() // 4)
    encoded: list[str] = []
    real = backbone.forward

    def forward(texts, **kw):  # type: ignore[no-untyped-def]
        encoded.extend(texts)
        return real(texts, **kw)

    with mock.patch.object(backbone, "forward", side_effect=forward):
        sae = fit_sae(
            docs, tmp_path / "sae", backbone=backbone, width=64, k=4, epochs=1,
            progress=False, max_tokens=budget, seed=3,
        )  # fmt: skip
    rec = sae.cfg.fit_sample
    assert rec is not None
    assert rec["budget_tokens"] == budget and rec["seed"] == 3 and rec["corpus_docs"] == 120
    assert isinstance(rec["tokens"], int) and isinstance(rec["docs"], int)
    assert 0 < rec["tokens"] <= budget and rec["docs"] < 60
    assert len(encoded) == rec["docs"]  # the rest of the corpus never went through the backbone
    sampled = [d for d in docs if d.text in set(encoded)]
    assert int(token_counts(backbone, [d.text for d in sampled]).sum()) == rec["tokens"]
    assert sae.cfg.metrics["train_docs"] == rec["docs"]
    assert sae.cfg.metrics["train_vectors"] == rec["tokens"]
    # avgdl: the sample's mean latent-term length, not the corpus'
    probe = LatentTermEncoder(SparseAutoencoder.load(tmp_path / "sae"), backbone)
    assert probe.sae.cfg.fit_sample == rec  # saved with the SAE
    on_sample = probe.calibrate_avgdl([d.text for d in sampled])
    assert sae.cfg.avgdl == pytest.approx(on_sample, rel=1e-4)
    on_corpus = probe.calibrate_avgdl([d.text for d in docs])
    assert on_corpus != pytest.approx(on_sample, rel=1e-6)


def test_fit_samples_from_cached_states_without_a_backbone_pass(backbone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A cache holding the whole corpus (latentlex eval's) is sampled in place: same documents
    as the uncached path, no forward pass; "all" trains on every token of it."""
    from unittest import mock

    from latentlex.fit import fit_sae
    from latentlex.states import encode_token_states

    docs = _corpus(80)
    ids, texts = [d.id for d in docs], [d.text for d in docs]
    full = encode_token_states(backbone, ids, texts, tmp_path / "states", progress=False)
    total = int(full.meta["total_tokens"])
    kw = {"backbone": backbone, "width": 32, "k": 4, "epochs": 1, "progress": False}
    uncached = fit_sae(docs, None, max_tokens=total // 3, **kw)  # type: ignore[arg-type]
    with mock.patch.object(backbone, "forward", side_effect=AssertionError("re-encoded")):
        cached = fit_sae(
            docs, None, max_tokens=total // 3, cache_dir=str(tmp_path / "states"), **kw
        )  # type: ignore[arg-type]
        every = fit_sae(docs, None, max_tokens="all", cache_dir=str(tmp_path / "states"), **kw)  # type: ignore[arg-type]
    a, b = uncached.cfg.fit_sample, cached.cfg.fit_sample
    assert a is not None and b is not None
    assert (a["tokens"], a["docs"]) == (b["tokens"], b["docs"])
    assert b["corpus_tokens"] == total and a["corpus_tokens"] is None  # never counted uncached
    assert cached.cfg.avgdl == pytest.approx(uncached.cfg.avgdl, rel=1e-4)
    assert every.cfg.fit_sample == {
        "budget_tokens": "all", "seed": 0, "corpus_docs": 80, "corpus_tokens": total,
        "tokens": total, "docs": 80,
    }  # fmt: skip
    assert every.cfg.metrics["train_vectors"] == total


def test_cli_max_tokens_takes_a_number_or_all() -> None:
    import argparse

    from latentlex.cli import _budget_arg, build_parser

    assert _budget_arg("all") == "all" and _budget_arg("250_000") == 250_000
    for bad in ("0", "-3", "many"):
        with pytest.raises(argparse.ArgumentTypeError, match="max-tokens"):
            _budget_arg(bad)
    args = build_parser().parse_args(["train", "--corpus", "c", "--out", "o"])
    assert args.max_tokens == "auto"
    args = build_parser().parse_args(["eval", "--dataset", "d", "--fit", "--max-tokens", "all"])
    assert args.max_tokens == "all"


def test_fit_on_states_samples_stored_documents(backbone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """fit_on_states: the budget's sample of already encoded states, no backbone pass."""
    from unittest import mock

    from latentlex.fit import fit_on_states
    from latentlex.states import encode_token_states

    docs = _corpus(60)
    st = encode_token_states(
        backbone, [d.id for d in docs], [d.text for d in docs], tmp_path / "s", progress=False
    )
    total = int(st.meta["total_tokens"])
    with mock.patch.object(backbone, "forward", side_effect=AssertionError("re-encoded")):
        sae = fit_on_states(
            st, backbone, width=32, k=4, epochs=1, progress=False, max_tokens=total // 2
        )
    rec = sae.cfg.fit_sample
    assert rec is not None and rec["corpus_tokens"] == total and rec["corpus_docs"] == 60
    assert isinstance(rec["tokens"], int) and total // 2 - 80 < rec["tokens"] <= total // 2
    assert sae.cfg.metrics["train_vectors"] == rec["tokens"] and sae.cfg.avgdl
