"""Fine-tuning jobs: one row each, moved through OpenAI's statuses by conditional updates.

Every status change names the statuses it may start from, so when two parties race (a user
cancels while the worker finishes) exactly one wins and nothing is overwritten. A worker
*holds* a job while training it (``held_by``); a held job is never handed to another worker.

Example:
    >>> import tempfile, pathlib
    >>> from finetune_kit.local.store.db import Database
    >>> with tempfile.TemporaryDirectory() as d:
    ...     jobs = JobStore(Database(pathlib.Path(d) / "db"))
    ...     job = jobs.create(JobSpec(requested_model="gpt-4o-mini", model="tiny-random",
    ...                               base_model="tiny-random", training_file="file-abc",
    ...                               method={"type": "supervised"}))
    ...     jobs.transition(job.id, "queued", expect=("validating_files",))
    ...     jobs.get(job.id).status
    True
    'queued'
"""

from __future__ import annotations

import builtins
import json
import secrets
import sqlite3
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .db import Database
from .ids import display_base_name, fine_tuned_model_name, new_id, new_model_token

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "JobRecord",
    "JobSpec",
    "JobStore",
]

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
"""Statuses a job never leaves."""

ACTIVE_STATUSES = frozenset({"validating_files", "queued", "running", "paused"})
"""Statuses of a job that has not ended."""

_HYPERPARAMETER_ORDER = (
    "batch_size",
    "beta",
    "compute_multiplier",
    "eval_interval",
    "eval_samples",
    "learning_rate_multiplier",
    "n_epochs",
    "reasoning_effort",
)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# What each JSON column must hold; a damaged column reads as empty (``{}`` for the method).
_JSON_SHAPES: dict[str, tuple[type, ...]] = {
    "method": (dict,),
    "resolved_hyperparameters": (dict, type(None)),
    "metadata": (dict, type(None)),
    "integrations": (list, type(None)),
    "error": (dict, type(None)),
    "result_files": (list, type(None)),
}


