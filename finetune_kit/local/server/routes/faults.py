"""``/_faults``: control fault injection over HTTP (only when it is enabled).

Used by ``RemoteFaults`` to steer a server running in another process. These routes are never
faulted nor logged, and need the API key when one is set.

Example:
    >>> sorted({route.path for route in router.routes})[0]
    '/_faults/clear'
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from ....errors import ConfigurationError
from ...api_errors import InvalidRequestError, NotFoundError
from ...faults import FaultInjector
from .common import StrictInput, read_json
from .schemas import answers, json_body

__all__ = ["router"]

router = APIRouter()


class FaultScriptBody(StrictInput):
    """``POST /_faults/script`` body."""

    method: str
    path: str
    faults: list[str]
    retry_after: float | None = None


class FaultProbabilityBody(StrictInput):
    """``POST /_faults/probability`` body."""

    method: str
    path: str
    fault: str
    probability: float
    retry_after: float | None = None


class FaultLatencyBody(StrictInput):
    """``POST /_faults/latency`` body."""

    method: str
    path: str
    seconds: float


class FaultDone(BaseModel):
    """The answer of a fault admin action."""

    ok: bool


class FaultLog(BaseModel):
    """The request log."""

    object: Literal["list"]
    data: list[dict[str, Any]]


def _injector(request: Request) -> FaultInjector:
    faults: FaultInjector | None = request.app.state.context.faults
    if faults is None:
        raise NotFoundError("Fault injection is off on this server.")
    return faults


def _apply(action: Any) -> dict[str, Any]:
    try:
        action()
    except ConfigurationError as exc:
        raise InvalidRequestError(str(exc), param=exc.param) from exc
    return {"ok": True}


@router.post(
    "/_faults/script",
    response_model=None,
    responses=answers(FaultDone),
    openapi_extra=json_body(FaultScriptBody),
)
async def script(request: Request) -> dict[str, Any]:
    """Add a scripted sequence of faults for a route."""
    faults = _injector(request)
    body = await read_json(request, FaultScriptBody)
    return _apply(
        lambda: faults.script(body.method, body.path, body.faults, retry_after=body.retry_after)
    )


@router.post(
    "/_faults/probability",
    response_model=None,
    responses=answers(FaultDone),
    openapi_extra=json_body(FaultProbabilityBody),
)
async def probability(request: Request) -> dict[str, Any]:
    """Add a probabilistic fault for a route."""
    faults = _injector(request)
    body = await read_json(request, FaultProbabilityBody)
    return _apply(
        lambda: faults.set_probability(
            body.method, body.path, body.fault, body.probability, retry_after=body.retry_after
        )
    )


@router.post(
    "/_faults/latency",
    response_model=None,
    responses=answers(FaultDone),
    openapi_extra=json_body(FaultLatencyBody),
)
async def latency(request: Request) -> dict[str, Any]:
    """Add latency to a route."""
    faults = _injector(request)
    body = await read_json(request, FaultLatencyBody)
    return _apply(lambda: faults.latency(body.method, body.path, body.seconds))


@router.post("/_faults/clear", response_model=None, responses=answers(FaultDone))
def clear(request: Request) -> dict[str, Any]:
    """Remove every rule and empty the request log."""
    _injector(request).clear()
    return {"ok": True}


@router.get("/_faults/requests", response_model=None, responses=answers(FaultLog))
def requests(request: Request) -> dict[str, Any]:
    """Return the request log (optionally filtered by ``method`` and ``path``)."""
    faults = _injector(request)
    try:
        records = faults.requests(
            request.query_params.get("method"), request.query_params.get("path")
        )
    except ConfigurationError as exc:
        raise InvalidRequestError(str(exc), param="path") from exc
    return {"object": "list", "data": [r.to_dict() for r in records]}
