"""Run systems side by side and write the results: JSON, a Markdown table and PNG plots.

A result is a plain dict (one per system and dataset)::

    {"dataset": "scifact", "system": "bm25", "n_docs": 5183, "n_queries": 300, "k": 100,
     "metrics": {"ndcg@10": 0.686, ...}, "index_seconds": 1.9, "index_docs_per_s": 2727.9,
     "query_p50_ms": 0.8, "query_p95_ms": 1.4, "query_mean_ms": 0.9, "batch_qps": 1450.2}

Latency is measured the same way for every system, in the same loops
(:class:`~latentlex.evaluation.baselines.BaseSystem`): ``query_p50_ms``/``query_p95_ms`` are one
query at a time, each encoded and searched alone (encoding included); ``batch_qps`` is queries per
second when all the queries are encoded in one batched call and then searched one by one.

Plots use matplotlib's object API on the Agg canvas (no pyplot, no global backend change).

Example:
    >>> results = run_systems(ds, [BM25System(), DenseSystem()])  # doctest: +SKIP
    >>> write_report(results, "runs/scifact")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentlex.evaluation.baselines import System
from latentlex.evaluation.beir import BeirDataset
from latentlex.evaluation.metrics import DEFAULT_METRICS, evaluate

__all__ = [
    "fit_zipf_slope",
    "markdown_table",
    "plot_metric_bars",
    "plot_rank_frequency",
    "plot_recall_curves",
    "run_systems",
    "write_report",
]

logger = logging.getLogger(__name__)

_NOT_SERIALISED = ("run",)

#: The speed columns of :func:`markdown_table`, after ``index docs/s``.
SPEED_COLUMNS = ("1-query p50 ms", "1-query p95 ms", "batched queries/s")
SPEED_NOTE = (
    "Speed, measured the same way for every system, in the same loops: index docs/s counts "
    "corpus encoding (also when cached); 1-query p50/p95 ms: one query at a time, each encoded "
    "and searched alone, encoding included; batched queries/s: all queries encoded in one batched "
    "call, then searched one by one (encoding included)."
)


def run_systems(
    ds: BeirDataset,
    systems: Iterable[System],
    k: int = 100,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    keep_runs: bool = False,
) -> list[dict[str, Any]]:
    """Index, search and evaluate each system on ``ds``, timing both phases.

    Args:
        ds: The dataset.
        systems: Systems to compare (indexed in turn; a system already holding this corpus is
            not re-indexed).
        k: Documents retrieved per query (at least the largest cut-off in ``metrics``).
        metrics: ranx metric names.
        keep_runs: Also return each run under ``"run"`` (not written by :func:`write_report`),
            e.g. for :func:`~latentlex.evaluation.metrics.paired_test`.

    Returns:
        One result dict per system (see the module docstring).
    """
    cutoffs = [int(m.split("@", 1)[1]) for m in metrics if "@" in m]
    if cutoffs and k < max(cutoffs):
        logger.warning("k=%d is below the metric cut-off %d", k, max(cutoffs))
    results = []
    for system in systems:
        system.index(ds)
        run = system.search(ds.queries, k)
        scores = evaluate(run, ds.qrels, metrics)
        lat_ms = np.asarray(getattr(system, "query_seconds", []) or [], dtype=np.float64) * 1e3
        throughput = getattr(system, "throughput", None)
        qps = float(throughput(ds.queries, k)) if callable(throughput) else None
        index_s = getattr(system, "index_seconds", None)
        result: dict[str, Any] = {
            "dataset": ds.name,
            "system": system.name,
            "n_docs": len(ds.corpus),
            "n_queries": len(ds.queries),
            "k": k,
            "metrics": scores,
            "index_seconds": index_s,
            "index_docs_per_s": (len(ds.corpus) / index_s) if index_s else None,
            "query_p50_ms": float(np.percentile(lat_ms, 50)) if lat_ms.size else None,
            "query_p95_ms": float(np.percentile(lat_ms, 95)) if lat_ms.size else None,
            "query_mean_ms": float(lat_ms.mean()) if lat_ms.size else None,
            "batch_qps": qps,
        }
        if keep_runs:
            result["run"] = run
        logger.info(
            "%s / %s: %s",
            ds.name,
            system.name,
            ", ".join(f"{m} {v:.4f}" for m, v in scores.items()),
        )
        results.append(result)
    return results


# --------------------------------------------------------------------------- tables


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int | float):
        return f"{value:.{digits}f}"
    return str(value)


def _metric_names(results: Sequence[Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for r in results:
        names.update(dict.fromkeys(r.get("metrics", {})))
    return list(names)


def _datasets(results: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["dataset"] for r in results))


def markdown_table(results: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown table per dataset: systems × metrics, plus speed columns."""
    parts = []
    for name in _datasets(results):
        rows = [r for r in results if r["dataset"] == name]
        metrics = _metric_names(rows)
        first = rows[0]
        parts.append(
            f"### {name} ({first.get('n_docs', '?')} docs, {first.get('n_queries', '?')} queries)"
        )
        parts.append("")
        head = ["system", *metrics, "index docs/s", *SPEED_COLUMNS]
        parts.append("| " + " | ".join(head) + " |")
        parts.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for r in rows:
            cells = [str(r["system"])]
            cells += [_fmt(r.get("metrics", {}).get(m), 3) for m in metrics]
            cells += [
                _fmt(r.get("index_docs_per_s"), 1),
                _fmt(r.get("query_p50_ms"), 2),
                _fmt(r.get("query_p95_ms"), 2),
                _fmt(r.get("batch_qps"), 1),
            ]
            parts.append("| " + " | ".join(cells) + " |")
        parts.append("")
    return "\n".join(parts)


