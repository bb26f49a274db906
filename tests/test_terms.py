from __future__ import annotations

import numpy as np
import pytest
import torch
from latentlex.errors import BackboneMismatchError, ConfigError
from latentlex.sae import SAEConfig, SparseAutoencoder
from latentlex.terms import LatentTermEncoder, pool_latents


def test_pool_latents_matches_dense_sum():
    acts = torch.tensor([[1.0, 0.5], [2.0, 0.0], [0.25, 3.0]])
    idx = torch.tensor([[3, 1], [3, 7], [0, 1]])
    out = pool_latents(acts, idx, torch.tensor([2, 0, 1]), width=8)
    assert out[0][0].tolist() == [1, 3] and np.allclose(out[0][1], [0.5, 3.0])
    assert out[1][0].size == 0  # a text with no tokens
    assert out[2][0].tolist() == [0, 1] and np.allclose(out[2][1], [0.25, 3.0])


def test_one_forward_pass_serves_dense_and_sparse(encoder):
    calls = []
    handle = encoder.backbone.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        texts = [f"Person {i} likes quokkas and slide rules." for i in range(20)]
        out = encoder.encode_documents(texts)
    finally:
        handle.remove()
    assert len(calls) == int(np.ceil(20 / encoder.batch_size))  # one pass per batch, not two
    assert out.dense.shape == (20, encoder.dim)
    assert all(len(v) > 0 for v in out.sparse)


def test_query_encoding_costs_one_forward_pass_and_matches_dense(encoder):
    """The hybrid query path pays one backbone pass per batch, like the dense path, gives the dense
    path's vector bit for bit, and encodes a text alone as it does inside a batch."""
    texts = [f"Which person likes quokkas number {i}?" for i in range(10)] + ["slide rules"]
    calls = []
    handle = encoder.backbone.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        batched = encoder.encode_queries(texts)
        assert len(calls) == int(np.ceil(len(texts) / encoder.batch_size))
        calls.clear()
        singles = [encoder.encode_queries([t]) for t in texts]
        assert len(calls) == len(texts)  # one pass per single-text call, not two
        calls.clear()
        dense = [encoder.backbone.encode_dense([t], is_query=True) for t in texts]
        assert len(calls) == len(texts)
    finally:
        handle.remove()
    for i, one in enumerate(singles):
        np.testing.assert_array_equal(one.dense, dense[i])  # same forward, same vector
        np.testing.assert_allclose(one.dense[0], batched.dense[i], atol=1e-5)  # padding noise only
        a = np.zeros(encoder.width)
        b = np.zeros(encoder.width)
        a[one.sparse[0].indices] = one.sparse[0].values
        b[batched.sparse[i].indices] = batched.sparse[i].values
        assert len(one.sparse[0]) > 0
        assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.99


def test_document_and_query_weights_follow_the_formulas(encoder):
    text = "Geneva Durben likes Quokkas, River Otters and Tapirs."
    b = encoder.backbone.forward([text])
    z = encoder.sae.encode(b.token_states)
    u = torch.zeros(encoder.width).index_add_(0, z.top_indices.reshape(-1), z.top_acts.reshape(-1))
    nz = torch.nonzero(u > 0).reshape(-1).numpy()
    w = np.sqrt(u.numpy()[nz].astype(np.float64))
    q = encoder.encode_queries([text]).sparse[0]
    assert q.indices.tolist() == nz.tolist()
    np.testing.assert_allclose(q.values, w, rtol=1e-5)
    cfg = encoder.sae.cfg
    k1, bb, dl = cfg.bm25_k1, cfg.bm25_b, w.sum()
    expected = w * (k1 + 1) / (w + k1 * (1 - bb + bb * dl / cfg.avgdl))
    d = encoder.encode_documents([text]).sparse[0]
    np.testing.assert_allclose(d.values, expected, rtol=1e-4)
    np.testing.assert_allclose(
        encoder.encode_documents([text]).dense, encoder.backbone.model.encode([text]), atol=1e-5
    )


