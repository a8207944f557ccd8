"""What a model answered: a chat reply and the tool calls in it, as plain immutable values.

These are views of server objects, so they are lenient: anything the server leaves out is
``None``, and the raw ``ChatCompletion`` is kept on :attr:`ChatReply.raw` for whatever a view
does not carry.

Examples:
    >>> reply = ChatReply(text="Paris.", model="gpt-4o-mini", finish_reason="stop",
    ...                   prompt_tokens=12, completion_tokens=2, latency=0.31)
    >>> reply.total_tokens
    14
    >>> call = ReplyToolCall(name="get_weather", arguments='{"city": "Paris"}')
    >>> call.parsed_arguments()
    {'city': 'Paris'}
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["ChatClient", "ChatReply", "ReplyToolCall"]


@dataclass(frozen=True)
class ReplyToolCall:
    """One tool call a model made (or a reference answer expects).

    Attributes:
        name: The function's name.
        arguments: The arguments exactly as sent: a JSON string (which may be invalid JSON).
        id: The call's id, when there is one.

    Examples:
        >>> ReplyToolCall(name="add", arguments='{"a": 1, "b": 2}').parsed_arguments()
        {'a': 1, 'b': 2}
    """

    name: str
    arguments: str
    id: str | None = None

    def parsed_arguments(self) -> Any:
        """Decode :attr:`arguments` as JSON.

        Returns:
            The decoded value (usually a dict).

        Raises:
            ValueError: The arguments are not valid JSON (``json.JSONDecodeError``).
        """
        return json.loads(self.arguments)

    def to_dict(self) -> dict[str, Any]:
        """Return the call in the API's shape: ``{id, type, function: {name, arguments}}``."""
        out: dict[str, Any] = {}
        if self.id is not None:
            out["id"] = self.id
        out["type"] = "function"
        out["function"] = {"name": self.name, "arguments": self.arguments}
        return out


@dataclass(frozen=True)
class ChatReply:
    """A model's answer to one chat request, with its cost in tokens and time.

    Attributes:
        text: The answer's text; ``""`` when the model answered only with tool calls.
        model: The model the server says answered (it may resolve an alias to a snapshot).
        finish_reason: Why generation stopped (``stop``, ``length``, ``tool_calls``...).
        prompt_tokens: Tokens in the prompt, as the server counted them.
        completion_tokens: Tokens generated, as the server counted them.
        latency: Seconds the successful request took (waits between retries not included).
        tool_calls: The tool calls in the answer, in order.
        request_id: The server's ``x-request-id``, for support requests.
        attempts: How many requests it took (1 when the first one succeeded).
        raw: The ``ChatCompletion`` as the ``openai`` client returned it.

    Examples:
        >>> reply = ChatReply(text="Hi", model="m", finish_reason="stop", prompt_tokens=3,
        ...                   completion_tokens=1, latency=0.05)
        >>> str(reply)
        'Hi'
    """

    text: str
    model: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency: float
    tool_calls: tuple[ReplyToolCall, ...] = ()
    request_id: str | None = None
    attempts: int = 1
    raw: Any = field(default=None, repr=False, compare=False)

    @property
    def total_tokens(self) -> int | None:
        """Prompt plus completion tokens, or ``None`` when the server did not count them."""
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        """Return the reply as JSON-ready data (without :attr:`raw`)."""
        return {
            "text": self.text,
            "model": self.model,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency": self.latency,
            "tool_calls": [call.to_dict() for call in self.tool_calls],
            "request_id": self.request_id,
            "attempts": self.attempts,
        }

    def __str__(self) -> str:
        return self.text


class ChatClient(Protocol):
    """What asks a model one chat request and answers a :class:`ChatReply`.

    ``InferenceClient`` is one, and ``AsyncInferenceClient`` (whose ``chat`` is awaited); a
    scorer that asks a model, such as ``ModelJudge``, takes any. Scorers see clients only
    through this, so they never import the inference clients that run them.
    """

    def chat(
        self, model: Any, messages: Any, *, system: str | None = None, **params: Any
    ) -> ChatReply | Awaitable[ChatReply]:
        """Ask ``model`` the ``messages`` (a system message first, when given).

        Returns:
            The reply, or an awaitable of it.
        """
        ...
