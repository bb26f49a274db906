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
