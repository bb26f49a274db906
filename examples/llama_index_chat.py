"""A RAG chatbot over a folder of documents: LlamaIndex chat engine + latentlex retriever.

    python examples/llama_index_chat.py                    # LIMIT-small, 3 scripted questions
    python examples/llama_index_chat.py --dir ./docs --ask "What is X?" --ask "And Y?"

1. Reads a folder with LlamaIndex's ``SimpleDirectoryReader`` (default: the LIMIT-small documents
   written to a temporary folder as .txt files, one per person).
2. Fits a tiny SAE on those documents (cached under ``.cache/examples/``), or uses ``--sae DIR``.
3. Indexes them with ``LatentLexRetriever.from_documents`` (embedded Qdrant, dense + latent terms).
4. Chats through ``CondensePlusContextChatEngine`` and prints each answer's sources with the latent
   terms that made them match.

The LLM: an OpenAI-compatible endpoint when ``LATENTLEX_LLM_URL`` or ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY`` is set (model: ``LATENTLEX_LLM_MODEL``, default ``gpt-4o-mini``; needs
``pip install llama-index-llms-openai-like``), else an offline stand-in that quotes the best
matching line of the retrieved context (``--offline`` forces it).
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

from llama_index.core import SimpleDirectoryReader
from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.chat_engine import CondensePlusContextChatEngine
from llama_index.core.llms import LLM, CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.retrievers.latentlex import LatentLexRetriever

HERE = Path(__file__).resolve().parent
LIMIT = HERE / "data" / "limit-small"
CACHE = HERE.parent / ".cache" / "examples"
#: Two questions about a named person (easy: the name is in the document) and one LIMIT query
#: (hard by design: X hides in a list of 45 likes), with the documents that answer them.
QUESTIONS = {
    "What does Geneva Durben like?": {"Geneva Durben.txt"},
    "Which animals does Herminia Caranto like?": {"Herminia Caranto.txt"},
    "Who likes River Otters?": set(),  # from LIMIT-small's qrels
}
STOP = {"who", "what", "which", "likes", "like", "does", "the", "and", "are", "is", "a", "an", "of"}


# ---------------------------------------------------------------------------------- the LLM
def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2 and w not in STOP}


class OfflineLLM(CustomLLM):
    """Stands in for a chat model offline: quotes the context lines that best match the question."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=32_000, num_output=256, model_name="offline-quote")

    def _answer(self, prompt: str) -> str:
        lines = [ln.strip() for ln in prompt.splitlines() if ln.strip()]
        asks = [ln for ln in lines if ln.lower().startswith("user:")]
        question = _words((asks[-1] if asks else lines[-1]).partition(":")[2])
        # quote document lines, not "role: ..." or "file_name: ..." lines
        body = [ln for ln in lines if not re.match(r"^[a-z_]+: ", ln)]
        scored = [(len(question & _words(ln)), ln) for ln in body]
        best = max((s for s, _ in scored), default=0)
        if best == 0:
            return "[offline mock LLM] The retrieved context does not mention that."
        quotes = [ln[:90] + ("…" if len(ln) > 90 else "") for s, ln in scored if s == best][:2]
        return "[offline mock LLM, quoting the context] " + " | ".join(quotes)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._answer(prompt))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        text = self._answer(prompt)
        yield CompletionResponse(text=text, delta=text)


def make_llm(offline: bool) -> tuple[LLM, bool]:
    """The real LLM when configured and installed, else :class:`OfflineLLM`; (llm, is_offline)."""
    url = os.environ.get("LATENTLEX_LLM_URL") or os.environ.get("OPENAI_BASE_URL")
    key = os.environ.get("OPENAI_API_KEY")
    if offline or not (url or key):
        print("LLM: offline mock (set LATENTLEX_LLM_URL or OPENAI_API_KEY for a real one)")
        return OfflineLLM(), True
    try:
        from llama_index.llms.openai_like import OpenAILike
    except ImportError:
        print(
            "LLM: an endpoint is set but llama-index-llms-openai-like is not installed "
            "(pip install llama-index-llms-openai-like); using the offline mock"
        )
        return OfflineLLM(), True
    model = os.environ.get("LATENTLEX_LLM_MODEL", "gpt-4o-mini")
    print(f"LLM: {model} at {url or 'the OpenAI default endpoint'}")
    kwargs: dict[str, Any] = {"api_base": url} if url else {}
    llm = OpenAILike(
        model=model, api_key=key or "none", is_chat_model=True, context_window=16_000, **kwargs
    )
    return llm, False


