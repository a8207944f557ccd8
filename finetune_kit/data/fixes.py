r"""Safe automatic fixes for training data, returning a new dataset and every change made.

Only fixes that cannot change what a model learns are made: trimming whitespace around
message text, dropping blank lines, removing a byte-order mark and CRLF endings (the rows are
written afresh), adding a system prompt to examples that have none (only when asked), and
dropping exact duplicates. Lines that cannot be read (invalid UTF-8 or JSON, or not an
object) are never guessed at: they are left out, counted among the changes and listed, to be
fixed by hand.

Every row keeps the line number it had in the input (``FixResult.lines``): ``result.dataset``
and ``preflight(result)`` name the line of the user's file, not the row's position after the
dropped lines.

Example:
    >>> from finetune_kit.data.fixes import autofix
    >>> data = b'{"messages": [{"role": "user", "content": " Hi "}]}\n\n'
    >>> result = autofix(data, system_prompt="Be brief.")
    >>> result.rows[0]["messages"][0], result.rows[0]["messages"][1]["content"]
    ({'role': 'system', 'content': 'Be brief.'}, 'Hi')
    >>> [(change.line, change.action) for change in result.changes]
    [(1, 'add_system_prompt'), (1, 'strip_whitespace'), (2, 'drop_blank_line')]
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigurationError
from .jsonl import JsonlLine, iter_lines, write_jsonl
from .rules import detect_line_kind

__all__ = ["Change", "FixAction", "FixResult", "Unreadable", "autofix"]

FixAction = Literal[
    "strip_whitespace",
    "drop_blank_line",
    "remove_byte_order_mark",
    "normalize_line_endings",
    "add_system_prompt",
    "drop_duplicate",
    "drop_unreadable_line",
]


@dataclass(frozen=True)
class Change:
    """One change ``autofix`` made.

    Attributes:
        line: The input line (or position) changed, ``None`` for the whole file.
        action: What was done.
        field: The field changed, such as ``messages[1].content``.
        detail: The change in words.
    """

    line: int | None
    action: FixAction
    field: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """Return the change as a JSON-ready dict."""
        return {
            "line": self.line,
            "action": self.action,
            "field": self.field,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Unreadable:
    """A line ``autofix`` could not read and so left out.

    Attributes:
        line: The input line.
        problem: ``invalid_utf8``, ``invalid_json`` or ``data_type``.
        detail: What is wrong.
    """

    line: int
    problem: str
    detail: str


@dataclass(frozen=True)
class FixResult:
    """The fixed rows and the list of changes.

    Attributes:
        rows: The fixed examples, as JSON objects, in input order.
        changes: Every change made, in line order (unreadable lines left out included).
        unreadable: Lines left out because they could not be read.
        lines: The input line (or position) of each row, so problems found in the fixed
            data name the line of the original file.

    Example:
        >>> result = autofix([{"messages": [{"role": "user", "content": "Hi  "}]}] * 2)
        >>> len(result), [change.action for change in result.changes]
        (1, ['strip_whitespace', 'strip_whitespace', 'drop_duplicate'])
    """

    rows: tuple[dict[str, Any], ...]
    changes: tuple[Change, ...]
    unreadable: tuple[Unreadable, ...] = ()
    lines: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    @property
    def dataset(self) -> Any:
        """The rows as a ``finetune_kit.data.dataset.Dataset`` (parsed strictly on access).

        Raises:
            ExampleValidationError: A row still breaks the schema (autofix fixes only what
                is safe; run preflight on the result to see what is left). It names the
                row's line in the input.
        """
        # Imported on use: records and pydantic are not needed to fix a file.
        from .dataset import Dataset

        return Dataset._parse(self.iter_numbered(), None)

    def iter_dicts(self) -> Iterator[dict[str, Any]]:
        """Yield the rows (so a ``FixResult`` can be passed to ``preflight`` directly)."""
        return iter(self.rows)

    def iter_numbered(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(input line, row)`` pairs; ``preflight`` reports these line numbers."""
        lines = self.lines if len(self.lines) == len(self.rows) else range(1, len(self.rows) + 1)
        return zip(lines, self.rows, strict=True)

    def to_jsonl(self, dest: Any) -> int:
        """Write the rows as JSONL (atomically for a path); return how many were written."""
        return write_jsonl(self.rows, dest)

    def to_jsonl_bytes(self) -> bytes:
        """Return the rows as JSONL bytes."""
        return b"".join(
            json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
            for row in self.rows
        )


def _lines(source: Any) -> Iterator[JsonlLine]:
    if isinstance(source, str) and (source.lstrip().startswith(("{", "[")) or "\n" in source):
        raise ConfigurationError(
            "source looks like JSONL text, but a str is read as a path; pass text.encode()",
            param="source",
        )
    if isinstance(source, (bytes, bytearray, memoryview, str)) or hasattr(source, "read"):
        yield from iter_lines(
            bytes(source) if isinstance(source, (bytearray, memoryview)) else source
        )
        return
    if hasattr(source, "__fspath__"):
        yield from iter_lines(source)
        return
    iter_dicts = getattr(source, "iter_dicts", None)
    rows = iter_dicts() if callable(iter_dicts) else source
    for number, row in enumerate(rows, start=1):
        to_dict = getattr(row, "to_dict", None)
        value = to_dict() if callable(to_dict) else copy.deepcopy(row)
        yield JsonlLine(number, 0, None, value=value)


