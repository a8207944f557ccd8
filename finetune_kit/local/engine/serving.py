"""Chat engines: the one protocol the server's chat calls, and the router that picks one per model.

A ``ChatEngine`` answers chat requests for the models it ``serves``: the built-in torch
``Generator`` serves every model; llama.cpp (``engine.llama_cpp``) serves the models it can load
(a GGUF base, or a Llama-architecture folder converted once, and their adapters); a vLLM engine
serves one base model on a GPU. ``EngineRouter`` holds them in order of preference and hands each
request to the first that serves its model, the last (the fallback) taking the rest, so the chat
service never knows which engine answered.

To add an engine: a class with ``name``, ``serves``, ``chat``, ``stream`` and ``close`` (the
arguments of ``Generator.chat``), placed in the router's list by ``server/context.py``.

Example:
    >>> from finetune_kit.local.engine.generation import Generator
    >>> from finetune_kit.local.engine.registry import ModelRegistry
    >>> router = EngineRouter([], Generator(ModelRegistry(default_model="tiny-random")))
    >>> router.engine_for(ModelRef("tiny-random")).name
    'torch'
    >>> router.close()
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from .generation import ChatDelta, ChatResult, ModelRef

__all__ = ["ChatDeltas", "ChatEngine", "EngineRouter", "ModelRef"]

logger = logging.getLogger("finetune_kit.local.serving")


@runtime_checkable
class ChatDeltas(Protocol):
    """A streamed chat completion (``Generator.stream``'s ``ChatStream`` is one).

    Iterating gives ``ChatDelta`` items as they are generated, each choice's last one with its
    ``finish_reason``; ``prompt_tokens`` is known at once (or by the end), ``completion_tokens``
    once iteration has ended. ``close`` stops the generation (a client that went away).
    """

    @property
    def base_model(self) -> str:
        """The base model really used."""
        ...

    @property
    def prompt_tokens(self) -> int:
        """Tokens of the prompt."""
        ...

    @property
    def completion_tokens(self) -> int:
        """Tokens generated over all choices."""
        ...

    def __iter__(self) -> Iterator[ChatDelta]: ...

    def close(self) -> None:
        """Stop generating."""
        ...


@runtime_checkable
class ChatEngine(Protocol):
    """What serves chat completions: the built-in decoder, llama.cpp, vLLM.

    ``chat`` and ``stream`` take ``Generator.chat``'s arguments and raise its errors:
    ``ConfigurationError`` (with ``param``) for a request the model cannot take, which the server
    answers with a 400, and ``LocalBackendError`` when the engine fails.
    """

    name: str
    """A short name said to users: ``"torch"``, ``"llama.cpp"``, ``"vllm"``."""

    def serves(self, model: ModelRef) -> bool:
        """Whether this engine can answer for ``model`` (cheap: no model is loaded)."""
        ...

    def chat(
        self,
        model: ModelRef,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        n: int = 1,
    ) -> ChatResult:
        """Generate a whole chat completion (see ``Generator.chat``)."""
        ...

    def stream(
        self,
        model: ModelRef,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        n: int = 1,
    ) -> ChatDeltas:
        """Start a chat completion; errors in the arguments are raised here, before any delta."""
        ...

    def close(self) -> None:
        """Release what the engine holds (threads, processes)."""
        ...


class EngineRouter:
    """Sends each request to the first engine that serves its model; itself a ``ChatEngine``.

    Args:
        engines: Engines in order of preference.
        fallback: Serves every model no engine of ``engines`` serves (the torch ``Generator``).

    Example:
        >>> from finetune_kit.local.engine.generation import Generator
        >>> from finetune_kit.local.engine.registry import ModelRegistry
        >>> router = EngineRouter([], Generator(ModelRegistry(default_model="tiny-random")))
        >>> router.chat(ModelRef("tiny-random"), [{"role": "user", "content": "Hi"}],
        ...             max_tokens=2, temperature=0).completion_tokens
        2
        >>> router.close()
    """

    name = "router"

    def __init__(self, engines: Sequence[ChatEngine], fallback: ChatEngine) -> None:
        self.engines = [*engines, fallback]

    def __repr__(self) -> str:
        return f"EngineRouter({[engine.name for engine in self.engines]})"

    def engine_for(self, model: ModelRef) -> ChatEngine:
        """The engine that answers for ``model``."""
        for engine in self.engines[:-1]:
            if engine.serves(model):
                return engine
        return self.engines[-1]

    def serves(self, model: ModelRef) -> bool:
        """Always true: the fallback serves whatever the others do not."""
        return True

    def chat(
        self,
        model: ModelRef,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        n: int = 1,
    ) -> ChatResult:
        """Generate a chat completion on the model's engine (see ``Generator.chat``)."""
        engine = self.engine_for(model)
        logger.debug("chat with %s on %s", model, engine.name)
        return engine.chat(
            model,
            messages,
            tools=tools,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            n=n,
        )

    def stream(
        self,
        model: ModelRef,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        n: int = 1,
    ) -> ChatDeltas:
        """Start a chat completion on the model's engine (see ``Generator.stream``)."""
        engine = self.engine_for(model)
        logger.debug("stream with %s on %s", model, engine.name)
        return engine.stream(
            model,
            messages,
            tools=tools,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            n=n,
        )

    def close(self) -> None:
        """Close every engine (each once, the last one too)."""
        for engine in self.engines:
            try:
                engine.close()
            except Exception:  # one engine failing to stop must not keep the others running
                logger.exception("closing the %s engine failed", engine.name)
