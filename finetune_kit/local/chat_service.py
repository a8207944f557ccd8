"""Chat generation for the HTTP layer: the engine's ``Generator`` behind plain values.

The generator's errors about a request (a parameter out of range, a prompt longer than the
context) become 400s naming the parameter.

Example:
    >>> ChatParams(max_tokens=16).n
    1
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError
from .api_errors import InvalidRequestError
from .catalog import ChatTarget
from .generation import ChatStream, Generator, ModelRef

__all__ = ["ChatParams", "ChatService", "ChoiceText", "CompletionResult", "StreamPiece"]


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
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    n: int = 1


@dataclass(frozen=True)
class ChoiceText:
    """One generated choice."""

    text: str
    finish_reason: str


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
    """

    index: int
    text: str = ""
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None


def _as_request_error(exc: ConfigurationError) -> InvalidRequestError:
    code = "context_length_exceeded" if "context" in str(exc) else None
    return InvalidRequestError(str(exc), param=exc.param, code=code)


class ChatService:
    """Runs chat requests on the engine's generator.

    Args:
        generator: The engine's ``Generator`` (base model loaded once, adapters swapped).
    """

    def __init__(self, generator: Generator) -> None:
        self._generator = generator

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
        self, target: ChatTarget, messages: Sequence[Mapping[str, Any]], params: ChatParams
    ) -> CompletionResult:
        """Generate every choice at once.

        Raises:
            InvalidRequestError: A parameter or message the model cannot use.
        """
        ref = ModelRef(target.base_model, target.adapter_path)
        try:
            result = self._generator.chat(ref, messages, **self._kwargs(params))
        except ConfigurationError as exc:
            raise _as_request_error(exc) from exc
        return CompletionResult(
            choices=[ChoiceText(c.text, c.finish_reason) for c in result.choices],
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
        )

    def start_stream(
        self, target: ChatTarget, messages: Sequence[Mapping[str, Any]], params: ChatParams
    ) -> Iterator[StreamPiece]:
        """Start generating; return the pieces as they come, then the usage.

        Errors about the request are raised here, before the response starts.

        Raises:
            InvalidRequestError: A parameter or message the model cannot use.
        """
        ref = ModelRef(target.base_model, target.adapter_path)
        try:
            stream = self._generator.stream(ref, messages, **self._kwargs(params))
        except ConfigurationError as exc:
            raise _as_request_error(exc) from exc
        return self._pieces(stream)

    @staticmethod
    def _pieces(stream: ChatStream) -> Iterator[StreamPiece]:
        try:
            for delta in stream:
                yield StreamPiece(delta.index, delta.text, delta.finish_reason)
            yield StreamPiece(0, usage=(stream.prompt_tokens, stream.completion_tokens))
        finally:
            # A client that disconnects mid-stream stops the generation.
            stream.close()
