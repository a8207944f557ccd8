r"""``Dataset``: an immutable sequence of training records, and the combinators that shape it.

A dataset holds one kind of example (chat, preference or reinforcement), so it always knows the
fine-tuning method it is for. Combinators (``filter``, ``sample``, ``shuffle``, ``dedupe``,
``split``, ``concat``) return new datasets and never change the one they are called on; the
seeded ones give the same answer on every machine.

Examples:
    >>> from finetune_kit.data.dataset import Dataset
    >>> from finetune_kit.data.records import ChatExample
    >>> ds = Dataset([ChatExample.single_turn(f"Tell me about {e}", "...") for e in "ABCDE"])
    >>> len(ds), ds.kind, ds.method
    (5, 'chat', 'supervised')
    >>> train, valid = ds.split(validation=0.2, seed=1)
    >>> len(train), len(valid)
    (4, 1)
    >>> ds.to_jsonl_bytes().count(b"\n")
    5
"""

from __future__ import annotations

import gc
import hashlib
import html
import io
import json
import logging
import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar, overload

from ..errors import ConfigurationError, DataError, ExampleValidationError
from .jsonl import JsonlSource, read_jsonl, write_jsonl
from .records import (
    ChatExample,
    ExampleKind,
    PreferenceExample,
    ReinforcementExample,
    TrainingExample,
    detect_kind,
    parse_example,
)

if TYPE_CHECKING:
    from .base_models import MethodName
    from .report import PreflightReport

__all__ = ["Dataset", "concat", "example_key"]

logger = logging.getLogger("finetune_kit.data")

ExampleT = TypeVar("ExampleT", bound=TrainingExample)