def _json_columns(row: sqlite3.Row) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Decode a row's JSON columns; a damaged one reads as empty and is named, never raised.

    One unreadable row (a torn write, an edit by hand) must not take down every listing, the
    worker's claim and the validator with it: the job reads, and the worker or validator fails
    that job alone, naming the column.
    """
    values: dict[str, Any] = {}
    damaged: list[str] = []
    for column, kinds in _JSON_SHAPES.items():
        try:
            value = _loads(row[column])
            usable = isinstance(value, kinds)
        except (ValueError, RecursionError):
            usable = False
        if usable and column == "method":
            usable = isinstance(value.get("type"), str)
        if not usable:
            value = {} if column == "method" else None
            damaged.append(column)
        values[column] = value
    return values, tuple(damaged)


@dataclass(frozen=True)
class JobSpec:
    """What a new job is made of (validated by the route before it gets here).

    Attributes:
        requested_model: The model name the client sent.
        model: The model really used, as the job reports it (alias resolved; a fine-tuned
            model's name for continued fine-tuning).
        base_model: The canonical base model the adapter is trained on.
        training_file: The training file's id.
        method: ``{"type": T, T: {"hyperparameters": {...}}}`` with every hyperparameter
            present (``"auto"`` when not given).
        validation_file: The validation file's id.
        suffix: The model-name suffix.
        seed: The training seed; ``None`` draws one.
        metadata: The client's metadata.
        integrations: The client's integrations, kept as sent.
        init_adapter: The adapter to start from (continued fine-tuning of a fine-tuned model).
    """

    requested_model: str
    model: str
    base_model: str
    training_file: str
    method: Mapping[str, Any]
    validation_file: str | None = None
    suffix: str | None = None
    seed: int | None = None
    metadata: Mapping[str, str] | None = None
    integrations: list[dict[str, Any]] | None = field(default=None)
    init_adapter: str | None = None


@dataclass(frozen=True)
class JobRecord:
    """One stored job (see the ``jobs`` table for the meaning of each field)."""

    seq: int
    id: str
    created_at: int
    requested_model: str
    model: str
    base_model: str
    init_adapter: str | None
    training_file: str
    validation_file: str | None
    method: dict[str, Any]
    resolved_hyperparameters: dict[str, Any] | None
    suffix: str | None
    seed: int
    metadata: dict[str, str] | None
    integrations: list[dict[str, Any]] | None
    model_token: str
    status: str
    error: dict[str, Any] | None
    fine_tuned_model: str | None
    finished_at: int | None
    estimated_finish: int | None
    trained_tokens: int | None
    result_files: list[str]
    held_by: str | None
    attempts: int
    crashes: int
    resume_from: str | None
    resume_step: int | None
    step: int | None
    total_steps: int | None
    damaged: tuple[str, ...] = ()
    """JSON columns that could not be read (they read as empty); such a job cannot run."""

    @property
    def method_type(self) -> str:
        """``supervised``, ``dpo`` or ``reinforcement`` (``unknown`` if the method is damaged)."""
        return str(self.method.get("type", "unknown"))

    def damage_message(self, where: str) -> str:
        """Why a damaged job cannot run, naming its unreadable columns and the database."""
        columns = ", ".join(self.damaged)
        return (
            f"The local backend's record of this job is damaged ({columns} in the jobs table of "
            f"{where} cannot be read as JSON), so it cannot run; create a new job."
        )

    @property
    def model_name(self) -> str:
        """The fine-tuned model's name this job creates (set on the job once it succeeds)."""
        return fine_tuned_model_name(
            display_base_name(self.base_model), self.suffix, self.model_token
        )

    def checkpoint_model_name(self, step: int) -> str:
        """The model name of this job's checkpoint at ``step``."""
        return f"{self.model_name}:ckpt-step-{step}"

    def requested_hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters as requested (``"auto"`` where not given)."""
        section = self.method.get(self.method_type) or {}
        return dict(section.get("hyperparameters") or {})

    def effective_hyperparameters(self) -> dict[str, Any]:
        """The requested hyperparameters with ``"auto"`` replaced once training resolved it."""
        merged = self.requested_hyperparameters()
        for key, value in (self.resolved_hyperparameters or {}).items():
            if key in merged:
                merged[key] = value
        return merged

    def to_api(self) -> dict[str, Any]:
        """Return OpenAI's ``FineTuningJob`` JSON."""
        hyper = self.effective_hyperparameters()
        ordered = {k: hyper[k] for k in _HYPERPARAMETER_ORDER if k in hyper}
        section: dict[str, Any] = {"hyperparameters": ordered}
        grader = (self.method.get(self.method_type) or {}).get("grader")
        if grader is not None:  # a reinforcement job's grader, echoed as OpenAI does
            section = {"grader": grader, **section}
        method = {"type": self.method_type, self.method_type: section}
        return {
            "id": self.id,
            "object": "fine_tuning.job",
            "created_at": self.created_at,
            "error": self.error,
            "fine_tuned_model": self.fine_tuned_model,
            "finished_at": self.finished_at,
            "hyperparameters": {
                "batch_size": hyper.get("batch_size"),
                "learning_rate_multiplier": hyper.get("learning_rate_multiplier"),
                "n_epochs": hyper.get("n_epochs"),
            },
            "model": self.model,
            "organization_id": "org-local",
            "result_files": list(self.result_files),
            "seed": self.seed,
            "status": self.status,
            "trained_tokens": self.trained_tokens,
            "training_file": self.training_file,
            "validation_file": self.validation_file,
            "estimated_finish": self.estimated_finish if self.status == "running" else None,
            "integrations": self.integrations,
            "metadata": self.metadata,
            "method": None if "method" in self.damaged else method,
            "user_provided_suffix": self.suffix,
        }


def _record(row: sqlite3.Row) -> JobRecord:
    decoded, damaged = _json_columns(row)
    return JobRecord(
        seq=row["seq"],
        id=row["id"],
        created_at=row["created_at"],
        requested_model=row["requested_model"],
        model=row["model"],
        base_model=row["base_model"],
        init_adapter=row["init_adapter"],
        training_file=row["training_file"],
        validation_file=row["validation_file"],
        method=decoded["method"],
        resolved_hyperparameters=decoded["resolved_hyperparameters"],
        suffix=row["suffix"],
        seed=row["seed"],
        metadata=decoded["metadata"],
        integrations=decoded["integrations"],
        model_token=row["model_token"],
        status=row["status"],
        error=decoded["error"],
        fine_tuned_model=row["fine_tuned_model"],
        finished_at=row["finished_at"],
        estimated_finish=row["estimated_finish"],
        trained_tokens=row["trained_tokens"],
        result_files=decoded["result_files"] or [],
        held_by=row["held_by"],
        attempts=row["attempts"],
        crashes=row["crashes"],
        resume_from=row["resume_from"],
        resume_step=row["resume_step"],
        step=row["step"],
        total_steps=row["total_steps"],
        damaged=damaged,
    )


_JSON_COLUMNS = frozenset(
    {"method", "resolved_hyperparameters", "metadata", "integrations", "error", "result_files"}
)
_UPDATABLE = frozenset(
    {
        "model",
        "resolved_hyperparameters",
        "error",
        "fine_tuned_model",
        "finished_at",
        "estimated_finish",
        "trained_tokens",
        "result_files",
        "resume_from",
        "resume_step",
        "step",
        "total_steps",
    }
)


class JobStore:
    """Stores fine-tuning jobs and moves them between statuses.

    Args:
        db: The database.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as d:
        ...     jobs = JobStore(Database(pathlib.Path(d) / "db"))
        ...     job = jobs.create(JobSpec(requested_model="m", model="m", base_model="m",
        ...                               training_file="file-a", method={"type": "supervised"},
        ...                               metadata={"run": "1"}))
        ...     [j.id == job.id for j in jobs.list(metadata={"run": "1"})[0]]
        [True]
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, spec: JobSpec) -> JobRecord:
        """Store a new job in ``validating_files``.

        Args:
            spec: The validated job request.

        Returns:
            The new job.
        """
        job_id = new_id("ftjob")
        seed = spec.seed if spec.seed is not None else secrets.randbelow(2**31)
        self._db.execute(
            "INSERT INTO jobs (id, created_at, requested_model, model, base_model, init_adapter, "
            "training_file, validation_file, method, suffix, seed, metadata, integrations, "
            "model_token, status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'validating_files')",
            (
                job_id,
                int(time.time()),
                spec.requested_model,
                spec.model,
                spec.base_model,
                spec.init_adapter,
                spec.training_file,
                spec.validation_file,
                _dumps(dict(spec.method)),
                spec.suffix,
                seed,
                _dumps(dict(spec.metadata)) if spec.metadata is not None else None,
                _dumps(spec.integrations),
                new_model_token(),
            ),
        )
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> JobRecord | None:
        """Return a job, or ``None``."""
        row = self._db.query_one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _record(row) if row is not None else None

    def list(
        self,
        *,
        after: str | None = None,
        limit: int = 20,
        metadata: Mapping[str, str] | None = None,
        null_metadata: bool = False,
        statuses: Collection[str] | None = None,
    ) -> tuple[builtins.list[JobRecord], bool]:
        """Return one page of jobs, newest first, and whether more follow.

        Args:
            after: The id that ended the previous page.
            limit: Page size.
            metadata: Only jobs whose metadata holds every one of these pairs.
            null_metadata: Only jobs without metadata.
            statuses: Only jobs in one of these statuses.

        Returns:
            ``(jobs, has_more)``.
        """
        where, params = ["1 = 1"], []
        if after is not None:
            anchor = self._db.query_one("SELECT seq FROM jobs WHERE id = ?", (after,))
            if anchor is not None:
                where.append("seq < ?")
                params.append(anchor["seq"])
        if statuses is not None:
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(statuses)
        if null_metadata:
            where.append("metadata IS NULL")
        rows = self._db.query(
            f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY seq DESC", params
        )
        selected: builtins.list[JobRecord] = []
        for row in rows:
            job = _record(row)
            if metadata and any((job.metadata or {}).get(k) != v for k, v in metadata.items()):
                continue
            selected.append(job)
            if len(selected) > limit:
                break
        return selected[:limit], len(selected) > limit

    def transition(
        self,
        job_id: str,
        status: str,
        *,
        expect: Collection[str],
        **fields: Any,
    ) -> bool:
        """Move a job to ``status`` if it is in one of ``expect``; set other fields too.

        Args:
            job_id: The job.
            status: The new status.
            expect: The statuses the job may be in now.
            **fields: Other columns to set at the same time (see ``update``).

        Returns:
            Whether the job moved.
        """
        sets, params = self._assignments(fields)
        sets.insert(0, "status = ?")
        params.insert(0, status)
        if status in TERMINAL_STATUSES and "finished_at" not in fields:
            sets.append("finished_at = ?")
            params.append(int(time.time()))
        placeholders = ", ".join("?" for _ in expect)
        cursor = self._db.execute(
            f"UPDATE jobs SET {', '.join(sets)} WHERE id = ? AND status IN ({placeholders})",
            (*params, job_id, *expect),
        )
        return cursor.rowcount > 0

    def update(self, job_id: str, **fields: Any) -> None:
        """Set columns of a job without changing its status.

        Args:
            job_id: The job.
            **fields: Columns among ``model``, ``resolved_hyperparameters``, ``error``,
                ``fine_tuned_model``, ``finished_at``, ``estimated_finish``, ``trained_tokens``,
                ``result_files``, ``resume_from``, ``resume_step``, ``step``, ``total_steps``.
        """
        if not fields:
            return
        sets, params = self._assignments(fields)
        self._db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*params, job_id))

    @staticmethod
    def _assignments(fields: Mapping[str, Any]) -> tuple[builtins.list[str], builtins.list[Any]]:
        sets: builtins.list[str] = []
        params: builtins.list[Any] = []
        for name, value in fields.items():
            if name not in _UPDATABLE:
                raise ValueError(f"job column {name!r} cannot be updated")
            sets.append(f"{name} = ?")
            params.append(_dumps(value) if name in _JSON_COLUMNS else value)
        return sets, params

    def claim(self, token: str, *, status: str = "queued") -> JobRecord | None:
        """Take the oldest unheld job in ``status`` for a worker, moving it to ``running``.

        Args:
            token: The worker's identity, stored in ``held_by``.
            status: Which jobs to take.

        Returns:
            The claimed job (now ``running`` and held), or ``None`` when there is none.
        """
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT id FROM jobs WHERE status = ? AND held_by IS NULL ORDER BY seq LIMIT 1",
                (status,),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET status = 'running', held_by = ?, attempts = attempts + 1, "
                "estimated_finish = NULL WHERE id = ?",
                (token, row["id"]),
            )
        return self.get(row["id"])

    def release(self, job_id: str, token: str) -> None:
        """Let go of a held job (it keeps its status)."""
        self._db.execute(
            "UPDATE jobs SET held_by = NULL WHERE id = ? AND held_by = ?", (job_id, token)
        )

    def requeue_held(
        self, token: str | None = None, *, crashed: bool = False
    ) -> builtins.list[str]:
        """Put jobs whose worker is gone back in the queue.

        A ``running`` job goes back to ``queued`` (it resumes from its last checkpoint); a
        paused or cancelled job keeps its status. Every hold is released.

        Args:
            token: Only jobs held by this worker; ``None`` means every job (server start).
            crashed: The worker died unexpectedly: count a crash against its running job.

        Returns:
            The ids of the jobs put back in the queue.
        """
        with self._db.transaction() as conn:
            if token is None:
                rows = conn.execute("SELECT id FROM jobs WHERE status = 'running'").fetchall()
                conn.execute("UPDATE jobs SET status = 'queued' WHERE status = 'running'")
                conn.execute("UPDATE jobs SET held_by = NULL WHERE held_by IS NOT NULL")
            else:
                rows = conn.execute(
                    "SELECT id FROM jobs WHERE status = 'running' AND held_by = ?", (token,)
                ).fetchall()
                conn.execute(
                    "UPDATE jobs SET status = 'queued', crashes = crashes + ? "
                    "WHERE status = 'running' AND held_by = ?",
                    (1 if crashed else 0, token),
                )
                conn.execute("UPDATE jobs SET held_by = NULL WHERE held_by = ?", (token,))
        return [row["id"] for row in rows]

    def unfinished_from_adapter(self, adapter: str) -> builtins.list[str]:
        """Return the ids of the jobs not yet ended that start from this adapter folder."""
        rows = self._db.query(
            "SELECT id FROM jobs WHERE init_adapter = ? AND status NOT IN (?, ?, ?) ORDER BY seq",
            (adapter, *sorted(TERMINAL_STATUSES)),
        )
        return [row["id"] for row in rows]

    def held_by(self, token: str) -> builtins.list[str]:
        """Return the ids of the jobs a worker holds."""
        rows = self._db.query("SELECT id FROM jobs WHERE held_by = ?", (token,))
        return [row["id"] for row in rows]

    def ids_in_status(self, status: str) -> builtins.list[str]:
        """Return the ids of every job in ``status``, oldest first."""
        rows = self._db.query("SELECT id FROM jobs WHERE status = ? ORDER BY seq", (status,))
        return [row["id"] for row in rows]
