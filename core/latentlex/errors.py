"""The exceptions latentlex raises. Every one derives from :class:`LatentLexError`."""

from __future__ import annotations


class LatentLexError(Exception):
    """Base class of every error latentlex raises on purpose."""


class ConfigError(LatentLexError, ValueError):
    """A configuration value is invalid (the message names the field and the allowed values)."""


class SAEFormatError(LatentLexError):
    """An SAE folder is missing, incomplete, corrupt or of an unknown format."""


class BackboneMismatchError(LatentLexError):
    """An SAE is used with a backbone other than the one it was trained on."""


class CorpusError(LatentLexError):
    """A corpus file is missing or malformed (the message names the file and line)."""


class StoreError(LatentLexError):
    """The vector store cannot be reached, opened or written."""


class CollectionMismatchError(StoreError):
    """A collection was written by a different SAE, backbone or format version.

    ``stored`` holds the collection's own latentlex record when one was read (else ``None``).
    """

    def __init__(self, message: str, stored: dict | None = None) -> None:
        super().__init__(message)
        self.stored = stored


class HubError(LatentLexError):
    """The Hugging Face Hub refused a request or could not be reached (the message says what to do)."""
