"""The streaming JSONL reader and writer: line numbers, offsets, and every kind of bad line."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune_kit.data.jsonl import (
    decode_line,
    dumps_line,
    iter_chunk_ranges,
    iter_chunks,
    iter_lines,
    iter_raw_lines,
    read_chunk,
    read_jsonl,
    write_jsonl,
)
from finetune_kit.errors import JSONLDecodeError


def test_lines_keep_numbers_offsets_and_values() -> None:
    data = b'{"a": 1}\n\n{"b": "\xc3\xa9"}\n'
    lines = list(iter_lines(data))
    assert [(line.number, line.offset) for line in lines] == [(1, 0), (2, 9), (3, 10)]
    assert lines[0].value == {"a": 1}
    assert lines[1].problem == "blank_line"
    assert lines[2].value == {"b": "é"}


def test_bom_is_skipped_and_flagged() -> None:
    lines = list(iter_lines(b'\xef\xbb\xbf{"a": 1}\n{"a": 2}\n'))
    assert lines[0].value == {"a": 1}
    assert lines[0].bom is True
    assert lines[1].bom is False
    assert lines[1].offset == 12


def test_crlf_endings_are_read_and_flagged() -> None:
    lines = list(iter_lines(b'{"a": 1}\r\n{"a": 2}\n'))
    assert [line.value for line in lines] == [{"a": 1}, {"a": 2}]
    assert [line.crlf for line in lines] == [True, False]


def test_missing_final_newline_is_fine() -> None:
    assert [line.value for line in iter_lines(b'{"a": 1}\n{"a": 2}')] == [{"a": 1}, {"a": 2}]


def test_invalid_utf8_names_the_byte_offset() -> None:
    data = b'{"a": 1}\n{"a": "\xff"}\n'
    bad = list(iter_lines(data))[1]
    assert bad.problem == "invalid_utf8"
    assert bad.problem_offset == data.index(b"\xff")
    assert str(bad.problem_offset) in (bad.detail or "")


def test_invalid_json_offset_counts_bytes_not_characters() -> None:
    data = '{"a": "ééé" x}\n'.encode()
    bad = next(iter_lines(data))
    assert bad.problem == "invalid_json"
    assert bad.problem_offset == data.index(b" x") + 1


def test_nan_and_deep_nesting_are_invalid_json_not_crashes() -> None:
    nan, deep = list(iter_lines(b'{"w": NaN}\n' + b"[" * 100_000 + b"\n"))
    assert nan.problem == "invalid_json"
    assert "NaN" in (nan.detail or "")
    assert deep.problem == "invalid_json"


def test_whitespace_only_line_is_blank() -> None:
    assert next(iter_lines(b" \t \n")).problem == "blank_line"


def test_file_object_and_path_sources(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"a": 1}\n')
    assert next(iter_lines(path)).value == {"a": 1}
    assert next(iter_lines(str(path))).value == {"a": 1}
    assert next(iter_lines(io.BytesIO(b'{"a": 2}\n'))).value == {"a": 2}


def test_chunks_cut_only_at_newlines_and_carry_long_lines() -> None:
    long_value = "x" * 5000
    data = b"".join(
        json.dumps({"i": i, "v": long_value if i == 3 else ""}).encode() + b"\n" for i in range(10)
    )
    chunks = list(iter_chunks(data, chunk_bytes=700))
    assert b"".join(chunk.data for chunk in chunks) == data
    assert all(chunk.data.endswith(b"\n") for chunk in chunks)
    numbers = [raw.number for chunk in chunks for raw in iter_raw_lines(chunk)]
    assert numbers == list(range(1, 11))
    offsets = [raw.offset for chunk in chunks for raw in iter_raw_lines(chunk)]
    assert [data[o : o + 6] for o in offsets] == [b'{"i": '] * 10


@pytest.mark.parametrize("size", [1, 7, 64, 10_000])
def test_ranges_cut_a_file_at_newlines_without_reading_it_all(tmp_path: Path, size: int) -> None:
    data = b"".join(
        json.dumps({"i": i, "pad": "x" * (i * 37 % 300)}).encode() + b"\n" for i in range(50)
    )
    path = tmp_path / "d.jsonl"
    path.write_bytes(data + b'{"last": true}')
    ranges = list(iter_chunk_ranges(path, size))
    assert ranges[0][0] == 0
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(ranges))
    assert sum(n for _, n in ranges) == path.stat().st_size
    with path.open("rb") as stream:
        pieces = [read_chunk(stream, offset, length) for offset, length in ranges]
    assert all(p.data.endswith(b"\n") for p in pieces[:-1])
    assert b"".join(p.data for p in pieces) == path.read_bytes()


def test_read_jsonl_skips_blank_lines_and_raises_on_the_first_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": \n')
    rows = read_jsonl(path)
    assert next(rows) == (1, {"a": 1})
    with pytest.raises(JSONLDecodeError) as caught:
        next(rows)
    assert caught.value.line == 3
    assert caught.value.path == str(path)
    assert f"{path}:3" in str(caught.value)


def test_write_jsonl_is_compact_utf8_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    assert write_jsonl([{"a": "é"}, {"b": [1, 2]}], path) == 2
    assert path.read_bytes() == '{"a":"é"}\n{"b":[1,2]}\n'.encode()
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        write_jsonl([{"a": 1}, {"b": Unserialisable()}], path)
    # The failed write left the earlier file untouched and no temporary file behind.
    assert path.read_bytes() == '{"a":"é"}\n{"b":[1,2]}\n'.encode()
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_dumps_line_uses_to_dict() -> None:
    class Record:
        def to_dict(self) -> dict[str, int]:
            return {"x": 1}

    assert dumps_line(Record()) == '{"x":1}'


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400), size=st.integers(min_value=1, max_value=64))
def test_any_bytes_read_the_same_in_any_chunking(data: bytes, size: int) -> None:
    whole = list(iter_lines(data))
    pieces = [decode_line(raw) for c in iter_chunks(data, size) for raw in iter_raw_lines(c)]
    assert pieces == whole
    assert len(whole) == data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
