"""Uploading training data: once per content, checked first, in parallel parts when large.

:class:`FileUploader` (and its async twin :class:`AsyncFileUploader`) uploads a path, bytes or a
``Dataset``:

1. **Preflight first.** Training data (purpose ``fine-tune``) is checked offline by
   :func:`finetune_kit.data.validation.preflight`; a file with errors is refused with
   ``PreflightFailedError`` unless ``force=True``. A validation file (``role="validation"``)
   meets every rule but the training file's minimum of 10 examples.
2. **Once per content.** The content's sha256 is its key. A cache remembers which remote file
   holds which content and the digests of local files (so an unchanged file is never hashed
   twice), and the first 12 hex digits of the sha256 go into the remote filename
   (``train.3f2a9c01b7de.jsonl``) whenever the digest is known before sending, so a later run
   finds the file by listing even without the cache. A file already on the backend is reused: a
   rerun never uploads twice. After an ambiguous failure (the connection dropped while
   uploading) the uploader looks for the file before sending it again.
3. **No extra pass over a new file.** Hashing a file before sending it would cost a full read
   of it; when nothing on the backend can match (no remote file of that size and purpose), the
   file is hashed *while* it is sent instead, under a unique name (``train.u5c0ffee1234.jsonl``),
   and remembered in the cache. The cache names the backend by its base URL, or by
   ``backend_id`` when the URL is not stable (a session on the local backend passes its data
   folder: the in-process server listens on a new port each run).
4. **Large files in parts.** Above ``multipart_threshold`` (512 MB, the Files API's limit) the
   Uploads API is used: parts of up to 64 MB sent in parallel, each retried on its own, the whole
   checked by md5 on completion. Parts are streamed from disk, so memory stays small.
5. **Processed.** Where the backend reports a file status, the uploader waits for ``processed``.

Every request goes through the shared :class:`~finetune_kit._retry.RetryPolicy`. What to do
is decided once, by a step generator shared by both uploaders (``_UploaderBase._upload_steps``);
each twin only carries its actions out, with plain calls or awaited (see ``_steps.py``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import mimetypes
import re
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import openai
from openai.types import FileObject, FilePurpose
from tqdm.auto import tqdm

from .._retry import (
    DEFAULT_RETRY_POLICY,
    RetryPolicy,
    aiter_items,
    iter_items,
    without_client_retries,
)
from .._steps import Sleep, arun_steps, run_steps
from .._urls import public_url
from ..data.issues import FileRole
from ..errors import ConfigurationError, PreflightFailedError, UploadError
from .parts import (
    FILE_SIZE_LIMIT,
    PART_SIZE_LIMIT,
    ContentDigest,
    FileWindow,
    PartSpec,
    ProgressCounter,
    SequentialDigest,
    UploadCache,
    check_purpose,
    check_size,
    default_cache_path,
    digest_bytes,
    digest_file,
    plan_parts,
    remote_filename,
    sha_tag,
    token_filename,
)
from .views import UploadedFile

if TYPE_CHECKING:
    from ..data.dataset import Dataset

__all__ = ["AsyncFileUploader", "FileUploader"]

logger = logging.getLogger("finetune_kit.files")

_DONE_STATUSES = frozenset({"processed"})
_FAILED_STATUSES = frozenset({"error", "deleted", "failed"})
_TAG = re.compile(r"\.([0-9a-f]{12})\.")
_PROCESSING_FIRST_DELAY = 0.5
_PROCESSING_MAX_DELAY = 10.0

CacheSetting = UploadCache | str | Path | bool | None
_ClientT = TypeVar("_ClientT", openai.OpenAI, openai.AsyncOpenAI)


def _check_role(role: str) -> FileRole:
    if role not in ("training", "validation"):
        raise ConfigurationError(
            f"role must be 'training' or 'validation', got {role!r}", param="role"
        )
    return cast("FileRole", role)


@dataclass
class _Plan:
    """What will be sent: the content, where it lives, its name and (when known) its digest."""

    content: Path | bytes
    base_name: str
    extension: str
    size: int
    purpose: FilePurpose
    multipart: bool
    local_path: Path | None
    sha256: str | None = None
    filename: str = ""


def _mime_type(filename: str) -> str:
    if filename.endswith(".jsonl"):
        return "text/jsonl"
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _usable(file: Any) -> bool:
    return getattr(file, "status", None) not in _FAILED_STATUSES


# The actions of an upload's step generator (``_UploaderBase._upload_steps``): the sync and async
# uploaders only carry them out.


@dataclass(frozen=True)
class _Local:
    """Work on this machine (preflight, sizing, hashing): inline, or in a worker thread."""

    work: Callable[[], Any]


@dataclass(frozen=True)
class _Retrieve:
    """``files.retrieve``; the file is sent back."""

    file_id: str


@dataclass(frozen=True)
class _List:
    """Every remote file of a purpose; the list is sent back."""

    purpose: FilePurpose


@dataclass(frozen=True)
class _SendWhole:
    """``files.create`` once (found, not sent again, after an ambiguous failure)."""

    plan: _Plan
    inline: SequentialDigest | None


@dataclass(frozen=True)
class _SendParts:
    """The Uploads API, with sha256 and md5 taken beside the parts; ``(file, digest)`` back."""

    plan: _Plan


_UploadAction = _Local | _Retrieve | _List | _SendWhole | _SendParts | Sleep
_UploadSteps = Generator[_UploadAction, Any, Any]


class _UploaderBase(Generic[_ClientT]):
    """Settings and the pure steps shared by the sync and async uploaders."""

    def __init__(
        self,
        client: _ClientT,
        *,
        policy: RetryPolicy | None = None,
        multipart_threshold: int = FILE_SIZE_LIMIT,
        part_size: int = PART_SIZE_LIMIT,
        max_workers: int = 4,
        progress: bool | None = None,
        cache: CacheSetting = None,
        prehash: bool | None = None,
        wait_for_processing: bool = True,
        processing_timeout: float = 1800.0,
        backend_id: str | None = None,
    ) -> None:
        if multipart_threshold <= 0:
            raise ConfigurationError(
                "multipart_threshold must be positive", param="multipart_threshold"
            )
        if multipart_threshold > FILE_SIZE_LIMIT:
            raise ConfigurationError(
                f"multipart_threshold above {FILE_SIZE_LIMIT} bytes (512 MB) would send files the "
                "Files API refuses; use at most 512 MB",
                param="multipart_threshold",
            )
        plan_parts(1, part_size)  # checks the part size
        if max_workers < 1:
            raise ConfigurationError("max_workers must be at least 1", param="max_workers")
        self._client: _ClientT = without_client_retries(client)
        self.policy = policy if policy is not None else DEFAULT_RETRY_POLICY
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.max_workers = max_workers
        self.progress = progress
        self.cache = self._make_cache(cache)
        self.prehash = prehash
        self.wait_for_processing = wait_for_processing
        self.processing_timeout = processing_timeout
        # Shown in the repr and part of every cache key (saved on disk): never with a secret.
        self._base_url = public_url(str(getattr(self._client, "base_url", "")))
        # What names the backend in the cache. A URL can change while the backend stays the
        # same (the local backend started in-process listens on a new port each run): then a
        # stable name keeps a rerun from uploading the same content again.
        self.backend_id = public_url(backend_id) if backend_id is not None else self._base_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base_url!r}, cache={self.cache!r})"

    @staticmethod
    def _make_cache(cache: CacheSetting) -> UploadCache:
        if isinstance(cache, UploadCache):
            return cache
        if cache is False:
            return UploadCache(None)
        if cache is None or cache is True:
            return UploadCache(default_cache_path())
        return UploadCache(cache)

    # ---------------------------------------------------------------- pure steps

    @staticmethod
    def _content_of(source: Any) -> tuple[Path | bytes, str]:
        """The content to send (a path or bytes) and a base name for it."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            return bytes(source), "data"
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise UploadError(f"{path} is not a file: check the path")
            return path, path.stem
        to_bytes = getattr(source, "to_jsonl_bytes", None)
        if callable(to_bytes):
            data = to_bytes()
            if not isinstance(data, bytes):
                raise ConfigurationError(
                    "the dataset's to_jsonl_bytes() did not return bytes", param="source"
                )
            return data, "dataset"
        raise ConfigurationError(
            f"cannot upload a {type(source).__name__}: pass a path, bytes or a Dataset",
            param="source",
        )

    def _plan(
        self,
        content: Path | bytes,
        base_name: str,
        *,
        purpose: FilePurpose,
        filename: str | None,
    ) -> _Plan:
        """Size the content and take its digest when it is cheap (bytes, or a cached digest)."""
        path = content if isinstance(content, Path) else None
        size = content.stat().st_size if isinstance(content, Path) else len(content)
        multipart = size > self.multipart_threshold
        if purpose == "fine-tune":
            extension = ".jsonl"
        else:
            suffix = Path(filename).suffix if filename else path.suffix if path else ""
            extension = suffix or ".bin"
        check_size(size, multipart=multipart, name=filename or (str(path) if path else "the data"))
        plan = _Plan(
            content=content,
            base_name=Path(filename).stem if filename else base_name,
            extension=extension,
            size=size,
            purpose=purpose,
            multipart=multipart,
            local_path=path,
        )
        if isinstance(content, bytes):
            plan.sha256 = digest_bytes(content).sha256
        elif path is not None:
            plan.sha256 = self.cache.digest_of(path)
        return plan

    def _digest(self, plan: _Plan, *, md5: bool) -> ContentDigest:
        """Hash the content (one streaming pass for a file) and remember a file's digest."""
        if isinstance(plan.content, bytes):
            return digest_bytes(plan.content, md5=md5)
        started = time.time()
        digest = digest_file(plan.content, md5=md5)
        self.cache.remember_digest(plan.content, digest.sha256, hashed_at=started)
        return digest

    def _settle_digest(self, plan: _Plan, inline: SequentialDigest | None, started: float) -> None:
        """Take the digest the upload computed, or hash the content if it could not."""
        if plan.sha256 is not None:
            return
        result = inline.result() if inline is not None else None
        if result is None:
            plan.sha256 = self._digest(plan, md5=False).sha256
            return
        plan.sha256 = result.sha256
        if isinstance(plan.content, Path):
            self.cache.remember_digest(plan.content, result.sha256, hashed_at=started)

    def _needs_prehash(self, plan: _Plan, listing: list[Any]) -> bool:
        """Whether to hash before sending: only when a remote file could hold this content."""
        if self.prehash is not None:
            return self.prehash
        return any(getattr(f, "bytes", None) == plan.size and _usable(f) for f in listing)

    @staticmethod
    def _holds(file: Any, plan: _Plan) -> bool:
        """Whether a remote file holds this content: by its tag (digest known), size, purpose."""
        if plan.sha256 is None:
            return False
        filename = str(getattr(file, "filename", "") or "")
        return (
            f".{sha_tag(plan.sha256)}." in filename
            and getattr(file, "bytes", None) == plan.size
            and getattr(file, "purpose", plan.purpose) == plan.purpose
            and _usable(file)
        )

    @staticmethod
    def _cached_holds(file: Any, plan: _Plan) -> bool:
        """Whether the file the cache names for this content is still usable for it.

        Its name need not carry the tag (the content may have been hashed while sent), but a
        name carrying another content's tag means the cache entry is wrong.
        """
        filename = str(getattr(file, "filename", "") or "")
        tags = set(_TAG.findall(filename))
        return (
            (not tags or (plan.sha256 is not None and sha_tag(plan.sha256) in tags))
            and getattr(file, "bytes", None) == plan.size
            and getattr(file, "purpose", plan.purpose) == plan.purpose
            and _usable(file)
        )

    @classmethod
    def _sent(cls, file: Any, plan: _Plan) -> bool:
        """Whether a remote file is this upload (its exact name and size), or holds the content."""
        if cls._holds(file, plan):
            return True
        return (
            getattr(file, "filename", None) == plan.filename
            and getattr(file, "bytes", None) == plan.size
            and _usable(file)
        )

    @staticmethod
    def _name(plan: _Plan) -> None:
        plan.filename = (
            remote_filename(plan.base_name, plan.sha256, extension=plan.extension)
            if plan.sha256 is not None
            else token_filename(plan.base_name, extension=plan.extension)
        )

    def _cache_key(self, plan: _Plan) -> str | None:
        if plan.sha256 is None:
            return None
        return UploadCache.key(self.backend_id, plan.purpose, plan.sha256)

    def remember(self, file_id: str, sha256: str, *, purpose: str = "fine-tune") -> None:
        """Say that a remote file holds the content with this sha256 (a hint, checked on use).

        A session calls it with the file its state names, so a rerun reuses that file even when
        the cache is gone. Before reusing it, the uploader checks with ``files.retrieve`` that it
        still exists with the content's size and purpose.

        Args:
            file_id: The remote file.
            sha256: The sha256 of its content.
            purpose: Its purpose.
        """
        self.cache.put(UploadCache.key(self.backend_id, check_purpose(purpose), sha256), file_id)

    def _finish(self, file: FileObject, plan: _Plan, *, reused: bool) -> UploadedFile:
        key = self._cache_key(plan)
        if key is not None:
            self.cache.put(key, file.id)
        assert plan.sha256 is not None
        return UploadedFile(
            id=file.id,
            filename=file.filename,
            bytes=file.bytes,
            purpose=str(file.purpose),
            sha256=plan.sha256,
            status=getattr(file, "status", None),
            reused=reused,
            path=plan.local_path,
            file=file,
        )

    @staticmethod
    def _preflight(source: Any, *, force: bool, model: str | None, role: FileRole) -> None:
        """Check training data offline; refuse it when it has errors, unless forced."""
        # Imported on use: preflight pulls in the token tables, which plain uploads don't need.
        from ..data.validation import preflight

        # preflight() checks one file alone as training data; the API's minimum of 10 examples
        # is the training file's, so a validation file gets every other rule (an empty file is
        # still refused by its own rule).
        limits: dict[str, Any] = {"min_examples": 1} if role == "validation" else {}
        report = preflight(source, model=model, **limits)
        if report.ok:
            logger.debug("preflight passed: %d examples", report.n_examples)
            return
        if force:
            logger.warning(
                "uploading despite %d preflight error(s) because force=True", len(report.errors)
            )
            return
        errors = list(report.errors)
        first = next((e for e in errors if e.line is not None), errors[0])
        where = f"line {first.line}: " if first.line is not None else ""
        raise PreflightFailedError(
            f"preflight found {len(errors)} error(s); first: {where}{first.message}. "
            "Fix the data (see the report), or pass force=True to upload anyway.",
            report=report,
        )

    def _bar(self, plan: _Plan) -> Any:
        return tqdm(
            total=plan.size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"upload {plan.filename}",
            disable=None if self.progress is None else not self.progress,
            leave=True,
        )

    @staticmethod
    def _processing_state(file: Any) -> str | None:
        """``None`` when done (or no status is reported), else the status to wait on."""
        status = getattr(file, "status", None)
        if status is None or status in _DONE_STATUSES:
            return None
        if status in _FAILED_STATUSES:
            details = getattr(file, "status_details", None) or "no details given"
            raise UploadError(
                f"the backend could not process file {file.id} (status {status!r}): {details}",
                file_id=file.id,
            )
        return str(status)

    def _processing_timeout_error(self, file: Any, status: str) -> UploadError:
        return UploadError(
            f"file {file.id} was still {status!r} after {self.processing_timeout:g} s; "
            "check it later with client.files.retrieve, or pass wait_for_processing=False",
            file_id=file.id,
        )

    @staticmethod
    def _parts_failed(plan: _Plan) -> str:
        return f"uploading the parts of {plan.filename} failed; the upload was cancelled"

    @staticmethod
    def _upload_params(plan: _Plan) -> dict[str, Any]:
        return {
            "bytes": plan.size,
            "filename": plan.filename,
            "mime_type": _mime_type(plan.filename),
            "purpose": plan.purpose,
        }

    @staticmethod
    def _window(
        plan: _Plan,
        counter: ProgressCounter | None,
        part: PartSpec | None = None,
        digest: SequentialDigest | None = None,
    ) -> FileWindow:
        """The bytes of one part (or of the whole content) as a streamed request body."""
        return FileWindow(
            plan.content,
            offset=part.offset if part is not None else 0,
            length=part.length if part is not None else plan.size,
            progress=counter,
            progress_key=part.index if part is not None else 0,
            digest=digest,
            name=plan.filename,
        )

    @staticmethod
    def _completed(upload: Any) -> FileObject:
        """The file of a completed Upload."""
        if upload.file is None:
            raise UploadError(f"upload {upload.id} ended {upload.status!r} without a file")
        file: FileObject = upload.file
        return file

    # ---------------------------------------------------------------- the decisions

    def _upload_steps(
        self,
        source: Any,
        *,
        purpose: str,
        filename: str | None,
        preflight: bool,
        force: bool,
        model: str | None,
        reuse: bool,
        role: str,
    ) -> _UploadSteps:
        """Everything ``upload()`` decides, as actions for the sync or async driver."""
        checked = check_purpose(purpose)
        checked_role = _check_role(role)
        content, base_name = self._content_of(source)
        if preflight and checked == "fine-tune":
            data = Path(source) if isinstance(source, str) else source
            yield _Local(
                functools.partial(
                    self._preflight, data, force=force, model=model, role=checked_role
                )
            )
        plan: _Plan = yield _Local(
            functools.partial(self._plan, content, base_name, purpose=checked, filename=filename)
        )
        if reuse:
            existing = yield from self._existing_steps(plan)
            if existing is not None:
                logger.info(
                    "reusing %s (%s): same content already uploaded", existing.id, existing.filename
                )
                processed = yield from self._processing_steps(existing)
                return self._finish(processed, plan, reused=True)
        self._name(plan)
        file: FileObject
        if plan.multipart:
            # Parts go out of order: sha256 and md5 are taken beside them, in one pass.
            file, digest = yield _SendParts(plan)
            plan.sha256 = digest.sha256
        else:
            # The bytes are hashed as they are sent: no second pass over the file.
            inline = SequentialDigest(plan.size) if plan.sha256 is None else None
            started = time.time()
            file = yield _SendWhole(plan, inline)
            yield _Local(functools.partial(self._settle_digest, plan, inline, started))
        logger.info("uploaded %s as %s", plan.filename, file.id)
        processed = yield from self._processing_steps(file)
        return self._finish(processed, plan, reused=False)

    def _existing_steps(self, plan: _Plan) -> _UploadSteps:
        """A remote file holding the content: from the cache, else by its tag in a listing."""
        if plan.sha256 is not None:
            found = yield from self._cached_steps(plan)
            if found is not None:
                return found
        listing: list[FileObject] = yield _List(plan.purpose)
        if plan.sha256 is None:
            if not self._needs_prehash(plan, listing):
                return None
            digest: ContentDigest = yield _Local(functools.partial(self._digest, plan, md5=False))
            plan.sha256 = digest.sha256
            found = yield from self._cached_steps(plan)
            if found is not None:
                return found
        return next((f for f in listing if self._holds(f, plan)), None)

    def _cached_steps(self, plan: _Plan) -> _UploadSteps:
        """The file the cache names for the content, if it still exists and still holds it."""
        key = self._cache_key(plan)
        cached = self.cache.get(key) if key is not None else None
        if key is None or cached is None:
            return None
        try:
            file: FileObject | None = yield _Retrieve(cached)
        except openai.NotFoundError:
            file = None
        if file is not None and self._cached_holds(file, plan):
            return file
        self.cache.forget(key)
        return None

    def _processing_steps(self, file: FileObject) -> _UploadSteps:
        """Wait, with backoff, until the backend reports the file processed."""
        if not self.wait_for_processing:
            return file
        start = self.policy.clock()
        delay = _PROCESSING_FIRST_DELAY
        while (status := self._processing_state(file)) is not None:
            if self.policy.clock() - start >= self.processing_timeout:
                raise self._processing_timeout_error(file, status)
            logger.debug("file %s is %s; checking again in %.1f s", file.id, status, delay)
            yield Sleep(delay)
            delay = min(delay * 2, _PROCESSING_MAX_DELAY)
            file = yield _Retrieve(file.id)
        return file


