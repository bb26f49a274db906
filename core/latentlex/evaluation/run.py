"""``latentlex eval``: every system on one BEIR dataset, in one run, with one harness.

The backbone runs over the corpus once: its token states (for the SAE) and its dense vectors (for the
``dense`` baseline and every hybrid) come from the same forward pass and are cached on disk, so
comparing systems, or SAEs, never re-encodes the corpus.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["ALL_SYSTEMS", "DEFAULT_SYSTEMS", "run_eval"]

#: name -> search options of latentlex's own systems (all fused inside Qdrant).
LATENT_SYSTEMS: dict[str, dict[str, Any]] = {
    "latent": {"mode": "sparse"},
    # two legs: dense + latent terms
    "hybrid-rrf": {"mode": "hybrid", "fusion": "rrf"},
    "hybrid-wrrf": {"mode": "hybrid", "fusion": "rrf", "weights": (1.0, 2.0)},
    "hybrid-dbsf": {"mode": "hybrid", "fusion": "dbsf"},
    "hybrid-minmax": {"mode": "hybrid", "fusion": "minmax"},
    # three legs: dense + latent terms + lexical BM25 (qdrant-edge's Bm25 vectors), all in Qdrant
    "hybrid3-rrf": {"mode": "hybrid", "fusion": "rrf", "lexical": True},
    "hybrid3-dbsf": {"mode": "hybrid", "fusion": "dbsf", "lexical": True},
    "hybrid": {"mode": "hybrid", "lexical": True},  # LatentIndex's defaults
}
BASELINES = ("dense", "bm25", "qdrant-bm25", "dense+bm25")
#: client-side RRF of the two-leg hybrid with bm25s (a research row; superseded by hybrid3-*).
EXTRA = ("hybrid+bm25",)
ALL_SYSTEMS = (*BASELINES, *LATENT_SYSTEMS, *EXTRA)
DEFAULT_SYSTEMS = (*BASELINES, *LATENT_SYSTEMS)


def _dense_cache(states: Any, ds: Any, cache_dir: Path, model: str | None = None) -> None:
    """Put the dense vectors of the shared forward pass into the dense baselines' cache."""
    from .baselines import DenseEncoder

    enc = DenseEncoder(model, cache_dir=cache_dir)
    if enc.cache is None or enc.cache.load(enc.model_key, ds.fingerprint) is not None:
        return
    row = {doc_id: i for i, doc_id in enumerate(states.doc_ids)}
    dense = np.asarray(states.dense, dtype=np.float32)[[row[d] for d in ds.doc_ids]]
    dense /= np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)
    enc.cache.save(enc.model_key, ds.fingerprint, dense, float(states.meta.get("seconds") or 0.0))


def _significance(results: list[dict[str, Any]], qrels: Any, metric: str) -> None:
    """Paired t-tests of the default ``hybrid`` against every other system on ``metric``, stored
    under the hybrid's ``"significance"``; the runs themselves are dropped afterwards."""
    from .metrics import paired_test

    runs = {r["system"]: r.pop("run") for r in results if "run" in r}
    if "hybrid" not in runs:
        return
    tests = {}
    for name, run in runs.items():
        if name != "hybrid":
            t = paired_test(run, runs["hybrid"], qrels, metric)
            tests[name] = {"diff": t.diff, "p": t.p_value, "n": t.n_queries}
    next(r for r in results if r["system"] == "hybrid")["significance"] = {
        "metric": metric,
        "test": "paired t-test (scipy ttest_rel), hybrid minus the other system",
        "vs": tests,
    }


