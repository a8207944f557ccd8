"""Typed views of a job: its events and status changes, its checkpoints as plain records.

Views of server objects are lenient (unknown fields are kept, never an error), so a new API field
never breaks a client. Jobs, files and checkpoints themselves are returned as the ``openai``
client's own objects (``FineTuningJob``, ``FileObject``...); a :class:`CheckpointRecord` is a
checkpoint as plain data (what a session's state file keeps, and a model to chat with).

Following a job yields :data:`JobUpdate` items: a :class:`JobEvent` for every event (exactly
once, in time order), a :class:`~finetune_kit.jobs.metrics.MetricPoint` right after each ``metrics``
event, and a :class:`StatusChange` whenever the job's status changes.

Examples:
    >>> change = StatusChange(job_id="ftjob-1", status="paused", previous="running")
    >>> change.terminal, change.known
    (False, True)
"""

from __future__ import annotations

from typing import Any, TypeAlias

from openai.types import FileObject
from pydantic import BaseModel, ConfigDict, Field, computed_field

from ..files.views import UploadedFile
from .metrics import MetricPoint

__all__ = [
    "KNOWN_STATUSES",
    "TERMINAL_STATUSES",
    "CheckpointRecord",
    "FileRef",
    "JobEvent",
    "JobUpdate",
    "StatusChange",
    "UploadedFile",
]

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
"""Statuses after which a job never changes again."""

KNOWN_STATUSES = frozenset(
    {"validating_files", "queued", "running", "paused", "pending", *TERMINAL_STATUSES}
)
"""Statuses documented or observed; any other value is reported as unknown, never an error."""


class JobEvent(BaseModel):
    """One event of a job, as the backend sent it (extra fields kept).

    Attributes:
        id: The event id (``ftevent-...``).
        created_at: Unix time.
        level: ``info``, ``warn`` or ``error`` (any string is accepted).
        message: The human-readable text (not a contract: do not parse it).
        type: ``message`` or ``metrics`` (or ``None``).
        data: Free-form data; metrics events carry the step metrics here.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    created_at: int = 0
    level: str = "info"
    message: str = ""
    type: str | None = None
    data: Any = None

    @classmethod
    def of(cls, event: Any) -> JobEvent:
        """A view of an ``openai`` event object or a dict.

        Args:
            event: The event.

        Returns:
            The view.
        """
        if isinstance(event, JobEvent):
            return event
        if isinstance(event, BaseModel):
            return cls.model_validate(event.model_dump())
        return cls.model_validate(event)


class StatusChange(BaseModel):
    """The job's status changed (or was first seen).

    Attributes:
        job_id: The job.
        status: The new status (any string: new statuses are reported, never an error).
        previous: The status seen before, ``None`` on the first observation.
    """

    model_config = ConfigDict(frozen=True)

    job_id: str
    status: str
    previous: str | None = None

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented pattern
    @property
    def terminal(self) -> bool:
        """Whether the job is over (succeeded, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented pattern
    @property
    def known(self) -> bool:
        """Whether the status is one this library knows."""
        return self.status in KNOWN_STATUSES


JobUpdate: TypeAlias = JobEvent | MetricPoint | StatusChange
"""What following a job yields."""


FileRef: TypeAlias = str | UploadedFile | FileObject
"""What names a job's training or validation file: its id, an upload's view, or the file."""


class CheckpointRecord(BaseModel):
    """A checkpoint of a job as plain data: what a session's state file remembers of it.

    Attributes:
        id: The checkpoint's id (``ftckpt-...``).
        model: The checkpoint's model name, to chat with (``fine_tuned_model_checkpoint``).
        step: The training step it was saved at.
        metrics: Its metrics (``train_loss``...), as the job reported them.
    """

    model_config = ConfigDict(extra="allow")

    id: str
    model: str
    step: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
