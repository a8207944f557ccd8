"""Chat generation for the HTTP layer: the engine's ``Generator`` behind plain values.

Example:
    >>> ChatParams(max_tokens=16).n
    1
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .catalog import ChatTarget

__all__ = ["ChatParams", "ChatService", "ChoiceText", "CompletionResult", "StreamPiece"]


@dataclass(frozen=True)
class ChatParams:
    """Sampling parameters of one request.

    Attributes:
        max_tokens: Most tokens to generate per choice.
        temperature: 0 is greedy.
        top_p: Nucleus sampling mass.
        stop: Strings that end a choice (not included in it).
        seed: Seed of the sampling, for reproducible answers.
        n: Number of choices.
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
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


class ChatService:
    """Runs chat requests on the engine's generator.

    Args:
        generator: The engine's ``Generator`` (base model loaded once, adapters swapped).
    """

    def __init__(self, generator: Any) -> None:
        self._generator = generator

    def _ref(self, target: ChatTarget) -> Any:
        from .generation import ModelRef

        return ModelRef(base=target.base_model, adapter_path=target.adapter_path)

    def complete(
        self, target: ChatTarget, messages: Sequence[dict[str, str]], params: ChatParams
    ) -> CompletionResult:
        """Generate every choice at once."""
        result = self._generator.chat(
            self._ref(target),
            list(messages),
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop=params.stop,
            seed=params.seed,
            n=params.n,
        )
        return CompletionResult(
            choices=[ChoiceText(c.text, c.finish_reason) for c in result.choices],
            prompt_tokens=int(result.prompt_tokens),
            completion_tokens=int(result.completion_tokens),
        )

    def stream(
        self, target: ChatTarget, messages: Sequence[dict[str, str]], params: ChatParams
    ) -> Iterator[StreamPiece]:
        """Generate the choices one after the other, yielding text as it comes."""
        raise NotImplementedError
