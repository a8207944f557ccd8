r"""Preflight: check training data offline before anything is uploaded, in one call.

``preflight`` reads a JSONL file (or a ``Dataset``, or records, or dicts) as a stream, applies
every rule of ``finetune_kit.data.issues.RULES`` to every line, counts tokens exactly with the
model's encoding, and returns a ``PreflightReport``: every issue with its line and field path,
counts, token statistics, the epochs ``auto`` would choose and a cost range. Large files are
scanned by several processes. It never raises on bad data: bad data is what it reports.

Example:
    >>> from datetime import date
    >>> from finetune_kit.data.validation import preflight
    >>> line = (
    ...     b'{"messages": [{"role": "user", "content": "Hi"},'
    ...     b' {"role": "assistant", "content": "Hello", "weight": 2}]}\n'
    ... )
    >>> report = preflight(line * 12, model="gpt-4o-mini-2024-07-18", as_of=date(2026, 1, 1))
    >>> report.ok
    False
    >>> first = report.errors[0]
    >>> first.code, first.line, first.field
    ('invalid_weight', 1, 'messages[1].weight')
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from ..errors import ConfigurationError
from ._fingerprints import FingerprintIndex
from ._scanner import ChunkStats, FileScanner, ScanConfig
from .azure_profile import Profile, azure_dataset_issues, azure_file_issues
from .base_models import DataFormat, MethodName, ModelInfo, get_model_info
from .issues import FileRole, Issue, make_issue
from .jsonl import LineChunk, _decoder, iter_chunk_ranges, iter_chunks, iter_raw_lines
from .model_tokenizer import ModelTokenizer, TokenizedBatch
from .report import CostEstimate, Distribution, FileSummary, PreflightReport
from .rules import CheckConfig, LineKind, detect_line_kind
from .tokens import DEFAULT_ENCODING

__all__ = [
    "DEFAULT_MODEL",
    "FILES_API_LIMIT_BYTES",
    "PARALLEL_MIN_BYTES",
    "UPLOADS_API_LIMIT_BYTES",
    "auto_epochs",
    "preflight",
]

logger = logging.getLogger("finetune_kit.data.preflight")

DEFAULT_MODEL: str | None = None
"""No model by default: every fine-tunable OpenAI model has a shutdown date, and a default one
would fail the data, after that date, for a model the user never chose."""
FILES_API_LIMIT_BYTES = 512 * 1024 * 1024
"""The largest file ``/files`` takes in one request."""
UPLOADS_API_LIMIT_BYTES = 8 * 1024 * 1024 * 1024
"""The largest file the Uploads API takes, in parts."""
PARALLEL_MIN_BYTES = 8 * 1024 * 1024
"""Below this size a file is scanned in-process: starting workers would cost more than it saves."""
RECOMMENDED_MIN_EXAMPLES = 50
SHUTDOWN_SOON_DAYS = 180

# The cookbook's constants for the epochs n_epochs="auto" chooses (reference §7.9).
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25

_PRICE_MARGIN = {"official": 0.0, "3p": 0.10, "recall": 0.25}
_KIND_OF_METHOD: dict[MethodName, LineKind] = {
    "supervised": "chat",
    "dpo": "preference",
    "reinforcement": "reinforcement",
}
_FILE_TAGS: dict[FileRole, int] = {"training": 0, "validation": 1}

Method = Literal["supervised", "dpo", "reinforcement"]

# How a shutdown date that is not from an official page is qualified in messages (see the
# model table's confidence levels), with the date of its source.
_DATE_CONFIDENCE = {
    "3p": " (date from third-party pages{of}, not read on OpenAI's own page)",
    "recall": " (a date from an earlier source{of}, not re-checked)",
}
_FORMAT_WORDS: dict[str, str] = {
    "chat": 'chat ({"messages": [...]})',
    "completion": 'legacy prompt/completion ({"prompt", "completion"})',
}
_FORMAT_FIX: dict[str, str] = {
    "chat": 'write each example as {"messages": [...]} with the user and assistant turns, or '
    "pick a legacy completions model (davinci-002, babbage-002)",
    "completion": 'write each example as {"prompt": ..., "completion": ...}, or pick a chat model',
}


def auto_epochs(n_examples: int) -> int:
    """The epochs ``n_epochs="auto"`` gives, by the cookbook's heuristic.

    Args:
        n_examples: Training examples (at least 1).

    Returns:
        3, raised towards 100 examples' worth for small files (at most 25) and lowered
        towards 25,000 for large ones (at least 1).

    Example:
        >>> auto_epochs(10), auto_epochs(500), auto_epochs(20_000)
        (10, 3, 1)
    """
    n = max(1, n_examples)
    if n * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n)
    if n * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n)
    return TARGET_EPOCHS


# ---------------------------------------------------------------------- sources
@dataclass
class _Source:
    """A training or validation input, normalised: a file, blocks of lines, or JSON values."""

    path: str | None
    chunks: Iterator[LineChunk] | None
    values: Iterator[tuple[int, Any]] | None
    size: int | None
    method: str | None
    first_value: Any

    @classmethod
    def of(cls, source: Any, param: str) -> _Source:
        if isinstance(source, str) and (source.lstrip().startswith(("{", "[")) or "\n" in source):
            raise ConfigurationError(
                f"{param} looks like JSONL text, but a str is read as a path; pass "
                "text.encode() to check text",
                param=param,
            )
        if isinstance(source, (bytes, bytearray, memoryview)):
            chunks, first = _peek(iter_chunks(bytes(source)))
            return cls(None, chunks, None, len(source), None, first)
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            size = os.path.getsize(path)
            head = iter_chunks(path)
            try:
                _, first = _peek(head)
            finally:
                head.close()
            return cls(path, None, None, size, None, first)
        if hasattr(source, "read"):
            chunks, first = _peek(iter_chunks(source))
            return cls(None, chunks, None, None, None, first)
        if isinstance(source, Mapping):
            raise ConfigurationError(
                f"{param} is a single example; pass a list of examples", param=param
            )
        method = getattr(source, "method", None)
        iter_numbered = getattr(source, "iter_numbered", None)
        iter_dicts = getattr(source, "iter_dicts", None)
        rows: Iterable[Any] = iter_dicts() if callable(iter_dicts) else source
        if not isinstance(rows, Iterable):
            raise ConfigurationError(
                f"{param} must be a path, bytes, a binary file, a Dataset or an iterable of "
                f"examples, not {type(source).__name__}",
                param=param,
            )
        values: Iterator[tuple[int, Any]]
        if callable(iter_numbered):
            # Rows that remember their line in a file (autofix's) are reported by that line.
            values = ((number, _as_value(row)) for number, row in iter_numbered())
        else:
            values = enumerate((_as_value(row) for row in rows), start=1)
        first_row = next(values, None)
        chained = itertools.chain([first_row], values) if first_row is not None else iter(())
        return cls(
            None,
            None,
            chained,
            None,
            method if isinstance(method, str) else None,
            first_row[1] if first_row is not None else None,
        )


def _peek(chunks: Iterator[LineChunk]) -> tuple[Iterator[LineChunk], Any]:
    """Return the blocks (the first one put back) and the first JSON object among its lines."""
    first_chunk = next(chunks, None)
    if first_chunk is None:
        return iter(()), None
    first_value = None
    for raw in iter_raw_lines(first_chunk):
        try:
            value = _decoder.decode(raw.body.decode("utf-8"))
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            first_value = value
            break
    return itertools.chain([first_chunk], chunks), first_value


def _as_value(row: Any) -> Any:
    to_dict = getattr(row, "to_dict", None)
    return to_dict() if callable(to_dict) else row


# ---------------------------------------------------------------------- scanning
class _Collector:
    """Merges block results in line order and logs their fingerprints."""

    def __init__(self, file: FileRole, index: FingerprintIndex, cap: int) -> None:
        self.tag = _FILE_TAGS[file]
        self.index = index
        self.cap = cap
        self.total = ChunkStats()

    def __call__(self, stats: ChunkStats) -> None:
        self.index.add(stats.fingerprints, stats.fingerprint_lines, tag=self.tag)
        stats.fingerprints = stats.fingerprints[:0]
        stats.fingerprint_lines = stats.fingerprint_lines[:0]
        self.total.merge(stats, self.cap)


def _scan(
    source: _Source,
    config: ScanConfig,
    workers: int,
    collector: _Collector,
    tokenizer: ModelTokenizer | None = None,
) -> ChunkStats:
    if source.values is not None:
        # Records are scanned in-process, a block of them at a time.
        scanner = FileScanner(config, tokenizer)
        values = source.values
        while True:
            block = list(itertools.islice(values, 2048))
            if not block:
                break
            collector(scanner.scan_values(block))
        return collector.total
    if workers > 1:
        from ._parallel import scan_in_workers

        if source.path is not None:
            ranges = iter_chunk_ranges(source.path)
            scan_in_workers(config, workers, collector, path=source.path, ranges=ranges)
        else:
            assert source.chunks is not None
            scan_in_workers(config, workers, collector, chunks=source.chunks)
        return collector.total
    scanner = FileScanner(config, tokenizer)
    chunks = iter_chunks(source.path) if source.path is not None else source.chunks
    assert chunks is not None
    for chunk in chunks:
        collector(scanner.scan_chunk(chunk))
    return collector.total


def _add_repeats(
    index: FingerprintIndex, files: list[tuple[FileRole, ChunkStats]], cap: int
) -> None:
    roles: dict[int, FileRole] = {_FILE_TAGS[file]: file for file, _ in files}
    stats_of = {_FILE_TAGS[file]: stats for file, stats in files}
    for tag, line, first_tag, first_line in index.repeats():
        file = roles[tag]
        if first_tag == tag:
            issue = make_issue(
                "duplicate_example", line, None, f"identical to line {first_line}", file=file
            )
        else:
            issue = make_issue(
                "validation_overlap",
                line,
                None,
                f"identical to training line {first_line}",
                file=file,
            )
        stats_of[tag].add_issue(issue, cap)


def _workers_for(source: _Source, workers: int | None) -> int:
    if source.values is not None:
        return 1
    if workers is not None:
        return max(1, workers)
    if source.size is None or source.size < PARALLEL_MIN_BYTES:
        return 1
    from ._parallel import usable_cpus

    return min(usable_cpus(), 8)


# ---------------------------------------------------------------------- decisions
def _detect_method(source: _Source, info: ModelInfo | None) -> MethodName:
    if source.method in ("supervised", "dpo", "reinforcement"):
        # The check above narrows it; mypy does not narrow a str to a Literal by ``in``.
        return source.method  # type: ignore[return-value]
    kind = detect_line_kind(source.first_value)
    if kind == "preference":
        return "dpo"
    if info is not None and info.methods == ("reinforcement",):
        return "reinforcement"
    first = source.first_value
    if kind == "chat" and isinstance(first, dict):
        extra_keys = set(first) - {"messages", "tools", "parallel_tool_calls", "functions"}
        messages = first.get("messages")
        ends_with_user = (
            isinstance(messages, list)
            and bool(messages)
            and isinstance(messages[-1], dict)
            and messages[-1].get("role") == "user"
        )
        if extra_keys and ends_with_user:
            return "reinforcement"
    return "supervised"


def _kind_for(method: MethodName, source: _Source, takes: DataFormat | None) -> LineKind:
    if method != "supervised":
        return _KIND_OF_METHOD[method]
    # Supervised data comes in two formats. The first example says which one the file is in,
    # so the lines are checked against their own format: data in the format the model does not
    # take is one file-level format_not_supported, not a wrong_example_format on every line.
    detected = detect_line_kind(source.first_value)
    if detected in ("chat", "completion"):
        return detected
    if takes == "completion":
        return "completion"
    return "chat"


class _Recorder:
    """Passes blocks to a tokenizer and remembers what counted them."""

    def __init__(self, tokenizer: ModelTokenizer) -> None:
        self.tokenizer = tokenizer
        self.data_format = tokenizer.data_format
        self.last: TokenizedBatch | None = None

    def count_examples(
        self, examples: Sequence[Mapping[str, Any]], *, method: Literal["supervised", "dpo"]
    ) -> TokenizedBatch:
        self.last = self.tokenizer.count_examples(examples, method=method)
        return self.last

    def name(self) -> str:
        """What counted the tokens (asked with no examples when there were none)."""
        if self.last is None:
            self.last = self.tokenizer.count_examples([], method="supervised")
        return self.last.tokenizer


def _check_config(kind: LineKind, info: ModelInfo | None, file: FileRole) -> CheckConfig:
    if info is None:
        return CheckConfig(kind=kind, file=file)
    note = ""
    if info.azure_max_images_per_example and info.max_images_per_example:
        note = f" on OpenAI ({info.azure_max_images_per_example} on Azure OpenAI)"
    elif info.azure_max_images_per_example:
        note = " (Azure OpenAI; OpenAI takes no images for this model)"
    return CheckConfig(
        kind=kind,
        file=file,
        images_supported=info.supports_images,
        max_images=info.max_images_per_example or info.azure_max_images_per_example,
        max_images_note=note,
    )


def _model_issues(
    model: str | None,
    info: ModelInfo | None,
    method: MethodName,
    kind: LineKind,
    as_of: date | None,
    encoding: str,
    data_format: DataFormat | None,
    backend_counted: bool,
) -> list[Issue]:
    issues: list[Issue] = []
    if model is None:
        if backend_counted:
            message = (
                f"no model from the model table: the data is checked with {encoding}'s own "
                "tokenizer and context length, without an OpenAI model's image limit, "
                "methods, shutdown date or price"
            )
        else:
            message = (
                f"no model given: the data is checked alone, its tokens counted with "
                f"{encoding}, without a model's token limit, image limit, methods, format, "
                "shutdown date or price"
            )
        issues.append(make_issue("no_model", None, None, message))
        if data_format is not None:
            issues.extend(_format_issues(encoding, data_format, kind))
        return issues
    if info is None:
        issues.append(
            make_issue(
                "unknown_model",
                None,
                None,
                f"model {model!r} is not in the model table: tokens are counted with "
                f"{DEFAULT_ENCODING}, with no token limit and no cost estimate",
            )
        )
        return issues
    if method not in info.methods:
        issues.append(
            make_issue(
                "method_not_supported",
                None,
                None,
                f"{info.name} supports {', '.join(info.methods)}, not {method}",
            )
        )
    issues.extend(_format_issues(info.name, info.data_format, kind))
    if info.shutdown_date is not None and as_of is not None:
        of = f" as of {info.shutdown_as_of.isoformat()}" if info.shutdown_as_of else ""
        confidence = _DATE_CONFIDENCE.get(info.shutdown_confidence or "official", "").format(of=of)
        if as_of >= info.shutdown_date:
            issues.append(
                make_issue(
                    "model_shut_down",
                    None,
                    None,
                    f"{info.name} was shut down on {info.shutdown_date.isoformat()}{confidence}",
                )
            )
        elif info.shutdown_date - as_of <= timedelta(days=SHUTDOWN_SOON_DAYS):
            days = (info.shutdown_date - as_of).days
            issues.append(
                make_issue(
                    "model_shutdown_soon",
                    None,
                    None,
                    f"{info.name} shuts down on {info.shutdown_date.isoformat()}{confidence}, "
                    f"in {days} days; fine-tunes built on it stop working the same day",
                )
            )
    return issues


def _format_issues(name: str, takes: DataFormat, kind: LineKind) -> list[Issue]:
    # Only supervised data has two formats; DPO or RFT data on a model without the method is
    # already method_not_supported.
    if kind not in ("chat", "completion") or kind == takes:
        return []
    return [
        make_issue(
            "format_not_supported",
            None,
            None,
            f"{name} takes {_FORMAT_WORDS[takes]} examples; the data is "
            f"{_FORMAT_WORDS[kind]} (the format of its first example)",
            fix=_FORMAT_FIX[takes],
        )
    ]


def _azure_file_issues(
    files: list[tuple[FileRole, ChunkStats]], from_bytes: list[bool], cap: int
) -> None:
    """Azure's file rules: its own issues added, the BOM warning dropped (Azure asks for one)."""
    for (file, stats), raw in zip(files, from_bytes, strict=True):
        dropped = stats.issue_counts.pop("byte_order_mark", 0)
        if dropped:
            stats.issues = [i for i in stats.issues if i.code != "byte_order_mark"]
        for issue in azure_file_issues(stats, file, from_bytes=raw):
            stats.add_issue(issue, cap)


