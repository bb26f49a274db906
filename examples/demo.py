"""The latentlex demo, fully offline.

1. Fit a token-mode SAE on the packaged all-MiniLM-L6-v2 (text: Python's standard-library docstrings,
   present on every machine, plus the corpus being searched), or reuse the one fitted last time.
2. Index LIMIT-small (46 documents, CC BY 4.0, shipped in examples/data) into the embedded Qdrant engine.
3. Answer a few "Who likes X?" queries with the dense vector alone, latent terms alone, BM25 of the
   words alone and the default hybrid (the three legs fused in Qdrant), side by side, and explain the
   top latent-term hit.
4. Score all 1,000 LIMIT-small queries (recall@2 / recall@10) for each mode.

Run: ``python examples/demo.py`` (``--fresh`` refits the SAE; ``--width``/``--k``/``--epochs`` change it).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from latentlex import LatentIndex, LatentTermEncoder, fit_sae
from latentlex.backbone import Backbone
from latentlex.corpus import read_corpus, stdlib_docstrings
from latentlex.labels import label_sae, load_labels
from latentlex.lexical import LexicalConfig, measure_avg_len
from latentlex.sae import SparseAutoencoder

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "limit-small"
CACHE = HERE.parent / ".cache" / "demo"


def load_queries() -> tuple[dict[str, str], dict[str, set[str]]]:
    import json

    queries = {}
    with (DATA / "queries.jsonl").open() as fh:
        for line in fh:
            row = json.loads(line)
            queries[row["_id"]] = row["text"]
    qrels: dict[str, set[str]] = {}
    with (DATA / "qrels" / "test.tsv").open() as fh:
        next(fh)
        for line in fh:
            qid, doc, score = line.rstrip("\n").split("\t")
            if int(score) > 0:
                qrels.setdefault(qid, set()).add(doc)
    return queries, qrels


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--fresh", action="store_true", help="refit the SAE even if one is cached")
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--queries", type=int, default=4, help="queries shown in detail")
    ap.add_argument("--train-docs", type=int, default=1000, help="stdlib docstrings to fit on")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    docs = list(read_corpus(DATA))
    backbone = Backbone()
    sae_dir = CACHE / f"sae-w{args.width}-k{args.k}-e{args.epochs:g}-n{args.train_docs}"
    t0 = time.perf_counter()
    if args.fresh or not (sae_dir / "cfg.json").is_file():
        texts = [d.text for d in stdlib_docstrings(max_docs=args.train_docs)] + [
            d.text for d in docs
        ]
        print(f"[1/4] fitting an SAE (width {args.width}, k {args.k}) on {len(texts)} texts ...")
        sae = fit_sae(
            texts, sae_dir, backbone=backbone, width=args.width, k=args.k, epochs=args.epochs
        )
    else:
        print(f"[1/4] reusing the SAE in {sae_dir} (--fresh to refit)")
        sae = SparseAutoencoder.load(sae_dir)
    m = sae.cfg.metrics
    print(
        f"      FVU {m.get('fvu', float('nan')):.3f}, L0 {m.get('l0', float('nan')):.1f}, "
        f"dead {m.get('dead_pct', float('nan')):.1f}% ({time.perf_counter() - t0:.0f} s)"
    )

    if not (sae_dir / "labels.json").is_file():
        t0 = time.perf_counter()
        labels = label_sae(sae_dir, [d.text for d in docs], backbone=backbone)
        print(
            f"      labelled {len(labels)} latents with their top words ({time.perf_counter() - t0:.0f} s)"
        )
    sae.labels = load_labels(sae_dir).as_label_map()

    encoder = LatentTermEncoder(sae, backbone)
    t0 = time.perf_counter()
    # three legs: dense, latent terms, and BM25 of the words (its avg_len measured on the corpus)
    lexical = LexicalConfig(avg_len=measure_avg_len([d.text for d in docs]))
    index = LatentIndex(
        encoder, CACHE / "index", collection="limit-small", recreate=True, lexical=lexical
    )
    index.add_documents(docs)
    print(
        f"[2/4] indexed {index.count()} LIMIT-small documents in {time.perf_counter() - t0:.1f} s"
    )

    queries, qrels = load_queries()
    print("[3/4] a few queries, four ways (✓ = relevant; sparse = latent terms alone)")
    for qid in list(queries)[: args.queries]:
        q = queries[qid]
        print(f"\n  {q}   (relevant: {', '.join(sorted(qrels[qid]))})")
        for mode in ("dense", "sparse", "lexical", "hybrid"):
            hits = index.search(q, k=3, mode=mode)
            shown = ", ".join(f"{h.doc_id}{' ✓' if h.doc_id in qrels[qid] else ''}" for h in hits)
            print(f"    {mode:>7}: {shown}")
        top = index.search(q, k=1, mode="sparse")[0]
        print("    why the top latent-term hit matched:")
        print("    " + index.explain(q, top.doc_id, top=5).table().replace("\n", "\n    "))

    print("\n[4/4] all 1,000 queries")
    qids = list(queries)
    for mode in ("dense", "sparse", "lexical", "hybrid"):
        t0 = time.perf_counter()
        results = index.search_batch([queries[q] for q in qids], k=10, mode=mode, with_legs=False)
        secs = time.perf_counter() - t0
        r2 = sum(
            len({h.doc_id for h in hs[:2]} & qrels[q]) / 2
            for q, hs in zip(qids, results, strict=True)
        ) / len(qids)
        r10 = sum(
            len({h.doc_id for h in hs} & qrels[q]) / 2 for q, hs in zip(qids, results, strict=True)
        ) / len(qids)
        print(
            f"    {mode:>7}: recall@2 {r2:.3f}  recall@10 {r10:.3f}  ({secs:.1f} s incl. encoding)"
        )
    index.close()


if __name__ == "__main__":
    main()
