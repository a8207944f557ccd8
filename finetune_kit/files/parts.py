"""The pure pieces of uploading: limits, content digests, remote names, part plans, file windows.

Nothing here talks to a network. :class:`FileWindow` lets a byte range of a file (or of bytes in
memory) be sent as a streamed multipart body: the HTTP client reads it in small chunks, so a part
of any size costs a few kilobytes of memory, and a retry simply sends a fresh window.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from openai.types import FilePurpose

from .._urls import public_url
from ..errors import ConfigurationError, UploadError

__all__ = [
    "FILE_PURPOSES",
    "FILE_SIZE_LIMIT",
    "PART_SIZE_LIMIT",
    "UPLOAD_SIZE_LIMIT",
    "ContentDigest",
    "FileWindow",
    "PartSpec",
    "ProgressCounter",
    "SequentialDigest",
    "UploadCache",
    "check_purpose",
    "check_size",
    "default_cache_path",
    "digest_bytes",
    "digest_file",
    "file_identity",
    "plan_parts",
    "remote_filename",
    "sha_tag",
    "token_filename",
]

logger = logging.getLogger("finetune_kit.files")

MB = 1024 * 1024
FILE_SIZE_LIMIT = 512 * MB
"""Largest file ``files.create`` accepts (512 MB)."""
UPLOAD_SIZE_LIMIT = 8 * 1024 * MB
"""Largest file the Uploads API accepts (8 GB)."""
PART_SIZE_LIMIT = 64 * MB
"""Largest part of an Upload (64 MB)."""
FILE_PURPOSES = frozenset({"fine-tune", "vision", "batch", "assistants", "user_data", "evals"})
"""Purposes a file can be uploaded with."""

_CHUNK = 1024 * 1024
_HAS_PREAD = hasattr(os, "pread")


@dataclass(frozen=True)
class ContentDigest:
    """Size and digests of a content.

    Attributes:
        size: Bytes.
        sha256: Hex sha256 (the content's key).
        md5: Hex md5, when asked for (the Uploads API checks it on completion).
    """

    size: int
    sha256: str
    md5: str | None = None


def digest_file(path: Path, *, md5: bool = False, chunk_size: int = _CHUNK) -> ContentDigest:
    """Hash a file in one streaming pass (memory stays at one chunk).

    Args:
        path: The file.
        md5: Also compute md5.
        chunk_size: Bytes read at a time.

    Returns:
        Its size and digests.
    """
    sha = hashlib.sha256()
    md = hashlib.md5(usedforsecurity=False) if md5 else None
    size = 0
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            n = handle.readinto(buffer)
            if not n:
                break
            chunk = view[:n]
            sha.update(chunk)
            if md is not None:
                md.update(chunk)
            size += n
    return ContentDigest(size, sha.hexdigest(), md.hexdigest() if md is not None else None)


def digest_bytes(data: bytes, *, md5: bool = False) -> ContentDigest:
    """Hash bytes in memory.

    Args:
        data: The content.
        md5: Also compute md5.

    Returns:
        Its size and digests.

    Examples:
        >>> digest_bytes(b"abc").sha256[:12]
        'ba7816bf8f01'
    """
    md = hashlib.md5(data, usedforsecurity=False).hexdigest() if md5 else None
    return ContentDigest(len(data), hashlib.sha256(data).hexdigest(), md)


def sha_tag(sha256: str) -> str:
    """The short content tag put into remote filenames: the first 12 hex digits of the sha256.

    Args:
        sha256: Hex sha256.

    Returns:
        12 hex digits.
    """
    return sha256[:12]


def _stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "data"
    return stem[:100]


def remote_filename(name: str, sha256: str, *, extension: str = ".jsonl") -> str:
    """The remote filename carrying the content's tag: ``<name>.<sha12><extension>``.

    The tag lets a later run find the file again by content, even without a local cache.

    Args:
        name: A base name (a file stem, a dataset name); unsafe characters become ``-``.
        sha256: Hex sha256 of the content.
        extension: The extension, with its dot.

    Returns:
        The filename.

    Examples:
        >>> remote_filename("my data!", "ab" * 32)
        'my-data.abababababab.jsonl'
    """
    tag = sha_tag(sha256)
    stem = _stem(name)
    if stem.endswith(f".{tag}"):
        stem = stem[: -len(tag) - 1]
    return f"{stem}.{tag}{extension}"


def token_filename(name: str, *, extension: str = ".jsonl") -> str:
    """A remote filename for a content whose digest is computed while it is sent.

    ``<name>.u<11 random hex><extension>``: unique, so after an ambiguous failure the upload can
    be found by its exact name; the ``u`` keeps it from ever looking like a content tag.

    Args:
        name: A base name.
        extension: The extension, with its dot.

    Returns:
        The filename.
    """
    return f"{_stem(name)}.u{secrets.token_hex(6)[:11]}{extension}"


def check_purpose(purpose: str) -> FilePurpose:
    """Check a file purpose.

    Args:
        purpose: Such as ``fine-tune``.

    Returns:
        The purpose.

    Raises:
        ConfigurationError: Not a purpose files can be uploaded with (``param="purpose"``).
    """
    if purpose not in FILE_PURPOSES:
        hint = (
            " (training data uses 'fine-tune')" if purpose.replace("_", "-") == "fine-tune" else ""
        )
        raise ConfigurationError(
            f"purpose {purpose!r} is not one of {sorted(FILE_PURPOSES)}{hint}", param="purpose"
        )
    return cast("FilePurpose", purpose)


def check_size(size: int, *, multipart: bool, name: str) -> None:
    """Refuse contents the API would refuse for their size, saying what to do instead.

    Args:
        size: Bytes.
        multipart: Whether the Uploads API will be used.
        name: The file's name, for the message.

    Raises:
        UploadError: Empty, over 8 GB, or over 512 MB without the Uploads API.
    """
    if size == 0:
        raise UploadError(f"{name} is empty; there is nothing to upload")
    if size > UPLOAD_SIZE_LIMIT:
        raise UploadError(
            f"{name} is {size / MB:,.0f} MB; the Uploads API accepts at most 8 GB: split the data"
        )
    if not multipart and size > FILE_SIZE_LIMIT:
        raise UploadError(
            f"{name} is {size / MB:,.0f} MB; files.create accepts at most 512 MB: upload it in "
            "parts (leave multipart_threshold at or below 512 MB)"
        )


@dataclass(frozen=True)
class PartSpec:
    """One part of a multipart upload.

    Attributes:
        index: 0-based position (parts are completed in this order).
        offset: First byte.
        length: Bytes.
    """

    index: int
    offset: int
    length: int


def plan_parts(size: int, part_size: int) -> list[PartSpec]:
    """Cut a content into parts of ``part_size`` bytes (the last one shorter).

    Args:
        size: The content's size.
        part_size: Bytes per part, at most 64 MB.

    Returns:
        The parts, in order; they cover every byte exactly once.

    Raises:
        ConfigurationError: ``part_size`` is not in 1 byte .. 64 MB.

    Examples:
        >>> [(p.offset, p.length) for p in plan_parts(10, 4)]
        [(0, 4), (4, 4), (8, 2)]
    """
    if not 0 < part_size <= PART_SIZE_LIMIT:
        raise ConfigurationError(
            f"part_size must be between 1 byte and 64 MB, got {part_size}", param="part_size"
        )
    return [
        PartSpec(index, offset, min(part_size, size - offset))
        for index, offset in enumerate(range(0, size, part_size))
    ]


class ProgressCounter:
    """Counts bytes sent for a progress bar, once each, however often a part is re-sent.

    Each part (``key``) has a high-water mark: re-reading bytes already counted (a retry) adds
    nothing. Thread-safe.

    Args:
        update: Called with the number of new bytes (``tqdm.update``).

    Examples:
        >>> counter = ProgressCounter(None)
        >>> counter.reached(0, 100); counter.reached(0, 40); counter.reached(1, 10)
        >>> counter.total
        110
    """

    def __init__(self, update: Callable[[int], Any] | None) -> None:
        self._update = update
        self._lock = threading.Lock()
        self._high_water: dict[int, int] = {}
        self.total = 0

    def reached(self, key: int, position: int) -> None:
        """Record that part ``key`` has been read up to ``position``.

        Args:
            key: The part.
            position: Bytes of the part read so far in this attempt.
        """
        with self._lock:
            new = position - self._high_water.get(key, 0)
            if new <= 0:
                return
            self._high_water[key] = position
            self.total += new
        if self._update is not None:
            self._update(new)


class SequentialDigest:
    """The sha256 of a content, taken from the bytes as they are read to be sent.

    Reads must come in order from the start (as an HTTP client streams a body); a re-read of
    bytes already hashed (a retry starting over) is skipped. A read that leaves a gap makes the
    digest unusable, and the caller hashes the file instead.

    Args:
        size: The content's size.

    Examples:
        >>> digest = SequentialDigest(6)
        >>> digest.feed(0, b"abc"); digest.feed(0, b"abcd"); digest.feed(4, b"ef")
        >>> digest.result().sha256 == hashlib.sha256(b"abcdef").hexdigest()
        True
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._sha = hashlib.sha256()
        self._done = 0
        self._broken = False
        self._lock = threading.Lock()

    def feed(self, position: int, data: bytes) -> None:
        """Take the bytes read at ``position``.

        Args:
            position: Offset of ``data`` in the content.
            data: The bytes read.
        """
        with self._lock:
            if self._broken:
                return
            if position > self._done:
                self._broken = True
                return
            fresh = data[self._done - position :] if position < self._done else data
            if fresh:
                self._sha.update(fresh)
                self._done += len(fresh)

    def result(self) -> ContentDigest | None:
        """The digest, once every byte was read in order; else ``None``.

        Returns:
            The content's size and sha256, or ``None``.
        """
        with self._lock:
            if self._broken or self._done != self.size:
                return None
            return ContentDigest(self.size, self._sha.hexdigest())


class FileWindow(io.RawIOBase):
    """A read-only, seekable view of ``length`` bytes at ``offset`` of a file or of bytes.

    It has no ``fileno()``, so HTTP clients size it by seeking, and read it in small chunks:
    sending a 64 MB part holds a few kilobytes in memory. Bytes are counted by ``progress`` the
    first time they are read (a retry of the same part re-reads without counting twice).

    Args:
        source: A file path, or bytes already in memory.
        offset: First byte of the window.
        length: Bytes in the window.
        progress: Counts the bytes sent.
        progress_key: Which part this window is, for ``progress``.
        digest: Hashes the bytes as they are read (a window starting at offset 0).
        name: The ``name`` attribute HTTP clients may read.

    Examples:
        >>> window = FileWindow(b"0123456789", offset=2, length=5)
        >>> window.read(), window.seek(0), window.read(2)
        (b'23456', 0, b'23')
    """

    def __init__(
        self,
        source: Path | bytes,
        *,
        offset: int,
        length: int,
        progress: ProgressCounter | None = None,
        progress_key: int = 0,
        digest: SequentialDigest | None = None,
        name: str = "upload",
    ) -> None:
        super().__init__()
        self._data = memoryview(source) if isinstance(source, bytes) else None
        # Unbuffered: every read is one positioned system call of the size asked.
        self._handle = open(source, "rb", buffering=0) if not isinstance(source, bytes) else None  # noqa: SIM115 (closed in close())
        self._offset = offset
        self._length = length
        self._position = 0
        self._progress = progress
        self._progress_key = progress_key
        self._digest = digest
        self.name = name

    def readable(self) -> bool:
        """Always: a window is read from."""
        return True

    def seekable(self) -> bool:
        """Always: a retry rewinds the window."""
        return True

    def tell(self) -> int:
        """The position in the window (not in the file)."""
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move within the window, clamped to its bounds; return the new position."""
        if whence == os.SEEK_SET:
            target = offset
        elif whence == os.SEEK_CUR:
            target = self._position + offset
        elif whence == os.SEEK_END:
            target = self._length + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        self._position = max(0, min(target, self._length))
        return self._position

    def _fetch(self, n: int) -> bytes:
        start = self._offset + self._position
        if self._data is not None:
            return bytes(self._data[start : start + n])
        assert self._handle is not None
        if _HAS_PREAD:
            # One system call, no seek: several windows of one file may be read at once.
            return os.pread(self._handle.fileno(), n, start)
        self._handle.seek(start)
        return self._handle.read(n)

    def _advance(self, n: int) -> None:
        self._position += n
        if self._progress is not None:
            self._progress.reached(self._progress_key, self._position)

    def _take(self, n: int) -> bytes:
        data = self._fetch(n)
        if self._digest is not None:
            self._digest.feed(self._offset + self._position, data)
        self._advance(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer`` up to the window's end; return how many bytes were read."""
        view = memoryview(buffer).cast("B")
        data = self._take(min(len(view), self._length - self._position))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        """Read ``size`` bytes (all that is left when negative), never past the window."""
        remaining = self._length - self._position
        return self._take(remaining if size is None or size < 0 else min(size, remaining))

    def readall(self) -> bytes:
        """Read what is left of the window."""
        return self.read(-1)

    def __len__(self) -> int:
        return self._length

    def as_io(self) -> IO[bytes]:
        """This window, typed as the binary file the ``openai`` client accepts.

        Returns:
            ``self``.
        """
        return cast("IO[bytes]", self)

    def close(self) -> None:
        """Close the file behind the window, if any."""
        if self._handle is not None:
            self._handle.close()
        super().close()


def default_cache_path() -> Path:
    """Where uploads are remembered between runs when no cache is given.

    ``$FINETUNE_KIT_CACHE_DIR/uploads.json``, else ``$XDG_CACHE_HOME/finetune_kit/uploads.json``,
    else ``~/.cache/finetune_kit/uploads.json``. It holds file ids and content digests, never a
    secret.

    Returns:
        The path (it may not exist yet).
    """
    folder = os.environ.get("FINETUNE_KIT_CACHE_DIR")
    if folder:
        return Path(folder) / "uploads.json"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "finetune_kit" / "uploads.json"


def file_identity(path: Path) -> tuple[str, float]:
    """A key naming one version of a file (path, size, mtime, inode), and its mtime.

    Args:
        path: The file.

    Returns:
        The key, and the file's modification time (unix seconds).
    """
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_dev}|{stat.st_ino}"
    return key, stat.st_mtime


