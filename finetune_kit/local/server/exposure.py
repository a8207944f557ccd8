"""Who can reach a local backend: loopback addresses, and the checks for any other address.

On ``127.0.0.1`` (the default) only this machine reaches the server. On any other address
(``0.0.0.0``, ``::``, a LAN address, a host name that resolves elsewhere) every machine that can
reach this one can, over plain HTTP: without an API key that is anyone on the network, so it
is refused unless the user says so explicitly; with a key it is allowed with a loud warning,
since the key and the data still cross the network unencrypted.

Example:
    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    >>> exposure_refusal("127.0.0.1", None, allow_no_key=False) is None
    True
    >>> "0.0.0.0" in exposure_refusal("0.0.0.0", None, allow_no_key=False)
    True
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["exposure_refusal", "exposure_warning", "is_loopback"]


def _loopback_address(text: str) -> bool:
    address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 scope ("%eth0")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_loopback(host: str) -> bool:
    """Whether a server listening on ``host`` is reachable from this machine only.

    A host name counts as loopback when every address it resolves to is one; a name that
    does not resolve does not (when in doubt, the server is treated as exposed).

    Args:
        host: The interface to listen on, as given to the server.

    Example:
        >>> is_loopback("localhost"), is_loopback("192.0.2.10")
        (True, False)
    """
    name = host.strip().removeprefix("[").removesuffix("]")
    try:
        return _loopback_address(name)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except (OSError, UnicodeError):
        return False
    try:
        return bool(infos) and all(_loopback_address(str(info[4][0])) for info in infos)
    except ValueError:
        return False


def exposure_refusal(
    host: str,
    api_key: str | None,
    *,
    allow_no_key: bool,
    key_hint: str = "api_key=",
    allow_hint: str = "allow_no_key=True",
) -> str | None:
    """Why a server must not listen on ``host``, or ``None`` when it may.

    Args:
        host: The interface to listen on.
        api_key: The key the server requires, if any.
        allow_no_key: The user said explicitly that no key is wanted on this address.
        key_hint: How the caller sets a key (``--api-key`` under the CLI).
        allow_hint: How the caller says no key is wanted (``--allow-no-key`` under the CLI).

    Returns:
        The refusal's message, naming the address and both ways out.
    """
    if api_key or allow_no_key or is_loopback(host):
        return None
    return (
        f"Refusing to listen on {host} without an API key: every machine that can reach this "
        "one could read your files, train models and delete them. Set a key with "
        f"{key_hint}, listen on 127.0.0.1, or pass {allow_hint} if everyone on this network "
        "may use the server."
    )


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning to log before listening on ``host``, or ``None`` on a loopback address.

    Args:
        host: The interface to listen on.
        api_key: The key the server requires, if any (never part of the warning).

    Returns:
        A message saying who can reach the server and what crosses the network.
    """
    if is_loopback(host):
        return None
    fix = "put a TLS proxy or an SSH tunnel in front, or listen on 127.0.0.1."
    if api_key:
        return (
            f"Listening on {host}: every machine that can reach this one can send requests to "
            "this server (each needs the API key). This is plain HTTP: the key, your files and "
            f"the answers cross the network unencrypted; {fix}"
        )
    return (
        f"Listening on {host} WITHOUT AN API KEY: every machine that can reach this one can read "
        "your files, train models and delete them. This is plain HTTP: your files and the "
        f"answers cross the network unencrypted; {fix}"
    )
