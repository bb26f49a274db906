"""The fusion table of BENCHMARKS.md: fixed weightings on every dataset, from the leg runs that
``research_fusion.py`` cached (run it first on scifact, nfcorpus --tune-split dev and limit-small
--tune-split test, with the same SAE):

    python benchmarks/fusion_weights_table.py [--sae scifact-w8192-k16] [--candidates 50]

Each leg keeps its top ``--candidates`` (the library's default for k = 10 is 50), as the engine's
prefetches do. Writes ``benchmarks/results/fusion/weights.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_fusion import REPO, Run, fuse_run, score

#: (label, legs, rule, weights dense, latent, lexical)
ROWS = [
    ("dense + latent, RRF", ["dense", "latent"], "rrf", [1.0, 1.0]),
    ("dense + latent, min-max (1, 3)", ["dense", "latent"], "minmax", [1.0, 3.0]),
    ("dense + lexical, RRF (what Qdrant users run)", ["dense", "bm25"], "rrf", [1.0, 1.0]),
    ("dense + lexical, min-max (1, 1)", ["dense", "bm25"], "minmax", [1.0, 1.0]),
    ("three legs, RRF", ["dense", "latent", "bm25"], "rrf", [1.0, 1.0, 1.0]),
    ("three legs, DBSF", ["dense", "latent", "bm25"], "dbsf", [1.0, 1.0, 1.0]),
    ("three legs, min-max (1, 1, 1)", ["dense", "latent", "bm25"], "minmax", [1.0, 1.0, 1.0]),
    ("three legs, min-max (0.5, 1, 1)", ["dense", "latent", "bm25"], "minmax", [0.5, 1.0, 1.0]),
    (
        "three legs, min-max (0.5, 0.5, 1): the default",
        ["dense", "latent", "bm25"],
        "minmax",
        [0.5, 0.5, 1.0],
    ),
    ("three legs, min-max (0.33, 1, 1)", ["dense", "latent", "bm25"], "minmax", [0.33, 1.0, 1.0]),
]
#: (column, dataset, split, metric)
COLUMNS = [
    ("SciFact train", "scifact", "train", "ndcg@10"),
    ("SciFact test", "scifact", "test", "ndcg@10"),
    ("NFCorpus dev", "nfcorpus", "dev", "ndcg@10"),
    ("NFCorpus test", "nfcorpus", "test", "ndcg@10"),
    ("LIMIT R@2", "limit-small", "test", "recall@2"),
]


def top(runs: dict[str, Run], n: int) -> dict[str, Run]:
    out: dict[str, Run] = {"_qrels": runs["_qrels"]}
    for leg, run in runs.items():
        if leg != "_qrels":
            out[leg] = {
                q: dict(sorted(r.items(), key=lambda kv: (-kv[1], kv[0]))[:n])
                for q, r in run.items()
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sae", default="scifact-w8192-k16")
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--depth", type=int, default=100, help="depth the leg runs were cached at")
    args = ap.parse_args()
    cache = REPO / ".cache" / "research"
    runs = {
        (ds, split): top(
            json.loads((cache / f"fusion-{ds}-{args.sae}-{split}-d{args.depth}.json").read_text()),
            args.candidates,
        )
        for _, ds, split, _ in COLUMNS
    }
    rows = []
    for label, legs, rule, w in ROWS:
        row = {"system": label, "legs": legs, "rule": rule, "weights": w}
        for col, ds, split, metric in COLUMNS:
            r = runs[(ds, split)]
            row[col] = round(score(fuse_run(r, legs, rule, w), r["_qrels"], metric), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = REPO / "benchmarks" / "results" / "fusion" / "weights"
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    lines = [
        f"# Fusion rules at {args.candidates} candidates per leg (SAE {args.sae})",
        "",
        "`python benchmarks/fusion_weights_table.py`; weights (dense, latent, lexical)",
        "",
        "| fusion | " + " | ".join(c for c, *_ in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for row in rows:
        lines.append(
            f"| {row['system']} | " + " | ".join(f"{row[c]:.3f}" for c, *_ in COLUMNS) + " |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
