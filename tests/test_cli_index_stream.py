"""``latentlex index`` streams the corpus in chunks and stays resumable; the lexical leg it builds,
and ``search`` / ``info`` over it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

WORDS = [
    "quokka",
    "otter",
    "tapir",
    "glacier",
    "bassoon",
    "slide",
    "rule",
    "lime",
    "river",
    "marsupial",
    "island",
    "reed",
]


def write_corpus(path: Path, n: int, changed: dict[int, str] | None = None) -> dict[str, str]:
    docs: dict[str, str] = {}
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            text = (changed or {}).get(i) or (
                f"Document {i}: the {WORDS[i % len(WORDS)]} meets the {WORDS[(3 * i) % len(WORDS)]}."
            )
            docs[f"d{i:04d}"] = text
            fh.write(json.dumps({"_id": f"d{i:04d}", "text": text, "metadata": {"n": i}}) + "\n")
    return docs


@pytest.fixture
def track(monkeypatch):
    """Record, at every write, how many documents the CLI had pulled from the corpus reader."""
    import latentlex.corpus as corpus
    from latentlex.store.edge import EdgeStore

    state = {"pulled": 0, "written": 0, "ahead": [], "writes": 0, "optimized_at": []}
    real_read = corpus.read_corpus
    real_upsert = EdgeStore.upsert
    real_optimize = EdgeStore.optimize

    def read_corpus(path, **kwargs):
        for doc in real_read(path, **kwargs):
            state["pulled"] += 1
            yield doc

    def upsert(self, points):
        state["writes"] += 1
        state["ahead"].append(state["pulled"] - state["written"])
        real_upsert(self, points)
        state["written"] += len(points)

    def optimize(self):
        state["optimized_at"].append(state["written"])
        return real_optimize(self)

    monkeypatch.setattr(corpus, "read_corpus", read_corpus)
    monkeypatch.setattr(EdgeStore, "upsert", upsert)
    monkeypatch.setattr(EdgeStore, "optimize", optimize)

    def reset() -> None:
        state.update(pulled=0, written=0, ahead=[], writes=0, optimized_at=[])

    state["reset"] = reset
    return state


def run_cli(capsys, *argv: str) -> str:
    from latentlex.cli import main

    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def stored(store: Path, sae: Path) -> dict[str, str]:
    from latentlex.index import LatentIndex

    with LatentIndex(str(sae), store) as index:
        n = index.count()
        recs = index.get([f"d{i:04d}" for i in range(n + 20)])
    return {r.doc_id: r.text for r in recs}


@pytest.mark.timeout(600)
def test_index_streams_in_chunks_and_resumes(tmp_path, tiny_sae_dir, track, capsys):
    corpus, store = tmp_path / "corpus.jsonl", tmp_path / "store"
    docs = write_corpus(corpus, 300)
    args = ["index", "--corpus", str(corpus), "--sae", str(tiny_sae_dir), "--store", str(store)]
    args += ["--chunk-size", "50", "--batch-size", "16"]

    out = run_cli(capsys, *args)
    assert "indexed 300 documents (0 before, 300 now)" in out
    assert "resumed" not in out
    # streamed: at every write, the reader was at most one chunk ahead of what had been written
    assert track["writes"] >= 300 // 16
    assert max(track["ahead"]) <= 50
    assert track["pulled"] == 300
    # the engine's search indexes are built once, after the last write
    assert track["optimized_at"] == [300]

    # re-running adds nothing and writes nothing
    track["reset"]()
    out = run_cli(capsys, *args, "--quiet")
    assert "resumed: 300 documents already indexed with the same content were skipped" in out
    assert "indexed 0 documents (300 before, 300 now)" in out
    assert track["writes"] == 0 and track["optimized_at"] == []  # nothing written, nothing rebuilt

    # a changed document and new ones, spread over several chunks: only those are written
    docs = write_corpus(corpus, 330, changed={123: "Document 123 now talks about river otters."})
    track["reset"]()
    out = run_cli(capsys, *args, "--quiet")
    assert "resumed: 299 documents already indexed" in out
    assert "indexed 31 documents (300 before, 330 now)" in out
    assert stored(store, tiny_sae_dir) == docs  # no duplicates, latest content


@pytest.mark.timeout(600)
def test_bad_corpus_fails_before_the_collection_is_touched(tmp_path, tiny_sae_dir, track, capsys):
    corpus, store = tmp_path / "corpus.jsonl", tmp_path / "store"
    docs = write_corpus(corpus, 40)
    args = ["index", "--corpus", str(corpus), "--sae", str(tiny_sae_dir), "--store", str(store)]
    run_cli(capsys, *args, "--chunk-size", "8", "--quiet")
    with corpus.open("a", encoding="utf-8") as fh:  # a bad line far beyond the first chunk
        fh.write("{not json\n")
    from latentlex.cli import main

    track["reset"]()
    assert main([*args, "--chunk-size", "8", "--recreate", "--quiet"]) == 2
    assert "invalid JSON" in capsys.readouterr().err
    assert track["writes"] == 0
    assert stored(store, tiny_sae_dir) == docs  # --recreate did not drop the collection


def test_chunk_size_must_be_positive(tmp_path, capsys):
    from latentlex.cli import main

    with pytest.raises(SystemExit):
        main(["index", "--corpus", "x.jsonl", "--sae", "s", "--chunk-size", "0"])
    assert "--chunk-size" in capsys.readouterr().err


def sidecar(store: Path, collection: str = "latentlex") -> dict:
    """The collection's own record (the embedded engine keeps it in a sidecar file)."""
    return json.loads((store / collection / "latentlex.json").read_text())["latentlex"]


