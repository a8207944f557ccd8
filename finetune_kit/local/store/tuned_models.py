"""Fine-tuned models and job checkpoints: the names chat can serve and ``/v1/models`` lists.

("Tuned" because the package has other model tables: ``engine/registry.py`` holds base models,
``server/catalog.py`` answers for every name, and ``finetune_kit.data`` has OpenAI's.)

Example:
    >>> import tempfile, pathlib
    >>> from finetune_kit.local.store.db import Database
    >>> with tempfile.TemporaryDirectory() as d:
    ...     models = TunedModelStore(Database(pathlib.Path(d) / "db"))
    ...     _ = models.add_model("ft:m:local::abc", job_id="ftjob-a", base_model="m",
    ...                          adapter_path="/x")
    ...     models.delete_model("ft:m:local::abc"), models.get_model("ft:m:local::abc")
    (True, None)
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .db import Database, json_column
from .ids import new_id

__all__ = ["FineTunedModelRecord", "JobCheckpointRecord", "TunedModelStore"]


@dataclass(frozen=True)
class FineTunedModelRecord:
    """A model a job created.

    Attributes:
        name: ``ft:<base>:local:<suffix>:<token>``.
        created_at: Unix seconds.
        job_id: The job that made it.
        base_model: The base model it adapts.
        adapter_path: The LoRA adapter folder.
    """

    name: str
    created_at: int
    job_id: str
    base_model: str
    adapter_path: str

    def to_api(self) -> dict[str, Any]:
        """Return OpenAI's ``Model`` JSON."""
        return {
            "id": self.name,
            "object": "model",
            "created": self.created_at,
            "owned_by": "user-local",
        }


@dataclass(frozen=True)
class JobCheckpointRecord:
    """A checkpoint saved during a job, as stored (usable as a model).

    The server's record of OpenAI's ``fine_tuning.job.checkpoint``; not the client session's
    ``CheckpointRecord``, which is what a session remembers of one.

    Attributes:
        id: ``ftckpt-…``.
        job_id: The job.
        created_at: Unix seconds.
        step: The training step it was saved at.
        model_name: ``<fine-tuned model name>:ckpt-step-<step>``.
        base_model: The base model it adapts.
        path: The LoRA adapter folder.
        metrics: Metrics at that step.
    """

    id: str
    job_id: str
    created_at: int
    step: int
    model_name: str
    base_model: str
    path: str
    metrics: dict[str, Any]

    def to_api(self) -> dict[str, Any]:
        """Return OpenAI's ``FineTuningJobCheckpoint`` JSON."""
        return {
            "id": self.id,
            "object": "fine_tuning.job.checkpoint",
            "created_at": self.created_at,
            "fine_tuned_model_checkpoint": self.model_name,
            "fine_tuning_job_id": self.job_id,
            "step_number": self.step,
            "metrics": {"step": float(self.step), **self.metrics},
        }

    def to_model_api(self) -> dict[str, Any]:
        """Return OpenAI's ``Model`` JSON for this checkpoint."""
        return {
            "id": self.model_name,
            "object": "model",
            "created": self.created_at,
            "owned_by": "user-local",
        }


def _model(row: sqlite3.Row) -> FineTunedModelRecord:
    return FineTunedModelRecord(
        name=row["name"],
        created_at=row["created_at"],
        job_id=row["job_id"],
        base_model=row["base_model"],
        adapter_path=row["adapter_path"],
    )


def _checkpoint(row: sqlite3.Row) -> JobCheckpointRecord:
    return JobCheckpointRecord(
        id=row["id"],
        job_id=row["job_id"],
        created_at=row["created_at"],
        step=row["step"],
        model_name=row["model_name"],
        base_model=row["base_model"],
        path=row["path"],
        metrics=json_column(row["metrics"], {}, where=f"checkpoints.metrics of {row['id']}"),
    )


