"""ASGI middleware of the local backend: API-key checks, request size limits, error guard.

They answer in OpenAI's error shape. The API key is compared in constant time and never
logged or repeated in an error.

Example:
    >>> from starlette.applications import Starlette
    >>> app = ApiKeyMiddleware(Starlette(), api_key="secret")
    >>> "secret" in repr(app)
    False
"""

from __future__ import annotations

import hmac
import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..api_errors import ApiError, PayloadTooLargeError, UnauthorizedError
from ..settings import RequestLimits

__all__ = ["ApiKeyMiddleware", "BodyLimitMiddleware", "KeepAliveGuard", "send_api_error"]

# Room for multipart boundaries and headers around a file of the maximum size.
_MULTIPART_OVERHEAD = 1024 * 1024
_PARTS_PATH = re.compile(r"/v1/uploads/[^/]+/parts")


async def send_api_error(send: Send, error: ApiError) -> None:
    """Send an ``ApiError`` as a complete JSON response."""
    payload = json.dumps(error.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in error.headers.items()),
    ]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class ApiKeyMiddleware:
    """Requires ``Authorization: Bearer <api_key>`` on every route but ``/health``.

    Args:
        app: The application.
        api_key: The key.
    """

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    def __repr__(self) -> str:
        return "ApiKeyMiddleware(api_key=***)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the key, then pass the request on."""
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        header = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value
                break
        if not header:
            await send_api_error(
                send,
                UnauthorizedError(
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                    "YOUR_KEY)."
                ),
            )
            return
        scheme, _, token = header.partition(b" ")
        # compare_digest on bytes takes the same time whatever the first differing byte.
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._key):
            await send_api_error(
                send,
                UnauthorizedError(
                    "Incorrect API key provided. Use the key this local backend was started "
                    "with (LocalBackend(api_key=...) or `finetune-kit local serve --api-key`)."
                ),
            )
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses request bodies over the configured limits with a 413.

    ``POST /v1/files`` may carry a file of ``max_file_bytes``, an upload part
    ``max_part_bytes``, every other request ``max_json_bytes``. A declared
    ``Content-Length`` over the limit is refused before reading; a body that grows past it
    while streaming is cut off.

    Args:
        app: The application.
        limits: The limits.
    """

    def __init__(self, app: ASGIApp, limits: RequestLimits) -> None:
        self.app = app
        self.limits = limits

    def limit_for(self, method: str, path: str) -> tuple[int, str]:
        """Return the body limit of a route and what it is called in errors."""
        if method == "POST" and path.rstrip("/") == "/v1/files":
            return self.limits.max_file_bytes + _MULTIPART_OVERHEAD, "Request body"
        if method == "POST" and _PARTS_PATH.fullmatch(path.rstrip("/")):
            return self.limits.max_part_bytes + _MULTIPART_OVERHEAD, "Request body"
        return self.limits.max_json_bytes, "Request body"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count the body as it streams."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, what = self.limit_for(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await send_api_error(send, PayloadTooLargeError(limit, what))
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLargeError(limit, what)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class KeepAliveGuard:
    """Keeps a keep-alive connection usable after a 500 for an unexpected exception.

    Starlette's outermost middleware answers an unexpected exception with the app's 500 handler,
    then raises it again for the server to log. uvicorn, seeing an exception after a response,
    closes the connection without ``Connection: close``: the client's next request on it is
    reset. Once a whole response has gone out, the exception (already logged by the handler) is
    dropped here, and the connection carries on. One raised before the response ended still
    reaches the server, which closes the connection: the client sees the answer cut short.

    Args:
        app: The application.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; drop an exception raised after the response was complete."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False

        async def watching_send(message: Message) -> None:
            nonlocal complete
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True

        try:
            await self.app(scope, receive, watching_send)
        except Exception:
            if not complete:
                raise
