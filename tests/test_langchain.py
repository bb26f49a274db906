"""The LangChain adapter: standard retriever tests, an LCEL chain, and the stock langchain-qdrant path."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("langchain_core")

from conftest import LIMIT_SMALL
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    ParrotFakeChatModel,
)
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_latentlex import (
    LEG_KEYS,
    LatentLexEmbeddings,
    LatentLexRetriever,
    LatentLexSparseEmbeddings,
    latentlex_sparse_vector_params,
)
from langchain_tests.integration_tests import RetrieversIntegrationTests
from latentlex.corpus import read_corpus
from latentlex.errors import ConfigError
from latentlex.index import DEFAULT_FUSION, LatentIndex, content_hash
from pydantic import ValidationError

DOCS = list(read_corpus(LIMIT_SMALL))
#: Person questions: the name is in the answering document. Measured over three fits of the test
#: SAE: sparse mode finds the person first for 39-45 of all 46, in the top 3 for 43-45.
NAMED = [d.id for d in DOCS[::4]]
#: LIMIT-small "Who likes X?" queries (hard by design; used to compare scores with LatentIndex).
LIMIT_QUERIES = ["query_3", "query_10", "query_12", "query_15"]


def _queries() -> dict[str, str]:
    rows = (json.loads(line) for line in (LIMIT_SMALL / "queries.jsonl").read_text().splitlines())
    return {row["_id"]: row["text"] for row in rows}


QUERIES = _queries()


def _meta(i: int) -> dict:
    return {"group": "even" if i % 2 == 0 else "odd", "n": i}


@pytest.fixture(scope="module")
def lc_retriever(encoder, tmp_path_factory):
    docs = [Document(page_content=d.text, id=d.id, metadata=_meta(i)) for i, d in enumerate(DOCS)]
    r = LatentLexRetriever.from_documents(
        docs, encoder=encoder, store=tmp_path_factory.mktemp("lc") / "edge"
    )
    yield r
    r.index.close()


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:The test <Function .*is marked with '@pytest.mark.asyncio'")
class TestLatentLexRetrieverStandard(RetrieversIntegrationTests):
    """LangChain's own standard retriever tests, none overridden."""

    @pytest.fixture(autouse=True)
    def _index(self, lc_retriever):
        self._latent_index = lc_retriever.index

    @property
    def retriever_constructor(self) -> type[LatentLexRetriever]:
        return LatentLexRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"index": self._latent_index}

    @property
    def retriever_query_example(self) -> str:
        return "Who likes Quokkas?"


def test_documents_keep_ids_text_and_metadata(lc_retriever):
    assert lc_retriever.index.count() == len(DOCS)
    got = lc_retriever.invoke("Who likes Quokkas?", k=5)
    by_id = {d.id: (i, d) for i, d in enumerate(DOCS)}
    assert len(got) == 5
    for doc in got:
        i, src = by_id[doc.id]
        assert doc.page_content == src.text
        assert doc.metadata == _meta(i)  # nothing added unless asked


def test_legs_explanations_and_per_call_options(lc_retriever):
    r = LatentLexRetriever(index=lc_retriever.index, k=3, include_legs=True, explain=True)
    got = r.invoke("Who likes Licorice?")
    assert len(got) == 3
    for doc in got:
        assert {"score", "dense_score", "sparse_score", "dense_rank", "sparse_rank"} <= set(
            doc.metadata
        )
        exp = doc.metadata["explanation"]
        assert exp["doc_id"] == doc.id and exp["terms"]
    sparse = r.invoke("Who likes Licorice?", k=2, mode="sparse")
    want = lc_retriever.index.search("Who likes Licorice?", 2, mode="sparse")
    assert [d.id for d in sparse] == [h.doc_id for h in want]
    odd = r.invoke("Who likes Licorice?", k=10, filter={"group": "odd"})
    assert len(odd) == 10 and all(d.metadata["group"] == "odd" for d in odd)
    fixed = LatentLexRetriever(index=lc_retriever.index, k=10, filter={"n": {"lt": 3}})
    assert sorted(d.metadata["n"] for d in fixed.invoke("quokkas")) == [0, 1, 2]
    with pytest.raises(ConfigError, match="k must"):
        r.invoke("x", k=0)
    with pytest.raises(TypeError):
        r.invoke("x", not_an_option=1)


def test_default_index_has_three_legs(lc_retriever):
    index = lc_retriever.index
    assert index.lexical  # a new collection gets the lexical BM25 leg by default
    r = LatentLexRetriever(index=index, k=5, include_legs=True)
    assert r.fusion == DEFAULT_FUSION and r.weights is None
    query = "Who likes Quokkas?"
    got = r.invoke(query)
    # the retriever's defaults are the index's defaults
    want = index.search(query, 5)
    assert [d.id for d in got] == [h.doc_id for h in want]
    assert [d.metadata["score"] for d in got] == pytest.approx([h.score for h in want])
    lexical = {h.doc_id: h.score for h in index.search(query, 50, mode="lexical")}
    for doc in got:
        assert set(LEG_KEYS) - {"explanation"} <= set(doc.metadata)
        if doc.metadata["lexical_rank"] is not None:
            assert doc.metadata["lexical_score"] == pytest.approx(lexical[doc.id], rel=1e-4)
    quokkas = [d for d in got if "Quokkas" in d.page_content]
    assert quokkas and all(d.metadata["lexical_rank"] in (1, 2) for d in quokkas)


