r"""Plain-text and HTML tables for comparisons and evaluation reports.

Every cell is text; HTML output escapes every cell, so model answers (which may hold markup) are
shown, never interpreted. Control characters are shown escaped (``\x1b``) in both: a model's
answer printed raw could recolour or clear the terminal, ring its bell, retitle the window or,
with a right-to-left override, reorder what the table seems to say.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependencyError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "dataframe",
    "escape_controls",
    "format_float",
    "format_signed",
    "html_table",
    "shorten",
    "text_table",
]

_MIN_COLUMN = 8

# C0 controls but tab and newline, DEL, C1 controls, and the invisible marks that reorder or hide
# text (bidirectional overrides and isolates, zero-width and directional marks).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def escape_controls(text: str) -> str:
    r"""Return ``text`` with control characters written as escapes; tab and newline are kept.

    Examples:
        >>> escape_controls("red \x1b[31malert\x07\r\nnext")
        'red \\x1b[31malert\\x07\nnext'
    """

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    return _CONTROLS.sub(escape, text.replace("\r\n", "\n"))


def shorten(text: str, width: int) -> str:
    """Return ``text`` on one line, cut to ``width`` characters with an ellipsis when longer."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    return flat[: max(width - 1, 0)] + "…"


def format_float(value: float | None, digits: int = 3) -> str:
    """Format a number for a table, or ``-`` when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"


def format_signed(value: float | None, digits: int = 3) -> str:
    """Format a difference with its sign, or ``-`` when there is none."""
    return "-" if value is None else f"{value:+.{digits}f}"


def _column_widths(natural: list[int], total: int) -> list[int]:
    # Shrink the widest column one character at a time: narrow columns (numbers, names) keep
    # their natural width and the long text columns share what is left.
    widths = list(natural)
    budget = total - 3 * len(widths) - 1
    while sum(widths) > budget:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= _MIN_COLUMN:
            break
        widths[widest] -= 1
    return widths


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, width: int = 100) -> str:
    r"""Render rows as an ASCII table whose long cells wrap inside their column.

    Args:
        headers: Column titles.
        rows: Cells, one sequence per row, as many as there are headers.
        width: The widest the table may be, in characters (columns never get narrower than 8).

    Returns:
        The table, lines joined with ``\n`` and no trailing newline.
    """
    headers = [escape_controls(h) for h in headers]
    rows = [[escape_controls(cell) for cell in row] for row in rows]
    natural = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            longest = max((len(line) for line in cell.splitlines()), default=0)
            natural[i] = max(natural[i], longest)
    widths = _column_widths(natural, width)
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def render(cells: Sequence[str]) -> list[str]:
        wrapped: list[list[str]] = []
        for cell, w in zip(cells, widths, strict=True):
            lines: list[str] = []
            for paragraph in cell.splitlines() or [""]:
                lines.extend(textwrap.wrap(paragraph, w, break_on_hyphens=False) or [""])
            wrapped.append(lines)
        height = max(len(lines) for lines in wrapped)
        out = []
        for k in range(height):
            parts = [
                (lines[k] if k < len(lines) else "").ljust(w)
                for lines, w in zip(wrapped, widths, strict=True)
            ]
            out.append("| " + " | ".join(parts) + " |")
        return out

    lines = [rule, *render(headers), rule.replace("-", "=")]
    for row in rows:
        lines.extend(render(row))
        lines.append(rule)
    if not rows:
        lines.append(rule)
    return "\n".join(lines)


def html_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, caption: str | None = None
) -> str:
    """Render rows as an HTML table, every cell escaped.

    Args:
        headers: Column titles.
        rows: Cells, one sequence per row.
        caption: A caption shown above the table.

    Returns:
        The ``<table>`` element as a string.
    """
    cell_style = 'style="text-align:left;vertical-align:top;white-space:pre-wrap"'
    headers = [escape_controls(h) for h in headers]
    rows = [[escape_controls(cell) for cell in row] for row in rows]
    caption = escape_controls(caption) if caption is not None else None
    parts = ["<table>"]
    if caption is not None:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    parts.append(
        "<thead><tr>"
        + "".join(f"<th {cell_style}>{html.escape(h)}</th>" for h in headers)
        + "</tr></thead><tbody>"
    )
    for row in rows:
        parts.append(
            "<tr>" + "".join(f"<td {cell_style}>{html.escape(c)}</td>" for c in row) + "</tr>"
        )
    parts.append("</tbody></table>")
    return "".join(parts)


def dataframe(rows: list[dict[str, Any]], index: str) -> pd.DataFrame:
    """Build a DataFrame from row dicts, indexed by one of their keys.

    Raises:
        MissingDependencyError: pandas is not installed.
    """
    try:
        import pandas
    except ImportError as exc:  # pragma: no cover - pandas is installed where tests run
        raise MissingDependencyError(
            "to_dataframe() needs pandas: pip install 'finetune-kit[pandas]'",
            package="pandas",
            extra="pandas",
        ) from exc
    # Annotated because pandas-stubs type the constructor's result as Any.
    frame: pd.DataFrame = pandas.DataFrame(rows)
    indexed: pd.DataFrame = frame.set_index(index) if rows else frame
    return indexed
