from __future__ import annotations

import numpy as np
from latentlex.states import TokenStates, encode_token_states


def test_encode_and_reuse(backbone, tmp_path):
    texts = ["alpha beta gamma", "", "a longer document about sparse autoencoders and retrieval"]
    ids = ["a", "b", "c"]
    st = encode_token_states(backbone, ids, texts, tmp_path / "s", batch_size=2, progress=False)
    assert st.n_docs == 3 and sorted(st.doc_ids) == ids
    assert st.tokens.dtype == np.float16 and st.tokens.shape[1] == backbone.dim
    assert int(st.offsets[-1]) == st.tokens.shape[0]
    by_id = dict(zip(st.doc_ids, st.lengths.tolist(), strict=True))
    assert by_id["b"] == 0
    # the stored token states are the backbone's, in fp16
    i = st.doc_ids.index("c")
    tokens, _ = st.doc_range(i, i + 1)
    ref = backbone.forward([texts[2]])
    np.testing.assert_allclose(tokens.astype(np.float32), ref.token_states.numpy(), atol=1e-2)
    np.testing.assert_allclose(st.dense[i], ref.dense[0].numpy(), atol=1e-5)
    # same corpus again: reused, not re-encoded
    mtime = (tmp_path / "s" / "tokens.f16").stat().st_mtime_ns
    st2 = encode_token_states(backbone, ids, texts, tmp_path / "s", progress=False)
    assert (tmp_path / "s" / "tokens.f16").stat().st_mtime_ns == mtime
    assert st2.doc_ids == st.doc_ids
    # a changed corpus is re-encoded
    st3 = encode_token_states(
        backbone, ids, [*texts[:2], "changed"], tmp_path / "s", progress=False
    )
    assert st3.meta["corpus_hash"] != st.meta["corpus_hash"]
    assert isinstance(TokenStates.open(tmp_path / "s"), TokenStates)


def test_max_tokens_stops_early(backbone, tmp_path):
    texts = [f"document number {i} with several words in it" for i in range(20)]
    st = encode_token_states(
        backbone,
        [str(i) for i in range(20)],
        texts,
        tmp_path,
        batch_size=4,
        max_tokens=30,
        progress=False,
    )
    assert 30 <= st.tokens.shape[0] < 30 + 4 * 12
    assert st.n_docs < 20
