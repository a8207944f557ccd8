"""An exclusive lock on a data folder, so two servers never run the same jobs twice.

Example:
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     lock = DataDirLock(pathlib.Path(d))
    ...     lock.acquire()
    ...     other = DataDirLock(pathlib.Path(d))
    ...     try:
    ...         other.acquire()
    ...     except LocalBackendError as exc:
    ...         print("refused")
    ...     lock.release()
    refused
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

from ...errors import LocalBackendError

__all__ = ["DataDirLock"]


class DataDirLock:
    """Holds ``<data_dir>/server.lock`` exclusively while a server runs.

    The operating system releases the lock when the process dies, so a crashed server never
    leaves a stale lock behind.

    Args:
        data_dir: The server's data folder.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "server.lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            LocalBackendError: Another server holds it.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115  # held open for the server's lifetime
        try:
            if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
                import msvcrt

                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise LocalBackendError(
                f"Another local backend server is using {self.path.parent}; stop it or start "
                "this one with another data_dir."
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Let the lock go (closing the file releases it)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
