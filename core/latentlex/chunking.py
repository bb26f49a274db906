"""Split texts into chunks the backbone reads whole.

The backbone reads at most ``max_seq_length`` tokens (256 for all-MiniLM-L6-v2), special tokens and
the document prompt included; the rest of a longer text is cut off and never searched. The
frameworks' ``from_documents`` split with :func:`split_text` (LangChain) or with LlamaIndex's
``SentenceSplitter`` counting :func:`token_counter` tokens (LlamaIndex), at :func:`chunk_limit`
tokens by default.

Example:
    >>> from latentlex.backbone import Backbone  # doctest: +SKIP
    >>> bb = Backbone()  # doctest: +SKIP
    >>> chunk_limit(bb)  # doctest: +SKIP
    254
    >>> [len(bb.tokenizer.tokenize(c)) <= 254 for c in split_text(long_text, bb.tokenizer, 254)]  # doctest: +SKIP
    [True, True, True]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import ConfigError

__all__ = ["chunk_limit", "default_overlap", "split_text", "token_counter"]


def chunk_limit(backbone: Any) -> int:
    """Tokens of text one backbone pass reads: its maximum length less the special tokens and
    the document prompt it adds."""
    tokenizer = backbone.tokenizer
    specials = len(tokenizer("", add_special_tokens=True)["input_ids"])
    prompt = getattr(backbone, "document_prompt", None) or ""
    prompt_len = len(tokenizer.tokenize(prompt)) if prompt else 0
    limit = int(backbone.max_seq_length) - specials - prompt_len
    if limit < 8:
        raise ConfigError(f"the backbone reads only {limit} tokens of text per pass")
    return limit


def default_overlap(chunk_size: int) -> int:
    """The default overlap between consecutive chunks: an eighth of the chunk."""
    return chunk_size // 8


def token_counter(backbone: Any) -> Callable[[str], list[str]]:
    """``text -> tokens`` of the backbone's tokenizer, no special tokens (for LlamaIndex's
    splitters, which count ``len(tokenizer(text))``)."""
    tokenizer = backbone.tokenizer

    def tokenize(text: str) -> list[str]:
        return list(tokenizer.tokenize(text))

    return tokenize


def _boundary(text: str, offsets: list[tuple[int, int]], lo: int, hi: int) -> int:
    """The best token index in ``(lo, hi]`` to end a chunk before: after a paragraph, else after
    a sentence, else at a word boundary; ``hi`` when there is none."""
    best = {0: -1, 1: -1, 2: -1}
    for b in range(hi, lo, -1):
        gap = text[offsets[b - 1][1] : offsets[b][0]]
        if not gap or not gap.isspace():
            continue
        if "\n\n" in gap or gap.count("\n") >= 2:
            rank = 0
        elif text[offsets[b - 1][1] - 1] in ".!?;:" or "\n" in gap:
            rank = 1
        else:
            rank = 2
        if best[rank] < 0:
            best[rank] = b
        if rank == 0:
            break
    return next((best[r] for r in (0, 1, 2) if best[r] > 0), hi)


def split_text(text: str, tokenizer: Any, chunk_size: int, overlap: int = 0) -> list[str]:
    """Split ``text`` into chunks of at most ``chunk_size`` tokens of ``tokenizer``.

    Chunks end at a paragraph, sentence or word boundary in their second half when there is
    one; consecutive chunks share about ``overlap`` tokens (starting at a word). A text that
    fits comes back whole; an empty text gives ``[text]``.

    Raises:
        ConfigError: bad sizes, or a tokenizer without offsets (not a "fast" tokenizer).
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 8:
        raise ConfigError(f"chunk_size must be an int >= 8, got {chunk_size!r}")
    if (
        isinstance(overlap, bool)
        or not isinstance(overlap, int)
        or not 0 <= overlap < chunk_size // 2
    ):
        raise ConfigError(f"overlap must be an int in [0, chunk_size // 2), got {overlap!r}")
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("split_text needs a fast (Rust) tokenizer, which reports token offsets")
    enc = tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
    )
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    n = len(offsets)
    if n <= chunk_size:
        return [text]
    chunks: list[str] = []
    start = 0
    while start < n:
        end = min(start + chunk_size, n)
        if end < n:
            end = _boundary(text, offsets, start + chunk_size // 2, end)
        piece = text[offsets[start][0] : offsets[end - 1][1]].strip()
        if piece:
            chunks.append(piece)
        if end >= n:
            break
        nxt = max(end - overlap, start + 1)
        # begin the next chunk at a word: move forward to a token that follows white space
        while nxt < end and not text[offsets[nxt - 1][1] : offsets[nxt][0]].isspace():
            nxt += 1
        start = nxt
    return chunks
