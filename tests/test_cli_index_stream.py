"""``latentlex index`` streams the corpus in chunks and stays resumable."""

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

    state = {"pulled": 0, "written": 0, "ahead": [], "writes": 0}
    real_read = corpus.read_corpus
    real_upsert = EdgeStore.upsert

    def read_corpus(path, **kwargs):
        for doc in real_read(path, **kwargs):
            state["pulled"] += 1
            yield doc

    def upsert(self, points):
        state["writes"] += 1
        state["ahead"].append(state["pulled"] - state["written"])
        real_upsert(self, points)
        state["written"] += len(points)

    monkeypatch.setattr(corpus, "read_corpus", read_corpus)
    monkeypatch.setattr(EdgeStore, "upsert", upsert)

    def reset() -> None:
        state.update(pulled=0, written=0, ahead=[], writes=0)

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

    # re-running adds nothing and writes nothing
    track["reset"]()
    out = run_cli(capsys, *args, "--quiet")
    assert "resumed: 300 documents already indexed with the same content were skipped" in out
    assert "indexed 0 documents (300 before, 300 now)" in out
    assert track["writes"] == 0

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
