"""Train an SAE on a corpus and publish it on the Hugging Face Hub, with a model card.

1. Fit a token-mode SAE on the packaged all-MiniLM-L6-v2 (default text: Python's standard-library
   docstrings, present on every machine, plus LIMIT-small's 46 documents), calibrate avgdl, save it.
2. Score latent terms alone on LIMIT-small's 1,000 queries (exact BM25 over latent ids, the score
   Qdrant computes with ``modifier=IDF``) and record recall@2/@10 in the SAE's metrics, so the
   model card shows them.
3. ``--dry-run``: validate the folder (it must load back), write ``README.md`` beside it and
   upload nothing. Otherwise push ``cfg.json``, ``sae.safetensors`` and the card (private unless
   ``--public``); the token comes from ``hf auth login`` or ``HF_TOKEN``.

Offline, in well under two minutes on a laptop CPU::

    python examples/train_and_push.py --repo me/minilm-latent-terms --dry-run

A real run (bigger SAE, your corpus)::

    python examples/train_and_push.py --repo me/minilm-latent-terms \\
        --corpus my_corpus.jsonl --width 8192 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
from latentlex import LatentTermEncoder, fit_sae
from latentlex.backbone import Backbone
from latentlex.corpus import read_corpus, stdlib_docstrings
from latentlex.hub import push_to_hub, stage_for_upload
from latentlex.sae import SparseAutoencoder

HERE = Path(__file__).resolve().parent
LIMIT = HERE / "data" / "limit-small"

logger = logging.getLogger("train_and_push")


def limit_recall(encoder: LatentTermEncoder, ks: tuple[int, ...] = (2, 10)) -> dict[str, float]:
    """Recall@k of latent terms alone on LIMIT-small (exact BM25 over latent ids)."""
    docs = list(read_corpus(LIMIT / "corpus.jsonl"))
    queries = {}
    with (LIMIT / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            queries[row["_id"]] = row["text"]
    relevant: dict[str, set[str]] = {}
    with (LIMIT / "qrels" / "test.tsv").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            qid, did, score = line.rstrip("\n").split("\t")[:3]
            if int(score) > 0:
                relevant.setdefault(qid, set()).add(did)
    width = encoder.width
    dmat = np.zeros((len(docs), width), dtype=np.float32)
    for i, vec in enumerate(encoder.encode_documents([d.text for d in docs]).sparse):
        dmat[i, vec.indices] = vec.values
    df = (dmat > 0).sum(axis=0)
    n = len(docs)
    idf = np.log((n - df + 0.5) / (df + 0.5) + 1.0).astype(np.float32)
    qids = [q for q in queries if q in relevant]
    qmat = np.zeros((len(qids), width), dtype=np.float32)
    for i, vec in enumerate(encoder.encode_queries([queries[q] for q in qids]).sparse):
        qmat[i, vec.indices] = vec.values
    scores = (qmat * idf) @ dmat.T
    order = np.argsort(-scores, axis=1)
    doc_ids = np.array([d.id for d in docs])
    out = {}
    for k in ks:
        hits = [
            len(set(doc_ids[order[i, :k]]) & relevant[q]) / len(relevant[q])
            for i, q in enumerate(qids)
        ]
        out[f"limit-small_recall@{k}"] = float(np.mean(hits))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repo", required=True, help="Hub id 'namespace/name' to publish to")
    p.add_argument(
        "--corpus", default=None, help="corpus.jsonl / .txt / folder (default: stdlib docstrings)"
    )
    p.add_argument(
        "--stdlib-docs", type=int, default=150, help="docstrings used when --corpus is not given"
    )
    p.add_argument(
        "--model", default=None, help="sentence-transformers backbone (default: all-MiniLM-L6-v2)"
    )
    p.add_argument("--mode", choices=["token", "pooled"], default="token")
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument(
        "--max-tokens", type=int, default=20_000, help="token states to train on (0: all)"
    )
    p.add_argument("--out", default=str(HERE.parent / ".cache" / "train-and-push" / "sae"))
    p.add_argument("--no-eval", action="store_true", help="skip the LIMIT-small evaluation")
    p.add_argument("--public", action="store_true", help="create the repository public")
    p.add_argument(
        "--dry-run", action="store_true", help="validate and write the card; upload nothing"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    t0 = time.perf_counter()
    if args.corpus:
        texts = [d.text for d in read_corpus(args.corpus)]
    else:
        texts = [d.text for d in stdlib_docstrings(max_docs=args.stdlib_docs)]
        texts += [d.text for d in read_corpus(LIMIT / "corpus.jsonl")]
    logger.info("fitting on %d texts", len(texts))
    out = Path(args.out)
    backbone = Backbone(args.model)
    sae = fit_sae(
        texts,
        out,
        backbone=backbone,
        model=args.model,
        mode=args.mode,
        width=args.width,
        k=args.k,
        epochs=args.epochs,
        max_tokens=args.max_tokens or None,
        progress=False,
    )
    m = sae.cfg.metrics
    logger.info(
        "fitted in %.0f s: FVU %.3f, L0 %.1f, dead %.1f %%, avgdl %.1f",
        time.perf_counter() - t0,
        m.get("fvu", math.nan),
        m.get("l0", math.nan),
        m.get("dead_pct", math.nan),
        sae.cfg.avgdl or math.nan,
    )
    if not args.no_eval:
        figures = limit_recall(LatentTermEncoder(sae, backbone))
        logger.info("LIMIT-small, latent terms alone: %s", figures)
        sae.cfg.metrics = {**m, **figures}
        sae.save(out)
    SparseAutoencoder.load(out)  # what we publish must load back
    if args.dry_run:
        staged = stage_for_upload(out, args.repo, out)
        logger.info(
            "dry run: validated %s, model card at %s; nothing uploaded", out, staged / "README.md"
        )
    else:
        url = push_to_hub(out, args.repo, private=not args.public)
        logger.info("published: %s", url)
    logger.info("total %.0f s", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
