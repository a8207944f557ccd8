"""The preflight report: issues, counts, token statistics, epochs and cost.

A ``PreflightReport`` is a frozen value: ``to_dict()``/``to_json()`` give the whole of it as
JSON, ``_repr_html_()`` renders it in a notebook (every value escaped), and
``raise_for_errors()`` turns error-severity issues into ``PreflightFailedError``.

Example:
    >>> from finetune_kit.data.report import Distribution
    >>> Distribution.from_histogram({10: 3, 20: 1})
    Distribution(count=4, min=10, mean=12.5, p10=10.0, p50=10.0, p90=17.0, max=20, total=50)
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from ..errors import PreflightFailedError
from .base_models import Confidence, MethodName
from .issues import FileRole, Issue, Severity
from .rules import LineKind

__all__ = ["CostEstimate", "Distribution", "FileSummary", "PreflightReport"]


@dataclass(frozen=True)
class Distribution:
    """Summary of one number per example (tokens, messages).

    Percentiles interpolate linearly between ranks, as ``numpy.quantile`` does by default (and
    as the cookbook's ``print_distribution`` did).

    Attributes:
        count: Examples counted.
        min: Smallest value.
        mean: Average value.
        p10: 10th percentile.
        p50: Median.
        p90: 90th percentile.
        max: Largest value.
        total: Sum over all examples.
    """

    count: int
    min: int
    mean: float
    p10: float
    p50: float
    p90: float
    max: int
    total: int

    @classmethod
    def from_histogram(cls, histogram: Mapping[int, int]) -> Distribution | None:
        """Build from ``{value: number of examples with it}``; ``None`` when empty.

        Args:
            histogram: How many examples had each value.

        Returns:
            The distribution, exact.
        """
        items = sorted((value, count) for value, count in histogram.items() if count > 0)
        if not items:
            return None
        values = [value for value, _ in items]
        ends: list[int] = []  # ends[i]: rank just past the last example with values[i]
        running = 0
        for _, count in items:
            running += count
            ends.append(running)
        n = running
        total = sum(value * count for value, count in items)

        def at(rank: int) -> int:
            return values[bisect.bisect_right(ends, rank)]

        def quantile(q: float) -> float:
            position = q * (n - 1)
            low = int(position)
            fraction = position - low
            value = float(at(low))
            if fraction:
                value += (at(min(low + 1, n - 1)) - value) * fraction
            return value

        return cls(
            count=n,
            min=values[0],
            mean=total / n,
            p10=quantile(0.1),
            p50=quantile(0.5),
            p90=quantile(0.9),
            max=values[-1],
            total=total,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the distribution as a JSON-ready dict."""
        return {
            "count": self.count,
            "min": self.min,
            "mean": round(self.mean, 3),
            "p10": self.p10,
            "p50": self.p50,
            "p90": self.p90,
            "max": self.max,
            "total": self.total,
        }


@dataclass(frozen=True)
class FileSummary:
    """Counts and token statistics of one file (training or validation).

    Attributes:
        file: Which file.
        n_lines: Lines, blank ones included.
        n_blank_lines: Blank lines.
        n_examples: Non-blank lines (each one meant as an example).
        n_valid_examples: Examples without any error.
        n_bytes: Size in bytes (as JSONL, for records).
        kinds: Examples by detected format (``chat``, ``preference``...).
        messages_per_example: Messages per example.
        total_tokens: Tokens per example, overheads included.
        assistant_tokens: Trained assistant tokens per example.
        n_missing_system: Examples without a system or developer message.
        n_missing_user: Examples without a user message.
        n_with_images: Examples with at least one image.
        n_too_long: Examples over the model's token limit.
        billing_tokens: Tokens billed per epoch: each example capped at the model's limit.
    """

    file: FileRole
    n_lines: int
    n_blank_lines: int
    n_examples: int
    n_valid_examples: int
    n_bytes: int
    kinds: dict[str, int]
    messages_per_example: Distribution | None
    total_tokens: Distribution | None
    assistant_tokens: Distribution | None
    n_missing_system: int
    n_missing_user: int
    n_with_images: int
    n_too_long: int
    billing_tokens: int

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready dict."""
        return {
            "file": self.file,
            "n_lines": self.n_lines,
            "n_blank_lines": self.n_blank_lines,
            "n_examples": self.n_examples,
            "n_valid_examples": self.n_valid_examples,
            "n_bytes": self.n_bytes,
            "kinds": dict(self.kinds),
            "messages_per_example": _dist(self.messages_per_example),
            "total_tokens": _dist(self.total_tokens),
            "assistant_tokens": _dist(self.assistant_tokens),
            "n_missing_system": self.n_missing_system,
            "n_missing_user": self.n_missing_user,
            "n_with_images": self.n_with_images,
            "n_too_long": self.n_too_long,
            "billing_tokens": self.billing_tokens,
        }


def _dist(value: Distribution | None) -> dict[str, Any] | None:
    return value.to_dict() if value is not None else None


@dataclass(frozen=True)
class CostEstimate:
    """What training would cost, as a range.

    ``expected_usd`` is the cookbook's estimate: epochs x billing tokens x price. The range
    widens it for what is not known: the price's confidence (``official`` exact, ``3p``
    +-10 %, ``recall`` +-25 %) and, when ``n_epochs`` is ``auto``, one epoch either way, since
    the API's choice is a heuristic.

    Attributes:
        model: The base model the price is for.
        price_per_1m_tokens: USD per 1M trained tokens.
        price_confidence: How far the price can be trusted.
        billing_tokens: Tokens billed per epoch.
        epochs: The epochs assumed for ``expected_usd``.
        epochs_low: The fewest epochs the range allows.
        epochs_high: The most epochs the range allows.
        trained_tokens: ``epochs x billing_tokens``, comparable to ``job.trained_tokens``.
        low_usd: Low end of the range.
        expected_usd: The point estimate.
        high_usd: High end of the range.
        assumptions: Each assumption behind the numbers, in words.
    """

    model: str
    price_per_1m_tokens: float
    price_confidence: Confidence
    billing_tokens: int
    epochs: int
    epochs_low: int
    epochs_high: int
    trained_tokens: int
    low_usd: float
    expected_usd: float
    high_usd: float
    assumptions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the estimate as a JSON-ready dict."""
        return {
            "currency": "USD",
            "model": self.model,
            "price_per_1m_tokens": self.price_per_1m_tokens,
            "price_confidence": self.price_confidence,
            "billing_tokens": self.billing_tokens,
            "epochs": self.epochs,
            "epochs_low": self.epochs_low,
            "epochs_high": self.epochs_high,
            "trained_tokens": self.trained_tokens,
            "low_usd": round(self.low_usd, 4),
            "expected_usd": round(self.expected_usd, 4),
            "high_usd": round(self.high_usd, 4),
            "assumptions": list(self.assumptions),
        }

    def __str__(self) -> str:
        return (
            f"${self.low_usd:,.2f} to ${self.high_usd:,.2f} "
            f"(expected ${self.expected_usd:,.2f}: {self.epochs} epochs x "
            f"{self.billing_tokens:,} tokens at ${self.price_per_1m_tokens:g}/1M)"
        )


