"""Evaluation on held-out examples: the cases, the per-example results and the reports.

Everything here is pure: turning examples into :class:`EvalCase` values, collecting
:class:`ExampleResult` values into an :class:`EvaluationReport`, pairing two reports into a
:class:`PairedEvaluationReport` with flips and a bootstrap interval. The requests themselves are
made by :class:`finetune_kit.inference.InferenceClient`.

Examples:
    >>> cases = to_eval_cases([("Capital of France?", "Paris")], system="Be terse.")
    >>> [m["role"] for m in cases[0].messages], cases[0].reference
    (['system', 'user'], 'Paris')
    >>> low, high = bootstrap_mean_ci([0.0, 1.0, 1.0, 0.0, 1.0], seed=1)
    >>> 0.0 <= low <= 0.6 <= high <= 1.0
    True
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ._render import dataframe, format_float, format_signed, html_table, shorten, text_table
from .replies import ChatReply, ReplyToolCall

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "EvalCase",
    "EvaluationReport",
    "ExampleResult",
    "PairedEvaluationReport",
    "ScoreDifference",
    "bootstrap_mean_ci",
    "message_text",
    "to_eval_cases",
]

HTML_ROW_LIMIT = 200
"""Most example rows a report shows in a notebook; its DataFrame always has every row."""

# Keys of a training message that the chat completions endpoint does not take.
_TRAINING_ONLY_MESSAGE_KEYS = ("weight",)


def message_text(content: Any) -> str:
    """Return the text of a message's ``content``: a string, or the text of its content parts.

    Args:
        content: A message's ``content``: ``None``, a string, or a list of content parts.

    Returns:
        The text; image parts are left out, ``None`` gives ``""``.

    Examples:
        >>> message_text([{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {}}])
        'Hi'
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if isinstance(part, Mapping) and part.get("type") == "text":
            texts.append(str(part.get("text", "")))
    return "\n".join(texts)


