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
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..._version import __version__
from ..api_errors import ApiError, error_body
from ..faults import FaultInjector
from ..faults.middleware import FaultInjectionMiddleware
from ..settings import ServerSettings
from .access_log import redact_access_log
from .context import ServerContext
from .middleware import ApiKeyMiddleware, BodyLimitMiddleware, KeepAliveGuard
from .routes import chat, files, graders, health, jobs, models, tokenize, uploads, weights
from .routes import faults as fault_admin
from .routes.common import _param
from .routes.schemas import REQUEST_MODELS, ErrorResponse

__all__ = ["LocalApp"]

logger = logging.getLogger("finetune_kit.local.server")


def _json_error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _json_error(exc)


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route serves at the request's path."""
    methods: set[str] = set()
    # The router stops at the first route whose path matches; the others may allow more.
    for router in request.app.state.routers:
        for route in router.routes:
            if isinstance(route, Route) and route.methods:
                match, _ = route.matches(request.scope)
                if match is not Match.NONE:
                    methods |= route.methods
    return sorted(methods)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers: dict[str, str] = {}
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        message = (
            f"Method {request.method} is not allowed on {request.url.path}; use "
            f"{' or '.join(allowed)}."
        )
    else:
        message = str(exc.detail)
    return JSONResponse(error_body(message), status_code=exc.status_code, headers=headers)


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


def _openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema of the routes, with what FastAPI cannot see added.

    The routes read their bodies themselves and declare them with ``json_body``: their models
    become components here. Every operation may answer an error in OpenAI's shape (``4XX``);
    FastAPI's 422 never happens, since a request that fails validation gets a 400.
    """
    schema = get_openapi(
        title=app.title,
        version=__version__,
        description="OpenAI's fine-tuning API, served by finetune_kit's local backend.",
        routes=app.routes,
    )
    components: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
    models: list[type[BaseModel]] = [*REQUEST_MODELS.values(), ErrorResponse]
    refs, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
    )
    for model in models:
        name = refs[(model, "validation")]["$ref"].rsplit("/", 1)[-1]
        if name != model.__name__:
            raise RuntimeError(f"two request models are named {model.__name__}: rename one")
    for name, definition in definitions.get("$defs", {}).items():
        if components.get(name, definition) != definition:
            raise RuntimeError(f"two schemas are named {name}: rename one")
        components[name] = definition
    error = {
        "description": "An error in OpenAI's shape; `error.param` names the parameter.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    for item in schema["paths"].values():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses.setdefault("4XX", error)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


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
        openapi_url="/openapi.json",
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi_schema(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
    app.state.context = context
    routers = [
        # weights before models: /v1/models/{model:path} would take its URLs.
        module.router
        for module in (health, files, uploads, jobs, weights, models, chat, tokenize, graders)
    ]
    if context.faults is not None:
        routers.append(fault_admin.router)
    for router in routers:
        app.include_router(router)
    app.state.routers = routers
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
        redact_access_log(settings.api_key)
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
