"""``/health``: answers as soon as the server is ready (no API key needed).

Example:
    >>> [route.path for route in router.routes]
    ['/health']
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..._version import __version__

__all__ = ["router"]

router = APIRouter()


@router.get("/health")
def health() -> dict[str, Any]:
    """Report that the server is up."""
    return {"status": "ok", "version": __version__}
