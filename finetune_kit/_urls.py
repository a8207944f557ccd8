"""URLs as they may be shown, logged or saved: never with credentials, never with a query.

A base URL can carry secrets: ``https://user:token@proxy/v1`` (userinfo) or
``https://gateway/v1?key=...`` (some gateways take keys in the query; Azure puts ``api-version``
there). Anything that leaves the process (a repr, a log line, a cache or state file) goes
through :func:`public_url` first.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["comparable_url", "public_url"]


def public_url(url: str) -> str:
    """The URL without userinfo, query or fragment (scheme, host, port and path are kept).

    Args:
        url: Any URL.

    Returns:
        The URL safe to show or save.

    Examples:
        >>> public_url("https://user:s3cret@Proxy.example:8443/v1?token=abc#x")
        'https://proxy.example:8443/v1'
        >>> public_url("http://127.0.0.1:8000/v1/")
        'http://127.0.0.1:8000/v1/'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a number: shown without it rather than failing in a repr
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def comparable_url(url: str) -> str:
    """A URL as two of them are compared: :func:`public_url`, without the trailing slash.

    Examples:
        >>> comparable_url(" https://host/v1/ ") == comparable_url("https://host/v1")
        True
    """
    return public_url(url.strip()).rstrip("/")
