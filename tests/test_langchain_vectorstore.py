"""LangChain's vector store: the standard tests, the indexing API, filters, MMR, relevance."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from conftest import LIMIT_SMALL
from langchain_core.documents import Document
from langchain_core.indexing import InMemoryRecordManager, index
from langchain_latentlex import LatentLexEmbeddings, LatentLexRetriever, LatentLexVectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests
from latentlex.corpus import read_corpus
from latentlex.errors import ConfigError
from latentlex.index import LatentIndex
from limit_queries import limit_queries, recall_at_2

DOCS = list(read_corpus(LIMIT_SMALL))


def _meta(i: int) -> dict[str, Any]:
    return {"group": "even" if i % 2 == 0 else "odd", "n": i, "tags": ["t3"] if i % 3 == 0 else []}


@pytest.mark.filterwarnings("ignore:The test <Function .*is marked with '@pytest.mark.asyncio'")
class TestLatentLexVectorStoreStandard(VectorStoreIntegrationTests):
    """LangChain's own standard vector store tests (sync and async), none overridden."""

    @pytest.fixture
    def vectorstore(self, encoder: Any, tmp_path: Any) -> Iterator[LatentLexVectorStore]:  # type: ignore[override]
        store = LatentLexVectorStore(LatentIndex(encoder, tmp_path / "edge"))
        try:
            yield store
        finally:
            store.close()


@pytest.fixture(scope="module")
def limit_store(encoder: Any, tmp_path_factory: Any) -> Iterator[LatentLexVectorStore]:
    docs = [Document(page_content=d.text, id=d.id, metadata=_meta(i)) for i, d in enumerate(DOCS)]
    with LatentLexVectorStore.from_documents(
        docs, encoder=encoder, store=tmp_path_factory.mktemp("lcvs") / "edge"
    ) as store:
        yield store


def test_limit_recall_at_2_equals_the_library(limit_store: LatentLexVectorStore) -> None:
    queries = limit_queries(step=8)  # 125 of the 1000 queries
    ours = [[d.id for d in limit_store.similarity_search(q, k=2)] for q, _ in queries]
    lib = [[h.doc_id for h in limit_store.index.search(q, 2)] for q, _ in queries]
    assert ours == lib
    # measured with the test SAE: about 0.93 (the library's hybrid, three legs)
    assert recall_at_2(ours, queries) == recall_at_2(lib, queries) > 0.8


def test_scores_relevance_and_as_retriever(limit_store: LatentLexVectorStore) -> None:
    query = "Who likes Quokkas?"
    scored = limit_store.similarity_search_with_score(query, k=5)
    hits = limit_store.index.search(query, 5)
    assert [(d.id, s) for d, s in scored] == [(h.doc_id, pytest.approx(h.score)) for h in hits]
    for options in (
        {},
        {"fusion": "rrf"},
        {"fusion": "rrf", "weights": (1.0, 2.0, 0.5)},
        {"fusion": "dbsf"},
        {"fusion": "weighted"},
        {"mode": "dense"},
        {"mode": "sparse"},
        {"mode": "lexical"},
    ):
        rel = limit_store.similarity_search_with_relevance_scores(query, k=10, **options)
        raw = limit_store.similarity_search_with_score(query, k=10, **options)
        assert [d.id for d, _ in rel] == [d.id for d, _ in raw]
        assert all(0.0 <= r <= 1.0 for _, r in rel), options
        assert [r for _, r in rel] == sorted((r for _, r in rel), reverse=True)
    top = limit_store.similarity_search_with_relevance_scores(query, k=10)
    assert top[0][1] > 0.5  # the quokka documents lead every leg
    kept = limit_store.similarity_search_with_relevance_scores(
        query, k=10, score_threshold=top[2][1]
    )
    assert [d.id for d, _ in kept] == [d.id for d, _ in top[:3]]
    # as_retriever: hybrid by default, search_kwargs honoured
    assert [d.id for d in limit_store.as_retriever(search_kwargs={"k": 5}).invoke(query)] == [
        h.doc_id for h in hits
    ]
    odd = limit_store.as_retriever(search_kwargs={"k": 6, "filter": {"group": "odd"}})
    assert {d.metadata["group"] for d in odd.invoke(query)} == {"odd"}
    sparse = limit_store.as_retriever(search_kwargs={"k": 3, "mode": "sparse"}).invoke(query)
    assert [d.id for d in sparse] == [
        h.doc_id for h in limit_store.index.search(query, 3, mode="sparse")
    ]
    mmr = limit_store.as_retriever(search_type="mmr", search_kwargs={"k": 3, "fetch_k": 10})
    assert len(mmr.invoke(query)) == 3
    with pytest.raises(TypeError, match=r"no argument|unknown"):
        limit_store.as_retriever(search_kwargs={"k": 3, "top_n": 2}).invoke(query)