_RECORD_TYPES = (ChatExample, PreferenceExample, ReinforcementExample)
_METHODS: dict[ExampleKind, MethodName] = {
    "chat": "supervised",
    "preference": "dpo",
    "reinforcement": "reinforcement",
}
_HTML_ROWS = 5


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while many records are created.

    Records are small trees of containers without reference cycles, so collecting while
    thousands of them are made only re-scans them: measured on 20,000 examples, parsing took
    four times as long with the collector running. Reference counting still frees everything;
    the collector resumes (if it was on) when the block ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _normalize(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return " ".join(value.split()).casefold()
    if kind is dict:
        return {key: _normalize(item) for key, item in value.items()}
    if kind is list:
        return [_normalize(item) for item in value]
    return value


def example_key(example: TrainingExample | Mapping[str, Any], *, normalize: bool = False) -> str:
    """A string that is equal for two examples exactly when they count as duplicates.

    Args:
        example: A record, or an example's JSON object.
        normalize: Compare text with runs of whitespace collapsed, ends stripped and case
            folded, so ``"Hello  World"`` and ``"hello world"`` are duplicates.

    Examples:
        >>> a = ChatExample.single_turn("Hello  World", "Hi")
        >>> b = ChatExample.single_turn("hello world ", "hi")
        >>> example_key(a) == example_key(b), example_key(a, normalize=True) == example_key(b, normalize=True)
        (False, True)
    """  # noqa: E501 -- a doctest line
    obj = example.to_dict() if isinstance(example, _RECORD_TYPES) else dict(example)
    if not normalize:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(_normalize(obj), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return " ".join(
        getattr(part, "text", None) or "[image]" for part in content if part is not None
    )


def _last_text(messages: Sequence[Any], role: str) -> str:
    for message in reversed(messages):
        if message.role == role:
            if getattr(message, "tool_calls", None) and message.content is None:
                return (
                    "[tool calls: " + ", ".join(c.function.name for c in message.tool_calls) + "]"
                )
            return _text_of(message.content)
    return ""


def _clip(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _check_fraction(validation: float) -> None:
    if isinstance(validation, bool) or not isinstance(validation, (int, float)):
        raise ConfigurationError(
            f"validation must be a fraction such as 0.2 or a count such as 50, got {validation!r}",
            param="validation",
        )


class Dataset(Sequence[ExampleT]):
    r"""An immutable sequence of training records of one kind.

    Build one from records, from parsed JSON objects (``from_dicts``), from a JSONL file
    (``from_jsonl``) or with a builder (``build_dataset``). Writing gives one compact JSON
    record per line, UTF-8, ``\n`` endings: the bytes you upload, whose ``sha256`` identifies
    the dataset.

    Args:
        examples: The records, all of one kind.
        kind: The kind of example the dataset holds; needed only to type an empty dataset
            (which otherwise counts as ``"chat"``).

    Raises:
        ExampleValidationError: The records are of more than one kind.
        TypeError: An item is not a record (parse dicts with ``Dataset.from_dicts``).

    Examples:
        >>> from finetune_kit.data.records import PreferenceExample
        >>> ds = Dataset([PreferenceExample.single_turn("2+2?", "4", "5")])
        >>> ds.kind, ds.method, len(ds.to_jsonl_bytes()) > 0
        ('preference', 'dpo', True)
    """

    __slots__ = ("_examples", "_kind", "_sha256")

    def __init__(self, examples: Iterable[ExampleT] = (), *, kind: ExampleKind | None = None):
        items = tuple(examples)
        first: int | None = None
        for number, example in enumerate(items, start=1):
            if not isinstance(example, _RECORD_TYPES):
                raise TypeError(
                    f"Dataset() takes records; item {number} is a {type(example).__name__}: "
                    "parse JSON objects with Dataset.from_dicts(rows)"
                )
            if kind is None:
                kind, first = example.kind, number
            elif example.kind != kind:
                _raise_mixed(number, example.kind, kind, first)
        self._examples: tuple[ExampleT, ...] = items
        self._kind: ExampleKind = kind or "chat"
        self._sha256: str | None = None

    @classmethod
    def _trusted(cls, examples: tuple[ExampleT, ...], kind: ExampleKind) -> Dataset[ExampleT]:
        """Wrap records already known to be of ``kind`` (the combinators' fast path)."""
        dataset: Dataset[ExampleT] = object.__new__(cls)
        dataset._examples = examples
        dataset._kind = kind
        dataset._sha256 = None
        return dataset

    # Reading

    @overload
    @classmethod
    def from_jsonl(cls, source: JsonlSource, *, kind: Literal["chat"]) -> Dataset[ChatExample]: ...
    @overload
    @classmethod
    def from_jsonl(
        cls, source: JsonlSource, *, kind: Literal["preference"]
    ) -> Dataset[PreferenceExample]: ...
    @overload
    @classmethod
    def from_jsonl(
        cls, source: JsonlSource, *, kind: Literal["reinforcement"]
    ) -> Dataset[ReinforcementExample]: ...
    @overload
    @classmethod
    def from_jsonl(cls, source: JsonlSource, *, kind: None = None) -> Dataset[TrainingExample]: ...
    @classmethod
    def from_jsonl(cls, source: JsonlSource, *, kind: ExampleKind | None = None) -> Dataset[Any]:
        r"""Read a JSONL training file strictly: the first bad line raises.

        Blank lines are skipped; a UTF-8 byte-order mark and ``\r\n`` endings are accepted.

        Args:
            source: A path, the file's bytes, or a binary file object.
            kind: Read every line as this kind instead of detecting each line's kind.

        Raises:
            JSONLDecodeError: A line is not valid UTF-8 or JSON (names the line and byte offset).
            ExampleValidationError: A record does not match its schema, or the lines mix kinds
                (names the line and the field).

        Examples:
            >>> data = b'{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hey"}]}\n'
            >>> Dataset.from_jsonl(data).kind
            'chat'
        """  # noqa: E501 -- a doctest line
        return cls._parse(read_jsonl(source), kind)

    @overload
    @classmethod
    def from_dicts(
        cls, rows: Iterable[Mapping[str, Any]], *, kind: Literal["chat"]
    ) -> Dataset[ChatExample]: ...
    @overload
    @classmethod
    def from_dicts(
        cls, rows: Iterable[Mapping[str, Any]], *, kind: Literal["preference"]
    ) -> Dataset[PreferenceExample]: ...
    @overload
    @classmethod
    def from_dicts(
        cls, rows: Iterable[Mapping[str, Any]], *, kind: Literal["reinforcement"]
    ) -> Dataset[ReinforcementExample]: ...
    @overload
    @classmethod
    def from_dicts(
        cls, rows: Iterable[Mapping[str, Any]], *, kind: None = None
    ) -> Dataset[TrainingExample]: ...
    @classmethod
    def from_dicts(
        cls, rows: Iterable[Mapping[str, Any]], *, kind: ExampleKind | None = None
    ) -> Dataset[Any]:
        """Parse JSON objects strictly; errors count rows from 1 as ``line``.

        Args:
            rows: The examples' JSON objects, as ``json.loads`` returns them.
            kind: Read every row as this kind instead of detecting each row's kind.

        Raises:
            ExampleValidationError: A row does not match its schema, or the rows mix kinds.

        Examples:
            >>> Dataset.from_dicts([{"messages": [{"role": "user", "content": "2+2?"}], "answer": 4}]).method
            'reinforcement'
        """  # noqa: E501 -- a doctest line
        return cls._parse(enumerate(rows, start=1), kind)

    @classmethod
    def _parse(cls, numbered: Iterable[tuple[int, Any]], kind: ExampleKind | None) -> Dataset[Any]:
        examples: list[Any] = []  # of one kind, checked line by line below
        fixed, first = kind, None
        with paused_gc():
            for number, obj in numbered:
                if kind is None and fixed is not None and isinstance(obj, Mapping):
                    found = detect_kind(obj)
                    if found != fixed:
                        _raise_mixed(number, found, fixed, first, detected=True)
                example = parse_example(obj, line=number, kind=fixed)
                if fixed is None:
                    fixed, first = example.kind, number
                examples.append(example)
        logger.debug("read %d %s examples", len(examples), fixed or "chat")
        return cls._trusted(tuple(examples), fixed or "chat")

    # What it is

    @property
    def kind(self) -> ExampleKind:
        """The kind of example: ``"chat"``, ``"preference"`` or ``"reinforcement"``."""
        return self._kind

    @property
    def method(self) -> MethodName:
        """The fine-tuning method they train: ``"supervised"``, ``"dpo"``, ``"reinforcement"``."""
        return _METHODS[self._kind]

    @property
    def examples(self) -> tuple[ExampleT, ...]:
        """The records, as a tuple."""
        return self._examples

    def __len__(self) -> int:
        return len(self._examples)

    @overload
    def __getitem__(self, index: int) -> ExampleT: ...
    @overload
    def __getitem__(self, index: slice) -> Dataset[ExampleT]: ...
    def __getitem__(self, index: int | slice) -> ExampleT | Dataset[ExampleT]:
        if isinstance(index, slice):
            return self._trusted(self._examples[index], self._kind)
        return self._examples[index]

    def __iter__(self) -> Iterator[ExampleT]:
        return iter(self._examples)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dataset):
            return NotImplemented
        return self._kind == other._kind and self._examples == other._examples

    __hash__ = None  # type: ignore[assignment]  # equal datasets may hold unhashable lists

    def __add__(self, other: Dataset[ExampleT]) -> Dataset[ExampleT]:
        return concat(self, other)

    def __repr__(self) -> str:
        return f"Dataset(kind={self._kind!r}, examples={len(self._examples)})"

    # Writing

    def iter_dicts(self) -> Iterator[dict[str, Any]]:
        """Yield each example's JSON object, as the API reads it."""
        for example in self._examples:
            yield example.to_dict()

    def to_jsonl(self, dest: str | os.PathLike[str] | IO[bytes]) -> int:
        r"""Write one compact JSON record per line, UTF-8, ``\n`` endings.

        A path is written atomically (to a temporary file, then renamed).

        Args:
            dest: A path, or a binary file object.

        Returns:
            The number of records written.
        """
        try:
            return write_jsonl(self._examples, dest)
        except UnicodeEncodeError as exc:
            raise self._unencodable() from exc

    def to_jsonl_bytes(self) -> bytes:
        r"""Return the JSONL file's bytes: one compact record per line, UTF-8, ``\n`` endings."""
        out = io.BytesIO()
        for number, example in enumerate(self._examples, start=1):
            out.write(_encode_line(example, number))
        return out.getvalue()

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of ``to_jsonl_bytes()``: identifies the content for uploads."""
        if self._sha256 is None:
            digest = hashlib.sha256()
            for number, example in enumerate(self._examples, start=1):
                digest.update(_encode_line(example, number))
            self._sha256 = digest.hexdigest()
        return self._sha256

    def _unencodable(self) -> DataError:
        for number, example in enumerate(self._examples, start=1):
            try:
                _encode_line(example, number)
            except DataError as exc:
                return exc
        return DataError("an example cannot be encoded as UTF-8")

    # Checking

    def preflight(self, **options: Any) -> PreflightReport:
        """Check the dataset offline as the API would, and count tokens and estimate the cost.

        Args:
            **options: Passed to ``finetune_kit.data.validation.preflight``: ``model``,
                ``validation``, ``n_epochs``, ``min_examples``... The method is this
                dataset's.

        Returns:
            The ``PreflightReport``: every issue with its line and field, token statistics,
            epochs and cost.

        Examples:
            >>> ds = Dataset([ChatExample.single_turn(f"q{i}", f"a{i}") for i in range(10)])
            >>> ds.preflight(model=None).ok
            True
        """
        # Imported here: preflight pulls in the tokenizers, which reading data does not need.
        from .validation import preflight

        return preflight(self, **options)

    # Combinators

    def filter(self, predicate: Callable[[ExampleT], bool]) -> Dataset[ExampleT]:
        """Keep the examples for which ``predicate`` is true, in order.

        Examples:
            >>> ds = Dataset([ChatExample.single_turn(q, "a") for q in ("short", "a longer one")])
            >>> len(ds.filter(lambda ex: len(ex.messages[0].content) > 5))
            1
        """
        return self._trusted(tuple(ex for ex in self._examples if predicate(ex)), self._kind)

    def sample(self, n: int, *, seed: int = 0) -> Dataset[ExampleT]:
        """Pick ``n`` examples at random, reproducibly; they keep their original order.

        Args:
            n: How many to keep; at most ``len(self)``.
            seed: The random seed; the same seed picks the same examples everywhere.

        Raises:
            ConfigurationError: ``n`` is negative or larger than the dataset.
        """
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(self):
            raise ConfigurationError(
                f"n must be an integer from 0 to {len(self)} (the dataset's size), got {n!r}",
                param="n",
            )
        chosen = sorted(random.Random(seed).sample(range(len(self)), n))
        return self._trusted(tuple(self._examples[i] for i in chosen), self._kind)

    def shuffle(self, *, seed: int = 0) -> Dataset[ExampleT]:
        """Return the examples in a random order, reproducibly."""
        items = list(self._examples)
        random.Random(seed).shuffle(items)
        return self._trusted(tuple(items), self._kind)

    def dedupe(self, *, normalize: bool = False) -> Dataset[ExampleT]:
        """Drop repeated examples, keeping the first of each.

        Args:
            normalize: Also count as duplicates examples that differ only in whitespace and
                letter case (see ``example_key``).
        """
        seen: set[str] = set()
        kept: list[ExampleT] = []
        for example in self._examples:
            key = example_key(example, normalize=normalize)
            if key not in seen:
                seen.add(key)
                kept.append(example)
        logger.debug("dedupe dropped %d of %d examples", len(self) - len(kept), len(self))
        return self._trusted(tuple(kept), self._kind)

    def split(
        self, validation: float = 0.2, *, seed: int = 0
    ) -> tuple[Dataset[ExampleT], Dataset[ExampleT]]:
        """Split into training and validation sets with no example on both sides.

        Examples that are the same after normalising whitespace and case always land on the
        same side, so the validation set never tests what the model was trained on. The split
        depends only on the examples and the seed, not on their order: each group of duplicates
        is ranked by a hash of its normalised text and the seed, and groups are taken for
        validation in that order while they fit the requested size. Both sides keep the
        original order.

        Args:
            validation: The validation share, a fraction in (0, 1) such as 0.2, or a number of
                examples such as 50.
            seed: Picks a different, equally reproducible split.

        Returns:
            ``(train, validation)``.

        Raises:
            ConfigurationError: ``validation`` is not a fraction in (0, 1) or a count smaller
                than the dataset.
        """
        _check_fraction(validation)
        n = len(self)
        if isinstance(validation, int):
            if not 0 < validation < max(n, 1):
                raise ConfigurationError(
                    f"validation as a count must be from 1 to {n - 1}, got {validation}",
                    param="validation",
                )
            target = validation
        else:
            if not 0.0 < validation < 1.0:
                raise ConfigurationError(
                    f"validation as a fraction must be between 0 and 1, got {validation}",
                    param="validation",
                )
            # Asking for a validation set means wanting one: at least one example each side.
            target = max(1, min(round(validation * n), n - 1)) if n >= 2 else 0
        groups: dict[str, list[int]] = {}
        for index, example in enumerate(self._examples):
            groups.setdefault(example_key(example, normalize=True), []).append(index)
        picked = _pick_validation_groups(groups, target, seed)
        valid_idx = sorted(i for key in picked for i in groups[key])
        valid_set = set(valid_idx)
        train = tuple(ex for i, ex in enumerate(self._examples) if i not in valid_set)
        valid = tuple(self._examples[i] for i in valid_idx)
        logger.debug(
            "split %d examples (%d groups) into %d train / %d validation (target %d, seed %d)",
            n,
            len(groups),
            len(train),
            len(valid),
            target,
            seed,
        )
        return self._trusted(train, self._kind), self._trusted(valid, self._kind)

    # Notebooks

    def _repr_html_(self) -> str:
        """A small table for notebooks: count, kind, method and the first examples."""
        heads, rows = self._preview_rows()
        count = len(self)
        parts = [
            '<div class="finetune-kit-dataset">',
            f"<p><strong>Dataset</strong>: {count} {self._kind} example{'s' * (count != 1)} "
            f"(method: {self.method})</p>",
        ]
        if rows:
            parts.append("<table><thead><tr>")
            parts.extend(f"<th>{html.escape(head)}</th>" for head in heads)
            parts.append("</tr></thead><tbody>")
            for row in rows:
                cells = "".join(f"<td>{html.escape(cell)}</td>" for cell in row)
                parts.append(f"<tr>{cells}</tr>")
            parts.append("</tbody></table>")
        if count > len(rows):
            parts.append(f"<p>… and {count - len(rows)} more</p>")
        parts.append("</div>")
        return "".join(parts)

    def _preview_rows(self) -> tuple[list[str], list[list[str]]]:
        rows: list[list[str]] = []
        shown = self._examples[:_HTML_ROWS]
        if self._kind == "preference":
            heads = ["#", "prompt", "preferred", "non-preferred"]
            for number, ex in enumerate(shown, start=1):
                assert isinstance(ex, PreferenceExample)
                rows.append(
                    [
                        str(number),
                        _clip(_last_text(ex.input.messages, "user")),
                        _clip(_text_of(ex.preferred_output[0].content)),
                        _clip(_text_of(ex.non_preferred_output[0].content)),
                    ]
                )
        elif self._kind == "reinforcement":
            heads = ["#", "messages", "prompt", "grader keys"]
            for number, ex in enumerate(shown, start=1):
                assert isinstance(ex, ReinforcementExample)
                rows.append(
                    [
                        str(number),
                        str(len(ex.messages)),
                        _clip(_last_text(ex.messages, "user")),
                        ", ".join(ex.extra),
                    ]
                )
        else:
            heads = ["#", "messages", "user", "assistant"]
            for number, ex in enumerate(shown, start=1):
                assert isinstance(ex, ChatExample)
                rows.append(
                    [
                        str(number),
                        str(len(ex.messages)),
                        _clip(_last_text(ex.messages, "user")),
                        _clip(_last_text(ex.messages, "assistant")),
                    ]
                )
        return heads, rows


def _encode_line(example: TrainingExample, number: int) -> bytes:
    try:
        return (example.to_json_line() + "\n").encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ExampleValidationError(
            f"example {number}: text holds a character UTF-8 cannot encode "
            f"({exc.object[exc.start : exc.end]!r}, a lone surrogate); remove it",
            line=number,
        ) from exc


def _raise_mixed(
    number: int,
    found: ExampleKind,
    expected: ExampleKind,
    first: int | None,
    *,
    detected: bool = False,
) -> None:
    where = f"line {first}" if first is not None else "the dataset"
    why = (
        " (its last message is from the user, so there is no answer to learn)"
        if detected and found == "reinforcement"
        else ""
    )
    fix = (
        "add the assistant's answer"
        if detected and found == "reinforcement" and expected == "chat"
        else "keep one kind of example per file"
    )
    raise ExampleValidationError(
        f"line {number}: this is a {found} example{why}, but {where} is a {expected} example; "
        f"{fix}, or pass kind={expected!r} to read every line as one kind",
        line=number,
    )


def _pick_validation_groups(groups: Mapping[str, list[int]], target: int, seed: int) -> list[str]:
    """Choose the duplicate groups that go to validation: a pure function of keys and seed."""

    def rank(key: str) -> str:
        return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()

    order = sorted(groups, key=rank)
    picked: list[str] = []
    count = 0
    for key in order:
        size = len(groups[key])
        if count + size <= target:
            picked.append(key)
            count += size
    if not picked and target > 0 and len(order) > 1:
        # Every group is bigger than the target: take the smallest rather than none.
        picked.append(min(order, key=lambda key: len(groups[key])))
    return picked


def concat(*datasets: Dataset[ExampleT]) -> Dataset[ExampleT]:
    """Join datasets of the same kind end to end.

    Raises:
        ConfigurationError: No dataset was given, or they hold different kinds of example.

    Examples:
        >>> a = Dataset([ChatExample.single_turn("q1", "a1")])
        >>> b = Dataset([ChatExample.single_turn("q2", "a2")])
        >>> len(concat(a, b)), len(a + b)
        (2, 2)
    """
    if not datasets:
        raise ConfigurationError("concat() needs at least one dataset", param="datasets")
    kinds = {ds.kind for ds in datasets if len(ds)} or {datasets[0].kind}
    if len(kinds) > 1:
        raise ConfigurationError(
            f"cannot concatenate datasets of different kinds ({', '.join(sorted(kinds))}); "
            "a training file holds one kind of example",
            param="datasets",
        )
    items = tuple(ex for ds in datasets for ex in ds)
    return Dataset._trusted(items, kinds.pop())
