"""Turn OpenAI-style chat messages into the token ids a local model trains on or answers.

Two steps, shared by training and chat so a tuned model sees at inference exactly the text
layout it was trained on:

1. ``normalize_messages`` maps OpenAI messages onto plain ``{"role", "content"}`` pairs that any
   chat template can render: text parts are joined, ``developer`` becomes ``system``, legacy
   ``function`` becomes ``tool``, and tool calls and tool declarations are written into the text
   (see below).
2. ``ChatRenderer`` renders them with the model's own chat template and tokenizes them. For
   training it finds which tokens belong to which assistant message by rendering the
   conversation incrementally: the text of messages ``[0, k)`` followed by the generation prompt is
   a prefix of the text of messages ``[0, k]``, so assistant message ``k`` owns the characters in
   between. Tokens starting inside a trained message's span get a label; everything else (system,
   user and tool turns, the ``<|im_start|>assistant`` header, assistant turns with ``weight: 0``)
   does not.

How tools are written into text (Hermes-style, as Qwen and SmolLM3 templates do):

- An assistant message's ``tool_calls`` (or legacy ``function_call``) are appended to its
  content, one block per call::

      <tool_call>
      {"name": "get_weather", "arguments": {"city": "Paris"}}
      </tool_call>

  ``arguments`` is parsed from its JSON string when it is valid JSON and kept as a string
  otherwise.
- A ``tool`` message keeps the role ``tool`` and its text content.
- The example's ``tools`` are listed in the system message (one is added at the front when the
  conversation has none) under a ``# Tools`` heading, one JSON function signature per line
  between ``<tools>`` and ``</tools>``.

Example:
    >>> normalize_messages([{"role": "developer", "content": [{"type": "text", "text": "Hi"}]}])
    [{'role': 'system', 'content': 'Hi'}]
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CHATML_TEMPLATE",
    "ChatRenderer",
    "MessageFormatError",
    "RenderedExample",
    "normalize_messages",
]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""SmolLM2-Instruct's chat template (ChatML, default system prompt); ``tiny-random`` uses it."""

_ROLE_MAP = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}

_TOOLS_PREAMBLE = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
_TOOLS_POSTAMBLE = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags."
)


