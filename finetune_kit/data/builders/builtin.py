"""The built-in builders: question-answer pairs, conversations, tool calls, preference pairs.

They are registered through finetune_kit's own ``finetune_kit.builders`` entry points, the same
door third-party builders use. ``TemplateBuilder`` lives in ``template``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from ...errors import ExampleValidationError
from .._record_errors import check_arguments_object, json_type_name
from ..records import (
    AssistantMessage,
    ChatExample,
    ChatMessage,
    NonEmptyStr,
    PreferenceExample,
    PreferenceInput,
    Record,
    SystemMessage,
    Tool,
    ToolCall,
    ToolMessage,
    UserMessage,
    parse_message,
    validate_record,
)
from .base import BuilderOptions, DatasetBuilder
from .rows import RowFormat, is_missing, iter_rows, require_mapping

__all__ = ["ConversationBuilder", "PreferenceBuilder", "QABuilder", "ToolCallBuilder"]


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class QABuilder(DatasetBuilder["QABuilder.Options", ChatExample]):
    """Question-answer pairs into single-turn chat examples, with an optional system prompt.

    The source is an iterable of ``(question, answer)`` pairs, or a mapping of question to
    answer.

    Examples:
        >>> ds = QABuilder().build({"Tell me about Neon": "Neon glows..."}, system="Elle")
        >>> [m.role for m in ds[0].messages]
        ['system', 'user', 'assistant']
    """

    name = "qa"

    class Options(BuilderOptions):
        """Options of the ``qa`` builder.

        Attributes:
            system: A system prompt to put first in every example.
        """

        system: str | None = None

    def examples(
        self, source: Mapping[str, str] | Iterable[Sequence[str]], options: Options
    ) -> Iterator[ChatExample]:
        """Yield one chat example per pair."""
        pairs: Iterable[Any] = source.items() if isinstance(source, Mapping) else source
        for number, pair in enumerate(pairs, start=1):
            if (
                isinstance(pair, (str, bytes))
                or not isinstance(pair, Sequence)
                or len(pair) != 2
                or not all(isinstance(text, str) for text in pair)
            ):
                raise ExampleValidationError(
                    f"pair {number}: expected a (question, answer) pair of strings, got "
                    f"{json_type_name(pair)} {pair!r:.60}; give pairs such as ('Q?', 'A.')",
                    line=number,
                )
            yield ChatExample.single_turn(pair[0], pair[1], system=options.system)


class ConversationBuilder(DatasetBuilder["ConversationBuilder.Options", ChatExample]):
    """Multi-turn conversations into chat examples, with per-turn weights.

    Each conversation is a list of turns. A turn is a message object
    (``{"role": "assistant", "content": "...", "weight": 0}``), a ``(role, content)`` or
    ``(role, content, weight)`` tuple, or a bare string: strings alternate between user and
    assistant, starting with the user.

    Examples:
        >>> talk = ["Hi", "Hello!", "Tell me about Neon", ("assistant", "Neon glows...", 1)]
        >>> ds = ConversationBuilder().build([talk], train_on="last")
        >>> [(m.role, getattr(m, "weight", None)) for m in ds[0].messages]
        [('user', None), ('assistant', 0), ('user', None), ('assistant', 1)]
    """

    name = "conversations"

    class Options(BuilderOptions):
        """Options of the ``conversations`` builder.

        Attributes:
            system: A system prompt to put first in conversations that have none.
            train_on: ``"all"`` trains every assistant turn (unless a turn says otherwise);
                ``"last"`` gives earlier assistant turns weight 0 unless they set one.
        """

        system: str | None = None
        train_on: Literal["all", "last"] = "all"

    def examples(self, source: Iterable[Sequence[Any]], options: Options) -> Iterator[ChatExample]:
        """Yield one chat example per conversation."""
        for number, conversation in enumerate(source, start=1):
            where = f"conversation {number}"
            if isinstance(conversation, (str, bytes, Mapping)) or not isinstance(
                conversation, Sequence
            ):
                raise ExampleValidationError(
                    f"{where}: expected a list of turns, got {json_type_name(conversation)}",
                    line=number,
                )
            messages: list[ChatMessage] = []
            previous = None
            for index, turn in enumerate(conversation):
                message = _turn(turn, previous, number, f"turns[{index}]")
                messages.append(message)
                previous = message.role
            if options.system is not None and not any(
                m.role in ("system", "developer") for m in messages
            ):
                messages.insert(0, SystemMessage(content=options.system))
            if options.train_on == "last":
                messages = _train_on_last(messages)
            yield validate_record(ChatExample, {"messages": messages}, line=number, where=where)


def _turn(turn: Any, previous: str | None, number: int, path: str) -> ChatMessage:
    where = f"conversation {number}"
    if isinstance(turn, str):
        role = "assistant" if previous == "user" else "user"
        return parse_message({"role": role, "content": turn}, line=number, where=where)
    if isinstance(turn, Mapping):
        return parse_message(turn, line=number, where=where, prefix=path)
    if isinstance(turn, Sequence) and len(turn) in (2, 3):
        obj = {"role": turn[0], "content": turn[1]}
        if len(turn) == 3:
            obj["weight"] = turn[2]
        return parse_message(obj, line=number, where=where, prefix=path)
    raise ExampleValidationError(
        f"{where}: {path}: expected a message object, a (role, content[, weight]) tuple or a "
        f"string, got {json_type_name(turn)}",
        line=number,
        field=path,
    )


def _train_on_last(messages: list[ChatMessage]) -> list[ChatMessage]:
    answers = [i for i, m in enumerate(messages) if isinstance(m, AssistantMessage)]
    for index in answers[:-1]:
        message = messages[index]
        if isinstance(message, AssistantMessage) and message.weight is None:
            messages[index] = message.model_copy(update={"weight": 0})
    return messages


class ToolCallSpec(Record):
    """One call in a ``ToolCallItem``.

    Attributes:
        name: The function called.
        arguments: Its arguments, as a dict (serialised to a JSON string) or a JSON string.
        result: What the tool returned: a string, or any JSON value (serialised).
        id: The call's id; ``call_1``, ``call_2``... when left out.

    Examples:
        >>> ToolCallSpec.from_dict({"name": "add", "arguments": {"a": 2}, "result": 4}).arguments
        {'a': 2}
    """

    name: NonEmptyStr
    arguments: dict[str, Any] | str
    result: Any
    id: NonEmptyStr | None = None

    @field_validator("arguments")
    @classmethod
    def _arguments_are_an_object(cls, value: dict[str, Any] | str) -> dict[str, Any] | str:
        if isinstance(value, str):
            check_arguments_object(
                value,
                fix_json="give the arguments as a dict, or as a JSON string",
                fix_object="give the arguments as a dict",
            )
        return value


class ToolCallItem(Record):
    """One tool-use exchange for ``ToolCallBuilder``.

    Attributes:
        user: The user's request.
        calls: The calls the assistant makes, each with the tool's result.
        answer: The assistant's final answer, written after reading the results.
        system: A system prompt for this example (overrides the builder's).

    Examples:
        >>> call = {"name": "add", "arguments": '{"a":2,"b":2}', "result": 4}
        >>> item = ToolCallItem.from_dict({"user": "2+2?", "calls": [call], "answer": "4"})
        >>> item.calls[0].name, item.answer
        ('add', '4')
    """

    user: str
    calls: Annotated[list[ToolCallSpec], Field(min_length=1)]
    answer: str
    system: str | None = None


class ToolCallBuilder(DatasetBuilder["ToolCallBuilder.Options", ChatExample]):
    """Tool-use exchanges into chat examples: the call, the tool's reply, the final answer.

    Each item (a dict, or a JSONL line) is a ``ToolCallItem``: ``user``, ``calls`` (each with
    ``name``, ``arguments`` and ``result``) and ``answer``. Arguments given as dicts are
    serialised to the JSON strings the API expects.

    Examples:
        >>> item = {
        ...     "user": "Weather in Paris?",
        ...     "calls": [{"name": "get_weather", "arguments": {"city": "Paris"}, "result": {"c": 21}}],
        ...     "answer": "21 °C in Paris.",
        ... }
        >>> ds = ToolCallBuilder().build([item], tools=[Tool.for_function("get_weather")])
        >>> [m.role for m in ds[0].messages]
        ['user', 'assistant', 'tool', 'assistant']
        >>> ds[0].messages[1].tool_calls[0].function.arguments
        '{"city":"Paris"}'
    """  # noqa: E501 -- a doctest line

    name = "tool_calls"

    class Options(BuilderOptions):
        """Options of the ``tool_calls`` builder.

        Attributes:
            tools: The tools to declare in every example; calls must name one of them.
            system: A system prompt to put first (an item's own ``system`` wins).
            parallel_tool_calls: Written to every example when set; ``False`` also checks that
                no item makes more than one call.
            format: The file format when a path's suffix does not say.
        """

        tools: list[Tool] | None = None
        system: str | None = None
        parallel_tool_calls: bool | None = None
        format: RowFormat | None = None

    def examples(self, source: Any, options: Options) -> Iterator[ChatExample]:
        """Yield one chat example per item."""
        declared = {tool.function.name for tool in options.tools or ()}
        for row in iter_rows(source, format=options.format):
            item = validate_record(
                ToolCallItem, require_mapping(row), line=row.line, where=row.label
            )
            _check_calls(item, declared, options.parallel_tool_calls, row.label, row.line)
            messages: list[ChatMessage] = []
            system = item.system if item.system is not None else options.system
            if system is not None:
                messages.append(SystemMessage(content=system))
            messages.append(UserMessage(content=item.user))
            calls = [
                ToolCall.for_function(call.id or f"call_{i}", call.name, call.arguments)
                for i, call in enumerate(item.calls, start=1)
            ]
            messages.append(AssistantMessage(tool_calls=calls))
            for call, spec in zip(calls, item.calls, strict=True):
                content = spec.result if isinstance(spec.result, str) else _compact(spec.result)
                messages.append(ToolMessage(tool_call_id=call.id, content=content))
            messages.append(AssistantMessage(content=item.answer))
            yield ChatExample(
                messages=messages,
                tools=options.tools,
                parallel_tool_calls=options.parallel_tool_calls,
            )


def _check_calls(
    item: ToolCallItem, declared: set[str], parallel: bool | None, label: str, line: int
) -> None:
    if parallel is False and len(item.calls) > 1:
        raise ExampleValidationError(
            f"{label}: calls: {len(item.calls)} calls, but parallel_tool_calls is false; "
            "split the item or allow parallel calls",
            line=line,
            field="calls",
        )
    ids = [call.id or f"call_{i}" for i, call in enumerate(item.calls, start=1)]
    for index, call in enumerate(item.calls):
        if declared and call.name not in declared:
            raise ExampleValidationError(
                f"{label}: calls[{index}].name: {call.name!r} is not a declared tool "
                f"(tools: {', '.join(sorted(declared))}); fix the name or declare the tool",
                line=line,
                field=f"calls[{index}].name",
            )
        if ids.count(ids[index]) > 1:
            raise ExampleValidationError(
                f"{label}: calls[{index}].id: the id {ids[index]!r} is used twice in this "
                "item; give every call its own id",
                line=line,
                field=f"calls[{index}].id",
            )


class PreferenceBuilder(DatasetBuilder["PreferenceBuilder.Options", PreferenceExample]):
    """Preference pairs into DPO examples.

    Rows are dicts (or a CSV/JSONL file, a DataFrame, a Hugging Face dataset) with a prompt, a
    preferred and a non-preferred answer, under the column names the options give (``prompt``,
    ``chosen``, ``rejected`` by default), or ``(prompt, preferred, non_preferred)`` tuples. A
    prompt is a string (the user's message) or a list of message objects.

    Examples:
        >>> rows = [{"prompt": "2+2?", "chosen": "4", "rejected": "22"}]
        >>> ex = PreferenceBuilder().build(rows)[0]
        >>> ex.preferred_output[0].content, ex.non_preferred_output[0].content
        ('4', '22')
    """

    name = "preferences"

    class Options(BuilderOptions):
        """Options of the ``preferences`` builder.

        Attributes:
            system: A system prompt to put first in prompts that have none.
            prompt_key: The column holding the prompt.
            preferred_key: The column holding the answer to prefer.
            non_preferred_key: The column holding the answer to avoid.
            format: The file format when a path's suffix does not say.
        """

        system: str | None = None
        prompt_key: str = "prompt"
        preferred_key: str = "chosen"
        non_preferred_key: str = "rejected"
        format: RowFormat | None = None

    def examples(self, source: Any, options: Options) -> Iterator[PreferenceExample]:
        """Yield one preference example per row."""
        keys = (options.prompt_key, options.preferred_key, options.non_preferred_key)
        for row in iter_rows(source, format=options.format):
            if isinstance(row.value, (tuple, list)) and len(row.value) == 3:
                values: Mapping[str, Any] = dict(zip(keys, row.value, strict=True))
            else:
                values = require_mapping(row)
            for key in keys:
                if key not in values or is_missing(values[key]):
                    raise ExampleValidationError(
                        f"{row.label}: the column {key!r} is missing or empty; fill it in, or "
                        f"name the right column with the {_option_for(key, options)} option",
                        line=row.line,
                        field=key,
                    )
            prompt = _prompt(values[keys[0]], options.system, row.label, row.line, keys[0])
            preferred = _answer(values[keys[1]], row.label, row.line, keys[1])
            rejected = _answer(values[keys[2]], row.label, row.line, keys[2])
            yield PreferenceExample(
                input=PreferenceInput(messages=prompt),
                preferred_output=[preferred],
                non_preferred_output=[rejected],
            )


def _option_for(key: str, options: PreferenceBuilder.Options) -> str:
    for option in ("prompt_key", "preferred_key", "non_preferred_key"):
        if getattr(options, option) == key:
            return option
    return "prompt_key"


def _prompt(value: Any, system: str | None, label: str, line: int, key: str) -> list[ChatMessage]:
    if isinstance(value, str):
        messages: list[ChatMessage] = [UserMessage(content=value)]
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        messages = [
            parse_message(m, line=line, where=label, prefix=f"{key}[{i}]")
            for i, m in enumerate(value)
        ]
    else:
        raise ExampleValidationError(
            f"{label}: {key}: the prompt must be a string or a list of messages, got "
            f"{json_type_name(value)}",
            line=line,
            field=key,
        )
    if system is not None and not any(m.role in ("system", "developer") for m in messages):
        messages.insert(0, SystemMessage(content=system))
    return messages


def _answer(value: Any, label: str, line: int, key: str) -> AssistantMessage:
    if isinstance(value, str):
        return AssistantMessage(content=value)
    if isinstance(value, Mapping):
        message = parse_message(value, line=line, where=label, prefix=key)
        if isinstance(message, AssistantMessage):
            return message
    raise ExampleValidationError(
        f"{label}: {key}: an answer must be a string or an assistant message, got "
        f"{json_type_name(value)}",
        line=line,
        field=key,
    )
