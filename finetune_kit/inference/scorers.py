"""Scorers: how an answer is graded against its example.

A scorer turns ``(reply, case)`` into a number, by convention between 0 and 1, where a score at or
above the scorer's ``threshold`` counts as right (that is what a flip between two models means).
``True``/``False`` count as 1 and 0. A scorer that cannot score an example raises; the evaluation
records the reason for that example and carries on.

Built-in: :class:`ExactMatch`, :class:`Contains`, :class:`RegexMatch`, :class:`ValidJSON`,
:class:`ToolCallMatch`, and :class:`~finetune_kit.inference.judge.ModelJudge` (in ``judge``: it
asks a model, through any :class:`~finetune_kit.inference.replies.ChatClient`); any callable
``(reply, case) -> float | bool`` becomes a :class:`CallableScorer`, and any of OpenAI's graders
(a definition as a dict, a ``finetune_kit.graders`` spec or compiled grader, an openai-python
grader object, an Evals ``testing_criteria`` entry with its ``pass_threshold``) a
:class:`GraderScorer`. Write your own by subclassing :class:`Scorer`.

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
import asyncio
import copy
import inspect
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import openai

from ..errors import ConfigurationError
from ..graders.base import CompiledGrader
from ..graders.compiled import compile_grader
from ..graders.model import GraderModel
from ..graders.result import GraderErrors, GraderRunResult
from ..graders.sandbox import SandboxLimits
from ..graders.specs import GraderSpec
from .evaluation import EvalCase
from .grading import ChatGraderModel, grader_item, grader_sample, item_keys
from .replies import ChatClient, ChatReply, ReplyToolCall

__all__ = [
    "CallableScorer",
    "Contains",
    "ExactMatch",
    "GraderLike",
    "GraderScorer",
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


GraderLike = CompiledGrader | GraderSpec | Mapping[str, Any] | openai.BaseModel
"""One of OpenAI's graders: a compiled grader, a spec, its definition as a dict, or an
openai-python grader object (read through its ``to_dict()``)."""

ScorerLike = Scorer | str | Callable[[ChatReply, EvalCase], Any] | GraderLike
"""What ``scorers=`` accepts: a scorer, a built-in's name, a callable, or a grader."""


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


GRADER_TYPES = frozenset(
    {"string_check", "text_similarity", "python", "score_model", "label_model", "multi"}
)
"""The ``type`` of each of OpenAI's graders: a mapping with one of these is a grader."""


def _grader_type(item: Any) -> str | None:
    """The grader type of ``item`` when it is a grader (a dict, a spec, an SDK object)."""
    if isinstance(item, CompiledGrader):
        return item.type
    kind = item.get("type") if isinstance(item, Mapping) else getattr(item, "type", None)
    if not isinstance(kind, str) or kind not in GRADER_TYPES:
        return None
    if isinstance(item, Mapping) or callable(getattr(item, "to_dict", None)):
        return kind
    return None


def _error_flags(errors: GraderErrors) -> str:
    flags = [name for name, value in errors if value is True]
    details = [
        f"{name}: {value}"
        for name, value in errors
        if name.endswith(("_details", "_type")) and value
    ]
    return ", ".join(flags) + (f" ({'; '.join(details)})" if details else "")


