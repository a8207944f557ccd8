"""Rows for the built-in builders: CSV/JSONL files, DataFrames, Hugging Face datasets, iterables.

Every row carries a label a person can find it by (``row 3 (line 5 of faq.csv)``), so builders
can name the row when something is wrong with it. pandas and ``datasets`` are never imported:
they are recognised by what they can do.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ...errors import ConfigurationError, ExampleValidationError
from .._record_errors import json_type_name
from ..jsonl import read_jsonl

__all__ = ["Row", "RowFormat", "is_missing", "iter_rows", "require_mapping"]

RowFormat = Literal["csv", "tsv", "jsonl"]

_SUFFIXES: dict[str, RowFormat] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_DATAFRAME_CHUNK = 10_000


@dataclass(frozen=True)
class Row:
    """One row of a builder's source.

    Attributes:
        number: 1-based position among the rows.
        label: Where the row is, for error messages (``row 3 (line 5 of faq.csv)``).
        line: The file line the row starts on, or its number when it is not from a file.
        value: The row: a mapping of column to value for tables, anything for plain iterables.

    Examples:
        >>> next(iter_rows([{"question": "2+2?"}]))
        Row(number=1, label='row 1', line=1, value={'question': '2+2?'})
    """

    number: int
    label: str
    line: int
    value: Any


def is_missing(value: Any) -> bool:
    """Whether a cell holds no value: ``None``, a float NaN, or pandas' ``NA``/``NaT``."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def require_mapping(row: Row) -> Mapping[str, Any]:
    """Return the row as a mapping, or raise an error naming it."""
    if isinstance(row.value, Mapping):
        return row.value
    raise ExampleValidationError(
        f"{row.label}: expected a row of named columns (a mapping), got "
        f"{json_type_name(row.value)}; give rows as dicts, a DataFrame or a CSV/JSONL file",
        line=row.line,
    )


def iter_rows(
    source: Any, *, format: RowFormat | None = None, delimiter: str | None = None
) -> Iterator[Row]:
    """Yield the rows of ``source``.

    Args:
        source: A path to a ``.csv``/``.tsv``/``.jsonl`` file, a pandas ``DataFrame``, a Hugging
            Face ``datasets.Dataset`` (one split), or an iterable of rows.
        format: The file's format, when its suffix does not say.
        delimiter: The CSV delimiter (default ``,``, or a tab for ``tsv``).

    Raises:
        ConfigurationError: The source is of a kind no builder can read.
        JSONLDecodeError: A JSONL line is broken.
    """
    if isinstance(source, (str, os.PathLike)):
        yield from _file_rows(Path(source), format, delimiter)
    elif isinstance(source, (bytes, bytearray)):
        raise ConfigurationError("pass the path of the file rather than its bytes", param="source")
    elif _is_dataframe(source):
        yield from _dataframe_rows(source)
    elif _is_hf_dataset(source):
        for number, value in enumerate(source, start=1):
            yield Row(number, f"row {number}", number, value)
    elif isinstance(source, Mapping) and source and all(map(_is_hf_dataset, source.values())):
        raise ConfigurationError(
            "this is a DatasetDict of several splits; pass one split, such as ds['train']",
            param="source",
        )
    elif isinstance(source, Mapping):
        raise ConfigurationError(
            "the source is a single mapping; pass a list of rows (or a DataFrame, or a file)",
            param="source",
        )
    elif isinstance(source, Iterable):
        for number, value in enumerate(source, start=1):
            yield Row(number, f"row {number}", number, value)
    else:
        raise ConfigurationError(
            f"cannot read rows from a {type(source).__name__}; pass a CSV/JSONL path, a "
            "DataFrame, a Hugging Face dataset or an iterable of rows",
            param="source",
        )


def _is_dataframe(source: Any) -> bool:
    return all(hasattr(source, attr) for attr in ("iloc", "columns", "to_dict", "index"))


def _is_hf_dataset(source: Any) -> bool:
    return hasattr(source, "column_names") and hasattr(source, "features")


def _file_rows(path: Path, format: RowFormat | None, delimiter: str | None) -> Iterator[Row]:
    kind = format or _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ConfigurationError(
            f"cannot tell the format of {path.name!r} from its suffix; pass format='csv', "
            "'tsv' or 'jsonl'",
            param="format",
        )
    if kind == "jsonl":
        for number, (line, value) in enumerate(read_jsonl(path), start=1):
            yield Row(number, f"line {line} of {path.name}", line, value)
        return
    sep = delimiter or ("\t" if kind == "tsv" else ",")
    # utf-8-sig: spreadsheet programs often save CSV with a byte-order mark.
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=sep)
        start = 2  # line 1 is the header
        for number, record in enumerate(reader, start=1):
            label = f"row {number} (line {start} of {path.name})"
            yield Row(number, label, start, record)
            start = reader.line_num + 1


def _dataframe_rows(frame: Any) -> Iterator[Row]:
    total = len(frame)
    # Chunks: one to_dict() over a large frame would double its memory at once.
    for begin in range(0, total, _DATAFRAME_CHUNK):
        chunk = frame.iloc[begin : begin + _DATAFRAME_CHUNK]
        records = chunk.to_dict(orient="records")
        for offset, (index, record) in enumerate(zip(chunk.index, records, strict=True)):
            number = begin + offset + 1
            values = {str(key): value for key, value in record.items()}
            yield Row(number, f"row {number} (index {index!r})", number, values)
