"""LLM descriptions of latents (CL-SR style): 1–8 words per latent, from its top examples.

Any LLM works through duck typing, nothing is tied to one vendor:

- a LlamaIndex ``LLM`` (``llm.complete(prompt).text``),
- a LangChain chat model or LLM (``llm.invoke(prompt)``; ``llm.batch`` is used for concurrency),
- or a plain callable ``prompt -> str``.

The work is batched and resumable: progress is written to ``labels.json`` after every batch,
and a re-run skips latents that already have a description. The cost (number of calls, approximate
prompt tokens) is known before the first call; pass ``confirm`` to see it and decide.

Example:
    >>> from llama_index.llms.openai import OpenAI  # doctest: +SKIP
    >>> result = describe_latents("my-sae", OpenAI(model="gpt-4o-mini"))  # doctest: +SKIP
    >>> result.described, str(result.estimate)  # doctest: +SKIP
    (8191, '8191 LLM calls for 8191 latents, ~2,457,300 prompt tokens ...')
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .errors import ConfigError
from .labels import LatentLabel, LatentLabels, load_labels

logger = logging.getLogger(__name__)

__all__ = [
    "PROMPT_TEMPLATE",
    "CostEstimate",
    "DescribeResult",
    "as_completer",
    "build_prompt",
    "clean_description",
    "describe_latents",
    "estimate_cost",
]

PROMPT_TEMPLATE = """You are naming one feature of a text-retrieval model.
Below are the text snippets on which the feature is most active; the exact word it fires
on is marked [[like this]].
{words}
Snippets:
{examples}

