"""latentlex: dense + latent-term hybrid retrieval with sparse autoencoders, in Qdrant, with explanations.

Heavy modules (torch, sentence-transformers, Qdrant) load on first use of a name that needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    BackboneMismatchError,
    CollectionMismatchError,
    ConfigError,
    CorpusError,
    HubError,
    LatentLexError,
    SAEFormatError,
    StoreError,
)
from .sparse import SparseVector

__version__ = "0.1.0"

_LAZY = {
    "Backbone": "backbone",
    "SparseAutoencoder": "sae",
    "SAEConfig": "sae",
    "TrainConfig": "training",
    "train_sae": "training",
    "FitConfig": "fit",
    "fit_sae": "fit",
    "LatentTermEncoder": "terms",
    "Encoded": "terms",
    "Document": "corpus",
    "read_corpus": "corpus",
    "LatentIndex": "index",
    "LexicalConfig": "lexical",
    "LexicalEncoder": "lexical",
    "from_pretrained": "hub",
    "push_to_hub": "hub",
}

__all__ = [
    "BackboneMismatchError",
    "CollectionMismatchError",
    "ConfigError",
    "CorpusError",
    "HubError",
    "LatentLexError",
    "SAEFormatError",
    "SparseVector",
    "StoreError",
    "__version__",
    *_LAZY,
]

if TYPE_CHECKING:
    from .backbone import Backbone
    from .corpus import Document, read_corpus
    from .fit import FitConfig, fit_sae
    from .hub import from_pretrained, push_to_hub
    from .index import LatentIndex
    from .lexical import LexicalConfig, LexicalEncoder
    from .sae import SAEConfig, SparseAutoencoder
    from .terms import Encoded, LatentTermEncoder
    from .training import TrainConfig, train_sae


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'latentlex' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
