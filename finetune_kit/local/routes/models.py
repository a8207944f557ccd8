"""``/v1/models``: list, retrieve, delete a fine-tuned model.

Example:
    >>> sorted({route.path for route in router.routes})
    ['/v1/models', '/v1/models/{model:path}']
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from .common import context

__all__ = ["router"]

router = APIRouter()


@router.get("/v1/models")
def list_models(request: Request) -> dict[str, Any]:
    """List base models, aliases, fine-tuned models and checkpoints."""
    return {"object": "list", "data": context(request).catalog.list_models()}


@router.get("/v1/models/{model:path}")
def retrieve_model(request: Request, model: str) -> dict[str, Any]:
    """Return one model."""
    return context(request).catalog.retrieve(model)


@router.delete("/v1/models/{model:path}")
def delete_model(request: Request, model: str) -> dict[str, Any]:
    """Delete a fine-tuned model."""
    return context(request).catalog.delete(model)
