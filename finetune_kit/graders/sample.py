"""The ``sample`` a grader grades: the model's answer, as text, JSON, tool calls and choices."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Sample"]

_JSON_STARTS = frozenset('{["-0123456789tfnNI')


@dataclass(frozen=True)
class Sample:
    """A model's answer, as a grader sees it (OpenAI's ``sample`` namespace).

    ``output_json`` is the text parsed as JSON, and absent when the text is not valid JSON (a
    template that reads it then sets ``sample_parse_error``). ``choices`` defaults to one
    assistant choice holding the text and the tool calls.

    Attributes:
        output_text: The answer's text.
        output_tools: The answer's tool calls, as chat completions return them
            (``{"id", "type": "function", "function": {"name", "arguments"}}``).
        choices: The chat completion's choices, when the sample came from one.
        output_audio: The answer's audio (``{"data", "transcript"}``), when there is one.

    Examples:
        >>> Sample.from_text('{"answer": 4}').namespace()["output_json"]
        {'answer': 4}
        >>> "output_json" in Sample.from_text("four").namespace()
        False
    """

    output_text: str
    output_tools: tuple[Mapping[str, Any], ...] = ()
    choices: tuple[Mapping[str, Any], ...] | None = None
    output_audio: Mapping[str, Any] | None = None
    _json: Any = field(default=None, init=False, repr=False, compare=False)
    _has_json: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Most answers are prose: skip the parser (and its exception) when JSON cannot start.
        if self.output_text.lstrip()[:1] not in _JSON_STARTS:
            return
        try:
            parsed = json.loads(self.output_text)
        except (ValueError, RecursionError):
            return
        object.__setattr__(self, "_json", parsed)
        object.__setattr__(self, "_has_json", True)

    @classmethod
    def from_text(cls, text: str) -> Sample:
        """A sample that is just text (what ``graders/run``'s ``model_sample`` is)."""
        return cls(output_text=text)

    @classmethod
    def from_message(cls, message: Mapping[str, Any], *, finish_reason: str = "stop") -> Sample:
        """A sample from a chat completion's assistant message (``content`` and ``tool_calls``).

        Args:
            message: The message as a dict, such as ``completion.choices[0].message.to_dict()``.
            finish_reason: The choice's finish reason, kept in ``choices``.
        """
        content = message.get("content")
        text = content if isinstance(content, str) else ""
        tools = message.get("tool_calls") or ()
        choice = {"index": 0, "message": dict(message), "finish_reason": finish_reason}
        return cls(output_text=text, output_tools=tuple(tools), choices=(choice,))

    @property
    def output_json(self) -> Any:
        """The text parsed as JSON, or None when it is not valid JSON."""
        return self._json

    @property
    def is_json(self) -> bool:
        """True when the text is valid JSON."""
        return self._has_json

    def namespace(self) -> dict[str, Any]:
        """The ``sample`` namespace for templates: ``output_json`` only when the text is JSON."""
        data = self._common()
        if self._has_json:
            data["output_json"] = self._json
        return data

    def for_python(self) -> dict[str, Any]:
        """The ``sample`` argument of a python grader's ``grade``: every key, ``None`` if unset."""
        data = self._common()
        data["output_json"] = self._json
        return data

    def _common(self) -> dict[str, Any]:
        tools = [dict(t) for t in self.output_tools]
        choices: Sequence[Mapping[str, Any]]
        if self.choices is not None:
            choices = self.choices
        else:
            message: dict[str, Any] = {"role": "assistant", "content": self.output_text}
            if tools:
                message["tool_calls"] = tools
            choices = ({"index": 0, "message": message, "finish_reason": "stop"},)
        return {
            "output_text": self.output_text,
            "output_tools": tools,
            "choices": [dict(c) for c in choices],
            "output_audio": dict(self.output_audio) if self.output_audio is not None else None,
        }
