from __future__ import annotations

import asyncio

import numpy as np
import pytest
from latentlex.errors import CollectionMismatchError, ConfigError
from latentlex.index import LatentIndex

DOCS = {
    "otter": "Sea otters hold hands while they sleep so they do not drift apart.",
    "quokka": "Quokkas are small marsupials living on Rottnest Island near Perth.",
    "rules": "Slide rules were mechanical analog computers used by engineers.",
    "bassoon": "The bassoon is a woodwind instrument in the double reed family.",
    "glacier": "Glaciers form where snow accumulates faster than it melts.",
}
META = {
    "otter": {"kind": "animal", "year": 2020},
    "quokka": {"kind": "animal", "year": 2021},
    "rules": {"kind": "tool", "year": 1950},
    "bassoon": {"kind": "music", "year": 1700},
    "glacier": {"kind": "nature", "year": 2000},
}


@pytest.fixture(params=["edge", "memory"])
def index(request, encoder, tmp_path):
    store = tmp_path / "edge" if request.param == "edge" else ":memory:"
    idx = LatentIndex(encoder, store, collection=f"t_{request.param}")
    ids = list(DOCS)
    idx.add([DOCS[i] for i in ids], ids=ids, metadata=[META[i] for i in ids])
    yield idx
    idx.close()


def test_add_search_modes(index):
    assert index.count() == 5
    for mode in ("dense", "sparse", "hybrid"):
        hits = index.search("which marsupial lives on Rottnest Island?", k=3, mode=mode)
        assert hits[0].doc_id == "quokka", mode
        assert hits[0].text == DOCS["quokka"] and hits[0].metadata["kind"] == "animal"
    hybrid = index.search("quokkas on Rottnest", k=5)
    top = hybrid[0]
    assert top.dense_rank is not None and top.sparse_rank is not None
    assert top.dense_score is not None and top.sparse_score is not None


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
def test_fusions_and_filters(index, fusion):
    hits = index.search("animals", k=5, fusion=fusion, filter={"kind": "animal"})
    assert {h.doc_id for h in hits} == {"otter", "quokka"}
    hits = index.search("old things", k=5, fusion=fusion, filter={"year": {"lt": 1960}})
    assert {h.doc_id for h in hits} == {"rules", "bassoon"}


def test_update_never_duplicates_and_delete(index):
    index.add(["Quokkas smile a lot."], ids=["quokka"], metadata=[{"kind": "animal"}])
    assert index.count() == 5
    assert index.get(["quokka"])[0].text == "Quokkas smile a lot."
    index.delete(["otter"])
    assert index.count() == 4
    index.delete(filter={"kind": "music"})
    assert index.count() == 3 and not index.get(["bassoon"])
    with pytest.raises(ConfigError):
        index.delete()


def test_duplicate_ids_last_wins_and_skip_unchanged(index):
    written = index.add(["first", "second"], ids=["dup", "dup"])
    assert written == ["dup"] and index.get(["dup"])[0].text == "second"
    again = index.add(["second", "new one"], ids=["dup", "new"], skip_unchanged=True)
    assert again == ["new"]


def test_bad_metadata_named(index):
    with pytest.raises(TypeError, match="'when'"):
        index.add(["x"], ids=["x"], metadata=[{"when": object()}])
    with pytest.raises(ValueError, match="'score'"):
        index.add(["x"], ids=["x"], metadata=[{"score": float("nan")}])
    assert index.count() == 5


def test_explain_sums_to_sparse_score(index):
    q = "Which marsupials live on Rottnest Island?"
    hit = index.search(q, k=1, mode="sparse")[0]
    ex = index.explain(q, hit.doc_id, top=5)
    assert ex.n_shared == len(ex.terms_all) > 0 and len(ex.terms) <= 5
    assert abs(sum(t.contribution for t in ex.terms_all) - hit.score) < 1e-4 * max(1, hit.score)
    assert abs(ex.sparse_score - hit.score) < 1e-4 * max(1, hit.score)
    contribs = [t.contribution for t in ex.terms]
    assert contribs == sorted(contribs, reverse=True)
    t = ex.terms[0]
    assert t.idf > 0 and abs(t.query_weight * t.idf * t.doc_weight - t.contribution) < 1e-6
    assert "latent" in ex.table()
    with pytest.raises(KeyError):
        index.explain(q, "missing")