@dataclass(frozen=True)
class PreflightReport:
    r"""Everything preflight found out about a training file (and its validation file).

    Attributes:
        model: The model name as given (``None`` when checks were model-free).
        base_model: The base snapshot it resolved to in the model table, if known.
        encoding: The tiktoken encoding tokens were counted with.
        method: The fine-tuning method the data was checked for.
        kind: The example format checked (``chat``, ``preference``, ``reinforcement``,
            ``completion``).
        training: The training file's counts and token statistics.
        validation: The validation file's, when one was given.
        issues: Issues kept, sorted by file and line (see ``issue_counts`` for totals).
        issue_counts: How many issues of each code were found, all kept or not.
        epochs: The epochs ``n_epochs`` gives, or that ``auto`` would choose.
        cost: The cost estimate, when a per-token price is known.
        as_of: The day model shutdown dates were compared with.
        max_issues_per_code: How many issues of one code per file were kept.

    Example:
        >>> from finetune_kit.data.validation import preflight
        >>> report = preflight(b'{"messages": [{"role": "user", "content": "Hi"}]}\n', model=None)
        >>> report.ok, [(issue.line, issue.code) for issue in report.errors]
        (False, [(None, 'too_few_examples'), (1, 'example_missing_assistant_message')])
    """

    model: str | None
    base_model: str | None
    encoding: str
    method: MethodName
    kind: LineKind
    training: FileSummary
    validation: FileSummary | None
    issues: tuple[Issue, ...]
    issue_counts: dict[str, int]
    epochs: int | None
    cost: CostEstimate | None
    as_of: date
    max_issues_per_code: int = 1000

    # ------------------------------------------------------------------ verdicts
    @property
    def ok(self) -> bool:
        """Whether no error-severity issue was found."""
        return not any(issue.severity == "error" for issue in self.issues)

    def _of(self, severity: Severity) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity == severity]

    @property
    def errors(self) -> list[Issue]:
        """The error-severity issues kept."""
        return self._of("error")

    @property
    def warnings(self) -> list[Issue]:
        """The warning-severity issues kept."""
        return self._of("warning")

    @property
    def infos(self) -> list[Issue]:
        """The info-severity issues kept."""
        return self._of("info")

    @property
    def truncated(self) -> bool:
        """Whether some issues were counted but not kept (see ``max_issues_per_code``)."""
        return sum(self.issue_counts.values()) > len(self.issues)

    def raise_for_errors(self) -> None:
        """Raise if any error was found.

        Raises:
            PreflightFailedError: With the first errors in its message and the report
                attached as ``.report``.
        """
        errors = self.errors
        if not errors:
            return
        shown = "; ".join(
            f"{issue.file} {issue.location}: {issue.code}: {issue.message}" for issue in errors[:5]
        )
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise PreflightFailedError(
            f"preflight found {len(errors)} error(s): {shown}{more}", report=self
        )

    # ------------------------------------------------------------------ shortcuts
    @property
    def n_examples(self) -> int:
        """Examples in the training file."""
        return self.training.n_examples

    @property
    def billing_tokens(self) -> int:
        """Training tokens billed per epoch."""
        return self.training.billing_tokens

    @property
    def total_tokens(self) -> Distribution | None:
        """Tokens per training example."""
        return self.training.total_tokens

    @property
    def assistant_tokens(self) -> Distribution | None:
        """Trained assistant tokens per training example."""
        return self.training.assistant_tokens

    @property
    def messages_per_example(self) -> Distribution | None:
        """Messages per training example."""
        return self.training.messages_per_example

    # ------------------------------------------------------------------ rendering
    def to_dict(self) -> dict[str, Any]:
        """Return the whole report as JSON-ready data."""
        return {
            "ok": self.ok,
            "model": self.model,
            "base_model": self.base_model,
            "encoding": self.encoding,
            "method": self.method,
            "kind": self.kind,
            "as_of": self.as_of.isoformat(),
            "epochs": self.epochs,
            "cost": self.cost.to_dict() if self.cost is not None else None,
            "training": self.training.to_dict(),
            "validation": self.validation.to_dict() if self.validation else None,
            "issue_counts": dict(sorted(self.issue_counts.items())),
            "truncated": self.truncated,
            "max_issues_per_code": self.max_issues_per_code,
            "issues": [issue.to_dict() for issue in self.issues],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """Return the whole report as a JSON text.

        Args:
            indent: Indentation, or ``None`` for one line.
        """
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def summary(self) -> str:
        """A few lines for a terminal: verdict, counts, tokens, epochs, cost, top issues."""
        from ._report_html import render_text

        return render_text(self)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        from ._report_html import render_html

        return render_html(self)
