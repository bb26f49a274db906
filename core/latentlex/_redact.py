"""Secrets out of messages: one redaction for every URL, store and error text latentlex prints.

:func:`redact_url` hides a URL's user-info (whatever characters the password holds, escaped or
not: everything between ``scheme://`` and the last ``@`` of the URL) and the values of secret
query parameters (``api_key``, ``token``, ``password``, ...). :func:`redact_text` does the same to
every URL inside a free text (an exception message) and also removes known secret strings
(an API key, a password) wherever they appear, raw or percent-encoded.

Example:
    >>> redact_url("http://user:p/a#s?s@db.example:6333/x?api_key=k1&x=1")
    'http://***@db.example:6333/x?api_key=***&x=1'
    >>> redact_text("cannot reach http://u:pw@h:6333 (key abc123)", secrets=["abc123"])
    'cannot reach http://***@h:6333 (key ***)'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

__all__ = ["MASK", "redact_text", "redact_url", "url_secrets"]

MASK = "***"

#: Query (or fragment) parameters whose values are secrets.
_SECRET_PARAM = re.compile(
    r"(?P<lead>[?&;#])(?P<name>(?:api|access|auth|private|secret)?[_-]?(?:key|token)|apikey|"
    r"password|passwd|pwd|secret|sig|signature|credential|credentials)=(?P<value>[^&;#\s'\"<>]*)",
    re.IGNORECASE,
)
#: A URL inside free text: a scheme, then anything up to white space or a quote/bracket.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}://[^\s'\"<>`]+")


def _params(text: str) -> str:
    return _SECRET_PARAM.sub(lambda m: f"{m['lead']}{m['name']}={MASK}", text)


def redact_url(url: str) -> str:
    """``url`` with its user-info and secret query values replaced by ``***``.

    Never raises: a value that is not a string is shown by its type only.
    """
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    head, sep, rest = url.partition("://")
    if not sep:  # no scheme: 'user:pw@host:6333' is still a credential before the last '@'
        head, rest = "", url
    at = rest.rfind("@")
    if at >= 0:
        rest = f"{MASK}@{rest[at + 1 :]}"
    return _params(f"{head}{sep}{rest}")


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every URL redacted (:func:`redact_url`) and each of ``secrets`` removed.

    Secrets shorter than 4 characters are not searched for (they would mask ordinary words).
    """
    text = str(text)
    for secret in secrets:
        if not secret or len(secret) < 4:
            continue
        for form in {secret, quote(secret, safe=""), quote(secret, safe=":/@")}:
            text = text.replace(form, MASK)
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), _params(text))


def url_secrets(url: str | None) -> list[str]:
    """The secret parts of ``url``: its user-info (whole, and the password alone) and the values
    of its secret query parameters, for :func:`redact_text`."""
    if not url:
        return []
    out: list[str] = []
    _, sep, rest = url.partition("://")
    rest = rest if sep else url
    at = rest.rfind("@")
    if at >= 0:
        info = rest[:at]
        out.append(info)
        _user, colon, password = info.partition(":")
        if colon:
            out.append(password)
    out += [m["value"] for m in _SECRET_PARAM.finditer(url) if m["value"]]
    return out