@pytest.mark.asyncio
async def test_async_searches_match_sync(limit_store: LatentLexVectorStore) -> None:
    query = "Who likes Licorice?"
    sync = limit_store.similarity_search_with_score(query, k=4, mode="sparse")
    got = await limit_store.asimilarity_search_with_score(query, k=4, mode="sparse")
    assert [(d.id, s) for d, s in got] == [(d.id, pytest.approx(s)) for d, s in sync]
    rel = await limit_store.asimilarity_search_with_relevance_scores(query, k=4)
    assert all(0 <= r <= 1 for _, r in rel)
    mmr = await limit_store.amax_marginal_relevance_search(query, k=3, fetch_k=10)
    assert [d.id for d in mmr] == [
        d.id for d in limit_store.max_marginal_relevance_search(query, k=3, fetch_k=10)
    ]
    docs = await limit_store.aget_by_ids([DOCS[1].id, "nope", DOCS[0].id])
    assert [d.id for d in docs] == [DOCS[1].id, DOCS[0].id]


def test_filters_through_langchain(limit_store: LatentLexVectorStore, encoder: Any) -> None:
    query = "Who likes Quokkas?"
    cases: list[tuple[dict[str, Any], set[int]]] = [
        ({"group": "even", "n": {"lt": 8}}, {0, 2, 4, 6}),
        ({"$or": [{"n": 1}, {"n": {"gte": 44}}]}, {1, 44, 45}),
        ({"$not": {"n": {"gte": 3}}}, {0, 1, 2}),
        ({"n": {"in": [5, 6, 7], "ne": 6}}, {5, 7}),
        ({"n": {"nin": list(range(3, 46))}}, {0, 1, 2}),
        ({"tags": {"contains": "t3"}, "n": {"lte": 9}}, {0, 3, 6, 9}),
        ({"tags": {"is_empty": True}, "n": {"lte": 5}}, {1, 2, 4, 5}),
        ({"$and": [{"$or": [{"n": 1}, {"n": 2}]}, {"$not": {"group": "even"}}]}, {1}),
    ]
    memory = LatentLexVectorStore.from_documents(
        [Document(page_content=d.text, id=d.id, metadata=_meta(i)) for i, d in enumerate(DOCS)],
        encoder=encoder,
        store=":memory:",
        lexical=False,
    )
    for store in (limit_store, memory):  # the embedded engine, and qdrant-client's
        for flt, want in cases:
            got = store.similarity_search(query, k=46, filter=flt)
            assert {d.metadata["n"] for d in got} == want, flt
    memory.delete(filter={"group": "odd"})
    assert memory.index.count() == 23
    memory.delete()  # no ids and no filter: everything
    assert memory.index.count() == 0 and memory.similarity_search(query) == []
    memory.close()
    with pytest.raises(ConfigError, match="supported"):
        limit_store.similarity_search(query, filter={"n": {"between": [1, 2]}})


def test_mmr_demotes_near_duplicates(encoder: Any) -> None:
    texts = [
        "Quokkas are small marsupials that live on Rottnest Island.",
        "Quokkas are small marsupials that live on Rottnest Island!",
        "Rottnest Island lies off the coast of Perth, home of the quokka.",
        "Bassoons are double reed woodwind instruments.",
    ]
    with LatentLexVectorStore.from_texts(
        texts, encoder=encoder, store=":memory:", ids=["a", "a2", "b", "c"]
    ) as store:
        query = "quokkas on Rottnest Island"
        plain = [d.id for d in store.similarity_search(query, k=2)]
        assert set(plain) == {"a", "a2"}
        # cosines: query-a 0.81, query-b 0.77, a-a2 0.98, a-b 0.68: at the default 0.5, b
        mmr = [d.id for d in store.max_marginal_relevance_search(query, k=2)]
        assert mmr[0] in ("a", "a2") and mmr[1] == "b"
        greedy = store.max_marginal_relevance_search(query, k=2, lambda_mult=1.0)
        assert {d.id for d in greedy} == {"a", "a2"}
        with pytest.raises(ConfigError, match="lambda_mult"):
            store.max_marginal_relevance_search(query, lambda_mult=2.0)


def test_indexing_api_with_a_record_manager(encoder: Any, tmp_path: Any) -> None:
    store = LatentLexVectorStore(LatentIndex(encoder, tmp_path / "edge"))
    manager = InMemoryRecordManager(namespace="latentlex/test")
    manager.create_schema()
    docs = [
        Document(page_content=d.text, metadata={"source": f"s{i % 5}"})
        for i, d in enumerate(DOCS[:10])
    ]
    first = index(
        docs, manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256"
    )
    assert first == {"num_added": 10, "num_updated": 0, "num_skipped": 0, "num_deleted": 0}
    assert store.index.count() == 10
    again = index(
        docs, manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256"
    )
    assert again["num_added"] == 0 and again["num_skipped"] == 10 and again["num_deleted"] == 0
    changed = [
        *docs[:9],
        Document(page_content="Quokkas changed their minds.", metadata={"source": "s4"}),
    ]
    res = index(
        changed, manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256"
    )
    assert res["num_added"] == 1 and res["num_deleted"] == 1 and store.index.count() == 10
    assert store.similarity_search("Quokkas changed their minds.", k=1)[0].page_content.startswith(
        "Quokkas changed"
    )
    res = index(changed[:6], manager, store, cleanup="full", key_encoder="sha256")
    assert res["num_deleted"] == 4 and store.index.count() == 6
    store.close()


