"""Helpers shared by the routers: request parsing with OpenAI-style errors, list pages.

Example:
    >>> from pydantic import BaseModel
    >>> class Body(StrictInput):
    ...     limit: int
    >>> try:
    ...     validate_input(Body, {"limit": 1, "extra": 2})
    ... except InvalidRequestError as exc:
    ...     print(exc.param, "-", exc.message)
    extra - Unrecognized request argument supplied: extra
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request

from ..api_errors import InvalidRequestError
from ..context import ServerContext

__all__ = [
    "StrictInput",
    "context",
    "list_page",
    "query_choice",
    "query_int",
    "read_json",
    "validate_input",
]

ModelT = TypeVar("ModelT", bound=BaseModel)

_TYPE_TAGS = {"int", "float", "str", "bool", "dict", "list", "none", "function-after"}


class StrictInput(BaseModel):
    """Base of request bodies: unknown keys and loose types are refused, as OpenAI does."""

    model_config = ConfigDict(extra="forbid", strict=True)


def context(request: Request) -> ServerContext:
    """Return the server's shared state."""
    ctx: ServerContext = request.app.state.context
    return ctx


def _param(loc: Sequence[int | str]) -> str:
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
            continue
        text = str(item)
        if text in _TYPE_TAGS or "[" in text or text.startswith("function-"):
            continue  # a union branch's tag, not a field name
        out += f".{text}" if out else text
    return out


def validate_input(model: type[ModelT], data: Any) -> ModelT:
    """Validate a request body, turning the first problem into a 400 naming the parameter.

    Args:
        model: The body's model.
        data: The decoded JSON.

    Returns:
        The validated body.

    Raises:
        InvalidRequestError: With ``param`` set to the offending field's path.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(first["loc"]) or None
        kind = first["type"]
        if kind == "extra_forbidden":
            message = f"Unrecognized request argument supplied: {param}"
        elif kind == "missing":
            message = f"Missing required parameter: '{param}'."
        else:
            message = f"Invalid value for '{param}': {first['msg']}."
        raise InvalidRequestError(message, param=param) from exc


async def read_json(request: Request, model: type[ModelT]) -> ModelT:
    """Read and validate a JSON request body.

    Raises:
        InvalidRequestError: The body is not a JSON object, or does not match ``model``.
    """
    raw = await request.body()
    try:
        data = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(
            "We could not parse the JSON body of your request. Send a JSON object with "
            "Content-Type: application/json."
        ) from exc
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return validate_input(model, data)


def query_int(
    request: Request, name: str, *, default: int, minimum: int, maximum: int | None = None
) -> int:
    """Read an integer query parameter within bounds.

    Raises:
        InvalidRequestError: It is not an integer, or is out of bounds.
    """
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidRequestError(
            f"Invalid value for '{name}': {raw!r} is not an integer.", param=name
        ) from exc
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise InvalidRequestError(
            f"Invalid value for '{name}': {value}; it must be {bound}.", param=name
        )
    return value


def query_choice(request: Request, name: str, choices: Sequence[str], default: str) -> str:
    """Read a query parameter that must be one of ``choices``."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise InvalidRequestError(
            f"Invalid value for '{name}': {raw!r}; use one of {', '.join(choices)}.", param=name
        )
    return raw


def list_page(items: Sequence[Mapping[str, Any]], has_more: bool) -> dict[str, Any]:
    """Return OpenAI's cursor page: ``{object, data, has_more, first_id, last_id}``."""
    return {
        "object": "list",
        "data": list(items),
        "has_more": has_more,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
    }