class _PartSkippedError(Exception):
    """A part not sent because another part of the same upload had failed for good."""


class FileUploader(_UploaderBase[openai.OpenAI]):
    """Uploads training data once per content, preflighted, in parts when large.

    Args:
        client: An ``openai.OpenAI`` client (used with its own retries off).
        policy: The retry policy (default: the shared one).
        multipart_threshold: Files larger than this go through the Uploads API (at most 512 MB).
        part_size: Bytes per part of a multipart upload (at most 64 MB).
        max_workers: Parts sent at once.
        progress: Show a progress bar in bytes (``None``: only on a terminal).
        cache: Where to remember uploads and file digests: ``None`` (default) for the user
            cache file (see ``default_cache_path``), a JSON file path, an ``UploadCache``, or
            ``False`` for this process only.
        prehash: Hash a new file before sending it so its name carries the content tag:
            ``None`` (default) only when a remote file of the same size exists, ``True``
            always (a later run finds it by name even without the cache), ``False`` never.
        wait_for_processing: Wait until the backend reports the file ``processed``.
        processing_timeout: Give up waiting after this many seconds.
        backend_id: A stable name for the backend in the cache (default: the client's base
            URL). Pass one when the URL changes between runs while the backend stays the same,
            such as the local backend started in-process on a new port each time (a session
            passes its data folder).

    Examples:
        >>> uploader = FileUploader(client)                       # doctest: +SKIP
        >>> uploaded = uploader.upload("train.jsonl")             # doctest: +SKIP
        >>> uploaded.id, uploaded.reused                          # doctest: +SKIP
        ('file-abc123', False)
    """

    def upload(
        self,
        source: str | Path | bytes | Dataset[Any],
        *,
        purpose: str = "fine-tune",
        filename: str | None = None,
        preflight: bool = True,
        force: bool = False,
        model: str | None = None,
        reuse: bool = True,
        role: FileRole = "training",
    ) -> UploadedFile:
        """Upload a content, or find it already uploaded.

        Args:
            source: A JSONL path, bytes, or a ``Dataset``.
            purpose: The file purpose (``fine-tune`` for training and validation data).
            filename: Base name for the remote file (default: the file's stem, or ``data``).
            preflight: Check training data offline first (purpose ``fine-tune`` only).
            force: Upload even when preflight finds errors.
            model: The base model, for preflight's token limits (``None``: no per-model limit).
            reuse: Reuse a remote file with the same content when one exists.
            role: ``"training"`` or ``"validation"``: what the data is for. Validation data is
                preflighted by every rule but the minimum of 10 examples, which only training
                data needs.

        Returns:
            The remote file (``.id`` for ``jobs.create``; ``.reused`` says whether it was sent).

        Raises:
            PreflightFailedError: The data has errors (the report is attached).
            UploadError: Too large, unreadable, or the backend could not process it.
            ConfigurationError: An unknown purpose or source type.
        """
        steps = self._upload_steps(
            source,
            purpose=purpose,
            filename=filename,
            preflight=preflight,
            force=force,
            model=model,
            reuse=reuse,
            role=role,
        )
        uploaded: UploadedFile = run_steps(steps, self._act)
        return uploaded

    def _act(self, action: _UploadAction) -> Any:
        """Carry out one action of the upload's steps."""
        if isinstance(action, _Local):
            return action.work()
        if isinstance(action, _Retrieve):
            return self.policy.call(self._client.files.retrieve, action.file_id)
        if isinstance(action, _List):
            return self._listing(action.purpose)
        if isinstance(action, Sleep):
            self.policy.sleep(action.seconds)
            return None
        plan = action.plan
        if isinstance(action, _SendWhole):
            return self.policy.call_idempotent(
                lambda: self._create(plan, action.inline), lambda: self._find_sent(plan)
            )
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-digest") as hasher:
            digest = hasher.submit(self._digest, plan, md5=True)
            file = self._upload_in_parts(plan, digest)
            return file, digest.result()

    def _listing(self, purpose: FilePurpose) -> list[FileObject]:
        return list(iter_items(self.policy, lambda: self._client.files.list(purpose=purpose)))

    def _find_sent(self, plan: _Plan) -> FileObject | None:
        return next((f for f in self._listing(plan.purpose) if self._sent(f, plan)), None)

    def _create(self, plan: _Plan, digest: SequentialDigest | None) -> FileObject:
        with self._bar(plan) as bar:
            counter = None if bar.disable else ProgressCounter(bar.update)
            with self._window(plan, counter, digest=digest) as window:
                return self._client.files.create(
                    file=(plan.filename, window.as_io()), purpose=plan.purpose
                )

    def _upload_in_parts(self, plan: _Plan, digest: Future[ContentDigest]) -> FileObject:
        client = self._client
        upload = self.policy.call(client.uploads.create, **self._upload_params(plan))
        parts = plan_parts(plan.size, self.part_size)
        logger.debug("upload %s: %d parts of up to %d bytes", upload.id, len(parts), self.part_size)
        with self._bar(plan) as bar:
            counter = None if bar.disable else ProgressCounter(bar.update)

            # Set by the worker whose part failed for good, before that worker takes the next
            # part: the pool's queue would otherwise hand it the rest of the file while the
            # parts beside it are still in flight, and every part would be sent in vain.
            failed = threading.Event()

            def send(part: PartSpec) -> str:
                def once() -> str:
                    with self._window(plan, counter, part) as window:
                        return client.uploads.parts.create(upload.id, data=window.as_io()).id

                if failed.is_set():
                    raise _PartSkippedError
                try:
                    return self.policy.call(once)
                except BaseException:
                    failed.set()
                    raise

            try:
                with ThreadPoolExecutor(
                    max_workers=self.max_workers, thread_name_prefix="upload-part"
                ) as pool:
                    # In part order, a real failure comes before any part skipped after it.
                    part_ids = list(pool.map(send, parts))
            except Exception as exc:
                self._cancel_quietly(upload.id)
                raise UploadError(self._parts_failed(plan)) from exc
        md5 = digest.result().md5 or openai.omit
        return self.policy.call_idempotent(
            lambda: self._completed(client.uploads.complete(upload.id, part_ids=part_ids, md5=md5)),
            lambda: self._find_sent(plan),
        )

    def _cancel_quietly(self, upload_id: str) -> None:
        try:
            self._client.uploads.cancel(upload_id)
        except openai.OpenAIError as exc:
            logger.debug("could not cancel upload %s: %s", upload_id, type(exc).__name__)