def test_empty_texts_give_empty_sparse_and_model_dense(encoder):
    out = encoder.encode_documents(["", "   ", "real text"])
    assert len(out.sparse[0]) == 0 and len(out.sparse[1]) == 0 and len(out.sparse[2]) > 0
    assert np.isfinite(out.dense).all()
    assert len(encoder.encode_documents([])) == 0


def test_truncation_warns_once(encoder, caplog):
    caplog.set_level("WARNING")
    encoder.encode_documents(["word " * 600, "word " * 700, "short"])
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "2 of 3" in warnings[0].getMessage()


def test_non_string_names_position(encoder):
    with pytest.raises(TypeError, match=r"texts\[2\]"):
        encoder.encode_documents(["a", "b", None])


def test_missing_avgdl_is_a_clear_error(backbone):
    cfg = SAEConfig(d_in=backbone.dim, width=64, k=4, backbone=backbone.name)
    enc = LatentTermEncoder(SparseAutoencoder(cfg), backbone)
    enc.encode_queries(["fine without avgdl"])
    with pytest.raises(ConfigError, match="avgdl"):
        enc.encode_documents(["needs avgdl"])
    assert enc.calibrate_avgdl(["one text", "another text here"]) > 0
    assert len(enc.encode_documents(["now it works"]).sparse[0]) > 0


def test_backbone_mismatch_refused(backbone):
    cfg = SAEConfig(d_in=768, width=64, k=4, backbone="BAAI/bge-base-en-v1.5")
    with pytest.raises(BackboneMismatchError, match="768"):
        LatentTermEncoder(SparseAutoencoder(cfg), backbone)
    cfg = SAEConfig(
        d_in=backbone.dim,
        width=64,
        k=4,
        backbone="x",
        backbone_fingerprint="0" * 16,
        backbone_dim=backbone.dim,
    )
    with pytest.raises(BackboneMismatchError, match="0000000000000000"):
        LatentTermEncoder(SparseAutoencoder(cfg), backbone)


def test_pooled_mode_uses_clsr_weights(backbone):
    cfg = SAEConfig(
        d_in=backbone.dim,
        width=256,
        k=8,
        architecture="batchtopk",
        mode="pooled",
        threshold=0.0,
        bm25_k1=0.6,
        bm25_b=2.0,
        query_k2=1.5,
        doc_max_terms=5,
        avgdl=5.0,
    )
    torch.manual_seed(0)
    enc = LatentTermEncoder(SparseAutoencoder(cfg), backbone)
    q = enc.encode_queries(["a query about otters"]).sparse[0]
    d = enc.encode_documents(["a document about otters", ""]).sparse
    assert 0 < len(q) <= cfg.effective_max_active
    assert 0 < len(d[0]) <= 5  # doc_max_terms
    assert np.all(q.values < 2.5) and np.all(q.values > 0)  # tf(k2+1)/(tf+k2) < k2+1
    raw = enc.sae.encode(enc.backbone.forward(["a query about otters"]).dense)
    tf = raw.top_acts[raw.top_acts > 0].numpy()
    np.testing.assert_allclose(np.sort(q.values), np.sort(tf * 2.5 / (tf + 1.5)), rtol=1e-5)


def test_encode_states_equals_encode_documents(encoder, tmp_path):
    from latentlex.states import encode_token_states

    texts = ["Geneva Durben likes Quokkas.", "Another person likes Tapirs and Limes."]
    st = encode_token_states(encoder.backbone, ["a", "b"], texts, tmp_path, progress=False)
    from_states = encoder.encode_states(st)
    direct = encoder.encode_documents(texts)
    for i, doc_id in enumerate(st.doc_ids):
        j = ["a", "b"].index(doc_id)
        a, b = from_states.sparse[i], direct.sparse[j]
        # fp16 token states: same terms, values within half-precision error
        common = np.intersect1d(a.indices, b.indices)
        assert len(common) >= 0.9 * max(len(a), len(b))
        assert abs(a.dot(a) - b.dot(b)) / b.dot(b) < 0.02


