"""Scorers: how an answer is graded against its example.

A scorer turns ``(reply, case)`` into a number, by convention between 0 and 1, where a score at or
above the scorer's ``threshold`` counts as right (that is what a flip between two models means).
``True``/``False`` count as 1 and 0. A scorer that cannot score an example raises; the evaluation
records the reason for that example and carries on.

Built-in: :class:`ExactMatch`, :class:`Contains`, :class:`RegexMatch`, :class:`ValidJSON`,
:class:`ToolCallMatch`, and :class:`~finetune_kit.inference.judge.ModelJudge` (in ``judge``: it
asks a model, through any :class:`~finetune_kit.inference.replies.ChatClient`); any callable
``(reply, case) -> float | bool`` becomes a :class:`CallableScorer`. Write your own by
subclassing :class:`Scorer`.

Examples:
    >>> from finetune_kit.inference.replies import ChatReply
    >>> from finetune_kit.inference.evaluation import EvalCase
    >>> case = EvalCase(messages=({"role": "user", "content": "Capital of France?"},),
    ...                 reference="Paris")
    >>> reply = ChatReply(text="paris", model="m", finish_reason="stop", prompt_tokens=5,
    ...                   completion_tokens=1, latency=0.1)
    >>> ExactMatch().score(reply, case), ExactMatch(ignore_case=True).score(reply, case)
    (0.0, 1.0)
"""

from __future__ import annotations

import abc
import copy
import inspect
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import openai

from ..errors import ConfigurationError
from .evaluation import EvalCase
from .replies import ChatClient, ChatReply, ReplyToolCall

__all__ = [
    "CallableScorer",
    "Contains",
    "ExactMatch",
    "RegexMatch",
    "Scorer",
    "ScorerLike",
    "ToolCallMatch",
    "ValidJSON",
    "resolve_scorers",
]


FATAL_API_ERRORS: tuple[type[Exception], ...] = (
    openai.AuthenticationError,
    openai.PermissionDeniedError,
    openai.NotFoundError,
)
"""API errors that would fail every request alike (bad key, no access, unknown model): an
evaluation stops on them instead of recording the same error for every example."""

# Errors a scorer raises that stop the evaluation instead of being recorded for one example.
_PROPAGATED: tuple[type[Exception], ...] = (ConfigurationError, *FATAL_API_ERRORS)


class Scorer(abc.ABC):
    """Base class of every scorer.

    Subclasses implement :meth:`score`; one that does I/O may also override :meth:`ascore` so the
    async evaluation does not block its event loop.

    Attributes:
        name: The scorer's name: a column of the report. Unique within one evaluation.
        threshold: A score at or above this counts as right.
        needs_reference: Whether every example must carry a reference answer.

    Examples:
        >>> class ShortAnswer(Scorer):
        ...     name = "short"
        ...     def score(self, reply, case):
        ...         return len(reply.text) <= 80
    """

    name: str = "scorer"
    threshold: float = 0.5
    needs_reference: bool = False

    @abc.abstractmethod
    def score(self, reply: ChatReply, case: EvalCase) -> float | bool | None:
        """Grade one reply.

        Args:
            reply: The model's reply.
            case: The example it answered (prompt, reference, tools).

        Returns:
            A score (``True``/``False`` count as 1/0), or ``None`` for "not applicable".
        """

    async def ascore(self, reply: ChatReply, case: EvalCase) -> float | bool | None:
        """Grade one reply from async code; by default the same as :meth:`score`."""
        return self.score(reply, case)

    def bind(self, client: ChatClient) -> Scorer:
        """Return the scorer to use with an evaluation's client (itself, unless it needs one)."""
        del client
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


ScorerLike = Scorer | str | Callable[[ChatReply, EvalCase], Any]
"""What ``scorers=`` accepts: a scorer, a built-in's name, or a callable."""


def _normalize_text(text: str, *, ignore_case: bool, collapse: bool) -> str:
    text = " ".join(text.split()) if collapse else text.strip()
    return text.casefold() if ignore_case else text


def _reference_text(case: EvalCase, scorer: str) -> str:
    if case.reference is None:
        raise ValueError(f"the example has no reference text, which {scorer} compares against")
    return case.reference