class MessageFormatError(ValueError):
    """A message cannot be turned into text for a local model.

    Attributes:
        field: Path of the offending field, such as ``messages[2].content``.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def _text_of(content: Any, field: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        texts: list[str] = []
        for index, part in enumerate(content):
            where = f"{field}[{index}]"
            if not isinstance(part, Mapping):
                raise MessageFormatError(
                    f"{where} must be an object such as {{'type': 'text', 'text': '...'}}",
                    field=where,
                )
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind in ("image_url", "input_audio", "file"):
                raise MessageFormatError(
                    f"{where} is a {kind} part; local models read text only: "
                    "remove the part or describe it in text",
                    field=where,
                )
            else:
                raise MessageFormatError(
                    f"{where} must be a text part {{'type': 'text', 'text': '...'}}", field=where
                )
        return "".join(texts)
    raise MessageFormatError(f"{field} must be a string, a list of text parts or null", field=field)


def _call_block(name: Any, arguments: Any, field: str) -> str:
    if not isinstance(name, str) or not name:
        raise MessageFormatError(f"{field}.name must be a non-empty string", field=f"{field}.name")
    parsed: Any = arguments
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except json.JSONDecodeError:
            parsed = arguments
    body = json.dumps({"name": name, "arguments": parsed}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def _tool_call_text(message: Mapping[str, Any], field: str) -> list[str]:
    blocks: list[str] = []
    calls = message.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, Sequence) or isinstance(calls, str):
            raise MessageFormatError(
                f"{field}.tool_calls must be a list", field=f"{field}.tool_calls"
            )
        for index, call in enumerate(calls):
            where = f"{field}.tool_calls[{index}].function"
            function = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(function, Mapping):
                raise MessageFormatError(
                    f"{where} must be an object with name and arguments", field=where
                )
            blocks.append(_call_block(function.get("name"), function.get("arguments"), where))
    legacy = message.get("function_call")
    if legacy is not None:
        where = f"{field}.function_call"
        if not isinstance(legacy, Mapping):
            raise MessageFormatError(
                f"{where} must be an object with name and arguments", field=where
            )
        blocks.append(_call_block(legacy.get("name"), legacy.get("arguments"), where))
    return blocks


def _tools_text(tools: Sequence[Mapping[str, Any]], field: str) -> str:
    lines: list[str] = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping):
            where = f"{field}[{index}].function"
            raise MessageFormatError(f"{where} must be a function definition", field=where)
        lines.append(
            json.dumps({"type": "function", "function": dict(function)}, ensure_ascii=False)
        )
    return _TOOLS_PREAMBLE + "\n".join(lines) + _TOOLS_POSTAMBLE


def normalize_messages(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    field: str = "messages",
) -> list[dict[str, str]]:
    """Map OpenAI chat messages onto ``{"role", "content"}`` text pairs for a chat template.

    Args:
        messages: OpenAI-style messages (content as a string, text parts or null; tool calls).
        tools: The example's or request's tool declarations, written into the system message.
        field: Name of the messages list in error messages.

    Returns:
        One ``{"role": ..., "content": ...}`` dict per message, roles among ``system``, ``user``,
        ``assistant`` and ``tool``.

    Raises:
        MessageFormatError: A message has an unknown role or content a text model cannot read.
    """
    given: object = messages  # callers pass parsed JSON: check the type, whatever the hint
    if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
        raise MessageFormatError(f"{field} must be a list of messages", field=field)
    result: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        where = f"{field}[{index}]"
        if not isinstance(message, Mapping):
            raise MessageFormatError(
                f"{where} must be an object with role and content", field=where
            )
        role = _ROLE_MAP.get(str(message.get("role")))
        if role is None:
            raise MessageFormatError(
                f"{where}.role is {message.get('role')!r}; use one of {sorted(_ROLE_MAP)}",
                field=f"{where}.role",
            )
        text = _text_of(message.get("content"), f"{where}.content")
        if role == "assistant":
            blocks = _tool_call_text(message, where)
            if blocks:
                text = "\n".join([text, *blocks]) if text else "\n".join(blocks)
        result.append({"role": role, "content": text})
    if tools:
        declared = _tools_text(tools, "tools")
        if result and result[0]["role"] == "system":
            result[0] = {"role": "system", "content": result[0]["content"] + "\n\n" + declared}
        else:
            result.insert(0, {"role": "system", "content": declared})
    return result


@dataclass(frozen=True)
class RenderedExample:
    """A conversation as token ids, with the ids that are trained on.

    Attributes:
        input_ids: Token ids of the whole rendered conversation.
        trained: One flag per token: ``True`` when the token belongs to a trained assistant turn
            (its content and end-of-turn token), so the model learns to predict it.
    """

    input_ids: list[int]
    trained: list[bool]

    @property
    def n_trained(self) -> int:
        """Number of trained tokens."""
        return sum(self.trained)


class ChatRenderer:
    """Render normalized messages with a tokenizer's chat template into token ids.

    Args:
        tokenizer: A fast ``transformers`` tokenizer with a ``chat_template``.

    Example:
        >>> from finetune_kit.local.engine.tiny_model import build_tiny_tokenizer
        >>> renderer = ChatRenderer(build_tiny_tokenizer())
        >>> example = renderer.render_training(
        ...     [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], [True]
        ... )
        >>> renderer.decode([t for t, keep in zip(example.input_ids, example.trained) if keep])
        'Yo<|im_end|>'
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def render_text(self, messages: Sequence[Mapping[str, str]], *, generation_prompt: bool) -> str:
        """Render messages to text with the chat template.

        Args:
            messages: Normalized messages.
            generation_prompt: Append the header that opens the assistant's next turn.
        """
        from jinja2 import TemplateError

        try:
            text = self.tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=generation_prompt
            )
        except TemplateError as exc:
            # Templates refuse what their model was not trained on (Gemma's and Mistral's: roles
            # that do not alternate user/assistant, a tool turn): say so, naming the template.
            raise MessageFormatError(
                f"messages: this model's chat template refuses the conversation: {exc}",
                field="messages",
            ) from exc
        return str(text)

    def encode(self, text: str) -> list[int]:
        """Tokenize rendered text (special tokens written in it are recognised, none is added)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Decode ids to text, special tokens kept."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=False))

    def render_prompt(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids of a conversation followed by the assistant's generation prompt."""
        return self.encode(self.render_text(messages, generation_prompt=True))

    def assistant_spans(
        self, messages: Sequence[Mapping[str, str]]
    ) -> tuple[str, list[tuple[int, int, int]]]:
        """Render a conversation and find each assistant message's character span.

        Args:
            messages: Normalized messages.

        Returns:
            The rendered text and ``(message_index, start, end)`` for each assistant message,
            where ``text[start:end]`` is the message's content and end-of-turn marker (trailing
            whitespace after the marker excluded).

        Raises:
            MessageFormatError: The chat template does not render conversations incrementally.
        """
        full = self.render_text(messages, generation_prompt=False)
        try:
            return full, self._incremental_spans(messages, full)
        except MessageFormatError:
            # Some templates render a conversation differently by its end (Mistral's puts the
            # system message in the last user turn, and drops it when an answer ends the
            # conversation): find each answer in the full text instead.
            spans = self._searched_spans(messages, full)
            if spans is None:
                raise
            return full, spans

    def _incremental_spans(
        self, messages: Sequence[Mapping[str, str]], full: str
    ) -> list[tuple[int, int, int]]:
        spans: list[tuple[int, int, int]] = []
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            head = (
                self.render_text(messages[:index], generation_prompt=True)
                if index
                else self._first_turn_head()
            )
            upto = self.render_text(messages[: index + 1], generation_prompt=False)
            if not upto.startswith(head) or not full.startswith(upto):
                raise MessageFormatError(
                    f"messages[{index}]: this model's chat template does not render the "
                    "conversation incrementally, so the assistant turn cannot be located; "
                    "start the conversation with a system or user message",
                    field=f"messages[{index}]",
                )
            end = len(upto)
            while end > len(head) and upto[end - 1].isspace():
                end -= 1
            spans.append((index, len(head), end))
        return spans

    def _searched_spans(
        self, messages: Sequence[Mapping[str, str]], full: str
    ) -> list[tuple[int, int, int]] | None:
        """Each answer's span found by its text, in order, with the special token after it.

        Returns ``None`` when an answer's text is not in the rendered conversation (the template
        rewrote it), or is empty.
        """
        markers = sorted(
            {str(t) for t in getattr(self.tokenizer, "all_special_tokens", []) if t},
            key=len,
            reverse=True,
        )
        spans: list[tuple[int, int, int]] = []
        cursor = 0
        for index, message in enumerate(messages):
            content = message["content"].strip()
            start = full.find(content, cursor) if content else -1
            if message["role"] != "assistant":
                # Passed over, so an answer that repeats the question is found after it (a
                # message the template dropped is not found, and moves nothing).
                if start >= 0:
                    cursor = start + len(content)
                continue
            if start < 0:
                return None
            end = start + len(content)
            # The end-of-turn token is part of what the model must learn to write.
            marker = next((m for m in markers if full.startswith(m, end)), "")
            end += len(marker)
            spans.append((index, start, end))
            cursor = end
        return spans

    def _first_turn_head(self) -> str:
        # A conversation that opens with the assistant has no earlier messages to render with a
        # generation prompt: its head is whatever the template writes before the content.
        probe = self.render_text(
            [{"role": "assistant", "content": "\x00"}], generation_prompt=False
        )
        cut = probe.find("\x00")
        if cut < 0:
            raise MessageFormatError(
                "messages[0]: this model's chat template drops the content of an opening "
                "assistant turn; start the conversation with a system or user message",
                field="messages[0]",
            )
        return probe[:cut]

    def render_training(
        self, messages: Sequence[Mapping[str, str]], trained_messages: Sequence[bool]
    ) -> RenderedExample:
        """Tokenize a conversation and flag the tokens of the trained assistant messages.

        Args:
            messages: Normalized messages.
            trained_messages: One flag per assistant message, in order: train on it or not.

        Returns:
            The token ids and their trained flags.
        """
        text, spans = self.assistant_spans(messages)
        if len(spans) != len(trained_messages):
            raise ValueError(
                f"{len(spans)} assistant messages but {len(trained_messages)} trained flags"
            )
        encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = list(encoding["input_ids"])
        offsets: list[tuple[int, int]] = list(encoding["offset_mapping"])
        kept = [
            (start, end)
            for (_, start, end), keep in zip(spans, trained_messages, strict=True)
            if keep
        ]
        trained = [False] * len(ids)
        span_index = 0
        for position, (start, _) in enumerate(offsets):
            while span_index < len(kept) and start >= kept[span_index][1]:
                span_index += 1
            if span_index == len(kept):
                break
            trained[position] = start >= kept[span_index][0]
        return RenderedExample(ids, trained)