def run_json(capsys, *argv: str):
    return json.loads(run_cli(capsys, *argv))


@pytest.mark.timeout(600)
def test_index_measures_the_lexical_leg_and_keeps_it(tmp_path, tiny_sae_dir, capsys):
    from latentlex.lexical import measure_avg_len

    corpus, store = tmp_path / "corpus.jsonl", tmp_path / "store"
    docs = write_corpus(corpus, 40)
    args = ["index", "--corpus", str(corpus), "--sae", str(tiny_sae_dir), "--store", str(store)]
    args += ["--chunk-size", "16", "--quiet"]
    assert "indexed 40 documents" in run_cli(capsys, *args)
    record = sidecar(store)
    lexical = record["identity"]["lexical"]
    # a new collection: BM25 avg_len measured on the first chunk, not Qdrant's default 256
    assert record["lexical_name"] == "bm25"
    assert lexical["avg_len"] == pytest.approx(measure_avg_len(list(docs.values())[:16]))
    assert lexical["avg_len"] != 256.0 and lexical["avg_len"] < 20
    info = run_json(capsys, "info", "--store", str(store))
    assert info["points"] == 40 and info["lexical"] == {"vector": "bm25", **lexical}

    # an existing collection keeps its own lexical setting, even where the first chunk changed
    long = " ".join(
        ["Document {i}: a much longer text about river otters, quokkas and glaciers."] * 3
    )
    docs = write_corpus(corpus, 40, changed={i: long.format(i=i) for i in range(16)})
    out = run_cli(capsys, *args)
    assert "indexed 16 documents (40 before, 40 now)" in out
    assert sidecar(store)["identity"]["lexical"] == lexical
    assert stored(store, tiny_sae_dir) == docs

    # --recreate builds a new collection: measured again
    out = run_cli(capsys, *args, "--recreate")
    assert "indexed 40 documents (0 before, 40 now)" in out
    remeasured = sidecar(store)["identity"]["lexical"]["avg_len"]
    assert remeasured == pytest.approx(measure_avg_len(list(docs.values())[:16]))
    assert remeasured > lexical["avg_len"]


@pytest.mark.timeout(600)
def test_index_no_lexical_builds_two_legs(tmp_path, tiny_sae_dir, capsys):
    from latentlex.cli import main

    corpus, store = tmp_path / "corpus.jsonl", tmp_path / "store"
    write_corpus(corpus, 24)
    args = ["index", "--corpus", str(corpus), "--sae", str(tiny_sae_dir), "--store", str(store)]
    args += ["--quiet"]
    assert "indexed 24 documents" in run_cli(capsys, *args, "--no-lexical")
    record = sidecar(store)
    assert "lexical_name" not in record and "lexical" not in record["identity"]
    assert run_json(capsys, "info", "--store", str(store))["lexical"] is None
    # re-run without the flag: the collection keeps its two legs
    assert "indexed 0 documents (24 before, 24 now)" in run_cli(capsys, *args)
    assert "lexical_name" not in sidecar(store)

    search = ["search", "quokka otter", "--sae", str(tiny_sae_dir), "--store", str(store)]
    table = run_cli(capsys, *search, "--k", "3").splitlines()
    assert "lexical" not in table[0] and "latent" in table[0] and len(table) == 4
    capsys.readouterr()
    assert main([*search, "--mode", "lexical"]) == 2
    assert "lexical leg" in capsys.readouterr().err
    assert main([*search, "--weights", "1,1,1"]) == 2
    assert "three weights" in capsys.readouterr().err


