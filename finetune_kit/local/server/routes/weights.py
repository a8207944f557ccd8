"""``/v1/models/{model}/weights``: a tuned model's weights, for use outside the server.

An extension of the local backend: OpenAI and Azure OpenAI keep a fine-tuned model's weights to
themselves and have no such route. ``GET /v1/models/{model}/weights`` lists the forms a
fine-tuned model or checkpoint is offered in and says which engine serves it;
``GET /v1/models/{model}/weights/{format}`` downloads one as an uncompressed tar archive of a
folder (``engine.export``: ``adapter``, ``hf``, ``gguf``). The archive is built once per form
and kept in the adapter's folder, so it goes when the model or checkpoint is deleted.

Example:
    >>> sorted(route.path for route in router.routes)
    ['/v1/models/{model}/weights', '/v1/models/{model}/weights/{format}']
"""

from __future__ import annotations

import re
import tarfile
import threading
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse

from ....errors import ConfigurationError
from ...api_errors import InvalidRequestError, NotFoundError
from ...engine.export import WEIGHT_FORMATS, describe_format, export_weights
from ...engine.generation import ModelRef
from ..catalog import ChatTarget
from .common import context

__all__ = ["ModelWeights", "router"]

router = APIRouter()

_EXPORTS = "exports"
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


class WeightFormat(BaseModel):
    """One form a model's weights are offered in."""

    model_config = ConfigDict(extra="allow")

    format: str
    description: str
    url: str


class ModelWeights(BaseModel):
    """The forms a fine-tuned model's weights are offered in, and the engine serving it."""

    model_config = ConfigDict(extra="allow")

    object: Literal["model.weights"]
    model: str
    base_model: str
    served_by: str
    formats: list[WeightFormat]


_TAR: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An uncompressed tar archive of one folder (the form's files).",
        "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _tuned(request: Request, model: str) -> ChatTarget:
    target = context(request).catalog.chat_target(model)
    if target.adapter_path is None:
        raise InvalidRequestError(
            f"{model} is a base model: its weights are the base model's own files. Only "
            "fine-tuned models and checkpoints are exported.",
            param="model",
        )
    if not (target.adapter_path / "adapter_model.safetensors").is_file():
        raise NotFoundError(
            f"The files of model `{model}` are gone from the server's data folder.",
            param="model",
            code="model_not_found",
        )
    return target


@router.get(
    "/v1/models/{model}/weights",
    response_model=None,
    responses={200: {"model": ModelWeights, "description": ModelWeights.__doc__}},
)
def list_weights(request: Request, model: str) -> dict[str, Any]:
    """List the forms a fine-tuned model's weights are offered in (a local extension)."""
    target = _tuned(request, model)
    engine = (
        context(request).generator().engine_for(ModelRef(target.base_model, target.adapter_path))
    )
    return {
        "object": "model.weights",
        "model": model,
        "base_model": target.base_model,
        "served_by": engine.name,
        "formats": [
            {
                "format": name,
                "description": describe_format(name),
                "url": f"/v1/models/{model}/weights/{name}",
            }
            for name in WEIGHT_FORMATS
        ],
    }


def _lock(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def _archive(request: Request, target: ChatTarget, model: str, format_name: str) -> Path:
    """Build (once) the tar archive of one form of a model's weights; return its path."""
    assert target.adapter_path is not None
    root = target.adapter_path / _EXPORTS
    archive = root / f"{format_name}.tar"
    weights = target.adapter_path / "adapter_model.safetensors"
    with _lock(archive):
        if archive.is_file() and archive.stat().st_mtime >= weights.stat().st_mtime:
            return archive
        folder = export_weights(
            context(request).registry,
            target.base_model,
            target.adapter_path,
            root / format_name,
            format_name,
            name=model,
        )
        staging = archive.with_name(f".{archive.name}.tmp")
        with tarfile.open(staging, "w") as tar:
            tar.add(folder, arcname=format_name)
        staging.replace(archive)
        return archive


@router.get("/v1/models/{model}/weights/{format}", response_model=None, responses=_TAR)
async def download_weights(request: Request, model: str, format: str) -> FileResponse:
    """Download one form of a fine-tuned model's weights as a tar archive (a local extension)."""
    if format not in WEIGHT_FORMATS:
        raise InvalidRequestError(
            f"Unknown weights format {format!r}; use one of {', '.join(WEIGHT_FORMATS)}.",
            param="format",
        )
    target = _tuned(request, model)
    try:
        archive = await run_in_threadpool(_archive, request, target, model, format)
    except ConfigurationError as exc:
        # A form this model has not (llama.cpp cannot take its base, for gguf).
        raise InvalidRequestError(str(exc), param="format") from exc
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-") or "model"
    return FileResponse(archive, media_type="application/x-tar", filename=f"{safe}-{format}.tar")
