"""Retrieval metrics through ranx, with the edge cases BEIR runs hit made safe.

Runs are ``{query_id: {doc_id: score}}``; qrels are ``{query_id: {doc_id: grade}}``. Every judged
query counts: a query missing from the run (or with no hit) scores 0; run queries without
judgements are ignored. Metric names are ranx's (``ndcg@10``, ``recall@100``, ``mrr@10``,
``precision@5``, ...); ``ndcg`` is the trec_eval/BEIR formulation (linear gain).

Example:
    >>> qrels = {"q1": {"d1": 1, "d2": 1}}
    >>> run = {"q1": {"d1": 2.0, "x": 1.0}}
    >>> evaluate(run, qrels, ("recall@10",))  # doctest: +SKIP
    {'recall@10': 0.5}
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from latentlex.errors import ConfigError

__all__ = [
    "DEFAULT_METRICS",
    "LIMIT_METRICS",
    "PairedTest",
    "Run",
    "evaluate",
    "evaluate_per_query",
    "paired_test",
]

logger = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]
"""Ranked results: ``{query_id: {doc_id: score}}``."""

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
"""The BEIR-style metric set."""

LIMIT_METRICS: tuple[str, ...] = ("recall@2", "recall@10", "recall@20", "recall@100")
"""The LIMIT-style metric set (Weller et al. 2025 report recall@2/@10/@100)."""


def _judged(qrels: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    # Queries with no positive judgement are undefined for recall/nDCG: trec_eval skips them.
    return {q: dict(rel) for q, rel in qrels.items() if any(g > 0 for g in rel.values())}


def evaluate_per_query(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, dict[str, float]]:
    """Per-query metric values.

    Args:
        run: ``{query_id: {doc_id: score}}``; higher scores rank first.
        qrels: ``{query_id: {doc_id: grade}}``; grades > 0 are relevant.
        metrics: ranx metric names.

    Returns:
        ``{metric: {query_id: value}}`` over the judged queries (those with at least one
        relevant document), in qrels order. Queries absent from the run score 0.
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    if not metrics:
        raise ConfigError("metrics must name at least one metric, e.g. ('ndcg@10',)")
    judged = _judged(qrels)
    if not judged:
        raise ConfigError("qrels hold no relevant judgement: nothing to evaluate")
    qids = list(judged)
    run_q = {q: {str(d): float(s) for d, s in run.get(q, {}).items()} for q in qids}
    for q, hits in run_q.items():
        if any(math.isnan(s) for s in hits.values()):
            raise ValueError(f"run for query {q!r} contains NaN scores")
    if not any(run_q.values()):
        # ranx cannot build a run without a single hit; every metric is 0 then.
        return {m: dict.fromkeys(qids, 0.0) for m in metrics}

    from ranx import Qrels as RxQrels
    from ranx import Run as RxRun
    from ranx import evaluate as rx_evaluate

    rx_qrels = RxQrels(judged)
    try:
        values = rx_evaluate(
            rx_qrels,
            RxRun(run_q),
            list(metrics),
            return_mean=False,
            make_comparable=True,
        )
    except (KeyError, NameError) as exc:
        raise ConfigError(f"unknown metric in {metrics}: {exc}") from exc
    if len(metrics) == 1:
        values = {metrics[0]: values}
    order = list(rx_qrels.keys())  # ranx's per-query arrays follow its qrels order
    out: dict[str, dict[str, float]] = {}
    for m in metrics:
        arr = np.asarray(values[m], dtype=np.float64)
        by_q = dict(zip(order, arr.tolist(), strict=True))
        out[m] = {q: by_q[q] for q in qids}
    return out


def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, float]:
    """Mean of each metric over the judged queries.

    Args:
        run: ``{query_id: {doc_id: score}}``.
        qrels: ``{query_id: {doc_id: grade}}``.
        metrics: ranx metric names.

    Returns:
        ``{metric: mean value}`` as plain floats.

    Example:
        >>> evaluate({"q": {"a": 1.0}}, {"q": {"a": 1, "b": 1}}, ("recall@10",))  # doctest: +SKIP
        {'recall@10': 0.5}
    """
    per_q = evaluate_per_query(run, qrels, metrics)
    return {m: float(np.mean(list(v.values()))) for m, v in per_q.items()}


@dataclass(frozen=True)
class PairedTest:
    """The outcome of a paired significance test between two runs on one metric."""

    metric: str
    mean_a: float
    mean_b: float
    p_value: float
    method: str
    n_queries: int

    @property
    def diff(self) -> float:
        """``mean_b - mean_a``."""
        return self.mean_b - self.mean_a

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether ``p_value < alpha``."""
        return self.p_value < alpha


def paired_test(
    run_a: Mapping[str, Mapping[str, float]],
    run_b: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    metric: str = "ndcg@10",
    method: str = "ttest",
) -> PairedTest:
    """Paired two-sided significance test of ``run_b`` against ``run_a`` over the judged queries.

    Args:
        run_a: The baseline run.
        run_b: The run compared with it.
        qrels: Relevance judgements.
        metric: One ranx metric name.
        method: ``"ttest"`` (paired Student t, scipy ``ttest_rel``) or ``"wilcoxon"``
            (signed-rank, zero differences dropped).

    Returns:
        The means, the p-value (1.0 when the runs score identically on every query) and ``n``.
    """
    from scipy import stats

    if method not in ("ttest", "wilcoxon"):
        raise ConfigError(f"method must be 'ttest' or 'wilcoxon', got {method!r}")
    a_q = evaluate_per_query(run_a, qrels, (metric,))[metric]
    b_q = evaluate_per_query(run_b, qrels, (metric,))[metric]
    a = np.array([a_q[q] for q in a_q])
    b = np.array([b_q[q] for q in a_q])
    diff = b - a
    if not np.any(diff):
        p = 1.0
    elif method == "ttest":
        p = float(stats.ttest_rel(b, a).pvalue)
        if math.isnan(p):  # constant non-zero difference: the variance is zero
            p = 0.0
    else:
        p = float(stats.wilcoxon(b, a, zero_method="wilcox").pvalue)
    return PairedTest(
        metric=metric,
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        p_value=p,
        method=method,
        n_queries=int(a.size),
    )
