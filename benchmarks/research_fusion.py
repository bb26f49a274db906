"""Fusion research: how to combine the dense leg, the latent-term leg and a lexical BM25 leg.

    python benchmarks/research_fusion.py DATASET_DIR SAE_DIR [--tune-split train] [--depth 100]

Each leg is searched once, in Qdrant, exactly as ``LatentIndex`` / ``QdrantBm25System`` do
(dense: the backbone's vector; latent: the SAE's latent terms, IDF modifier; bm25: qdrant-edge's
built-in ``Bm25`` sparse vectors), keeping ``--depth`` candidates with their scores per query, for
the tuning split and the test split. The runs are cached (``.cache/research/fusion-*.json``).
Then every fusion rule below is applied client-side to the same candidate lists — the rules
Qdrant can run itself (RRF, weighted RRF, DBSF, formula over leg scores) and a few it cannot —
and scored with ranx. Weights are chosen on the tuning split only; the test split is reported.
Results go to ``benchmarks/results/fusion/<dataset>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
Run = dict[str, dict[str, float]]


def collect(dataset: Path, sae: Path, split: str, depth: int) -> dict[str, Run]:
    """Leg runs (dense, latent, bm25) for one split, searched in Qdrant."""
    from latentlex.backbone import Backbone
    from latentlex.evaluation.baselines import QdrantBm25Only
    from latentlex.evaluation.beir import load_beir
    from latentlex.evaluation.latent import LatentBench, LatentSystem
    from latentlex.terms import LatentTermEncoder

    ds = load_beir(dataset, split=split)
    encoder = LatentTermEncoder(str(sae), Backbone())
    bench = LatentBench(encoder, REPO / ".cache" / "latentlex-eval" / "states" / ds.name)
    runs: dict[str, Run] = {}
    try:
        for name, mode in (("dense", "dense"), ("latent", "sparse")):
            system = LatentSystem(name, bench, mode=mode)
            system.index(ds)
            runs[name] = system.search(ds.queries, depth)
    finally:
        bench.close()
    bm25 = QdrantBm25Only(name="bm25")
    try:
        bm25.index(ds)
        runs["bm25"] = bm25.search(ds.queries, depth)
    finally:
        bm25.close()
    runs["_qrels"] = {q: {d: float(g) for d, g in rel.items()} for q, rel in ds.qrels.items()}
    return runs


# ------------------------------------------------------------------------------ fusion rules


def _ranked(run: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(run.items(), key=lambda kv: (-kv[1], kv[0]))


def rrf(legs: Sequence[Mapping[str, float]], weights: Sequence[float], k: float = 60) -> dict:
    acc: dict[str, float] = {}
    for leg, w in zip(legs, weights, strict=True):
        for rank, (doc, _) in enumerate(_ranked(leg)):
            acc[doc] = acc.get(doc, 0.0) + w / (k + rank)
    return acc


def qrrf(legs: Sequence[Mapping[str, float]], weights: Sequence[float], k: float = 60) -> dict:
    """Qdrant's weighted RRF: ``1 / (rank / w + k - 1)`` with 1-based ranks (a weight scales the rank)."""
    acc: dict[str, float] = {}
    for leg, w in zip(legs, weights, strict=True):
        for rank, (doc, _) in enumerate(_ranked(leg), start=1):
            acc[doc] = acc.get(doc, 0.0) + 1.0 / (rank / w + k - 1)
    return acc


def dbsf(legs: Sequence[Mapping[str, float]], weights: Sequence[float]) -> dict:
    """Qdrant's distribution-based score fusion: each leg's scores mapped by mean ± 3 sd to [0, 1]."""
    acc: dict[str, float] = {}
    for leg, w in zip(legs, weights, strict=True):
        if not leg:
            continue
        s = np.array(list(leg.values()))
        mu, sd = s.mean(), s.std()
        lo, hi = mu - 3 * sd, mu + 3 * sd
        for doc, v in leg.items():
            x = (v - lo) / (hi - lo) if hi > lo else 0.5
            acc[doc] = acc.get(doc, 0.0) + w * float(np.clip(x, 0, 1))
    return acc


def minmax(legs: Sequence[Mapping[str, float]], weights: Sequence[float]) -> dict:
    acc: dict[str, float] = {}
    for leg, w in zip(legs, weights, strict=True):
        if not leg:
            continue
        s = np.array(list(leg.values()))
        lo, hi = s.min(), s.max()
        for doc, v in leg.items():
            acc[doc] = acc.get(doc, 0.0) + w * ((v - lo) / (hi - lo) if hi > lo else 1.0)
    return acc


