"""The ASGI middleware that applies a ``FaultInjector``'s decisions to real requests.

It must wrap the whole application, outside the web framework, because dropping a connection
needs the server's own ``send``: uvicorn passes a bound method of its request cycle, whose
``transport`` is the client's socket. Closing that socket before anything is written is exactly
what a client sees when a proxy or server dies mid-request.

``drop`` closes it before the application sees the request. ``drop-after`` lets the application
handle the request in full (its effects are in the store), keeps every response message from
the server, then closes the socket: the client gets no byte back although the file or job
exists, the ambiguous case idempotent creates must survive. ``cut`` lets the application handle
the request, sends the response's headers and its first bytes (never all of them), then closes
the socket: the client has a status and headers, and its read of the body fails mid-way.

Example:
    >>> from starlette.applications import Starlette
    >>> app = FaultInjectionMiddleware(Starlette(), FaultInjector())
    >>> app.injector.count()
    0
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..api_errors import error_body
from .injector import FaultDecision, FaultInjector, RequestRecord

__all__ = ["FaultInjectionMiddleware", "is_exempt_path"]

logger = logging.getLogger("finetune_kit.local.faults")

_EXEMPT_PREFIXES = ("/_faults", "/health")
CUT_AFTER_BYTES = 10
"""How much of a response body a ``cut`` fault lets through (less when the body is shorter)."""


def is_exempt_path(path: str) -> bool:
    """Return whether a path is never faulted nor logged (health and fault admin routes)."""
    return path.startswith(_EXEMPT_PREFIXES)


class _DroppedConnection(Exception):  # noqa: N818  # a signal to uvicorn, not an error
    """Raised after a partial response so the server closes the connection."""


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _error_response(decision: FaultDecision) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    assert decision.fault is not None
    kind = decision.fault.kind
    headers: list[tuple[str, str]] = []
    if decision.retry_after is not None:
        headers.append(("retry-after", _format_seconds(decision.retry_after)))
        headers.append(("retry-after-ms", str(int(decision.retry_after * 1000))))
    if kind == "429":
        body = error_body(
            "Rate limit reached for requests (injected fault). Please try again in "
            f"{_format_seconds(decision.retry_after or 0)}s.",
            type="requests",
            code="rate_limit_exceeded",
        )
        return 429, body, headers
    if kind == "503":
        body = error_body(
            "The server is overloaded or not ready yet (injected fault).", type="server_error"
        )
        return 503, body, headers
    body = error_body(
        "The server had an error while processing your request (injected fault).",
        type="server_error",
    )
    return 500, body, headers


class FaultInjectionMiddleware:
    """Applies fault-injection decisions and logs every request.

    Args:
        app: The application to protect (the whole FastAPI app).
        injector: Decides what happens to each request.
    """

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection: log it, then fault it or pass it on."""
        if scope["type"] != "http" or is_exempt_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        record = RequestRecord(method=method, path=path, retry_count=_retry_count(scope))
        decision = self.injector.decide(method, path)
        record.fault = decision.fault.kind if decision.fault is not None else None
        record.delay = decision.delay
        self.injector.record(record)
        try:
            await self._apply(decision, scope, receive, send, record)
        finally:
            if record.finished_at is None:  # dropped, cut or refused: done now
                record.finished_at = time.time()

    async def _apply(
        self,
        decision: FaultDecision,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: RequestRecord,
    ) -> None:
        """Wait the decided delay, then handle the request normally or inject its fault."""
        method, path = scope["method"], scope["path"]
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)
        if decision.fault is None:
            await self.app(scope, receive, _status_recorder(send, record))
            return
        if decision.fault.kind == "drop":
            logger.debug("dropping the connection of %s %s", method, path)
            await _drop_connection(receive, send)
            return
        if decision.fault.kind == "drop-after":
            await self._handle_then_drop(scope, receive, send, record)
            return
        if decision.fault.kind == "cut":
            await self._handle_then_cut(scope, receive, send, record)
            return
        status, body, headers = _error_response(decision)
        record.status = status
        logger.debug("injecting %s into %s %s", status, method, path)
        payload = json.dumps(body).encode()
        raw_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            *((k.encode(), v.encode()) for k, v in headers),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        record.finished_at = time.time()
        await send({"type": "http.response.body", "body": payload})

    async def _handle_then_drop(
        self, scope: Scope, receive: Receive, send: Send, record: RequestRecord
    ) -> None:
        """Run the request to the end with its response held back, then drop the connection."""

        async def hold_back(message: Message) -> None:
            # Every response message (start, body chunks of a stream, pathsend...) stays here,
            # so not one byte reaches the socket; the route still runs to its end.
            if message["type"] == "http.response.start":
                record.status = int(message["status"])

        try:
            await self.app(scope, receive, hold_back)
        except Exception:
            # The route raised; its 500 was held back too, so the client sees the same thing:
            # a connection closed without an answer. The server still logs the error.
            await _drop_connection(receive, send)
            raise
        logger.debug(
            "dropping the connection of %s %s after handling it (status %s)",
            scope["method"],
            scope["path"],
            record.status,
        )
        await _drop_connection(receive, send)

    async def _handle_then_cut(
        self, scope: Scope, receive: Receive, send: Send, record: RequestRecord
    ) -> None:
        """Run the request, send its headers and first body bytes, then drop the connection."""
        budget = CUT_AFTER_BYTES
        done = False

        async def cut_short(message: Message) -> None:
            nonlocal budget, done
            if done:
                return  # the connection is gone; the route's later messages go nowhere
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
                await send(message)
                return
            if message["type"] != "http.response.body":
                return
            body = message.get("body", b"")
            last = not message.get("more_body", False)
            # Never the whole body: of a last chunk, one byte at least is kept back.
            keep = max(0, min(budget, len(body) - 1 if last else len(body)))
            budget -= keep
            if keep:
                await send({"type": "http.response.body", "body": body[:keep], "more_body": True})
            if last or budget == 0:
                done = True
                logger.debug("cutting the response to %s %s short", scope["method"], scope["path"])
                await _drop_connection(receive, send)

        await self.app(scope, receive, cut_short)


def _retry_count(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"x-stainless-retry-count":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _status_recorder(send: Send, record: RequestRecord) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            record.status = int(message["status"])
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            # Before the last chunk leaves: a client holding its answer must find the record
            # finished (set after ``send``, the client's next request could come first).
            record.finished_at = time.time()
        await send(message)

    return wrapped


async def _drop_connection(receive: Receive, send: Send) -> None:
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None and hasattr(transport, "close"):
        transport.close()
        # Wait until the server has seen the connection go, so it neither logs a missing
        # response nor tries to answer 500 on a closed socket.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(receive(), timeout=1.0)
            except asyncio.TimeoutError:
                continue
            if message["type"] == "http.disconnect":
                return
        return
    # Another ASGI server: start a response that promises a body, then fail, which makes the
    # server close the connection; the client sees a broken response, a connection error too.
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1024")]}
    )
    raise _DroppedConnection("connection dropped by fault injection")
