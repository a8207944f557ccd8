"""Turn pydantic's validation errors into one ``ExampleValidationError`` a person can act on.

pydantic reports a location such as ``('messages', 2, 'role:assistant', 'weight')``; users think
in the JSON they wrote, ``messages[2].weight``. Union branches are tagged with names that contain
a colon (``role:assistant``, ``content:parts``...), so the walk below can drop them from the path
and still know which model it is inside, to suggest the key that was probably meant.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from ..errors import ExampleValidationError

__all__ = [
    "RULE_ERROR",
    "check_arguments_object",
    "json_type_name",
    "rule_error",
    "to_example_error",
]

RULE_ERROR = "finetune_kit_rule"
"""The pydantic error type our own validators raise; its context may carry ``field`` and ``fix``."""

# Keys people bring from older formats, and what to do about them.
_KEY_HINTS = {
    "functions": "legacy function calling is not modelled; declare tools in 'tools' instead",
    "function_call": "legacy function calling is not modelled; use 'tool_calls' instead",
    "prompt": "the legacy completions format (prompt/completion) is not supported; use 'messages'",
    "completion": "the legacy completions format (prompt/completion) is not supported; "
    "use 'messages'",
    "weight": "weight is only allowed on assistant messages; remove it",
    "preferred_completion": "the API reads 'preferred_output' (a list with one assistant message)",
    "non_preferred_completion": "the API reads 'non_preferred_output' (a list with one assistant "
    "message)",
}


def rule_error(problem: str, *, field: str = "", fix: str = "") -> PydanticCustomError:
    """An error for a validator to raise: the problem, the field to point at, and a fix.

    Args:
        problem: What is wrong.
        field: A path below the validated object to point at (``content``), if any.
        fix: How to fix it.
    """
    # The template is "{problem}" so braces in the text are never read as placeholders.
    return PydanticCustomError(
        RULE_ERROR, "{problem}", {"problem": problem, "field": field, "fix": fix}
    )


def json_type_name(value: Any) -> str:
    """Name a Python value by its JSON type, as a person reading the file would."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def check_arguments_object(text: str, *, fix_json: str, fix_object: str) -> None:
    """Refuse tool-call ``arguments`` text that is not a JSON object, as the API does.

    Args:
        text: The arguments, as a JSON string.
        fix_json: How to fix text that is not JSON at all.
        fix_object: How to fix JSON that is not an object.

    Raises:
        PydanticCustomError: The arguments are not JSON, or not a JSON object.
    """
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise rule_error(f"arguments is not valid JSON ({exc})", fix=fix_json) from None
    if not isinstance(parsed, dict):
        raise rule_error(
            f"arguments holds a JSON {json_type_name(parsed)}; it must hold an object",
            fix=fix_object,
        )


_WEIGHT_ERRORS = ("literal_error", "int_type", "greater_than_equal", "less_than_equal")


