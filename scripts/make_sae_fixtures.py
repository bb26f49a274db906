"""Save small SAEs with the real libraries and record their own activations (test fixtures).

Each library runs in its own environment (they pin conflicting dependencies), with the versions
``pyproject.toml``'s ``sae-fixtures-<lib>`` extras pin (torch 2.13.0 CPU first)::

    python3 -m venv /tmp/venv-latentsae && /tmp/venv-latentsae/bin/pip install torch==2.13.0
    /tmp/venv-latentsae/bin/pip install latentsae==0.2.0
    /tmp/venv-latentsae/bin/python scripts/make_sae_fixtures.py latentsae
    # likewise: latentsae==0.1.3 -> latentsae01, eai-sparsify==1.3.3 -> sparsify,
    #           sae-lens==6.54.12 -> saelens

Every SAE is written by the library's own save function, in the layout its Hub repositories use,
under ``tests/fixtures/saes/<library>/<case>/``; beside it ``reference.safetensors`` holds fixed
inputs ``x`` ``[N, d_in]``, the library's own activations ``acts`` (dense ``[N, width]``, from
its own ``encode``) and reconstructions ``recon``, and ``reference.json`` says how it was made and
what latentlex should make of it. ``tests/test_sae_fixtures.py`` checks latentlex against them
(no library needed). Weights are random (seeded) but not degenerate: biases are non-zero and
decoder rows are not unit-norm where the library allows it, so every fold is exercised.

Nothing here is imported by latentlex or its tests.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "saes"
N = 12  # inputs per fixture
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _randomise(module: torch.nn.Module, seed: int, scale: float = 0.3) -> None:
    """Replace every float parameter/buffer with seeded noise (biases small, not zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if not t.is_floating_point() or t.numel() == 0:
                continue
            noise = torch.randn(t.shape, generator=g, dtype=torch.float32)
            small = t.ndim == 1 or "bias" in name or "b_" in name
            t.copy_((noise * (0.1 if small else scale)).to(t.dtype))


def _inputs(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.randn(N, d, generator=g)


def _write(
    folder: Path,
    x: torch.Tensor,
    acts: torch.Tensor,
    recon: torch.Tensor,
    meta: dict[str, Any],
) -> None:
    ref = folder if meta.get("ref_dir") is None else folder / meta.pop("ref_dir")
    ref.mkdir(parents=True, exist_ok=True)
    tensors = {
        "x": x.float().contiguous(),
        "acts": acts.detach().float().contiguous(),
        "recon": recon.detach().float().contiguous(),
    }
    save_file(tensors, str(ref / "reference.safetensors"))
    (ref / "reference.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print(f"{ref}: {meta['case']}")


def _dense(top_acts: torch.Tensor, top_indices: torch.Tensor, width: int) -> torch.Tensor:
    out = torch.zeros(top_acts.shape[0], width, dtype=torch.float32)
    return out.scatter(1, top_indices.long(), top_acts.float())


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


# ----------------------------------------------------------------------------- latentsae 0.2


def make_latentsae() -> None:
    from latentsae.sae import Sae
    from latentsae.utils.config import SaeConfig, SaeType

    lib = f"latentsae {version('latentsae')}"
    base = _fresh(ROOT / "latentsae-0.2")
    d, width = 32, 64

    def one(case: str, seed: int, cfg: SaeConfig, expect: dict[str, Any], tweak=None) -> None:
        sae = Sae(d, cfg, device="cpu")
        _randomise(sae, seed)
        if tweak is not None:
            tweak(sae)
        sae.eval()
        folder = base / case / f"{cfg.k}_{cfg.expansion_factor}"  # the Hub layout: k_expansion
        sae.save_to_disk(folder)
        x = _inputs(d, seed)
        with torch.no_grad():
            out = sae.encode(x)
            recon = sae.decode(out.top_acts, out.top_indices)
        meta = {"library": lib, "case": case, "save": "Sae.save_to_disk", **expect}
        _write(folder, x, _dense(out.top_acts, out.top_indices, width), recon, meta)

    common = {"num_latents": width, "expansion_factor": width // d, "k": 8}
    one(
        "topk",
        1,
        SaeConfig(sae_type=SaeType.TOPK, **common),
        {"format": "latentsae", "mode": "pooled", "architecture": "topk"},
    )
    one(
        "mean-centred",
        2,
        SaeConfig(sae_type=SaeType.TOPK, mean_center=True, **common),
        {"format": "latentsae", "mode": "pooled", "architecture": "topk"},
    )

    def threshold_from_an_activation(sae: Any) -> None:
        # threshold = an activation the SAE really produces for input row 0 (computed on the
        # whole input batch, as encode will): '>=' keeps it, '>' would drop it
        with torch.no_grad():
            pre = sae.pre_acts(_inputs(d, 3))
            sae.batchtopk_threshold.fill_(float(pre[0].topk(5).values[-1]))

    one(
        "batchtopk",
        3,
        SaeConfig(sae_type=SaeType.BATCHTOPK, **common),
        {"format": "latentsae", "mode": "pooled", "architecture": "batchtopk"},
        tweak=threshold_from_an_activation,
    )
    one(
        "matryoshka",
        4,
        SaeConfig(
            sae_type=SaeType.MATRYOSHKA,
            matryoshka_sizes=f"16,{width}",
            matryoshka_ks="4,12",
            **common,
        ),
        {"format": "latentsae", "mode": "pooled", "architecture": "topk", "k": 12},
    )

    def thresholds(sae: Any) -> None:
        with torch.no_grad():
            sae.log_threshold.copy_(torch.linspace(0.02, 0.6, width).log())

    one(
        "jumprelu",
        5,
        SaeConfig(sae_type=SaeType.JUMPRELU, jumprelu_max_active=24, **common),
        {"format": "latentsae", "mode": "pooled", "architecture": "jumprelu"},
        tweak=thresholds,
    )


def make_latentsae01() -> None:
    from latentsae.sae import Sae
    from latentsae.utils.config import SaeConfig

    lib = f"latentsae {version('latentsae')}"
    base = _fresh(ROOT / "latentsae-0.1")
    d, width, k = 32, 64, 8
    cfg = SaeConfig(expansion_factor=width // d, k=k)
    sae = Sae(d, cfg, device="cpu")
    _randomise(sae, 11)
    sae.eval()
    folder = base / "repo" / f"{k}_{width // d}"  # enjalot/... repositories: one folder per k_exp
    sae.save_to_disk(folder)
    x = _inputs(d, 11)
    with torch.no_grad():
        out = sae.encode(x)
        recon = sae.decode(out.top_acts, out.top_indices)
    meta = {
        "library": lib,
        "case": "0.1 no sae_type",
        "save": "Sae.save_to_disk",
        "format": "latentsae",
        "mode": "pooled",
        "architecture": "topk",
        "subfolder": f"{k}_{width // d}",
    }
    _write(folder, x, _dense(out.top_acts, out.top_indices, width), recon, meta)


# ----------------------------------------------------------------------------- sparsify


def make_sparsify() -> None:
    from sparsify.__main__ import RunConfig
    from sparsify.config import SparseCoderConfig
    from sparsify.sparse_coder import SparseCoder

    lib = f"eai-sparsify {version('eai-sparsify')}"
    base = _fresh(ROOT / "sparsify-1.3")

    def coder(d: int, width: int, k: int, seed: int, dtype: torch.dtype) -> Any:
        sae = SparseCoder(d, SparseCoderConfig(num_latents=width, k=k), device="cpu", dtype=dtype)
        _randomise(sae, seed)
        return sae.eval()

    def record(sae: Any, folder: Path, seed: int, meta: dict[str, Any], dtype=None) -> None:
        d, width = sae.d_in, sae.num_latents
        x = _inputs(d, seed)
        with torch.no_grad():
            out = sae.encode(x.to(sae.dtype))
            recon = sae.decode(out.top_acts, out.top_indices)
        full = {"library": lib, "save": "SparseCoder.save_to_disk", **meta}
        _write(folder, x, _dense(out.top_acts, out.top_indices, width), recon, full)

    # per-layer folder, as in EleutherAI's Hub repositories (layers.N/)
    sae = coder(32, 64, 8, 21, torch.float32)
    folder = base / "per-layer" / "layers.6"
    sae.save_to_disk(folder)
    expect = {"format": "sparsify", "mode": "token", "architecture": "topk"}
    record(sae, folder, 21, {"case": "per-layer", **expect})

    # the same in bf16: the library computes in bf16
    sae = coder(32, 64, 8, 22, torch.bfloat16)
    folder = base / "per-layer-bf16" / "layers.6"
    sae.save_to_disk(folder)
    record(sae, folder, 22, {"case": "per-layer bf16", "dtype": "bfloat16", **expect})

    # a trainer checkpoint root, written as Trainer.save writes it (config.json, state.pt, one
    # folder per hookpoint); its run config names the model
    root = base / "trainer-root"
    root.mkdir(parents=True)
    for i, seed in ((0, 23), (1, 24)):
        sae = coder(384, 8, 2, seed, torch.float32)
        sae.save_to_disk(root / f"layers.{i}")
        if i == 0:
            meta = {"case": "trainer root", "subfolder": "layers.0", "backbone": MINILM, **expect}
            record(
                sae, root / "layers.0", seed, {**meta, "ref_dir": "../../trainer-root-reference"}
            )
    run = RunConfig(sae=SparseCoderConfig(num_latents=8, k=2), model=MINILM, layers=[0, 1])
    run.save_json(str(root / "config.json"))
    torch.save({"global_step": 100}, root / "state.pt")


# ----------------------------------------------------------------------------- SAELens


def make_saelens() -> None:
    from sae_lens import (
        SAE,
        JumpReLUSAE,
        JumpReLUSAEConfig,
        JumpReLUTrainingSAE,
        JumpReLUTrainingSAEConfig,
        TopKSAE,
        TopKSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    lib = f"sae-lens {version('sae-lens')}"
    base = _fresh(ROOT / "saelens-6")

    def meta(model: str = "gpt2") -> SAEMetadata:
        return SAEMetadata(model_name=model, hook_name="blocks.4.hook_resid_post")

    def one(
        case: str,
        seed: int,
        sae: Any,
        save: Callable[[Any, Path], Any],
        save_name: str,
        expect: dict[str, Any],
        tweak: Callable[[Any], None] | None = None,
    ) -> None:
        _randomise(sae, seed)
        with torch.no_grad():  # decoder norms spread over 0.5..1.5: the rescale fold matters
            sae.W_dec.mul_(
                torch.linspace(0.5, 1.5, sae.W_dec.shape[0])[:, None]
                / sae.W_dec.norm(dim=1, keepdim=True)
            )
        if tweak is not None:
            tweak(sae)
        sae.eval()
        folder = base / case
        save(sae, folder)
        x = _inputs(sae.cfg.d_in, seed)
        loaded = _reload(sae, folder)  # what a user of the saved folder gets from SAELens
        with torch.no_grad():
            acts = loaded.encode(x)
            recon = loaded.decode(acts)
        if acts.is_sparse:
            acts = acts.to_dense()
        full = {"library": lib, "case": case, "save": save_name, "format": "saelens", **expect}
        _write(folder, x, acts, recon, full)

    def _reload(sae: Any, folder: Path) -> Any:
        """The saved folder loaded by SAELens' own loader (inference SAE classes).

        A BatchTopK ``save_model`` folder has no inference class: SAELens' own path to one is
        ``save_inference_model`` (a JumpReLU SAE), taken here from the reloaded training SAE.
        """
        import tempfile

        if json.loads((folder / "cfg.json").read_text())["architecture"] != "batchtopk":
            return SAE.load_from_disk(folder)
        training = BatchTopKTrainingSAE.load_from_disk(folder)
        with tempfile.TemporaryDirectory() as tmp:
            training.save_inference_model(tmp)
            return SAE.load_from_disk(tmp)

    def infer(sae: Any, folder: Path) -> Any:
        return sae.save_inference_model(folder)

    def model(sae: Any, folder: Path) -> Any:
        return sae.save_model(folder)

    d, width = 32, 64
    token = {"mode": "token"}
    for apply_b_dec in (True, False):
        tag = "" if apply_b_dec else "-no-b-dec"
        one(
            f"topk-inference{tag}",
            31 + apply_b_dec,
            TopKTrainingSAE(
                TopKTrainingSAEConfig(
                    d_in=d,
                    d_sae=width,
                    k=8,
                    rescale_acts_by_decoder_norm=True,
                    apply_b_dec_to_input=apply_b_dec,
                    metadata=meta(),
                )
            ),
            infer,
            "TopKTrainingSAE.save_inference_model",
            {"architecture": "topk", **token},
        )
        one(
            f"topk-model-rescale{tag}",
            33 + apply_b_dec,
            TopKTrainingSAE(
                TopKTrainingSAEConfig(
                    d_in=d,
                    d_sae=width,
                    k=8,
                    rescale_acts_by_decoder_norm=True,
                    apply_b_dec_to_input=apply_b_dec,
                    metadata=meta(),
                )
            ),
            model,
            "TopKTrainingSAE.save_model",
            {"architecture": "topk", **token},
        )
    for norm in ("layer_norm", "constant_norm_rescale"):
        one(
            f"topk-{norm}",
            40 + len(norm),
            TopKSAE(
                TopKSAEConfig(d_in=d, d_sae=width, k=8, normalize_activations=norm, metadata=meta())
            ),
            model,
            "TopKSAE.save_model",
            {"architecture": "topk", "input_norm": norm, **token},
        )
    # the backbone named by metadata.model_name (a sentence-transformers model: 384-d)
    one(
        "topk-minilm",
        45,
        TopKSAE(TopKSAEConfig(d_in=384, d_sae=8, k=3, metadata=meta(MINILM))),
        model,
        "TopKSAE.save_model",
        {"architecture": "topk", "backbone": MINILM, **token},
    )

    def jump_thresholds(sae: Any) -> None:
        with torch.no_grad():
            sae.threshold.copy_(torch.linspace(0.0, 0.6, width))

    one(
        "jumprelu-model",
        51,
        JumpReLUSAE(JumpReLUSAEConfig(d_in=d, d_sae=width, metadata=meta())),
        model,
        "JumpReLUSAE.save_model",
        {"architecture": "jumprelu", **token},
        tweak=jump_thresholds,
    )

    def train_thresholds(sae: Any) -> None:
        with torch.no_grad():
            sae.threshold.copy_(torch.linspace(0.05, 0.5, width).flip(0))

    one(
        "jumprelu-inference",
        52,
        JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=d, d_sae=width, metadata=meta())),
        infer,
        "JumpReLUTrainingSAE.save_inference_model",
        {"architecture": "jumprelu", **token},
        tweak=train_thresholds,
    )

    def batch_threshold(sae: Any) -> None:
        sae.topk_threshold = torch.tensor(0.4, dtype=torch.double)

    for save, name in ((infer, "save_inference_model"), (model, "save_model")):
        one(
            f"batchtopk-{name.replace('_', '-')}",
            53,
            BatchTopKTrainingSAE(
                BatchTopKTrainingSAEConfig(d_in=d, d_sae=width, k=6, metadata=meta())
            ),
            save,
            f"BatchTopKTrainingSAE.{name}",
            {"architecture": "jumprelu", "k": 6, **token},
            tweak=batch_threshold,
        )


def main() -> None:
    makers = {
        "latentsae": make_latentsae,
        "latentsae01": make_latentsae01,
        "sparsify": make_sparsify,
        "saelens": make_saelens,
    }
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("library", choices=sorted(makers))
    args = p.parse_args()
    torch.manual_seed(0)
    makers[args.library]()


if __name__ == "__main__":
    main()
