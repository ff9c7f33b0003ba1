"""Showing package URLs without their secrets.

Azure Blob SAS URLs carry the credential in the query string (``sv``, ``se``,
``sig`` ...), some servers take ``user:password@`` in the authority, and some
put a token in a path parameter (``/pkg.mcufw;token=...``, RFC 3986 §3.3). All
are credentials: wherever a URL is shown (logs, the twin, the journal, CLI
output, exception messages) only scheme, host, port and the path without its
parameters remain. Every place that shows a URL goes through
:func:`redact_url` or :func:`redact_text`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MASK", "redact_text", "redact_url"]

MASK = "***"
# A URL inside free text: scheme, "://", then anything up to whitespace or a quote.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
# A path segment's parameters: from ";" to the end of the segment.
_PARAMS = re.compile(r";[^/]*")


def redact_url(url: str) -> str:
    """``url`` with any userinfo, path parameters, query and fragment replaced by ``***``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        # Unparseable: the scheme is safe to show, the rest may be anything.
        scheme = url.split("://", 1)[0] if "://" in url else ""
        return f"{scheme}://{MASK}" if scheme else MASK
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if "@" in parts.netloc:
        netloc = f"{MASK}@{netloc}"
    query = MASK if parts.query else ""
    fragment = MASK if parts.fragment else ""
    path = _PARAMS.sub(";" + MASK, parts.path)
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (for exception and error messages)."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    # Punctuation right after a URL ends the sentence, not the URL: keep it visible.
    url = match.group(0)
    core = url.rstrip(".,;:!?)]}")
    return redact_url(core) + url[len(core) :]
