"""LlamaIndex's vector store: VectorStoreIndex, IngestionPipeline, query modes, filters, lifecycle."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from conftest import LIMIT_SMALL
from latentlex.corpus import read_corpus
from latentlex.errors import ConfigError
from latentlex.index import LatentIndex
from limit_queries import limit_queries, recall_at_2
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import TextNode
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.retrievers.latentlex import LatentLexExplainPostprocessor, LatentLexRetriever
from llama_index.vector_stores.latentlex import LatentLexVectorStore, alpha_weights

DOCS = list(read_corpus(LIMIT_SMALL))
QUERY = "Who likes Quokkas?"


def _meta(i: int) -> dict[str, Any]:
    return {"group": "even" if i % 2 == 0 else "odd", "n": i, "tags": ["t3"] if i % 3 == 0 else []}


def _documents() -> list[Document]:
    return [Document(text=d.text, id_=d.id, metadata=_meta(i)) for i, d in enumerate(DOCS)]


class _Counter:
    """Counts the texts the backbone reads (one forward pass per text in a batch)."""

    def __init__(self, encoder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts: list[str] = []
        real = encoder.backbone.forward

        def forward(texts: Any, **kwargs: Any) -> Any:
            self.texts.extend(texts)
            return real(texts, **kwargs)

        monkeypatch.setattr(encoder.backbone, "forward", forward)


@pytest.fixture(scope="module")
def vindex(encoder: Any, tmp_path_factory: Any) -> Iterator[VectorStoreIndex]:
    store = LatentLexVectorStore.from_params(
        encoder=encoder, store=tmp_path_factory.mktemp("livs") / "edge"
    )
    index = VectorStoreIndex.from_documents(
        _documents(),
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=store.embed_model,
        transformations=[store.splitter()],
    )
    yield index
    store.close()


def _store(vindex: VectorStoreIndex) -> LatentLexVectorStore:
    store = vindex.vector_store
    assert isinstance(store, LatentLexVectorStore)
    return store


def _ids(nodes: list[Any]) -> list[str]:
    return [n.node.node_id for n in nodes]


def test_as_retriever_and_query_engine_equal_the_retriever(vindex: VectorStoreIndex) -> None:
    store = _store(vindex)
    assert store.latent_index.count() == len(DOCS)
    ours = LatentLexRetriever(store.latent_index, 5)
    for query in (QUERY, "Who likes Licorice?", "What does Geneva Durben like?"):
        got = vindex.as_retriever(similarity_top_k=5).retrieve(query)
        want = ours.retrieve(query)
        assert _ids(got) == _ids(want)
        assert [n.score for n in got] == pytest.approx([n.score for n in want])
        # the node comes back as written: text, metadata, source document
        by_id = {d.id: (i, d) for i, d in enumerate(DOCS)}
        for n in got:
            i, doc = by_id[n.node.ref_doc_id]
            assert n.node.node_id == f"{doc.id}#0" and n.node.get_content() == doc.text
            assert n.node.metadata == _meta(i)
    response = vindex.as_query_engine(llm=MockLLM(), similarity_top_k=3).query(QUERY)
    assert _ids(response.source_nodes) == _ids(
        LatentLexRetriever(store.latent_index, 3).retrieve(QUERY)
    )


def test_limit_recall_at_2_equals_the_library(vindex: VectorStoreIndex) -> None:
    queries = limit_queries(step=8)
    retriever = vindex.as_retriever(similarity_top_k=2)
    index = _store(vindex).latent_index
    ours = [[n.node.ref_doc_id for n in retriever.retrieve(q)] for q, _ in queries]
    lib = [
        [index.get([h.doc_id])[0].metadata["ref_doc_id"] for h in index.search(q, 2)]
        for q, _ in queries
    ]
    assert ours == lib
    assert recall_at_2(ours, queries) == recall_at_2(lib, queries) > 0.8


def test_query_modes_map_to_latentlex_modes(vindex: VectorStoreIndex) -> None:
    store = _store(vindex)
    index = store.latent_index

    def run(mode: VectorStoreQueryMode, **kw: Any) -> list[str]:
        res = store.query(VectorStoreQuery(query_str=QUERY, similarity_top_k=5, mode=mode, **kw))
        assert res.ids is not None and res.similarities is not None and res.nodes is not None
        assert [n.node_id for n in res.nodes] == res.ids
        return res.ids

    assert run(VectorStoreQueryMode.DEFAULT) == [h.doc_id for h in index.search(QUERY, 5)]
    assert run(VectorStoreQueryMode.HYBRID) == [h.doc_id for h in index.search(QUERY, 5)]
    assert run(VectorStoreQueryMode.SPARSE) == [
        h.doc_id for h in index.search(QUERY, 5, mode="sparse")
    ]
    assert run(VectorStoreQueryMode.TEXT_SEARCH) == [
        h.doc_id for h in index.search(QUERY, 5, mode="lexical")
    ]
    for alpha in (0.0, 0.25, 0.8):
        want = index.search(QUERY, 5, weights=alpha_weights(alpha, lexical=True))
        assert run(VectorStoreQueryMode.HYBRID, alpha=alpha) == [h.doc_id for h in want]
    # alpha 1: the dense leg alone decides
    dense = {h.doc_id for h in index.search(QUERY, 5, mode="dense")}
    assert set(run(VectorStoreQueryMode.HYBRID, alpha=1.0)) == dense
    assert alpha_weights(0.25, lexical=True) == pytest.approx((0.25, 0.25, 0.5))
    assert len(run(VectorStoreQueryMode.MMR, mmr_threshold=0.5)) == 5
    assert (
        run(VectorStoreQueryMode.HYBRID, hybrid_top_k=2)[:2] == run(VectorStoreQueryMode.HYBRID)[:2]
    )
    with pytest.raises(ConfigError, match="not supported"):
        run(VectorStoreQueryMode.SVM)
    with pytest.raises(ConfigError, match="query text"):
        store.query(VectorStoreQuery(query_embedding=[0.1] * 4, similarity_top_k=2))
    with pytest.raises(ConfigError, match="alpha weighs"):
        run(VectorStoreQueryMode.SPARSE, alpha=0.5)
    with pytest.raises(TypeError, match="no argument"):
        store.query(VectorStoreQuery(query_str=QUERY), top_n=3)
    # per query options through as_retriever(vector_store_kwargs=...)
    rrf = vindex.as_retriever(similarity_top_k=5, vector_store_kwargs={"fusion": "rrf"})
    assert [n.score for n in rrf.retrieve(QUERY)] == pytest.approx(
        [h.score for h in index.search(QUERY, 5, fusion="rrf")]
    )
    sparse = vindex.as_retriever(similarity_top_k=5, vector_store_query_mode="sparse")
    assert _ids(sparse.retrieve(QUERY)) == [h.doc_id for h in index.search(QUERY, 5, mode="sparse")]


CASES: list[tuple[MetadataFilters, set[int]]] = [
    (
        MetadataFilters(
            filters=[
                MetadataFilter(key="group", value="even"),
                MetadataFilter(key="n", value=8, operator="<"),
            ]
        ),
        {0, 2, 4, 6},
    ),
    (
        MetadataFilters(
            filters=[
                MetadataFilter(key="n", value=1),
                MetadataFilter(key="n", value=44, operator=">="),
            ],
            condition=FilterCondition.OR,
        ),
        {1, 44, 45},
    ),
    (
        MetadataFilters(
            filters=[MetadataFilter(key="n", value=3, operator=">=")], condition=FilterCondition.NOT
        ),
        {0, 1, 2},
    ),
    (
        MetadataFilters(
            filters=[
                MetadataFilter(key="n", value=[5, 6, 7], operator="in"),
                MetadataFilter(key="n", value=6, operator="!="),
            ]
        ),
        {5, 7},
    ),
    (
        MetadataFilters(
            filters=[MetadataFilter(key="n", value=list(range(3, 46)), operator="nin")]
        ),
        {0, 1, 2},
    ),
    (
        MetadataFilters(
            filters=[
                MetadataFilter(key="tags", value="t3", operator="contains"),
                MetadataFilter(key="n", value=9, operator="<="),
            ]
        ),
        {0, 3, 6, 9},
    ),
    (
        MetadataFilters(
            filters=[
                MetadataFilter(key="tags", value=["t3"], operator="all"),
                MetadataFilter(key="n", value=4, operator="<"),
            ]
        ),
        {0, 3},
    ),
    (
        MetadataFilters(
            filters=[
                MetadataFilter(key="tags", value=["t3", "x"], operator="any"),
                MetadataFilter(key="n", value=4, operator="<"),
            ]
        ),
        {0, 3},
    ),
    (
        MetadataFilters(
            filters=[
                MetadataFilter(key="tags", value=None, operator=FilterOperator.IS_EMPTY),
                MetadataFilter(key="n", value=5, operator="<="),
            ]
        ),
        {1, 2, 4, 5},
    ),
    (
        MetadataFilters(
            filters=[
                MetadataFilters(
                    filters=[MetadataFilter(key="n", value=1), MetadataFilter(key="n", value=2)],
                    condition=FilterCondition.OR,
                ),
                MetadataFilters(
                    filters=[MetadataFilter(key="group", value="even")],
                    condition=FilterCondition.NOT,
                ),
            ]
        ),
        {1},
    ),
    (
        MetadataFilters(filters=[MetadataFilter(key="doc_id", value=DOCS[4].id)]),
        {4},
    ),  # the source doc
]


def test_filters_on_both_engines(vindex: VectorStoreIndex, encoder: Any) -> None:
    memory = LatentLexVectorStore.from_params(encoder=encoder, store=":memory:", lexical=False)
    mem_index = VectorStoreIndex.from_documents(
        _documents(),
        storage_context=StorageContext.from_defaults(vector_store=memory),
        embed_model=memory.embed_model,
        transformations=[memory.splitter()],
    )
    for index in (vindex, mem_index):  # the embedded engine, and qdrant-client's
        for filters, want in CASES:
            got = index.as_retriever(similarity_top_k=46, filters=filters).retrieve(QUERY)
            assert {n.node.metadata["n"] for n in got} == want, filters
    # doc_ids / node_ids of the query restrict too
    res = memory.query(
        VectorStoreQuery(
            query_str=QUERY,
            similarity_top_k=46,
            doc_ids=[DOCS[1].id, DOCS[2].id],
            node_ids=[f"{DOCS[2].id}#0", f"{DOCS[3].id}#0"],
        )
    )
    assert res.ids == [f"{DOCS[2].id}#0"]
    memory.close()


def test_round_trip_insert_delete_get_clear(encoder: Any, tmp_path: Any) -> None:
    store = LatentLexVectorStore.from_params(encoder=encoder, store=tmp_path / "edge")
    index = store.index_documents(_documents()[:6])
    assert store.latent_index.count() == 6
    index.insert(Document(text="Quokkas moved to the mainland.", id_="new"))
    assert store.latent_index.count() == 7
    assert [
        n.node.ref_doc_id
        for n in index.as_retriever(similarity_top_k=1).retrieve("quokkas mainland")
    ] == ["new"]
    index.delete_ref_doc("new")
    assert store.latent_index.count() == 6
    assert _ids(index.as_retriever(similarity_top_k=6).retrieve(QUERY)).count("new#0") == 0
    nodes = store.get_nodes([f"{DOCS[1].id}#0", "missing", f"{DOCS[0].id}#0"])
    assert [n.node_id for n in nodes] == [f"{DOCS[1].id}#0", f"{DOCS[0].id}#0"]
    assert nodes[0].ref_doc_id == DOCS[1].id and nodes[0].metadata == _meta(1)
    odd = store.get_nodes(
        filters=MetadataFilters(filters=[MetadataFilter(key="group", value="odd")])
    )
    assert sorted(n.metadata["n"] for n in odd) == [1, 3, 5]
    assert len(store.get_nodes()) == 6
    store.delete_nodes([f"{DOCS[0].id}#0"])
    store.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="n", value=5)]))
    assert sorted(n.metadata["n"] for n in store.get_nodes()) == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="node_ids or filters"):
        store.delete_nodes()
    store.clear()
    assert store.latent_index.count() == 0 and store.get_nodes() == []
    store.close()


@pytest.mark.asyncio
async def test_async_twins(encoder: Any) -> None:
    store = LatentLexVectorStore.from_params(encoder=encoder, store=":memory:")
    nodes = [TextNode(text=d.text, id_=d.id, metadata=_meta(i)) for i, d in enumerate(DOCS[:8])]
    assert await store.async_add(nodes) == [d.id for d in DOCS[:8]]
    res = await store.aquery(VectorStoreQuery(query_str=QUERY, similarity_top_k=3))
    sync = store.query(VectorStoreQuery(query_str=QUERY, similarity_top_k=3))
    assert res.ids == sync.ids
    mmr = await store.aquery(VectorStoreQuery(query_str=QUERY, similarity_top_k=3, mode="mmr"))
    assert (
        mmr.ids
        == store.query(VectorStoreQuery(query_str=QUERY, similarity_top_k=3, mode="mmr")).ids
    )
    assert [n.node_id for n in await store.aget_nodes([DOCS[2].id])] == [DOCS[2].id]
    await store.adelete_nodes([DOCS[2].id])
    await store.adelete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="n", value=3)]))
    assert len(await store.aget_nodes()) == 6
    await store.aclear()
    assert await store.aget_nodes() == []
    await store.aclose()


def test_ingestion_pipeline_with_a_docstore_and_one_pass_per_node(
    encoder: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LatentLexVectorStore.from_params(encoder=encoder, store=tmp_path / "edge")
    writes: list[str] = []
    real_add = store.latent_index.add

    def add(texts: Any, ids: Any = None, *args: Any, **kwargs: Any) -> Any:
        writes.extend(ids)
        return real_add(texts, ids, *args, **kwargs)

    monkeypatch.setattr(store.latent_index, "add", add)
    forwards = _Counter(encoder, monkeypatch)
    pipeline = IngestionPipeline(
        transformations=[store.splitter(), store.embed_model],
        vector_store=store,
        docstore=SimpleDocumentStore(),
    )
    docs = _documents()[:10]
    pipeline.run(documents=docs)
    assert len(writes) == 10 and store.latent_index.count() == 10
    # one backbone pass per node: the embed model computes nothing, the store encodes the text
    assert sorted(forwards.texts) == sorted(d.text for d in docs)
    writes.clear()
    forwards.texts.clear()
    pipeline.run(documents=docs)  # unchanged: nothing written, nothing encoded
    assert writes == [] and forwards.texts == [] and store.latent_index.count() == 10
    changed = [
        *docs[:9],
        Document(text="Quokkas changed their minds.", id_=docs[9].id_, metadata=_meta(9)),
    ]
    pipeline.run(documents=changed)
    assert writes == [f"{docs[9].id_}#0"] and store.latent_index.count() == 10
    hit = store.query(VectorStoreQuery(query_str="Quokkas changed their minds", similarity_top_k=1))
    assert hit.nodes is not None and hit.nodes[0].get_content() == "Quokkas changed their minds."
    store.close()


def test_vector_store_index_one_backbone_pass_per_node(
    encoder: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    store = LatentLexVectorStore.from_params(encoder=encoder, store=":memory:")
    forwards = _Counter(encoder, monkeypatch)
    docs = _documents()[:12]
    index = store.index_documents(docs)
    assert sorted(forwards.texts) == sorted(d.text for d in docs)  # 12 nodes, 12 texts read
    forwards.texts.clear()
    index.as_retriever(similarity_top_k=2).retrieve(QUERY)
    assert forwards.texts == [QUERY]  # the query: one pass too
    # a real embed model's vectors are wasted work: said once
    from llama_index.core.embeddings import MockEmbedding

    with caplog.at_level(logging.WARNING):
        VectorStoreIndex(
            [TextNode(text="a", id_="x1"), TextNode(text="b", id_="x2")],
            storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=MockEmbedding(embed_dim=4),
        )
    assert sum("ignores the embeddings" in r.getMessage() for r in caplog.records) == 1
    store.close()


def test_chunking_fits_the_backbone(encoder: Any, caplog: Any) -> None:
    long_text = "\n\n".join(
        " ".join(f"Paragraph {p} sentence {i} mentions quokka {p}-{i}." for i in range(12))
        for p in range(8)
    )
    limit = encoder.backbone.max_seq_length - 2
    tok = encoder.backbone.tokenizer
    # the retriever's from_documents splits to the backbone's length by default
    r = LatentLexRetriever.from_documents(
        [Document(text=long_text, id_="long")], encoder=encoder, store=":memory:"
    )
    nodes = r.index.scroll()
    assert len(nodes) > 3 and all(len(tok.tokenize(n.text)) <= limit for n in nodes)
    assert all(n.doc_id.startswith("long#") for n in nodes)
    r.close()
    # LlamaIndex's own default splitter (1024 tokens) is too long: the store says so, once
    store = LatentLexVectorStore.from_params(encoder=encoder, store=":memory:")
    with caplog.at_level(logging.WARNING):
        VectorStoreIndex.from_documents(
            [Document(text=long_text, id_=f"d{i}") for i in range(10)],
            storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=store.embed_model,
            transformations=[SentenceSplitter(chunk_size=1024, chunk_overlap=20)],
        )
    cut = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(cut) == 1 and "longer than the backbone reads" in cut[0].getMessage()
    store.close()


def test_settings_lifecycle_and_reopen(encoder: Any, tmp_path: Any) -> None:
    path = tmp_path / "edge"
    store = LatentLexVectorStore.from_params(encoder=encoder, store=path)
    store.index_documents(_documents()[:4])
    # a notebook cell run again: the folder is still open, and is shared
    again = LatentLexVectorStore.from_existing(encoder=encoder, store=path)
    assert again.latent_index.count() == 4
    index = again.as_index()
    assert len(index.as_retriever(similarity_top_k=4).retrieve(QUERY)) == 4
    store.close()
    again.mode = "sparse"  # takes effect for DEFAULT queries
    res = again.query(VectorStoreQuery(query_str=QUERY, similarity_top_k=3))
    assert res.ids == [h.doc_id for h in again.latent_index.search(QUERY, 3, mode="sparse")]
    with pytest.raises(ConfigError, match="mode must be"):
        again.mode = "bm25"
    with pytest.raises(AttributeError, match="has no setting 'top_k'"):
        again.top_k = 3
    with pytest.raises(TypeError, match="use similarity_top_k"):
        LatentLexVectorStore(again.latent_index, top_k=3)
    with LatentLexVectorStore(again.latent_index) as scoped:
        assert scoped.latent_index.count() == 4
    with pytest.raises(Exception, match="not open"):
        again.latent_index.count()
    # the retriever: settings assigned later take effect, unknown ones are refused
    reopened = LatentLexRetriever.from_existing(encoder=encoder, store=path, similarity_top_k=4)
    reopened.filters = MetadataFilters(filters=[MetadataFilter(key="group", value="odd")])
    assert {n.node.metadata["group"] for n in reopened.retrieve(QUERY)} == {"odd"}
    reopened.similarity_top_k = 1
    assert len(reopened.retrieve(QUERY)) == 1
    with pytest.raises(AttributeError, match="use similarity_top_k"):
        reopened.top_k = 3
    with pytest.raises(TypeError, match="use filters"):
        LatentLexRetriever(reopened.index, filter={"n": 1})
    with pytest.raises(ConfigError, match="cannot be expressed"):
        reopened.filters = MetadataFilters(
            filters=[MetadataFilter(key="t", value="x", operator="text_match")]
        )
    with reopened:
        pass
    assert isinstance(LatentIndex, type)


def test_explain_postprocessor_from_the_integration_package(vindex: VectorStoreIndex) -> None:
    store = _store(vindex)
    post = LatentLexExplainPostprocessor(index=store.latent_index, top=3)
    engine = vindex.as_query_engine(llm=MockLLM(), similarity_top_k=2, node_postprocessors=[post])
    response = engine.query(QUERY)
    assert all("latent_terms" in n.node.metadata for n in response.source_nodes)
