"""Uploads: a large file sent in parts, assembled on completion into a normal file.

Parts are kept in ``<data_dir>/uploads/<upload_id>/<part_id>`` until the upload is completed,
cancelled or expires (one hour after creation, as on OpenAI).

Example:
    >>> import io, tempfile, pathlib
    >>> from finetune_kit.local.store.db import Database
    >>> from finetune_kit.local.store.files import FileStore
    >>> with tempfile.TemporaryDirectory() as d:
    ...     db, root = Database(pathlib.Path(d) / "db"), pathlib.Path(d)
    ...     uploads = UploadStore(db, root, FileStore(db, root))
    ...     up = uploads.create(filename="t.jsonl", purpose="fine-tune", size=6,
    ...                         mime_type="text/jsonl")
    ...     a = uploads.add_part(up.id, io.BytesIO(b"abc"))
    ...     b = uploads.add_part(up.id, io.BytesIO(b"def"))
    ...     done, file = uploads.complete(up.id, [a.id, b.id])
    ...     print(done.status, uploads.files.read_bytes(file.id))
    completed b'abcdef'
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..api_errors import InvalidRequestError, NotFoundError, PayloadTooLargeError
from .db import Database
from .files import FileRecord, FileStore, sanitize_filename
from .ids import new_id

__all__ = ["UPLOAD_LIFETIME_SECONDS", "PartRecord", "UploadRecord", "UploadStore"]

UPLOAD_LIFETIME_SECONDS = 3600
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class UploadRecord:
    """One upload.

    Attributes:
        id: ``upload_…``.
        created_at: Unix seconds.
        expires_at: Unix seconds; a pending upload past this is ``expired``.
        filename: The cleaned filename of the file to create.
        purpose: The purpose of the file to create.
        bytes: The total size declared at creation.
        mime_type: The declared MIME type.
        status: ``pending``, ``completed``, ``cancelled`` or ``expired``.
        file_id: The created file, once completed.
        file_expires_after: Seconds after creation at which the created file expires.
    """

    id: str
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    bytes: int
    mime_type: str
    status: str
    file_id: str | None
    file_expires_after: int | None

    def to_api(self, file: FileRecord | None = None) -> dict[str, Any]:
        """Return OpenAI's ``Upload`` JSON, with the created file when there is one."""
        return {
            "id": self.id,
            "object": "upload",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": self.status,
            "file": file.to_api() if file is not None else None,
        }


@dataclass(frozen=True)
class PartRecord:
    """One part of an upload.

    Attributes:
        id: ``part_…``.
        upload_id: The upload it belongs to.
        created_at: Unix seconds.
        bytes: Size in bytes.
    """

    id: str
    upload_id: str
    created_at: int
    bytes: int

    def to_api(self) -> dict[str, Any]:
        """Return OpenAI's ``UploadPart`` JSON."""
        return {
            "id": self.id,
            "object": "upload.part",
            "created_at": self.created_at,
            "upload_id": self.upload_id,
        }