@dataclass(frozen=True)
class EvalCase:
    """One held-out example: the prompt to send and the answer expected.

    Attributes:
        messages: The prompt: every message before the reference answer, as API dicts.
        reference: The reference answer's text, or ``None`` when there is none.
        reference_tool_calls: The tool calls the reference answer makes (empty when none).
        tools: The tools offered to the model, as API dicts, when the example declares some.
        parallel_tool_calls: The example's ``parallel_tool_calls`` setting, when it has one.
        extra: Other top-level keys of the example (an RFT example's reference fields, say).
        source: The object the case was made from.

    Examples:
        >>> case = EvalCase(messages=({"role": "user", "content": "2+2?"},), reference="4")
        >>> case.prompt_text
        '2+2?'
    """

    messages: tuple[dict[str, Any], ...]
    reference: str | None = None
    reference_tool_calls: tuple[ReplyToolCall, ...] = ()
    tools: tuple[dict[str, Any], ...] | None = None
    parallel_tool_calls: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: Any = field(default=None, repr=False, compare=False)

    @property
    def prompt_text(self) -> str:
        """The text of the last user message (what a table shows as the prompt)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message_text(message.get("content"))
        return message_text(self.messages[-1].get("content")) if self.messages else ""

    @property
    def has_reference(self) -> bool:
        """Whether the case has a reference answer (text or tool calls)."""
        return self.reference is not None or bool(self.reference_tool_calls)

    def to_dict(self) -> dict[str, Any]:
        """Return the case as JSON-ready data."""
        out: dict[str, Any] = {"messages": [dict(m) for m in self.messages]}
        out["reference"] = self.reference
        if self.reference_tool_calls:
            out["reference_tool_calls"] = [c.to_dict() for c in self.reference_tool_calls]
        if self.tools is not None:
            out["tools"] = [dict(t) for t in self.tools]
        if self.parallel_tool_calls is not None:
            out["parallel_tool_calls"] = self.parallel_tool_calls
        if self.extra:
            out["extra"] = dict(self.extra)
        return out


def _tool_calls_of(message: Mapping[str, Any], where: str) -> tuple[ReplyToolCall, ...]:
    calls = []
    for k, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise ConfigurationError(
                f"{where}.tool_calls[{k}] has no function name; a tool call looks like "
                '{"type": "function", "function": {"name": ..., "arguments": "{...}"}}',
                param="examples",
            )
        arguments = function.get("arguments", "")
        if not isinstance(arguments, str):
            # Arguments are a JSON string in the API; accept an already-decoded object too.
            arguments = json.dumps(arguments, ensure_ascii=False)
        calls.append(ReplyToolCall(name=function["name"], arguments=arguments, id=call.get("id")))
    return tuple(calls)


def _prompt_messages(messages: Sequence[Any], where: str) -> tuple[dict[str, Any], ...]:
    out = []
    for k, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message:
            raise ConfigurationError(
                f"{where}.messages[{k}] is not a message: expected a dict with a 'role'",
                param="examples",
            )
        out.append({key: v for key, v in message.items() if key not in _TRAINING_ONLY_MESSAGE_KEYS})
    return tuple(out)


def _case_from_chat(row: Mapping[str, Any], where: str, source: Any) -> EvalCase:
    messages = row.get("messages")
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise ConfigurationError(f"{where} has no 'messages' list", param="examples")
    tools = row.get("tools")
    extra = {k: v for k, v in row.items() if k not in {"messages", "tools", "parallel_tool_calls"}}
    last = messages[-1]
    if isinstance(last, Mapping) and last.get("role") == "assistant":
        # The last assistant turn is the reference; everything before it is the prompt.
        prompt = _prompt_messages(messages[:-1], where)
        if not prompt:
            raise ConfigurationError(
                f"{where} has only an assistant message: there is no prompt to send",
                param="examples",
            )
        content = last.get("content")
        reference_calls = _tool_calls_of(last, f"{where}.messages[{len(messages) - 1}]")
        reference = message_text(content) if content is not None or not reference_calls else None
    else:
        # An RFT-style example ends with the user's turn: no reference answer in the messages.
        prompt = _prompt_messages(messages, where)
        reference, reference_calls = None, ()
    return EvalCase(
        messages=prompt,
        reference=reference,
        reference_tool_calls=reference_calls,
        tools=tuple(dict(t) for t in tools) if tools else None,
        parallel_tool_calls=row.get("parallel_tool_calls"),
        extra=extra,
        source=source,
    )


def _case_from_preference(row: Mapping[str, Any], where: str, source: Any) -> EvalCase:
    # A DPO pair: the prompt is its input, the preferred output is the reference.
    inner = row.get("input")
    if not isinstance(inner, Mapping):
        raise ConfigurationError(f"{where}.input is not an object", param="examples")
    case = _case_from_chat({**inner, "messages": [*inner.get("messages", [])]}, where, source)
    preferred = row.get("preferred_output") or []
    answer = preferred[-1] if preferred else {}
    calls = _tool_calls_of(answer, f"{where}.preferred_output[-1]") if answer else ()
    content = answer.get("content") if isinstance(answer, Mapping) else None
    reference = message_text(content) if content is not None or not calls else None
    return EvalCase(
        messages=case.messages,
        reference=reference,
        reference_tool_calls=calls,
        tools=case.tools,
        parallel_tool_calls=case.parallel_tool_calls,
        source=source,
    )


def _as_prompt(prompt: Any, where: str) -> tuple[dict[str, Any], ...]:
    if isinstance(prompt, str):
        return ({"role": "user", "content": prompt},)
    if isinstance(prompt, Sequence) and prompt:
        return _prompt_messages(prompt, where)
    raise ConfigurationError(
        f"{where}: a prompt is a string or a non-empty list of message dicts, "
        f"not {type(prompt).__name__}",
        param="examples",
    )


def _with_system(case: EvalCase, system: str | None) -> EvalCase:
    if system is None or any(m.get("role") in ("system", "developer") for m in case.messages):
        return case
    return EvalCase(
        messages=({"role": "system", "content": system}, *case.messages),
        reference=case.reference,
        reference_tool_calls=case.reference_tool_calls,
        tools=case.tools,
        parallel_tool_calls=case.parallel_tool_calls,
        extra=case.extra,
        source=case.source,
    )


def to_eval_cases(examples: Iterable[Any], *, system: str | None = None) -> list[EvalCase]:
    """Turn held-out examples into :class:`EvalCase` values, in order.

    Accepted items:

    * an :class:`EvalCase`;
    * a chat example (a ``ChatExample``, a ``Dataset`` item, or a dict with ``messages``): the last
      assistant turn is the reference and everything before it is the prompt; an example ending
      with a user turn has no reference;
    * a preference example (``input`` / ``preferred_output``): the preferred output is the
      reference;
    * a ``(prompt, reference)`` tuple, the prompt a string or a list of message dicts, the
      reference a string or ``None``;
    * a bare prompt string (no reference).

    Args:
        examples: The examples, such as a ``Dataset`` or a list.
        system: A system message to put first in every prompt that has no system or developer
            message of its own.

    Returns:
        One case per example, in the same order.

    Raises:
        ConfigurationError: An item cannot be used; the message names it as ``examples[i]``.
    """
    cases = []
    for i, item in enumerate(examples):
        where = f"examples[{i}]"
        if isinstance(item, EvalCase):
            case = item
        elif isinstance(item, str):
            case = EvalCase(messages=_as_prompt(item, where), source=item)
        elif isinstance(item, tuple):
            if len(item) != 2:
                raise ConfigurationError(
                    f"{where} is a tuple of {len(item)} items; a pair is (prompt, reference)",
                    param="examples",
                )
            prompt, reference = item
            if reference is not None and not isinstance(reference, str):
                raise ConfigurationError(
                    f"{where}: the reference is a string or None, not {type(reference).__name__}",
                    param="examples",
                )
            case = EvalCase(messages=_as_prompt(prompt, where), reference=reference, source=item)
        else:
            row = item.to_dict() if hasattr(item, "to_dict") else item
            if not isinstance(row, Mapping):
                raise ConfigurationError(
                    f"{where} is a {type(item).__name__}; expected a chat example, a dict with "
                    "'messages', a (prompt, reference) tuple or a prompt string",
                    param="examples",
                )
            if "messages" in row:
                case = _case_from_chat(row, where, item)
            elif "input" in row and "preferred_output" in row:
                case = _case_from_preference(row, where, item)
            else:
                raise ConfigurationError(
                    f"{where} has neither 'messages' nor 'input'/'preferred_output'",
                    param="examples",
                )
        cases.append(_with_system(case, system))
    return cases


def _quantile(ordered: Sequence[float], q: float) -> float:
    # Linear interpolation between order statistics (the "type 7" rule numpy uses by default).
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def bootstrap_mean_ci(
    values: Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a mean.

    Resamples ``values`` with replacement ``n_resamples`` times and returns the quantiles of the
    resampled means; the same ``seed`` always gives the same interval. For paired scores, pass
    the per-example differences.

    Args:
        values: The observations (at least one).
        confidence: The interval's coverage, in (0, 1).
        n_resamples: How many resamples to draw (at least 100).
        seed: Seed of the random generator.

    Returns:
        ``(low, high)``.

    Raises:
        ConfigurationError: No values, or a parameter out of range.

    Examples:
        >>> bootstrap_mean_ci([0.5, 0.5, 0.5])
        (0.5, 0.5)
    """
    if not values:
        raise ConfigurationError("bootstrap_mean_ci needs at least one value", param="values")
    if not 0.0 < confidence < 1.0:
        raise ConfigurationError(
            f"confidence must be between 0 and 1 (exclusive), got {confidence}", param="confidence"
        )
    if n_resamples < 100:
        raise ConfigurationError(
            f"n_resamples must be at least 100, got {n_resamples}", param="n_resamples"
        )
    data = [float(v) for v in values]
    n = len(data)
    if min(data) == max(data):
        return data[0], data[0]
    rng = random.Random(seed)
    means = sorted(math.fsum(rng.choices(data, k=n)) / n for _ in range(n_resamples))
    alpha = (1.0 - confidence) / 2.0
    return _quantile(means, alpha), _quantile(means, 1.0 - alpha)


