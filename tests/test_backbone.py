from __future__ import annotations

import logging

import numpy as np
import pytest
import torch


def test_one_pass_gives_tokens_and_dense(backbone):
    out = backbone.forward(["hello world", "a somewhat longer sentence about vectors"])
    assert out.dense.shape == (2, backbone.dim)
    # the model's own dense vector: identical to sentence-transformers' encode
    ref = backbone.model.encode(["hello world", "a somewhat longer sentence about vectors"])
    np.testing.assert_allclose(out.dense.numpy(), ref, atol=1e-5)
    # special tokens dropped by default: "hello world" is 2 word pieces
    assert out.lengths.tolist()[0] == 2
    assert out.token_states.shape == (int(out.lengths.sum()), backbone.dim)


def test_special_tokens_option():
    from latentlex.backbone import Backbone

    bb = Backbone(device="cpu", keep_special_tokens=True)
    out = bb.forward(["hello world"])
    assert out.lengths.tolist() == [4]  # [CLS] hello world [SEP]


def test_empty_and_whitespace(backbone):
    out = backbone.forward(["", "   "])
    assert out.lengths.tolist() == [0, 0]
    assert out.token_states.shape == (0, backbone.dim)
    assert torch.isfinite(out.dense).all()
    empty = backbone.forward([])
    assert empty.dense.shape == (0, backbone.dim)


def test_truncation_counted(backbone):
    long = "word " * 1000
    out = backbone.forward([long, "short"])
    assert out.truncated == 1
    assert int(out.lengths[0]) == backbone.max_seq_length - 2


def test_non_string_names_position(backbone):
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        backbone.forward(["ok", 3])
    with pytest.raises(TypeError, match="single string"):
        backbone.forward("not a list")


def test_length_sorted_batches_keep_order(backbone):
    texts = ["a", "a much longer text than the others here", "mid length text"]
    dense = backbone.encode_dense(texts, batch_size=2)
    ref = backbone.model.encode(texts)
    np.testing.assert_allclose(dense, ref, atol=1e-5)


def test_fingerprint_stable_and_sensitive(backbone):
    from latentlex.backbone import Backbone

    other = Backbone(device="cpu")
    assert backbone.fingerprint() == other.fingerprint()
    with torch.no_grad():
        next(other.model.parameters()).add_(0.1)
    other._fingerprint = None
    assert other.fingerprint() != backbone.fingerprint()


def test_unknown_model_is_clear_error(tmp_path, caplog):
    from latentlex.backbone import Backbone
    from latentlex.errors import LatentLexError

    caplog.set_level(logging.ERROR)
    with pytest.raises((LatentLexError, OSError, ValueError)):
        Backbone(str(tmp_path / "nope"), device="cpu", local_files_only=True)
