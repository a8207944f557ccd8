"""Job events, newest first, each written at most once.

Every event carries a key unique within its job (``started``, ``step-12``, ``checkpoint-40``...).
Writing an event whose key exists does nothing, so a job that is resumed after a restart and
replays a few steps never shows an event twice.

Example:
    >>> import tempfile, pathlib
    >>> from finetune_kit.local.store.db import Database
    >>> with tempfile.TemporaryDirectory() as d:
    ...     events = EventStore(Database(pathlib.Path(d) / "db"))
    ...     events.add("ftjob-a", "started", "Fine-tuning job started")
    ...     events.add("ftjob-a", "started", "Fine-tuning job started")
    ...     [e.message for e in events.list("ftjob-a")[0]]
    True
    False
    ['Fine-tuning job started']
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from .db import Database, json_column
from .ids import new_id

__all__ = ["EventRecord", "EventStore"]


@dataclass(frozen=True)
class EventRecord:
    """One job event.

    Attributes:
        id: ``ftevent-…``.
        job_id: The job.
        created_at: Unix seconds.
        level: ``info``, ``warn`` or ``error``.
        message: The text.
        type: ``message`` or ``metrics``.
        data: Free-form data (step metrics for ``metrics`` events).
    """

    id: str
    job_id: str
    created_at: int
    level: str
    message: str
    type: str
    data: dict[str, Any] | None

    def to_api(self) -> dict[str, Any]:
        """Return OpenAI's ``FineTuningJobEvent`` JSON."""
        return {
            "id": self.id,
            "object": "fine_tuning.job.event",
            "created_at": self.created_at,
            "level": self.level,
            "message": self.message,
            "type": self.type,
            "data": self.data if self.data is not None else {},
        }


def _record(row: sqlite3.Row) -> EventRecord:
    return EventRecord(
        id=row["id"],
        job_id=row["job_id"],
        created_at=row["created_at"],
        level=row["level"],
        message=row["message"],
        type=row["type"],
        data=json_column(row["data"], None, where=f"events.data of {row['id']}"),
    )


class EventStore:
    """Stores job events.

    Args:
        db: The database.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as d:
        ...     events = EventStore(Database(pathlib.Path(d) / "db"))
        ...     _ = events.add("ftjob-a", "a", "first")
        ...     _ = events.add("ftjob-a", "b", "second")
        ...     page, more = events.list("ftjob-a", limit=1)
        ...     page[0].message, more
        ('second', True)
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self,
        job_id: str,
        key: str,
        message: str,
        *,
        level: str = "info",
        type: str = "message",  # OpenAI's field is called "type"
        data: dict[str, Any] | None = None,
    ) -> bool:
        """Write an event unless one with the same key exists for this job.

        Args:
            job_id: The job.
            key: Unique within the job; repeats are ignored.
            message: The text.
            level: ``info``, ``warn`` or ``error``.
            type: ``message`` or ``metrics``.
            data: Free-form data.

        Returns:
            Whether the event was written.
        """
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO events (id, job_id, created_at, level, message, type, data, "
            "dedupe_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new_id("ftevent"),
                job_id,
                int(time.time()),
                level,
                message,
                type,
                json.dumps(data) if data is not None else None,
                key,
            ),
        )
        return cursor.rowcount > 0

    def list(
        self, job_id: str, *, after: str | None = None, limit: int = 20
    ) -> tuple[builtins.list[EventRecord], bool]:
        """Return one page of a job's events, newest first, and whether older ones follow.

        Args:
            job_id: The job.
            after: The id of the event that ended the previous page.
            limit: Page size.

        Returns:
            ``(events, has_more)``.
        """
        where, params = ["job_id = ?"], [job_id]
        if after is not None:
            anchor = self._db.query_one(
                "SELECT seq FROM events WHERE id = ? AND job_id = ?", (after, job_id)
            )
            if anchor is not None:
                where.append("seq < ?")
                params.append(anchor["seq"])
        rows = self._db.query(
            f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
            (*params, limit + 1),
        )
        records = [_record(r) for r in rows]
        return records[:limit], len(records) > limit

    def metrics(self, job_id: str) -> builtins.list[dict[str, Any]]:
        """Return the data of every ``metrics`` event of a job, in step order."""
        rows = self._db.query(
            "SELECT data FROM events WHERE job_id = ? AND type = 'metrics' ORDER BY seq",
            (job_id,),
        )
        points = [json_column(r["data"], None, where=f"a metrics event of {job_id}") for r in rows]
        steps = [p for p in points if isinstance(p, dict)]
        return sorted(steps, key=lambda p: int(p.get("step", 0)))
