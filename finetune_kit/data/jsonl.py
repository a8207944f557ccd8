r"""Streaming JSONL reading and writing that keeps line numbers.

Reading never loads the whole file: it goes through the file in blocks split at newlines
(``iter_chunks``), so a 300 MB file costs the memory of one block plus its longest line. Every
line keeps its 1-based number and its byte offset, so a problem can be reported exactly where
an editor would show it. The same blocks feed preflight's worker processes, so the serial and
the parallel readers agree on every line number, offset and problem.

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
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple, Union

from ..errors import JSONLDecodeError

__all__ = [
    "BOM",
    "DEFAULT_CHUNK_BYTES",
    "JsonlLine",
    "JsonlSource",
    "LineChunk",
    "RawLine",
    "decode_line",
    "dumps_line",
    "iter_chunk_ranges",
    "iter_chunks",
    "iter_lines",
    "iter_raw_lines",
    "read_chunk",
    "read_jsonl",
    "write_jsonl",
]

JsonlSource = Union[str, "os.PathLike[str]", bytes, IO[bytes]]
"""A path, the file's bytes, or a binary file object."""

BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte-order mark, skipped at the start of a file."""

DEFAULT_CHUNK_BYTES = 1 << 20
"""Size of the blocks a file is read in (the last line of a block is never cut)."""


@dataclass(frozen=True)
class JsonlLine:
    r"""One line of a JSONL file.

    Attributes:
        number: 1-based line number.
        offset: Byte offset of the line's first byte in the file.
        text: The decoded line without its line ending; ``None`` when it is not valid UTF-8.
        value: The parsed JSON value; ``None`` when the line has a problem.
        problem: ``None``, or one of ``"blank_line"``, ``"invalid_utf8"``, ``"invalid_json"``.
        detail: What is wrong, in words, when there is a problem.
        problem_offset: Byte offset in the file where the problem is, when known.
        crlf: The line ended with ``\r\n`` rather than ``\n``.
        bom: The line (necessarily line 1) started with a UTF-8 byte-order mark.
    """

    number: int
    offset: int
    text: str | None
    value: Any = None
    problem: str | None = None
    detail: str | None = None
    problem_offset: int | None = None
    crlf: bool = False
    bom: bool = False


class LineChunk(NamedTuple):
    r"""A block of whole lines cut from a JSONL source.

    Attributes:
        first_line: The 1-based number of the block's first line.
        offset: Byte offset of the block in the file.
        data: The bytes; every line but possibly the file's last ends with ``\n``.
    """

    first_line: int
    offset: int
    data: bytes


class RawLine(NamedTuple):
    r"""One undecoded line.

    Attributes:
        number: 1-based line number.
        offset: Byte offset of the line's first byte in the file.
        body: The line's bytes without its ending (``\n``, ``\r\n``) and without a BOM.
        body_offset: Byte offset of ``body`` (3 past ``offset`` after a BOM).
        crlf: The line ended with ``\r\n``.
        bom: The line started with a UTF-8 byte-order mark.
    """

    number: int
    offset: int
    body: bytes
    body_offset: int
    crlf: bool
    bom: bool


def _open(source: JsonlSource) -> tuple[IO[bytes], bool]:
    """Return a binary stream for ``source`` and whether we own it (and must close it)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(source), True
    if isinstance(source, (str, os.PathLike)):
        return open(source, "rb"), True
    return source, False


