"""A model as judge: another model grades each answer, and its score is read from its reply.

:class:`ModelJudge` is a :class:`~finetune_kit.inference.scorers.Scorer` that asks a model, so it
needs a client: any :class:`~finetune_kit.inference.replies.ChatClient` (an
``InferenceClient``, its async twin), or an ``openai`` client it wraps in one. It lives apart from
the other scorers because of that: the inference client resolves scorers, and the judge builds
inference clients, so the two sit in modules that import one way (client -> scorers, judge ->
client and scorers).

Examples:
    >>> judge = ModelJudge("gpt-4.1-mini", scale=(1, 5))
    >>> judge.normalize(4), parse_judge_score("Score: 4/5", scale=(1, 5))
    (0.75, 4.0)
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any, cast

import openai

from ..errors import ConfigurationError
from .client import AsyncInferenceClient, InferenceClient
from .evaluation import EvalCase, message_text
from .replies import ChatClient, ChatReply
from .scorers import Scorer

__all__ = ["DEFAULT_JUDGE_PROMPT", "ModelJudge", "parse_judge_score"]


_SCORE_LABEL = re.compile(
    r"\b(?:score|rating|grade|verdict)\s*(?:\*\*)?\s*(?:is|of|[:=])?\s*(?:\*\*)?\s*"
    r"(?P<value>[-+]?\d+(?:\.\d+)?)(?:\s*(?:/|out of)\s*(?P<denominator>\d+(?:\.\d+)?))?",
    re.IGNORECASE,
)
_FRACTION = re.compile(
    r"(?P<value>[-+]?\d+(?:\.\d+)?)\s*(?:/|out of)\s*(?P<denominator>\d+(?:\.\d+)?)", re.IGNORECASE
)
# A reply that is just a number, perhaps in bold and followed by a full stop.
_LONE_NUMBER = re.compile(r"\s*(?:\*\*)?\s*(?P<value>[-+]?\d+(?:\.\d+)?)\s*(?:\*\*)?\s*\.?\s*")


def _on_scale(value: float, denominator: float | None, scale: tuple[float, float]) -> float | None:
    low, high = scale
    if denominator is not None and denominator != high:
        if denominator <= 0:
            return None
        # "4/5" on a 1-10 scale: rescale the fraction onto the judge's scale.
        value = low + (value / denominator) * (high - low)
    return value if low <= value <= high else None


def parse_judge_score(text: str, *, scale: tuple[float, float] = (1, 10)) -> float | None:
    """Find the score in a judge model's reply.

    Looks, in this order, for the last labelled score (``Score: 7``, ``**Rating**: 4/5``,
    ``grade of 8``), then the last fraction (``7/10``, ``4 out of 5``), then a number standing
    alone as the whole reply; a fraction with another denominator is rescaled onto ``scale``. A
    value outside the scale, or a reply with no clear score, gives ``None``: guessing among
    several bare numbers would turn a confused judge into a confident grade.

    Args:
        text: The judge's reply.
        scale: The lowest and highest score the judge was asked for.

    Returns:
        The score on the judge's scale, or ``None``.

    Examples:
        >>> parse_judge_score("The answer is close. Score: 8")
        8.0
        >>> parse_judge_score("I'd say 4 out of 5", scale=(1, 5))
        4.0
        >>> parse_judge_score("It mentions 3 facts and 2 errors") is None
        True
    """
    candidates = list(_SCORE_LABEL.finditer(text)) or list(_FRACTION.finditer(text))
    if candidates:
        match = candidates[-1]
        denominator = match.group("denominator")
        return _on_scale(
            float(match.group("value")),
            float(denominator) if denominator is not None else None,
            scale,
        )
    alone = _LONE_NUMBER.fullmatch(text)
    if alone is not None:
        return _on_scale(float(alone.group("value")), None, scale)
    return None


DEFAULT_JUDGE_PROMPT = """You are grading an answer.

Question:
{question}

Reference answer:
{reference}

Answer to grade:
{answer}