# --------------------------------------------------------------------------- plots


def _figure(width: float = 7.0, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.replace("@", "_at_")).strip("_")


def plot_metric_bars(results: Sequence[Mapping[str, Any]], metric: str, path: str | Path) -> Path:
    """Grouped bar chart of one metric: datasets on the x axis, one bar per system.

    Only datasets evaluated with ``metric`` appear.
    """
    results = [r for r in results if r.get("metrics", {}).get(metric) is not None]
    if not results:
        raise ValueError(f"no result has the metric {metric!r}")
    datasets = _datasets(results)
    systems = list(dict.fromkeys(r["system"] for r in results))
    values = np.full((len(systems), len(datasets)), np.nan)
    for r in results:
        v = r.get("metrics", {}).get(metric)
        if v is not None:
            values[systems.index(r["system"]), datasets.index(r["dataset"])] = v
    fig = _figure(max(5.0, 1.6 + 1.1 * len(datasets) * max(1, len(systems)) ** 0.5), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(systems), 1)
    x = np.arange(len(datasets))
    for i, system in enumerate(systems):
        bars = ax.bar(x + (i - (len(systems) - 1) / 2) * width, values[i], width, label=system)
        ax.bar_label(bars, fmt="%.3f", fontsize=6, padding=1)
    ax.set_xticks(x, datasets)
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.05)
    ax.set_title(metric)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    return out


def _recall_points(metrics: Mapping[str, float]) -> list[tuple[int, float]]:
    pts = []
    for name, v in metrics.items():
        m = re.fullmatch(r"recall@(\d+)", name)
        if m:
            pts.append((int(m.group(1)), float(v)))
    return sorted(pts)


def plot_recall_curves(
    results: Sequence[Mapping[str, Any]], dataset: str, path: str | Path
) -> Path:
    """Recall@k against k (log axis) for every system on one dataset."""
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    all_ks: set[int] = set()
    for r in results:
        if r["dataset"] != dataset:
            continue
        pts = _recall_points(r.get("metrics", {}))
        if pts:
            ks, vs = zip(*pts, strict=True)
            all_ks.update(ks)
            ax.plot(ks, vs, marker="o", label=r["system"])
    ax.set_xscale("log")
    ax.set_xticks(sorted(all_ks), [str(k) for k in sorted(all_ks)])
    ax.minorticks_off()
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{dataset}: recall@k")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    return out