def test_search_batch_and_async(index):
    qs = ["glaciers and snow", "double reed woodwind"]
    batch = index.search_batch(qs, k=1)
    assert [b[0].doc_id for b in batch] == ["glacier", "bassoon"]

    async def run():
        hits = await asyncio.gather(*(index.asearch(q, k=1) for q in qs))
        await index.aadd(["Pangolins have scales."], ids=["pangolin"])
        n = await index.acount()
        got = await index.aget(["pangolin"])
        await index.adelete(["pangolin"])
        return hits, n, got, await index.acount()

    hits, n, got, after = asyncio.run(run())
    assert [h[0].doc_id for h in hits] == ["glacier", "bassoon"]
    assert n == 6 and got[0].text == "Pangolins have scales." and after == 5


def test_reopen_with_other_sae_refused(encoder, tmp_path):
    import copy

    path = tmp_path / "edge"
    LatentIndex(encoder, path, collection="c").close()
    other = copy.copy(encoder)
    other.sae = copy.deepcopy(encoder.sae)
    with __import__("torch").no_grad():
        other.sae.W_enc.add_(0.01)
    with pytest.raises(CollectionMismatchError, match="sae_fingerprint"):
        LatentIndex(other, path, collection="c")
    # recreate=True rebuilds it
    LatentIndex(other, path, collection="c", recreate=True).close()


def test_input_validation(index):
    with pytest.raises(TypeError):
        index.add("not a list")
    with pytest.raises(TypeError, match=r"ids\[0\]"):
        index.add(["x"], ids=[1])
    with pytest.raises(ValueError, match="ids"):
        index.add(["x", "y"], ids=["only one"])
    with pytest.raises(TypeError):
        index.search(123)
    with pytest.raises(TypeError, match="unknown search options"):
        index.search_batch(["x"], bogus=1)
    assert index.search_batch([]) == []
    assert np.isfinite(index.search("", k=2)[0].score)


# ------------------------------------------------------------------ the lexical (third) leg

RARE = "axolotlite"  # a made-up word: only the lexical leg knows it exactly


@pytest.fixture(params=["edge", "memory"])
def lex_index(request, encoder, tmp_path):
    store = tmp_path / "edge" if request.param == "edge" else ":memory:"
    idx = LatentIndex(encoder, store, collection=f"lex_{request.param}", lexical=True)
    ids = list(DOCS)
    idx.add([DOCS[i] for i in ids], ids=ids, metadata=[META[i] for i in ids])
    yield idx
    idx.close()


def test_lexical_index_add_and_search(lex_index):
    from latentlex.lexical import LexicalConfig, LexicalEncoder

    assert lex_index.lexical and lex_index.lexical_config == LexicalConfig()
    assert lex_index.spec.lexical_name == "bm25"
    assert lex_index.identity_record()["lexical"] == LexicalConfig().as_dict()
    rec = lex_index.get(["quokka"])[0]
    expected = LexicalEncoder().encode_documents([DOCS["quokka"]])[0]
    assert rec.lexical is not None and rec.lexical.indices.tolist() == expected.indices.tolist()
    hits = lex_index.search("quokkas on Rottnest Island", k=5)
    top = hits[0]
    assert top.doc_id == "quokka"
    assert top.lexical_score is not None and top.lexical_score > 0 and top.lexical_rank == 1
    assert top.dense_rank is not None and top.sparse_rank is not None
    lexical = lex_index.search("Rottnest Island marsupials", k=5, mode="lexical")
    assert lexical[0].doc_id == "quokka"
    scores = [h.score for h in lexical]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    # as in the dense and sparse modes, a single-leg search carries no leg fields
    assert all(h.dense_score is None and h.lexical_rank is None for h in lexical)
    for mode in ("dense", "sparse"):  # the other single legs still work
        assert lex_index.search("quokkas on Rottnest", k=2, mode=mode)[0].doc_id == "quokka"
    weighted = lex_index.search("quokkas", k=3, weights=(1.0, 1.0, 3.0))
    assert weighted[0].doc_id == "quokka"
    w = lex_index.search("quokkas", k=3, fusion="weighted", weights=(0.0, 0.0, 1.0))
    assert w[0].score == pytest.approx(w[0].lexical_score, rel=1e-5)


def test_lexical_rare_word_found_first(lex_index):
    lex_index.add(
        [f"The mineral {RARE} glows faintly under ultraviolet light.", "Minerals and light."],
        ids=["rare", "plain"],
        metadata=[{"kind": "rock"}, {"kind": "rock"}],
    )
    hits = lex_index.search(f"{RARE}", k=3, mode="lexical")
    assert [h.doc_id for h in hits] == ["rare"]
    hybrid = lex_index.search(f"what is {RARE}?", k=3)
    assert hybrid[0].doc_id == "rare" and hybrid[0].lexical_rank == 1
    # filters reach the lexical leg
    assert lex_index.search(RARE, k=3, mode="lexical", filter={"kind": "animal"}) == []
    # delete removes it from every leg
    lex_index.delete(["rare"])
    assert lex_index.search(RARE, k=3, mode="lexical") == []
    for mode in ("hybrid", "dense", "sparse"):
        assert all(h.doc_id != "rare" for h in lex_index.search(RARE, k=10, mode=mode))
    assert lex_index.count() == 6