In 1 to 8 words, describe what the feature detects. Reply with the description only."""
"""Default prompt: ``{words}`` (a line of top words) and ``{examples}`` (numbered snippets)."""

RETRY_SUFFIX = "\n\nYour previous answer was not usable. Reply with 1 to 8 words only."
MAX_WORDS = 8
_CHARS_PER_TOKEN = 4
_PREFIX = re.compile(
    r"^(?:description|answer|feature|label|the feature detects|this feature detects)\s*[:\-–]\s*",
    re.IGNORECASE,
)
_THINK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)

Completer = Callable[[Sequence[str]], list["str | BaseException"]]


@dataclass(frozen=True)
class CostEstimate:
    """What a :func:`describe_latents` run will cost, before it starts."""

    n_latents: int
    """Latents to describe (those without a description, unless overwriting)."""
    n_calls: int
    """LLM calls (one per latent; retries for unusable answers come on top)."""
    prompt_tokens: int
    """Approximate prompt tokens (≈ 4 characters per token)."""
    completion_tokens: int
    """Approximate completion tokens (≈ 12 per call)."""
    n_batches: int
    """Batches (``labels.json`` is written after each)."""

    def __str__(self) -> str:
        return (
            f"{self.n_calls} LLM calls for {self.n_latents} latents, ~{self.prompt_tokens:,} "
            f"prompt tokens + ~{self.completion_tokens:,} completion tokens (≈4 chars/token), "
            f"in {self.n_batches} batches"
        )


@dataclass
class DescribeResult:
    """What a :func:`describe_latents` run did."""

    estimate: CostEstimate
    described: list[int] = field(default_factory=list)
    """Latents that received a description in this run."""
    failed: list[int] = field(default_factory=list)
    """Latents whose answers stayed unusable after the retries."""
    skipped: int = 0
    """Latents left alone because they already had a description."""
    calls: int = 0
    """LLM calls made (retries included)."""
    cancelled: bool = False
    """``confirm`` declined the estimate: nothing was called."""


# ----------------------------------------------------------------------------- LLM adapters


def _text_of(response: Any) -> str:
    """The text of a LlamaIndex response, a LangChain message, or a str."""
    if isinstance(response, str):
        return response
    text = getattr(response, "text", None)
    if isinstance(text, str):
        return text
    message = getattr(response, "message", None)  # LlamaIndex ChatResponse
    if message is not None and not hasattr(response, "content"):
        return _text_of(message)
    content = getattr(response, "content", None)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # LangChain content blocks
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "".join(parts)
    return str(response)


def as_completer(llm: Any, *, max_concurrency: int = 4) -> Completer:
    """Adapt an LLM to ``complete(prompts) -> [text or exception, ...]`` (one entry per prompt).

    Args:
        llm: a LlamaIndex ``LLM`` (``.complete``), a LangChain chat model / LLM (``.invoke``,
            ``.batch``), or a callable ``prompt -> str``.
        max_concurrency: parallel requests for LangChain's ``.batch`` (1: one at a time).

    Raises:
        ConfigError: ``llm`` offers none of these.

    Example:
        >>> complete = as_completer(lambda prompt: "Marsupials")
        >>> complete(["..."])
        ['Marsupials']
    """

    if hasattr(llm, "invoke") and hasattr(llm, "batch") and max_concurrency > 1:

        def run_batch(prompts: Sequence[str]) -> list[str | BaseException]:
            out = llm.batch(
                list(prompts), config={"max_concurrency": max_concurrency}, return_exceptions=True
            )
            return [r if isinstance(r, BaseException) else _text_of(r) for r in out]

        return run_batch
    if hasattr(llm, "complete"):
        call: Callable[[str], Any] = llm.complete
    elif hasattr(llm, "invoke"):
        call = llm.invoke
    elif callable(llm):
        call = llm
    else:
        raise ConfigError(
            f"cannot use a {type(llm).__name__} as an LLM: pass a LlamaIndex LLM (.complete), a "
            "LangChain chat model (.invoke) or a callable prompt -> str"
        )

    def run_each(prompts: Sequence[str]) -> list[str | BaseException]:
        out: list[str | BaseException] = []
        for p in prompts:
            try:
                out.append(_text_of(call(p)))
            except Exception as e:  # handed back to the caller, who saves progress then raises
                out.append(e)
                break
        return out

    return run_each


# ----------------------------------------------------------------------------- prompts and answers


def build_prompt(
    label: LatentLabel, *, max_examples: int = 10, template: str = PROMPT_TEMPLATE
) -> str:
    """The prompt for one latent: its top words and its strongest snippets (word marked ``[[ ]]``).

    Example:
        >>> lab = LatentLabel("quokkas", [("quokkas", 3, 1.2)], [{"text": "Ann likes Quokkas.",
        ...     "start": 10, "end": 17, "act": 1.5}])
        >>> "[[Quokkas]]" in build_prompt(lab)
        True
    """
    lines = []
    for n, ex in enumerate(label.examples[:max_examples], 1):
        text = str(ex.get("text", ""))
        s, e = int(ex.get("start", 0) or 0), int(ex.get("end", 0) or 0)
        if 0 <= s < e <= len(text):
            text = f"{text[:s]}[[{text[s:e]}]]{text[e:]}"
        lines.append(f"{n}. {text}")
    words = ", ".join(w for w, _, _ in label.top_words[:10])
    return template.format(
        words=f"Words it fires on most: {words}" if words else "",
        examples="\n".join(lines) if lines else "(none)",
    )


def clean_description(text: str, max_words: int = MAX_WORDS) -> str | None:
    """A usable 1–``max_words`` word description from an LLM answer, or None.

    Reasoning blocks, prefixes (``Description:``), bullets, quotes, markdown and a trailing
    period are removed; only the first non-empty line counts.

    Example:
        >>> clean_description('Description: "Small marsupials of Australia."')
        'Small marsupials of Australia'
        >>> clean_description("It fires on a very wide range of unrelated words here") is None
        True
    """
    if not isinstance(text, str):
        return None
    text = _THINK.sub(" ", text)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = re.sub(r"^(?:[-*•#>]+|\d+[.)])\s*", "", line)
    line = line.replace("**", "").replace("`", "")
    for _ in range(2):
        line = _PREFIX.sub("", line).strip()
        line = line.strip("\"'“”‘’ ")
    line = re.sub(r"\s+", " ", line).rstrip(" .;:!,")
    words = line.split()
    if not words or len(words) > max_words or not any(ch.isalnum() for ch in line):
        return None
    return line


# ----------------------------------------------------------------------------- the run


def _todo(
    labels: LatentLabels, latents: Iterable[int] | None, overwrite: bool
) -> tuple[list[int], int]:
    wanted = sorted(labels.latents) if latents is None else list(dict.fromkeys(latents))
    missing = [j for j in wanted if j not in labels.latents]
    if missing:
        raise ConfigError(
            f"latents {missing[:5]} have no labels; run `latentlex label` on a corpus first"
        )
    todo = [j for j in wanted if overwrite or not labels.latents[j].description]
    return todo, len(wanted) - len(todo)


def estimate_cost(
    labels: LatentLabels,
    *,
    latents: Iterable[int] | None = None,
    overwrite: bool = False,
    batch_size: int = 16,
    max_examples: int = 10,
    template: str = PROMPT_TEMPLATE,
) -> CostEstimate:
    """The calls and approximate tokens :func:`describe_latents` would use (no LLM is called).

    Example:
        >>> labels = LatentLabels({1: LatentLabel("a / b"), 2: LatentLabel("c", description="C")})
        >>> estimate_cost(labels).n_calls
        1
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    todo, _ = _todo(labels, latents, overwrite)
    chars = sum(
        len(build_prompt(labels.latents[j], max_examples=max_examples, template=template))
        for j in todo
    )
    return CostEstimate(
        n_latents=len(todo),
        n_calls=len(todo),
        prompt_tokens=-(-chars // _CHARS_PER_TOKEN),
        completion_tokens=12 * len(todo),
        n_batches=-(-len(todo) // batch_size),
    )


def describe_latents(
    labels: LatentLabels | str | os.PathLike[str],
    llm: Any,
    *,
    latents: Iterable[int] | None = None,
    batch_size: int = 16,
    max_examples: int = 10,
    overwrite: bool = False,
    save_to: str | os.PathLike[str] | None = None,
    confirm: Callable[[CostEstimate], bool] | None = None,
    max_calls: int | None = None,
    retries: int = 1,
    max_concurrency: int = 4,
    template: str = PROMPT_TEMPLATE,
    progress: bool = False,
) -> DescribeResult:
    """Ask an LLM for a 1–8 word description of each latent; resumable.

    Args:
        labels: :class:`~latentlex.labels.LatentLabels`, or an SAE folder / ``labels.json`` path
            (then progress is saved back there).
        llm: a LlamaIndex LLM, a LangChain chat model, or a callable ``prompt -> str``.
        latents: which latents (default: every labelled latent).
        batch_size: calls between two saves of ``labels.json``.
        max_examples: snippets shown to the LLM per latent.
        overwrite: describe latents that already have a description again.
        save_to: where to save progress (default: the path ``labels`` was read from, if any).
        confirm: called with the :class:`CostEstimate` before any call; return False to cancel.
        max_calls: stop after this many latents (the rest stays for a later run).
        retries: extra attempts for an unusable answer (too long, empty).
        max_concurrency: parallel requests when the LLM supports LangChain's ``.batch``.
        template: the prompt (``{words}`` and ``{examples}`` placeholders).
        progress: show a progress bar.

    Returns:
        A :class:`DescribeResult`; ``labels`` (or the file) holds the descriptions.

    Raises:
        Exception: whatever the LLM raised, after the finished work was saved; re-running
            resumes where it stopped.

    Example:
        >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
        >>> labels = LatentLabels({7: LatentLabel("quokkas / tapirs")})
        >>> llm = FakeListChatModel(responses=["Unusual mammals"])
        >>> describe_latents(labels, llm).described, labels[7].description
        ([7], 'Unusual mammals')
    """
    path: Path | None = None
    if isinstance(labels, str | os.PathLike):
        path = Path(labels)
        labels = load_labels(path)
    if save_to is not None:
        path = Path(save_to)
    if retries < 0:
        raise ConfigError(f"retries must be >= 0, got {retries}")
    if max_calls is not None and max_calls < 0:
        raise ConfigError(f"max_calls must be >= 0 or None, got {max_calls}")
    estimate = estimate_cost(
        labels,
        latents=latents,
        overwrite=overwrite,
        batch_size=batch_size,
        max_examples=max_examples,
        template=template,
    )
    todo, skipped = _todo(labels, latents, overwrite)
    if max_calls is not None:
        todo = todo[:max_calls]
    result = DescribeResult(estimate, skipped=skipped)
    logger.info("describing latents: %s", estimate)
    if confirm is not None and not confirm(estimate):
        result.cancelled = True
        return result
    complete = as_completer(llm, max_concurrency=max_concurrency)
    bar = tqdm(total=len(todo), desc="describing", unit="latent", disable=not progress)
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            prompts = {
                j: build_prompt(labels.latents[j], max_examples=max_examples, template=template)
                for j in batch
            }
            pending = list(batch)
            error: BaseException | None = None
            for attempt in range(retries + 1):
                if not pending:
                    break
                asks = [prompts[j] + (RETRY_SUFFIX if attempt else "") for j in pending]
                answers = complete(asks)
                result.calls += len(answers)
                still: list[int] = []
                for j, answer in zip(pending, answers, strict=False):
                    if isinstance(answer, BaseException):
                        error = error or answer
                        continue
                    desc = clean_description(answer)
                    if desc is None:
                        logger.debug("latent %d: unusable answer %r", j, answer[:200])
                        still.append(j)
                    else:
                        labels.latents[j].description = desc
                        result.described.append(j)
                if error is not None:
                    break
                pending = still
            if error is not None:
                raise error
            result.failed.extend(pending)
            if path is not None:
                labels.save(path)
            bar.update(len(batch))
    except BaseException:
        if path is not None and result.described:
            labels.save(path)
            logger.warning(
                "stopped after %d descriptions; progress saved to %s (run again to resume)",
                len(result.described),
                path,
            )
        raise
    finally:
        bar.close()
    if result.failed:
        logger.warning(
            "%d latents got no usable description (answers not 1-%d words): %s",
            len(result.failed),
            MAX_WORDS,
            result.failed[:10],
        )
    return result