@dataclass(frozen=True)
class ExampleResult:
    """What happened to one example: the reply (or the error) and its scores.

    Attributes:
        index: The example's position in the input.
        case: The case that was sent.
        reply: The model's reply, or ``None`` when the request failed.
        error: ``"<ExceptionType>: <message>"`` when the request failed after its retries.
        scores: Each scorer's score, ``None`` when the scorer could not score this example.
        scorer_errors: Why a scorer gave ``None``, by scorer name.

    Examples:
        >>> case = EvalCase(messages=({"role": "user", "content": "Hi"},))
        >>> ExampleResult(index=0, case=case, error="RateLimitError: slow down").ok
        False
    """

    index: int
    case: EvalCase
    reply: ChatReply | None = None
    error: str | None = None
    scores: Mapping[str, float | None] = field(default_factory=dict)
    scorer_errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the model answered."""
        return self.reply is not None

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return {
            "index": self.index,
            "case": self.case.to_dict(),
            "reply": self.reply.to_dict() if self.reply is not None else None,
            "error": self.error,
            "scores": dict(self.scores),
            "scorer_errors": dict(self.scorer_errors),
        }


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) / len(present) if present else None


@dataclass(frozen=True)
class EvaluationReport:
    """One model's results on a set of examples, in input order, none dropped.

    Attributes:
        model: The model evaluated.
        results: One result per example, in the order the examples were given.
        thresholds: Each scorer's pass threshold (a score at or above it counts as right), in the
            order the scorers were given.
        elapsed: Wall-clock seconds the evaluation took.
        concurrency: How many requests were allowed in flight at once.

    Examples:
        >>> case = EvalCase(messages=({"role": "user", "content": "2+2?"},), reference="4")
        >>> report = EvaluationReport(
        ...     model="m", results=(ExampleResult(0, case, scores={"exact_match": 1.0}),),
        ...     thresholds={"exact_match": 1.0})
        >>> report.mean("exact_match"), report.pass_rate("exact_match")
        (1.0, 1.0)
    """

    model: str
    results: tuple[ExampleResult, ...]
    thresholds: Mapping[str, float]
    elapsed: float = 0.0
    concurrency: int = 1

    @property
    def scorer_names(self) -> list[str]:
        """The scorers' names, in the order they were given."""
        return list(self.thresholds)

    @property
    def errors(self) -> list[ExampleResult]:
        """The results whose request failed after its retries."""
        return [r for r in self.results if r.error is not None]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[ExampleResult]:
        return iter(self.results)

    def __getitem__(self, index: int) -> ExampleResult:
        return self.results[index]

    def _check_scorer(self, name: str) -> None:
        if name not in self.thresholds:
            raise ConfigurationError(
                f"no scorer named {name!r}; this report has {self.scorer_names}", param="scorer"
            )

    def scores(self, scorer: str) -> list[float | None]:
        """One scorer's scores, in input order (``None`` where there is no score)."""
        self._check_scorer(scorer)
        return [r.scores.get(scorer) for r in self.results]

    def mean(self, scorer: str) -> float | None:
        """The mean of one scorer's scores over the examples it scored."""
        return _mean(self.scores(scorer))

    def pass_rate(self, scorer: str) -> float | None:
        """The share of scored examples at or above the scorer's threshold."""
        present = [s for s in self.scores(scorer) if s is not None]
        threshold = self.thresholds[scorer]
        if not present:
            return None
        return sum(1 for s in present if s >= threshold) / len(present)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per scorer: ``mean``, ``pass_rate``, ``scored`` (count) and ``unscored`` (count)."""
        out = {}
        for name in self.thresholds:
            scores = self.scores(name)
            scored = sum(1 for s in scores if s is not None)
            out[name] = {
                "mean": self.mean(name),
                "pass_rate": self.pass_rate(name),
                "scored": scored,
                "unscored": len(scores) - scored,
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "model": self.model,
            "n_examples": len(self.results),
            "n_errors": len(self.errors),
            "elapsed": self.elapsed,
            "concurrency": self.concurrency,
            "thresholds": dict(self.thresholds),
            "summary": self.summary(),
            "results": [r.to_dict() for r in self.results],
        }

    def to_dataframe(self) -> pd.DataFrame:
        """One row per example: prompt, reference, answer, error, tokens, latency and scores.

        Raises:
            MissingDependencyError: pandas is not installed.
        """
        rows = []
        for r in self.results:
            row: dict[str, Any] = {
                "index": r.index,
                "prompt": r.case.prompt_text,
                "reference": r.case.reference,
                "answer": r.reply.text if r.reply else None,
                "error": r.error,
                "prompt_tokens": r.reply.prompt_tokens if r.reply else None,
                "completion_tokens": r.reply.completion_tokens if r.reply else None,
                "latency": r.reply.latency if r.reply else None,
            }
            for name in self.thresholds:
                row[name] = r.scores.get(name)
            rows.append(row)
        return dataframe(rows, "index")

    def _summary_rows(self) -> list[list[str]]:
        rows = []
        for name, s in self.summary().items():
            rows.append(
                [
                    name,
                    format_float(s["mean"]),
                    format_float(s["pass_rate"]),
                    str(s["scored"]),
                    str(s["unscored"]),
                ]
            )
        return rows

    def _title(self) -> str:
        return (
            f"{self.model} on {len(self.results)} examples: {len(self.errors)} request errors, "
            f"{self.elapsed:.1f} s at concurrency {self.concurrency}"
        )

    def __str__(self) -> str:
        headers = ["scorer", "mean", "pass rate", "scored", "unscored"]
        lines = [self._title(), text_table(headers, self._summary_rows())]
        for r in self.errors[:5]:
            lines.append(f"  examples[{r.index}]: {shorten(r.error or '', 90)}")
        if len(self.errors) > 5:
            lines.append(f"  ... and {len(self.errors) - 5} more errors")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        headers = ["scorer", "mean", "pass rate", "scored", "unscored"]
        summary = html_table(headers, self._summary_rows(), caption=self._title())
        example_headers = ["#", "prompt", "reference", "answer", *self.thresholds]
        example_rows = []
        for r in self.results[:HTML_ROW_LIMIT]:
            answer = r.reply.text if r.reply else f"error: {r.error}"
            example_rows.append(
                [
                    str(r.index),
                    shorten(r.case.prompt_text, 200),
                    shorten(r.case.reference or "", 200),
                    shorten(answer, 300),
                    *(format_float(r.scores.get(n)) for n in self.thresholds),
                ]
            )
        caption = None
        if len(self.results) > HTML_ROW_LIMIT:
            caption = (
                f"First {HTML_ROW_LIMIT} of {len(self.results)} examples (to_dataframe() has all)"
            )
        return summary + html_table(example_headers, example_rows, caption=caption)


@dataclass(frozen=True)
class ScoreDifference:
    """How a tuned model differs from its base on one scorer.

    Attributes:
        scorer: The scorer's name.
        n: Examples both models have a score for (the others are left out of every figure).
        base_mean: The base model's mean score over those examples.
        tuned_mean: The tuned model's mean score over those examples.
        mean_difference: ``tuned_mean - base_mean``.
        ci_low: Lower end of the bootstrap interval of the mean difference.
        ci_high: Upper end of that interval.
        confidence: The interval's coverage.
        improved: Indices where the base was wrong and the tuned model right.
        regressed: Indices where the base was right and the tuned model wrong.
    """

    scorer: str
    n: int
    base_mean: float | None
    tuned_mean: float | None
    mean_difference: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    improved: tuple[int, ...]
    regressed: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the difference as JSON-ready data."""
        return {
            "scorer": self.scorer,
            "n": self.n,
            "base_mean": self.base_mean,
            "tuned_mean": self.tuned_mean,
            "mean_difference": self.mean_difference,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence": self.confidence,
            "improved": list(self.improved),
            "regressed": list(self.regressed),
        }