class ExactMatch(Scorer):
    """1 when the answer equals the reference, else 0.

    Args:
        ignore_case: Compare case-insensitively.
        normalize_whitespace: Collapse runs of whitespace before comparing (leading and trailing
            whitespace is always ignored).
        name: The report column's name.

    Examples:
        >>> ExactMatch(ignore_case=True).name
        'exact_match'
    """

    needs_reference = True

    def __init__(
        self,
        *,
        ignore_case: bool = False,
        normalize_whitespace: bool = True,
        name: str = "exact_match",
    ) -> None:
        self.ignore_case = ignore_case
        self.normalize_whitespace = normalize_whitespace
        self.name = name

    def score(self, reply: ChatReply, case: EvalCase) -> float:
        """Return 1.0 when the answer equals the reference, else 0.0."""
        options = {"ignore_case": self.ignore_case, "collapse": self.normalize_whitespace}
        expected = _normalize_text(_reference_text(case, self.name), **options)
        return float(_normalize_text(reply.text, **options) == expected)


class Contains(Scorer):
    """1 when the answer contains a text (by default the example's reference), else 0.

    Args:
        text: The text to look for; ``None`` looks for the reference.
        ignore_case: Search case-insensitively.
        name: The report column's name.

    Examples:
        >>> Contains("limerick", ignore_case=True).needs_reference
        False
    """

    def __init__(
        self, text: str | None = None, *, ignore_case: bool = False, name: str = "contains"
    ) -> None:
        if text is not None and not text:
            raise ConfigurationError("Contains(text=...) must not be empty", param="text")
        self.text = text
        self.ignore_case = ignore_case
        self.name = name
        self.needs_reference = text is None

    def score(self, reply: ChatReply, case: EvalCase) -> float:
        """Return 1.0 when the answer contains the text, else 0.0."""
        needle = self.text if self.text is not None else _reference_text(case, self.name).strip()
        haystack = reply.text
        if self.ignore_case:
            needle, haystack = needle.casefold(), haystack.casefold()
        return float(needle in haystack)


class RegexMatch(Scorer):
    r"""1 when a regular expression matches the answer, else 0.

    Args:
        pattern: The expression (``re`` syntax).
        flags: ``re`` flags, such as ``re.IGNORECASE``.
        full: Require the whole answer (stripped) to match, instead of a match anywhere.
        name: The report column's name.

    Raises:
        ConfigurationError: The pattern does not compile.

    Examples:
        >>> RegexMatch(r"\d{4}").pattern.pattern
        '\\d{4}'
    """

    def __init__(
        self, pattern: str, *, flags: int = 0, full: bool = False, name: str = "regex"
    ) -> None:
        try:
            self.pattern = re.compile(pattern, flags)
        except re.error as exc:
            raise ConfigurationError(
                f"RegexMatch pattern {pattern!r} does not compile: {exc}", param="pattern"
            ) from exc
        self.full = full
        self.name = name

    def score(self, reply: ChatReply, case: EvalCase) -> float:
        """Return 1.0 when the pattern matches, else 0.0."""
        if self.full:
            return float(self.pattern.fullmatch(reply.text.strip()) is not None)
        return float(self.pattern.search(reply.text) is not None)