class AsyncFileUploader(_UploaderBase[openai.AsyncOpenAI]):
    """The async twin of :class:`FileUploader` (same arguments, same behaviour).

    Hashing and preflight run in worker threads, so the event loop stays free.

    Examples:
        >>> uploader = AsyncFileUploader(async_client)            # doctest: +SKIP
        >>> uploaded = await uploader.upload("train.jsonl")       # doctest: +SKIP
    """

    async def upload(
        self,
        source: str | Path | bytes | Dataset[Any],
        *,
        purpose: str = "fine-tune",
        filename: str | None = None,
        preflight: bool = True,
        force: bool = False,
        model: str | None = None,
        reuse: bool = True,
        role: FileRole = "training",
    ) -> UploadedFile:
        """Upload a content, or find it already uploaded (see :meth:`FileUploader.upload`).

        Args:
            source: A JSONL path, bytes, or a ``Dataset``.
            purpose: The file purpose.
            filename: Base name for the remote file.
            preflight: Check training data offline first.
            force: Upload even when preflight finds errors.
            model: The base model, for preflight's token limits.
            reuse: Reuse a remote file with the same content when one exists.
            role: ``"training"`` or ``"validation"`` (validation data needs no 10 examples).

        Returns:
            The remote file.
        """
        steps = self._upload_steps(
            source,
            purpose=purpose,
            filename=filename,
            preflight=preflight,
            force=force,
            model=model,
            reuse=reuse,
            role=role,
        )
        uploaded: UploadedFile = await arun_steps(steps, self._act)
        return uploaded

    async def _act(self, action: _UploadAction) -> Any:
        """Carry out one action of the upload's steps (local work in a worker thread)."""
        if isinstance(action, _Local):
            return await asyncio.to_thread(action.work)
        if isinstance(action, _Retrieve):
            return await self.policy.acall(self._client.files.retrieve, action.file_id)
        if isinstance(action, _List):
            return await self._listing(action.purpose)
        if isinstance(action, Sleep):
            await self.policy.asleep(action.seconds)
            return None
        plan = action.plan
        if isinstance(action, _SendWhole):
            return await self.policy.acall_idempotent(
                lambda: self._create(plan, action.inline), lambda: self._find_sent(plan)
            )
        digest = asyncio.create_task(asyncio.to_thread(self._digest, plan, md5=True))
        try:
            file = await self._upload_in_parts(plan, digest)
            return file, await digest
        finally:
            if not digest.done():
                await asyncio.wait([digest])  # a worker thread cannot be cancelled

    async def _listing(self, purpose: FilePurpose) -> list[FileObject]:
        return [
            f
            async for f in aiter_items(
                self.policy, lambda: self._client.files.list(purpose=purpose)
            )
        ]

    async def _find_sent(self, plan: _Plan) -> FileObject | None:
        return next((f for f in await self._listing(plan.purpose) if self._sent(f, plan)), None)

    async def _create(self, plan: _Plan, digest: SequentialDigest | None) -> FileObject:
        with self._bar(plan) as bar:
            counter = None if bar.disable else ProgressCounter(bar.update)
            with self._window(plan, counter, digest=digest) as window:
                return await self._client.files.create(
                    file=(plan.filename, window.as_io()), purpose=plan.purpose
                )

    async def _upload_in_parts(
        self, plan: _Plan, digest: asyncio.Task[ContentDigest]
    ) -> FileObject:
        client = self._client
        upload = await self.policy.acall(client.uploads.create, **self._upload_params(plan))
        parts = plan_parts(plan.size, self.part_size)
        logger.debug("upload %s: %d parts of up to %d bytes", upload.id, len(parts), self.part_size)
        slots = asyncio.Semaphore(self.max_workers)
        with self._bar(plan) as bar:
            counter = None if bar.disable else ProgressCounter(bar.update)

            async def send(part: PartSpec) -> str:
                async def once() -> str:
                    with self._window(plan, counter, part) as window:
                        created = await client.uploads.parts.create(upload.id, data=window.as_io())
                        return str(created.id)

                async with slots:
                    return await self.policy.acall(once)

            tasks = [asyncio.ensure_future(send(part)) for part in parts]
            try:
                part_ids = list(await asyncio.gather(*tasks))
            except BaseException as exc:
                # gather() leaves the other parts running when one fails: they would go on
                # posting to a cancelled Upload and update a closed bar. Stop them, and wait for
                # them so their own errors are retrieved (a TaskGroup does this from 3.11).
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if not isinstance(exc, Exception):
                    raise  # cancelled or interrupted: the Upload expires on its own
                await self._cancel_quietly(upload.id)
                raise UploadError(self._parts_failed(plan)) from exc
        md5 = (await digest).md5 or openai.omit

        async def complete() -> FileObject:
            return self._completed(
                await client.uploads.complete(upload.id, part_ids=part_ids, md5=md5)
            )

        return await self.policy.acall_idempotent(complete, lambda: self._find_sent(plan))

    async def _cancel_quietly(self, upload_id: str) -> None:
        try:
            await self._client.uploads.cancel(upload_id)
        except openai.OpenAIError as exc:
            logger.debug("could not cancel upload %s: %s", upload_id, type(exc).__name__)