def test_lexical_search_encoded_with_and_without(lex_index):
    from latentlex.lexical import LexicalEncoder

    qs = ["quokkas on Rottnest", "double reed woodwind"]
    enc = lex_index.encoder.encode_queries(qs)
    lex = LexicalEncoder(lex_index.lexical_config).encode_queries(qs)
    three = lex_index.search_encoded(enc, 3, lexical=lex)
    assert [h[0].doc_id for h in three] == ["quokka", "bassoon"]
    assert three[0][0].lexical_rank == 1
    expected = lex_index.search_batch(qs, 3)
    assert [[(h.doc_id, h.score) for h in a] for a in three] == [
        [(h.doc_id, pytest.approx(h.score)) for h in b] for b in expected
    ]
    two = lex_index.search_encoded(enc, 3)  # no lexical vectors: dense + latent terms only
    assert all(h.lexical_rank is None and h.lexical_score is None for hits in two for h in hits)
    only = lex_index.search_encoded(enc, 3, lexical=lex, mode="lexical")
    assert [h[0].doc_id for h in only] == ["quokka", "bassoon"]
    with pytest.raises(ConfigError, match="lexical"):
        lex_index.search_encoded(enc, 3, mode="lexical")
    with pytest.raises(ConfigError, match="three weights"):
        lex_index.search_encoded(enc, 3, weights=(1.0, 1.0, 2.0))
    with pytest.raises(ValueError, match="lexical vectors"):
        lex_index.search_encoded(enc, 3, lexical=lex[:1])


def test_lexical_add_encoded_and_explain(lex_index):
    from latentlex.lexical import LexicalEncoder

    texts = ["Narwhals have a long spiral tusk.", "Penguins cannot fly."]
    enc = lex_index.encoder.encode_documents(texts)
    lex_index.add_encoded(["narwhal", "penguin"], texts, enc)
    rec = lex_index.get(["narwhal"])[0]
    expected = LexicalEncoder().encode_documents(texts[:1])[0]
    assert rec.lexical is not None and rec.lexical.indices.tolist() == expected.indices.tolist()
    assert lex_index.search("narwhal tusk", k=1, mode="lexical")[0].doc_id == "narwhal"
    ex = lex_index.explain("narwhal tusk", "narwhal")  # explains the latent leg, as before
    hit = [
        h for h in lex_index.search("narwhal tusk", k=10, mode="sparse") if h.doc_id == "narwhal"
    ]
    assert hit and abs(ex.sparse_score - hit[0].score) < 1e-4 * max(1, hit[0].score)


def test_lexical_async(lex_index):
    async def run():
        hits = await lex_index.asearch("quokkas on Rottnest", k=3)
        only = await lex_index.asearch_batch(["bassoon reed"], k=2, mode="lexical")
        await lex_index.aadd([f"{RARE} crystals."], ids=["rare"])
        rare = await lex_index.asearch(RARE, k=2, mode="lexical")
        return hits, only, rare

    hits, only, rare = asyncio.run(run())
    assert hits[0].doc_id == "quokka" and hits[0].lexical_rank == 1
    assert only[0][0].doc_id == "bassoon"
    assert [h.doc_id for h in rare] == ["rare"]


def test_lexical_identity_refused_on_change(encoder, tmp_path):
    from latentlex.lexical import LexicalConfig

    path = tmp_path / "edge"
    LatentIndex(encoder, path, collection="c", lexical=LexicalConfig(avg_len=20.0)).close()
    with pytest.raises(CollectionMismatchError, match=r"identity\.lexical"):
        LatentIndex(encoder, path, collection="c", lexical=LexicalConfig(avg_len=30.0))
    with pytest.raises(CollectionMismatchError, match="lexical_name"):
        LatentIndex(encoder, path, collection="c", lexical=False)  # without the lexical leg
    with LatentIndex(encoder, path, collection="c") as auto:  # default: keeps the collection's
        assert auto.lexical_config == LexicalConfig(avg_len=20.0)
    LatentIndex(encoder, path, collection="c", lexical=LexicalConfig(avg_len=20.0)).close()
    LatentIndex(encoder, path, collection="plain", lexical=False).close()
    with LatentIndex(encoder, path, collection="plain") as auto:
        assert auto.lexical_config is None and auto.spec.lexical_name is None
    with pytest.raises(CollectionMismatchError, match="lexical_name"):
        LatentIndex(encoder, path, collection="plain", lexical=True)
    LatentIndex(encoder, path, collection="plain", lexical=True, recreate=True).close()
    with pytest.raises(ConfigError, match="lexical"):
        LatentIndex(encoder, path, collection="x", lexical="yes")  # type: ignore[arg-type]


