"""Latent labels (no LLM), LLM descriptions with fake LLMs, labels in explanations."""

from __future__ import annotations

import json
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import LIMIT_SMALL
from latentlex.corpus import read_corpus
from latentlex.describe import (
    as_completer,
    build_prompt,
    clean_description,
    describe_latents,
    estimate_cost,
)
from latentlex.errors import ConfigError, SAEFormatError
from latentlex.labels import (
    LABELS_NAME,
    LatentLabel,
    LatentLabels,
    _align,
    _snippet,
    label_latents,
    label_sae,
    load_labels,
    read_label_map,
)

ANIMALS = {"quokkas", "otters", "tapirs", "pangolins", "alligators", "foxes", "wolves", "leopards"}


def _copy_sae(src, dst):
    dst.mkdir(parents=True)
    for name in ("cfg.json", "sae.safetensors"):
        shutil.copyfile(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def corpus():
    return list(read_corpus(LIMIT_SMALL))


@pytest.fixture(scope="module")
def labelled(tiny_sae_dir, backbone, tmp_path_factory):
    """A copy of the tiny SAE, labelled on LIMIT-small: (folder, labels)."""
    folder = _copy_sae(tiny_sae_dir, tmp_path_factory.mktemp("lab") / "sae")
    return folder, label_sae(folder, LIMIT_SMALL, backbone=backbone)


# ----------------------------------------------------------------------------- labels


def test_align_merges_word_pieces_and_follows_truncation(backbone):
    long_text = " ".join(f"Quokkas{i}" for i in range(300))  # cut at the maximum length
    texts = ["  Geneva Durben likes Quokkas, snow-leopards and Tapirs.", long_text]
    batch = backbone.forward(texts)
    occ = _align(backbone, texts, batch.lengths.tolist())
    assert occ.skipped == 0 and occ.tok_occ.shape[0] == batch.token_states.shape[0]
    first = [w for w, d in zip(occ.occ_word, occ.occ_doc, strict=True) if d == 0]
    assert first == [
        "geneva", "durben", "likes", "quokkas", ",", "snow", "-", "leopards", "and", "tapirs", ".",
    ]  # fmt: skip
    for (s, e), w, d in zip(occ.occ_span.tolist(), occ.occ_word, occ.occ_doc, strict=True):
        assert texts[d][s:e].lower() == w
    # every token of a word points at the same occurrence, in order
    assert np.all(np.diff(occ.tok_occ) >= 0)


def test_align_with_a_backbone_reading_two_layers(backbone):
    """Each layer's copy of a token maps to the same word occurrence."""
    from latentlex.backbone import Backbone

    both = Backbone(device="cpu", layer=[None, 1])
    texts = ["Geneva Durben likes Quokkas.", "Tapirs"]
    one = _align(backbone, texts, backbone.forward(texts).lengths.tolist())
    batch = both.forward(texts)
    occ = _align(both, texts, batch.lengths.tolist())
    assert occ.skipped == 0 and occ.tok_occ.shape[0] == batch.token_states.shape[0]
    assert occ.occ_word == one.occ_word
    n0 = int(backbone.forward(texts[:1]).lengths[0])
    first = one.tok_occ[:n0]
    np.testing.assert_array_equal(occ.tok_occ[: 2 * n0], np.concatenate([first, first]))


def test_labels_name_corpus_words(labelled, corpus):
    folder, labels = labelled
    text = " ".join(d.text.lower() for d in corpus)
    vocabulary = set(re.findall(r"\w+|[^\w\s]", text))
    meta = labels.meta
    assert meta["mode"] == "token" and meta["n_docs"] == 46 and meta["skipped_docs"] == 0
    assert len(labels) >= 0.9 * meta["width"]  # almost every latent fires on its own corpus
    words = set()
    for j, lab in labels.latents.items():
        assert 0 <= j < meta["width"] and lab.top_words and lab.label
        for w, count, mean_act in lab.top_words:
            assert not w.startswith("##") and w in vocabulary, w  # whole words of the corpus
            assert count >= 1 and mean_act > 0
            words.add(w)
        for ex in lab.examples:
            marked = ex["text"][ex["start"] : ex["end"]].lower()
            assert marked and marked in vocabulary
        assert lab.examples == sorted(lab.examples, key=lambda e: -e["act"])
    assert "quokkas" in words  # quo + ##kka + ##s, merged back into the word
    assert len(words & ANIMALS) >= 6
    assert any(set(lab.label.split(" / ")) & ANIMALS for lab in labels.latents.values())
    # frequencies: the share of tokens each latent fires on; TopK k=8 -> they sum to L0 = 8
    k = json.loads((folder / "cfg.json").read_text())["k"]
    assert sum(lab.frequency for lab in labels.latents.values()) == pytest.approx(k, rel=0.02)


def test_labels_are_stable(labelled, tiny_sae_dir, backbone, tmp_path):
    folder, _ = labelled
    again = _copy_sae(tiny_sae_dir, tmp_path / "again")
    label_sae(again, LIMIT_SMALL, backbone=backbone)
    assert (again / LABELS_NAME).read_bytes() == (folder / LABELS_NAME).read_bytes()


def test_labels_file_round_trip(labelled, tmp_path):
    folder, _ = labelled
    loaded = load_labels(folder)
    assert loaded.to_dict() == json.loads((folder / LABELS_NAME).read_text())
    assert loaded.as_label_map() == read_label_map(folder)
    data = json.loads((folder / LABELS_NAME).read_text())
    assert data["format"] == 1
    entry = next(iter(data["latents"].values()))
    assert set(entry) >= {"label", "top_words", "examples", "frequency", "description"}
    assert read_label_map(tmp_path) == {}
    (tmp_path / LABELS_NAME).write_text("{not json")
    with pytest.raises(SAEFormatError, match=r"(not valid|invalid) JSON"):
        load_labels(tmp_path)
    assert read_label_map(tmp_path) == {}
    (tmp_path / LABELS_NAME).write_text(json.dumps({"format": 9, "latents": {}}))
    with pytest.raises(SAEFormatError, match="format 9"):
        load_labels(tmp_path)


def test_relabel_keeps_descriptions(labelled, tmp_path, monkeypatch):
    import copy

    import latentlex.labels as labels_module

    _, computed = labelled
    folder = tmp_path / "sae"
    shutil.copytree(labelled[0], folder)
    # the labelling pass itself is tested above; here only what label_sae does around it
    monkeypatch.setattr(labels_module, "label_latents", lambda *a, **k: copy.deepcopy(computed))
    j = next(iter(computed.latents))
    first = load_labels(folder)
    first.latents[j].description = "Australian marsupials"
    first.save(folder)
    again = label_sae(folder, ["unused"])
    assert again[j].description == "Australian marsupials"
    assert load_labels(folder)[j].description == "Australian marsupials"
    fresh = label_sae(folder, ["unused"], keep_descriptions=False)
    assert fresh[j].description is None
    first.meta["sae_fingerprint"] = "another SAE"
    first.save(folder)
    assert label_sae(folder, ["unused"])[j].description is None  # other weights: not kept


def test_pooled_mode_labels(backbone, corpus):
    import torch
    from latentlex.sae import SAEConfig, SparseAutoencoder

    torch.manual_seed(0)
    cfg = SAEConfig(d_in=backbone.dim, width=32, k=4, architecture="batchtopk", mode="pooled")
    sae = SparseAutoencoder(cfg)
    texts = [d.text for d in corpus[:10]]
    labels = label_latents(sae, texts, backbone, doc_ids=[d.id for d in corpus[:10]], n_examples=3)
    assert labels.meta["mode"] == "pooled" and labels.meta["n_docs"] == 10
    assert labels.meta["n_tokens"] is None
    assert sum(lab.frequency for lab in labels.latents.values()) == pytest.approx(4.0)
    joined = " ".join(texts).lower()
    for lab in labels.latents.values():
        assert lab.doc_frequency == lab.frequency
        assert 1 <= len(lab.examples) <= 3
        assert all(ex["doc"] in {d.id for d in corpus[:10]} for ex in lab.examples)
        for w, count, _ in lab.top_words:
            assert w in joined and 1 <= count <= len(lab.examples) + 20
        # c-TF-IDF: a word found in every text ("likes") is never a latent's top word
        assert lab.top_words[0][0] != "likes"


def test_label_streams_an_iterable(encoder):
    texts = ["Quokkas live on Rottnest Island.", "Tapirs and quokkas.", "Snow leopards hunt."]
    labels = label_latents(encoder, (t for t in texts), block_size=2, max_docs=2, n_examples=2)
    assert labels.meta["n_docs"] == 2
    docs = {ex["doc"] for lab in labels.latents.values() for ex in lab.examples}
    assert docs == {"0", "1"}  # default ids: positions; the third text was never read
    words = {w for lab in labels.latents.values() for w, *_ in lab.top_words}
    assert {"quokkas", "rottnest", "tapirs"} <= words and "leopards" not in words


def test_label_input_validation(encoder):
    with pytest.raises(TypeError):
        label_latents(encoder, "a single string")
    with pytest.raises(ConfigError):
        label_latents(encoder, ["x"], top_words=0)
    with pytest.raises(ConfigError, match="at least one text"):
        label_latents(encoder, [])


def test_snippet_marks_the_word():
    text = "word " * 40 + "Quokkas" + " tail" * 40
    s = text.index("Quokkas")
    snip, a, b = _snippet(text, s, s + 7)
    assert snip[a:b] == "Quokkas" and snip.startswith("…") and snip.endswith("…")
    assert len(snip) < 150


# ----------------------------------------------------------------------------- explanations


def test_explain_shows_labels(labelled, tiny_sae_dir, backbone, corpus):
    from latentlex.index import LatentIndex
    from latentlex.sae import SparseAutoencoder
    from latentlex.terms import LatentTermEncoder

    folder, labels = labelled
    sae = SparseAutoencoder.load(tiny_sae_dir)
    sae.labels = load_labels(folder).as_label_map()  # what SparseAutoencoder.load will attach
    enc = LatentTermEncoder(sae, backbone, batch_size=8)
    docs = [d for d in corpus if "Quokkas" in d.text][:1] + [
        d for d in corpus if "Quokkas" not in d.text
    ][:2]
    with LatentIndex(enc, ":memory:", collection="labels_explain") as index:
        index.add_documents(docs)
        query = "Who likes Quokkas?"
        hit = index.search(query, k=1, mode="sparse")[0]
        expl = index.explain(query, hit.doc_id, top=5)
        assert sum(t.contribution for t in expl.terms_all) == pytest.approx(
            expl.sparse_score, rel=1e-3
        )
        assert expl.sparse_score == pytest.approx(hit.score, rel=1e-3)
        for t in expl.terms_all:
            assert t.label == labels[t.latent].label  # every shared latent is labelled
        table = expl.table()
        assert expl.terms[0].label[:28] in table and "latent " not in table.split("\n", 2)[2]

        from latentlex.postprocess import LatentLexExplainPostprocessor
        from llama_index.core.schema import NodeWithScore, TextNode

        post = LatentLexExplainPostprocessor(index=index, top=3)
        nodes = [
            NodeWithScore(node=TextNode(id_=hit.doc_id, text=hit.text), score=hit.score),
            NodeWithScore(node=TextNode(id_="nowhere", text="?"), score=0.1),
        ]
        out = post.postprocess_nodes(nodes, query_str=query)
        meta = out[0].node.metadata
        assert meta["latent_explanation"]["sparse_score"] == pytest.approx(expl.sparse_score)
        assert [t["label"] for t in meta["latent_explanation"]["terms"]] == [
            t.label for t in expl.terms[:3]
        ]
        assert meta["latent_terms"].startswith(expl.terms[0].label)
        assert "latent_explanation" in out[0].node.excluded_llm_metadata_keys
        assert "latent_terms" not in out[0].node.get_content(metadata_mode="llm")
        assert "latent_explanation" not in out[1].node.metadata  # unknown doc: left alone


# ----------------------------------------------------------------------------- LLM descriptions


def _toy_labels(n: int = 7) -> LatentLabels:
    return LatentLabels(
        {
            j: LatentLabel(
                f"word{j} / other{j}",
                [(f"word{j}", 3, 1.5), (f"other{j}", 2, 1.0)],
                [{"text": f"Ann likes Word{j} a lot.", "start": 10, "end": 15, "act": 2.0}],
                frequency=0.01,
            )
            for j in range(n)
        },
        {"sae_fingerprint": "toy"},
    )


class FlakyLlamaLLM:
    """LlamaIndex-like: ``.complete(prompt).text``; raises on call number ``fail_at``."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[str] = []
        self.fail_at = fail_at

    def complete(self, prompt: str) -> SimpleNamespace:
        self.calls.append(prompt)
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise ConnectionError("rate limited")
        word = re.search(r"\[\[(\w+)\]\]", prompt).group(1)
        return SimpleNamespace(text=f'Description: "Things like {word}."\n')


def test_describe_interrupted_then_resumed(tmp_path):
    labels = _toy_labels(7)
    labels.save(tmp_path)
    flaky = FlakyLlamaLLM(fail_at=5)  # batches of 3: dies in the middle of the second batch
    with pytest.raises(ConnectionError):
        describe_latents(tmp_path, flaky, batch_size=3)
    saved = load_labels(tmp_path)
    done = {j for j, lab in saved.latents.items() if lab.description}
    assert done == {0, 1, 2, 3}  # the first batch and the part of the second that finished
    assert saved[0].description == "Things like Word0"
    estimate = estimate_cost(saved)
    assert estimate.n_calls == 3 and estimate.n_batches == 1

    good = FlakyLlamaLLM()
    result = describe_latents(tmp_path, good, batch_size=3)
    assert len(good.calls) == 3 and sorted(result.described) == [4, 5, 6]
    assert result.skipped == 4 and not result.failed
    final = load_labels(tmp_path)
    assert all(final[j].description == f"Things like Word{j}" for j in range(7))
    assert final.as_label_map()[6] == "Things like Word6"
    assert final.as_label_map(prefer_description=False)[6] == "word6 / other6"
    again = FlakyLlamaLLM()
    assert describe_latents(tmp_path, again).described == [] and not again.calls


def test_describe_with_langchain_fake_chat_model():
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    labels = _toy_labels(4)
    llm = FakeListChatModel(responses=["**Marsupials.**"])
    result = describe_latents(labels, llm, batch_size=2)
    assert sorted(result.described) == [0, 1, 2, 3]
    assert {labels[j].description for j in range(4)} == {"Marsupials"}
    # sequential .invoke path too
    labels = _toy_labels(2)
    describe_latents(labels, FakeListChatModel(responses=["Pets"]), max_concurrency=1)
    assert labels[1].description == "Pets"


def test_describe_with_llama_index_mock_llm():
    from llama_index.core.llms import MockLLM

    labels = _toy_labels(2)
    describe_latents(labels, MockLLM(max_tokens=3))
    assert labels[0].description == "text text text"


def test_describe_retries_then_gives_up():
    answers = iter(["one two three four five six seven eight nine ten", "Short answer"])
    labels = _toy_labels(1)
    result = describe_latents(labels, lambda p: next(answers), retries=1)
    assert labels[0].description == "Short answer" and result.calls == 2
    labels = _toy_labels(2)
    result = describe_latents(labels, lambda p: "", retries=2)
    assert result.failed == [0, 1] and result.calls == 6 and labels[0].description is None


def test_describe_cost_and_confirmation():
    labels = _toy_labels(5)
    labels[0].description = "Already"
    est = estimate_cost(labels, batch_size=2)
    prompts = [build_prompt(labels[j]) for j in range(1, 5)]
    assert (est.n_latents, est.n_calls, est.n_batches) == (4, 4, 2)
    assert est.prompt_tokens == pytest.approx(sum(len(p) for p in prompts) / 4, abs=1)
    assert "4 LLM calls" in str(est)
    seen = []
    result = describe_latents(labels, lambda p: 1 / 0, confirm=lambda e: seen.append(e) or False)
    assert result.cancelled and seen == [estimate_cost(labels)] and result.calls == 0
    assert describe_latents(labels, lambda p: "Ok", max_calls=2).described == [1, 2]


def test_prompt_and_cleaning(labelled):
    _, labels = labelled
    j = max(labels.latents, key=lambda j: labels[j].frequency)
    prompt = build_prompt(labels[j], max_examples=4)
    snippets = [ln for ln in prompt.splitlines() if re.match(r"\d+\. ", ln)]
    assert len(snippets) == min(4, len(labels[j].examples))
    assert all("[[" in ln and "]]" in ln for ln in snippets)
    assert labels[j].top_words[0][0] in prompt
    assert clean_description("<think>hmm</think>\n- Fruit names\n") == "Fruit names"
    assert clean_description("1. `Board games`.") == "Board games"
    assert clean_description("...") is None and clean_description("   ") is None
    assert clean_description("a b c d e f g h") == "a b c d e f g h"
    assert clean_description("a b c d e f g h i") is None
    with pytest.raises(ConfigError, match="cannot use"):
        as_completer(object())
    with pytest.raises(ConfigError, match="no labels"):
        describe_latents(_toy_labels(1), lambda p: "x", latents=[99])


# ----------------------------------------------------------------------------- CLI


def test_cli_label_and_describe(tiny_sae_dir, tmp_path, monkeypatch, capsys):
    import argparse

    from latentlex.cli_interp import add_cli

    folder = _copy_sae(tiny_sae_dir, tmp_path / "sae")
    (tmp_path / "my_llms.py").write_text(
        "class Echo:\n    def complete(self, prompt):\n        return 'Likes and hobbies'\n"
        "def make():\n    return Echo()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["label", "--sae", str(folder), "--corpus", str(LIMIT_SMALL), "--max-docs", "5",
         "--describe-with", "my_llms:make", "--yes", "--max-calls", "3", "--quiet"]
    )  # fmt: skip
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "from 5 texts" in out and "described 3 latents" in out and "LLM calls" in out
    labels = load_labels(folder)
    assert sum(1 for lab in labels.latents.values() if lab.description) == 3
    assert labels.meta["n_docs"] == 5
    args = parser.parse_args(
        ["label", "--sae", str(folder), "--describe-only", "--describe-with", "my_llms:Echo",
         "--max-calls", "2", "--quiet"]
    )  # fmt: skip
    assert args.handler(args) == 1  # not a terminal, no --yes: nothing is called
    assert "re-run with --yes" in capsys.readouterr().out
