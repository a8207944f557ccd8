"""Finding the ``finetune-kit local serve`` that runs for a data folder, so commands use it.

``finetune-kit local serve`` loads its base model once and keeps it; a command that started the
local backend in its own process would load it again every time (chat, compare, eval: about 10 s
each with SmolLM2). So ``serve`` writes a small record in its data folder, ``server.json``: where
it listens, its process id, the base model OpenAI names map to, and whether it wants a key (never
the key itself). A session on ``"local"`` for that folder (every CLI command, and
``FineTuneSession("local", local_data_dir=...)``) reads the record and uses the running server
instead of starting one, when:

- the record's process holds the folder's lock (``server.lock`` names the same process id), and
- the server answers ``/health`` at the recorded address.

Otherwise the record is stale (a server killed without cleaning up) and the backend is started
in-process as before. Nothing here imports the local backend (torch, transformers): a client
machine without the ``local`` extra can use a running server.

Examples:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> find_served(folder) is None                  # no record: nothing serves this folder
    True
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "RECORD_NAME",
    "ServedBackend",
    "connect_host",
    "default_data_dir",
    "find_served",
    "publish",
    "withdraw",
]

logger = logging.getLogger("finetune_kit.local.server")

RECORD_NAME = "server.json"
"""The record ``serve`` keeps in its data folder while it runs."""

_LOCK_NAME = "server.lock"  # written by local/data_dir_lock.py: the holder's process id
_HEALTH_TIMEOUT = 2.0


def default_data_dir() -> Path:
    """The local backend's data folder when none is given.

    ``$FINETUNE_KIT_LOCAL_DATA_DIR``, else ``~/.local/share/finetune_kit/local`` (or under
    ``$XDG_DATA_HOME``).
    """
    explicit = os.environ.get("FINETUNE_KIT_LOCAL_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return root / "finetune_kit" / "local"


@dataclass(frozen=True)
class ServedBackend:
    """A ``finetune-kit local serve`` running for a data folder.

    Attributes:
        url: Its OpenAI base URL, ending in ``/v1``.
        pid: Its process id.
        default_model: The base model OpenAI names map to there.
        api_key_required: Whether it wants ``Authorization: Bearer <key>`` (the key is never
            recorded: clients read ``$FINETUNE_KIT_LOCAL_API_KEY``).
        data_dir: Its data folder.
    """

    url: str
    pid: int
    default_model: str
    api_key_required: bool
    data_dir: Path


def connect_host(host: str) -> str:
    """The address a client on this machine reaches a server listening on ``host`` by.

    Examples:
        >>> connect_host("0.0.0.0"), connect_host("::"), connect_host("192.168.1.7")
        ('127.0.0.1', '[::1]', '192.168.1.7')
    """
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def publish(
    data_dir: Path, *, host: str, port: int, default_model: str, api_key_required: bool
) -> Path:
    """Write the folder's record (atomically), for clients to find this server.

    Args:
        data_dir: The server's data folder.
        host: The interface it listens on.
        port: Its port.
        default_model: The base model OpenAI names map to.
        api_key_required: Whether it wants a key.

    Returns:
        The record's path.
    """
    record = {
        "url": f"http://{connect_host(host)}:{port}/v1",
        "pid": os.getpid(),
        "default_model": default_model,
        "api_key_required": api_key_required,
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / RECORD_NAME
    fd, tmp = tempfile.mkstemp(prefix=f".{RECORD_NAME}.", dir=data_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(record, out)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def withdraw(data_dir: Path) -> None:
    """Remove the folder's record if this process wrote it (another server's stays)."""
    record = _read_record(data_dir)
    if record is not None and record.get("pid") == os.getpid():
        with contextlib.suppress(OSError):
            (data_dir / RECORD_NAME).unlink()


def find_served(data_dir: Path) -> ServedBackend | None:
    """The server running for ``data_dir``, if one does and answers.

    Args:
        data_dir: The data folder.

    Returns:
        The server, or ``None`` (no record, a stale one, or no answer at its address).
    """
    record = _read_record(data_dir)
    if record is None:
        return None
    try:
        served = ServedBackend(
            url=str(record["url"]),
            pid=int(record["pid"]),
            default_model=str(record["default_model"]),
            api_key_required=bool(record["api_key_required"]),
            data_dir=data_dir,
        )
    except (KeyError, TypeError, ValueError):
        logger.debug("ignoring the malformed server record in %s", data_dir)
        return None
    holder = _lock_holder(data_dir)
    if holder is not None and holder != served.pid:
        # Another process holds the folder (a backend started in-process): the record is
        # left over from a server that stopped without removing it.
        logger.debug("ignoring the stale server record in %s (lock held by %d)", data_dir, holder)
        return None
    if not _answers(served.url):
        logger.debug("the server recorded in %s does not answer at %s", data_dir, served.url)
        return None
    logger.info("using the local backend serving %s at %s", data_dir, served.url)
    return served


def _read_record(data_dir: Path) -> dict[str, Any] | None:
    try:
        raw = (data_dir / RECORD_NAME).read_text(encoding="utf-8")
    except OSError:
        return None
    try:
        loaded = json.loads(raw)
    except ValueError:
        return None
    return loaded if isinstance(loaded, dict) else None


def _lock_holder(data_dir: Path) -> int | None:
    """The process id the folder's lock file names (``None`` when it cannot be read)."""
    try:
        return int((data_dir / _LOCK_NAME).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _answers(url: str) -> bool:
    """Whether a server answers ``/health`` there (any HTTP answer: degraded still serves)."""
    import httpx

    try:
        # trust_env=False: a proxy from the environment must not stand between us and loopback.
        with httpx.Client(trust_env=False, timeout=_HEALTH_TIMEOUT) as http:
            http.get(url.removesuffix("/v1") + "/health")
    except httpx.HTTPError:
        return False
    return True
