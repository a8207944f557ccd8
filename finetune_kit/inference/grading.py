"""What OpenAI's graders see of an evaluation: a reply as ``sample``, a case as ``item``, a judge.

A grader (``finetune_kit.graders``) grades a ``sample`` (the model's answer) against an ``item``
(the dataset row). In an evaluation the sample is the model's :class:`ChatReply` (its text, its
tool calls, the completion's choices) and the item is the example's own fields
(:attr:`EvalCase.extra`, the keys an RFT example keeps for its grader), with ``reference`` added
when the example has a reference answer and no ``reference`` key of its own.

Model graders (``score_model``, ``label_model``) ask a judge: :class:`ChatGraderModel` asks it
through the evaluation's own client, any :class:`~finetune_kit.inference.replies.ChatClient`, so
the judge's requests go through the same retry policy as the evaluation's. It wraps the graders'
own :class:`~finetune_kit.graders.OpenAIGraderModel` (the answer's JSON schema as
``response_format``, described in the prompt to a server that refuses it), fed by the client's
replies. An async client is asked on its event loop from the thread a grading runs in.

This module imports the graders and the evaluation's plain values only; the scorer that uses it
(``GraderScorer``) is in ``scorers``.

Examples:
    >>> from finetune_kit.inference.evaluation import EvalCase
    >>> case = EvalCase(messages=({"role": "user", "content": "2+2?"},), reference="4",
    ...                 extra={"difficulty": "easy"})
    >>> grader_item(case)
    {'difficulty': 'easy', 'reference': '4'}
    >>> reply = ChatReply(text='{"answer": 4}', model="m", finish_reason="stop",
    ...                   prompt_tokens=3, completion_tokens=4, latency=0.1)
    >>> grader_sample(reply).output_json
    {'answer': 4}
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

from ..errors import ConfigurationError
from ..graders.model import GraderModelReply, GraderModelRequest
from ..graders.openai_model import OpenAIGraderModel
from ..graders.sample import Sample
from ..graders.specs import GraderSpec
from ..graders.templates import Template
from .evaluation import EvalCase
from .replies import ChatClient, ChatReply

__all__ = ["ChatGraderModel", "grader_item", "grader_sample", "item_keys"]


def grader_sample(reply: ChatReply) -> Sample:
    """The ``sample`` namespace of a reply: its text, tool calls and the completion's choices.

    Args:
        reply: The model's reply.

    Returns:
        The sample (``output_json`` set when the text is JSON).
    """
    choices = None
    raw_choices = getattr(reply.raw, "choices", None)
    if raw_choices:
        choices = tuple(
            choice.to_dict() if hasattr(choice, "to_dict") else dict(choice)
            for choice in raw_choices
        )
    return Sample(
        output_text=reply.text,
        output_tools=tuple(call.to_dict() for call in reply.tool_calls),
        choices=choices,
    )


def grader_item(case: EvalCase) -> dict[str, Any]:
    """The ``item`` namespace of an example: its own fields, and its reference answer.

    Args:
        case: The example.

    Returns:
        ``case.extra``, with ``reference`` (the reference answer's text) added when the case has
        one and no ``reference`` field of its own.
    """
    item = dict(case.extra)
    if case.reference is not None and "reference" not in item:
        item["reference"] = case.reference
    return item


_SKIPPED_KEYS = frozenset({"source", "type", "name", "model", "operation", "evaluation_metric"})
_ITEM_KEY = re.compile(r"item\.([^.\[\]]+)")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            if key not in _SKIPPED_KEYS:
                yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def item_keys(spec: GraderSpec) -> frozenset[str]:
    """The top-level ``item`` keys a grader's templates read (``{{item.answer}}`` -> ``answer``).

    A python grader's code is not read: what it takes from ``item`` is its own business.

    Args:
        spec: The grader's definition.

    Returns:
        The keys.
    """
    keys: set[str] = set()
    for text in _strings(spec.to_dict()):
        if "{{" not in text:
            continue
        for variable in Template.parse(text, grader=spec.name, field="").variables:
            found = _ITEM_KEY.match(variable)
            if found is not None:
                keys.add(found.group(1))
    return frozenset(keys)


class _Completions:
    """``chat.completions.create`` over a ChatClient: what ``OpenAIGraderModel`` calls."""

    def __init__(self, client: ChatClient, loop: asyncio.AbstractEventLoop | None) -> None:
        self._client = client
        self.loop = loop

    def create(self, *, model: str, messages: Any, **params: Any) -> Any:
        asked = self._client.chat(model, messages, **params)
        if inspect.isawaitable(asked):
            if self.loop is None:
                if inspect.iscoroutine(asked):
                    asked.close()
                raise ConfigurationError(
                    "this judge's client is async: evaluate with AsyncInferenceClient",
                    param="client",
                )
            # Called from the thread the grading runs in, while the loop serves other requests.
            future = asyncio.run_coroutine_threadsafe(_awaited(asked), self.loop)
            asked = future.result()
        return _completion(asked)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _completion(reply: Any) -> Any:
    """The chat completion behind a reply, or one made of the reply's fields."""
    if isinstance(reply, ChatReply) and getattr(reply.raw, "choices", None):
        return reply.raw
    text = getattr(reply, "text", "")
    message = SimpleNamespace(content=text, refusal=None)
    usage = None
    prompt = getattr(reply, "prompt_tokens", None)
    completion = getattr(reply, "completion_tokens", None)
    if prompt is not None and completion is not None:
        usage = SimpleNamespace(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )
    return SimpleNamespace(
        choices=[SimpleNamespace(message=message)],
        model=getattr(reply, "model", None),
        usage=usage,
    )


class ChatGraderModel:
    """A judge for model graders that asks through a :class:`ChatClient` (an ``InferenceClient``).

    Each question is a chat request of the client (under its retry policy); the answer's shape
    is requested the way :class:`~finetune_kit.graders.OpenAIGraderModel` requests it. With an
    async client, build it with ``loop=`` (the evaluation's running loop): questions are then
    asked on that loop from the grading's own thread.

    Args:
        client: The client to ask with.
        model: Ask this model instead of the one each grader names.
        loop: The event loop an async client runs on.

    Examples:
        >>> class Fixed:
        ...     def chat(self, model, messages, **params):
        ...         return ChatReply(text='{"steps": [], "result": 0.5}', model=model,
        ...                          finish_reason="stop", prompt_tokens=1,
        ...                          completion_tokens=1, latency=0.0)
        >>> judge = ChatGraderModel(Fixed(), model="judge-1")
        >>> judge.complete(GraderModelRequest(model="gpt-4o", messages=[])).model
        'judge-1'
    """

    def __init__(
        self,
        client: ChatClient,
        *,
        model: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self._completions = _Completions(client, loop)
        # One judge for the whole evaluation: it remembers a server's refusal of
        # response_format, so the schema is not offered again with every question.
        self._judge = OpenAIGraderModel(
            SimpleNamespace(chat=SimpleNamespace(completions=self._completions)), model=model
        )

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop an async client is asked on."""
        return self._completions.loop

    @property
    def is_async(self) -> bool:
        """Whether the client's ``chat`` is a coroutine function."""
        return inspect.iscoroutinefunction(self.client.chat)

    def on_loop(self, loop: asyncio.AbstractEventLoop) -> ChatGraderModel:
        """Ask an async client on ``loop`` from now on (an evaluation's loop); returns itself."""
        self._completions.loop = loop
        return self

    def complete(self, request: GraderModelRequest) -> GraderModelReply:
        """Ask the judge (see :class:`~finetune_kit.graders.GraderModel`)."""
        return self._judge.complete(request)

    def __repr__(self) -> str:
        return f"ChatGraderModel(model={self.model!r})"
