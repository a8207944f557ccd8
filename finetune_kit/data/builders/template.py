"""``TemplateBuilder``: rows of a table through user/assistant templates into chat examples."""

from __future__ import annotations

import difflib
import string
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from pydantic import field_validator

from ...errors import ExampleValidationError
from ..records import ChatExample
from .base import BuilderOptions, DatasetBuilder
from .rows import Row, RowFormat, is_missing, iter_rows, require_mapping

__all__ = ["TemplateBuilder", "template_columns"]


@cache
def template_columns(template: str) -> tuple[str, ...]:
    """The column names a ``str.format``-style template refers to, in order, without repeats.

    Raises:
        ValueError: The template is malformed, or has a positional field such as ``{}``.

    Examples:
        >>> template_columns("Tell me about {element} ({symbol}), {element}!")
        ('element', 'symbol')
    """
    names: list[str] = []
    for _, field, _, _ in string.Formatter().parse(template):
        if field is None:
            continue
        root = field.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise ValueError(
                f"templates name columns, like {{question}}; the positional field "
                f"{{{field}}} is not supported"
            )
        if root not in names:
            names.append(root)
    return tuple(names)


class TemplateBuilder(DatasetBuilder["TemplateBuilder.Options", ChatExample]):
    """Render each row of a table into a chat example with ``str.format``-style templates.

    Rows come from a CSV/TSV/JSONL path, a pandas ``DataFrame``, a Hugging Face dataset, or
    any iterable of dicts. ``{column}`` in a template is replaced by the row's value; write
    ``{{`` and ``}}`` for literal braces. A row without a column a template names, or with no
    value in it, is an error naming the row and the column.

    Examples:
        >>> rows = [{"element": "Neon", "poem": "Neon, a glow in the night..."}]
        >>> ds = TemplateBuilder().build(
        ...     rows, user="Tell me about {element}", assistant="{poem}", system="Elle"
        ... )
        >>> ds[0].messages[1].content
        'Tell me about Neon'
    """

    name = "template"

    class Options(BuilderOptions):
        """Options of the ``template`` builder.

        Attributes:
            user: The user message's template.
            assistant: The assistant message's template.
            system: A system message's template, if any.
            format: The file format when a path's suffix does not say (csv, tsv, jsonl).
            delimiter: The CSV delimiter.
        """

        user: str
        assistant: str
        system: str | None = None
        format: RowFormat | None = None
        delimiter: str | None = None

        @field_validator("user", "assistant", "system")
        @classmethod
        def _well_formed(cls, template: str | None) -> str | None:
            if template is not None:
                template_columns(template)  # raises ValueError naming the problem
            return template

    def examples(self, source: Any, options: Options) -> Iterator[ChatExample]:
        """Yield one single-turn chat example per row."""
        for row in iter_rows(source, format=options.format, delimiter=options.delimiter):
            values = require_mapping(row)
            system = _render(options.system, "system", row, values) if options.system else None
            user = _render(options.user, "user", row, values)
            assistant = _render(options.assistant, "assistant", row, values)
            yield ChatExample.single_turn(user, assistant, system=system)


def _render(template: str, which: str, row: Row, values: Mapping[str, Any]) -> str:
    for column in template_columns(template):
        if column not in values:
            names = [str(key) for key in values if key is not None]
            close = difflib.get_close_matches(column, names, n=1, cutoff=0.75)
            hint = f"did you mean {{{close[0]}}}? " if close else ""
            raise ExampleValidationError(
                f"{row.label}: the {which} template needs the column {column!r}, which this "
                f"row does not have (its columns: {', '.join(names)}); {hint}fix the template "
                "or the data",
                line=row.line,
                field=column,
            )
        if is_missing(values[column]):
            raise ExampleValidationError(
                f"{row.label}: the column {column!r} is empty; fill it in or filter the row out",
                line=row.line,
                field=column,
            )
    try:
        return template.format_map(values)
    except (LookupError, AttributeError, ValueError, TypeError) as exc:
        raise ExampleValidationError(
            f"{row.label}: the {which} template {template!r} cannot be rendered with this row: "
            f"{type(exc).__name__}: {exc}; fix the template or the data",
            line=row.line,
        ) from exc