def _difference(
    name: str,
    threshold: float,
    base: EvaluationReport,
    tuned: EvaluationReport,
    *,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> ScoreDifference:
    pairs = [
        (i, b, t)
        for i, (b, t) in enumerate(zip(base.scores(name), tuned.scores(name), strict=True))
        if b is not None and t is not None
    ]
    if not pairs:
        return ScoreDifference(name, 0, None, None, None, None, None, confidence, (), ())
    diffs = [t - b for _, b, t in pairs]
    low, high = bootstrap_mean_ci(diffs, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return ScoreDifference(
        scorer=name,
        n=len(pairs),
        base_mean=math.fsum(b for _, b, _ in pairs) / len(pairs),
        tuned_mean=math.fsum(t for _, _, t in pairs) / len(pairs),
        mean_difference=math.fsum(diffs) / len(diffs),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        improved=tuple(i for i, b, t in pairs if b < threshold <= t),
        regressed=tuple(i for i, b, t in pairs if t < threshold <= b),
    )


class PairedEvaluationReport:
    """A base and a tuned model scored on the same examples: differences, intervals and flips.

    Args:
        base: The base model's report.
        tuned: The tuned model's report, on the same examples with the same scorers.
        confidence: Coverage of the bootstrap intervals.
        n_resamples: Bootstrap resamples per scorer.
        seed: Bootstrap seed (the same seed gives the same intervals).

    Raises:
        ConfigurationError: The two reports are not on the same examples or scorers.

    Examples:
        >>> case = EvalCase(messages=({"role": "user", "content": "2+2?"},), reference="4")
        >>> def report(model, score):
        ...     return EvaluationReport(model, (ExampleResult(0, case, scores={"em": score}),),
        ...                             thresholds={"em": 1.0})
        >>> paired = PairedEvaluationReport(report("base", 0.0), report("tuned", 1.0))
        >>> paired.differences["em"].improved
        (0,)
    """

    def __init__(
        self,
        base: EvaluationReport,
        tuned: EvaluationReport,
        *,
        confidence: float = 0.95,
        n_resamples: int = 10_000,
        seed: int = 0,
    ) -> None:
        if len(base) != len(tuned):
            raise ConfigurationError(
                f"the base report has {len(base)} examples and the tuned one {len(tuned)}; "
                "evaluate both models on the same examples",
                param="tuned",
            )
        if list(base.thresholds) != list(tuned.thresholds):
            raise ConfigurationError(
                f"the reports use different scorers ({base.scorer_names} and "
                f"{tuned.scorer_names}); evaluate both with the same scorers",
                param="tuned",
            )
        self.base = base
        self.tuned = tuned
        self.confidence = confidence
        self.n_resamples = n_resamples
        self.seed = seed
        self.differences: dict[str, ScoreDifference] = {
            name: _difference(
                name,
                threshold,
                base,
                tuned,
                confidence=confidence,
                n_resamples=n_resamples,
                seed=seed,
            )
            for name, threshold in base.thresholds.items()
        }

    def __len__(self) -> int:
        return len(self.base)

    def flips(self, scorer: str | None = None) -> dict[str, list[int]]:
        """Indices of the examples that flipped on one scorer (the first one by default).

        Returns:
            ``{"improved": [...], "regressed": [...]}``: base wrong and tuned right, and the
            reverse.
        """
        name = scorer if scorer is not None else self.base.scorer_names[0]
        if name not in self.differences:
            raise ConfigurationError(
                f"no scorer named {name!r}; this report has {self.base.scorer_names}",
                param="scorer",
            )
        diff = self.differences[name]
        return {"improved": list(diff.improved), "regressed": list(diff.regressed)}

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data (both models' full reports included)."""
        return {
            "base_model": self.base.model,
            "tuned_model": self.tuned.model,
            "n_examples": len(self),
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "differences": {k: v.to_dict() for k, v in self.differences.items()},
            "base": self.base.to_dict(),
            "tuned": self.tuned.to_dict(),
        }

    def summary_dataframe(self) -> pd.DataFrame:
        """One row per scorer: means, mean difference, interval and flip counts."""
        rows = []
        for d in self.differences.values():
            rows.append(
                {
                    "scorer": d.scorer,
                    "n": d.n,
                    "base_mean": d.base_mean,
                    "tuned_mean": d.tuned_mean,
                    "mean_difference": d.mean_difference,
                    "ci_low": d.ci_low,
                    "ci_high": d.ci_high,
                    "improved": len(d.improved),
                    "regressed": len(d.regressed),
                }
            )
        return dataframe(rows, "scorer")

    def _flip(self, name: str, index: int) -> str:
        diff = self.differences[name]
        if index in diff.improved:
            return "improved"
        if index in diff.regressed:
            return "regressed"
        return ""

    def to_dataframe(self) -> pd.DataFrame:
        """One row per example: prompt, reference, both answers, both scores, and the flips.

        Raises:
            MissingDependencyError: pandas is not installed.
        """
        rows = []
        for b, t in zip(self.base.results, self.tuned.results, strict=True):
            row: dict[str, Any] = {
                "index": b.index,
                "prompt": b.case.prompt_text,
                "reference": b.case.reference,
                "base_answer": b.reply.text if b.reply else None,
                "tuned_answer": t.reply.text if t.reply else None,
                "base_error": b.error,
                "tuned_error": t.error,
            }
            for name in self.differences:
                row[f"base_{name}"] = b.scores.get(name)
                row[f"tuned_{name}"] = t.scores.get(name)
                row[f"flip_{name}"] = self._flip(name, b.index)
            rows.append(row)
        return dataframe(rows, "index")

    def _title(self) -> str:
        return (
            f"base {self.base.model} vs tuned {self.tuned.model} on {len(self)} examples "
            f"(request errors: base {len(self.base.errors)}, tuned {len(self.tuned.errors)})"
        )

    def _summary_rows(self) -> tuple[list[str], list[list[str]]]:
        pct = f"{self.confidence:.0%} CI"
        headers = ["scorer", "n", "base", "tuned", "difference", pct, "improved", "regressed"]
        rows = []
        for d in self.differences.values():
            interval = (
                "-"
                if d.ci_low is None
                else f"[{format_signed(d.ci_low)}, {format_signed(d.ci_high)}]"
            )
            rows.append(
                [
                    d.scorer,
                    str(d.n),
                    format_float(d.base_mean),
                    format_float(d.tuned_mean),
                    format_signed(d.mean_difference),
                    interval,
                    str(len(d.improved)),
                    str(len(d.regressed)),
                ]
            )
        return headers, rows

    def _flip_rows(self) -> list[list[str]]:
        rows = []
        for name, d in self.differences.items():
            for kind, indices in (("improved", d.improved), ("regressed", d.regressed)):
                for i in indices:
                    b, t = self.base.results[i], self.tuned.results[i]
                    rows.append(
                        [
                            str(i),
                            name,
                            kind,
                            shorten(b.case.prompt_text, 200),
                            shorten(b.case.reference or "", 200),
                            shorten(b.reply.text if b.reply else "", 300),
                            shorten(t.reply.text if t.reply else "", 300),
                        ]
                    )
        return rows

    def __str__(self) -> str:
        headers, rows = self._summary_rows()
        lines = [self._title(), text_table(headers, rows)]
        flips = self._flip_rows()
        if flips:
            lines.append("flips (first 10):")
            for row in flips[:10]:
                lines.append(f"  [{row[0]}] {row[1]} {row[2]}: {shorten(row[3], 70)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        headers, rows = self._summary_rows()
        out = html_table(headers, rows, caption=self._title())
        flips = self._flip_rows()
        if flips:
            flip_headers = ["#", "scorer", "flip", "prompt", "reference", "base", "tuned"]
            caption = "Flips"
            if len(flips) > HTML_ROW_LIMIT:
                caption = f"First {HTML_ROW_LIMIT} of {len(flips)} flips (to_dataframe() has all)"
            out += html_table(flip_headers, flips[:HTML_ROW_LIMIT], caption=caption)
        return out