@pytest.fixture(params=["edge", "memory"])
def two_leg_index(request, encoder, tmp_path):
    store = tmp_path / "edge" if request.param == "edge" else ":memory:"
    idx = LatentIndex(encoder, store, collection=f"t2_{request.param}", lexical=False)
    ids = list(DOCS)
    idx.add([DOCS[i] for i in ids], ids=ids, metadata=[META[i] for i in ids])
    yield idx
    idx.close()


def test_default_index_has_three_legs_and_minmax(index):
    """The defaults: a lexical leg on a new collection, min-max fusion of the three legs."""
    from latentlex.index import DEFAULT_MINMAX_WEIGHTS
    from latentlex.store.base import minmax_terms

    assert index.lexical and index.spec.lexical_name == "bm25"
    q = "which marsupial lives on Rottnest Island?"
    hits = index.search(q, k=5)
    legs = {m: index.search(q, k=50, mode=m) for m in ("dense", "sparse", "lexical")}
    terms = minmax_terms(
        [[(h.doc_id, h.score) for h in legs[m]] for m in ("dense", "sparse", "lexical")],
        DEFAULT_MINMAX_WEIGHTS,
    )
    for h in hits:
        expected = 0.0
        for (a, b, _), m in zip(terms, ("dense", "sparse", "lexical"), strict=True):
            s = next((x.score for x in legs[m] if x.doc_id == h.doc_id), None)
            expected += 0.0 if s is None else a * s + b
        assert h.score == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert hits[0].doc_id == "quokka"


def test_lexical_options_on_two_leg_index(two_leg_index):
    index = two_leg_index
    assert not index.lexical and index.lexical_config is None
    assert "lexical" not in index.identity_record()
    with pytest.raises(ConfigError, match="lexical=True"):
        index.search("quokkas", mode="lexical")
    with pytest.raises(ConfigError, match="three weights"):
        index.search("quokkas", weights=(1.0, 1.0, 1.0))
    # the weights of a single-leg mode are unused: a third one is tolerated there
    assert index.search("quokkas", k=1, mode="dense", weights=(1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="weights"):
        index.search("quokkas", weights=(1.0, 1.0, 1.0, 1.0))
    hits = index.search("quokkas", k=2)
    assert all(h.lexical_score is None and h.lexical_rank is None for h in hits)
    enc = index.encoder.encode_queries(["quokkas"])
    from latentlex.lexical import LexicalEncoder

    with pytest.raises(ConfigError, match="no lexical leg"):
        index.search_encoded(enc, 2, lexical=LexicalEncoder().encode_queries(["quokkas"]))


def test_dense_mode_skips_the_sae(index):
    """mode="dense" runs the backbone only (same vector as the hybrid path) and never the SAE."""
    from unittest import mock

    q = "which marsupial lives on Rottnest Island?"
    want = [(h.doc_id, h.score) for h in index.search(q, k=3, mode="dense")]
    with mock.patch.object(index.encoder.sae, "encode", side_effect=AssertionError("SAE ran")):
        got = [(h.doc_id, h.score) for h in index.search(q, k=3, mode="dense")]
    assert [d for d, _ in got] == [d for d, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-6)
    enc = index.encoder.encode_queries([q])
    ref = index.search_encoded(enc, k=3, mode="dense")[0]
    assert [h.doc_id for h in ref] == [d for d, _ in got]


def test_optimize_keeps_results_and_is_a_no_op_without_an_optimizer(index):
    """``optimize`` (embedded engine: the segment optimizers, run now) leaves hits and scores of
    every mode as they were. Without an optimizer of its own to run (qdrant-client's local mode;
    a server optimizes by itself) it returns False."""
    queries = ["marsupials on an island", "woodwind instrument", "snow and ice"]
    modes = ("hybrid", "dense", "sparse", "lexical")
    before = {m: [[(h.doc_id, round(h.score, 5)) for h in index.search(q, k=5, mode=m)]
                  for q in queries] for m in modes}  # fmt: skip
    changed = index.optimize()
    assert isinstance(changed, bool)
    if type(index.store).__name__ != "EdgeStore":
        assert changed is False
    after = {m: [[(h.doc_id, round(h.score, 5)) for h in index.search(q, k=5, mode=m)]
                 for q in queries] for m in modes}  # fmt: skip
    assert after == before
    assert index.count() == len(DOCS)
