"""Tests of the evaluation harness: loader, metrics, baselines, report."""

from __future__ import annotations

import json
import math
import re
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from latentlex.errors import ConfigError, CorpusError, LatentLexError
from latentlex.evaluation import (
    LIMIT_METRICS,
    BaseSystem,
    BeirDataset,
    BM25System,
    DenseEncoder,
    DenseSystem,
    EmbeddingCache,
    NotIndexedError,
    QdrantBm25Only,
    QdrantBm25System,
    RRFSystem,
    System,
    doc_text,
    evaluate,
    evaluate_per_query,
    fit_zipf_slope,
    load_beir,
    paired_test,
    plot_rank_frequency,
    rrf_fuse,
    run_systems,
    subset,
    top_k,
    write_report,
)
from latentlex.evaluation.beir import write_beir

DATA = Path("/work/shared/data")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _need(name: str) -> Path:
    path = DATA / name
    if not (path / "corpus.jsonl").is_file():
        pytest.skip(f"dataset {name} not available at {path}")
    return path


def _write_beir(root: Path, corpus: list[dict], queries: list[dict], qrels: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus) + "\n")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels" / "test.tsv").write_text(qrels)
    return root


TINY_CORPUS = [
    {"_id": "Ada Lovelace", "title": "", "text": "Ada likes zygomorphic flowers and chess."},
    {"_id": "d2", "title": "Cats", "text": "The cat sat on the mat all day."},
    {"_id": "d3", "title": "Dogs", "text": "Dogs run in the park and chase the ball."},
    {"_id": "d4", "title": "Physics", "text": "Quantum physics of the early universe."},
    {"_id": "d5", "title": "Cooking", "text": "A recipe for bread, flour and the oven."},
]
TINY_QUERIES = [
    {"_id": "q1", "text": "who likes zygomorphic flowers?"},
    {"_id": "q2", "text": "cat on a mat"},
    {"_id": "q3", "text": "an unjudged query"},
]
TINY_QRELS = "query-id\tcorpus-id\tscore\nq1\tAda Lovelace\t1\nq2\td2\t1\n"


@pytest.fixture
def tiny(tmp_path: Path) -> BeirDataset:
    return load_beir(_write_beir(tmp_path / "tiny", TINY_CORPUS, TINY_QUERIES, TINY_QRELS))


# --------------------------------------------------------------------------- loader


@pytest.mark.parametrize(
    ("name", "n_docs", "n_queries"),
    [("scifact", 5183, 300), ("nfcorpus", 3633, 323), ("limit-small", 46, 1000)],
)
def test_load_real_datasets(name: str, n_docs: int, n_queries: int) -> None:
    ds = load_beir(_need(name))
    assert ds.name == name
    assert len(ds.corpus) == n_docs
    assert len(ds.queries) == n_queries
    assert set(ds.queries) == set(ds.qrels)
    judged = {d for rel in ds.qrels.values() for d in rel}
    assert judged <= set(ds.corpus)
    assert all(isinstance(t, str) and t for t in ds.queries.values())


def test_limit_ids_with_spaces_and_two_relevant_each() -> None:
    ds = load_beir(_need("limit-small"))
    assert ds.qrels["query_0"] == {"Geneva Durben": 1, "Dorathea Bastress": 1}
    assert all(len(rel) == 2 for rel in ds.qrels.values())


def test_nfcorpus_graded_and_other_splits() -> None:
    path = _need("nfcorpus")
    test = load_beir(path)
    assert {g for rel in test.qrels.values() for g in rel.values()} == {1, 2}
    dev = load_beir(path, split="dev")
    assert len(dev.queries) == 324
    with pytest.raises(CorpusError, match="available splits"):
        load_beir(path, split="nosuch")


def test_tiny_loader(tiny: BeirDataset) -> None:
    assert tiny.queries == {"q1": "who likes zygomorphic flowers?", "q2": "cat on a mat"}
    assert tiny.qrels == {"q1": {"Ada Lovelace": 1}, "q2": {"d2": 1}}
    assert tiny.doc_ids[0] == "Ada Lovelace"
    assert doc_text(tiny.corpus["d2"]) == "Cats The cat sat on the mat all day."
    assert doc_text(tiny.corpus["Ada Lovelace"]) == "Ada likes zygomorphic flowers and chess."
    assert doc_text({"title": " T ", "text": ""}) == "T"
    assert len(tiny.fingerprint) == 64


def test_fingerprint_tracks_corpus(tiny: BeirDataset) -> None:
    other = BeirDataset("x", dict(tiny.corpus), {}, {})
    assert other.fingerprint == tiny.fingerprint
    changed = dict(tiny.corpus)
    changed["d2"] = {"title": "Cats", "text": "changed"}
    assert BeirDataset("x", changed, {}, {}).fingerprint != tiny.fingerprint


