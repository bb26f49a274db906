"""Latent terms in the frameworks' own Qdrant stores: LlamaIndex and langchain-qdrant, hybrid mode.

    python examples/qdrant_store_hybrid.py                 # LIMIT-small, :memory: Qdrant
    python examples/qdrant_store_hybrid.py --url http://localhost:6333

No latentlex index here: the stock ``llama_index.vector_stores.qdrant.QdrantVectorStore`` and
``langchain_qdrant.QdrantVectorStore`` store the vectors, latentlex only supplies them:

- LlamaIndex: ``sparse_doc_fn`` / ``sparse_query_fn`` from ``latentlex_sparse_fns`` and
  ``sparse_config=latentlex_sparse_config()`` (IDF on: the store turns it on only for its own
  FastEmbed models), dense vectors from ``LatentLexEmbedding``;
- LangChain: ``LatentLexSparseEmbeddings`` + ``LatentLexEmbeddings`` with
  ``sparse_vector_params=latentlex_sparse_vector_params()`` (langchain-qdrant never sets IDF).

Both vectors of a text come from one backbone pass. The script prints recall@10 of the dense,
sparse (latent terms) and hybrid modes on LIMIT-small queries, then LangChain's hybrid answers.
An SAE is fitted on the documents when none is given (cached under ``.cache/examples/``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from langchain_core.documents import Document
from langchain_latentlex import (
    LatentLexEmbeddings,
    LatentLexSparseEmbeddings,
    latentlex_sparse_vector_params,
)
from langchain_qdrant import QdrantVectorStore as LangChainQdrant
from langchain_qdrant import RetrievalMode
from latentlex import LatentTermEncoder
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.schema import TextNode
from llama_index.retrievers.latentlex import (
    LatentLexEmbedding,
    latentlex_sparse_config,
    latentlex_sparse_fns,
)
from llama_index.vector_stores.qdrant import QdrantVectorStore as LlamaQdrant
from qdrant_client import QdrantClient

HERE = Path(__file__).resolve().parent
LIMIT = HERE / "data" / "limit-small"
CACHE = HERE.parent / ".cache" / "examples"
QUESTIONS = ["What does Geneva Durben like?", "Who likes River Otters?"]


def load_limit() -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    """LIMIT-small: ``{doc id: text}``, ``{query id: text}``, ``{query id: relevant doc ids}``."""
    docs: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, set[str]] = {}
    for line in (LIMIT / "corpus.jsonl").read_text().splitlines():
        row = json.loads(line)
        docs[row["_id"]] = row["text"]
    for line in (LIMIT / "queries.jsonl").read_text().splitlines():
        row = json.loads(line)
        queries[row["_id"]] = row["text"]
    for line in (LIMIT / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, doc, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, set()).add(doc)
    return docs, queries, qrels


def sae_for(texts: Sequence[str], given: str | None) -> str:
    """``--sae`` if given, else a tiny SAE fitted on ``texts`` (cached by their hash)."""
    if given:
        return given
    from latentlex import fit_sae

    key = hashlib.sha256("\x00".join(sorted(texts)).encode()).hexdigest()[:12]
    out = CACHE / f"sae-{key}-w512-k8-e4"
    if not (out / "cfg.json").is_file():
        print(f"fitting a tiny SAE on {len(texts)} documents (cached in {out}) ...")
        t0 = time.perf_counter()
        fit_sae(list(texts), out, width=512, k=8, epochs=4, progress=False)
        print(f"  done in {time.perf_counter() - t0:.0f} s")
    return str(out)


def client_for(url: str | None) -> QdrantClient:
    return QdrantClient(url=url) if url else QdrantClient(location=":memory:")


def llama_index_part(
    encoder: LatentTermEncoder,
    docs: dict[str, str],
    url: str | None,
    queries: list[tuple[str, str, set[str]]],
) -> None:
    client = client_for(url)
    if client.collection_exists("latentlex-llama-index"):
        client.delete_collection("latentlex-llama-index")
    doc_fn, query_fn = latentlex_sparse_fns(encoder)
    store = LlamaQdrant(
        "latentlex-llama-index",
        client=client,
        enable_hybrid=True,
        sparse_doc_fn=doc_fn,
        sparse_query_fn=query_fn,
        sparse_config=latentlex_sparse_config(),
        index_doc_id=url is not None,  # payload indexes do nothing in local mode (and warn)
    )
    nodes = [
        TextNode(
            id_=str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
            text=text,
            metadata={"name": name},
            excluded_embed_metadata_keys=["name"],
        )
        for name, text in docs.items()
    ]
    t0 = time.perf_counter()
    index = VectorStoreIndex(
        nodes,
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=LatentLexEmbedding(encoder),
    )
    sparse_cfg = client.get_collection("latentlex-llama-index").config.params.sparse_vectors or {}
    modifier = next(iter(sparse_cfg.values())).modifier
    print(
        f"LlamaIndex QdrantVectorStore: {len(nodes)} nodes in {time.perf_counter() - t0:.1f} s, "
        f"sparse modifier {modifier}"
    )
    k = 10
    print(f"  recall@{k} on {len(queries)} LIMIT-small queries:", end="")
    for mode in ("default", "sparse", "hybrid"):
        retriever = index.as_retriever(
            similarity_top_k=k, sparse_top_k=k, vector_store_query_mode=mode
        )
        total = 0.0
        for _, text, relevant in queries:
            got = {n.node.metadata["name"] for n in retriever.retrieve(text)}
            total += len(got & relevant) / len(relevant)
        label = "dense" if mode == "default" else mode
        print(f"  {label} {total / len(queries):.3f}", end="")
    print("\n  (LIMIT is built so that single-vector retrieval fails: chance is 10/46 = 0.217)")
    client.close()


def langchain_part(encoder: LatentTermEncoder, docs: dict[str, str], url: str | None) -> None:
    t0 = time.perf_counter()
    store = LangChainQdrant.from_documents(
        [Document(text, metadata={"name": name}) for name, text in docs.items()],
        embedding=LatentLexEmbeddings(encoder),
        sparse_embedding=LatentLexSparseEmbeddings(encoder),
        retrieval_mode=RetrievalMode.HYBRID,
        sparse_vector_params=latentlex_sparse_vector_params(),
        collection_name="latentlex-langchain",
        force_recreate=True,
        **({"url": url} if url else {"location": ":memory:"}),
    )
    print(
        f"langchain-qdrant QdrantVectorStore (HYBRID): {len(docs)} documents in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    retriever = store.as_retriever(search_kwargs={"k": 3})
    for question in QUESTIONS:
        names = [d.metadata["name"] for d in retriever.invoke(question)]
        print(f"  {question} -> {names}")
    store.client.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sae", help="an SAE folder or Hub id (default: fit a tiny one)")
    ap.add_argument("--url", help="a Qdrant server (default: qdrant-client's :memory: mode)")
    ap.add_argument("--queries", type=int, default=30, help="LIMIT-small queries scored")
    args = ap.parse_args(argv)

    docs, queries, qrels = load_limit()
    encoder = LatentTermEncoder(sae_for(list(docs.values()), args.sae))
    scored = [(qid, queries[qid], qrels[qid]) for qid in list(queries)[: args.queries]]
    llama_index_part(encoder, docs, args.url, scored)
    langchain_part(encoder, docs, args.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
