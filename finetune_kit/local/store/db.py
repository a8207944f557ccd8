"""The SQLite database behind the local backend: WAL mode, one connection per thread.

The server's threads and the worker processes all open the same file. WAL lets readers go on
while one writer commits, and ``busy_timeout`` makes a writer wait for another instead of
failing. Writes that must be atomic use ``transaction()``, which starts with ``BEGIN IMMEDIATE``
so two processes never both decide to take the same queued job.

Example:
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     db = Database(pathlib.Path(d) / "x.sqlite3")
    ...     n = db.query_one("SELECT COUNT(*) AS n FROM files")["n"]
    ...     db.close()
    >>> n
    0
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "Database", "json_column"]

logger = logging.getLogger("finetune_kit.local.store")

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    expires_at INTEGER
);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    mime_type TEXT NOT NULL,
    status TEXT NOT NULL,
    file_id TEXT,
    file_expires_after INTEGER,
    part_ids TEXT,
    md5 TEXT
);
CREATE TABLE IF NOT EXISTS upload_parts (
    id TEXT PRIMARY KEY,
    upload_id TEXT NOT NULL REFERENCES uploads(id),
    created_at INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    requested_model TEXT NOT NULL,
    model TEXT NOT NULL,
    base_model TEXT NOT NULL,
    init_adapter TEXT,
    training_file TEXT NOT NULL,
    validation_file TEXT,
    method TEXT NOT NULL,
    resolved_hyperparameters TEXT,
    suffix TEXT,
    seed INTEGER NOT NULL,
    metadata TEXT,
    integrations TEXT,
    model_token TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    fine_tuned_model TEXT,
    finished_at INTEGER,
    estimated_finish INTEGER,
    trained_tokens INTEGER,
    result_files TEXT NOT NULL DEFAULT '[]',
    held_by TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    resume_from TEXT,
    resume_step INTEGER,
    step INTEGER,
    total_steps INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT,
    dedupe_key TEXT NOT NULL,
    UNIQUE (job_id, dedupe_key)
);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    step INTEGER NOT NULL,
    model_name TEXT NOT NULL UNIQUE,
    base_model TEXT NOT NULL,
    path TEXT NOT NULL,
    metrics TEXT NOT NULL,
    UNIQUE (job_id, step)
);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    base_model TEXT NOT NULL,
    adapter_path TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
"""

# Columns added after a table was first shipped: a database written before them gets them on
# open. Adding a nullable column is invisible to older code (it names the columns it uses), so
# the schema version stays and an older finetune_kit still opens the file.
_ADDED_COLUMNS = (
    ("uploads", "part_ids", "TEXT"),
    ("uploads", "md5", "TEXT"),
)


def json_column(text: str | None, default: Any, *, where: str) -> Any:
    """Decode a JSON column; ``default`` for NULL or for text that is not JSON.

    A damaged row (a bad disk, a hand edit) must not turn every listing that reads it into a
    500: the value is left out, and the log says where.

    Example:
        >>> json_column('{"step": 1}', None, where="events.data")
        {'step': 1}
        >>> json_column('{"step"', {}, where="checkpoints.metrics")
        {}
    """
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        logger.warning("%s holds text that is not JSON; read as %r", where, default)
        return default


class Database:
    """One SQLite file shared by threads and processes.

    Args:
        path: The database file; its folder is created if missing.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as d:
        ...     db = Database(pathlib.Path(d) / "x.sqlite3")
        ...     with db.transaction() as conn:
        ...         _ = conn.execute("DELETE FROM files")
        ...     db.close()
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        self._create_schema()

    def _create_schema(self) -> None:
        conn = self.connection()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            from ...errors import LocalBackendError

            raise LocalBackendError(
                f"The database {self.path} was written by a newer finetune_kit (schema "
                f"{version}, this one knows {SCHEMA_VERSION}); upgrade finetune_kit or use "
                "another data_dir."
            )
        # executescript runs outside our explicit transactions; CREATE ... IF NOT EXISTS makes
        # it safe when two processes open a fresh database at the same time.
        conn.executescript(_SCHEMA)
        for table, column, kind in _ADDED_COLUMNS:
            present = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column in present:
                continue
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:
                # Another process opening the same file added it first.
                if "duplicate column" not in str(exc):
                    raise
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def connection(self) -> sqlite3.Connection:
        """Return this thread's connection, opening it on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                from ...errors import LocalBackendError

                raise LocalBackendError(f"The database {self.path} is closed.")
            # check_same_thread=False only so close() can close every thread's connection;
            # each connection is still used by the thread that opened it.
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run statements atomically; commits on success, rolls back on an exception.

        Yields:
            This thread's connection, inside ``BEGIN IMMEDIATE``.
        """
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one statement in autocommit mode.

        Args:
            sql: The statement.
            params: Its parameters.

        Returns:
            The cursor.
        """
        return self.connection().execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Return every row of a query."""
        return self.connection().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        """Return the first row of a query, or ``None``."""
        row: sqlite3.Row | None = self.connection().execute(sql, params).fetchone()
        return row

    def close(self) -> None:
        """Close every connection opened by any thread."""
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing is best effort
                logger.debug("closing a connection failed", exc_info=True)
        self._local = threading.local()