@pytest.mark.parametrize(
    ("qrels", "line", "what"),
    [
        ("query-id\tcorpus-id\tscore\nq1\tAda Lovelace\t1\nq2 d2 1\n", 3, "3 tab-separated"),
        ("q1\tAda Lovelace\t1\nq2\td2\tx\n", 2, "not an integer"),
        ("q1\tAda Lovelace\t1\t7\n", 1, "got 4"),
        ("q1\t\t1\n", 1, "empty"),
    ],
)
def test_malformed_qrels(tmp_path: Path, qrels: str, line: int, what: str) -> None:
    root = _write_beir(tmp_path / "bad", TINY_CORPUS, TINY_QUERIES, qrels)
    with pytest.raises(CorpusError, match=rf"test\.tsv:{line}: .*{what}"):
        load_beir(root)


def test_malformed_corpus_and_queries(tmp_path: Path) -> None:
    root = _write_beir(tmp_path / "bad", TINY_CORPUS, TINY_QUERIES, TINY_QRELS)
    lines = (root / "corpus.jsonl").read_text().splitlines()
    (root / "corpus.jsonl").write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    with pytest.raises(CorpusError, match=r"corpus\.jsonl:2: invalid JSON"):
        load_beir(root)
    (root / "corpus.jsonl").write_text(lines[0] + "\n" + json.dumps({"text": "no id"}) + "\n")
    with pytest.raises(CorpusError, match=r"corpus\.jsonl:2: .*'_id'"):
        load_beir(root)
    (root / "corpus.jsonl").write_text(lines[0] + "\n" + lines[0] + "\n")
    with pytest.raises(CorpusError, match="duplicate document id 'Ada Lovelace'"):
        load_beir(root)
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1"}) + "\n")
    with pytest.raises(CorpusError, match=r"queries\.jsonl:1: .*'text'"):
        load_beir(root)
    with pytest.raises(CorpusError, match="not a BEIR-format folder"):
        load_beir(tmp_path / "missing")
    assert issubclass(CorpusError, LatentLexError)


def test_qrels_crlf_blank_lines_and_unknown_queries(tmp_path: Path) -> None:
    qrels = "query-id\tcorpus-id\tscore\r\nq1\tAda Lovelace\t1\r\n\r\nghost\td2\t1\r\n"
    ds = load_beir(_write_beir(tmp_path / "crlf", TINY_CORPUS, TINY_QUERIES, qrels))
    assert ds.qrels == {"q1": {"Ada Lovelace": 1}}
    assert list(ds.queries) == ["q1"]


def test_subset_keeps_judged_docs() -> None:
    ds = load_beir(_need("scifact"))
    sub = subset(ds, n_queries=40, seed=3, n_docs=400)
    assert len(sub.queries) == 40 and set(sub.qrels) == set(sub.queries)
    judged = {d for rel in sub.qrels.values() for d in rel}
    assert judged <= set(sub.corpus)
    assert len(sub.corpus) == 400
    assert list(sub.corpus) == [d for d in ds.corpus if d in sub.corpus]  # order kept
    again = subset(ds, n_queries=40, seed=3, n_docs=400)
    assert again.queries == sub.queries and list(again.corpus) == list(sub.corpus)
    assert subset(ds, n_queries=40, seed=4, n_docs=400).queries != sub.queries
    assert len(subset(ds, n_queries=5, seed=0).corpus) == len(ds.corpus)
    assert sub.name == "scifact-q40-d400-s3"


def test_write_beir_round_trip(tiny: BeirDataset, tmp_path: Path) -> None:
    graded = BeirDataset(tiny.name, tiny.corpus, tiny.queries, {**tiny.qrels, "q2": {"d2": 2}})
    back = load_beir(write_beir(graded, tmp_path / "copy"))
    assert back.name == "copy"  # the folder names the dataset (and its cache entries)
    assert list(back.corpus.items()) == list(graded.corpus.items())  # order and ids with spaces
    assert back.queries == graded.queries and back.qrels == graded.qrels
    assert back.fingerprint == graded.fingerprint
    assert not list(tmp_path.glob("copy/**/*.tmp"))
    dev = load_beir(write_beir(graded, tmp_path / "copy", split="dev"), split="dev")
    assert dev.qrels == graded.qrels
    bad = BeirDataset("bad", tiny.corpus, {"q\t1": "x"}, {"q\t1": {"d2": 1}})
    with pytest.raises(CorpusError, match="tabs or line breaks"):
        write_beir(bad, tmp_path / "bad")


def test_write_beir_of_a_subset(tmp_path: Path) -> None:
    ds = load_beir(_need("scifact"))
    sub = subset(ds, n_queries=300, seed=0, n_docs=1000)
    back = load_beir(write_beir(sub, tmp_path / "scifact-quick"))
    assert (len(back.queries), len(back.corpus)) == (300, 1000)
    assert back.qrels == sub.qrels and back.fingerprint == sub.fingerprint