How well does the answer to grade match the reference answer in meaning and correctness? Give a \
score from {low} to {high}, where {low} means wrong and {high} means fully correct. Reply with \
one line in the form "Score: <number>"."""
"""The judge's default prompt; ``{question}``, ``{reference}``, ``{answer}``, ``{low}`` and
``{high}`` are filled in (other braces are left as they are)."""

_NO_REFERENCE = "(none given: judge the answer on its own merits)"


def _question_text(case: EvalCase) -> str:
    turns = [m for m in case.messages if m.get("role") not in ("system", "developer")]
    if len(turns) == 1:
        return message_text(turns[0].get("content"))
    return "\n".join(f"{m.get('role')}: {message_text(m.get('content'))}" for m in turns)


class ModelJudge(Scorer):
    """Another model grades each answer, and its score is read from its reply.

    The judge gets :data:`DEFAULT_JUDGE_PROMPT` (or yours) filled in with the question, the
    reference and the answer; :func:`parse_judge_score` (or your ``parse``) reads the score, which
    is then mapped from ``scale`` onto 0..1. A reply with no readable score is recorded as this
    scorer's error for that example.

    Args:
        model: The judge model.
        client: The client to call the judge with: any ``ChatClient`` (an ``InferenceClient``,
            its async twin...) or an ``openai`` client; by default the evaluation's own client.
        prompt: The prompt template.
        scale: The lowest and highest score the judge gives.
        threshold: A normalised score at or above this counts as right.
        parse: Reads the score (on ``scale``) from the judge's text, ``None`` when there is none.
        name: The report column's name.
        **params: Chat parameters for the judge's requests (default ``temperature=0``).

    Examples:
        >>> judge = ModelJudge("gpt-4.1-mini", scale=(1, 5))
        >>> judge.normalize(4)
        0.75
    """

    def __init__(
        self,
        model: str,
        *,
        client: Any = None,
        prompt: str = DEFAULT_JUDGE_PROMPT,
        scale: tuple[float, float] = (1, 10),
        threshold: float = 0.5,
        parse: Callable[[str], float | None] | None = None,
        name: str = "judge",
        **params: Any,
    ) -> None:
        low, high = scale
        if not low < high:
            raise ConfigurationError(
                f"scale must be (low, high) with low < high, got {scale}", param="scale"
            )
        if "{answer}" not in prompt:
            raise ConfigurationError(
                "the judge prompt must contain {answer}, where the answer to grade goes",
                param="prompt",
            )
        self.model = model
        self.client: ChatClient | None = _as_chat_client(client) if client is not None else None
        self.prompt = prompt
        self.scale = (low, high)
        self.threshold = threshold
        self.parse = parse if parse is not None else self._default_parse
        self.name = name
        self.params: dict[str, Any] = {"temperature": 0.0, **params}

    def _default_parse(self, text: str) -> float | None:
        return parse_judge_score(text, scale=self.scale)

    def normalize(self, value: float) -> float:
        """Map a score on the judge's scale onto 0..1."""
        low, high = self.scale
        return (value - low) / (high - low)

    def render(self, reply: ChatReply, case: EvalCase) -> str:
        """Return the prompt the judge gets for one answer."""
        low, high = self.scale
        fields = {
            "{question}": _question_text(case),
            "{reference}": case.reference if case.reference is not None else _NO_REFERENCE,
            "{answer}": reply.text,
            "{low}": f"{low:g}",
            "{high}": f"{high:g}",
        }
        # One pass over the template, so an answer containing "{reference}" stays as written.
        pattern = re.compile("|".join(re.escape(k) for k in fields))
        return pattern.sub(lambda m: fields[m.group(0)], self.prompt)

    def bind(self, client: ChatClient) -> Scorer:
        """Use the evaluation's client unless the judge was given its own."""
        if self.client is not None:
            return self
        bound = copy.copy(self)
        bound.client = client
        return bound

    def _read(self, text: str) -> float:
        value = self.parse(text)
        if value is None:
            low, high = self.scale
            raise ValueError(
                f"the judge's reply has no score from {low:g} to {high:g}: {text[:200]!r}"
            )
        return self.normalize(float(value))

    def score(self, reply: ChatReply, case: EvalCase) -> float:
        """Ask the judge and return its normalised score."""
        client = self.client
        if client is None:
            raise ConfigurationError(
                "this judge has no client: pass client= or run it inside an evaluation",
                param="client",
            )
        if inspect.iscoroutinefunction(client.chat):
            raise ConfigurationError(
                "this judge has an async client: evaluate with AsyncInferenceClient",
                param="client",
            )
        # A plain function: its answer is the reply (the check above turned async ones away).
        asked = client.chat(self.model, self.render(reply, case), **self.params)
        verdict = cast("ChatReply", asked)
        return self._read(verdict.text)

    async def ascore(self, reply: ChatReply, case: EvalCase) -> float:
        """Ask the judge without blocking the event loop."""
        client = self.client
        if client is None:
            raise ConfigurationError(
                "this judge has no client: pass client= or run it inside an evaluation",
                param="client",
            )
        if inspect.iscoroutinefunction(client.chat):
            asked = client.chat(self.model, self.render(reply, case), **self.params)
            verdict = await cast("Awaitable[ChatReply]", asked)  # a coroutine function's answer
            return self._read(verdict.text)
        return await asyncio.to_thread(self.score, reply, case)

    def __repr__(self) -> str:
        return f"ModelJudge(model={self.model!r}, name={self.name!r}, scale={self.scale})"


def _as_chat_client(client: Any) -> ChatClient:
    # An openai client has a ``chat`` attribute too (a resource, not callable): wrapped first.
    if isinstance(client, openai.AsyncOpenAI):
        return AsyncInferenceClient(client)
    if isinstance(client, openai.OpenAI):
        return InferenceClient(client)
    if callable(getattr(client, "chat", None)):
        return cast("ChatClient", client)
    raise ConfigurationError(
        f"client must be an InferenceClient, an AsyncInferenceClient, another ChatClient (an "
        f"object with chat(model, messages, **params)) or an openai client, not "
        f"{type(client).__name__}",
        param="client",
    )
