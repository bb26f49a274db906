from __future__ import annotations

import json

import pytest
from latentlex.corpus import count_documents, read_corpus
from latentlex.errors import CorpusError


def test_beir_jsonl_title_and_text(tmp_path):
    f = tmp_path / "corpus.jsonl"
    rows = [
        {"_id": "a 1", "title": "Title", "text": "Body text."},
        {"_id": "b", "title": "", "text": "Only body."},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    docs = list(read_corpus(f))
    assert [d.id for d in docs] == ["a 1", "b"]
    assert docs[0].text == "Title Body text."
    assert docs[0].metadata == {"title": "Title"}
    assert docs[1].text == "Only body."
    assert count_documents(f) == 2


def test_txt_one_doc_per_line_and_folder(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\n\nsecond doc\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"_id": "x", "text": "json doc"}) + "\n")
    docs = list(read_corpus(tmp_path))
    assert [d.text for d in docs] == ["first doc", "second doc", "json doc"]
    assert docs[0].id == "a:1" and docs[1].id == "a:3"


def test_beir_folder_takes_corpus_only(tmp_path):
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"_id": "d", "text": "doc"}) + "\n")
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "query"}) + "\n")
    assert [d.id for d in read_corpus(tmp_path)] == ["d"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"text": "no id"}', "missing '_id'"),
        ('{"_id": "x", "text": 5}', "field 'text' must be a string"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    f = tmp_path / "corpus.jsonl"
    f.write_text(json.dumps({"_id": "ok", "text": "fine"}) + "\n" + line + "\n")
    gen = read_corpus(f)
    with pytest.raises(CorpusError, match=rf"corpus.jsonl:2: {message}"):
        next(gen)  # validation happens before the first document is yielded


def test_duplicate_ids_and_missing_paths(tmp_path):
    f = tmp_path / "corpus.jsonl"
    f.write_text('{"_id": "x", "text": "a"}\n{"_id": "x", "text": "b"}\n')
    with pytest.raises(CorpusError, match="duplicate document id 'x'"):
        list(read_corpus(f))
    with pytest.raises(CorpusError, match="no such file"):
        list(read_corpus(tmp_path / "missing.jsonl"))
    (tmp_path / "c.csv").write_text("x")
    with pytest.raises(CorpusError, match="unsupported corpus file type"):
        list(read_corpus(tmp_path / "c.csv"))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe broken\n")
    with pytest.raises(CorpusError, match="not valid UTF-8"):
        list(read_corpus(bad))


def test_real_limit_small():
    from conftest import LIMIT_SMALL

    docs = list(read_corpus(LIMIT_SMALL))
    assert len(docs) == 46
    assert docs[0].id == "Geneva Durben"
    assert docs[0].text.startswith("Geneva Durben likes")
