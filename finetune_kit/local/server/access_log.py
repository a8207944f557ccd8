"""Keeps keys out of the access log: credentials sent in a URL are written as ``***``.

A client may put its key in the query string (``?api_key=...``, as some tools do) or, by
mistake, in the path. The server refuses it (only ``Authorization: Bearer`` counts), but
uvicorn's access log writes every request line as it came. ``redact_access_log(api_key)``
adds a filter to the ``uvicorn.access`` logger that rewrites the line first: the value of any
query parameter whose name says credential (``key``, ``token``, ``secret``, ``password``,
``auth``...), any value that looks like an OpenAI-style key (``sk-...``), and the server's own
key wherever it appears, percent-encoded or not.

Example:
    >>> redact_url("/v1/files?limit=2&api_key=sk-abc&after=file-1", keys=())
    '/v1/files?limit=2&api_key=***&after=file-1'
    >>> redact_url("/v1/models/hunter2?x=hunter2", keys=("hunter2",))
    '/v1/models/***?x=***'
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, unquote_plus

__all__ = ["redact_access_log", "redact_url"]

_MASK = "***"
_CREDENTIAL_NAME = re.compile(
    r"key|token|secret|passw|auth|credential|signature|session", re.IGNORECASE
)
_KEY_LIKE = re.compile(r"^(sk|rk|pk)-\S{6,}$")
_ACCESS_LOGGER = "uvicorn.access"


def _hides_a_key(name: str, value: str, keys: Iterable[str]) -> bool:
    return bool(
        _CREDENTIAL_NAME.search(name)
        or _KEY_LIKE.match(value)
        or any(key and key in value for key in keys)
    )


def redact_url(url: str, keys: Iterable[str]) -> str:
    """Return a request path (with its query string) with every credential written ``***``.

    Args:
        url: The path and query string as logged, percent-encoded.
        keys: Secrets to hide wherever they appear (the server's API key).

    Returns:
        The same URL, credentials replaced.
    """
    keys = [key for key in keys if key]
    path, mark, query = url.partition("?")
    for key in keys:
        for form in {key, quote(key, safe="")}:
            path = path.replace(form, _MASK)
    if not mark:
        return path
    pairs = []
    for pair in query.split("&"):
        raw_name, equals, raw_value = pair.partition("=")
        name, value = unquote_plus(raw_name), unquote_plus(raw_value)
        if equals and _hides_a_key(name, value, keys):
            pair = f"{raw_name}={_MASK}"
        elif not equals and _hides_a_key("", name, keys):
            pair = _MASK
        pairs.append(pair)
    return f"{path}?{'&'.join(pairs)}"


class _RedactingFilter(logging.Filter):
    """Rewrites the URL argument of uvicorn's access log records."""

    def __init__(self) -> None:
        super().__init__()
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"_RedactingFilter(keys={len(self._keys)})"

    def add_key(self, key: str) -> None:
        with self._lock:
            self._keys.add(key)

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn logs ('%s - "%s %s HTTP/%s" %d', client, method, path_with_query, ...).
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            with self._lock:
                keys = tuple(self._keys)
            record.args = (*args[:2], redact_url(args[2], keys), *args[3:])
        return True


_FILTER = _RedactingFilter()


def redact_access_log(api_key: str | None) -> None:
    """Make uvicorn's access log write credentials in URLs as ``***`` (once per process).

    Args:
        api_key: The server's key, hidden wherever it appears; ``None`` when it has none (keys
            in parameters named like credentials, and ``sk-...`` values, are hidden anyway).
    """
    if api_key:
        _FILTER.add_key(api_key)
    access = logging.getLogger(_ACCESS_LOGGER)
    # uvicorn's logging setup replaces the logger's handlers but keeps its filters.
    if _FILTER not in access.filters:
        access.addFilter(_FILTER)
