r"""Read tool calls back out of a local model's answer: the inverse of how training writes them.

Training writes an assistant's tool calls into its text, Hermes-style (see ``chat_format``): the
content, then one block per call, joined by newlines::

    Let me check.
    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

``parse_tool_calls`` turns a generated text back into content and calls:

- every well-formed block becomes a call: ``<tool_call>``, optional whitespace, one JSON object
  with a string ``name`` (one of the offered tools, when their names are given) and optional
  ``arguments``, optional whitespace, ``</tool_call>``. ``arguments`` comes back as a JSON string,
  as the API returns it (an object is serialised; a string, which is how training writes
  arguments that are not valid JSON, is kept as it is; none means ``"{}"``). Other keys of the
  object are ignored.
- a malformed block (invalid JSON, no name, a function that was not offered, no closing tag)
  is not a call: it stays in the content as text, so nothing the model wrote is lost.
- the content is the text outside the calls' blocks, the whitespace between it and the blocks
  dropped; ``None`` when nothing is left and there are calls (as OpenAI answers).
- ``parallel=False`` keeps only the first call (the others' blocks are dropped as well).

``ToolCallStreamParser`` does the same for a streamed answer: it passes on the text that cannot
be part of a block as it comes, and holds back the rest until the answer ends.

Example:
    >>> answer = parse_tool_calls(
    ...     'On it.\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>', {"f"})
    >>> answer.content, answer.tool_calls
    ('On it.', (ParsedToolCall(name='f', arguments='{"x": 1}'),))
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

__all__ = [
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "ParsedAnswer",
    "ParsedToolCall",
    "ToolCallStreamParser",
    "parse_tool_calls",
]

logger = logging.getLogger("finetune_kit.local.tools")

TOOL_CALL_OPEN = "<tool_call>"
"""The tag that opens a tool call's block."""
TOOL_CALL_CLOSE = "</tool_call>"
"""The tag that closes a tool call's block."""

_WHITESPACE = " \t\n\r"


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON: a client could not parse arguments holding them.
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


@dataclass(frozen=True)
class ParsedToolCall:
    """One tool call read from a model's text.

    Attributes:
        name: The function's name.
        arguments: The arguments as a JSON string, as the API's ``function.arguments``.
    """

    name: str
    arguments: str


@dataclass(frozen=True)
class ParsedAnswer:
    """A model's answer split into content and tool calls.

    Attributes:
        content: The text outside the calls' blocks; ``None`` when empty and there are calls.
        tool_calls: The calls, in the order they were written.
        dropped_calls: Well-formed calls left out because parallel calls were not allowed.
    """

    content: str | None
    tool_calls: tuple[ParsedToolCall, ...] = ()
    dropped_calls: int = 0


