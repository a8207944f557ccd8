"""Storage of the local backend: SQLite (WAL) metadata and a folder of blobs.

Owns everything a data folder holds and its one writer: files and their blobs (``files``),
uploads and their parts (``uploads``), jobs and their queue (``jobs``), job events (``events``),
fine-tuned models and job checkpoints (``tuned_models``), the database (``db``), object ids in
OpenAI's forms (``ids``) and the folder's exclusive lock (``lock``). The server and the worker
processes share it through SQLite; nothing else writes there.

May import: ``finetune_kit.errors`` and the local backend's shared leaves (``api_errors``:
a store refuses bad input with the HTTP error the server answers); never the engine, server,
worker or faults. A new table gets a module here (a record dataclass and a ``...Store`` class on
``Database``), its schema in ``db``, and an attribute on ``Store``.

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
from .tuned_models import FineTunedModelRecord, JobCheckpointRecord, TunedModelStore
from .uploads import UPLOAD_LIFETIME_SECONDS, PartRecord, UploadRecord, UploadStore

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "UPLOAD_LIFETIME_SECONDS",
    "Database",
    "EventRecord",
    "EventStore",
    "FileRecord",
    "FileStore",
    "FineTunedModelRecord",
    "JobCheckpointRecord",
    "JobRecord",
    "JobSpec",
    "JobStore",
    "PartRecord",
    "Store",
    "TunedModelStore",
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
        self.models = TunedModelStore(self.db)

    def job_dir(self, job_id: str) -> Path:
        """Return the folder where a job's adapters and checkpoints go."""
        return self.data_dir / "jobs" / job_id

    def close(self) -> None:
        """Close the database connections."""
        self.db.close()