class UploadCache:
    """Remembers which remote file holds which content, and the digests of local files.

    Two maps, kept in memory and, when ``path`` is given, in a JSON file (written atomically):

    - content (backend, purpose, sha256) -> file id. Only a hint: the uploader checks with
      ``files.retrieve`` that the file still exists before reusing it.
    - file version (path, size, mtime, inode) -> sha256, so an unchanged file is not hashed again
      (as git's index does). An entry is trusted only when the file was last modified well
      before the digest was taken, so a file rewritten within the same clock tick is re-hashed.

    Args:
        path: Where to keep the cache between runs, if anywhere.

    Examples:
        >>> cache = UploadCache()
        >>> cache.put(UploadCache.key("http://h/v1", "fine-tune", "ab" * 32), "file-1")
        >>> cache.get(UploadCache.key("http://h/v1", "fine-tune", "ab" * 32))
        'file-1'
    """

    _RACY_SECONDS = 2.0

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else None
        self._lock = threading.Lock()
        self._entries: dict[str, str] = {}
        self._digests: dict[str, tuple[str, float]] = {}
        if self.path is not None and self.path.exists():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                logger.warning("ignoring the unreadable upload cache %s", self.path)
            else:
                self._load(loaded)

    def __repr__(self) -> str:
        return f"UploadCache({str(self.path) if self.path else None!r})"

    def _load(self, loaded: Any) -> None:
        if not isinstance(loaded, dict):
            return
        files = loaded.get("files", {})
        digests = loaded.get("digests", {})
        scrubbed = False
        if isinstance(files, dict):
            self._entries = {self._public_key(str(k)): str(v) for k, v in files.items()}
            scrubbed = set(self._entries) != {str(k) for k in files}
        if isinstance(digests, dict):
            for key, value in digests.items():
                if isinstance(value, list) and len(value) == 2:
                    self._digests[str(key)] = (str(value[0]), float(value[1]))
        if scrubbed:
            # A file written by an older version held a base URL's credentials or query.
            self._save()

    @staticmethod
    def key(base_url: str, purpose: str, sha256: str) -> str:
        """The cache key of a content.

        Args:
            base_url: The backend's base URL; its credentials and query are left out, since the
                key is written to disk.
            purpose: The file purpose.
            sha256: The content's sha256.

        Returns:
            The key.

        Examples:
            >>> UploadCache.key("https://user:pw@proxy/v1/?token=abc", "fine-tune", "ab")
            'https://proxy/v1|fine-tune|ab'
        """
        return f"{public_url(base_url).rstrip('/')}|{purpose}|{sha256}"

    @classmethod
    def _public_key(cls, key: str) -> str:
        """A key read from a file written before keys were made public, without its secrets."""
        parts = key.rsplit("|", 2)
        return cls.key(*parts) if len(parts) == 3 else key

    def get(self, key: str) -> str | None:
        """The file id remembered for a key.

        Args:
            key: From :meth:`key`.

        Returns:
            The file id, or ``None``.
        """
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, file_id: str) -> None:
        """Remember a file id.

        Args:
            key: From :meth:`key`.
            file_id: The remote file.
        """
        with self._lock:
            if self._entries.get(key) == file_id:
                return
            self._entries[key] = file_id
            self._save()

    def forget(self, key: str) -> None:
        """Drop an entry whose file no longer exists.

        Args:
            key: From :meth:`key`.
        """
        with self._lock:
            if self._entries.pop(key, None) is not None:
                self._save()

    def digest_of(self, path: Path) -> str | None:
        """The sha256 remembered for this version of a local file, if it can be trusted.

        Args:
            path: The file.

        Returns:
            Its sha256, or ``None`` when unknown (or possibly stale).
        """
        identity, _mtime = file_identity(path)
        with self._lock:
            entry = self._digests.get(identity)
        return entry[0] if entry is not None else None

    def remember_digest(self, path: Path, sha256: str, *, hashed_at: float) -> None:
        """Remember a local file's sha256, unless the file may have changed while it was hashed.

        Args:
            path: The file.
            sha256: Its sha256.
            hashed_at: Unix time the hashing started.
        """
        identity, mtime = file_identity(path)
        if mtime > hashed_at - self._RACY_SECONDS:
            return  # modified too recently: a same-size rewrite in this tick would go unseen
        with self._lock:
            if self._digests.get(identity, ("", 0.0))[0] == sha256:
                return
            self._digests[identity] = (sha256, hashed_at)
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".uploads-", suffix=".json")
        except OSError as exc:
            logger.warning("cannot write the upload cache %s: %s", self.path, exc)
            return
        payload = {
            "version": 1,
            "files": self._entries,
            "digests": {k: list(v) for k, v in self._digests.items()},
        }
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, indent=0, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