def test_settings_take_effect_or_are_refused(limit_store: LatentLexVectorStore) -> None:
    query = "Who likes Quokkas?"
    store = LatentLexVectorStore(limit_store.index, filter={"group": "odd"})
    assert {d.metadata["group"] for d in store.similarity_search(query, k=5)} == {"odd"}
    store.filter = {"group": "even"}
    assert {d.metadata["group"] for d in store.similarity_search(query, k=5)} == {"even"}
    store.mode = "sparse"
    store.filter = None
    want = [h.doc_id for h in limit_store.index.search(query, 3, mode="sparse")]
    assert [d.id for d in store.similarity_search(query, k=3)] == want
    with pytest.raises(ConfigError, match="mode must be"):
        store.mode = "bm25"
    with pytest.raises(ConfigError, match="supported"):
        store.filter = {"n": {"between": 1}}
    with pytest.raises(AttributeError, match="per call"):
        store.k = 3  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="filter"):
        store.filters = {"n": 1}  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="use k="):
        LatentLexVectorStore.from_existing(
            encoder=limit_store.index.encoder, store=":memory:", top_k=3
        )
    with pytest.raises(TypeError, match=r"no argument|unknown"):
        store.similarity_search(query, k=2, alpha=0.5)
    with pytest.raises(ConfigError, match="own backbone"):
        from langchain_core.embeddings import DeterministicFakeEmbedding

        LatentLexVectorStore.from_texts(["x"], DeterministicFakeEmbedding(size=4), store=":memory:")
    # the retriever: unknown arguments and attributes refused, assignments validated and used
    with pytest.raises(TypeError, match="use k="):
        LatentLexRetriever(index=limit_store.index, top_k=3)
    with pytest.raises(TypeError, match="search options directly"):
        LatentLexRetriever(index=limit_store.index, search_kwargs={"k": 3})
    retriever = LatentLexRetriever(index=limit_store.index, k=5)
    retriever.filter = {"group": "odd"}
    assert {d.metadata["group"] for d in retriever.invoke(query)} == {"odd"}
    with pytest.raises(AttributeError, match="use k="):
        retriever.top_k = 3  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="combinator"):
        retriever.filter = {"$xor": []}


def test_from_documents_splits_to_the_backbone(encoder: Any, caplog: Any) -> None:
    long_text = " ".join(f"Sentence {i} is about quokka number {i}." for i in range(200))
    docs = [Document(page_content=long_text, id="long"), Document(page_content="Short.", id="s")]
    with caplog.at_level(logging.INFO, logger="langchain_latentlex"):
        store = LatentLexVectorStore.from_documents(docs, encoder=encoder, store=":memory:")
    assert any("split 1 of 2 documents" in r.getMessage() for r in caplog.records)
    limit = encoder.backbone.max_seq_length - 2
    n = store.index.count()
    chunks = store.get_by_ids([f"long#{i}" for i in range(n)])
    assert len(chunks) == n - 1 >= 4 and store.get_by_ids(["s"])[0].page_content == "Short."
    tok = encoder.backbone.tokenizer
    assert all(len(tok.tokenize(c.page_content)) <= limit for c in chunks)
    assert "quokka number 199." in chunks[-1].page_content  # nothing lost at the end
    store.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        whole = LatentLexVectorStore.from_documents(
            [Document(page_content=long_text, id=f"w{i}") for i in range(20)],
            encoder=encoder,
            store=":memory:",
            split=False,
            index_kwargs={"batch_size": 4},
        )
    assert whole.index.count() == 20
    cut = [r for r in caplog.records if "truncated" in r.getMessage()]
    # one warning for the call, not one per batch of the index (5 batches of 4 here)
    assert len(cut) == 1 and "20 of 20 documents" in cut[0].getMessage()
    whole.close()


def test_lifecycle_reopen_and_embeddings(encoder: Any, tmp_path: Any) -> None:
    path = tmp_path / "edge"
    docs = [Document(page_content=d.text, id=d.id) for d in DOCS[:5]]
    first = LatentLexVectorStore.from_documents(docs, encoder=encoder, store=path)
    # a notebook cell run again: the folder is still open in this process, and is shared
    again = LatentLexVectorStore.from_existing(encoder=encoder, store=path)
    assert again.index.count() == 5
    first.close()
    assert again.similarity_search("Who likes Quokkas?", k=1)
    with again:
        pass
    with pytest.raises(Exception, match="not open"):
        again.similarity_search("x")
    reopened = LatentLexVectorStore.from_existing(encoder=encoder, store=path)
    assert reopened.index.count() == 5
    emb = reopened.embeddings
    assert isinstance(emb, LatentLexEmbeddings) and len(emb.embed_query("x")) == encoder.dim
    with pytest.raises(NotImplementedError, match="query text"):
        reopened.similarity_search_by_vector([0.0] * encoder.dim)
    reopened.close()
