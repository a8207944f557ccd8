"""Template strings: ``{{ sample.output_text }}``, ``{{ item.answer }}`` and JSON paths into them.

OpenAI's graders substitute every ``{{ namespace.variable }}`` in their text fields. The
namespaces are ``sample`` (the model's answer: ``output_text``, ``output_json``,
``output_tools``, ``choices``, ``output_audio``) and ``item`` (the dataset row). A variable is
a path: ``.key`` into an object, ``[n]`` into an array, as in
``{{sample.output_tools[0].function.name}}``. Spaces inside the braces are optional.

A template is parsed once, when its grader is compiled: an unknown namespace or a ``{{`` that
is never closed is a :class:`GraderValidationError` naming the grader and the field. A variable
that is missing when the template is rendered is the sample's problem, not the grader's:
rendering raises :class:`TemplateVariableError`, which the grader turns into a reward of 0 with
``invalid_variable_error`` set (``sample_parse_error`` when the path is under
``sample.output_json`` and the sample is not JSON).

Values render as they are when they are strings and as JSON otherwise (``{"a": 1}``, ``3``,
``true``, ``null``).

Examples:
    >>> t = Template.parse("Is {{ sample.output_text }} {{item.city}}?", grader="g", field="input")
    >>> t.render({"sample": {"output_text": "Paris"}, "item": {"city": "the capital"}})
    'Is Paris the capital?'
    >>> t.variables
    ('sample.output_text', 'item.city')
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import GraderValidationError

__all__ = ["NAMESPACES", "Template", "TemplateVariableError"]

NAMESPACES = ("item", "sample")
"""The namespaces a template variable may start with."""

# One path step after the namespace: ".key" (anything but separators, braces and spaces) or
# "[index]".
_STEP = re.compile(r"\.([^.\[\]{}\s]+)|\[(\d+)\]")
_NAMESPACE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A stray "}}" reads as a typo for a template only when it closes something shaped like one
# ("{item.x}}"): JSON examples in prompts close nested objects with "}}" all the time.
_HALF_OPENED = re.compile(r"(?<!\{)\{\s*[A-Za-z_]\w*(?:\.[^{}\s]+|\[\d+\])+\s*\}\}")


class TemplateVariableError(LookupError):
    """A template's variable is missing from the sample or the item it is rendered with.

    Attributes:
        variable: The variable as written, such as ``item.answer``.
        sample_parse: True when the path is under ``sample.output_json`` and the sample was
            not valid JSON (OpenAI's ``sample_parse_error``), False for any other missing value
            (``invalid_variable_error``).
    """

    def __init__(self, message: str, *, variable: str, sample_parse: bool = False) -> None:
        super().__init__(message)
        self.variable = variable
        self.sample_parse = sample_parse

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class _Variable:
    text: str
    namespace: str
    steps: tuple[str | int, ...]

    def resolve(self, context: Mapping[str, Any]) -> Any:
        if self.namespace not in context:
            raise TemplateVariableError(
                f"{{{{{self.text}}}}}: the {self.namespace!r} namespace is empty here",
                variable=self.text,
            )
        value: Any = context[self.namespace]
        walked = self.namespace
        for step in self.steps:
            value = self._step(value, step, walked)
            walked += f"[{step}]" if isinstance(step, int) else f".{step}"
        return value

    def _step(self, value: Any, step: str | int, walked: str) -> Any:
        if isinstance(step, int):
            if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
                if step < len(value):
                    return value[step]
                raise self._missing(f"{walked} has {len(value)} item(s), so [{step}] is missing")
            raise self._missing(f"{walked} is {_kind(value)}, not an array")
        if isinstance(value, Mapping):
            if step in value:
                return value[step]
            keys = ", ".join(repr(k) for k in list(value)[:10]) or "none"
            raise self._missing(f"{walked} has no key {step!r} (its keys: {keys})")
        raise self._missing(f"{walked} is {_kind(value)}, not an object")

    def _missing(self, reason: str) -> TemplateVariableError:
        return TemplateVariableError(
            f"{{{{{self.text}}}}}: {reason}", variable=self.text, sample_parse=False
        )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    return "an array" if isinstance(value, Sequence) else type(value).__name__


def _render_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


class Template:
    """A parsed template string; render it with a ``{"sample": ..., "item": ...}`` context.

    Build one with :meth:`parse`. Rendering is a join of literal pieces and resolved
    variables: the text is never re-scanned, so a value containing ``{{`` is inserted as is.
    """

    __slots__ = ("_pieces", "source")

    def __init__(self, source: str, pieces: tuple[str | _Variable, ...]) -> None:
        self.source = source
        self._pieces = pieces

    @classmethod
    def parse(cls, text: str, *, grader: str | None, field: str) -> Template:
        """Parse ``text``; raise :class:`GraderValidationError` naming ``grader`` and ``field``.

        Args:
            text: The template string.
            grader: The name of the grader it belongs to, for the error message.
            field: The field it came from (``reference``, ``input[0].content``).

        Returns:
            The parsed template.

        Raises:
            GraderValidationError: A ``{{`` is never closed, a ``{{ }}`` holds no
                ``namespace.variable`` path, its namespace is not ``item`` or ``sample``, or a
                ``{item.x}}`` lacks a brace.
        """
        pieces: list[str | _Variable] = []
        pos = 0
        while True:
            start = text.find("{{", pos)
            if start < 0:
                rest = text[pos:]
                _check_stray_close(rest, text, grader=grader, field=field)
                if rest:
                    pieces.append(rest)
                break
            literal = text[pos:start]
            _check_stray_close(literal, text, grader=grader, field=field)
            end = text.find("}}", start + 2)
            reopened = text.find("{{", start + 2)
            if end < 0 or 0 <= reopened < end:
                raise _error(
                    f"the '{{{{' at character {start} is never closed with '}}}}'",
                    text,
                    grader=grader,
                    field=field,
                    fix="write each variable as {{ namespace.variable }}",
                )
            if literal:
                pieces.append(literal)
            pieces.append(_parse_variable(text[start + 2 : end], text, grader=grader, field=field))
            pos = end + 2
        return cls(text, tuple(pieces))

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables the template uses, as written (``sample.output_text``)."""
        return tuple(p.text for p in self._pieces if isinstance(p, _Variable))

    @property
    def is_constant(self) -> bool:
        """True when the template has no variable."""
        return not self.variables

    def render(self, context: Mapping[str, Any]) -> str:
        """Substitute every variable from ``context``.

        Args:
            context: ``{"sample": {...}, "item": {...}}``; a namespace absent from it makes its
                variables missing.

        Returns:
            The rendered string.

        Raises:
            TemplateVariableError: A variable's path is missing from the context.
        """
        out: list[str] = []
        for piece in self._pieces:
            if isinstance(piece, str):
                out.append(piece)
                continue
            try:
                value = piece.resolve(context)
            except TemplateVariableError as exc:
                if piece.namespace == "sample" and piece.steps[:1] == ("output_json",):
                    sample = context.get("sample")
                    if isinstance(sample, Mapping) and "output_json" not in sample:
                        raise TemplateVariableError(
                            f"{{{{{piece.text}}}}}: the sample is not valid JSON, so "
                            "sample.output_json is not set",
                            variable=piece.text,
                            sample_parse=True,
                        ) from None
                raise exc from None
            out.append(_render_value(value))
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def _parse_variable(inner: str, text: str, *, grader: str | None, field: str) -> _Variable:
    body = inner.strip()
    match = _NAMESPACE.match(body)
    namespace = match.group(0) if match else ""
    if namespace not in NAMESPACES:
        shown = namespace or body or "(nothing)"
        raise _error(
            f"{{{{{inner}}}}} uses the namespace {shown!r}; the namespaces are 'item' and 'sample'",
            text,
            grader=grader,
            field=field,
            fix="write {{ item.<field> }} or {{ sample.output_text }}",
        )
    steps: list[str | int] = []
    pos = len(namespace)
    while pos < len(body):
        step = _STEP.match(body, pos)
        if step is None:
            raise _error(
                f"{{{{{inner}}}}} is not a variable path: {body[pos:]!r} cannot follow "
                f"{body[:pos]!r}",
                text,
                grader=grader,
                field=field,
                fix="use .key for object keys and [n] for array items, without spaces",
            )
        steps.append(step.group(1) if step.group(1) is not None else int(step.group(2)))
        pos = step.end()
    if not steps:
        raise _error(
            f"{{{{{inner}}}}} names a namespace but no variable",
            text,
            grader=grader,
            field=field,
            fix=f"name a variable inside it, such as {{{{ {namespace}.<name> }}}}",
        )
    return _Variable(body, namespace, tuple(steps))


def _check_stray_close(piece: str, text: str, *, grader: str | None, field: str) -> None:
    half = _HALF_OPENED.search(piece)
    if half is not None:
        raise _error(
            f"{half.group(0)!r} closes with '}}}}' but opens with a single '{{'",
            text,
            grader=grader,
            field=field,
            fix="open it with '{{'",
        )


def _error(problem: str, text: str, *, grader: str | None, field: str, fix: str) -> Exception:
    shown = text if len(text) <= 80 else text[:77] + "..."
    who = f"grader {grader!r}" if grader else "grader"
    return GraderValidationError(
        f"{who}, field {field!r}: bad template {shown!r}: {problem}; {fix}.",
        grader=grader,
        field=field,
    )
