r"""Streaming JSONL reading and writing that keeps line numbers.

Reading never loads the whole file: lines are decoded one at a time, so a 300 MB file costs the
memory of its longest line. Every line keeps its 1-based number and its byte offset, so a problem
can be reported exactly where an editor would show it.

Example:
    >>> from finetune_kit.data.jsonl import iter_lines
    >>> for line in iter_lines(b'{"a": 1}\n\n{"a": 2}\n'):
    ...     print(line.number, line.problem or line.value)
    1 {'a': 1}
    2 blank_line
    3 {'a': 2}
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Union

from ..errors import JSONLDecodeError

__all__ = ["JsonlLine", "JsonlSource", "dumps_line", "iter_lines", "read_jsonl", "write_jsonl"]

JsonlSource = Union[str, "os.PathLike[str]", bytes, IO[bytes]]
"""A path, the file's bytes, or a binary file object."""

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class JsonlLine:
    """One line of a JSONL file.

    Attributes:
        number: 1-based line number.
        offset: Byte offset of the line's first byte in the file.
        text: The decoded line without its line ending; ``None`` when it is not valid UTF-8.
        value: The parsed JSON value; ``None`` when the line has a problem.
        problem: ``None``, or one of ``"blank_line"``, ``"invalid_utf8"``, ``"invalid_json"``.
        detail: What is wrong, in words, when there is a problem.
        problem_offset: Byte offset in the file where the problem is, when known.
    """

    number: int
    offset: int
    text: str | None
    value: Any = None
    problem: str | None = None
    detail: str | None = None
    problem_offset: int | None = None


def _open(source: JsonlSource) -> tuple[IO[bytes], bool]:
    """Return a binary stream for ``source`` and whether we own it (and must close it)."""
    if isinstance(source, bytes):
        return io.BytesIO(source), True
    if isinstance(source, (str, os.PathLike)):
        return open(source, "rb"), True
    return source, False


def iter_lines(source: JsonlSource, *, parse: bool = True) -> Iterator[JsonlLine]:
    r"""Yield every line of a JSONL source, problems included, without raising on bad lines.

    A UTF-8 byte-order mark at the start is skipped (Azure accepts such files), ``\r\n`` endings
    are treated like ``\n``, and a missing final newline is fine.

    Args:
        source: A path, the file's bytes, or a binary file object.
        parse: Parse each line as JSON; with ``False`` only decoding problems are reported.

    Yields:
        One ``JsonlLine`` per line, blank lines included (with ``problem="blank_line"``).
    """
    stream, owned = _open(source)
    try:
        offset = 0
        for number, raw in enumerate(stream, start=1):
            start = offset
            offset += len(raw)
            body = raw
            if number == 1 and body.startswith(_BOM):
                body = body[len(_BOM) :]
                start_of_body = start + len(_BOM)
            else:
                start_of_body = start
            body = body.rstrip(b"\r\n")
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = start_of_body + exc.start
                yield JsonlLine(
                    number,
                    start,
                    None,
                    problem="invalid_utf8",
                    detail=f"invalid UTF-8 at byte offset {bad} ({exc.reason})",
                    problem_offset=bad,
                )
                continue
            if not text.strip():
                yield JsonlLine(number, start, text, problem="blank_line", detail="blank line")
                continue
            if not parse:
                yield JsonlLine(number, start, text)
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                # exc.pos counts characters; the offset we report counts bytes, as editors do.
                bad = start_of_body + len(text[: exc.pos].encode("utf-8"))
                yield JsonlLine(
                    number,
                    start,
                    text,
                    problem="invalid_json",
                    detail=f"{exc.msg} at column {exc.colno}",
                    problem_offset=bad,
                )
                continue
            yield JsonlLine(number, start, text, value=value)
    finally:
        if owned:
            stream.close()


def read_jsonl(source: JsonlSource, *, path: str | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, value)`` for every non-blank line; raise on the first bad one.

    Args:
        source: A path, the file's bytes, or a binary file object.
        path: A name to put in error messages when ``source`` is not a path.

    Raises:
        JSONLDecodeError: A line is not valid UTF-8 or not valid JSON.
    """
    if path is None and isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
    where = f"{path}:" if path else "line "
    for line in iter_lines(source):
        if line.problem == "blank_line":
            continue
        if line.problem is not None:
            fix = (
                "save the file as UTF-8"
                if line.problem == "invalid_utf8"
                else "put exactly one JSON object on each line"
            )
            raise JSONLDecodeError(
                f"{where}{line.number}: {line.detail}; {fix}",
                line=line.number,
                offset=line.problem_offset,
                path=path,
            )
        yield line.number, line.value


def dumps_line(value: Any) -> str:
    """Serialise one record as a compact JSON line (no trailing newline), UTF-8 kept as is.

    Objects with a ``to_dict()`` method (finetune_kit's records) are converted first.
    """
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        value = to_dict()
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def write_jsonl(rows: Iterable[Any], dest: str | os.PathLike[str] | IO[bytes]) -> int:
    r"""Write one compact JSON record per line, UTF-8, ``\n`` endings.

    A path is written atomically: to a temporary file first, then renamed, so a crash never
    leaves a half-written training file behind.

    Args:
        rows: Records (anything ``dumps_line`` accepts).
        dest: A path, or a binary file object to write into.

    Returns:
        The number of records written.
    """
    if not isinstance(dest, (str, os.PathLike)):
        return _write_rows(rows, dest)
    target = Path(dest)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as out:
            count = _write_rows(rows, out)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _write_rows(rows: Iterable[Any], out: IO[bytes]) -> int:
    count = 0
    for row in rows:
        out.write(dumps_line(row).encode("utf-8"))
        out.write(b"\n")
        count += 1
    return count
