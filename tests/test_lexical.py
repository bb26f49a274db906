"""The lexical leg's encoder: Qdrant's BM25 (qdrant_edge.Bm25) as latentlex sparse vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from latentlex.errors import ConfigError
from latentlex.lexical import LexicalConfig, LexicalEncoder, measure_avg_len
from latentlex.sparse import SparseVector


def _bm25(tf: float, length: float, k1: float, b: float, avg_len: float) -> float:
    return tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * length / avg_len))


def test_config_defaults_and_as_dict() -> None:
    cfg = LexicalConfig()
    assert (cfg.k1, cfg.b, cfg.avg_len, cfg.language) == (1.2, 0.75, 256.0, "english")
    d = LexicalConfig(k1=2, b=0.5, avg_len=100).as_dict()
    assert d == {"k1": 2.0, "b": 0.5, "avg_len": 100.0, "language": "english"}
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert all(isinstance(d[k], float) for k in ("k1", "b", "avg_len"))
    with pytest.raises(AttributeError):
        cfg.k1 = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"k1": -0.1}, "k1"),
        ({"k1": float("nan")}, "k1"),
        ({"k1": True}, "k1"),
        ({"b": 1.5}, "b"),
        ({"b": -0.1}, "b"),
        ({"avg_len": 0.0}, "avg_len"),
        ({"avg_len": float("inf")}, "avg_len"),
        ({"avg_len": "256"}, "avg_len"),
        ({"language": ""}, "language"),
        ({"language": "klingon"}, "klingon"),
    ],
)
def test_config_validation(kwargs: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        LexicalConfig(**kwargs)


def test_encoder_rejects_other_configs() -> None:
    with pytest.raises(ConfigError):
        LexicalEncoder({"k1": 1.2})  # type: ignore[arg-type]
    assert LexicalEncoder().config == LexicalConfig()


def test_documents_are_sorted_unique_float32() -> None:
    enc = LexicalEncoder(LexicalConfig(avg_len=10.0))
    docs = enc.encode_documents(
        ["Sea otters hold hands while they sleep so they do not drift apart.", "zebra"]
    )
    assert len(docs) == 2
    for v in docs:
        assert isinstance(v, SparseVector) and len(v) > 0
        assert v.indices.dtype == np.uint32 and v.values.dtype == np.float32
        assert np.all(np.diff(v.indices.astype(np.int64)) > 0)
        assert np.all(v.values > 0) and np.all(np.isfinite(v.values))


def test_document_values_are_qdrant_bm25() -> None:
    """tf (k1 + 1) / (tf + k1 (1 - b + b len / avg_len)) per token, stop words not counted."""
    k1, b, avg = 1.5, 0.6, 4.0
    enc = LexicalEncoder(LexicalConfig(k1=k1, b=b, avg_len=avg))
    # 5 tokens after dropping the stop words "the" and "and": zebra x3, quokka x2
    v = enc.encode_documents(["zebra zebra the quokka and zebra quokka"])[0]
    assert len(v) == 2
    expected = sorted([_bm25(3, 5, k1, b, avg), _bm25(2, 5, k1, b, avg)])
    np.testing.assert_allclose(sorted(v.values.tolist()), expected, rtol=1e-6)
    # the same tokens index the same way in queries and documents
    q = enc.encode_query("zebra")
    assert len(q) == 1 and q.values.tolist() == [1.0]
    zebra = float(v.as_dict()[int(q.indices[0])])
    assert zebra == pytest.approx(_bm25(3, 5, k1, b, avg), rel=1e-6)


def test_queries_one_per_unique_stemmed_token() -> None:
    enc = LexicalEncoder()
    q = enc.encode_query("Running runs RUN the")
    assert q.values.tolist() == [1.0]
    assert q.indices.tolist() == enc.encode_query("run").indices.tolist()
    many = enc.encode_queries(["otters", "sea otters sleeping"])
    assert [len(v) for v in many] == [1, 3]
    assert set(many[0].indices.tolist()) <= set(many[1].indices.tolist())
    assert all(set(v.values.tolist()) == {1.0} for v in many)


@pytest.mark.parametrize("text", ["", "   ", "the of and", "!!! ..."])
def test_empty_and_stop_words_only_are_empty_vectors(text: str) -> None:
    enc = LexicalEncoder()
    assert len(enc.encode_documents([text])[0]) == 0
    assert len(enc.encode_query(text)) == 0


def test_input_types() -> None:
    enc = LexicalEncoder()
    with pytest.raises(TypeError):
        enc.encode_documents("a single string")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        enc.encode_documents(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        enc.encode_query(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"queries\[0\]"):
        enc.encode_queries([b"bytes"])  # type: ignore[list-item]
    assert enc.encode_documents([]) == [] and enc.encode_queries([]) == []


def test_other_language() -> None:
    enc = LexicalEncoder(LexicalConfig(language="german"))
    assert len(enc.encode_query("die Katze und der Hund")) == 2  # stop words die/und/der


def test_measure_avg_len() -> None:
    # token counts without stop words: 2 (otters, sleep) and 5 (otters hold hands otters drift)
    texts = ["the otters sleep", "otters hold hands, otters drift"]
    assert measure_avg_len(texts) == pytest.approx(3.5)
    assert measure_avg_len([]) == 1.0
    assert measure_avg_len(["the and"]) == 1.0  # floored at one token
    long = " ".join(f"w{i}" for i in range(300)) + " w1 w1"
    assert measure_avg_len([long]) == pytest.approx(302.0)
    with pytest.raises(ConfigError):
        measure_avg_len(["x"], language="klingon")


def test_baseline_uses_the_shared_measure() -> None:
    from latentlex.evaluation.baselines import QdrantBm25System

    texts = ["the otters sleep", "otters hold hands, otters drift"]
    system = QdrantBm25System(use_dense=False)
    assert system._measure_avg_len(texts) == measure_avg_len(texts) == pytest.approx(3.5)


def test_measured_avg_len_makes_b_neutral_on_average_docs() -> None:
    """A document of exactly avg_len tokens gets tf (k1 + 1) / (tf + k1), whatever b is."""
    text = "alpha beta gamma delta alpha"
    avg = measure_avg_len([text])
    assert avg == 5.0
    for b in (0.0, 0.5, 1.0):
        v = LexicalEncoder(LexicalConfig(b=b, avg_len=avg)).encode_documents([text])[0]
        np.testing.assert_allclose(
            sorted(v.values.tolist()),
            sorted([_bm25(2, 5, 1.2, 0, 1)] + [_bm25(1, 5, 1.2, 0, 1)] * 3),
        )