def test_layer_is_recorded_and_enforced(backbone, tmp_path):
    from latentlex.backbone import Backbone
    from latentlex.fit import fit_sae

    texts = ["Geneva likes quokkas and tapirs.", "Armand likes slide rules and limes."] * 4
    layer1 = Backbone(device="cpu", layer=1)
    out = layer1.forward(texts[:1])
    final = backbone.forward(texts[:1])
    assert out.lengths.tolist() == final.lengths.tolist()
    assert not torch.allclose(out.token_states, final.token_states)  # really another layer
    np.testing.assert_allclose(out.dense.numpy(), final.dense.numpy(), atol=1e-5)  # same pass
    sae = fit_sae(texts, tmp_path / "sae", backbone=layer1, width=64, k=4, epochs=2, progress=False)
    assert SparseAutoencoder.load(tmp_path / "sae").cfg.layer == 1
    enc = LatentTermEncoder(tmp_path / "sae")  # builds the backbone the config names
    assert enc.backbone.layer == 1
    with pytest.raises(ConfigError, match="layer 1"):
        LatentTermEncoder(sae, backbone)


def test_several_layers_read_in_one_pass(backbone, tmp_path):
    """layer=[None, 1]: each text's rows are its tokens at the final layer, then at layer 1 (the
    same states the one-layer backbones give); an SAE fitted on them records both layers, is
    enforced, and its latent mass is the sum of both depths' activations."""
    from latentlex.backbone import Backbone
    from latentlex.fit import fit_sae
    from latentlex.states import states_folder_name
    from latentlex.terms import pool_latents

    texts = ["Geneva likes quokkas and tapirs.", "Armand likes slide rules and limes."] * 4
    both = Backbone(device="cpu", layer=(None, 1))
    assert both.layer == [None, 1] and both.layers == (None, 1)
    layer1 = Backbone(device="cpu", layer=1)
    out = both.forward(texts[:2])
    final, early = backbone.forward(texts[:2]), layer1.forward(texts[:2])
    assert out.lengths.tolist() == [2 * n for n in final.lengths.tolist()]
    n0 = int(final.lengths[0])
    rows0 = out.token_states[: 2 * n0]
    np.testing.assert_allclose(rows0[:n0].numpy(), final.token_states[:n0].numpy(), atol=1e-5)
    np.testing.assert_allclose(rows0[n0:].numpy(), early.token_states[:n0].numpy(), atol=1e-5)
    np.testing.assert_allclose(out.dense.numpy(), final.dense.numpy(), atol=1e-5)
    assert states_folder_name("c", both) == "c-Lfinal+1"
    assert states_folder_name("c", layer1) == "c-L1" and states_folder_name("c", backbone) == "c"

    sae = fit_sae(texts, tmp_path / "sae", backbone=both, width=64, k=4, epochs=2, progress=False)
    assert SparseAutoencoder.load(tmp_path / "sae").cfg.layer == [None, 1]  # JSON round trip
    enc = LatentTermEncoder(tmp_path / "sae")  # builds the backbone the config names
    assert enc.backbone.layers == (None, 1)
    with pytest.raises(ConfigError, match="layer"):
        LatentTermEncoder(sae, backbone)
    with pytest.raises(ConfigError, match="layer"):
        LatentTermEncoder(sae, layer1)
    # the mass of a text = its final-layer activations + its layer-1 activations
    with torch.inference_mode():
        parts = []
        for b in (final, early):
            e = sae.encode(b.token_states)
            parts.append(pool_latents(e.top_acts, e.top_indices, b.lengths, 64)[0])
    idx, mass = enc.latent_mass(out)[0]
    want = np.zeros(64)
    for i, m in parts:
        want[i] += m
    got = np.zeros(64)
    got[idx] = mass
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [[], [1, 1], ["1"], 1.5, "final", [True]])
def test_layer_choice_is_validated(bad):
    from latentlex._validate import canonical_layer

    with pytest.raises(ConfigError, match="layer"):
        canonical_layer(bad)


