"""LIMIT-small queries with their relevant documents, and recall@2 (for the framework tests)."""

from __future__ import annotations

import json

from conftest import LIMIT_SMALL


def limit_queries(step: int = 1) -> list[tuple[str, set[str]]]:
    """Every ``step``-th LIMIT-small query (by id) with its relevant document ids."""
    texts = {
        row["_id"]: row["text"]
        for row in map(json.loads, (LIMIT_SMALL / "queries.jsonl").read_text().splitlines())
    }
    qrels: dict[str, set[str]] = {}
    for line in (LIMIT_SMALL / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, doc, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, set()).add(doc)
    return [(texts[q], qrels[q]) for q in sorted(qrels)[::step]]


def recall_at_2(ranked: list[list[str]], queries: list[tuple[str, set[str]]]) -> float:
    """Mean recall@2 of ranked document ids against the queries' relevant ones."""
    return sum(
        len(set(r[:2]) & rel) / min(2, len(rel))
        for r, (_, rel) in zip(ranked, queries, strict=True)
    ) / len(queries)