@pytest.mark.timeout(600)
def test_search_lexical_mode_fusion_and_weights(tmp_path, tiny_sae_dir, capsys):
    from latentlex.cli import main
    from latentlex.index import LatentIndex

    corpus, store = tmp_path / "corpus.jsonl", tmp_path / "store"
    write_corpus(corpus, 36)
    sae = str(tiny_sae_dir)
    run_cli(
        capsys, "index", "--corpus", str(corpus), "--sae", sae, "--store", str(store), "--quiet"
    )
    search = ["search", "quokka", "--sae", sae, "--store", str(store), "--k", "4"]

    lexical = run_json(capsys, *search, "--mode", "lexical", "--json")
    # BM25 of the words: only documents with the word score, all of them do here
    assert len(lexical) == 4 and all("quokka" in h["text"] for h in lexical)
    rrf = run_json(capsys, *search, "--fusion", "rrf", "--weights", "1,1,1", "--json")
    default = run_json(capsys, *search, "--json")
    with LatentIndex(sae, store) as index:
        want_lex = index.search("quokka", 4, mode="lexical")
        want_rrf = index.search("quokka", 4, fusion="rrf", weights=(1.0, 1.0, 1.0))
        want_default = index.search("quokka", 4)
    for got, want in ((lexical, want_lex), (rrf, want_rrf), (default, want_default)):
        assert [h["doc_id"] for h in got] == [h.doc_id for h in want]
        assert [h["score"] for h in got] == pytest.approx([h.score for h in want])
    assert all(h["lexical_rank"] is not None for h in rrf)  # every hit has the word
    assert all(h["lexical_score"] is not None for h in default)

    table = run_cli(capsys, *search).splitlines()
    assert table[0].split() == ["#", "score", "dense", "latent", "lexical", "doc"]
    top = default[0]
    assert f"{top['lexical_score']:.3f} #{top['lexical_rank']}" in table[1]
    assert f"{top['doc_id']}:" in table[1]

    for bad in ("1", "1,2,3,4", "a,b"):
        with pytest.raises(SystemExit):
            main([*search, "--weights", bad])
        assert "--weights" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*search, "--fusion", "bogus"])
    capsys.readouterr()


@pytest.mark.timeout(600)
def test_index_and_info_on_a_server(tmp_path, tiny_sae_dir, capsys):
    """The same against a Qdrant server (``$QDRANT_URL``): a new collection, then a re-run."""
    import os
    import uuid

    url = os.environ.get("QDRANT_URL")
    if not url:
        pytest.skip("set QDRANT_URL to test against a real Qdrant server")
    from latentlex.lexical import measure_avg_len
    from latentlex.store import ClientStore

    corpus, collection = tmp_path / "corpus.jsonl", f"cli_{uuid.uuid4().hex[:8]}"
    docs = write_corpus(corpus, 20)
    args = ["index", "--corpus", str(corpus), "--sae", str(tiny_sae_dir), "--url", url]
    args += ["--collection", collection, "--quiet"]
    try:
        assert "indexed 20 documents (0 before" in run_cli(capsys, *args)
        info = run_json(capsys, "info", "--url", url, "--collection", collection)
        assert info["lexical"]["avg_len"] == pytest.approx(measure_avg_len(list(docs.values())))
        write_corpus(corpus, 24)
        assert "indexed 4 documents (20 before, 24 now)" in run_cli(capsys, *args)
        again = run_json(capsys, "info", "--url", url, "--collection", collection)
        assert again["lexical"] == info["lexical"] and again["points"] == 24
    finally:
        ClientStore(url).client.delete_collection(collection)