def test_fit_sae_on_documents_reuses_their_cached_token_states(backbone, tmp_path):
    """fit_sae(list[Document], cache_dir=...) keys the token states by the documents' own ids, so
    states cached by encode_token_states for the same corpus are reused (no second backbone pass)."""
    from unittest import mock

    from latentlex.corpus import Document
    from latentlex.fit import fit_sae
    from latentlex.states import encode_token_states

    docs = [Document(f"d{i}", f"Document {i} mentions quokkas and tapirs.") for i in range(6)]
    cache = tmp_path / "states"
    encode_token_states(
        backbone, [d.id for d in docs], [d.text for d in docs], cache, progress=False
    )
    with mock.patch.object(backbone, "forward", side_effect=AssertionError("re-encoded")):
        sae = fit_sae(
            docs, None, backbone=backbone, width=32, k=4, epochs=1, progress=False,
            cache_dir=str(cache),
        )  # fmt: skip
    assert sae.cfg.width == 32


def test_query_k_keeps_each_query_tokens_strongest_latents(encoder):
    """SAEConfig.query_k: queries keep the top query_k latents per token; documents are untouched."""
    texts = ["Who likes quokkas and tapirs?", "sea otters hold hands"]
    cfg = encoder.sae.cfg
    assert cfg.k > 2
    full_q = encoder.encode_queries(texts)
    full_d = encoder.encode_documents(texts)
    batch = encoder.backbone.forward(texts, is_query=True)
    enc = encoder.sae.encode(batch.token_states)
    try:
        cfg.query_k = 2
        short_q = encoder.encode_queries(texts)
        short_d = encoder.encode_documents(texts)
    finally:
        cfg.query_k = None
    start = 0
    for i, n in enumerate(batch.lengths.tolist()):
        ids = enc.top_indices[start : start + n]
        acts = enc.top_acts[start : start + n]
        start += n
        want = {
            int(j)
            for row, a in zip(ids[:, :2], acts[:, :2], strict=True)
            for j, v in zip(row, a, strict=True)
            if v > 0
        }
        assert set(short_q.sparse[i].indices.tolist()) == want
        assert want <= set(full_q.sparse[i].indices.tolist())
        assert len(short_q.sparse[i]) < len(full_q.sparse[i])
        np.testing.assert_array_equal(short_d.sparse[i].indices, full_d.sparse[i].indices)
    np.testing.assert_array_equal(short_q.dense, full_q.dense)
    with pytest.raises(ConfigError, match="query_k"):
        SAEConfig.from_dict({**cfg.to_dict(), "query_k": 0})


def test_cli_layer_argument():
    import argparse

    from latentlex.cli import _layer_arg

    assert _layer_arg("final,1") == [None, 1]
    assert (
        _layer_arg("2") == 2 and _layer_arg("final") is None and _layer_arg("1,final") == [1, None]
    )
    for bad in ("x", "1,1", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            _layer_arg(bad)


def test_layer_capture_is_per_thread():
    """Hooked layers' outputs are kept per thread: concurrent forward passes of one backbone
    (searches from several threads) each get their own texts' states."""
    from concurrent.futures import ThreadPoolExecutor

    from latentlex.backbone import Backbone

    bb = Backbone(device="cpu", layer=[None, 1])
    texts = [[f"Person {i} likes quokkas number {i}."] * (1 + i % 3) for i in range(12)]
    want = [bb.forward(t).token_states for t in texts]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda t: bb.forward(t).token_states, texts * 3))
    for i, g in enumerate(got):
        np.testing.assert_allclose(g.numpy(), want[i % len(texts)].numpy(), atol=1e-4)