# ---------------------------------------------------------------------------------- data + SAE
def limit_folder(dest: Path) -> tuple[Path, dict[str, set[str]]]:
    """Write LIMIT-small as one .txt per document; also return ``question -> relevant file names``
    (LIMIT-small's qrels and the scripted questions)."""
    dest.mkdir(parents=True, exist_ok=True)
    for line in (LIMIT / "corpus.jsonl").read_text().splitlines():
        row = json.loads(line)
        (dest / f"{row['_id']}.txt").write_text(row["text"])
    queries = {}
    for line in (LIMIT / "queries.jsonl").read_text().splitlines():
        row = json.loads(line)
        queries[row["_id"]] = row["text"]
    relevant: dict[str, set[str]] = {}
    for line in (LIMIT / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, doc, score = line.split("\t")
        if int(score) > 0:
            relevant.setdefault(queries[qid], set()).add(f"{doc}.txt")
    relevant.update({q: files for q, files in QUESTIONS.items() if files})
    return dest, relevant


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


# ---------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dir", help="folder of documents (default: LIMIT-small as .txt files)")
    ap.add_argument("--sae", help="an SAE folder or Hub id (default: fit a tiny one)")
    ap.add_argument("--ask", action="append", help="a question (repeatable)")
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--offline", action="store_true", help="use the offline mock LLM")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="latentlex-chat-") as tmp:
        relevant: dict[str, set[str]] = {}
        if args.dir:
            folder = Path(args.dir)
        else:
            folder, relevant = limit_folder(Path(tmp) / "docs")
        documents = SimpleDirectoryReader(str(folder), filename_as_id=True).load_data()
        print(f"read {len(documents)} documents from {folder if args.dir else 'LIMIT-small'}")
        sae = sae_for([d.text for d in documents], args.sae)

        t0 = time.perf_counter()
        retriever = LatentLexRetriever.from_documents(
            documents,
            sae=sae,
            store=Path(tmp) / "index",
            similarity_top_k=args.top_k,
            include_legs=True,
            explain=True,
            explain_top=3,
        )
        print(f"indexed {retriever.index.count()} chunks in {time.perf_counter() - t0:.1f} s")

        llm, offline = make_llm(args.offline)
        # offline, the mock cannot rewrite follow-ups into standalone questions: skip condensing
        chat = CondensePlusContextChatEngine.from_defaults(
            retriever, llm=llm, skip_condense=offline
        )
        questions = args.ask or (list(QUESTIONS) if not args.dir else ["What is this about?"])
        found = 0
        for question in questions:
            reply = chat.chat(question)
            print(f"\nQ: {question}\nA: {reply.response.strip()}")
            names = []
            for rank, hit in enumerate(reply.source_nodes, 1):
                meta = hit.node.metadata
                name = meta.get("file_name", hit.node.node_id)
                names.append(name)
                terms = ", ".join(
                    f"{t['label']} ({t['contribution']:.2f})" for t in meta["explanation"]["terms"]
                )
                print(
                    f"  [{rank}] {name}  score {hit.score:.4f}  "
                    f"sparse {meta['sparse_score'] or 0:.2f}  dense {meta['dense_score'] or 0:.2f}  "
                    f"terms: {terms or '-'}"
                )
            if question in relevant:
                hit_names = sorted(relevant[question] & set(names))
                found += bool(hit_names)
                print(f"  expected: {sorted(relevant[question])} -> found {hit_names or 'none'}")
        if relevant:
            asked = sum(q in relevant for q in questions)
            print(f"\nrelevant document among the sources for {found}/{asked} questions")
        retriever.index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
