"""Read a fine-tuning JSONL file into token ids for the local training engine.

Supervised files hold chat examples (``{"messages": [...], "tools": [...]}``; legacy
``{"prompt", "completion"}`` lines are read as one user and one assistant turn); DPO files hold
preference pairs (``{"input": {"messages": [...]}, "preferred_output": [...],
"non_preferred_output": [...]}``); reinforcement files hold prompts (``{"messages": [...]}``
ending with the user's turn, every other key kept for the grader). Every problem raises
``TrainingDataError`` naming the file parameter, the line and the field, with a hint on how to
fix it.

Example:
    >>> from finetune_kit.local.engine.tiny_model import build_tiny_tokenizer
    >>> from finetune_kit.local.engine.chat_format import ChatRenderer
    >>> line = b'{"messages": [{"role": "user", "content": "Hi"},'
    >>> line += b' {"role": "assistant", "content": "Yo"}]}'
    >>> [example] = load_supervised(line, ChatRenderer(build_tiny_tokenizer()))
    >>> example.line, example.n_trained
    (1, 3)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...data.jsonl import JsonlSource, read_jsonl
from ...errors import JSONLDecodeError, TrainingDataError
from .chat_format import ChatRenderer, MessageFormatError, RenderedExample, normalize_messages

__all__ = [
    "PreferencePair",
    "ReinforcementPrompt",
    "SupervisedExample",
    "load_preference",
    "load_reinforcement",
    "load_supervised",
]


@dataclass(frozen=True)
class SupervisedExample:
    """One chat example as token ids.

    Attributes:
        line: 1-based line number in its file.
        input_ids: Token ids of the rendered conversation (truncated to the context length).
        targets: Positions ``p`` whose next token ``input_ids[p + 1]`` is trained on.
        n_tokens: Tokens in the example as billed (before truncation).
    """

    line: int
    input_ids: list[int]
    targets: list[int]
    n_tokens: int

    @property
    def n_trained(self) -> int:
        """Number of trained tokens."""
        return len(self.targets)


@dataclass(frozen=True)
class PreferencePair:
    """One DPO example: the same prompt with a preferred and a non-preferred answer.

    Attributes:
        line: 1-based line number in its file.
        chosen: The conversation ending with the preferred answer.
        rejected: The conversation ending with the non-preferred answer.
    """

    line: int
    chosen: SupervisedExample
    rejected: SupervisedExample

    @property
    def n_tokens(self) -> int:
        """Tokens in the pair as billed: prompt plus both answers, both rendered in full."""
        return self.chosen.n_tokens + self.rejected.n_tokens


@dataclass(frozen=True)
class ReinforcementPrompt:
    """One reinforcement (RFT) example: a prompt to answer, and the row the grader reads.

    Attributes:
        line: 1-based line number in its file.
        prompt_ids: Token ids of the conversation followed by the assistant's generation prompt.
        item: The line's keys other than ``messages`` and ``tools``: the grader's ``item``.
        tool_names: Names of the functions the example offers (its answers may call them).
    """

    line: int
    prompt_ids: list[int]
    item: dict[str, Any]
    tool_names: tuple[str, ...] = ()

    @property
    def n_tokens(self) -> int:
        """Tokens in the prompt."""
        return len(self.prompt_ids)


class _LineProblemError(Exception):
    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


def _records(source: JsonlSource, param: str) -> list[tuple[int, Any]]:
    try:
        if isinstance(source, (str, os.PathLike)):
            # Read through a stream so messages say "line N", not the server's blob path.
            with open(source, "rb") as stream:
                records = list(read_jsonl(stream))
        else:
            records = list(read_jsonl(source))
    except JSONLDecodeError as exc:
        raise TrainingDataError(f"{param} {exc}", param=param, line=exc.line) from exc
    except OSError as exc:
        raise TrainingDataError(f"{param} cannot be read: {exc}", param=param) from exc
    if not records:
        raise TrainingDataError(
            f"{param} has no examples; put one JSON example on each line", param=param
        )
    return records


def _fail(param: str, line: int, problem: _LineProblemError) -> TrainingDataError:
    return TrainingDataError(
        f"{param} line {line}: {problem}", param=param, line=line, field=problem.field
    )


def _to_example(rendered: RenderedExample, line: int, max_len: int | None) -> SupervisedExample:
    ids = rendered.input_ids
    flags = rendered.trained
    n_tokens = len(ids)
    if max_len is not None and len(ids) > max_len:
        ids, flags = ids[:max_len], flags[:max_len]
    targets = [position for position in range(len(ids) - 1) if flags[position + 1]]
    if not targets:
        raise _LineProblemError(
            f"no trained token is left within the model's {max_len}-token context"
            if max_len is not None and n_tokens > max_len
            else "nothing to train on: the trained assistant messages are empty",
            None,
        )
    return SupervisedExample(line, ids, targets, n_tokens)


def _weights(messages: Sequence[Any]) -> list[bool]:
    flags: list[bool] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            continue
        if "weight" not in message:
            if message.get("role") == "assistant":
                flags.append(True)
            continue
        weight = message["weight"]
        field = f"messages[{index}].weight"
        if message.get("role") != "assistant":
            raise _LineProblemError(f"{field}: weight is allowed on assistant messages only", field)
        if isinstance(weight, bool) or weight not in (0, 1):
            raise _LineProblemError(
                f"{field} is {weight!r}; use 0 (context only) or 1 (train)", field
            )
        flags.append(weight == 1)
    return flags


def _supervised(
    value: Any, renderer: ChatRenderer, max_len: int | None, line: int
) -> SupervisedExample:
    if not isinstance(value, Mapping):
        raise _LineProblemError("expected a JSON object with a messages list", None)
    if "messages" not in value and "prompt" in value and "completion" in value:
        value = {
            "messages": [
                {"role": "user", "content": value["prompt"]},
                {"role": "assistant", "content": value["completion"]},
            ]
        }
    if "messages" not in value:
        hint = (
            "this is a preference (DPO) example; create the job with method dpo"
            if "preferred_output" in value
            else "add a messages list"
        )
        raise _LineProblemError(f"no messages: {hint}", "messages")
    messages = value["messages"]
    if not isinstance(messages, list) or not messages:
        raise _LineProblemError("messages must be a non-empty list", "messages")
    flags = _weights(messages)
    if not flags:
        raise _LineProblemError("no assistant message: add the answer to train on", "messages")
    if not any(flags):
        raise _LineProblemError(
            "every assistant message has weight 0: nothing to train on", "messages"
        )
    tools = value.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _LineProblemError("tools must be a list of function declarations", "tools")
    try:
        normalized = normalize_messages(messages, tools)
        rendered = renderer.render_training(normalized, flags)
    except MessageFormatError as exc:
        raise _LineProblemError(str(exc), exc.field) from exc
    return _to_example(rendered, line, max_len)


def load_supervised(
    source: JsonlSource,
    renderer: ChatRenderer,
    *,
    param: str = "training_file",
    max_len: int | None = None,
) -> list[SupervisedExample]:
    """Read and tokenize a supervised (chat) fine-tuning file.

    Args:
        source: The JSONL file (path, bytes or binary stream).
        renderer: Renders with the base model's chat template and tokenizer.
        param: ``"training_file"`` or ``"validation_file"``, for error messages.
        max_len: Truncate examples to this many tokens (the model's context length).

    Returns:
        One ``SupervisedExample`` per non-blank line.

    Raises:
        TrainingDataError: A line cannot be decoded or used; the message names it.
    """
    examples: list[SupervisedExample] = []
    for line, value in _records(source, param):
        try:
            examples.append(_supervised(value, renderer, max_len, line))
        except _LineProblemError as problem:
            raise _fail(param, line, problem) from None
    return examples


def _output_message(value: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    output = value.get(key)
    if isinstance(output, Mapping):
        output = [output]
    if not isinstance(output, list) or len(output) != 1 or not isinstance(output[0], Mapping):
        raise _LineProblemError(f"{key} must be a list holding one assistant message", key)
    message = output[0]
    if message.get("role", "assistant") != "assistant":
        raise _LineProblemError(f"{key}[0].role must be assistant", f"{key}[0].role")
    return {**message, "role": "assistant"}


def _preference(
    value: Any, renderer: ChatRenderer, max_len: int | None, line: int
) -> PreferencePair:
    if not isinstance(value, Mapping):
        raise _LineProblemError(
            "expected a JSON object with input, preferred_output, non_preferred_output", None
        )
    if "input" not in value:
        hint = (
            "this is a chat example; create the job with method supervised, or add "
            "input, preferred_output and non_preferred_output"
            if "messages" in value
            else "add input: {messages: [...]}"
        )
        raise _LineProblemError(f"no input: {hint}", "input")
    prompt = value["input"]
    messages = prompt.get("messages") if isinstance(prompt, Mapping) else None
    if not isinstance(messages, list) or not messages:
        raise _LineProblemError("input.messages must be a non-empty list", "input.messages")
    tools = prompt.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _LineProblemError(
            "input.tools must be a list of function declarations", "input.tools"
        )
    context = [
        {key: v for key, v in m.items() if key != "weight"}
        for m in messages
        if isinstance(m, Mapping)
    ]
    n_assistant = sum(1 for m in context if m.get("role") == "assistant")
    sides: list[SupervisedExample] = []
    for key in ("preferred_output", "non_preferred_output"):
        answer = _output_message(value, key)
        try:
            normalized = normalize_messages([*context, answer], tools, field="input.messages")
            rendered = renderer.render_training(normalized, [False] * n_assistant + [True])
        except MessageFormatError as exc:
            raise _LineProblemError(str(exc), exc.field) from exc
        sides.append(_to_example(rendered, line, max_len))
    return PreferencePair(line, sides[0], sides[1])


def load_preference(
    source: JsonlSource,
    renderer: ChatRenderer,
    *,
    param: str = "training_file",
    max_len: int | None = None,
) -> list[PreferencePair]:
    """Read and tokenize a DPO (preference) fine-tuning file.

    Args:
        source: The JSONL file (path, bytes or binary stream).
        renderer: Renders with the base model's chat template and tokenizer.
        param: ``"training_file"`` or ``"validation_file"``, for error messages.
        max_len: Truncate sequences to this many tokens (the model's context length).

    Returns:
        One ``PreferencePair`` per non-blank line.

    Raises:
        TrainingDataError: A line cannot be decoded or used; the message names it.
    """
    pairs: list[PreferencePair] = []
    for line, value in _records(source, param):
        try:
            pairs.append(_preference(value, renderer, max_len, line))
        except _LineProblemError as problem:
            raise _fail(param, line, problem) from None
    return pairs


def _reinforcement(
    value: Any, renderer: ChatRenderer, max_len: int | None, line: int
) -> ReinforcementPrompt:
    if not isinstance(value, Mapping):
        raise _LineProblemError("expected a JSON object with a messages list", None)
    messages = value.get("messages")
    if "messages" not in value:
        hint = (
            "this is a preference (DPO) example; create the job with method dpo"
            if "preferred_output" in value
            else "add a messages list ending with the user's turn"
        )
        raise _LineProblemError(f"no messages: {hint}", "messages")
    if not isinstance(messages, list) or not messages:
        raise _LineProblemError("messages must be a non-empty list", "messages")
    last = messages[-1]
    role = last.get("role") if isinstance(last, Mapping) else None
    if role != "user":
        field = f"messages[{len(messages) - 1}].role"
        raise _LineProblemError(
            f"{field} is {role!r}: a reinforcement example ends with the user's turn (the model "
            "writes the answer); remove the answer, or create the job with method supervised",
            field,
        )
    tools = value.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _LineProblemError("tools must be a list of function declarations", "tools")
    try:
        normalized = normalize_messages(messages, tools)
        prompt_ids = renderer.render_prompt(normalized)
    except MessageFormatError as exc:
        raise _LineProblemError(str(exc), exc.field) from exc
    if max_len is not None and len(prompt_ids) >= max_len:
        raise _LineProblemError(
            f"the prompt is {len(prompt_ids)} tokens, which leaves no room for an answer in "
            f"the model's {max_len}-token context; shorten the messages",
            "messages",
        )
    names = tuple(
        str(tool["function"]["name"])
        for tool in tools or []
        if isinstance(tool, Mapping)
        and isinstance(tool.get("function"), Mapping)
        and isinstance(tool["function"].get("name"), str)
    )
    item = {key: v for key, v in value.items() if key not in ("messages", "tools")}
    return ReinforcementPrompt(line, prompt_ids, item, names)


def load_reinforcement(
    source: JsonlSource,
    renderer: ChatRenderer,
    *,
    param: str = "training_file",
    max_len: int | None = None,
) -> list[ReinforcementPrompt]:
    """Read and tokenize a reinforcement (RFT) fine-tuning file.

    Args:
        source: The JSONL file (path, bytes or binary stream).
        renderer: Renders with the base model's chat template and tokenizer.
        param: ``"training_file"`` or ``"validation_file"``, for error messages.
        max_len: The model's context length: a prompt must leave room for an answer.

    Returns:
        One ``ReinforcementPrompt`` per non-blank line.

    Raises:
        TrainingDataError: A line cannot be decoded or used; the message names it.

    Example:
        >>> from finetune_kit.local.engine.tiny_model import build_tiny_tokenizer
        >>> line = b'{"messages": [{"role": "user", "content": "2+2?"}], "answer": "4"}'
        >>> [prompt] = load_reinforcement(line, ChatRenderer(build_tiny_tokenizer()))
        >>> prompt.item
        {'answer': '4'}
    """
    prompts: list[ReinforcementPrompt] = []
    for line, value in _records(source, param):
        try:
            prompts.append(_reinforcement(value, renderer, max_len, line))
        except _LineProblemError as problem:
            raise _fail(param, line, problem) from None
    return prompts
