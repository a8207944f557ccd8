"""The view of an uploaded file: what the uploader found or created on the backend.

Views of server objects are lenient (unknown fields are kept, never an error); the backend's own
``FileObject`` is kept on :attr:`UploadedFile.file` for whatever the view does not carry.

Examples:
    >>> uploaded = UploadedFile(id="file-abc", filename="train.3f2a9c01b7de.jsonl", bytes=2048,
    ...                         purpose="fine-tune", sha256="3f2a9c01b7de" + "0" * 52)
    >>> str(uploaded), uploaded.reused
    ('file-abc', False)
"""

from __future__ import annotations

from pathlib import Path

from openai.types import FileObject
from pydantic import BaseModel, ConfigDict

__all__ = ["UploadedFile"]


class UploadedFile(BaseModel):
    """A file on the backend, as the uploader found or created it.

    Attributes:
        id: The file id to pass to ``jobs.create``.
        filename: The remote filename (``<name>.<sha12>.jsonl``).
        bytes: Its size.
        purpose: Its purpose, such as ``fine-tune``.
        sha256: sha256 of the content (hex).
        status: The backend's processing status, when it reports one.
        reused: ``True`` when an existing remote file with the same content was reused.
        path: The local file it came from, when it came from one (used to show a failing line).
        file: The backend's ``FileObject``.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    id: str
    filename: str
    bytes: int
    purpose: str
    sha256: str
    status: str | None = None
    reused: bool = False
    path: Path | None = None
    file: FileObject | None = None

    def __str__(self) -> str:
        return self.id