def _file_issues(stats: ChunkStats, file: FileRole, min_examples: int, cap: int) -> None:
    def add(code: str, line: int | None, message: str) -> None:
        stats.add_issue(make_issue(code, line, None, message, file=file), cap)

    if stats.n_examples == 0:
        what = "is empty" if stats.n_lines == 0 else f"has only {stats.n_lines} blank line(s)"
        add("empty_file", None, f"the {file} file {what}")
    elif file == "training" and stats.n_examples < min_examples:
        add(
            "too_few_examples",
            None,
            f"{stats.n_examples} example(s); the API needs at least {min_examples}",
        )
    elif file == "training" and stats.n_examples < RECOMMENDED_MIN_EXAMPLES:
        add(
            "below_recommended_examples",
            None,
            f"{stats.n_examples} examples; 50 to 100 are the recommended start",
        )
    if stats.bom:
        add("byte_order_mark", 1, "the file starts with a UTF-8 byte-order mark")
    if stats.n_crlf:
        add(
            "crlf_line_endings",
            stats.first_crlf,
            f"{stats.n_crlf:,} line(s) end with CRLF, the first at line {stats.first_crlf}",
        )
    size_mb = stats.n_bytes / 1024 / 1024
    if stats.n_bytes > UPLOADS_API_LIMIT_BYTES:
        add("file_too_large", None, f"{size_mb:,.0f} MB is over the Uploads API's 8 GB")
    elif stats.n_bytes > FILES_API_LIMIT_BYTES:
        add("file_too_large_for_files_api", None, f"{size_mb:,.0f} MB is over /files' 512 MB")
    if stats.n_missing_system:
        add(
            "examples_missing_system_message",
            stats.first_missing_system,
            f"{stats.n_missing_system:,} example(s) have no system message, the first at line "
            f"{stats.first_missing_system}",
        )
    if stats.n_missing_user:
        add(
            "examples_missing_user_message",
            stats.first_missing_user,
            f"{stats.n_missing_user:,} example(s) have no user message, the first at line "
            f"{stats.first_missing_user}",
        )
    families = {
        "completion" if k == "completion" else "preference" if k == "preference" else "chat"
        for k in stats.kinds
    }
    if len(families) > 1:
        counts = ", ".join(f"{k}: {v:,}" for k, v in sorted(stats.kinds.items()))
        add("mixed_example_formats", None, f"the file mixes formats ({counts})")


