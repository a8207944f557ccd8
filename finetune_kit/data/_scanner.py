"""Scan blocks of a JSONL file (or records) into mergeable statistics and issues.

A ``FileScanner`` turns one ``LineChunk`` into a ``ChunkStats``: its issues, token histograms,
counts and one 64-bit fingerprint per example. Chunks are independent, so worker processes can
scan them in any order and the caller merges the results in line order. The serial path runs
the very same code in-process, so both paths give identical reports.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from .issues import Issue, make_issue
from .jsonl import LineChunk, RawLine, _decoder, decode_line, dumps_line, iter_raw_lines
from .model_tokenizer import ModelTokenizer
from .rules import CheckConfig, ExampleChecker, find_lone_surrogates, find_special_tokens
from .tokens import TokenCounter

__all__ = ["ChunkStats", "FileScanner", "ScanConfig", "fingerprint"]

# A surrogate written as UTF-8 (only records can hold one: a file with it is not UTF-8).
_RAW_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")


def fingerprint(body: bytes) -> int:
    """A 63-bit fingerprint of an example's bytes (trimmed), for duplicate detection.

    63 bits so it fits SQLite's signed integers; at a million examples the chance of any
    collision is about one in ten million.
    """
    digest = hashlib.blake2b(body.strip(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass(frozen=True)
class ScanConfig:
    """Everything a scanner needs; small and picklable, sent once to each worker process.

    Attributes:
        check: The per-example rules' configuration.
        encoding: The tiktoken encoding to count with.
        max_example_tokens: The model's per-example token limit, or ``None``.
        max_issues_per_code: How many issues of one code to keep (all are counted).
    """

    check: CheckConfig
    encoding: str
    max_example_tokens: int | None
    max_issues_per_code: int


_K = TypeVar("_K")


def _add_counts(mine: dict[_K, int], theirs: dict[_K, int]) -> None:
    for key, count in theirs.items():
        mine[key] = mine.get(key, 0) + count


@dataclass
class ChunkStats:
    """Statistics of some lines of one file; ``merge`` adds another block's.

    Histograms map a value (tokens, messages) to how many examples had it: exact percentiles
    in memory bounded by the number of distinct values, not by the number of examples.
    """

    n_lines: int = 0
    n_blank: int = 0
    n_examples: int = 0
    n_valid: int = 0
    n_bytes: int = 0
    n_crlf: int = 0
    first_crlf: int | None = None
    bom: bool = False
    first_value_line: int | None = None
    kinds: dict[str, int] = field(default_factory=dict)
    messages: dict[int, int] = field(default_factory=dict)
    total_tokens: dict[int, int] = field(default_factory=dict)
    assistant_tokens: dict[int, int] = field(default_factory=dict)
    billing_tokens: int = 0
    n_too_long: int = 0
    n_missing_system: int = 0
    first_missing_system: int | None = None
    n_missing_user: int = 0
    first_missing_user: int | None = None
    n_with_images: int = 0
    issue_counts: dict[str, int] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    fingerprints: array[int] = field(default_factory=lambda: array("q"))
    fingerprint_lines: array[int] = field(default_factory=lambda: array("q"))

    def add_issue(self, issue: Issue, cap: int) -> None:
        """Count an issue, and keep it while its code has fewer than ``cap`` kept."""
        count = self.issue_counts.get(issue.code, 0) + 1
        self.issue_counts[issue.code] = count
        if count <= cap:
            self.issues.append(issue)

    def shift_lines(self, delta: int) -> None:
        """Renumber every line by ``delta`` (for a block scanned before its place was known)."""
        if not delta:
            return

        def shift(line: int | None) -> int | None:
            return None if line is None else line + delta

        self.first_crlf = shift(self.first_crlf)
        self.first_value_line = shift(self.first_value_line)
        self.first_missing_system = shift(self.first_missing_system)
        self.first_missing_user = shift(self.first_missing_user)
        self.issues = [
            replace(issue, line=issue.line + delta) if issue.line is not None else issue
            for issue in self.issues
        ]
        self.fingerprint_lines = array("q", [line + delta for line in self.fingerprint_lines])

    def merge(self, other: ChunkStats, cap: int) -> None:
        """Add the statistics of a later block (fingerprints are left to the caller)."""
        self.n_lines += other.n_lines
        self.n_blank += other.n_blank
        self.n_examples += other.n_examples
        self.n_valid += other.n_valid
        self.n_bytes += other.n_bytes
        self.n_crlf += other.n_crlf
        if self.first_crlf is None:
            self.first_crlf = other.first_crlf
        self.bom = self.bom or other.bom
        if self.first_value_line is None:
            self.first_value_line = other.first_value_line
        _add_counts(self.kinds, other.kinds)
        _add_counts(self.messages, other.messages)
        _add_counts(self.total_tokens, other.total_tokens)
        _add_counts(self.assistant_tokens, other.assistant_tokens)
        self.billing_tokens += other.billing_tokens
        self.n_too_long += other.n_too_long
        self.n_missing_system += other.n_missing_system
        if self.first_missing_system is None:
            self.first_missing_system = other.first_missing_system
        self.n_missing_user += other.n_missing_user
        if self.first_missing_user is None:
            self.first_missing_user = other.first_missing_user
        self.n_with_images += other.n_with_images
        for code, count in other.issue_counts.items():
            kept_before = min(self.issue_counts.get(code, 0), cap)
            self.issue_counts[code] = self.issue_counts.get(code, 0) + count
            room = cap - kept_before
            if room > 0:
                self.issues.extend([i for i in other.issues if i.code == code][:room])


class FileScanner:
    r"""Scans lines or records of one file, with one token counter kept across blocks.

    Args:
        config: What to check and count.
        tokenizer: Counts tokens as a backend's own model does, instead of tiktoken: the
            examples of each block are sent to it together once the block is checked.

    Example:
        >>> from finetune_kit.data.rules import CheckConfig
        >>> from finetune_kit.data.jsonl import LineChunk
        >>> scanner = FileScanner(ScanConfig(CheckConfig(), "o200k_base", 65536, 1000))
        >>> stats = scanner.scan_chunk(LineChunk(1, 0, b'{"messages": []}\n\n'))
        >>> [(i.line, i.code) for i in stats.issues]
        [(1, 'missing_messages_list'), (2, 'blank_line')]
    """

    def __init__(self, config: ScanConfig, tokenizer: ModelTokenizer | None = None) -> None:
        self.config = config
        self.checker = ExampleChecker(config.check)
        self.counter = TokenCounter(config.encoding)
        self.tokenizer = tokenizer
        self._file = config.check.file
        self._cap = config.max_issues_per_code
        self._scratch: list[Issue] = []
        # Examples waiting for the tokenizer: (line, value, had errors of their own).
        self._pending: list[tuple[int, dict[str, Any], bool]] = []

    def scan_chunk(self, chunk: LineChunk) -> ChunkStats:
        """Scan one block of lines.

        Args:
            chunk: A block from ``iter_chunks``.

        Returns:
            Its statistics, issues and fingerprints.
        """
        stats = ChunkStats()
        stats.n_bytes = len(chunk.data)
        at_file_start = chunk.offset == 0
        for raw in iter_raw_lines(chunk):
            stats.n_lines += 1
            if raw.crlf:
                stats.n_crlf += 1
                if stats.first_crlf is None:
                    stats.first_crlf = raw.number
            if raw.bom:
                stats.bom = True
            body = raw.body
            try:
                text = body.decode("utf-8")
                if not text or text.isspace():
                    stats.n_blank += 1
                    self._issue(stats, "blank_line", raw.number, None, "blank line")
                    continue
                value = _decoder.decode(text)
            except (ValueError, RecursionError):
                # UnicodeDecodeError and JSONDecodeError are ValueErrors: take the slow path
                # that words the problem exactly as the reader does.
                self._bad_line(stats, raw, at_file_start)
                continue
            # A file that decodes as UTF-8 holds no raw surrogate: only a \uD8xx escape can
            # make one, so the (rare) lines with one are the only ones searched.
            maybe_surrogate = b"\\ud" in body or b"\\uD" in body
            self._example(stats, value, raw.number, body, b"<|" in body, maybe_surrogate)
        self._count_pending(stats)
        return stats

    def scan_values(self, rows: Iterable[tuple[int, Any]]) -> ChunkStats:
        """Scan records given as JSON values (from a ``Dataset`` or dicts).

        Args:
            rows: ``(position, value)`` pairs; the position is reported as the line.

        Returns:
            Their statistics, issues and fingerprints.
        """
        stats = ChunkStats()
        for number, value in rows:
            stats.n_lines += 1
            try:
                text = dumps_line(value)
            except (TypeError, ValueError, RecursionError) as exc:
                stats.n_examples += 1
                if stats.first_value_line is None:
                    stats.first_value_line = number
                self._issue(stats, "data_type", number, None, f"not JSON-serialisable: {exc}")
                continue
            body = text.encode("utf-8", "surrogatepass")
            stats.n_bytes += len(body) + 1
            maybe_surrogate = _RAW_SURROGATE.search(body) is not None
            self._example(stats, value, number, body, "<|" in text, maybe_surrogate)
        self._count_pending(stats)
        return stats

    # ------------------------------------------------------------------ internals
    def _issue(
        self, stats: ChunkStats, code: str, line: int | None, field: str | None, message: str
    ) -> None:
        stats.add_issue(make_issue(code, line, field, message, file=self._file), self._cap)

    def _bad_line(self, stats: ChunkStats, raw: RawLine, at_file_start: bool) -> None:
        line = decode_line(raw)
        if line.problem == "blank_line":  # only whitespace after all (cannot happen; be safe)
            stats.n_blank += 1
            self._issue(stats, "blank_line", raw.number, None, "blank line")
            return
        stats.n_examples += 1
        first = stats.first_value_line is None and at_file_start
        if stats.first_value_line is None:
            stats.first_value_line = raw.number
        code = line.problem or "invalid_json"
        message = f"{line.detail}"
        if code == "invalid_json":
            if first and line.text is not None and line.text.lstrip().startswith("["):
                code = "top_level_array"
                message = "the file is a JSON array; each line must be one JSON object"
            else:
                message = f"invalid JSON: {line.detail} (byte offset {line.problem_offset})"
        self._issue(stats, code, raw.number, None, message)

    def _example(
        self,
        stats: ChunkStats,
        value: Any,
        number: int,
        body: bytes,
        maybe_special: bool,
        maybe_surrogate: bool = False,
    ) -> None:
        stats.n_examples += 1
        if stats.first_value_line is None:
            stats.first_value_line = number
        scratch = self._scratch
        scratch.clear()
        facts = self.checker.check(value, number, scratch)
        cap = self._cap
        n_errors = facts.n_errors
        surrogates = find_lone_surrogates(value) if maybe_surrogate else []
        if surrogates:
            for path, escape in surrogates:
                n_errors += 1
                where = f"at {path}" if path else "in a key"
                scratch.append(
                    make_issue(
                        "lone_surrogate",
                        number,
                        path,
                        f"the text {where} holds {escape}, half of a surrogate pair: not a "
                        "character, so it cannot be encoded as UTF-8 or tokenized",
                        file=self._file,
                    )
                )
        for issue in scratch:
            stats.add_issue(issue, cap)
        if facts.kind is not None:
            stats.kinds[facts.kind] = stats.kinds.get(facts.kind, 0) + 1
        if isinstance(value, dict):
            stats.messages[facts.n_messages] = stats.messages.get(facts.n_messages, 0) + 1
            if self.tokenizer is None:
                total, assistant = self.counter.count_example(value)
                self._add_tokens(stats, total, assistant, number, self.config.max_example_tokens)
            elif not surrogates:  # text that cannot be encoded cannot be sent to be counted
                self._pending.append((number, value, n_errors > 0))
            if not facts.has_system and facts.kind != "completion":
                stats.n_missing_system += 1
                if stats.first_missing_system is None:
                    stats.first_missing_system = number
            if not facts.has_user and facts.kind != "completion":
                stats.n_missing_user += 1
                if stats.first_missing_user is None:
                    stats.first_missing_user = number
            if facts.n_images:
                stats.n_with_images += 1
            if maybe_special:
                for path, token in find_special_tokens(value):
                    self._issue(
                        stats,
                        "special_token_in_text",
                        number,
                        path,
                        f"the text contains the special token {token}",
                    )
        if n_errors == 0:
            stats.n_valid += 1
        stats.fingerprints.append(fingerprint(body))
        stats.fingerprint_lines.append(number)

    def _add_tokens(
        self,
        stats: ChunkStats,
        total: int,
        assistant: int,
        number: int,
        limit: int | None,
        *,
        bill_whole: bool = False,
    ) -> None:
        stats.total_tokens[total] = stats.total_tokens.get(total, 0) + 1
        stats.assistant_tokens[assistant] = stats.assistant_tokens.get(assistant, 0) + 1
        if limit is not None and total > limit:
            stats.n_too_long += 1
            # OpenAI bills a cut example up to the limit; the local trainer bills it whole.
            stats.billing_tokens += total if bill_whole else limit
            self._issue(
                stats,
                "example_too_long",
                number,
                None,
                f"{total:,} tokens, over the model's limit of {limit:,}: the end will be cut off",
            )
        else:
            stats.billing_tokens += total

    def _count_pending(self, stats: ChunkStats) -> None:
        """Count the block's examples with the tokenizer, in one call."""
        if self.tokenizer is None or not self._pending:
            return
        pending, self._pending = self._pending, []
        method: Literal["supervised", "dpo"] = (
            "dpo" if self.config.check.kind == "preference" else "supervised"
        )
        batch = self.tokenizer.count_examples([value for _, value, _ in pending], method=method)
        if len(batch.counts) != len(pending):
            raise ValueError(
                f"the tokenizer {batch.tokenizer!r} counted {len(batch.counts)} examples of "
                f"{len(pending)}"
            )
        for (number, _, had_errors), count in zip(pending, batch.counts, strict=True):
            if count.total is not None:
                self._add_tokens(
                    stats,
                    count.total,
                    count.trained,
                    number,
                    batch.max_example_tokens,
                    bill_whole=True,
                )
            elif not had_errors:
                # Only an example preflight found nothing wrong with: otherwise the backend's
                # complaint is most likely the one already reported.
                stats.n_valid -= 1
                self._issue(
                    stats,
                    "backend_rejects_example",
                    number,
                    count.field,
                    f"{batch.tokenizer} cannot read this example: {count.error}",
                )