@pytest.mark.asyncio
async def test_lexical_mode_and_weights(lc_retriever):
    index = lc_retriever.index
    query = "Who likes Quokkas?"
    r = LatentLexRetriever(index=index, k=2, mode="lexical")
    got = r.invoke(query)
    # BM25 of the words: the two documents naming quokkas come first
    assert len(got) == 2 and all("Quokkas" in d.page_content for d in got)
    assert sorted(d.id for d in await r.ainvoke(query)) == sorted(d.id for d in got)
    per_call = LatentLexRetriever(index=index, k=2).invoke(query, mode="lexical")
    assert sorted(d.id for d in per_call) == sorted(d.id for d in got)
    # three weights (dense, sparse, lexical), as a field or per call, with any fusion
    want = index.search(query, 5, fusion="rrf", weights=(1.0, 1.0, 1.0))
    for rrf in (
        LatentLexRetriever(index=index, k=5, fusion="rrf", weights=(1, 1, 1), include_legs=True),
        LatentLexRetriever(index=index, k=5, include_legs=True),
    ):
        docs = rrf.invoke(query, fusion="rrf", weights=(1.0, 1.0, 1.0))
        assert sorted(d.metadata["score"] for d in docs) == pytest.approx(
            sorted(h.score for h in want)
        )
        assert any(d.metadata["lexical_rank"] is not None for d in docs)
    assert LatentLexRetriever(index=index, weights=[0.5, 1.0]).weights == (0.5, 1.0)
    for bad in ((1.0,), (1, 2, 3, 4)):
        with pytest.raises(ValidationError):
            LatentLexRetriever(index=index, weights=bad)
    with pytest.raises(ConfigError, match="weights"):
        r.invoke(query, mode="hybrid", weights=(1.0,))
    with pytest.raises(ValidationError, match="mode"):
        LatentLexRetriever(index=index, mode="bm25")


def test_two_leg_index(encoder):
    r = LatentLexRetriever.from_texts(
        ["Quokkas live on Rottnest Island.", "Bassoons are double reed instruments."],
        encoder=encoder,
        store=":memory:",
        lexical=False,
        include_legs=True,
    )
    try:
        assert not r.index.lexical and r.index.spec.lexical_name is None
        got = r.invoke("quokkas")
        assert got and all(
            d.metadata["lexical_score"] is None and d.metadata["lexical_rank"] is None for d in got
        )
        with pytest.raises(ValidationError, match="lexical"):
            LatentLexRetriever(index=r.index, mode="lexical")
        with pytest.raises(ConfigError, match="lexical"):
            r.invoke("quokkas", mode="lexical")
        with pytest.raises(ConfigError, match="lexical"):
            r.invoke("quokkas", weights=(1.0, 1.0, 1.0))
    finally:
        r.index.close()
    with pytest.raises(ConfigError, match="lexical= once"):
        LatentLexRetriever.from_texts(
            ["x"], encoder=encoder, store=":memory:", lexical=True, index_kwargs={"lexical": False}
        )


@pytest.mark.asyncio
async def test_async_matches_sync(lc_retriever):
    r = LatentLexRetriever(index=lc_retriever.index, k=4, explain=True, include_legs=True)
    got = await r.ainvoke("Who likes Barley?", filter={"group": "even"})
    assert len(got) == 4 and all(d.metadata["group"] == "even" for d in got)
    assert all("explanation" in d.metadata for d in got)
    # hybrid scores can tie and tied documents may come in another order: compare scores
    sync = r.invoke("Who likes Barley?")
    got = await r.ainvoke("Who likes Barley?")
    assert sorted(d.metadata["score"] for d in got) == pytest.approx(
        sorted(d.metadata["score"] for d in sync)
    )
    sparse_sync = r.invoke("Who likes Barley?", mode="sparse")
    sparse_async = await r.ainvoke("Who likes Barley?", mode="sparse")
    assert [d.id for d in sparse_async] == [d.id for d in sparse_sync]


def test_from_texts_ids_and_add_documents(encoder):
    r = LatentLexRetriever.from_texts(
        ["Quokkas live on Rottnest Island.", "Bassoons are double reed instruments."],
        encoder=encoder,
        store=":memory:",
        metadatas=[{"kind": "animal"}, {"kind": "music"}],
        k=1,
    )
    hashed = content_hash("Quokkas live on Rottnest Island.", {})
    assert r.invoke("Where do quokkas live?")[0].id == hashed
    ids = r.add_documents(
        [Document("Sea otters hold hands.", id="otter"), Document("Glaciers are ice.")]
    )
    assert ids == ["otter", content_hash("Glaciers are ice.", {})]
    assert r.index.count() == 4
    r.add_documents([Document("Sea otters hold hands while asleep.", id="otter")])
    assert r.index.count() == 4  # updated, not duplicated
    assert r.invoke("otters", k=1, filter={"kind": "animal"})[0].metadata == {"kind": "animal"}
    with pytest.raises(ConfigError, match="sae"):
        LatentLexRetriever.from_texts(["x"], store=":memory:")
    r.index.close()