# --------------------------------------------------------------------------- metrics

QRELS = {"q1": {"a": 1, "b": 1}, "q2": {"c": 1}}
RUN = {"q1": {"a": 3.0, "x": 2.0, "b": 1.0}, "q2": {"x": 2.0, "c": 1.0}}
NDCG_Q1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))  # ranks 1 and 3 of 2 relevant
NDCG_Q2 = 1 / math.log2(3)  # rank 2 of 1 relevant


def test_metrics_by_hand() -> None:
    got = evaluate(RUN, QRELS, ("ndcg@10", "recall@1", "recall@2", "recall@10", "mrr@10"))
    assert got["ndcg@10"] == pytest.approx((NDCG_Q1 + NDCG_Q2) / 2)
    assert got["recall@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert got["recall@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert got["recall@10"] == pytest.approx(1.0)
    assert got["mrr@10"] == pytest.approx((1.0 + 0.5) / 2)
    per_q = evaluate_per_query(RUN, QRELS, ("ndcg@10", "mrr@10"))
    assert per_q["ndcg@10"] == pytest.approx({"q1": NDCG_Q1, "q2": NDCG_Q2})
    assert per_q["mrr@10"] == {"q1": 1.0, "q2": 0.5}
    assert all(isinstance(v, float) for v in got.values())


def test_ndcg_uses_linear_gain() -> None:
    # b (grade 1) ranked above a (grade 2): trec_eval/BEIR nDCG = (1 + 2/log2 3) / (2 + 1/log2 3)
    got = evaluate({"q": {"b": 2.0, "a": 1.0}}, {"q": {"a": 2, "b": 1}}, ("ndcg@10",))
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert got["ndcg@10"] == pytest.approx(expected)


def test_metrics_edge_cases() -> None:
    metrics = ("ndcg@10", "recall@10")
    # a judged query missing from the run counts as 0; unjudged run queries are ignored
    got = evaluate({"q1": RUN["q1"], "zz": {"a": 1.0}}, QRELS, metrics)
    assert got["recall@10"] == pytest.approx(0.5)
    # empty runs, empty query results and zero scores do not crash
    assert evaluate({}, QRELS, metrics) == {"ndcg@10": 0.0, "recall@10": 0.0}
    assert evaluate({"q1": {}, "q2": {}}, QRELS, metrics) == {"ndcg@10": 0.0, "recall@10": 0.0}
    zero = evaluate({"q1": {"a": 0.0, "b": 0.0}, "q2": {"c": 0.0}}, QRELS, ("recall@10",))
    assert zero["recall@10"] == pytest.approx(1.0)
    # queries without any relevant document are not averaged in
    qrels = {**QRELS, "q3": {"a": 0}}
    assert evaluate(RUN, qrels, ("mrr@10",))["mrr@10"] == pytest.approx(0.75)
    with pytest.raises(ConfigError):
        evaluate(RUN, {"q": {"a": 0}}, metrics)
    with pytest.raises(ValueError, match="NaN"):
        evaluate({"q1": {"a": float("nan")}}, QRELS, metrics)


def test_limit_metrics_constant() -> None:
    assert LIMIT_METRICS == ("recall@2", "recall@10", "recall@20", "recall@100")


def test_paired_test() -> None:
    rng = np.random.default_rng(0)
    qrels = {f"q{i}": {"rel": 1} for i in range(60)}
    good = {q: {"rel": 2.0, "x": 1.0} for q in qrels}
    noisy = {q: ({"x": 2.0, "rel": 1.0} if rng.random() < 0.7 else {"rel": 1.0}) for q in qrels}
    same = paired_test(good, good, qrels, "mrr@10")
    assert same.p_value == 1.0 and same.diff == 0.0 and same.n_queries == 60
    for method in ("ttest", "wilcoxon"):
        t = paired_test(noisy, good, qrels, "mrr@10", method=method)
        assert t.mean_b == pytest.approx(1.0)
        assert t.diff > 0.2
        assert t.significant(0.001)
    with pytest.raises(ConfigError):
        paired_test(good, good, qrels, "mrr@10", method="magic")


# --------------------------------------------------------------------------- systems


def test_top_k() -> None:
    s = np.array([0.1, 0.9, 0.5, 0.7])
    assert top_k(s, 2).tolist() == [1, 3]
    assert top_k(s, 10).tolist() == [1, 3, 2, 0]
    assert top_k(s, 0).tolist() == []


def test_bm25_tiny_and_protocol(tiny: BeirDataset) -> None:
    bm25 = BM25System()
    assert isinstance(bm25, System)
    with pytest.raises(NotIndexedError):
        bm25.search(tiny.queries, 3)
    bm25.index(tiny)
    run = bm25.search({"q1": "zygomorphic", "q2": "the of a", "q3": "cats"}, k=3)
    assert list(run["q1"]) == ["Ada Lovelace"]  # zero-score docs are dropped
    assert run["q2"] == {}  # only stop words
    assert next(iter(run["q3"])) == "d2"  # "cats" stems to "cat"
    assert len(bm25.query_seconds) == 3 and all(t >= 0 for t in bm25.query_seconds)
    assert bm25.index_seconds is not None
    with pytest.raises(ConfigError):
        bm25.search(tiny.queries, 0)


def test_bm25_limit_small() -> None:
    ds = load_beir(_need("limit-small"))
    [res] = run_systems(ds, [BM25System()], k=100, metrics=LIMIT_METRICS)
    assert res["metrics"]["recall@2"] >= 0.9
    assert res["metrics"]["recall@10"] >= 0.99
    assert res["n_queries"] == 1000 and res["query_p50_ms"] > 0 and res["index_docs_per_s"] > 0


def test_bm25_scifact_subset() -> None:
    ds = subset(load_beir(_need("scifact")), n_queries=60, seed=0, n_docs=600)
    [res] = run_systems(ds, [BM25System()], k=100)
    assert res["metrics"]["ndcg@10"] > 0.6
    assert res["metrics"]["recall@100"] > 0.85


def test_qdrant_bm25_only_exact_term_and_idf(tiny: BeirDataset) -> None:
    with QdrantBm25Only() as sys_:
        assert isinstance(sys_, System)
        sys_.index(tiny)
        assert sys_.calibrated_avg_len is not None and 3 < sys_.calibrated_avg_len < 8
        run = sys_.search({"exact": "zygomorphic", "idf": "the universe", "none": "the of a"}, k=5)
        assert list(run["exact"]) == ["Ada Lovelace"]
        # "the" is a stop word and "universe" is rare: only d4 matches
        assert next(iter(run["idf"])) == "d4"
        assert run["none"] == {}


def test_qdrant_bm25_measured_avg_len_matches_known_lengths(tmp_path: Path) -> None:
    corpus = [
        {"_id": "a", "text": "apple apple banana"},
        {"_id": "b", "text": "cherry date elderberry fig grape"},
    ]
    ds = load_beir(
        _write_beir(tmp_path / "len", corpus, [{"_id": "q", "text": "fig"}], "q\tb\t1\n")
    )
    with QdrantBm25Only() as sys_:
        sys_.index(ds)
        assert sys_.calibrated_avg_len == pytest.approx(4.0)


class _FixedSystem(BaseSystem):
    """A deterministic fake: each query returns a fixed ranking after a fixed delay."""

    def __init__(self, name: str, ranking: dict[str, float], delay: float) -> None:
        super().__init__(name)
        self.ranking, self.delay, self.index_calls = ranking, delay, 0

    def _index(self, ds: BeirDataset) -> None:
        self.index_calls += 1
        time.sleep(self.delay)

    def _search_one(self, text: str, k: int) -> dict[str, float]:
        time.sleep(self.delay)
        return dict(list(self.ranking.items())[:k])


def test_rrf_fuse_by_hand() -> None:
    runs = [{"q": {"a": 3.0, "b": 2.0}}, {"q": {"b": 5.0, "c": 1.0}}]
    fused = rrf_fuse(runs, k=60)["q"]
    assert list(fused) == ["b", "a", "c"]
    assert fused["b"] == pytest.approx(1 / 61 + 1 / 60)
    assert fused["a"] == pytest.approx(1 / 60) and fused["c"] == pytest.approx(1 / 61)
    crossed = [{"q": {"a": 2.0, "b": 1.0}}, {"q": {"b": 2.0, "a": 1.0}}]
    weighted = rrf_fuse(crossed, k=60, weights=[2.0, 1.0], limit=1)["q"]
    assert weighted == pytest.approx({"a": 2 / 60 + 1 / 61})
    with pytest.raises(ConfigError):
        rrf_fuse(runs, weights=[1.0])


def test_rrf_system_timing_and_shared_members(tiny: BeirDataset) -> None:
    a = _FixedSystem("a", {"Ada Lovelace": 2.0, "d2": 1.0}, delay=0.01)
    b = _FixedSystem("b", {"d2": 2.0, "d3": 1.0}, delay=0.02)
    a.index(tiny)
    rrf = RRFSystem([a, b])
    assert rrf.name == "rrf(a+b)"
    rrf.index(tiny)
    assert a.index_calls == 1 and b.index_calls == 1  # a was not indexed twice
    assert a.index_seconds is not None and b.index_seconds is not None
    assert rrf.index_seconds == pytest.approx(a.index_seconds + b.index_seconds)
    run = rrf.search(tiny.queries, k=2)
    assert list(run["q1"]) == ["d2", "Ada Lovelace"]
    assert len(rrf.query_seconds) == 2
    assert all(t >= 0.03 for t in rrf.query_seconds)
    with pytest.raises(ConfigError):
        RRFSystem([a])


def test_embedding_cache_roundtrip(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c")
    assert cache.load("m", "fp") is None
    emb = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.save("m", "fp", emb, encode_seconds=1.5)
    got, meta = cache.load("m", "fp")  # type: ignore[misc]
    np.testing.assert_array_equal(got, emb)
    assert meta["encode_seconds"] == 1.5 and meta["dim"] == 4
    assert cache.load("m", "other") is None and cache.load("m2", "fp") is None


class _HashEncoder(DenseEncoder):
    """A deterministic stand-in for a sentence-transformers model: hashed bag of words."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        super().__init__(cache_dir=cache_dir)
        self.encoded_texts = 0

    @property
    def model(self) -> None:
        return None

    @property
    def model_key(self) -> str:
        return "hash-bow-64"

    def encode_texts(self, texts: Sequence[str], show_progress: bool | None = False) -> np.ndarray:
        self.encoded_texts += len(texts)
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, zlib.crc32(word.encode()) % 64] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_dense_system_with_cache(tiny: BeirDataset, tmp_path: Path) -> None:
    enc = _HashEncoder(cache_dir=tmp_path / "cache")
    dense = DenseSystem(enc)
    assert isinstance(dense, System)
    dense.index(tiny)
    assert enc.encoded_texts == len(tiny.corpus) and not enc.last_was_cached
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    run = dense.search({"q": "quantum universe", "p": "bread oven"}, k=2)
    assert next(iter(run["q"])) == "d4" and next(iter(run["p"])) == "d5"
    assert len(run["q"]) == 2 and all(-1.0 <= v <= 1.0 + 1e-6 for v in run["q"].values())

    # another encoder (another process, say) reads the disk cache: no corpus encoding
    enc2 = _HashEncoder(cache_dir=tmp_path / "cache")
    other = DenseSystem(enc2, name="other")
    other.index(tiny)
    assert enc2.encoded_texts == 0 and enc2.last_was_cached
    assert other.index_seconds is not None and dense.index_seconds is not None
    assert other.index_seconds >= enc2.encode_corpus(tiny)[1]  # cached encode time counted
    assert other.search({"q": "quantum universe"}, k=2)["q"] == pytest.approx(run["q"])

    # precomputed embeddings (rows renormalised) skip the encoder altogether
    emb, _ = enc.encode_corpus(tiny)
    enc3 = _HashEncoder()
    given = DenseSystem(enc3, name="given", corpus_embeddings=emb * 3.0)
    given.index(tiny)
    assert enc3.encoded_texts == 0
    assert given.search({"q": "quantum universe"}, k=2)["q"] == pytest.approx(run["q"])
    with pytest.raises(ConfigError, match="shape"):
        DenseSystem(enc3, corpus_embeddings=emb[:2]).index(tiny)


def test_qdrant_bm25_dense_rrf(tiny: BeirDataset) -> None:
    enc = _HashEncoder()
    with QdrantBm25System(enc, search_threads=1) as hybrid:
        hybrid.index(tiny)
        hits = hybrid.search({"q": "zygomorphic", "none": "the of a"}, k=3)
        assert next(iter(hits["q"])) == "Ada Lovelace"
        # RRF in the engine (rank from 0): first in both legs scores 1/60 + 1/60
        assert hits["q"]["Ada Lovelace"] == pytest.approx(2 / 60, rel=1e-5)
        assert len(hits["none"]) == 3  # no BM25 term: the dense leg still answers
        assert all(v <= 1 / 60 + 1e-6 for v in hits["none"].values())
    assert enc.encoded_texts == len(tiny.corpus) + 2


@pytest.mark.slow
def test_dense_minilm_semantic(tiny: BeirDataset, tmp_path: Path) -> None:
    enc = DenseEncoder(cache_dir=tmp_path / "cache")
    dense = DenseSystem(enc)
    dense.index(tiny)
    run = dense.search({"q": "a kitten resting on a rug", "p": "cosmology"}, k=2)
    assert next(iter(run["q"])) == "d2" and next(iter(run["p"])) == "d4"
    assert "all-MiniLM" in enc.model_key or "minilm" in enc.model_key.lower()
    with QdrantBm25System(enc) as hybrid:
        hybrid.index(tiny)
        assert next(iter(hybrid.search({"q": "zygomorphic"}, k=3)["q"])) == "Ada Lovelace"


# --------------------------------------------------------------------------- report


def _fake_results() -> list[dict]:
    out = []
    for system, base in [("bm25", 0.9), ("dense", 0.3)]:
        out.append(
            {
                "dataset": "limit-small",
                "system": system,
                "n_docs": 46,
                "n_queries": 1000,
                "k": 100,
                "metrics": {
                    "recall@2": base * 0.8,
                    "recall@10": base,
                    "recall@20": min(1.0, base + 0.05),
                    "recall@100": 1.0,
                },
                "index_seconds": 0.5,
                "index_docs_per_s": 92.0,
                "query_p50_ms": 1.25,
                "query_p95_ms": 3.5,
                "query_mean_ms": 1.5,
                "run": {"q": {"d": 1.0}},
            }
        )
        out.append(
            {
                "dataset": "scifact",
                "system": system,
                "n_docs": 5183,
                "n_queries": 300,
                "k": 100,
                "metrics": {
                    "ndcg@10": base * 0.7,
                    "recall@10": np.float64(0.8),
                    "recall@100": np.float64(0.9),
                },
                "index_seconds": None,
                "index_docs_per_s": None,
                "query_p50_ms": 2.0,
                "query_p95_ms": 4.0,
                "query_mean_ms": 2.5,
            }
        )
    return out


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


def test_write_report(tmp_path: Path) -> None:
    results = _fake_results()
    paths = write_report(results, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert len(data) == 4 and "run" not in data[0]
    assert data[0]["metrics"]["recall@10"] == pytest.approx(0.9)
    assert data[1]["metrics"]["recall@100"] == 0.9 and data[1]["index_docs_per_s"] is None
    assert isinstance(data[1]["metrics"]["recall@10"], float)
    md = paths["markdown"].read_text()
    assert "### limit-small (46 docs, 1000 queries)" in md
    assert "| system | recall@2 | recall@10 | recall@20 | recall@100 | index docs/s |" in md
    assert "| bm25 | 0.720 | 0.900 | 0.950 | 1.000 | 92.0 | 1.25 | 3.50 |" in md
    assert "| dense | 0.210 | 0.800 | 0.900 | – | 2.00 | 4.00 |" in md
    assert "| dense | 0.240 | 0.300 | 0.350 | 1.000 |" in md
    pngs = {k: p for k, p in paths.items() if p.suffix == ".png"}
    assert set(pngs) == {
        "bar_recall_at_2",
        "bar_recall_at_10",
        "bar_recall_at_20",
        "bar_recall_at_100",
        "bar_ndcg_at_10",
        "recall_limit-small",
    }
    assert all(_is_png(p) for p in pngs.values())
    with pytest.raises(ValueError):
        write_report([], tmp_path / "empty")


@pytest.mark.parametrize("exponent", [1.0, 1.4])
def test_rank_frequency_slope_on_zipf_sample(tmp_path: Path, exponent: float) -> None:
    rng = np.random.default_rng(7)
    vocab = 3000
    p = np.arange(1, vocab + 1, dtype=np.float64) ** -exponent
    tokens = rng.choice(vocab, size=400_000, p=p / p.sum())
    freqs = np.bincount(tokens, minlength=vocab + 500)  # 500 unused entries
    rng.shuffle(freqs)
    slope = plot_rank_frequency(
        freqs, tmp_path / "zipf.png", reference={"uniform": np.full(100, 50)}
    )
    assert slope == pytest.approx(-exponent, abs=0.08)
    assert _is_png(tmp_path / "zipf.png")
    assert fit_zipf_slope(np.full(100, 50.0)) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(fit_zipf_slope(np.array([9.0, 0.0])))


def test_eval_fit_reading_two_layers(tiny: BeirDataset, tmp_path: Path) -> None:
    """``run_eval(fit={..., "layer": [None, 1]})`` fits on the two-layer states in their own cache
    (the final layer's stays for the dense systems), and the SAE it saved evaluates the same when
    passed back as ``sae=`` (its own backbone is built from its config)."""
    from latentlex.evaluation.run import run_eval
    from latentlex.sae import SparseAutoencoder

    root, cache = tmp_path / "tiny", tmp_path / "cache"  # the fixture's folder
    fit = {"width": 32, "k": 4, "epochs": 2, "layer": [None, 1]}
    first = run_eval(root, fit=fit, systems=["latent"], cache_dir=cache)
    states = sorted(p.name for p in (cache / "states").iterdir())
    assert states == ["tiny", "tiny-Lfinal+1"]
    (sae_dir,) = list((cache / "saes").iterdir())
    assert sae_dir.name.endswith("-Lfinal+1")
    assert SparseAutoencoder.load(sae_dir).cfg.layer == [None, 1]
    again = run_eval(root, sae=sae_dir, systems=["latent"], cache_dir=cache)
    assert [r["system"] for r in first] == ["latent"]
    assert again[0]["metrics"] == pytest.approx(first[0]["metrics"])
    assert first[0]["metrics"]["ndcg@10"] > 0


def test_cli_eval_layer_needs_fit(tiny: BeirDataset, tmp_path: Path, capsys) -> None:
    from latentlex.cli import main

    root = str(tmp_path / "tiny")
    rc = main(["eval", "--dataset", root, "--sae", str(tmp_path), "--layer", "final,1"])
    assert rc != 0 and "--layer goes with --fit" in capsys.readouterr().err


# --------------------------------------------------------------------------- like-for-like latency


class _TimedSystem(BaseSystem):
    """A fake whose query encoding costs ``encode_s`` per call plus ``per_text_s`` per text,
    and whose search costs ``search_s``; it counts the texts of each encoding call."""

    def __init__(self, name: str, encode_s: float, per_text_s: float, search_s: float) -> None:
        super().__init__(name)
        self.encode_s, self.per_text_s, self.search_s = encode_s, per_text_s, search_s
        self.encode_calls: list[int] = []

    def _index(self, ds: BeirDataset) -> None:
        pass

    def _encode_queries(self, texts: list[str]) -> list[object]:
        self.encode_calls.append(len(texts))
        time.sleep(self.encode_s + self.per_text_s * len(texts))
        return [t.upper() for t in texts]

    def _search_encoded(self, query: object, k: int) -> dict[str, float]:
        time.sleep(self.search_s)
        return {str(query): 1.0}

    def _search_one(self, text: str, k: int) -> dict[str, float]:  # pragma: no cover
        raise AssertionError("search goes through _encode_queries/_search_encoded")


def test_search_times_each_query_encoded_alone_and_throughput_batches(tiny: BeirDataset) -> None:
    """One query at a time: every query is encoded alone inside its own timed interval;
    throughput: one batched encoding call for all queries, then the searches."""
    s = _TimedSystem("t", encode_s=0.02, per_text_s=0.001, search_s=0.005)
    s.index(tiny)
    run = s.search(tiny.queries, k=5)
    assert run == {q: {t.upper(): 1.0} for q, t in tiny.queries.items()}
    n = len(tiny.queries)
    assert n >= 2 and s.encode_calls == [1] * n
    assert len(s.query_seconds) == n and min(s.query_seconds) >= 0.02 + 0.001 + 0.005
    s.encode_calls.clear()
    qps = s.throughput(tiny.queries, k=5)
    assert s.encode_calls == [n]  # one batched call
    assert s.batch_seconds is not None and s.batch_seconds >= 0.02 + n * (0.001 + 0.005)
    assert qps == pytest.approx(n / s.batch_seconds)
    assert qps > 1 / np.mean(s.query_seconds)  # batching pays the per-call cost once


def test_rrf_members_encode_and_search_inside_the_fused_timed_loop(tiny: BeirDataset) -> None:
    """A client-side RRF's per-query latency holds every member's encoding and search for that
    query (one text each), measured in the one loop, not summed from separate runs."""
    a = _TimedSystem("a", encode_s=0.01, per_text_s=0.0, search_s=0.002)
    b = _TimedSystem("b", encode_s=0.02, per_text_s=0.0, search_s=0.002)
    rrf = RRFSystem([a, b])
    rrf.index(tiny)
    rrf.search(tiny.queries, k=3)
    n = len(tiny.queries)
    assert a.encode_calls == [1] * n and b.encode_calls == [1] * n
    assert a.query_seconds == [] and b.query_seconds == []  # members' own loops never ran
    assert min(rrf.query_seconds) >= 0.01 + 0.02 + 2 * 0.002
    a.encode_calls.clear()
    b.encode_calls.clear()
    rrf.throughput(tiny.queries, k=3)
    assert a.encode_calls == [n] and b.encode_calls == [n]


def test_run_systems_reports_one_query_latency_and_batched_throughput(
    tiny: BeirDataset, tmp_path: Path
) -> None:
    from latentlex.evaluation.report import SPEED_COLUMNS

    systems = [_TimedSystem("x", 0.0, 0.0, 0.001), BM25System()]
    results = run_systems(tiny, systems, k=5, metrics=("ndcg@10",))
    for r in results:
        assert r["query_p50_ms"] > 0 and r["batch_qps"] > 0
    md = write_report(results, tmp_path / "out")["markdown"].read_text()
    assert "| index docs/s | " + " | ".join(SPEED_COLUMNS) + " |" in md
    assert "one query at a time, each encoded and searched alone" in md
    assert "all queries encoded in one batched call" in md


def test_latent_system_encodes_each_query_alone(tiny: BeirDataset, tmp_path: Path, encoder) -> None:
    """The latent systems' latency holds their own query encoding (backbone + SAE + lexical), one
    query at a time, like the baselines'; their batched throughput encodes all queries at once.
    The corpus is written in one streamed SAE pass, with the SAE's own avgdl."""
    from unittest import mock

    from latentlex.evaluation.latent import LatentBench, LatentSystem

    bench = LatentBench(encoder, tmp_path / "states", tmp_path / "work")
    hybrid = LatentSystem("hybrid", bench, mode="hybrid", lexical=True)
    with mock.patch.object(
        type(encoder), "calibrate_avgdl", side_effect=AssertionError("own avgdl pass")
    ):
        hybrid.index(tiny)
    assert bench.stats["docs"] == len(tiny.corpus)
    assert bench.stats["avgdl"] == encoder.sae.cfg.avgdl
    calls: list[int] = []
    real = encoder.encode_queries

    def counting(texts, **kw):  # type: ignore[no-untyped-def]
        calls.append(len(texts))
        return real(texts, **kw)

    lexical = bench.index.lexical_encoder
    assert lexical is not None
    with (
        mock.patch.object(encoder, "encode_queries", side_effect=counting),
        mock.patch.object(lexical, "encode_queries", wraps=lexical.encode_queries) as lex_calls,
    ):
        run = hybrid.search(tiny.queries, k=3)
        n = len(tiny.queries)
        assert calls == [1] * n and lex_calls.call_count == n
        calls.clear()
        hybrid.throughput(tiny.queries, k=3)
        assert calls == [n] and lex_calls.call_count == n + 1
    assert next(iter(run["q1"])) == "Ada Lovelace"
    # the same hits as the index's own search (which encodes the text itself)
    want = bench.index.search(tiny.queries["q2"], k=3, with_legs=False)
    assert list(run["q2"]) == [h.doc_id for h in want]
    bench.close()


def test_write_states_streams_one_sae_pass(tmp_path: Path, encoder) -> None:
    """write_states encodes the stored states batch by batch (never the whole corpus at once)
    and writes what encode_states would have computed."""
    from unittest import mock

    from latentlex.evaluation.latent import write_states
    from latentlex.index import LatentIndex
    from latentlex.states import encode_token_states

    texts = {f"d{i}": f"Document {i} is about {w}." for i, w in enumerate("abcdefghijk")}
    ids = list(texts)
    states = encode_token_states(
        encoder.backbone, ids, [texts[i] for i in ids], tmp_path / "s", progress=False
    )
    index = LatentIndex(encoder, tmp_path / "edge", lexical=False)
    seen: list[int] = []
    real_add = index.add_encoded

    def add(ids_, texts_, enc, *a, **kw):  # type: ignore[no-untyped-def]
        seen.append(len(ids_))
        return real_add(ids_, texts_, enc, *a, **kw)

    with (
        mock.patch.object(index, "add_encoded", side_effect=add),
        mock.patch.object(
            type(encoder), "encode_states", side_effect=AssertionError("whole corpus")
        ),
    ):
        stats = write_states(index, states, lambda xs: [texts[x] for x in xs], docs_per_batch=4)
    assert seen == [4, 4, 3] and stats["docs"] == 11
    whole = encoder.encode_states(states)
    stored = {r.doc_id: r for r in index.get(states.doc_ids)}
    for row, doc_id in enumerate(states.doc_ids):
        got = stored[doc_id].sparse
        assert got is not None
        np.testing.assert_array_equal(got.indices, whole.sparse[row].indices)
        np.testing.assert_allclose(got.values, whole.sparse[row].values, rtol=1e-6)
    index.close()


def test_eval_fit_samples_by_the_budget_and_writes_with_its_avgdl(
    tiny: BeirDataset, tmp_path: Path
) -> None:
    """``run_eval(fit={..., "max_tokens": N})`` fits on a sample within the budget (its own SAE
    cache entry), and the corpus is written with the avgdl measured on that sample."""
    from latentlex.evaluation.run import run_eval
    from latentlex.sae import SparseAutoencoder

    root, cache = tmp_path / "tiny", tmp_path / "cache"
    fit = {"width": 32, "k": 4, "epochs": 1, "max_tokens": 20}
    (res,) = run_eval(root, fit=fit, systems=["latent"], cache_dir=cache)
    (sae_dir,) = list((cache / "saes").iterdir())
    assert "-t20" in sae_dir.name
    cfg = SparseAutoencoder.load(sae_dir).cfg
    assert cfg.fit_sample is not None and cfg.fit_sample["budget_tokens"] == 20
    docs = cfg.fit_sample["docs"]
    assert isinstance(docs, int) and 1 <= docs < len(tiny.corpus)
    assert res["latent_stats"]["avgdl"] == pytest.approx(cfg.avgdl)
    assert res["latent_stats"]["docs"] == len(tiny.corpus)
