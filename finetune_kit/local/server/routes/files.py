"""``/v1/files``: upload (multipart), list, retrieve, content, delete.

Example:
    >>> [route.path for route in router.routes][:2]
    ['/v1/files', '/v1/files']
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import FileResponse

from ...api_errors import InvalidRequestError, NotFoundError
from ...store import FileRecord
from .common import After, Limit, Order, context, list_page, page_after
from .schemas import DeletedObject, FileList, FileObject, answers, multipart_body

__all__ = ["FILE_PURPOSES", "check_purpose", "router"]

router = APIRouter()

FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
"""Purposes a client may upload a file with."""

_MIN_EXPIRY, _MAX_EXPIRY = 3600, 2_592_000

# Any purpose: the server's own files have purposes a client cannot upload with.
_PurposeFilter = Annotated[str | None, Query(min_length=1, description="Only this purpose.")]


def check_purpose(purpose: Any, filename: str | None, *, param: str = "purpose") -> str:
    """Check an upload's purpose, and that fine-tuning files are ``.jsonl``.

    Raises:
        InvalidRequestError: The purpose is unknown, or a fine-tune file is not ``.jsonl``.
    """
    if not isinstance(purpose, str) or purpose not in FILE_PURPOSES:
        raise InvalidRequestError(
            f"Invalid value for 'purpose': {purpose!r}; use one of {', '.join(FILE_PURPOSES)}.",
            param=param,
        )
    if purpose == "fine-tune" and not (filename or "").lower().endswith(".jsonl"):
        raise InvalidRequestError(
            f"Invalid file format for Fine-Tuning API. Must be .jsonl (got {filename!r}).",
            param="file",
        )
    return purpose


def parse_expires_after(anchor: Any, seconds: Any) -> int | None:
    """Read ``expires_after`` ({anchor: created_at, seconds}) into a number of seconds."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequestError(
            "Invalid value for 'expires_after.anchor': use 'created_at'.",
            param="expires_after.anchor",
        )
    try:
        value = int(str(seconds))
    except ValueError as exc:
        raise InvalidRequestError(
            "Invalid value for 'expires_after.seconds': not an integer.",
            param="expires_after.seconds",
        ) from exc
    if not _MIN_EXPIRY <= value <= _MAX_EXPIRY:
        raise InvalidRequestError(
            f"Invalid value for 'expires_after.seconds': {value}; it must be between "
            f"{_MIN_EXPIRY} (one hour) and {_MAX_EXPIRY} (30 days).",
            param="expires_after.seconds",
        )
    return value


def _file_or_404(request: Request, file_id: str) -> FileRecord:
    record = context(request).store.files.get(file_id)
    if record is None:
        raise NotFoundError(f"No such File object: {file_id}", param="id")
    return record


_UPLOAD_FORM = multipart_body(
    {
        "file": {"type": "string", "format": "binary"},
        "purpose": {"type": "string", "enum": list(FILE_PURPOSES)},
        "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
        "expires_after[seconds]": {
            "type": "integer",
            "minimum": _MIN_EXPIRY,
            "maximum": _MAX_EXPIRY,
        },
    },
    ["file", "purpose"],
)


@router.post(
    "/v1/files", response_model=None, responses=answers(FileObject), openapi_extra=_UPLOAD_FORM
)
async def create_file(request: Request) -> dict[str, Any]:
    """Upload a file (multipart: ``file``, ``purpose``, optional ``expires_after``)."""
    ctx = context(request)
    async with request.form(max_files=1, max_fields=10) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequestError(
                "Missing required parameter: 'file' (a multipart file field).", param="file"
            )
        purpose = check_purpose(form.get("purpose"), upload.filename)
        expires_after = parse_expires_after(
            form.get("expires_after[anchor]"), form.get("expires_after[seconds]")
        )
        expires_at = int(time.time()) + expires_after if expires_after is not None else None
        record = await run_in_threadpool(
            ctx.store.files.save_stream,
            upload.file,
            filename=upload.filename,
            purpose=purpose,
            expires_at=expires_at,
            max_bytes=ctx.settings.limits.max_file_bytes,
        )
    return record.to_api()


@router.get("/v1/files", response_model=None, responses=answers(FileList))
def list_files(
    request: Request,
    purpose: _PurposeFilter = None,
    limit: Limit = 10_000,
    order: Order = "desc",
    after: After = None,
) -> dict[str, Any]:
    """List files (``purpose``, ``limit``, ``order``, ``after``)."""
    files = context(request).store.files
    records, has_more = page_after(
        after,
        lambda file_id: files.get(file_id) is not None,
        "file",
        lambda: files.list(purpose=purpose, limit=limit, order=order, after=after),
    )
    return list_page([r.to_api() for r in records], has_more)


@router.get("/v1/files/{file_id}", response_model=None, responses=answers(FileObject))
def retrieve_file(request: Request, file_id: str) -> dict[str, Any]:
    """Return one file's object."""
    return _file_or_404(request, file_id).to_api()


_CONTENT = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


@router.get(
    "/v1/files/{file_id}/content",
    response_class=FileResponse,
    responses={200: {"description": "The file's bytes.", "content": _CONTENT}},
)
def file_content(request: Request, file_id: str) -> FileResponse:
    """Return a file's bytes."""
    record = _file_or_404(request, file_id)
    blob = context(request).store.files.path(record.id)
    if not blob.is_file():
        raise NotFoundError(
            f"The bytes of file {record.id} are gone from the server's data folder (removed "
            "by hand, or a damaged disk); upload the file again.",
            param="id",
        )
    return FileResponse(blob, media_type="application/octet-stream")


@router.delete("/v1/files/{file_id}", response_model=None, responses=answers(DeletedObject))
def delete_file(request: Request, file_id: str) -> dict[str, Any]:
    """Delete a file."""
    record = _file_or_404(request, file_id)
    context(request).store.files.delete(record.id)
    return {"id": record.id, "object": "file", "deleted": True}