def maxnorm(legs: Sequence[Mapping[str, float]], weights: Sequence[float]) -> dict:
    """Each leg divided by its top score (a formula Qdrant can run with per-query constants)."""
    acc: dict[str, float] = {}
    for leg, w in zip(legs, weights, strict=True):
        if not leg:
            continue
        top = max(leg.values())
        for doc, v in leg.items():
            acc[doc] = acc.get(doc, 0.0) + w * (v / top if top > 0 else 0.0)
    return acc


RULES: dict[str, Callable[..., dict]] = {
    "rrf": rrf,
    "qrrf": qrrf,
    "dbsf": dbsf,
    "minmax": minmax,
    "maxnorm": maxnorm,
}


def fuse_run(
    runs: dict[str, Run], names: Sequence[str], rule: str, weights: Sequence[float], **kw: float
) -> Run:
    out: Run = {}
    fn = RULES[rule]
    for q in runs["_qrels"]:
        legs = [runs[n].get(q, {}) for n in names]
        fused = fn(legs, weights, **kw)
        out[q] = dict(sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:100])
    return out


def score(run: Run, qrels: Run, metric: str) -> float:
    from latentlex.evaluation.metrics import evaluate

    rel = {q: {d: int(g) for d, g in r.items()} for q, r in qrels.items()}
    return evaluate(run, rel, (metric,))[metric]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("sae", type=Path)
    ap.add_argument("--tune-split", default="train")
    ap.add_argument("--test-split", default="test")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--metric", default=None)
    args = ap.parse_args()
    name = args.dataset.name
    metric = args.metric or ("recall@2" if "limit" in name else "ndcg@10")
    cache = REPO / ".cache" / "research"
    cache.mkdir(parents=True, exist_ok=True)
    data: dict[str, dict[str, Run]] = {}
    for split in dict.fromkeys((args.tune_split, args.test_split)):
        path = cache / f"fusion-{name}-{args.sae.name}-{split}-d{args.depth}.json"
        if path.is_file():
            data[split] = json.loads(path.read_text())
        else:
            data[split] = collect(args.dataset, args.sae, split, args.depth)
            path.write_text(json.dumps(data[split]))
    tune, test = data[args.tune_split], data[args.test_split]

    rows: list[dict] = []

    def add(label: str, names: Sequence[str], rule: str, grid: Sequence[Sequence[float]]) -> None:
        best = max(
            grid, key=lambda w: score(fuse_run(tune, names, rule, w), tune["_qrels"], metric)
        )
        row = {
            "system": label,
            "rule": rule,
            "legs": list(names),
            "weights": list(best),
            f"tune {metric}": score(fuse_run(tune, names, rule, best), tune["_qrels"], metric),
            f"test {metric}": score(fuse_run(test, names, rule, best), test["_qrels"], metric),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    for leg in ("dense", "latent", "bm25"):
        add(leg, [leg], "rrf", [[1.0]])
    ws = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]
    pairs = {"dense+latent": ["dense", "latent"], "dense+bm25": ["dense", "bm25"]}
    for label, names in pairs.items():
        add(f"{label} rrf", names, "rrf", [[1.0, 1.0]])
        for rule in ("rrf", "qrrf", "dbsf", "minmax", "maxnorm"):
            add(f"{label} {rule} tuned", names, rule, [[1.0, w] for w in ws])
    three = ["dense", "latent", "bm25"]
    add("three rrf", three, "rrf", [[1.0, 1.0, 1.0]])
    add("three dbsf", three, "dbsf", [[1.0, 1.0, 1.0]])
    grid3 = [[1.0, a, b] for a, b in itertools.product([0.5, 1.0, 1.5, 2.0, 3.0], repeat=2)]
    for rule in ("rrf", "qrrf", "dbsf", "minmax", "maxnorm"):
        add(f"three {rule} tuned", three, rule, grid3)
    out = REPO / "benchmarks" / "results" / "fusion"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    head = f"| system | weights (dense, latent/bm25, ...) | {args.tune_split} {metric} | {args.test_split} {metric} |"
    lines = [head, "|---|---|---|---|"]
    for r in rows:
        w = ", ".join(f"{x:g}" for x in r["weights"])
        lines.append(
            f"| {r['system']} | {w} | {r[f'tune {metric}']:.4f} | {r[f'test {metric}']:.4f} |"
        )
    (out / f"{name}.md").write_text(
        f"# Fusion research: {name}, SAE {args.sae.name}, depth {args.depth}\n\n"
        + "\n".join(lines)
        + "\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
