"""The model card (``README.md``) written beside an SAE pushed to the Hub."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from .hub_download import REPO_ID, library_version

if TYPE_CHECKING:
    from .sae import SparseAutoencoder

__all__ = ["CARD_NAME", "model_card"]

CARD_NAME = "README.md"

_TRAIN_METRICS = {
    "fvu": ("FVU (held-out)", "{:.3f}"),
    "l0": ("L0 (active latents per row)", "{:.1f}"),
    "dead_pct": ("dead latents", "{:.2f} %"),
    "train_vectors": ("training vectors", "{:,.0f}"),
    "train_docs": ("training documents", "{:,.0f}"),
    "seconds_total": ("fit time (s)", "{:,.0f}"),
}


_EVAL_KEY = re.compile(r"@|ndcg|recall|mrr|map|precision|accuracy|eval", re.IGNORECASE)
"""Metrics shown under "Evaluation" (the others are training details)."""


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() and abs(value) < 1e15 else f"{value:.4g}"


def _hub_model_id(name: str | None) -> str | None:
    if name is None:
        return None
    from .backbone import DEFAULT_MODEL

    if name == DEFAULT_MODEL:
        return "sentence-transformers/all-MiniLM-L6-v2"
    return name if REPO_ID.match(name) and not Path(name).exists() else None


def model_card(sae: SparseAutoencoder, repo_id: str, *, has_labels: bool = False) -> str:
    """The ``README.md`` model card of an SAE: metadata, figures and a usage snippet.

    Example:
        >>> print(model_card(sae, "me/minilm-latent-terms"))  # doctest: +SKIP
    """
    cfg = sae.cfg
    version = library_version()
    base = _hub_model_id(cfg.backbone)
    meta = ["---", "library_name: latentlex", "tags:"]
    tags = ("latentlex", "sparse-autoencoder", "sae", "retrieval", "latent-terms")
    meta += [f"- {t}" for t in tags]
    if base:
        meta.append(f"base_model: {base}")
    meta.append("---")
    mode_text = (
        "token: one code per token state, summed per text (Latent Terms)"
        if cfg.mode == "token"
        else "pooled: one code per pooled text embedding (CL-SR)"
    )
    arch = f"{cfg.architecture}, k = {cfg.k}"
    if cfg.architecture == "batchtopk":
        arch += f", threshold {cfg.threshold}, at most {cfg.effective_max_active} active"
    rows = [("backbone", f"`{cfg.backbone}` (dim {cfg.backbone_dim or cfg.d_in})")]
    if cfg.backbone_fingerprint:
        rows.append(("backbone fingerprint", f"`{cfg.backbone_fingerprint}`"))
    rows += [
        ("mode", mode_text),
        ("architecture", arch),
        ("width", f"{cfg.width:,} latents"),
    ]
    m = cfg.metrics
    rows += [(label, f.format(m[key])) for key, (label, f) in _TRAIN_METRICS.items() if key in m]
    bm25 = f"k1 = {cfg.bm25_k1}, b = {cfg.bm25_b}"
    if cfg.query_k2 is not None:
        bm25 += f", query k2 = {cfg.query_k2}"
    rows += [
        ("BM25", bm25),
        ("avgdl", "not calibrated" if cfg.avgdl is None else f"{cfg.avgdl:.2f}"),
        ("SAE fingerprint", f"`{sae.fingerprint()}`"),
        ("latentlex", version),
    ]
    table = ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    rest = sorted(k for k in m if k not in _TRAIN_METRICS)
    evaluation: list[str] = []
    scores = [k for k in rest if _EVAL_KEY.search(k)]
    if scores:
        evaluation = ["## Evaluation", "", "| metric | value |", "|---|---|"]
        evaluation += [f"| {k} | {_num(m[k])} |" for k in scores]
        evaluation.append("")
    details = [k for k in rest if k not in scores]
    if details:
        evaluation += ["## Training details", "", "| | |", "|---|---|"]
        evaluation += [f"| {k} | {_num(m[k])} |" for k in details]
        evaluation.append("")
    files = ["- `cfg.json`: the configuration (sizes, mode, backbone, BM25 parameters, metrics)"]
    files.append("- `sae.safetensors`: `W_enc` [width, d], `b_enc`, `W_dec` [width, d], `b_dec`")
    if has_labels:
        files.append("- `labels.json`: human-readable labels of the latents")
    calibrate = (
        ""
        if cfg.avgdl is not None
        else "encoder.calibrate_avgdl(sample_of_your_documents)  # this SAE has no avgdl yet\n"
    )
    name = repo_id.split("/")[-1]
    return "\n".join(
        [
            *meta,
            "",
            f"# {name}",
            "",
            f"A sparse autoencoder that turns `{cfg.backbone}` embeddings into **latent terms** "
            "for hybrid retrieval with [latentlex](https://pypi.org/project/latentlex/): "
            "`z = TopK_k(ReLU(W_enc (x - b_dec) + b_enc))`, `x_hat = W_dec^T z + b_dec`; the "
            "active latent ids, BM25-weighted, are stored as a sparse vector beside the dense "
            "vector in Qdrant.",
            "",
            *table,
            "",
            *evaluation,
            "## Usage",
            "",
            "```bash",
            f'pip install "latentlex=={version}"',
            "```",
            "",
            "```python",
            "from latentlex import LatentTermEncoder",
            "from latentlex.hub import from_pretrained",
            "",
            f'sae = from_pretrained("{repo_id}")',
            "encoder = LatentTermEncoder(sae)",
            calibrate + 'docs = encoder.encode_documents(["Qdrant stores sparse vectors."])',
            'queries = encoder.encode_queries(["where are sparse vectors stored?"])',
            "```",
            "",
            f"From the command line: `latentlex index --corpus corpus.jsonl --sae {repo_id}`.",
            "",
            "## Files",
            "",
            *files,
            "",
        ]
    )
