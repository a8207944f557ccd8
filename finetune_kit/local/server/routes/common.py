"""Helpers shared by the routers: request parsing with OpenAI-style errors, list parameters.

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
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request

from ...api_errors import InvalidRequestError
from ..context import ServerContext

__all__ = [
    "MAX_JSON_DEPTH",
    "After",
    "Limit",
    "Order",
    "StrictInput",
    "context",
    "list_page",
    "page_after",
    "read_json",
    "unknown_cursor",
    "validate_input",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
PageT = TypeVar("PageT")

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


MAX_JSON_DEPTH = 64
"""How deeply a JSON request body may nest (the body object itself is level 1).

Beyond about 1,000 levels the decoder raises ``RecursionError``; well before that, code that
walks the value recursively (rendering tools into a prompt) could. No OpenAI request needs
more than a few levels; tool schemas a dozen or two.
"""

# A JSON string (escapes included) or a bracket: enough to follow the nesting of a body that
# json.loads gave up on, to name the parameter it happened under.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep_param(text: str) -> str | None:
    """Return the top-level key under which ``text`` nests past ``MAX_JSON_DEPTH``."""
    depth = 0
    in_object = text.lstrip().startswith("{")
    key: str | None = None
    last_string: str | None = None
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            if depth == 1:
                key = last_string  # in an object, the key just before ':'
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return key
        elif token in "]}":
            depth -= 1
        elif depth == 1 and in_object:
            try:
                last_string = json.loads(token)
            except ValueError:
                last_string = None
    return None


def _nesting_param(data: Any) -> tuple[bool, str | None]:
    """Return whether decoded JSON nests past ``MAX_JSON_DEPTH``, and under which top-level key."""
    # An explicit stack: a recursive walk is what this check protects the server from.
    stack: list[tuple[Any, int, str | None]] = [(data, 1, None)]
    while stack:
        value, depth, key = stack.pop()
        if isinstance(value, dict):
            children: Any = value.items()
        elif isinstance(value, list):
            children = enumerate(value)
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            return True, key
        for name, child in children:
            if isinstance(child, (dict, list)):
                top = name if depth == 1 and isinstance(name, str) else key
                stack.append((child, depth + 1, top))
    return False, None


def _too_deep(param: str | None) -> InvalidRequestError:
    where = f"'{param}'" if param else "The request body"
    return InvalidRequestError(
        f"{where} nests objects and arrays more than {MAX_JSON_DEPTH} levels deep; this "
        "server reads at most that many: flatten the value.",
        param=param,
    )


async def read_json(request: Request, model: type[ModelT]) -> ModelT:
    """Read and validate a JSON request body.

    Raises:
        InvalidRequestError: The body is not a JSON object, nests deeper than
            ``MAX_JSON_DEPTH``, or does not match ``model``.
    """
    raw = await request.body()
    try:
        data = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(
            "We could not parse the JSON body of your request. Send a JSON object with "
            "Content-Type: application/json."
        ) from exc
    except RecursionError as exc:
        raise _too_deep(_too_deep_param(raw.decode("utf-8", "replace"))) from exc
    deep, param = _nesting_param(data)
    if deep:
        raise _too_deep(param)
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return validate_input(model, data)


# List parameters, declared to FastAPI so /openapi.json shows them and a bad value (an empty
# "limit=" included: it is not the default) is a 400 naming the parameter.
Limit = Annotated[int, Query(ge=1, le=10_000, description="Page size.")]
Order = Annotated[
    Literal["asc", "desc"], Query(description="By creation time: newest first (desc) or not.")
]
After = Annotated[
    str | None,
    Query(min_length=1, description="The last id of the previous page (its last_id)."),
]


def unknown_cursor(after: str, what: str) -> InvalidRequestError:
    """The 400 for an ``after`` that names nothing in the list being paged.

    Paging on from the first page instead would hand a client paging while items are deleted
    the same items twice; an empty page would end its loop early without a word.
    """
    return InvalidRequestError(
        f"Invalid value for 'after': {after!r} is no {what} of this list (deleted since the "
        "previous page was read, or never one). List again without 'after' to start from the "
        "first page.",
        param="after",
    )


def page_after(
    after: str | None, exists: Callable[[str], bool], what: str, read: Callable[[], PageT]
) -> PageT:
    """Read a page after a cursor, refusing a cursor that names nothing in the list.

    Args:
        after: The request's ``after``.
        exists: Whether an id is in the list.
        what: What the list holds, for the error (``"file"``).
        read: Reads the page (the store starts from the first page for an unknown cursor).

    Returns:
        What ``read`` returned.

    Raises:
        InvalidRequestError: ``after`` names nothing in the list (``param="after"``).
    """
    if after is None:
        return read()
    if not exists(after):
        raise unknown_cursor(after, what)
    page = read()
    # Again: deleted between the check and the read, it may have been read as no cursor at all.
    # Ids are never reused, so one still there now was there all along.
    if not exists(after):
        raise unknown_cursor(after, what)
    return page


def list_page(items: Sequence[Mapping[str, Any]], has_more: bool) -> dict[str, Any]:
    """Return OpenAI's cursor page: ``{object, data, has_more, first_id, last_id}``."""
    return {
        "object": "list",
        "data": list(items),
        "has_more": has_more,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
    }
