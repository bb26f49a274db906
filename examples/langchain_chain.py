"""A LangChain retrieval chain (LCEL) on latentlex: retriever | prompt | chat model, with sources.

    python examples/langchain_chain.py                    # LIMIT-small, 3 scripted questions
    python examples/langchain_chain.py --dir ./notes --ask "What did we decide about X?"

1. Loads documents (default: LIMIT-small, one ``Document`` per person, ``id`` = the name; or the
   .txt/.md files of ``--dir``).
2. Fits a tiny SAE on them (cached under ``.cache/examples/``), or uses ``--sae DIR``.
3. Indexes them with ``LatentLexRetriever.from_documents`` (embedded Qdrant, dense + latent terms).
4. Runs ``{docs: retriever, question} | assign(answer=prompt | llm | parser)`` and prints each
   answer with its sources and the latent terms that made them match.

The chat model: an OpenAI-compatible endpoint when ``LATENTLEX_LLM_URL`` or ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY`` is set (model: ``LATENTLEX_LLM_MODEL``, default ``gpt-4o-mini``; needs
``pip install langchain-openai``), else an offline stand-in that quotes the best matching line of
the retrieved context (``--offline`` forces it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import SimpleChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableParallel, RunnablePassthrough
from langchain_latentlex import LatentLexRetriever

HERE = Path(__file__).resolve().parent
LIMIT = HERE / "data" / "limit-small"
CACHE = HERE.parent / ".cache" / "examples"
#: Two questions about a named person (easy: the name is in the document) and one LIMIT query
#: (hard by design: X hides in a list of 45 likes), with the documents that answer them.
QUESTIONS = {
    "What does Geneva Durben like?": {"Geneva Durben"},
    "Which animals does Herminia Caranto like?": {"Herminia Caranto"},
    "Who likes River Otters?": set(),  # from LIMIT-small's qrels
}
STOP = {"who", "what", "which", "likes", "like", "does", "the", "and", "are", "is", "a", "an", "of"}


# ---------------------------------------------------------------------------------- the LLM
def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2 and w not in STOP}


class OfflineChatModel(SimpleChatModel):
    """Stands in for a chat model offline: quotes the context lines that best match the question."""

    @property
    def _llm_type(self) -> str:
        return "offline-quote"

    def _call(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        asks = [m for m in messages if isinstance(m, HumanMessage)]
        question = _words(str(asks[-1].content)) if asks else set()
        lines = [
            ln.strip()
            for m in messages
            if not isinstance(m, HumanMessage)
            for ln in str(m.content).splitlines()
            if ln.strip().startswith("[")  # the formatted documents: "[id] text"
        ]
        scored = [(len(question & _words(ln)), ln) for ln in lines]
        best = max((s for s, _ in scored), default=0)
        if best == 0:
            return "[offline mock LLM] The retrieved context does not mention that."
        quotes = [ln[:90] + ("…" if len(ln) > 90 else "") for s, ln in scored if s == best][:2]
        return "[offline mock LLM, quoting the context] " + " | ".join(quotes)


def make_llm(offline: bool) -> BaseChatModel:
    """The real chat model when configured and installed, else :class:`OfflineChatModel`."""
    url = os.environ.get("LATENTLEX_LLM_URL") or os.environ.get("OPENAI_BASE_URL")
    key = os.environ.get("OPENAI_API_KEY")
    if offline or not (url or key):
        print("LLM: offline mock (set LATENTLEX_LLM_URL or OPENAI_API_KEY for a real one)")
        return OfflineChatModel()
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        print(
            "LLM: an endpoint is set but langchain-openai is not installed "
            "(pip install langchain-openai); using the offline mock"
        )
        return OfflineChatModel()
    model = os.environ.get("LATENTLEX_LLM_MODEL", "gpt-4o-mini")
    print(f"LLM: {model} at {url or 'the OpenAI default endpoint'}")
    return ChatOpenAI(model=model, base_url=url, api_key=key or "none", temperature=0)


# ---------------------------------------------------------------------------------- data + SAE
def limit_documents() -> tuple[list[Document], dict[str, set[str]]]:
    """LIMIT-small as ``Document``s, and ``question -> relevant ids`` (qrels + scripted questions)."""
    docs = []
    for line in (LIMIT / "corpus.jsonl").read_text().splitlines():
        row = json.loads(line)
        docs.append(Document(row["text"], id=row["_id"], metadata={"source": "limit-small"}))
    queries = {}
    for line in (LIMIT / "queries.jsonl").read_text().splitlines():
        row = json.loads(line)
        queries[row["_id"]] = row["text"]
    relevant: dict[str, set[str]] = {}
    for line in (LIMIT / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, doc, score = line.split("\t")
        if int(score) > 0:
            relevant.setdefault(queries[qid], set()).add(doc)
    relevant.update({q: ids for q, ids in QUESTIONS.items() if ids})
    return docs, relevant


def folder_documents(folder: Path) -> list[Document]:
    """Every .txt/.md file of a folder as one ``Document`` (id: its path inside the folder)."""
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".txt", ".md") and p.is_file())
    return [
        Document(
            p.read_text(errors="replace"),
            id=str(p.relative_to(folder)),
            metadata={"source": str(p)},
        )
        for p in files
    ]


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


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(f"[{d.id}] {d.page_content}" for d in docs)


# ---------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dir", help="folder of .txt/.md documents (default: LIMIT-small)")
    ap.add_argument("--sae", help="an SAE folder or Hub id (default: fit a tiny one)")
    ap.add_argument("--ask", action="append", help="a question (repeatable)")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--offline", action="store_true", help="use the offline mock chat model")
    args = ap.parse_args(argv)

    relevant: dict[str, set[str]] = {}
    if args.dir:
        docs = folder_documents(Path(args.dir))
    else:
        docs, relevant = limit_documents()
    print(f"loaded {len(docs)} documents")
    sae = sae_for([d.page_content for d in docs], args.sae)

    with tempfile.TemporaryDirectory(prefix="latentlex-chain-") as tmp:
        t0 = time.perf_counter()
        retriever = LatentLexRetriever.from_documents(
            docs,
            sae=sae,
            store=Path(tmp) / "index",
            k=args.k,
            include_legs=True,
            explain=True,
            explain_top=3,
        )
        print(f"indexed {retriever.index.count()} documents in {time.perf_counter() - t0:.1f} s")

        prompt = ChatPromptTemplate.from_messages(
            [
                ("system", "Answer the question from this context only.\n\nContext:\n{context}"),
                ("human", "{question}"),
            ]
        )
        answer = (
            {"context": lambda x: format_docs(x["docs"]), "question": lambda x: x["question"]}
            | prompt
            | make_llm(args.offline)
            | StrOutputParser()
        )
        chain = RunnableParallel(docs=retriever, question=RunnablePassthrough()).assign(
            answer=answer
        )

        questions = args.ask or (list(QUESTIONS) if not args.dir else ["What is this about?"])
        found = 0
        for question in questions:
            out = chain.invoke(question)
            print(f"\nQ: {question}\nA: {out['answer'].strip()}")
            for rank, doc in enumerate(out["docs"], 1):
                meta = doc.metadata
                terms = ", ".join(
                    f"{t['label']} ({t['contribution']:.2f})" for t in meta["explanation"]["terms"]
                )
                print(
                    f"  [{rank}] {doc.id}  score {meta['score']:.4f}  "
                    f"sparse {meta['sparse_score'] or 0:.2f}  dense {meta['dense_score'] or 0:.2f}  "
                    f"terms: {terms or '-'}"
                )
            if question in relevant:
                hit = sorted(relevant[question] & {d.id for d in out["docs"]})
                found += bool(hit)
                print(f"  expected: {sorted(relevant[question])} -> found {hit or 'none'}")
        if relevant:
            asked = sum(q in relevant for q in questions)
            print(f"\nrelevant document among the sources for {found}/{asked} questions")
        retriever.index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