def _preview(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation can hold (through Optional, list, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return found
    for arg in typing.get_args(annotation):
        for model in _models_in(arg):
            if model not in found:
                found.append(model)
    return found


@cache
def _child_model(model: type[BaseModel], field: str) -> type[BaseModel] | None:
    info = model.model_fields.get(field)
    if info is None:
        return None
    models = _models_in(info.annotation)
    # Several candidates means a tagged union: the next location segment is the tag.
    return models[0] if len(models) == 1 else None


def _walk(
    root: type[BaseModel] | None, loc: tuple[int | str, ...], tags: Mapping[str, Any]
) -> tuple[str, type[BaseModel] | None, str | None]:
    """Return the JSON path, the model that holds the last key, and the last key."""
    path = ""
    current = root
    parent: type[BaseModel] | None = None
    last: str | None = None
    for seg in loc:
        if isinstance(seg, int):
            path += f"[{seg}]"
            continue
        if seg in tags:
            current = tags[seg]
            continue
        path = f"{path}.{seg}" if path else seg
        parent, last = current, seg
        current = _child_model(current, seg) if current is not None else None
    return path, parent, last


def _join(path: str, extra: str) -> str:
    if not extra:
        return path
    if not path or extra.startswith("["):
        return path + extra
    return f"{path}.{extra}"


def _explain(
    err: ErrorDetails, path: str, parent: type[BaseModel] | None, key: str | None
) -> tuple[str, str, str]:
    """Return ``(path, problem, fix)`` for one pydantic error."""
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == RULE_ERROR:
        return _join(path, str(ctx.get("field", ""))), err["msg"], str(ctx.get("fix", ""))
    if key == "weight" and kind in _WEIGHT_ERRORS:
        got = (
            str(value)
            if isinstance(value, int) and not isinstance(value, bool)
            else f"{json_type_name(value)} {_preview(value)}"
        )
        return (
            path,
            f"weight must be 0 or 1, got {got}",
            "use 1 to train on this assistant turn or 0 to keep it as context only",
        )
    if kind == "extra_forbidden":
        allowed = sorted(parent.model_fields) if parent is not None else []
        close = difflib.get_close_matches(key or "", allowed, n=1)
        if key in _KEY_HINTS:
            fix = _KEY_HINTS[key]
        elif close:
            fix = f"did you mean '{close[0]}'?"
        else:
            fix = "remove it" + (f"; allowed keys are: {', '.join(allowed)}" if allowed else "")
        return path, f"unknown key '{key}'", fix
    if kind == "missing":
        return path, f"required key '{key}' is missing", f"add '{key}'"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _explain_union(kind, ctx, value, path)
    if kind == "literal_error":
        if key == "type" and value == "image_url":
            return path, "image parts are not allowed here", "images go in user messages only"
        fix = "these lists hold assistant messages only" if key == "role" else "fix the value"
        return path, f"must be {ctx.get('expected')}, got {_preview(value)}", fix
    if kind == "string_too_short":
        return path, "must not be empty", f"give '{key}' a value"
    if kind in ("too_short", "too_long"):
        return _explain_length(ctx, key, path)
    expected = {
        "string_type": "a string",
        "bool_type": "true or false",
        "int_type": "an integer",
        "list_type": "an array",
        "dict_type": "an object",
        "model_type": "an object",
    }.get(kind)
    if expected is not None:
        if key == "arguments" and isinstance(value, Mapping):
            fix = "the API expects a JSON string: serialise the arguments with json.dumps"
        else:
            fix = f"make it {expected}"
        return path, f"must be {expected}, got {json_type_name(value)} {_preview(value)}", fix
    return path, err["msg"], "fix the value"


def _explain_union(
    kind: str, ctx: Mapping[str, Any], value: Any, path: str
) -> tuple[str, str, str]:
    # The discriminator functions are named after what they pick: _role_tag, _content_tag...
    disc = str(ctx.get("discriminator", ""))
    family = next((name for name in ("role", "content", "part") if name in disc), "")
    if family == "content":
        return (
            path,
            f"must be a string or an array of content parts, got {json_type_name(value)}",
            "write the text as a string, or as parts of type text (and image_url for users)",
        )
    field = "role" if family == "role" else "type"
    noun = "message" if family == "role" else "content part"
    if not isinstance(value, Mapping):
        return (
            path,
            f"each {noun} must be an object, got {json_type_name(value)} {_preview(value)}",
            f"write the {noun} as a JSON object",
        )
    if kind == "union_tag_not_found":
        got = value.get(field)
        if got is None:
            return _join(path, field), f"the {noun} has no '{field}'", f"add a '{field}'"
        return (
            _join(path, field),
            f"'{field}' must be a string, got {json_type_name(got)} {_preview(got)}",
            f"make '{field}' a string",
        )
    expected = [
        tag.strip().strip("'").split(":", 1)[-1]
        for tag in str(ctx.get("expected_tags", "")).split(",")
        if tag.strip()
    ]
    bad = str(ctx.get("tag", "")).split(":", 1)[-1]
    fix = f"use one of: {', '.join(expected)}"
    if family == "role" and bad == "system" and "system" not in expected:
        fix = "reinforcement examples have no system role; use a developer message instead"
    label = "role" if family == "role" else "content part type"
    return _join(path, field), f"unknown {label} '{bad}'", fix


def _explain_length(ctx: Mapping[str, Any], key: str | None, path: str) -> tuple[str, str, str]:
    if key in ("preferred_output", "non_preferred_output"):
        return (
            path,
            f"must hold exactly one assistant message, got {ctx.get('actual_length')}",
            "put the single assistant answer in a one-element list",
        )
    if key == "messages" and not ctx.get("actual_length"):
        return path, "the messages list is empty", "add the conversation's messages"
    low = ctx.get("min_length")
    if low is not None and ctx.get("actual_length", 0) < low:
        return path, f"must hold at least {low} item(s)", "add the missing item"
    return path, f"must hold at most {ctx.get('max_length')} item(s)", "remove the extra items"


def _most_telling(errors: list[ErrorDetails]) -> ErrorDetails:
    """Pick the error to report: the one that explains the others.

    A wrong ``type``/``role`` explains the keys that then look unknown or missing; an unknown key
    is usually a typo of the missing key next to it.
    """
    for err in errors:
        if err["type"] == "literal_error" and err["loc"] and err["loc"][-1] in ("type", "role"):
            return err
    missing_parents = {tuple(e["loc"][:-1]) for e in errors if e["type"] == "missing"}
    for err in errors:
        if err["type"] == "extra_forbidden" and tuple(err["loc"][:-1]) in missing_parents:
            return err
    return errors[0]


def to_example_error(
    exc: ValidationError,
    root: type[BaseModel] | None,
    *,
    tags: Mapping[str, Any],
    line: int | None = None,
    where: str | None = None,
    prefix: str = "",
) -> ExampleValidationError:
    """Build the error a user sees from pydantic's report about ``root``.

    Args:
        exc: pydantic's error.
        root: The model that was validated, or ``None`` for a bare type adapter.
        tags: Union tags (``role:assistant``...) mapped to the model each selects, or ``None``.
        line: The 1-based line the record came from.
        where: How to name the record's place (``"line 3"``, ``"conversation 2"``); defaults to
            the line.
        prefix: A path to put before every field path (``turns[2]``).

    Returns:
        An ``ExampleValidationError`` naming the first problem's field, with a how-to-fix hint.
    """
    errors = exc.errors(include_url=False)
    first = _most_telling(errors)
    path, parent, key = _walk(root, tuple(first["loc"]), tags)
    path, problem, fix = _explain(first, path, parent, key)
    path = _join(prefix, path) if prefix else path
    if where is None and line is not None:
        where = f"line {line}"
    head = ": ".join(part for part in (where, path) if part)
    message = f"{head}: {problem}" if head else problem
    if fix:
        message += f"; {fix}"
    if len(errors) > 1:
        others = len(errors) - 1
        message += f" (and {others} more problem{'s' if others > 1 else ''} in this record)"
    return ExampleValidationError(message, line=line, field=path or None)