def iter_chunks(
    source: JsonlSource, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Generator[LineChunk, None, None]:
    """Cut a JSONL source into blocks of whole lines, about ``chunk_bytes`` each.

    A line longer than ``chunk_bytes`` makes its block longer; nothing else is held.

    Args:
        source: A path, the file's bytes, or a binary file object.
        chunk_bytes: The size of each read.

    Yields:
        ``LineChunk`` blocks in file order.
    """
    stream, owned = _open(source)
    try:
        line = 1
        offset = 0
        pending: list[bytes] = []
        while True:
            block = stream.read(chunk_bytes)
            if not block:
                break
            cut = block.rfind(b"\n")
            if cut < 0:
                pending.append(block)
                continue
            head = block[: cut + 1]
            data = b"".join((*pending, head)) if pending else head
            pending = [block[cut + 1 :]] if cut + 1 < len(block) else []
            yield LineChunk(line, offset, data)
            line += data.count(b"\n")
            offset += len(data)
        if pending:
            yield LineChunk(line, offset, b"".join(pending))
    finally:
        if owned:
            stream.close()


def iter_chunk_ranges(
    path: str | os.PathLike[str], chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[tuple[int, int]]:
    """Cut a file into ``(offset, length)`` ranges of whole lines without reading it all.

    Only a small window after each cut point is read, to move the cut past the next newline,
    so other processes can each read their own ranges.

    Args:
        path: The file.
        chunk_bytes: The approximate size of each range.

    Yields:
        ``(offset, length)`` pairs covering the file, in order.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as stream:
        start = 0
        while start < size:
            cut = start + chunk_bytes
            if cut >= size:
                yield start, size - start
                return
            stream.seek(cut)
            while True:
                window = stream.read(64 * 1024)
                if not window:
                    cut = size
                    break
                newline = window.find(b"\n")
                if newline >= 0:
                    cut += newline + 1
                    break
                cut += len(window)
            yield start, cut - start
            start = cut


def read_chunk(stream: IO[bytes], offset: int, length: int, first_line: int = 1) -> LineChunk:
    """Read one range from ``iter_chunk_ranges`` as a ``LineChunk``.

    Args:
        stream: The file, open in binary mode.
        offset: Where the range starts.
        length: Its length.
        first_line: The number to give its first line (1 when it is not known yet).

    Returns:
        The block.
    """
    stream.seek(offset)
    return LineChunk(first_line, offset, stream.read(length))


def iter_raw_lines(chunk: LineChunk) -> Iterator[RawLine]:
    """Split one block into its lines, undecoded.

    Args:
        chunk: A block from ``iter_chunks``.

    Yields:
        One ``RawLine`` per line; an empty last piece (after the final newline) is not a line.
    """
    number, offset, data = chunk
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    for raw in pieces:
        start = offset
        offset += len(raw) + 1
        body = raw
        body_offset = start
        bom = start == 0 and raw.startswith(BOM)
        if bom:
            body = raw[len(BOM) :]
            body_offset += len(BOM)
        crlf = body.endswith(b"\r")
        if crlf:
            body = body.rstrip(b"\r")
        yield RawLine(number, start, body, body_offset, crlf, bom)
        number += 1


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# NaN and Infinity are Python extensions the API does not accept; one decoder is made once
# because passing parse_constant to json.loads would build a new decoder for every line.
_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def decode_line(raw: RawLine, *, parse: bool = True) -> JsonlLine:
    """Decode and parse one raw line, turning every problem into a ``JsonlLine.problem``.

    Args:
        raw: A line from ``iter_raw_lines``.
        parse: Parse the text as JSON; with ``False`` only decoding problems are reported.

    Returns:
        The line; never raises on bad content.
    """
    number, start, body, body_offset, crlf, bom = raw
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = body_offset + exc.start
        return JsonlLine(
            number,
            start,
            None,
            problem="invalid_utf8",
            detail=f"invalid UTF-8 at byte offset {bad} ({exc.reason})",
            problem_offset=bad,
            crlf=crlf,
            bom=bom,
        )
    if not text.strip():
        return JsonlLine(
            number, start, text, problem="blank_line", detail="blank line", crlf=crlf, bom=bom
        )
    if not parse:
        return JsonlLine(number, start, text, crlf=crlf, bom=bom)
    try:
        value = _decoder.decode(text)
    except json.JSONDecodeError as exc:
        # exc.pos counts characters; the offset we report counts bytes, as editors do.
        bad = body_offset + len(text[: exc.pos].encode("utf-8", "surrogatepass"))
        return JsonlLine(
            number,
            start,
            text,
            problem="invalid_json",
            detail=f"{exc.msg} at column {exc.colno}",
            problem_offset=bad,
            crlf=crlf,
            bom=bom,
        )
    except (ValueError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return JsonlLine(
            number,
            start,
            text,
            problem="invalid_json",
            detail=detail,
            problem_offset=body_offset,
            crlf=crlf,
            bom=bom,
        )
    return JsonlLine(number, start, text, value=value, crlf=crlf, bom=bom)


def iter_lines(source: JsonlSource, *, parse: bool = True) -> Iterator[JsonlLine]:
    r"""Yield every line of a JSONL source, problems included, without raising on bad lines.

    A UTF-8 byte-order mark at the start is skipped (Azure accepts such files), ``\r\n`` endings
    are treated like ``\n`` (and flagged with ``crlf``), and a missing final newline is fine.

    Args:
        source: A path, the file's bytes, or a binary file object.
        parse: Parse each line as JSON; with ``False`` only decoding problems are reported.

    Yields:
        One ``JsonlLine`` per line, blank lines included (with ``problem="blank_line"``).
    """
    for chunk in iter_chunks(source):
        for raw in iter_raw_lines(chunk):
            yield decode_line(raw, parse=parse)


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
