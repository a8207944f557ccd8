"""``/health``: whether the server serves and trains (no API key needed).

``200 {"status": "ok", ...}`` when every part works; ``503 {"status": "degraded", ...}`` when
the workers keep dying or the file validation thread has stopped, with a ``problems`` list
saying which. The server still answers every API route while degraded; the 503 tells a load
balancer or a supervisor that jobs do not move. The body also reports the workers
(``expected``, ``alive``, ``crash_looping``) and the validator (``alive``).

Example:
    >>> [route.path for route in router.routes]
    ['/health']
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from ...._version import __version__
from .common import context

__all__ = ["router"]

router = APIRouter()


_REPORT = {
    "type": "object",
    "required": ["status", "version", "workers", "validator", "problems"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded"]},
        "version": {"type": "string"},
        "workers": {"type": "object"},
        "validator": {"type": "object"},
        "problems": {"type": "array", "items": {"type": "string"}},
    },
}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every part works.",
        "content": {"application/json": {"schema": _REPORT}},
    },
    503: {
        "description": "Degraded: workers crash-looping or the file validator stopped; "
        "`problems` says which (the API routes still answer).",
        "content": {"application/json": {"schema": _REPORT}},
    },
}


@router.get("/health", response_model=None, responses=_ANSWERS)
def health(request: Request) -> JSONResponse:
    """Report whether the server, its workers and its file validator work."""
    report: dict[str, Any] = {"status": "ok", "version": __version__}
    report.update(context(request).health())
    return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)