def fit_zipf_slope(freqs: np.ndarray, min_freq: float = 5.0, n_points: int = 60) -> float:
    """Slope of log(frequency) against log(rank), fitted by least squares.

    Frequencies are sorted in decreasing order; ranks whose frequency is below ``min_freq``
    (the noisy tail of singletons) are left out, and the fit uses ``n_points`` ranks spaced
    evenly in log rank so every decade weighs the same. A Zipf law ``f ∝ r^-s`` gives ``-s``.

    Args:
        freqs: Frequencies (term or document counts), any order; zeros are ignored.
        min_freq: Smallest frequency kept in the fit.
        n_points: Log-spaced ranks used.

    Returns:
        The slope (negative for a decreasing law); NaN with fewer than 3 usable ranks.
    """
    f = np.sort(np.asarray(freqs, dtype=np.float64).ravel())[::-1]
    f = f[f >= max(min_freq, np.finfo(float).tiny)]
    if f.size < 3:
        return float("nan")
    ranks = np.unique(np.geomspace(1, f.size, num=min(n_points, f.size)).round().astype(int))
    x, y = np.log(ranks), np.log(f[ranks - 1])
    slope, _ = np.polyfit(x, y, 1)
    return float(slope)


def plot_rank_frequency(
    doc_freqs: np.ndarray,
    path: str | Path,
    *,
    label: str = "latent terms",
    reference: Mapping[str, np.ndarray] | None = None,
    min_freq: float = 5.0,
    title: str = "rank–frequency",
) -> float:
    """The "Zipf" plot of a vocabulary: frequency against rank on log–log axes.

    Args:
        doc_freqs: One frequency per vocabulary entry (e.g. the document frequency of each
            latent); zeros (unused entries) are dropped and counted in the legend.
        path: PNG file to write.
        label: Legend label of ``doc_freqs``.
        reference: Other vocabularies drawn for comparison, ``{label: freqs}`` (e.g. words).
        min_freq: Passed to :func:`fit_zipf_slope`.
        title: Plot title.

    Returns:
        The fitted slope of ``doc_freqs`` (see :func:`fit_zipf_slope`).
    """
    fig = _figure(6.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    series = {label: np.asarray(doc_freqs)}
    series.update({k: np.asarray(v) for k, v in (reference or {}).items()})
    slope = float("nan")
    for i, (name, freqs) in enumerate(series.items()):
        f = np.sort(freqs[freqs > 0].astype(np.float64))[::-1]
        s = fit_zipf_slope(f, min_freq=min_freq)
        if i == 0:
            slope = s
        if f.size == 0:
            continue
        zeros = int(freqs.size - f.size)
        extra = f", {zeros} unused" if zeros else ""
        ax.loglog(
            np.arange(1, f.size + 1), f, lw=1.2, label=f"{name} (n={f.size}{extra}, slope {s:.2f})"
        )
    ax.set_xlabel("rank")
    ax.set_ylabel("frequency")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(Path(path))
    return slope


# --------------------------------------------------------------------------- report


def _jsonable(r: Mapping[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [conv(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    return {k: conv(v) for k, v in r.items() if k not in _NOT_SERIALISED}


def write_report(
    results: Sequence[Mapping[str, Any]], out_dir: str | Path, title: str = "latentlex evaluation"
) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and PNG plots into ``out_dir``.

    Plots: ``bar_<metric>.png`` for every metric, and ``recall_<dataset>.png`` for datasets
    evaluated at three or more recall@k cut-offs (the LIMIT-style sets, see ``LIMIT_METRICS``).

    Args:
        results: Result dicts from :func:`run_systems` (several datasets may be mixed).
        out_dir: Output folder (created).
        title: Heading of the Markdown file.

    Returns:
        ``{"json": ..., "markdown": ..., <plot name>: ...}`` paths.
    """
    if not results:
        raise ValueError("no results to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    payload = [_jsonable(r) for r in results]
    paths["json"] = out / "results.json"
    paths["json"].write_text(json.dumps(payload, indent=2, allow_nan=False), encoding="utf-8")
    paths["markdown"] = out / "results.md"
    paths["markdown"].write_text(
        f"# {title}\n\n{markdown_table(results)}\n{SPEED_NOTE}\n",
        encoding="utf-8",
    )
    for metric in _metric_names(results):
        key = f"bar_{_safe(metric)}"
        paths[key] = plot_metric_bars(results, metric, out / f"{key}.png")
    for name in _datasets(results):
        rows = [r for r in results if r["dataset"] == name]
        if any(len(_recall_points(r.get("metrics", {}))) >= 3 for r in rows):
            key = f"recall_{_safe(name)}"
            paths[key] = plot_recall_curves(rows, name, out / f"{key}.png")
    logger.info("report written to %s (%d files)", out, len(paths))
    return paths