class TunedModelStore:
    """Stores fine-tuned models and checkpoints.

    Args:
        db: The database.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as d:
        ...     models = TunedModelStore(Database(pathlib.Path(d) / "db"))
        ...     name = "ft:m:local::x:ckpt-step-3"
        ...     _ = models.add_checkpoint(job_id="ftjob-a", step=3, model_name=name,
        ...                               base_model="m", path=d, metrics={"train_loss": 1.0})
        ...     models.get_checkpoint_by_model(name).step
        3
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def add_model(
        self, name: str, *, job_id: str, base_model: str, adapter_path: str
    ) -> FineTunedModelRecord:
        """Record the model a job created (idempotent for the same name)."""
        self._db.execute(
            "INSERT OR IGNORE INTO models (name, created_at, job_id, base_model, adapter_path) "
            "VALUES (?, ?, ?, ?, ?)",
            (name, int(time.time()), job_id, base_model, adapter_path),
        )
        record = self.get_model(name)
        assert record is not None
        return record

    def get_model(self, name: str) -> FineTunedModelRecord | None:
        """Return a fine-tuned model that was not deleted, or ``None``."""
        row = self._db.query_one("SELECT * FROM models WHERE name = ? AND deleted = 0", (name,))
        return _model(row) if row is not None else None

    def list_models(self) -> list[FineTunedModelRecord]:
        """Return every fine-tuned model not deleted, oldest first."""
        rows = self._db.query("SELECT * FROM models WHERE deleted = 0 ORDER BY created_at, name")
        return [_model(r) for r in rows]

    def delete_model(self, name: str) -> bool:
        """Mark a fine-tuned model deleted; return whether it existed."""
        cursor = self._db.execute(
            "UPDATE models SET deleted = 1 WHERE name = ? AND deleted = 0", (name,)
        )
        return cursor.rowcount > 0

    def add_checkpoint(
        self,
        *,
        job_id: str,
        step: int,
        model_name: str,
        base_model: str,
        path: str,
        metrics: dict[str, Any],
    ) -> JobCheckpointRecord:
        """Record a checkpoint (a repeat of the same job and step replaces the path)."""
        self._db.execute(
            "INSERT INTO checkpoints (id, job_id, created_at, step, model_name, base_model, path, "
            "metrics) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (job_id, step) DO UPDATE SET path = excluded.path, "
            "metrics = excluded.metrics",
            (
                new_id("ftckpt"),
                job_id,
                int(time.time()),
                step,
                model_name,
                base_model,
                path,
                json.dumps(metrics),
            ),
        )
        record = self.get_checkpoint_by_model(model_name)
        assert record is not None
        return record

    def get_checkpoint_by_model(self, model_name: str) -> JobCheckpointRecord | None:
        """Return the checkpoint with this model name, or ``None``."""
        row = self._db.query_one("SELECT * FROM checkpoints WHERE model_name = ?", (model_name,))
        return _checkpoint(row) if row is not None else None

    def list_checkpoints(
        self, job_id: str | None = None, *, after: str | None = None, limit: int | None = None
    ) -> tuple[list[JobCheckpointRecord], bool]:
        """Return checkpoints whose adapter still exists, newest step first.

        Args:
            job_id: Only this job's; ``None`` lists every job's.
            after: The checkpoint id that ended the previous page.
            limit: Page size; ``None`` returns all.

        Returns:
            ``(checkpoints, has_more)``.
        """
        where, params = ["1 = 1"], []
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        rows = self._db.query(
            f"SELECT * FROM checkpoints WHERE {' AND '.join(where)} ORDER BY step DESC, seq DESC",
            params,
        )
        # The engine keeps only the last few checkpoints; a pruned one is gone for good.
        records = [_checkpoint(r) for r in rows if Path(r["path"]).exists()]
        if after is not None:
            ids = [r.id for r in records]
            records = records[ids.index(after) + 1 :] if after in ids else records
        if limit is None:
            return records, False
        return records[:limit], len(records) > limit

    def latest_checkpoint(self, job_id: str) -> JobCheckpointRecord | None:
        """Return the job's checkpoint with the highest step whose adapter still exists."""
        records, _ = self.list_checkpoints(job_id, limit=1)
        return records[0] if records else None