def run_eval(
    dataset: str | os.PathLike[str],
    *,
    sae: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | None = None,
    fit: dict[str, Any] | None = None,
    systems: Sequence[str] = DEFAULT_SYSTEMS,
    split: str = "test",
    out_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] = ".cache/latentlex-eval",
    metrics: Sequence[str] | None = None,
    n_queries: int | None = None,
    k: int = 100,
) -> list[dict[str, Any]]:
    """Evaluate systems on a BEIR folder and (optionally) write JSON, Markdown and plots.

    Args:
        dataset: a BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).
        sae: an SAE folder (or Hub id) for the latent systems.
        model: the backbone (sentence-transformers name or path; default: the packaged
            all-MiniLM-L6-v2). The dense baselines, the token states and a fitted SAE all use it,
            so every system of the run reads the same model.
        fit: instead of ``sae``, fit one on the dataset's own corpus with these
            :class:`~latentlex.fit.FitConfig` fields (cached under ``cache_dir``).
        systems: names from :data:`ALL_SYSTEMS`.
        split: qrels split to evaluate.
        out_dir: where to write ``results.json``, ``results.md`` and PNGs.
        metrics: ranx metric names (default: nDCG@10, R@10, R@100, MRR@10; LIMIT-style sets get R@2..R@100).
        n_queries: evaluate a random subset of this many queries (quick mode).
        k: documents retrieved per query.
    """
    from ..backbone import Backbone
    from ..sae import SparseAutoencoder
    from ..states import encode_token_states, states_folder_name
    from ..terms import LatentTermEncoder, load_sae
    from .baselines import BM25System, DenseEncoder, DenseSystem, QdrantBm25System, RRFSystem
    from .beir import load_beir, subset
    from .latent import LatentBench, LatentSystem
    from .metrics import DEFAULT_METRICS, LIMIT_METRICS
    from .report import run_systems, write_report

    unknown = [s for s in systems if s not in ALL_SYSTEMS]
    if unknown:
        raise ConfigError(f"unknown systems {unknown}; choose from {list(ALL_SYSTEMS)}")
    ds = load_beir(Path(dataset), split=split)
    if n_queries is not None and n_queries < len(ds.queries):
        ds = subset(ds, n_queries, seed=0)
    if metrics is None:
        metrics = LIMIT_METRICS if "limit" in ds.name.lower() else DEFAULT_METRICS
    cache = Path(cache_dir)
    needs_latent = any(s in LATENT_SYSTEMS or s in EXTRA for s in systems)

    model_name = None if model is None else str(model)
    backbone = Backbone(model_name)
    states = encode_token_states(
        backbone,
        ds.doc_ids,
        ds.doc_texts(),
        cache / "states" / states_folder_name(ds.name, backbone),
    )
    _dense_cache(states, ds, cache, model_name)

    encoder = None
    if needs_latent:
        if sae is not None:
            sae_model = load_sae(str(sae))
            same = sae_model.cfg.layer == backbone.layer and (
                sae_model.cfg.keep_special_tokens == backbone.keep_special_tokens
            )
            # an SAE reading other layers (or special tokens) gets its own reading of the model
            reader = backbone
            if not same:
                reader = Backbone(
                    model_name if model_name is not None else sae_model.cfg.backbone,
                    layer=sae_model.cfg.layer,
                    keep_special_tokens=sae_model.cfg.keep_special_tokens,
                )
            encoder = LatentTermEncoder(sae_model, reader)
        elif fit is not None:
            from ..fit import FitConfig, fit_sae

            cfg = FitConfig(**fit)
            fit_bb = backbone  # the final layer's states are cached above: no second pass
            if cfg.layer != backbone.layer or cfg.keep_special_tokens:
                fit_bb = Backbone(
                    model_name, layer=cfg.layer, keep_special_tokens=cfg.keep_special_tokens
                )
            reads = states_folder_name(ds.name, fit_bb)[len(ds.name) :]  # "" or "-L...", "-special"
            sae_dir = (
                cache
                / "saes"
                / (
                    f"{ds.name}-{ds.fingerprint[:12]}-w{cfg.width}-k{cfg.k}-{cfg.mode}"
                    f"-e{cfg.epochs:g}-s{cfg.seed}-t{cfg.budget or 'all'}{reads}"
                )
            )
            if (sae_dir / "cfg.json").is_file():
                sae_model = SparseAutoencoder.load(sae_dir)
            else:
                from ..corpus import Document

                docs = [Document(i, t) for i, t in zip(ds.doc_ids, ds.doc_texts(), strict=True)]
                states_dir = cache / "states" / states_folder_name(ds.name, fit_bb)
                if fit_bb is not backbone:  # the latent systems read all of them: encode once,
                    # so that the fit samples its documents from this cache (no second pass)
                    encode_token_states(fit_bb, ds.doc_ids, ds.doc_texts(), states_dir)
                cfg = FitConfig(**{**cfg.__dict__, "cache_dir": str(states_dir)})
                sae_model = fit_sae(docs, sae_dir, cfg, backbone=fit_bb)
            encoder = LatentTermEncoder(sae_model, fit_bb)
        else:
            raise ConfigError("the latent systems need sae=... (an SAE folder) or fit={...}")

    dense_enc = DenseEncoder(model_name, cache_dir=cache)
    made: dict[str, Any] = {}

    def system(name: str) -> Any:
        if name in made:
            return made[name]
        if name == "dense":
            made[name] = DenseSystem(dense_enc)
        elif name == "bm25":
            made[name] = BM25System()
        elif name == "qdrant-bm25":
            made[name] = QdrantBm25System(dense_enc, name="qdrant-bm25")
        elif name == "dense+bm25":
            made[name] = RRFSystem([system("dense"), system("bm25")], name="dense+bm25")
        elif name in LATENT_SYSTEMS:
            if "bench" not in made:
                assert encoder is not None
                folder = states_folder_name(ds.name, encoder.backbone)
                made["bench"] = LatentBench(encoder, cache / "states" / folder)
            made[name] = LatentSystem(name, made["bench"], **LATENT_SYSTEMS[name])
        elif name == "hybrid+bm25":
            made[name] = RRFSystem([system("hybrid-rrf"), system("bm25")], name="hybrid+bm25")
        return made[name]

    try:
        results = run_systems(
            ds, [system(s) for s in systems], k=k, metrics=metrics, keep_runs=True
        )
    finally:
        for obj in made.values():
            close = getattr(obj, "close", None)
            if close is not None:
                close()
    if "bench" in made:
        for r in results:
            if r["system"] in LATENT_SYSTEMS or r["system"] in EXTRA:
                r["latent_stats"] = made["bench"].stats
        if encoder is not None:
            for r in results:
                r["sae"] = {
                    "width": encoder.sae.cfg.width,
                    "k": encoder.sae.cfg.k,
                    "mode": encoder.sae.cfg.mode,
                    "fingerprint": encoder.sae.fingerprint(),
                }
    _significance(results, ds.qrels, metrics[0])
    for r in results:
        r["backbone_seconds"] = states.meta.get("seconds")
    if out_dir is not None:
        write_report(results, Path(out_dir), title=f"latentlex eval: {ds.name} ({split})")
        Path(out_dir, "results_full.json").write_text(json.dumps(results, indent=1, default=str))
    return results