def _summary(stats: ChunkStats, file: FileRole) -> FileSummary:
    return FileSummary(
        file=file,
        n_lines=stats.n_lines,
        n_blank_lines=stats.n_blank,
        n_examples=stats.n_examples,
        n_valid_examples=stats.n_valid,
        n_bytes=stats.n_bytes,
        kinds=dict(sorted(stats.kinds.items())),
        messages_per_example=Distribution.from_histogram(stats.messages),
        total_tokens=Distribution.from_histogram(stats.total_tokens),
        assistant_tokens=Distribution.from_histogram(stats.assistant_tokens),
        n_missing_system=stats.n_missing_system,
        n_missing_user=stats.n_missing_user,
        n_with_images=stats.n_with_images,
        n_too_long=stats.n_too_long,
        billing_tokens=stats.billing_tokens,
    )


def _cost(
    info: ModelInfo | None,
    method: MethodName,
    billing: int,
    epochs: int | None,
    auto: bool,
) -> CostEstimate | None:
    if info is None or epochs is None or method == "reinforcement":
        return None
    price = info.training_price_per_1m
    confidence = info.training_price_confidence
    if price is None or confidence is None:
        return None
    margin = _PRICE_MARGIN[confidence]
    low_epochs = max(MIN_DEFAULT_EPOCHS, epochs - 1) if auto else epochs
    high_epochs = min(MAX_DEFAULT_EPOCHS, epochs + 1) if auto else epochs
    per_epoch = billing / 1e6 * price
    assumptions = [
        f"training price ${price:g} per 1M tokens [{confidence}, as of "
        f"{info.as_of.isoformat()}]" + (f", +-{margin:.0%}" if margin else ""),
        f"{billing:,} billing tokens per epoch: each example capped at "
        f"{info.max_example_tokens:,} tokens"
        if info.max_example_tokens
        else f"{billing:,} billing tokens per epoch",
        (
            f"n_epochs auto: {epochs} by the cookbook heuristic, {low_epochs}-{high_epochs} "
            "allowed for"
        )
        if auto
        else f"n_epochs {epochs} as given",
        "the validation file is not billed",
    ]
    return CostEstimate(
        model=info.name,
        price_per_1m_tokens=price,
        price_confidence=confidence,
        billing_tokens=billing,
        epochs=epochs,
        epochs_low=low_epochs,
        epochs_high=high_epochs,
        trained_tokens=epochs * billing,
        low_usd=low_epochs * per_epoch * (1 - margin),
        expected_usd=epochs * per_epoch,
        high_usd=high_epochs * per_epoch * (1 + margin),
        assumptions=tuple(assumptions),
    )