def _record(row: sqlite3.Row) -> UploadRecord:
    status = row["status"]
    if status == "pending" and row["expires_at"] <= time.time():
        status = "expired"
    return UploadRecord(
        id=row["id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        filename=row["filename"],
        purpose=row["purpose"],
        bytes=row["bytes"],
        mime_type=row["mime_type"],
        status=status,
        file_id=row["file_id"],
        file_expires_after=row["file_expires_after"],
    )


class UploadStore:
    """Stores uploads and their parts, and assembles them into files.

    Args:
        db: The database.
        data_dir: The server's data folder; parts go in ``data_dir/uploads``.
        files: Where completed uploads become files.

    Example:
        >>> import tempfile, pathlib
        >>> from finetune_kit.local.store.files import FileStore
        >>> with tempfile.TemporaryDirectory() as d:
        ...     db, root = Database(pathlib.Path(d) / "db"), pathlib.Path(d)
        ...     store = UploadStore(db, root, FileStore(db, root))
        ...     store.cancel(store.create(filename="a.jsonl", purpose="fine-tune", size=1,
        ...                               mime_type="text/jsonl").id).status
        'cancelled'
    """

    def __init__(self, db: Database, data_dir: Path, files: FileStore) -> None:
        self._db = db
        self.files = files
        self.parts_dir = data_dir / "uploads"
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def create(
        self,
        *,
        filename: str,
        purpose: str,
        size: int,
        mime_type: str,
        file_expires_after: int | None = None,
    ) -> UploadRecord:
        """Open a new upload.

        Args:
            filename: The filename of the file to create.
            purpose: Its purpose.
            size: The total number of bytes that will be sent.
            mime_type: Its MIME type.
            file_expires_after: Seconds after creation at which the created file expires.

        Returns:
            The pending upload.
        """
        self._sweep_expired()
        now = int(time.time())
        record = UploadRecord(
            id=new_id("upload"),
            created_at=now,
            expires_at=now + UPLOAD_LIFETIME_SECONDS,
            filename=sanitize_filename(filename),
            purpose=purpose,
            bytes=size,
            mime_type=mime_type,
            status="pending",
            file_id=None,
            file_expires_after=file_expires_after,
        )
        self._db.execute(
            "INSERT INTO uploads (id, created_at, expires_at, filename, purpose, bytes, "
            "mime_type, status, file_id, file_expires_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.created_at,
                record.expires_at,
                record.filename,
                record.purpose,
                record.bytes,
                record.mime_type,
                record.status,
                None,
                file_expires_after,
            ),
        )
        return record

    def get(self, upload_id: str) -> UploadRecord | None:
        """Return an upload, or ``None``."""
        row = self._db.query_one("SELECT * FROM uploads WHERE id = ?", (upload_id,))
        return _record(row) if row is not None else None

    def _pending(self, upload_id: str, action: str) -> UploadRecord:
        upload = self.get(upload_id)
        if upload is None:
            raise NotFoundError(f"No upload found with id '{upload_id}'.", param="upload_id")
        if upload.status == "expired":
            self._drop_parts(upload_id)
            raise InvalidRequestError(
                f"Upload {upload_id} has expired (uploads expire one hour after creation); "
                "start a new upload.",
                param="upload_id",
                code="upload_expired",
            )
        if upload.status != "pending":
            raise InvalidRequestError(
                f"Cannot {action} upload {upload_id}: its status is {upload.status!r}, and only "
                "a pending upload can be changed.",
                param="upload_id",
                code="invalid_upload_status",
            )
        return upload

    def add_part(
        self, upload_id: str, source: IO[bytes], *, max_bytes: int | None = None
    ) -> PartRecord:
        """Store one part of a pending upload.

        Args:
            upload_id: The upload.
            source: The part's bytes, as a binary stream.
            max_bytes: Refuse (413) a part longer than this.

        Returns:
            The new part.
        """
        upload = self._pending(upload_id, "add a part to")
        folder = self.parts_dir / upload.id
        folder.mkdir(parents=True, exist_ok=True)
        part = PartRecord(id=new_id("part"), upload_id=upload.id, created_at=0, bytes=0)
        target = folder / part.id
        size = 0
        try:
            with open(target, "wb") as out:
                while chunk := source.read(_CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise PayloadTooLargeError(max_bytes, "Upload part")
                    out.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        part = PartRecord(id=part.id, upload_id=upload.id, created_at=int(time.time()), bytes=size)
        self._db.execute(
            "INSERT INTO upload_parts (id, upload_id, created_at, bytes) VALUES (?, ?, ?, ?)",
            (part.id, part.upload_id, part.created_at, part.bytes),
        )
        return part

    def complete(
        self, upload_id: str, part_ids: Sequence[str], md5: str | None = None
    ) -> tuple[UploadRecord, FileRecord]:
        """Assemble the parts, in the given order, into a new file; once, however often called.

        Completion is atomic: calls that overlap, or come after it, never make a second file.
        A later call with the same ``part_ids`` (and an ``md5`` that matches, when given) is a
        retry of the same request and answers the same completed upload and file; a call with
        other parts is refused, naming the upload's status.

        Args:
            upload_id: The upload.
            part_ids: Every part, in the order of the file.
            md5: The expected MD5 hex digest of the whole file, checked when given.

        Returns:
            ``(completed upload, its file)``.

        Raises:
            InvalidRequestError: A part is unknown or repeated, the size differs from the declared
                one, the MD5 does not match, or the upload is no longer pending.
        """
        # One completion of an upload at a time in this server (one server per data folder):
        # the second call waits for the first and then finds the upload completed.
        with self._lock_for(upload_id):
            done = self._already_completed(upload_id, part_ids, md5)
            if done is not None:
                return done
            return self._assemble(self._pending(upload_id, "complete"), part_ids, md5)

    def _lock_for(self, upload_id: str) -> threading.Lock:
        with self._locks_lock:
            lock = self._locks.get(upload_id)
            if lock is None:
                # A few bytes per upload ever completed in this process's life; never pruned,
                # since a lock dropped while a thread waits on it would admit a second caller.
                lock = self._locks[upload_id] = threading.Lock()
            return lock

    def _already_completed(
        self, upload_id: str, part_ids: Sequence[str], md5: str | None
    ) -> tuple[UploadRecord, FileRecord] | None:
        """The earlier completion, when this call repeats it; an error when it differs."""
        row = self._db.query_one(
            "SELECT part_ids, md5 FROM uploads WHERE id = ? AND status = 'completed'",
            (upload_id,),
        )
        if row is None:
            return None
        upload = self.get(upload_id)
        assert upload is not None
        assert upload.file_id is not None
        same_parts = row["part_ids"] is not None and json.loads(row["part_ids"]) == list(part_ids)
        if not same_parts:
            raise InvalidRequestError(
                f"Cannot complete upload {upload_id}: its status is 'completed' (file "
                f"{upload.file_id}) with other part_ids; create a new upload to send another "
                "file.",
                param="part_ids",
                code="invalid_upload_status",
            )
        if md5 is not None and row["md5"] is not None and md5.lower() != row["md5"]:
            raise InvalidRequestError(
                f"The MD5 of upload {upload_id}'s file is {row['md5']}, not {md5}.",
                param="md5",
            )
        file = self.files.get(upload.file_id)
        if file is None:
            raise InvalidRequestError(
                f"Upload {upload_id} was completed as file {upload.file_id}, which has since "
                "been deleted or has expired; create a new upload.",
                param="upload_id",
                code="invalid_upload_status",
            )
        return upload, file

    def _assemble(
        self, upload: UploadRecord, part_ids: Sequence[str], md5: str | None
    ) -> tuple[UploadRecord, FileRecord]:
        if not part_ids:
            raise InvalidRequestError("part_ids must list at least one part.", param="part_ids")
        if len(set(part_ids)) != len(part_ids):
            raise InvalidRequestError("part_ids lists a part more than once.", param="part_ids")
        known = {
            row["id"]: row["bytes"]
            for row in self._db.query(
                "SELECT id, bytes FROM upload_parts WHERE upload_id = ?", (upload.id,)
            )
        }
        for index, part_id in enumerate(part_ids):
            if part_id not in known:
                raise InvalidRequestError(
                    f"part_ids[{index}] = {part_id!r} is not a part of upload {upload.id}.",
                    param="part_ids",
                )
        total = sum(known[p] for p in part_ids)
        if total != upload.bytes:
            raise InvalidRequestError(
                f"The parts hold {total} bytes but the upload was created with bytes="
                f"{upload.bytes}; send the missing parts or create the upload with the right "
                "size.",
                param="bytes",
            )
        tmp = self.files.new_temp_path()
        sha, md5_digest = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        try:
            with open(tmp, "wb") as out:
                for part_id in part_ids:
                    with open(self.parts_dir / upload.id / part_id, "rb") as part:
                        while chunk := part.read(_CHUNK):
                            sha.update(chunk)
                            md5_digest.update(chunk)
                            out.write(chunk)
            if md5 is not None and md5.lower() != md5_digest.hexdigest():
                raise InvalidRequestError(
                    f"The MD5 of the assembled file is {md5_digest.hexdigest()}, not {md5}; "
                    "check the order of part_ids.",
                    param="md5",
                )
            expires_at = (
                int(time.time()) + upload.file_expires_after
                if upload.file_expires_after is not None
                else None
            )
            # The file and the upload's new status are written together, and only while the
            # upload is still pending: a cancel that came in meanwhile wins, and no file stays.
            with self._db.transaction() as conn:
                file = self.files.adopt(
                    tmp,
                    size=total,
                    sha256=sha.hexdigest(),
                    filename=upload.filename,
                    purpose=upload.purpose,
                    expires_at=expires_at,
                )
                moved = conn.execute(
                    "UPDATE uploads SET status = 'completed', file_id = ?, part_ids = ?, md5 = ? "
                    "WHERE id = ? AND status = 'pending'",
                    (file.id, json.dumps(list(part_ids)), md5_digest.hexdigest(), upload.id),
                ).rowcount
                if not moved:
                    self.files.path(file.id).unlink(missing_ok=True)
                    now = self.get(upload.id)
                    raise InvalidRequestError(
                        f"Cannot complete upload {upload.id}: its status became "
                        f"{now.status if now else 'deleted'!r} while its parts were assembled.",
                        param="upload_id",
                        code="invalid_upload_status",
                    )
        finally:
            tmp.unlink(missing_ok=True)
        self._drop_parts(upload.id)
        completed = self.get(upload.id)
        assert completed is not None
        return completed, file

    def cancel(self, upload_id: str) -> UploadRecord:
        """Cancel a pending upload and drop its parts."""
        # Under the completion lock, so a cancel never turns a completed upload into a
        # cancelled one (its file would stay, orphaned from the upload that made it).
        with self._lock_for(upload_id):
            upload = self._pending(upload_id, "cancel")
            self._db.execute(
                "UPDATE uploads SET status = 'cancelled' WHERE id = ? AND status = 'pending'",
                (upload.id,),
            )
            self._drop_parts(upload.id)
        cancelled = self.get(upload.id)
        assert cancelled is not None
        return cancelled

    def _drop_parts(self, upload_id: str) -> None:
        self._db.execute("DELETE FROM upload_parts WHERE upload_id = ?", (upload_id,))
        shutil.rmtree(self.parts_dir / upload_id, ignore_errors=True)

    def _sweep_expired(self) -> None:
        rows = self._db.query(
            "SELECT id FROM uploads WHERE status = 'pending' AND expires_at <= ?",
            (int(time.time()),),
        )
        for row in rows:
            self._drop_parts(row["id"])
            self._db.execute("UPDATE uploads SET status = 'expired' WHERE id = ?", (row["id"],))
