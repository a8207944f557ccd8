"""The local backend's ASGI application: routes, errors in OpenAI's shape, middleware.

The stack, outside in: fault injection (when enabled; it needs the server's raw ``send``),
API-key checks, body limits, the guard that keeps a connection usable after a 500, then the
FastAPI app and its routers.

Example:
    >>> import tempfile, pathlib
    >>> from starlette.testclient import TestClient
    >>> from finetune_kit.local.settings import ServerSettings
    >>> with tempfile.TemporaryDirectory() as d:
    ...     app = LocalApp(ServerSettings(data_dir=pathlib.Path(d), max_concurrent_jobs=0,
    ...                                   default_model="tiny-random"))
    ...     with TestClient(app) as http:
    ...         print(http.get("/v1/files").json()["object"])
    list
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .api_errors import ApiError, error_body
from .context import ServerContext
from .fault_middleware import FaultInjectionMiddleware
from .faults import FaultInjector
from .middleware import ApiKeyMiddleware, BodyLimitMiddleware, KeepAliveGuard
from .routes import chat, faults_admin, files, health, jobs, models, uploads
from .routes.common import _param
from .settings import ServerSettings

__all__ = ["LocalApp"]

logger = logging.getLogger("finetune_kit.local.server")


def _json_error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _json_error(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    return JSONResponse(error_body(message), status_code=exc.status_code)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [p for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = _param(loc) or None
    return _json_error(ApiError(400, f"Invalid value for '{param}': {first['msg']}.", param=param))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error in %s %s", request.method, request.url.path)
    body = error_body(
        f"The server had an error while processing your request ({type(exc).__name__}); see "
        "the server log.",
        type="server_error",
    )
    return JSONResponse(body, status_code=500)


def build_fastapi(context: ServerContext) -> FastAPI:
    """Build the FastAPI application of a server context (routes and error handlers)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context.start()
        try:
            yield
        finally:
            context.stop()

    app = FastAPI(
        title="finetune_kit local backend",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.context = context
    for module in (health, files, uploads, jobs, models, chat):
        app.include_router(module.router)
    if context.faults is not None:
        app.include_router(faults_admin.router)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
    return app


class LocalApp:
    """The whole ASGI application of a local backend server.

    Args:
        settings: The server's settings.
        faults: The fault injector; ``None`` builds one when ``settings.faults`` is on.

    Attributes:
        context: The server's shared state (store, models, workers).
        faults: The fault injector, or ``None`` when fault injection is off.
    """

    def __init__(self, settings: ServerSettings, faults: FaultInjector | None = None) -> None:
        if faults is None and settings.faults:
            faults = FaultInjector()
        self.faults = faults
        self.context = ServerContext(settings, faults)
        self.fastapi = build_fastapi(self.context)
        stack: ASGIApp = BodyLimitMiddleware(KeepAliveGuard(self.fastapi), settings.limits)
        if settings.api_key:
            stack = ApiKeyMiddleware(stack, settings.api_key)
        if faults is not None:
            stack = FaultInjectionMiddleware(stack, faults)
        self._stack = stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (HTTP or lifespan)."""
        await self._stack(scope, receive, send)