def _sort_key(issue: Issue) -> tuple[int, int, int]:
    line = issue.line
    return (_FILE_TAGS[issue.file], 0 if line is None else 1, line or 0)


# ---------------------------------------------------------------------- entry point
def preflight(
    source: Any,
    *,
    model: str | None = None,
    validation: Any = None,
    method: Method | None = None,
    n_epochs: int | None = None,
    min_examples: int = 10,
    workers: int | None = None,
    max_issues_per_code: int = 1000,
    as_of: date | None = None,
    shutdown_dates: bool = True,
    tokenizer: ModelTokenizer | None = None,
    data_format: DataFormat | None = None,
    profile: Profile = "openai",
) -> PreflightReport:
    """Check training data offline and report every problem, the tokens and the cost.

    Args:
        source: The training data: a path to a JSONL file, its bytes, a binary file object,
            a ``Dataset``, or an iterable of records or dicts (reported by position).
        model: The base model (any name the model table accepts: snapshot, alias, ``ft:``,
            Azure). It sets the encoding, the token limit, image limits, supported methods,
            shutdown checks and the price. ``None`` (the default) checks the data alone, with
            ``o200k_base``: no model limits, no shutdown date and no cost, which the report
            says in a ``no_model`` note (the local backend validates uploads this way).
        validation: The validation data, in any form ``source`` accepts.
        method: ``"supervised"``, ``"dpo"`` or ``"reinforcement"``; ``None`` detects it from
            the first example (DPO by its keys; reinforcement for an RFT-only model, or for
            messages ending with a user turn next to extra top-level keys). Supervised data
            is checked in the format of its first example, chat or prompt/completion.
        n_epochs: The epochs the job will use; ``None`` estimates what ``auto`` chooses.
        min_examples: The fewest training examples accepted (the API's minimum is 10).
        workers: Processes scanning a file: ``None`` uses every CPU for files of 8 MB or
            more and none below; ``1`` scans in-process.
        max_issues_per_code: Issues of one code kept per file (all are counted).
        as_of: The day to compare shutdown dates with; today by default.
        shutdown_dates: Report the model table's shutdown dates, which are OpenAI's. Turn it
            off for a backend that retires models on its own schedule (Azure, any other
            server speaking the API): the model's limits and prices still apply.
        tokenizer: Count tokens as a backend's own model does (a ``ModelTokenizer``, such as
            the local backend's), instead of with tiktoken: its counts, and its model's
            context length as the token limit, replace the model table's; an example it
            cannot read is a ``backend_rejects_example`` error. Files are then scanned
            in-process. Not used for reinforcement data.
        data_format: The format of supervised examples the model takes, ``"chat"`` or
            ``"completion"``, for a model the table does not know (the tokenizer's by
            default): data in the other format is a ``format_not_supported`` error.
        profile: Whose file rules to add to the common ones: ``"openai"`` (the default) or
            ``"azure"``, Azure OpenAI's own (files under 512 MB, its byte-order-mark
            statement, a resource's 50 files and 1 GB, RFT's validation file and example
            limits; see ``finetune_kit.data.azure_profile``).

    Returns:
        The report. Bad data never raises: it is reported.

    Raises:
        ConfigurationError: ``source`` or ``validation`` is not a readable kind of input, or an
            argument is out of range.
        OSError: A path cannot be read.
    """
    if n_epochs is not None and not 1 <= n_epochs <= 50:
        raise ConfigurationError(f"n_epochs must be 1-50, not {n_epochs}", param="n_epochs")
    if method is not None and method not in _KIND_OF_METHOD:
        raise ConfigurationError(
            f"method must be supervised, dpo or reinforcement, not {method!r}", param="method"
        )
    if max_issues_per_code < 1:
        raise ConfigurationError(
            "max_issues_per_code must be at least 1", param="max_issues_per_code"
        )
    if data_format is not None and data_format not in _FORMAT_WORDS:
        raise ConfigurationError(
            f"data_format must be chat or completion, not {data_format!r}", param="data_format"
        )
    if profile not in ("openai", "azure"):
        raise ConfigurationError(
            f"profile must be openai or azure, not {profile!r}", param="profile"
        )
    today = as_of or date.today()
    info = get_model_info(model)
    encoding = info.encoding if info is not None else DEFAULT_ENCODING
    limit = info.max_example_tokens if info is not None else None
    training = _Source.of(source, "source")
    checked: MethodName = method or _detect_method(training, info)
    if data_format is None and tokenizer is not None:
        data_format = tokenizer.data_format
    takes = info.data_format if info is not None else data_format
    kind = _kind_for(checked, training, takes)
    # The local backend trains supervised and DPO data only; other data keeps tiktoken's count.
    counted_by_backend = tokenizer is not None and checked != "reinforcement"
    recorder = _Recorder(tokenizer) if tokenizer is not None and counted_by_backend else None
    logger.debug(
        "preflight: model=%s method=%s kind=%s encoding=%s", model, checked, kind, encoding
    )

    index = FingerprintIndex()
    try:
        files: list[tuple[FileRole, ChunkStats]] = []
        inputs: list[tuple[FileRole, _Source]] = [("training", training)]
        if validation is not None:
            inputs.append(("validation", _Source.of(validation, "validation")))
        # Files and bytes carry their own encoding (a BOM or not); records do not.
        from_bytes = [data.values is None for _, data in inputs]
        for file, data in inputs:
            config = ScanConfig(
                check=_check_config(kind, info, file),
                encoding=encoding,
                max_example_tokens=limit,
                max_issues_per_code=max_issues_per_code,
            )
            collector = _Collector(file, index, max_issues_per_code)
            # A tokenizer (a client of a server, most likely) stays in this process.
            scan_workers = 1 if recorder is not None else _workers_for(data, workers)
            files.append((file, _scan(data, config, scan_workers, collector, recorder)))
        _add_repeats(index, files, max_issues_per_code)
    finally:
        index.close()
    for file, stats in files:
        _file_issues(stats, file, min_examples, max_issues_per_code)
    if profile == "azure":
        _azure_file_issues(files, from_bytes, max_issues_per_code)

    if recorder is not None:
        encoding = recorder.name()
    issues = _model_issues(
        model,
        info,
        checked,
        kind,
        today if shutdown_dates else None,
        encoding,
        data_format,
        recorder is not None,
    )
    if profile == "azure":
        issues.extend(
            azure_dataset_issues(
                checked,
                has_validation=validation is not None,
                n_training=files[0][1].n_examples,
                n_validation=files[1][1].n_examples if len(files) > 1 else 0,
            )
        )
    elif checked == "reinforcement" and validation is None:
        issues.append(
            make_issue(
                "validation_file_required",
                None,
                None,
                "reinforcement fine-tuning without a validation file",
            )
        )
    counts: dict[str, int] = {}
    for issue in issues:
        counts[issue.code] = counts.get(issue.code, 0) + 1
    for _, stats in files:
        issues.extend(stats.issues)
        for code, count in stats.issue_counts.items():
            counts[code] = counts.get(code, 0) + count
    train_stats = files[0][1]
    epochs = n_epochs or (auto_epochs(train_stats.n_examples) if train_stats.n_examples else None)
    cost = _cost(info, checked, train_stats.billing_tokens, epochs, auto=n_epochs is None)
    if model is not None and info is not None and cost is None and train_stats.n_examples:
        why = (
            "reinforcement fine-tuning is billed per hour of training, plus grader tokens"
            if checked == "reinforcement"
            else f"no per-token training price is known for {info.name}"
        )
        cost_issue = make_issue("cost_not_estimated", None, None, why)
        issues.append(cost_issue)
        counts[cost_issue.code] = counts.get(cost_issue.code, 0) + 1
    issues.sort(key=_sort_key)
    return PreflightReport(
        model=model,
        base_model=info.name if info is not None else None,
        encoding=encoding,
        method=checked,
        kind=kind,
        training=_summary(train_stats, "training"),
        validation=_summary(files[1][1], "validation") if len(files) > 1 else None,
        issues=tuple(issues),
        issue_counts=counts,
        epochs=epochs,
        cost=cost,
        as_of=today,
        max_issues_per_code=max_issues_per_code,
    )
