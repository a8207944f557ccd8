"""``/v1/models``: list, retrieve, delete a fine-tuned model.

Example:
    >>> sorted({route.path for route in router.routes})
    ['/v1/models', '/v1/models/{model:path}']
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from .common import context
from .schemas import DeletedObject, Model, ModelList, answers

__all__ = ["router"]

router = APIRouter()


@router.get("/v1/models", response_model=None, responses=answers(ModelList))
def list_models(request: Request) -> dict[str, Any]:
    """List base models, aliases, fine-tuned models and checkpoints."""
    return {"object": "list", "data": context(request).catalog.list_models()}


@router.get("/v1/models/{model:path}", response_model=None, responses=answers(Model))
def retrieve_model(request: Request, model: str) -> dict[str, Any]:
    """Return one model."""
    return context(request).catalog.retrieve(model)


@router.delete("/v1/models/{model:path}", response_model=None, responses=answers(DeletedObject))
def delete_model(request: Request, model: str) -> dict[str, Any]:
    """Delete a fine-tuned model."""
    return context(request).catalog.delete(model)