def _skip_whitespace(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def _read_block(
    text: str, start: int, names: Collection[str] | None
) -> tuple[ParsedToolCall, int] | None:
    """Read the block opening at ``start``; return the call and the index after the block."""
    index = _skip_whitespace(text, start + len(TOOL_CALL_OPEN))
    try:
        value, index = _DECODER.raw_decode(text, index)
    except ValueError:
        return None
    index = _skip_whitespace(text, index)
    if not text.startswith(TOOL_CALL_CLOSE, index) or not isinstance(value, dict):
        return None
    name = value.get("name")
    if not isinstance(name, str) or not name or (names is not None and name not in names):
        return None
    arguments = value.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return ParsedToolCall(name, arguments), index + len(TOOL_CALL_CLOSE)


def parse_tool_calls(
    text: str, tool_names: Collection[str] | None = None, *, parallel: bool = True
) -> ParsedAnswer:
    """Split a generated answer into content and the tool calls written in it.

    Args:
        text: The model's answer.
        tool_names: Names of the offered functions; a block calling another name is not a call.
            ``None`` accepts any name.
        parallel: Whether several calls may be returned; ``False`` keeps the first.

    Returns:
        The content (``text`` unchanged when there is no call) and the calls.

    Example:
        >>> parse_tool_calls("<tool_call>{bad json}</tool_call>").content
        '<tool_call>{bad json}</tool_call>'
    """
    calls: list[ParsedToolCall] = []
    pieces: list[str] = []
    dropped = 0
    kept_from = 0
    search_from = 0
    while True:
        start = text.find(TOOL_CALL_OPEN, search_from)
        if start < 0:
            break
        block = _read_block(text, start, tool_names)
        if block is None:
            logger.debug(
                "a malformed <tool_call> block at character %d stays in the content", start
            )
            search_from = start + len(TOOL_CALL_OPEN)
            continue
        call, end = block
        if parallel or not calls:
            calls.append(call)
        else:
            dropped += 1
        pieces.append(text[kept_from:start])
        kept_from = search_from = end
    if not calls:
        return ParsedAnswer(text)
    if dropped:
        logger.debug("parallel_tool_calls is false: %d call(s) after the first dropped", dropped)
    pieces.append(text[kept_from:])
    last = len(pieces) - 1
    # Training joins the content and the blocks with newlines: drop the whitespace at the edges
    # that touch a block, keep the text's own.
    trimmed = [
        piece.lstrip(_WHITESPACE) if index > 0 else piece for index, piece in enumerate(pieces)
    ]
    trimmed = [
        piece.rstrip(_WHITESPACE) if index < last else piece for index, piece in enumerate(trimmed)
    ]
    content = "\n".join(piece for piece in trimmed if piece)
    return ParsedAnswer(content or None, tuple(calls), dropped)


class ToolCallStreamParser:
    """Parse a streamed answer: pass content on as it comes, read the calls at the end.

    Text is released as soon as it cannot belong to a tool call's block (nor be whitespace
    between content and a block); from the first ``<tool_call>`` on, everything is held until
    :meth:`finish`. What :meth:`feed` released followed by what :meth:`finish` returns is always
    the content ``parse_tool_calls`` gives for the whole text.

    Args:
        tool_names: As for ``parse_tool_calls``.
        parallel: As for ``parse_tool_calls``.

    Example:
        >>> parser = ToolCallStreamParser({"f"})
        >>> [parser.feed(piece) for piece in ("Sure", ". <tool", '_call>{"name": "f"}')]
        ['Sure', '.', '']
        >>> rest, answer = parser.finish("</tool_call>")
        >>> rest, [call.name for call in answer.tool_calls]
        ('', ['f'])
    """

    def __init__(self, tool_names: Collection[str] | None = None, *, parallel: bool = True) -> None:
        self.tool_names = tool_names
        self.parallel = parallel
        self._text = ""
        self._released = 0
        self._open_at: int | None = None

    def feed(self, text: str) -> str:
        """Add generated text; return the part of the content that is now certain."""
        self._text += text
        if self._open_at is None:
            found = self._text.find(TOOL_CALL_OPEN, max(0, self._released - len(TOOL_CALL_OPEN)))
            self._open_at = found if found >= 0 else None
        if self._open_at is not None:
            safe = self._open_at
        else:
            safe = len(self._text) - _partial_open_length(self._text)
        # Whitespace right before a block is not content: hold it until something follows it.
        safe = len(self._text[:safe].rstrip(_WHITESPACE))
        if safe <= self._released:
            return ""
        released = self._text[self._released : safe]
        self._released = safe
        return released

    def finish(self, text: str = "") -> tuple[str, ParsedAnswer]:
        """Add the last text and parse the whole answer.

        Returns:
            The content not released yet, and the parsed answer.
        """
        self._text += text
        answer = parse_tool_calls(self._text, self.tool_names, parallel=self.parallel)
        return (answer.content or "")[self._released :], answer


def _partial_open_length(text: str) -> int:
    """Length of the longest end of ``text`` that could begin ``<tool_call>``."""
    for length in range(min(len(text), len(TOOL_CALL_OPEN) - 1), 0, -1):
        if TOOL_CALL_OPEN.startswith(text[-length:]):
            return length
    return 0