_CODE_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n(?P<body>.*?)\n?```$", re.DOTALL)


class ValidJSON(Scorer):
    """1 when the answer is valid JSON, else 0.

    Args:
        allow_code_fence: Accept JSON wrapped in a Markdown code fence (```json ... ```).
        name: The report column's name.

    Examples:
        >>> ValidJSON(allow_code_fence=True).name
        'valid_json'
    """

    def __init__(self, *, allow_code_fence: bool = False, name: str = "valid_json") -> None:
        self.allow_code_fence = allow_code_fence
        self.name = name

    def score(self, reply: ChatReply, case: EvalCase) -> float:
        """Return 1.0 when the answer parses as JSON, else 0.0."""
        text = reply.text.strip()
        if self.allow_code_fence:
            fenced = _CODE_FENCE.match(text)
            if fenced is not None:
                text = fenced.group("body").strip()
        try:
            json.loads(text)
        except ValueError:
            return 0.0
        return 1.0


def _canonical_call(call: ReplyToolCall, check_arguments: bool) -> str:
    if not check_arguments:
        return json.dumps([call.name])
    try:
        arguments: Any = call.parsed_arguments()
    except ValueError:
        # Invalid JSON arguments can still equal each other byte for byte.
        arguments = {"<unparsed>": call.arguments}
    return json.dumps([call.name, arguments], sort_keys=True, ensure_ascii=False)


class ToolCallMatch(Scorer):
    """1 when the answer makes the same tool calls as the reference, else 0.

    Calls match when their function names are equal and their arguments, parsed as JSON, are
    equal (key order and spacing do not matter). An example whose reference makes no call expects
    an answer without calls.

    Args:
        check_arguments: Compare arguments too, not only names.
        ordered: Require the calls in the same order (by default any order, as with parallel
            calls).
        name: The report column's name.

    Examples:
        >>> ToolCallMatch().needs_reference
        True
    """

    needs_reference = True

    def __init__(
        self, *, check_arguments: bool = True, ordered: bool = False, name: str = "tool_call_match"
    ) -> None:
        self.check_arguments = check_arguments
        self.ordered = ordered
        self.name = name

    def score(self, reply: ChatReply, case: EvalCase) -> float:
        """Return 1.0 when the calls match, else 0.0."""
        expected = [_canonical_call(c, self.check_arguments) for c in case.reference_tool_calls]
        got = [_canonical_call(c, self.check_arguments) for c in reply.tool_calls]
        if not self.ordered:
            expected.sort()
            got.sort()
        return float(expected == got)


class CallableScorer(Scorer):
    """A scorer made from any callable ``(reply, case) -> float | bool | None``.

    An ``async def`` callable works with the async evaluation.

    Args:
        fn: The callable.
        name: The report column's name; by default the callable's ``__name__``.
        threshold: A score at or above this counts as right.
        needs_reference: Whether every example must carry a reference answer.

    Examples:
        >>> def mentions_paris(reply, case):
        ...     return "paris" in reply.text.lower()
        >>> CallableScorer(mentions_paris).name
        'mentions_paris'
    """

    def __init__(
        self,
        fn: Callable[[ChatReply, EvalCase], Any],
        *,
        name: str | None = None,
        threshold: float = 0.5,
        needs_reference: bool = False,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(
                f"a scorer must be callable as fn(reply, case), got {type(fn).__name__}",
                param="scorers",
            )
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__).strip("<>")
        self.threshold = threshold
        self.needs_reference = needs_reference

    def score(self, reply: ChatReply, case: EvalCase) -> float | bool | None:
        """Call the function."""
        result = self.fn(reply, case)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise ConfigurationError(
                f"scorer {self.name!r} is async: evaluate with AsyncInferenceClient",
                param="scorers",
            )
        return _checked(result, self.name)

    async def ascore(self, reply: ChatReply, case: EvalCase) -> float | bool | None:
        """Call the function, awaiting it when it is async."""
        result = self.fn(reply, case)
        if inspect.isawaitable(result):
            result = await result
        return _checked(result, self.name)


def _checked(value: Any, name: str) -> float | bool | None:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise TypeError(f"scorer {name!r} returned {type(value).__name__}; return a number or a bool")


def coerce_score(value: float | bool | None, scorer: str) -> float | None:
    """Turn what a scorer returned into a float (bools as 1.0/0.0), refusing NaN and infinity.

    Raises:
        ValueError: The value is NaN or infinite.
    """
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"scorer {scorer!r} returned {number}, which is not a finite number")
    return number


_BUILT_IN: dict[str, Callable[[], Scorer]] = {
    "exact_match": ExactMatch,
    "contains": Contains,
    "valid_json": ValidJSON,
    "tool_call_match": ToolCallMatch,
}


def _one_scorer(item: Any, where: str) -> Scorer:
    if isinstance(item, Scorer):
        return item
    if isinstance(item, str):
        if item not in _BUILT_IN:
            raise ConfigurationError(
                f"{where}: no built-in scorer named {item!r}; the names are {sorted(_BUILT_IN)} "
                "(regex and judge scorers need arguments: RegexMatch(...), ModelJudge(...))",
                param="scorers",
            )
        return _BUILT_IN[item]()
    if callable(item):
        return CallableScorer(item)
    raise ConfigurationError(
        f"{where} is a {type(item).__name__}; a scorer is a Scorer, a built-in's name or a "
        "callable (reply, case) -> float | bool",
        param="scorers",
    )


def resolve_scorers(
    scorers: ScorerLike | Sequence[ScorerLike] | Mapping[str, ScorerLike] | None,
) -> list[Scorer]:
    """Turn what ``scorers=`` was given into a list of scorers with unique names.

    Args:
        scorers: ``None`` (exact match), one scorer, a sequence of them, or a mapping of report
            column names to scorers.

    Returns:
        The scorers, in order.

    Raises:
        ConfigurationError: An item is not a scorer, or two scorers share a name.

    Examples:
        >>> short = lambda reply, case: len(reply.text) < 80
        >>> [s.name for s in resolve_scorers({"exact": "exact_match", "short": short})]
        ['exact', 'short']
    """
    if scorers is None:
        return [ExactMatch()]
    resolved: list[Scorer]
    if isinstance(scorers, Mapping):
        resolved = []
        for name, item in scorers.items():
            scorer = copy.copy(_one_scorer(item, f"scorers[{name!r}]"))
            scorer.name = name
            resolved.append(scorer)
    elif isinstance(scorers, (Scorer, str)) or callable(scorers):
        resolved = [_one_scorer(scorers, "scorers")]
    else:
        resolved = [_one_scorer(item, f"scorers[{i}]") for i, item in enumerate(scorers)]
    if not resolved:
        raise ConfigurationError("scorers is empty: give at least one scorer", param="scorers")
    seen: set[str] = set()
    for scorer in resolved:
        if scorer.name in seen:
            raise ConfigurationError(
                f"two scorers are named {scorer.name!r}; give one a name= or pass a mapping "
                "{name: scorer}",
                param="scorers",
            )
        seen.add(scorer.name)
    return resolved


def check_references(scorers: Sequence[Scorer], cases: Sequence[EvalCase]) -> None:
    """Refuse, before any request, examples a scorer cannot grade for want of a reference.

    Raises:
        ConfigurationError: Names the first such example and scorer.
    """
    for scorer in scorers:
        if not scorer.needs_reference:
            continue
        for i, case in enumerate(cases):
            missing = case.reference is None
            if isinstance(scorer, ToolCallMatch):
                missing = not case.has_reference
            if missing:
                raise ConfigurationError(
                    f"examples[{i}] has no reference answer, which the {scorer.name!r} scorer "
                    "needs: end the example with an assistant turn or pass (prompt, reference)",
                    param="examples",
                )


def score_reply(
    scorers: Sequence[Scorer], reply: ChatReply, case: EvalCase
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Run every scorer on one reply; a scorer that fails leaves ``None`` and its reason.

    Returns:
        ``(scores, errors)``, both keyed by scorer name.
    """
    scores: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for scorer in scorers:
        try:
            scores[scorer.name] = coerce_score(scorer.score(reply, case), scorer.name)
        except _PROPAGATED:
            raise
        except Exception as exc:
            # A scorer failing on one answer must not lose the others' scores or the answer.
            scores[scorer.name] = None
            errors[scorer.name] = f"{type(exc).__name__}: {exc}"
        else:
            if scores[scorer.name] is None:
                errors[scorer.name] = "the scorer returned None (not applicable)"
    return scores, errors


async def ascore_reply(
    scorers: Sequence[Scorer], reply: ChatReply, case: EvalCase
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Async :func:`score_reply`.

    Scorers run one after the other, so a judge's request counts against the evaluation's
    concurrency like any other request.
    """
    scores: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for scorer in scorers:
        try:
            scores[scorer.name] = coerce_score(await scorer.ascore(reply, case), scorer.name)
        except _PROPAGATED:
            raise
        except Exception as exc:
            scores[scorer.name] = None
            errors[scorer.name] = f"{type(exc).__name__}: {exc}"
        else:
            if scores[scorer.name] is None:
                errors[scorer.name] = "the scorer returned None (not applicable)"
    return scores, errors