def _format_docs(docs: list[Document]) -> str:
    return "\n\n".join(f"[{d.id}] {d.page_content}" for d in docs)


def test_lcel_chain_passes_retrieved_context(lc_retriever):
    # sparse mode (one leg): hybrid scores can tie, and Qdrant orders ties differently
    retriever = LatentLexRetriever(index=lc_retriever.index, k=2, mode="sparse")
    prompt = ChatPromptTemplate.from_template(
        "Answer from the context.\nContext:\n{context}\n\nQuestion: {question}"
    )
    # a fake chat model that echoes its prompt: the chain's output shows the context it got
    chain = (
        {"context": retriever | _format_docs, "question": RunnablePassthrough()}
        | prompt
        | ParrotFakeChatModel()
        | StrOutputParser()
    )
    question = QUERIES["query_12"]  # Who likes Licorice?
    out = chain.invoke(question)
    for doc in retriever.invoke(question):
        assert f"[{doc.id}] {doc.page_content}" in out
    assert question in out
    canned = (
        {"context": retriever | _format_docs, "question": RunnablePassthrough()}
        | prompt
        | FakeListChatModel(responses=["Shelvia Goike"])
        | StrOutputParser()
    )
    assert canned.invoke(question) == "Shelvia Goike"


@pytest.mark.asyncio
async def test_lcel_chain_async(lc_retriever):
    retriever = LatentLexRetriever(index=lc_retriever.index, k=2)
    chain = retriever | _format_docs
    out = await chain.ainvoke("Who likes Barley?")
    assert out.count("[") == 2


def test_one_backbone_pass_for_dense_and_sparse(encoder, monkeypatch):
    calls: list[list[str]] = []
    real = encoder.encode_queries

    def counting(texts, **kwargs):
        calls.append(list(texts))
        return real(texts, **kwargs)

    monkeypatch.setattr(encoder, "encode_queries", counting)
    query = "one pass: a question nobody asked before?"
    dense = LatentLexEmbeddings(encoder).embed_query(query)
    sparse = LatentLexSparseEmbeddings(encoder).embed_query(query)
    assert calls == [[query]]  # the sparse vector came from the dense vector's pass
    want = real([query])
    assert dense == pytest.approx(want.dense[0].tolist(), abs=1e-6)
    assert sparse.indices == want.sparse[0].indices.tolist()
    assert sparse.values == pytest.approx(want.sparse[0].values.tolist())
    docs = LatentLexSparseEmbeddings(encoder).embed_documents(["one pass: a document"])
    assert (
        docs[0].indices
        == encoder.encode_documents(["one pass: a document"]).sparse[0].indices.tolist()
    )


def test_stock_langchain_qdrant_hybrid(encoder, lc_retriever):
    from langchain_qdrant import QdrantVectorStore, RetrievalMode
    from qdrant_client import models

    docs = [Document(page_content=d.text, metadata={"name": d.id}) for d in DOCS]
    store = QdrantVectorStore.from_documents(
        docs,
        embedding=LatentLexEmbeddings(encoder),
        sparse_embedding=LatentLexSparseEmbeddings(encoder),
        retrieval_mode=RetrievalMode.HYBRID,
        location=":memory:",
        collection_name="limit",
        sparse_vector_params=latentlex_sparse_vector_params(),
    )
    sparse_cfg = store.client.get_collection("limit").config.params.sparse_vectors or {}
    assert next(iter(sparse_cfg.values())).modifier == models.Modifier.IDF
    sparse_only = QdrantVectorStore(
        client=store.client,
        collection_name="limit",
        sparse_embedding=LatentLexSparseEmbeddings(encoder),
        retrieval_mode=RetrievalMode.SPARSE,
    )
    index: LatentIndex = lc_retriever.index
    for qid in LIMIT_QUERIES:
        stock = sparse_only.similarity_search_with_score(QUERIES[qid], k=3)
        ours = index.search(QUERIES[qid], 3, mode="sparse")
        # same vectors, same IDF: the stock store scores exactly as LatentIndex's sparse leg
        assert [s for _, s in stock] == pytest.approx([h.score for h in ours], rel=1e-4)
    hybrid = store.as_retriever(search_kwargs={"k": 3})
    found_sparse = found_hybrid = 0
    for name in NAMED:
        question = f"What does {name} like?"
        found_sparse += name in {
            d.metadata["name"] for d in sparse_only.similarity_search(question, k=3)
        }
        found_hybrid += name in {d.metadata["name"] for d in hybrid.invoke(question)}
    # measured: 11-12 of 12 in the top 3, sparse and hybrid
    assert found_sparse >= 10 and found_hybrid >= 10
    store.client.close()
