"""``/v1/uploads``: create, add parts, complete (ordered part ids, optional md5), cancel.

Example:
    >>> sorted({route.path for route in router.routes})[0]
    '/v1/uploads'
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ...api_errors import InvalidRequestError
from .common import StrictInput, context, read_json
from .files import check_purpose
from .schemas import Upload, UploadPart, answers, json_body, multipart_body

__all__ = ["router"]

router = APIRouter()


class _ExpiresAfter(StrictInput):
    anchor: str
    seconds: Annotated[int, Field(ge=3600, le=2_592_000)]


class UploadCreateBody(StrictInput):
    """``POST /v1/uploads`` body."""

    bytes: Annotated[int, Field(ge=0)]
    filename: Annotated[str, Field(min_length=1)]
    mime_type: Annotated[str, Field(min_length=1)]
    purpose: str
    expires_after: _ExpiresAfter | None = None


class UploadCompleteBody(StrictInput):
    """``POST /v1/uploads/{id}/complete`` body."""

    part_ids: list[str]
    md5: str | None = None


@router.post(
    "/v1/uploads",
    response_model=None,
    responses=answers(Upload),
    openapi_extra=json_body(UploadCreateBody),
)
async def create_upload(request: Request) -> dict[str, Any]:
    """Open an upload of a given total size."""
    ctx = context(request)
    body = await read_json(request, UploadCreateBody)
    check_purpose(body.purpose, body.filename)
    limit = ctx.settings.limits.max_upload_bytes
    if body.bytes > limit:
        raise InvalidRequestError(
            f"bytes is {body.bytes}, over this server's upload limit of {limit} bytes.",
            param="bytes",
        )
    if body.expires_after is not None and body.expires_after.anchor != "created_at":
        raise InvalidRequestError(
            "Invalid value for 'expires_after.anchor': use 'created_at'.",
            param="expires_after.anchor",
        )
    upload = ctx.store.uploads.create(
        filename=body.filename,
        purpose=body.purpose,
        size=body.bytes,
        mime_type=body.mime_type,
        file_expires_after=body.expires_after.seconds if body.expires_after else None,
    )
    return upload.to_api()


@router.post(
    "/v1/uploads/{upload_id}/parts",
    response_model=None,
    responses=answers(UploadPart),
    openapi_extra=multipart_body({"data": {"type": "string", "format": "binary"}}, ["data"]),
)
async def add_upload_part(request: Request, upload_id: str) -> dict[str, Any]:
    """Add one part (multipart field ``data``)."""
    ctx = context(request)
    async with request.form(max_files=1, max_fields=10) as form:
        data = form.get("data")
        if not isinstance(data, UploadFile):
            raise InvalidRequestError(
                "Missing required parameter: 'data' (a multipart file field).", param="data"
            )
        part = await run_in_threadpool(
            ctx.store.uploads.add_part,
            upload_id,
            data.file,
            max_bytes=ctx.settings.limits.max_part_bytes,
        )
    return part.to_api()


@router.post(
    "/v1/uploads/{upload_id}/complete",
    response_model=None,
    responses=answers(Upload),
    openapi_extra=json_body(UploadCompleteBody),
)
async def complete_upload(request: Request, upload_id: str) -> dict[str, Any]:
    """Assemble the parts, in the order given, into a file."""
    ctx = context(request)
    body = await read_json(request, UploadCompleteBody)
    upload, file = await run_in_threadpool(
        ctx.store.uploads.complete, upload_id, body.part_ids, body.md5
    )
    return upload.to_api(file)


@router.post("/v1/uploads/{upload_id}/cancel", response_model=None, responses=answers(Upload))
def cancel_upload(request: Request, upload_id: str) -> dict[str, Any]:
    """Cancel a pending upload."""
    return context(request).store.uploads.cancel(upload_id).to_api()
