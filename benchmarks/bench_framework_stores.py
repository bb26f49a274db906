"""LIMIT-small recall@2 through the framework classes, and through the frameworks' stock Qdrant stores.

    python benchmarks/bench_framework_stores.py                 # tiny SAE fitted on LIMIT-small
    python benchmarks/bench_framework_stores.py --sae my-sae --queries 1000

Rows:

- ``latentlex LatentIndex.search``: the library's own default search (dense + latent terms + BM25
  of the words, min-max fusion in Qdrant);
- ``LangChain LatentLexVectorStore`` / ``LlamaIndex LatentLexVectorStore``: the same index through
  each framework's vector store interface (``similarity_search``; ``VectorStoreIndex.as_retriever``);
- ``latentlex, two legs``: the library without its lexical leg (``lexical=False``), min-max and
  RRF fusion;
- ``langchain-qdrant QdrantVectorStore HYBRID`` / ``LlamaIndex QdrantVectorStore hybrid``: the
  frameworks' own Qdrant stores fed latentlex's dense and latent-term vectors (IDF on): they fuse
  two legs with RRF and have no lexical leg.

The SAE is the same tiny one the examples fit on LIMIT-small's documents (cached under
``.cache/examples/``) unless ``--sae`` names another.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))

from qdrant_store_hybrid import load_limit, sae_for  # noqa: E402


def recall_at_2(
    search: Callable[[str], list[str]], queries: Sequence[tuple[str, set[str]]]
) -> float:
    total = 0.0
    for text, relevant in queries:
        got = search(text)[:2]
        total += len(set(got) & relevant) / min(2, len(relevant))
    return total / len(queries)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sae", help="an SAE folder or Hub id (default: the examples' tiny SAE)")
    ap.add_argument("--queries", type=int, default=1000, help="LIMIT-small queries scored")
    ap.add_argument("--json", help="write the results here as JSON")
    args = ap.parse_args(argv)

    from langchain_core.documents import Document as LCDocument
    from langchain_latentlex import (
        LatentLexEmbeddings,
        LatentLexSparseEmbeddings,
        latentlex_sparse_vector_params,
    )
    from langchain_latentlex import (
        LatentLexVectorStore as LCStore,
    )
    from langchain_qdrant import QdrantVectorStore as LCQdrant
    from langchain_qdrant import RetrievalMode
    from latentlex import LatentIndex, LatentTermEncoder
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.latentlex import (
        LatentLexEmbedding,
        latentlex_sparse_config,
        latentlex_sparse_fns,
    )
    from llama_index.vector_stores.latentlex import LatentLexVectorStore as LIStore
    from llama_index.vector_stores.qdrant import QdrantVectorStore as LIQdrant
    from qdrant_client import QdrantClient

    docs, queries, qrels = load_limit()
    scored = [(queries[q], qrels[q]) for q in sorted(qrels)[: args.queries]]
    encoder = LatentTermEncoder(sae_for(list(docs.values()), args.sae))
    results: dict[str, float] = {}

    def row(name: str, search: Callable[[str], list[str]]) -> None:
        t0 = time.perf_counter()
        results[name] = recall_at_2(search, scored)
        ms = (time.perf_counter() - t0) / len(scored) * 1000
        print(f"| {name} | {results[name]:.3f} | {ms:.1f} |", flush=True)

    print(f"LIMIT-small, {len(scored)} queries, {len(docs)} documents\n")
    print("| system | recall@2 | ms/query |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        index = LatentIndex(encoder, Path(tmp) / "edge")
        index.add(list(docs.values()), list(docs))
        row(
            "latentlex LatentIndex.search (default hybrid)",
            lambda q: [h.doc_id for h in index.search(q, 2)],
        )
        lc = LCStore(index)
        row(
            "LangChain LatentLexVectorStore.similarity_search",
            lambda q: [d.id or "" for d in lc.similarity_search(q, k=2)],
        )
        index.close()
        two = LatentIndex(encoder, Path(tmp) / "two-legs", lexical=False)
        two.add(list(docs.values()), list(docs))
        row(
            "latentlex, two legs (lexical=False): dense + latent terms, min-max",
            lambda q: [h.doc_id for h in two.search(q, 2)],
        )
        row(
            "latentlex, two legs, RRF (what the stock stores fuse)",
            lambda q: [h.doc_id for h in two.search(q, 2, fusion="rrf")],
        )
        two.close()

        li_store = LIStore.from_params(encoder=encoder, store=Path(tmp) / "li")
        li_index = li_store.index_documents([Document(text=t, id_=n) for n, t in docs.items()])
        li_ret = li_index.as_retriever(similarity_top_k=2)
        row(
            "LlamaIndex LatentLexVectorStore (VectorStoreIndex.as_retriever)",
            lambda q: [n.node.ref_doc_id or "" for n in li_ret.retrieve(q)],
        )
        li_store.close()

    lc_stock = LCQdrant.from_documents(
        [LCDocument(text, metadata={"name": name}) for name, text in docs.items()],
        embedding=LatentLexEmbeddings(encoder),
        sparse_embedding=LatentLexSparseEmbeddings(encoder),
        retrieval_mode=RetrievalMode.HYBRID,
        sparse_vector_params=latentlex_sparse_vector_params(),
        collection_name="stock-lc",
        location=":memory:",
    )
    row(
        "langchain-qdrant QdrantVectorStore HYBRID (latentlex vectors)",
        lambda q: [d.metadata["name"] for d in lc_stock.similarity_search(q, k=2)],
    )
    lc_stock.client.close()

    doc_fn, query_fn = latentlex_sparse_fns(encoder)
    client = QdrantClient(location=":memory:")
    li_stock = LIQdrant(
        "stock-li", client=client, enable_hybrid=True, sparse_doc_fn=doc_fn,
        sparse_query_fn=query_fn, sparse_config=latentlex_sparse_config(), index_doc_id=False,
    )  # fmt: skip
    nodes = [
        TextNode(
            id_=str(uuid.uuid5(uuid.NAMESPACE_URL, n)),
            text=t,
            metadata={"name": n},
            excluded_embed_metadata_keys=["name"],
        )
        for n, t in docs.items()
    ]
    stock_index = VectorStoreIndex(
        nodes,
        storage_context=StorageContext.from_defaults(vector_store=li_stock),
        embed_model=LatentLexEmbedding(encoder),
    )
    hybrid = stock_index.as_retriever(
        similarity_top_k=2, sparse_top_k=10, vector_store_query_mode="hybrid"
    )
    row(
        "LlamaIndex QdrantVectorStore hybrid (latentlex vectors)",
        lambda q: [n.node.metadata["name"] for n in hybrid.retrieve(q)],
    )
    client.close()
    if args.json:
        Path(args.json).write_text(
            json.dumps({"queries": len(scored), "recall@2": results}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
