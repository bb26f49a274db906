"""Evaluation harness: BEIR loading, ranx metrics, baseline systems, reports and plots.

Heavy dependencies (ranx, bm25s, sentence-transformers, qdrant-edge, matplotlib) load on
first use, so importing this package is cheap. Needs the ``eval`` extra.

Example:
    >>> from latentlex.evaluation import (
    ...     BM25System, DenseEncoder, DenseSystem, RRFSystem, load_beir, run_systems, write_report
    ... )
    >>> ds = load_beir("/work/shared/data/scifact")  # doctest: +SKIP
    >>> enc = DenseEncoder()  # the packaged all-MiniLM-L6-v2, corpus embeddings cached
    >>> bm25, dense = BM25System(), DenseSystem(enc)
    >>> results = run_systems(ds, [bm25, dense, RRFSystem([dense, bm25])])  # doctest: +SKIP
    >>> write_report(results, "runs/scifact")  # doctest: +SKIP
"""

from __future__ import annotations

from latentlex.evaluation.baselines import (
    DEFAULT_CACHE_DIR,
    BaseSystem,
    BM25System,
    DenseEncoder,
    DenseSystem,
    EmbeddingCache,
    NotIndexedError,
    QdrantBm25Only,
    QdrantBm25System,
    RRFSystem,
    System,
    rrf_fuse,
    top_k,
)
from latentlex.evaluation.beir import BeirDataset, Document, Qrels, doc_text, load_beir, subset
from latentlex.evaluation.metrics import (
    DEFAULT_METRICS,
    LIMIT_METRICS,
    PairedTest,
    Run,
    evaluate,
    evaluate_per_query,
    paired_test,
)
from latentlex.evaluation.report import (
    fit_zipf_slope,
    markdown_table,
    plot_metric_bars,
    plot_rank_frequency,
    plot_recall_curves,
    run_systems,
    write_report,
)

__all__ = [
    "DEFAULT_CACHE_DIR",
    "DEFAULT_METRICS",
    "LIMIT_METRICS",
    "BM25System",
    "BaseSystem",
    "BeirDataset",
    "DenseEncoder",
    "DenseSystem",
    "Document",
    "EmbeddingCache",
    "NotIndexedError",
    "PairedTest",
    "QdrantBm25Only",
    "QdrantBm25System",
    "Qrels",
    "RRFSystem",
    "Run",
    "System",
    "doc_text",
    "evaluate",
    "evaluate_per_query",
    "fit_zipf_slope",
    "load_beir",
    "markdown_table",
    "paired_test",
    "plot_metric_bars",
    "plot_rank_frequency",
    "plot_recall_curves",
    "rrf_fuse",
    "run_systems",
    "subset",
    "top_k",
    "write_report",
]
