r"""Files: metadata rows in SQLite, contents as blobs named by id in ``<data_dir>/files``.

A blob's name on disk is its id, never the client's filename, so no filename can reach outside
the blob folder; the filename is still cleaned (``sanitize_filename``) before it is stored and
shown back.

Example:
    >>> import io, tempfile, pathlib
    >>> from finetune_kit.local.store.db import Database
    >>> with tempfile.TemporaryDirectory() as d:
    ...     store = FileStore(Database(pathlib.Path(d) / "db"), pathlib.Path(d))
    ...     rec = store.save_stream(io.BytesIO(b'{"a": 1}\n'), filename="../x.jsonl",
    ...                             purpose="fine-tune")
    ...     print(rec.filename, rec.bytes, store.read_bytes(rec.id))
    x.jsonl 9 b'{"a": 1}\n'
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..api_errors import PayloadTooLargeError
from .db import Database
from .ids import new_id

__all__ = ["FileRecord", "FileStore", "sanitize_filename"]

_CHUNK = 1024 * 1024
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")
_MAX_NAME = 255  # characters: shown back, never a path on disk (blobs are named by id)
_MAX_EXTENSION = 32  # a longer "extension" is part of the name, cut like the rest


def sanitize_filename(name: str | None, *, default: str = "upload") -> str:
    r"""Clean a client-supplied filename so it is safe to store and show.

    Keeps only the last path component (either separator), drops control characters and
    characters that are special on common filesystems, refuses ``.`` and ``..``, and cuts the
    result to 255 characters, from the end of the stem so the extension stays (a fine-tune
    file must still be a ``.jsonl``).

    Args:
        name: The filename the client sent.
        default: What to use when nothing is left.

    Returns:
        A plain filename.

    Example:
        >>> sanitize_filename("../../etc/passwd")
        'passwd'
        >>> sanitize_filename("C:\\data\\train.jsonl")
        'train.jsonl'
        >>> sanitize_filename("..")
        'upload'
        >>> name = sanitize_filename("x" * 300 + ".jsonl")
        >>> len(name), name[-8:]
        (255, 'xx.jsonl')
    """
    if not name:
        return default
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE.sub("_", name).strip()
    if name in {"", ".", ".."}:
        return default
    if len(name) <= _MAX_NAME:
        return name
    stem, dot, extension = name.rpartition(".")
    if stem and dot and len(extension) <= _MAX_EXTENSION:
        return stem[: _MAX_NAME - len(extension) - 1] + "." + extension
    return name[:_MAX_NAME]


@dataclass(frozen=True)
class FileRecord:
    """One stored file.

    Attributes:
        id: ``file-…``.
        created_at: Unix seconds.
        filename: The cleaned filename.
        purpose: ``fine-tune``, ``fine-tune-results``, ``batch``...
        bytes: Size in bytes.
        sha256: Hex digest of the contents.
        expires_at: Unix seconds after which the file is gone, or ``None``.
    """

    id: str
    created_at: int
    filename: str
    purpose: str
    bytes: int
    sha256: str
    expires_at: int | None

    def to_api(self) -> dict[str, Any]:
        """Return OpenAI's ``FileObject`` JSON."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": self.expires_at,
        }


def _record(row: sqlite3.Row) -> FileRecord:
    return FileRecord(
        id=row["id"],
        created_at=row["created_at"],
        filename=row["filename"],
        purpose=row["purpose"],
        bytes=row["bytes"],
        sha256=row["sha256"],
        expires_at=row["expires_at"],
    )