_PROBLEM_WORDS = {
    "invalid_utf8": "invalid UTF-8",
    "invalid_json": "invalid JSON",
    "data_type": "not a JSON object",
}


def _left_out(lost: Unreadable) -> str:
    what = _PROBLEM_WORDS.get(lost.problem, lost.problem)
    return f"left out, {what} ({lost.detail}): fix the line by hand"


def _strip_content(content: Any, field: str, changes: list[tuple[str, str]]) -> Any:
    if isinstance(content, str):
        stripped = content.strip()
        if stripped != content and stripped:
            changes.append(
                (field, f"trimmed {len(content) - len(stripped)} whitespace character(s)")
            )
            return stripped
        return content
    if isinstance(content, list):
        for index, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "text":
                part["text"] = _strip_content(part.get("text"), f"{field}[{index}].text", changes)
    return content


def _strip_messages(messages: Any, prefix: str, changes: list[tuple[str, str]]) -> None:
    if not isinstance(messages, list):
        return
    for index, message in enumerate(messages):
        if isinstance(message, dict) and "content" in message:
            message["content"] = _strip_content(
                message["content"], f"{prefix}[{index}].content", changes
            )


def _strip_example(row: dict[str, Any]) -> list[tuple[str, str]]:
    changes: list[tuple[str, str]] = []
    _strip_messages(row.get("messages"), "messages", changes)
    source = row.get("input")
    if isinstance(source, dict):
        _strip_messages(source.get("messages"), "input.messages", changes)
    for key in ("preferred_output", "non_preferred_output"):
        _strip_messages(row.get(key), key, changes)
    return changes


def _add_system(row: dict[str, Any], prompt: str, role: str) -> str | None:
    kind = detect_line_kind(row)
    holder = row
    prefix = "messages"
    if kind == "preference":
        source = row.get("input")
        if not isinstance(source, dict):
            return None
        holder, prefix = source, "input.messages"
    messages = holder.get("messages")
    if not isinstance(messages, list):
        return None
    has_system = any(
        isinstance(m, dict) and m.get("role") in ("system", "developer") for m in messages
    )
    if has_system:
        return None
    messages.insert(0, {"role": role, "content": prompt})
    return f"{prefix}[0]"


def autofix(
    source: Any,
    *,
    strip_whitespace: bool = True,
    system_prompt: str | None = None,
    system_role: Literal["system", "developer"] = "system",
    drop_duplicates: bool = True,
) -> FixResult:
    """Apply the safe fixes and return the new rows with the list of changes.

    Blank lines, a byte-order mark and CRLF endings always go (the rows are rewritten as
    clean JSONL); the other fixes can be switched off.

    Args:
        source: A JSONL path, its bytes, a binary file object, a ``Dataset``, or an iterable
            of records or dicts (never modified: they are copied).
        strip_whitespace: Trim whitespace around message text (never to nothing).
        system_prompt: Add this as the first message of every example with no system or
            developer message.
        system_role: The role of the added message: ``developer`` for reinforcement data.
        drop_duplicates: Keep the first of identical examples (compared after the other
            fixes).

    Returns:
        A ``FixResult``: ``.rows``, ``.changes``, ``.unreadable`` and ``.dataset``. The fixed
        rows are held in memory.

    Raises:
        ConfigurationError: ``source`` is a str holding JSONL text rather than a path.
    """
    rows: list[dict[str, Any]] = []
    numbers: list[int] = []
    changes: list[Change] = []
    unreadable: list[Unreadable] = []
    seen: dict[bytes, int] = {}
    crlf_lines = 0
    first_crlf: int | None = None
    for line in _lines(source):
        number = line.number
        if line.bom:
            changes.append(Change(number, "remove_byte_order_mark", None, "removed the BOM"))
        if line.crlf:
            crlf_lines += 1
            first_crlf = first_crlf or number
        if line.problem == "blank_line":
            changes.append(Change(number, "drop_blank_line", None, "dropped a blank line"))
            continue
        row = line.value
        if line.problem is not None or not isinstance(row, dict):
            lost = (
                Unreadable(number, line.problem, line.detail or line.problem)
                if line.problem is not None
                else Unreadable(number, "data_type", "the line is not a JSON object")
            )
            unreadable.append(lost)
            # Counted as a change: the fixed file has one example fewer, which a count of
            # the other changes alone would hide.
            changes.append(Change(number, "drop_unreadable_line", None, _left_out(lost)))
            continue
        if system_prompt is not None:
            where = _add_system(row, system_prompt, system_role)
            if where is not None:
                changes.append(
                    Change(number, "add_system_prompt", where, f"added a {system_role} message")
                )
        if strip_whitespace:
            for field, detail in _strip_example(row):
                changes.append(Change(number, "strip_whitespace", field, detail))
        if drop_duplicates:
            canonical = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            key = hashlib.blake2b(
                canonical.encode("utf-8", "surrogatepass"), digest_size=16
            ).digest()
            first = seen.setdefault(key, number)
            if first != number:
                changes.append(Change(number, "drop_duplicate", None, f"same as line {first}"))
                continue
        rows.append(row)
        numbers.append(number)
    if crlf_lines:
        changes.append(
            Change(
                None,
                "normalize_line_endings",
                None,
                f"{crlf_lines} CRLF line ending(s) written as LF, the first at line {first_crlf}",
            )
        )
    changes.sort(key=lambda change: (change.line is not None, change.line or 0))
    return FixResult(tuple(rows), tuple(changes), tuple(unreadable), tuple(numbers))
