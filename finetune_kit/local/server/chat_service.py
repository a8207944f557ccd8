"""Chat generation for the HTTP layer: a ``ChatEngine`` behind plain values.

The engine is the server's ``EngineRouter`` (``engine.serving``): llama.cpp, vLLM or the torch
``Generator``, whichever serves the request's model; this service does not know which.

The engine's errors about a request (a parameter out of range, a prompt longer than the
context) become 400s naming the parameter.

With tools (``ToolOptions``), their declarations go into the prompt exactly as training writes an
example's ``tools`` (``chat_format.normalize_messages``), and each answer is read back with
``tool_parsing``: its ``<tool_call>`` blocks become tool calls with fresh ``call_…`` ids, and a
choice that made calls and ended on its own finishes with ``"tool_calls"`` (one cut by the token
limit keeps ``"length"``, so a client can tell its last call may be missing). A streamed answer
releases its text as it comes and its calls when the choice ends.

Example:
    >>> ChatParams(max_tokens=16).n
    1
    >>> ToolOptions([{"type": "function", "function": {"name": "f"}}]).names
    frozenset({'f'})
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import ConfigurationError
from ..api_errors import InvalidRequestError
from ..engine.generation import ModelRef
from ..engine.serving import ChatDeltas, ChatEngine
from ..engine.tool_parsing import ParsedAnswer, ToolCallStreamParser, parse_tool_calls
from .catalog import ChatTarget

__all__ = [
    "ChatParams",
    "ChatService",
    "ChoiceText",
    "ChoiceToolCall",
    "CompletionResult",
    "StreamPiece",
    "ToolOptions",
]

_ID_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class ChatParams:
    """Sampling parameters of one request (``None``: the model's default).

    Attributes:
        max_tokens: Most tokens to generate per choice.
        temperature: 0 is greedy.
        top_p: Nucleus sampling mass.
        stop: Strings that end a choice (not included in it).
        seed: Seed of the sampling, for reproducible answers.
        n: Number of choices.
        max_tokens_param: The request parameter ``max_tokens`` came from (``max_tokens`` or
            ``max_completion_tokens``): an error about it names what the client sent.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    n: int = 1
    max_tokens_param: str = "max_tokens"


@dataclass(frozen=True)
class ToolOptions:
    """The tools a request offers the model.

    Attributes:
        declarations: The request's ``tools`` as the client sent them (``{"type": "function",
            "function": {...}}``), written into the prompt as training writes them.
        parallel: Whether a choice may make several calls (``parallel_tool_calls``); when not,
            only its first call is returned.
    """

    declarations: Sequence[Mapping[str, Any]]
    parallel: bool = True

    @property
    def names(self) -> frozenset[str]:
        """Names of the offered functions: a block calling another name is not a call."""
        return frozenset(str(tool["function"]["name"]) for tool in self.declarations)


@dataclass(frozen=True)
class ChoiceToolCall:
    """A tool call of a choice, as the API returns it.

    Attributes:
        id: ``call_`` and 24 random letters and digits.
        name: The function's name.
        arguments: The arguments, a JSON string.
    """

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChoiceText:
    """One generated choice.

    Attributes:
        text: The content: the whole answer, or without tools' calls the text outside them
            (``None`` when empty and there are calls).
        finish_reason: ``"stop"``, ``"length"`` or ``"tool_calls"``.
        tool_calls: The calls read from the answer.
    """

    text: str | None
    finish_reason: str
    tool_calls: tuple[ChoiceToolCall, ...] = ()


@dataclass(frozen=True)
class CompletionResult:
    """Every choice of a request and its token usage."""

    choices: list[ChoiceText]
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class StreamPiece:
    """One piece of a streamed answer: a text delta, a choice's end, or the final usage.

    Attributes:
        index: The choice.
        text: New text (may be empty).
        finish_reason: Set on the last piece of a choice.
        usage: ``(prompt_tokens, completion_tokens)`` on the very last piece only.
        tool_calls: The choice's calls, on its last piece (after its last text).
    """

    index: int
    text: str = ""
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None
    tool_calls: tuple[ChoiceToolCall, ...] = ()


def _new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def _with_ids(answer: ParsedAnswer) -> tuple[ChoiceToolCall, ...]:
    return tuple(ChoiceToolCall(_new_call_id(), c.name, c.arguments) for c in answer.tool_calls)


def _finish(raw: str, calls: tuple[ChoiceToolCall, ...]) -> str:
    # A choice cut by the token limit says so even when it made calls: the last may be missing.
    return "tool_calls" if calls and raw == "stop" else raw


def _as_request_error(exc: ConfigurationError, params: ChatParams) -> InvalidRequestError:
    message, param = str(exc), exc.param
    if param == "max_tokens":
        param = params.max_tokens_param
        message = re.sub(r"\bmax_tokens\b", param, message)
    code = "context_length_exceeded" if "context" in message else None
    return InvalidRequestError(message, param=param, code=code)


class ChatService:
    """Runs chat requests on a chat engine.

    Args:
        engine: The server's engine (an ``EngineRouter``, or any one ``ChatEngine``).
    """

    def __init__(self, engine: ChatEngine) -> None:
        self._engine = engine

    def _kwargs(self, params: ChatParams) -> dict[str, Any]:
        return {
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stop": params.stop or None,
            "seed": params.seed,
            "n": params.n,
        }

    def complete(
        self,
        target: ChatTarget,
        messages: Sequence[Mapping[str, Any]],
        params: ChatParams,
        tools: ToolOptions | None = None,
    ) -> CompletionResult:
        """Generate every choice at once.

        Args:
            target: The model to answer with.
            messages: The conversation, OpenAI-style (tool calls and tool messages included).
            params: Sampling parameters.
            tools: The tools offered; ``None`` for a plain text answer.

        Raises:
            InvalidRequestError: A parameter or message the model cannot use.
        """
        ref = ModelRef(target.base_model, target.adapter_path)
        declarations = tools.declarations if tools is not None else None
        try:
            result = self._engine.chat(ref, messages, tools=declarations, **self._kwargs(params))
        except ConfigurationError as exc:
            raise _as_request_error(exc, params) from exc
        choices = []
        for choice in result.choices:
            if tools is None:
                choices.append(ChoiceText(choice.text, choice.finish_reason))
                continue
            answer = parse_tool_calls(choice.text, tools.names, parallel=tools.parallel)
            calls = _with_ids(answer)
            choices.append(ChoiceText(answer.content, _finish(choice.finish_reason, calls), calls))
        return CompletionResult(
            choices=choices,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
        )

    def start_stream(
        self,
        target: ChatTarget,
        messages: Sequence[Mapping[str, Any]],
        params: ChatParams,
        tools: ToolOptions | None = None,
    ) -> Iterator[StreamPiece]:
        """Start generating; return the pieces as they come, then the usage.

        Errors about the request are raised here, before the response starts. With tools, text
        that may belong to a call is held back until its choice ends; the choice's last piece
        carries the rest of its content and its calls.

        Args:
            target: The model to answer with.
            messages: The conversation, OpenAI-style.
            params: Sampling parameters.
            tools: The tools offered; ``None`` for a plain text answer.

        Raises:
            InvalidRequestError: A parameter or message the model cannot use.
        """
        ref = ModelRef(target.base_model, target.adapter_path)
        declarations = tools.declarations if tools is not None else None
        try:
            stream = self._engine.stream(ref, messages, tools=declarations, **self._kwargs(params))
        except ConfigurationError as exc:
            raise _as_request_error(exc, params) from exc
        return self._pieces(stream, tools)

    @staticmethod
    def _pieces(stream: ChatDeltas, tools: ToolOptions | None) -> Iterator[StreamPiece]:
        parsers: dict[int, ToolCallStreamParser] = {}
        try:
            for delta in stream:
                if tools is None:
                    yield StreamPiece(delta.index, delta.text, delta.finish_reason)
                    continue
                parser = parsers.get(delta.index)
                if parser is None:
                    parser = ToolCallStreamParser(tools.names, parallel=tools.parallel)
                    parsers[delta.index] = parser
                if delta.finish_reason is None:
                    yield StreamPiece(delta.index, parser.feed(delta.text))
                    continue
                rest, answer = parser.finish(delta.text)
                calls = _with_ids(answer)
                yield StreamPiece(
                    delta.index, rest, _finish(delta.finish_reason, calls), tool_calls=calls
                )
            yield StreamPiece(0, usage=(stream.prompt_tokens, stream.completion_tokens))
        finally:
            # A client that disconnects mid-stream stops the generation.
            stream.close()
