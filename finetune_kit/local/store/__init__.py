"""Storage of the local backend: SQLite (WAL) metadata and a folder of blobs.

Example:
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     store = Store(pathlib.Path(d))
    ...     files = store.files.list()[0]
    ...     store.close()
    >>> files
    []
"""

from __future__ import annotations

from pathlib import Path

from .db import Database
from .events import EventRecord, EventStore
from .files import FileRecord, FileStore, sanitize_filename
from .jobs import ACTIVE_STATUSES, TERMINAL_STATUSES, JobRecord, JobSpec, JobStore
from .models import CheckpointRecord, FineTunedModelRecord, ModelStore
from .uploads import UPLOAD_LIFETIME_SECONDS, PartRecord, UploadRecord, UploadStore

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "UPLOAD_LIFETIME_SECONDS",
    "CheckpointRecord",
    "Database",
    "EventRecord",
    "EventStore",
    "FileRecord",
    "FileStore",
    "FineTunedModelRecord",
    "JobRecord",
    "JobSpec",
    "JobStore",
    "ModelStore",
    "PartRecord",
    "Store",
    "UploadRecord",
    "UploadStore",
    "sanitize_filename",
]


class Store:
    """Every store of one data folder, sharing one database.

    Args:
        data_dir: The folder; created if missing. The database is ``local.sqlite3`` in it.

    Attributes:
        db: The database.
        files: Files and their blobs.
        uploads: Uploads and their parts.
        jobs: Fine-tuning jobs.
        events: Job events.
        models: Fine-tuned models and checkpoints.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as d:
        ...     store = Store(pathlib.Path(d))
        ...     store.jobs.list()[0], store.close()
        ([], None)
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(data_dir / "local.sqlite3")
        self.files = FileStore(self.db, data_dir)
        self.uploads = UploadStore(self.db, data_dir, self.files)
        self.jobs = JobStore(self.db)
        self.events = EventStore(self.db)
        self.models = ModelStore(self.db)

    def job_dir(self, job_id: str) -> Path:
        """Return the folder where a job's adapters and checkpoints go."""
        return self.data_dir / "jobs" / job_id

    def close(self) -> None:
        """Close the database connections."""
        self.db.close()