class FileStore:
    r"""Stores files: a row per file and a blob per file.

    Args:
        db: The database.
        data_dir: The server's data folder; blobs go in ``data_dir/files``.

    Example:
        >>> import io, tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as d:
        ...     store = FileStore(Database(pathlib.Path(d) / "db"), pathlib.Path(d))
        ...     rec = store.save_bytes(b"step\n", filename="r.csv", purpose="fine-tune-results")
        ...     store.delete(rec.id), store.get(rec.id)
        (True, None)
    """

    def __init__(self, db: Database, data_dir: Path) -> None:
        self._db = db
        self.blob_dir = data_dir / "files"
        self.tmp_dir = data_dir / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path(self, file_id: str) -> Path:
        """Return the blob of a file (whether or not it exists)."""
        if not re.fullmatch(r"file-[A-Za-z0-9]+", file_id):
            # Ids come from URLs: anything else can never name a blob.
            return self.blob_dir / "invalid-id"
        return self.blob_dir / file_id

    def new_temp_path(self) -> Path:
        """Return a fresh path in the temporary folder (on the blob folder's filesystem)."""
        return self.tmp_dir / f"tmp-{new_id('part')}"

    def save_stream(
        self,
        source: IO[bytes],
        *,
        filename: str | None,
        purpose: str,
        expires_at: int | None = None,
        max_bytes: int | None = None,
    ) -> FileRecord:
        """Copy a stream into a new file.

        Args:
            source: A binary stream, read in 1 MB chunks.
            filename: The client's filename (cleaned here).
            purpose: The file's purpose.
            expires_at: When the file expires, in Unix seconds.
            max_bytes: Refuse (413) a stream longer than this.

        Returns:
            The new file's record.

        Raises:
            PayloadTooLargeError: The stream is longer than ``max_bytes``.
        """
        tmp = self.new_temp_path()
        digest = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as out:
                while chunk := source.read(_CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise PayloadTooLargeError(max_bytes, "File")
                    digest.update(chunk)
                    out.write(chunk)
            return self.adopt(
                tmp,
                size=size,
                sha256=digest.hexdigest(),
                filename=filename,
                purpose=purpose,
                expires_at=expires_at,
            )
        finally:
            tmp.unlink(missing_ok=True)

    def save_bytes(
        self, data: bytes, *, filename: str, purpose: str, expires_at: int | None = None
    ) -> FileRecord:
        """Store bytes as a new file (used for result files)."""
        tmp = self.new_temp_path()
        try:
            tmp.write_bytes(data)
            return self.adopt(
                tmp,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                filename=filename,
                purpose=purpose,
                expires_at=expires_at,
            )
        finally:
            tmp.unlink(missing_ok=True)

    def adopt(
        self,
        tmp: Path,
        *,
        size: int,
        sha256: str,
        filename: str | None,
        purpose: str,
        expires_at: int | None = None,
    ) -> FileRecord:
        """Move a finished temporary file into the blob folder and record it.

        Args:
            tmp: A file in ``tmp_dir``; it is moved, not copied.
            size: Its size in bytes.
            sha256: Its hex digest.
            filename: The client's filename (cleaned here).
            purpose: The file's purpose.
            expires_at: When the file expires, in Unix seconds.

        Returns:
            The new file's record.
        """
        record = FileRecord(
            id=new_id("file"),
            created_at=int(time.time()),
            filename=sanitize_filename(filename),
            purpose=purpose,
            bytes=size,
            sha256=sha256,
            expires_at=expires_at,
        )
        os.replace(tmp, self.path(record.id))
        self._db.execute(
            "INSERT INTO files (id, created_at, filename, purpose, bytes, sha256, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.created_at,
                record.filename,
                record.purpose,
                record.bytes,
                record.sha256,
                record.expires_at,
            ),
        )
        return record

    def get(self, file_id: str) -> FileRecord | None:
        """Return a file's record, or ``None`` when it does not exist or has expired."""
        row = self._db.query_one("SELECT * FROM files WHERE id = ?", (file_id,))
        if row is None:
            return None
        record = _record(row)
        if record.expires_at is not None and record.expires_at <= time.time():
            self.delete(file_id)
            return None
        return record

    def read_bytes(self, file_id: str) -> bytes:
        """Return a file's contents (the caller checked it exists)."""
        return self.path(file_id).read_bytes()

    def list(
        self,
        *,
        purpose: str | None = None,
        limit: int = 10_000,
        order: str = "desc",
        after: str | None = None,
    ) -> tuple[list[FileRecord], bool]:
        """Return one page of files and whether more follow.

        Args:
            purpose: Only files with this purpose.
            limit: Page size.
            order: ``desc`` (newest first) or ``asc``.
            after: The id that ended the previous page.

        Returns:
            ``(records, has_more)``.
        """
        self._drop_expired()
        where = ["1 = 1"]
        params: list[Any] = []
        if purpose is not None:
            where.append("purpose = ?")
            params.append(purpose)
        if after is not None:
            anchor = self._db.query_one("SELECT seq FROM files WHERE id = ?", (after,))
            if anchor is not None:
                where.append("seq < ?" if order == "desc" else "seq > ?")
                params.append(anchor["seq"])
        direction = "DESC" if order == "desc" else "ASC"
        rows = self._db.query(
            f"SELECT * FROM files WHERE {' AND '.join(where)} ORDER BY seq {direction} LIMIT ?",
            (*params, limit + 1),
        )
        records = [_record(r) for r in rows]
        return records[:limit], len(records) > limit

    def delete(self, file_id: str) -> bool:
        """Delete a file and its blob; return whether it existed."""
        cursor = self._db.execute("DELETE FROM files WHERE id = ?", (file_id,))
        self.path(file_id).unlink(missing_ok=True)
        return cursor.rowcount > 0

    def _drop_expired(self) -> None:
        rows = self._db.query(
            "SELECT id FROM files WHERE expires_at IS NOT NULL AND expires_at <= ?",
            (int(time.time()),),
        )
        for row in rows:
            self.delete(row["id"])