class GraderScorer(Scorer):
    """One of OpenAI's graders as a scorer: its reward is the score, locally, without a server.

    The reply is the grader's ``sample`` (``output_text``, ``output_json``, ``output_tools``,
    ``choices``) and the example's own fields are its ``item``, with ``reference`` added (see
    :func:`~finetune_kit.inference.grading.grader_item`). A grading that sets an error flag
    (a template variable the example lacks, a judge's unreadable answer, an exception in a
    python grader) gives no score: the flags and their details are that example's scorer
    error, as OpenAI's Evals counted such a row as errored rather than failed.

    ``pass_threshold`` is the Evals API's: a reward at or above it counts as right (a flip). It
    may be given here or as the definition's ``pass_threshold`` key (the way an eval's
    ``testing_criteria`` carry it); by default it is the middle of the reward's range (0.5;
    for a ``score_model`` grader, the middle of its ``range``), so a ``string_check`` or
    ``label_model`` passes exactly when its reward is 1.

    Model graders ask a judge: ``model=`` (any :class:`~finetune_kit.graders.GraderModel`,
    such as ``OpenAIGraderModel(client)``), or by default the evaluation's own client, for the
    model the grader names, or ``judge_model`` when given.

    Args:
        grader: The grader: a definition (a dict, with ``pass_threshold`` allowed), a
            ``finetune_kit.graders`` spec, a compiled grader, or an openai-python grader or
            Evals testing criterion object.
        name: The report column's name; by default the grader's ``name``.
        pass_threshold: A reward at or above this counts as right.
        model: The judge of model graders.
        judge_model: Ask this model instead of the one the grader names (with the evaluation's
            client).
        sandbox: Limits of a python grader's worker process.

    Raises:
        GraderValidationError: The definition is invalid; the message names the field.
        ConfigurationError: ``pass_threshold`` is not a finite number.

    Examples:
        >>> scorer = GraderScorer({"type": "string_check", "name": "says_paris",
        ...                        "operation": "ilike", "input": "{{sample.output_text}}",
        ...                        "reference": "paris"})
        >>> reply = ChatReply(text="It is Paris.", model="m", finish_reason="stop",
        ...                   prompt_tokens=5, completion_tokens=3, latency=0.1)
        >>> case = EvalCase(messages=({"role": "user", "content": "Capital of France?"},))
        >>> scorer.name, scorer.threshold, scorer.score(reply, case)
        ('says_paris', 0.5, 1.0)
    """

    def __init__(
        self,
        grader: GraderLike | Any,
        *,
        name: str | None = None,
        pass_threshold: float | None = None,
        model: GraderModel | None = None,
        judge_model: str | None = None,
        sandbox: SandboxLimits | None = None,
    ) -> None:
        if isinstance(grader, CompiledGrader):
            compiled = grader
        else:
            data = grader
            to_dict = getattr(grader, "to_dict", None)
            if (
                not isinstance(grader, Mapping)
                and callable(to_dict)
                and hasattr(grader, "pass_threshold")
            ):
                data = to_dict()  # an Evals testing criterion object: its threshold is ours
            if isinstance(data, Mapping) and "pass_threshold" in data:
                data = dict(data)
                given = data.pop("pass_threshold")
                if pass_threshold is None:
                    pass_threshold = given
            compiled = compile_grader(data, sandbox=sandbox)
        self.compiled = compiled
        self.name = name or compiled.name
        self.threshold = self._checked_threshold(pass_threshold, compiled.spec)
        self.model = model
        self.judge_model = judge_model
        self.item_keys = item_keys(compiled.spec)

    @staticmethod
    def _checked_threshold(value: Any, spec: GraderSpec) -> float:
        if value is None:
            low, high = getattr(spec, "range", None) or (0.0, 1.0)
            return (float(low) + float(high)) / 2.0
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ConfigurationError(
                f"grader {spec.name!r}: pass_threshold must be a finite number, got {value!r}",
                param="pass_threshold",
            )
        return float(value)

    @property
    def needs_model(self) -> bool:
        """Whether grading asks a judge model."""
        return self.compiled.needs_model

    def bind(self, client: ChatClient) -> Scorer:
        """Judge model graders with the evaluation's client, unless a ``model`` was given."""
        if not self.needs_model or self.model is not None:
            return self
        bound = copy.copy(self)
        bound.model = ChatGraderModel(client, model=self.judge_model)
        return bound

    def grade(self, reply: ChatReply, case: EvalCase) -> GraderRunResult:
        """Run the grader on one reply: OpenAI's whole result (reward, sub-rewards, metadata).

        Args:
            reply: The model's reply.
            case: The example it answered.

        Returns:
            The grader's result.
        """
        judge = self.model
        if isinstance(judge, ChatGraderModel) and judge.is_async and judge.loop is None:
            raise ConfigurationError(
                f"grader {self.name!r} asks its judge through an async client: evaluate with "
                "AsyncInferenceClient",
                param="scorers",
            )
        return self.compiled.run(grader_sample(reply), grader_item(case), model=judge)

    def _reward(self, result: GraderRunResult) -> float:
        errors = result.metadata.errors
        if errors.has_error:
            raise ValueError(f"grader {self.name!r} could not grade: {_error_flags(errors)}")
        return result.reward

    def score(self, reply: ChatReply, case: EvalCase) -> float:
        """Grade one reply; its reward is the score."""
        if self.needs_model and self.model is None:
            raise ConfigurationError(
                f"grader {self.name!r} ({self.compiled.type}) asks a judge model: run it inside "
                "an evaluation, or pass model= (such as OpenAIGraderModel(client))",
                param="model",
            )
        return self._reward(self.grade(reply, case))

    async def ascore(self, reply: ChatReply, case: EvalCase) -> float:
        """Grade one reply in a worker thread, so the event loop serves other requests."""
        if isinstance(self.model, ChatGraderModel) and self.model.is_async:
            self.model.on_loop(asyncio.get_running_loop())
        return await asyncio.to_thread(self.score, reply, case)

    def close(self) -> None:
        """Stop a python grader's worker process (it also stops when the scorer is collected)."""
        self.compiled.close()

    def __repr__(self) -> str:
        return (
            f"GraderScorer(name={self.name!r}, type={self.compiled.type!r}, "
            f"threshold={self.threshold})"
        )


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
    if _grader_type(item) is not None:
        return GraderScorer(item)
    if callable(item):
        return CallableScorer(item)
    raise ConfigurationError(
        f"{where} is a {type(item).__name__}; a scorer is a Scorer, a built-in's name, a "
        "callable (reply, case) -> float | bool, or one of OpenAI's graders (a dict with a "
        f"'type' among {sorted(GRADER_TYPES)})",
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
    if isinstance(scorers, Mapping) and _grader_type(scorers) is not None:
        resolved = [_one_scorer(scorers, "scorers")]  # one grader, not {name: scorer}
    elif isinstance(scorers, Mapping):
        resolved = []
        for name, item in scorers.items():
            scorer = copy.copy(_one_scorer(item, f"scorers[{name!r}]"))
            scorer.name = name
            resolved.append(scorer)
    elif (
        isinstance(scorers, (Scorer, str, CompiledGrader))
        or _grader_type(scorers)
        or callable(scorers)
    ):
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

    A grader's templates name the ``item`` fields they read (``{{item.answer}}``): an example
    without one of them is refused too, since every grading of it would fail.

    Raises:
        ConfigurationError: Names the first such example and scorer.
    """
    for scorer in scorers:
        if isinstance(scorer, GraderScorer) and scorer.item_keys:
            for i, case in enumerate(cases):
                absent = sorted(scorer.item_keys - set(grader_item(case)))
                if absent:
                    fields = ", ".join(repr(k) for k in absent)
                    raise ConfigurationError(
                        f"examples[{i}] has no {fields}, which the grader {scorer.name!r} reads "
                        f"as {{{{item.{absent[0]}}}}}: give every example that field (a "
                        "top-level key beside 'messages'), or change the grader's template",
                        param="examples",
                    )
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
