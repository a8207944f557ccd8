"""Typed training records: chat (SFT), preference (DPO) and reinforcement (RFT) examples.

Each record is a small frozen pydantic model that is strict on input (an unknown key, a number
where a string belongs, ``weight: 2`` are all errors naming the field) and writes back exactly
the JSON object the fine-tuning API reads: fields that are unset or ``None`` are left out, and
keys come in the order the API documentation writes them.

Examples:
    >>> from finetune_kit.data.records import parse_example
    >>> example = parse_example(
    ...     {
    ...         "messages": [
    ...             {"role": "user", "content": "Hi"},
    ...             {"role": "assistant", "content": "Hello"},
    ...         ]
    ...     }
    ... )
    >>> type(example).__name__, example.kind
    ('ChatExample', 'chat')
    >>> example.to_json_line()
    '{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]}'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from ..errors import ExampleValidationError
from ._record_errors import check_arguments_object, json_type_name, rule_error, to_example_error
from .base_models import MethodName
from .jsonl import dumps_line

__all__ = [
    "AssistantMessage",
    "ChatExample",
    "ChatMessage",
    "DeveloperMessage",
    "ExampleKind",
    "FunctionCall",
    "FunctionDefinition",
    "ImagePart",
    "ImageURL",
    "PreferenceExample",
    "PreferenceInput",
    "ReinforcementExample",
    "ReinforcementMessage",
    "SystemMessage",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolMessage",
    "TrainingExample",
    "UserMessage",
    "detect_kind",
    "parse_example",
    "parse_message",
]

ExampleKind = Literal["chat", "preference", "reinforcement"]
"""The three kinds of record (chat, preference, reinforcement): the shape of a line a record
reads (see :func:`detect_kind`)."""

RecordT = TypeVar("RecordT", bound="Record")


class Record(BaseModel):
    """Base class of every record: strict, frozen, and serialised without nulls.

    Examples:
        >>> from finetune_kit.data.records import UserMessage
        >>> UserMessage(content="Hi").to_dict()
        {'role': 'user', 'content': 'Hi'}
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object the API reads: unset and ``None`` fields are left out."""
        return self.model_dump(exclude_none=True)

    def to_json_line(self) -> str:
        """Return the record as one compact JSON line (UTF-8 kept as is, no newline)."""
        return dumps_line(self.to_dict())

    @classmethod
    def from_dict(
        cls: type[RecordT], obj: Mapping[str, Any], *, line: int | None = None
    ) -> RecordT:
        """Validate a parsed JSON object strictly.

        Args:
            obj: The object, as ``json.loads`` returns it.
            line: The 1-based line it came from, to name in errors.

        Raises:
            ExampleValidationError: The object does not match; the error names the line, the
                field path (``messages[2].weight``) and how to fix it.
        """
        return validate_record(cls, obj, line=line)


# Union branches are tagged "family:value"; the colon lets error paths skip the tag.
# These run once per message or part: plain dicts take the fast path (no ABC isinstance).
_ROLE_TAGS = {role: f"role:{role}" for role in ("system", "developer", "user", "assistant", "tool")}


def _role_tag(value: Any) -> str | None:
    if type(value) is dict:
        role = value.get("role")
    else:
        role = getattr(value, "role", None)
        if role is None and isinstance(value, Mapping):
            role = value.get("role")
    if type(role) is not str:
        return None
    return _ROLE_TAGS.get(role) or f"role:{role}"


def _content_tag(value: Any) -> str | None:
    kind = type(value)
    if kind is str or (kind is not list and isinstance(value, str)):
        return "content:string"
    if kind is list or isinstance(value, list):
        return "content:parts"
    return None


def _part_tag(value: Any) -> str | None:
    if type(value) is dict:
        kind = value.get("type")
    else:
        kind = getattr(value, "type", None)
        if kind is None and isinstance(value, Mapping):
            kind = value.get("type")
    return f"part:{kind}" if isinstance(kind, str) else None


NonEmptyStr = Annotated[str, Field(min_length=1)]
"""Ids and function names: the API refuses empty ones."""


class ImageURL(Record):
    """Where an image is: an ``https://`` URL or a ``data:image/...;base64,`` URL.

    Examples:
        >>> ImageURL(url="https://example.com/cat.png", detail="low").to_dict()
        {'url': 'https://example.com/cat.png', 'detail': 'low'}
    """

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(Record):
    """A text content part.

    Examples:
        >>> TextPart(text="What is in this picture?").to_dict()
        {'type': 'text', 'text': 'What is in this picture?'}
    """

    type: Literal["text"] = "text"
    text: str


class ImagePart(Record):
    """An image content part (vision fine-tuning; user messages only).

    Examples:
        >>> ImagePart(image_url=ImageURL(url="https://example.com/cat.png")).to_dict()
        {'type': 'image_url', 'image_url': {'url': 'https://example.com/cat.png'}}
    """

    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


UserPart = Annotated[
    Annotated[TextPart, Tag("part:text")] | Annotated[ImagePart, Tag("part:image_url")],
    Discriminator(_part_tag),
]

TextContent = Annotated[
    Annotated[str, Tag("content:string")] | Annotated[list[TextPart], Tag("content:parts")],
    Discriminator(_content_tag),
]
"""Content as a string, or as text parts."""

UserContent = Annotated[
    Annotated[str, Tag("content:string")] | Annotated[list[UserPart], Tag("content:parts")],
    Discriminator(_content_tag),
]
"""Content as a string, or as text and image parts."""


class SystemMessage(Record):
    """A system message: instructions for the model.

    Examples:
        >>> SystemMessage(content="You answer in limericks.").to_dict()
        {'role': 'system', 'content': 'You answer in limericks.'}
    """

    role: Literal["system"] = "system"
    content: TextContent
    name: str | None = None


class DeveloperMessage(Record):
    """A developer message: the newer models' name for system instructions (and RFT's).

    Examples:
        >>> DeveloperMessage(content="Answer with a number.").to_dict()
        {'role': 'developer', 'content': 'Answer with a number.'}
    """

    role: Literal["developer"] = "developer"
    content: TextContent
    name: str | None = None


class UserMessage(Record):
    """A user message; its content may include images.

    Examples:
        >>> UserMessage(content="Tell me about Gallium", name="ada").to_dict()
        {'role': 'user', 'content': 'Tell me about Gallium', 'name': 'ada'}
    """

    role: Literal["user"] = "user"
    content: UserContent
    name: str | None = None


class FunctionCall(Record):
    """The function an assistant calls, with its arguments as a JSON string.

    Examples:
        >>> FunctionCall(name="get_weather", arguments='{"city":"Paris"}').arguments
        '{"city":"Paris"}'
    """

    name: NonEmptyStr
    arguments: str

    @field_validator("arguments")
    @classmethod
    def _arguments_are_a_json_object(cls, value: str) -> str:
        check_arguments_object(
            value,
            fix_json="serialise the arguments with json.dumps",
            fix_object='put the arguments in an object, such as {"city": "Paris"}',
        )
        return value


class ToolCall(Record):
    """One tool call made by the assistant.

    Examples:
        >>> call = ToolCall.for_function("call_1", "get_weather", {"city": "Paris"})
        >>> call.to_dict()
        {'id': 'call_1', 'type': 'function', 'function': {'name': 'get_weather', 'arguments': '{"city":"Paris"}'}}
    """  # noqa: E501 -- a doctest's expected output is one line

    id: NonEmptyStr
    type: Literal["function"] = "function"
    function: FunctionCall

    @classmethod
    def for_function(cls, id: str, name: str, arguments: Mapping[str, Any] | str) -> ToolCall:
        """Build a function call; arguments given as a mapping are serialised to JSON.

        Args:
            id: The call's id, which the tool message answering it repeats.
            name: The function's name.
            arguments: A JSON string, or a mapping serialised compactly with ``json.dumps``.
        """
        if not isinstance(arguments, str):
            arguments = json.dumps(dict(arguments), ensure_ascii=False, separators=(",", ":"))
        return cls(id=id, function=FunctionCall(name=name, arguments=arguments))


if TYPE_CHECKING:
    Weight = Literal[0, 1]
else:
    # Validated natively (strict int in [0, 1]): Literal[0, 1] would let True and 1.0 through,
    # and a Python validator would cost more than the rest of the message.
    Weight = Annotated[int, Field(ge=0, le=1)]


class AssistantMessage(Record):
    """An assistant message: the text to learn, tool calls, or both.

    ``weight`` 0 keeps a turn as context only; 1 (or no weight) trains on it. Content may be left
    out when the message carries tool calls.

    Examples:
        >>> AssistantMessage(content="A first draft", weight=0).to_dict()
        {'role': 'assistant', 'content': 'A first draft', 'weight': 0}
    """

    role: Literal["assistant"] = "assistant"
    content: TextContent | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    weight: Weight | None = None

    @model_validator(mode="after")
    def _has_something_to_say(self) -> AssistantMessage:
        if self.content is None and not self.tool_calls:
            raise rule_error(
                "an assistant message needs content or tool_calls",
                field="content",
                fix="add the assistant's answer as content",
            )
        return self


class ToolMessage(Record):
    """A tool's reply to one tool call, matched by ``tool_call_id``.

    Examples:
        >>> ToolMessage(tool_call_id="call_1", content='{"temp_c":21}').to_dict()
        {'role': 'tool', 'tool_call_id': 'call_1', 'content': '{"temp_c":21}'}
    """

    role: Literal["tool"] = "tool"
    tool_call_id: NonEmptyStr
    content: TextContent


class FunctionDefinition(Record):
    """A function the model may call; ``parameters`` is a JSON Schema object.

    Examples:
        >>> FunctionDefinition(name="get_weather", parameters={"type": "object"}).to_dict()
        {'name': 'get_weather', 'parameters': {'type': 'object'}}
    """

    name: NonEmptyStr
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Record):
    """A tool declared at the top level of an example.

    Examples:
        >>> Tool.for_function("get_weather", description="Weather in a city").to_dict()
        {'type': 'function', 'function': {'name': 'get_weather', 'description': 'Weather in a city'}}
    """  # noqa: E501 -- a doctest's expected output is one line

    type: Literal["function"] = "function"
    function: FunctionDefinition

    @classmethod
    def for_function(
        cls,
        name: str,
        *,
        description: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        strict: bool | None = None,
    ) -> Tool:
        """Declare a function tool.

        Args:
            name: The function's name.
            description: What it does, for the model.
            parameters: Its arguments as a JSON Schema object.
            strict: Whether calls must follow the schema exactly.
        """
        params = dict(parameters) if parameters is not None else None
        return cls(
            function=FunctionDefinition(
                name=name, description=description, parameters=params, strict=strict
            )
        )


ChatMessage = Annotated[
    Annotated[SystemMessage, Tag("role:system")]
    | Annotated[DeveloperMessage, Tag("role:developer")]
    | Annotated[UserMessage, Tag("role:user")]
    | Annotated[AssistantMessage, Tag("role:assistant")]
    | Annotated[ToolMessage, Tag("role:tool")],
    Discriminator(_role_tag),
]
"""Any message of a chat or preference example, chosen by its ``role``."""

ReinforcementMessage = Annotated[
    Annotated[DeveloperMessage, Tag("role:developer")]
    | Annotated[UserMessage, Tag("role:user")]
    | Annotated[AssistantMessage, Tag("role:assistant")]
    | Annotated[ToolMessage, Tag("role:tool")],
    Discriminator(_role_tag),
]
"""A message of a reinforcement example: no system role (use developer)."""

_TAGS: dict[str, type[BaseModel] | None] = {
    "role:system": SystemMessage,
    "role:developer": DeveloperMessage,
    "role:user": UserMessage,
    "role:assistant": AssistantMessage,
    "role:tool": ToolMessage,
    "content:string": None,
    "content:parts": None,
    "part:text": TextPart,
    "part:image_url": ImagePart,
}


class ChatExample(Record):
    """A supervised fine-tuning example: a conversation, optionally with tools.

    Examples:
        >>> ex = ChatExample.single_turn("Tell me about Neon", "Neon glows red...", system="Elle")
        >>> [m.role for m in ex.messages]
        ['system', 'user', 'assistant']
        >>> ex.method
        'supervised'
    """

    kind: ClassVar[ExampleKind] = "chat"
    method: ClassVar[MethodName] = "supervised"

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    tools: list[Tool] | None = None
    parallel_tool_calls: bool | None = None

    @classmethod
    def single_turn(cls, user: str, assistant: str, *, system: str | None = None) -> ChatExample:
        """Build a one-question, one-answer example.

        Args:
            user: The user's message.
            assistant: The answer to learn.
            system: A system prompt to put first.
        """
        messages: list[SystemMessage | UserMessage | AssistantMessage] = []
        if system is not None:
            messages.append(SystemMessage(content=system))
        messages.append(UserMessage(content=user))
        messages.append(AssistantMessage(content=assistant))
        return cls(messages=list(messages))


class PreferenceInput(Record):
    """The prompt side of a preference example: the conversation so far, and its tools.

    Examples:
        >>> PreferenceInput(messages=[UserMessage(content="Hi")]).to_dict()
        {'messages': [{'role': 'user', 'content': 'Hi'}]}
    """

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    tools: list[Tool] | None = None
    parallel_tool_calls: bool | None = None


OneAssistantMessage = Annotated[list[AssistantMessage], Field(min_length=1, max_length=1)]


class PreferenceExample(Record):
    """A DPO example: a prompt, the answer to prefer, and the answer to avoid.

    Examples:
        >>> ex = PreferenceExample.single_turn("2+2?", "4", "22")
        >>> ex.preferred_output[0].content, ex.method
        ('4', 'dpo')
    """

    kind: ClassVar[ExampleKind] = "preference"
    method: ClassVar[MethodName] = "dpo"

    input: PreferenceInput
    preferred_output: OneAssistantMessage
    non_preferred_output: OneAssistantMessage

    @classmethod
    def single_turn(
        cls, user: str, preferred: str, non_preferred: str, *, system: str | None = None
    ) -> PreferenceExample:
        """Build a preference pair for one user message.

        Args:
            user: The prompt.
            preferred: The answer to prefer.
            non_preferred: The answer to avoid.
            system: A system prompt to put first.
        """
        messages: list[SystemMessage | UserMessage] = []
        if system is not None:
            messages.append(SystemMessage(content=system))
        messages.append(UserMessage(content=user))
        return cls(
            input=PreferenceInput(messages=list(messages)),
            preferred_output=[AssistantMessage(content=preferred)],
            non_preferred_output=[AssistantMessage(content=non_preferred)],
        )


class ReinforcementExample(Record):
    """An RFT example: messages ending with the user's turn, plus keys the grader reads.

    Keys other than ``messages`` and ``tools`` are kept as they are and exposed to the grader as
    ``{{ item.<key> }}``.

    Examples:
        >>> ex = ReinforcementExample.single_turn("Count the H-bond donors", reference_answer=5)
        >>> ex.extra, ex.to_json_line()
        ({'reference_answer': 5}, '{"messages":[{"role":"user","content":"Count the H-bond donors"}],"reference_answer":5}')
    """  # noqa: E501 -- a doctest's expected output is one line

    model_config = ConfigDict(extra="allow")

    kind: ClassVar[ExampleKind] = "reinforcement"
    method: ClassVar[MethodName] = "reinforcement"

    messages: Annotated[list[ReinforcementMessage], Field(min_length=1)]
    tools: list[Tool] | None = None

    @model_validator(mode="after")
    def _ends_with_the_user(self) -> ReinforcementExample:
        last = len(self.messages) - 1
        if self.messages[last].role != "user":
            raise rule_error(
                f"the last message must be from the user, got '{self.messages[last].role}'",
                field=f"messages[{last}].role",
                fix="end a reinforcement example with the user's turn; the model writes the answer",
            )
        return self

    @property
    def extra(self) -> dict[str, Any]:
        """The keys beyond ``messages`` and ``tools``, for the grader."""
        return dict(self.model_extra or {})

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object the API reads; extra keys are kept even when null."""
        extra = self.model_extra or {}
        out = self.model_dump(exclude_none=True, exclude=set(extra))
        out.update(extra)
        return out

    @classmethod
    def single_turn(
        cls, user: str, *, developer: str | None = None, **extra: Any
    ) -> ReinforcementExample:
        """Build an example with one user message and the grader's keys.

        Args:
            user: The prompt.
            developer: Instructions to put first.
            **extra: Keys for the grader, such as ``reference_answer``.
        """
        messages: list[DeveloperMessage | UserMessage] = []
        if developer is not None:
            messages.append(DeveloperMessage(content=developer))
        messages.append(UserMessage(content=user))
        return cls(messages=list(messages), **extra)


TrainingExample = ChatExample | PreferenceExample | ReinforcementExample
"""Any training record."""

_KINDS: dict[ExampleKind, type[ChatExample] | type[PreferenceExample] | type[ReinforcementExample]]
_KINDS = {
    "chat": ChatExample,
    "preference": PreferenceExample,
    "reinforcement": ReinforcementExample,
}


def detect_kind(obj: Mapping[str, Any]) -> ExampleKind:
    """Tell which kind of example a parsed JSON object is meant to be.

    A preference example has ``input`` / ``preferred_output`` / ``non_preferred_output``; a
    reinforcement example's messages end with the user's turn (the model writes the answer);
    anything else is read as a chat example.

    Examples:
        >>> detect_kind({"messages": [{"role": "user", "content": "2+2?"}], "answer": 4})
        'reinforcement'
    """
    if "input" in obj or "preferred_output" in obj or "non_preferred_output" in obj:
        return "preference"
    messages = obj.get("messages")
    is_list = type(messages) is list or (
        isinstance(messages, Sequence) and not isinstance(messages, str)
    )
    if not is_list or not messages:
        return "chat"
    last = messages[-1]
    if (type(last) is dict or isinstance(last, Mapping)) and last.get("role") == "user":
        return "reinforcement"
    return "chat"


def validate_record(
    cls: type[RecordT],
    obj: Any,
    *,
    line: int | None = None,
    where: str | None = None,
    prefix: str = "",
) -> RecordT:
    """Validate ``obj`` as ``cls``, raising an ``ExampleValidationError`` a person can act on.

    Args:
        cls: The record class.
        obj: A parsed JSON object (or a record of that class).
        line: The 1-based line it came from.
        where: How to name its place in errors (``"conversation 3"``); defaults to the line.
        prefix: A field path to put before the paths in errors.
    """
    if isinstance(obj, cls):
        return obj
    if not isinstance(obj, Mapping):
        place = where or (f"line {line}" if line is not None else None)
        head = f"{place}: {prefix}" if place and prefix else (place or prefix)
        raise ExampleValidationError(
            f"{head + ': ' if head else ''}expected a JSON object, got {json_type_name(obj)}; "
            f"write each record as one JSON object",
            line=line,
            field=prefix or None,
        )
    try:
        return cls.model_validate(obj)
    except ValidationError as exc:
        raise to_example_error(
            exc, cls, tags=_TAGS, line=line, where=where, prefix=prefix
        ) from None


def parse_example(
    obj: Any,
    *,
    line: int | None = None,
    kind: ExampleKind | None = None,
    where: str | None = None,
) -> TrainingExample:
    """Parse one training line's JSON object into the record of its kind.

    Args:
        obj: The parsed JSON object.
        line: The 1-based line it came from, to name in errors.
        kind: Force a kind instead of detecting it (see ``detect_kind``).
        where: How to name the object's place in errors (``"row 3"``); defaults to the line.

    Returns:
        A ``ChatExample``, ``PreferenceExample`` or ``ReinforcementExample``.

    Raises:
        ExampleValidationError: The object does not match its kind; the message names the line,
            the field path (such as ``messages[2].weight``) and how to fix it.

    Examples:
        >>> from finetune_kit.errors import ExampleValidationError
        >>> bad = {"messages": [{"role": "assistant", "content": "x", "weight": 2}]}
        >>> try:
        ...     parse_example(bad, line=3)
        ... except ExampleValidationError as exc:
        ...     print(exc.line, exc.field)
        ...     print(exc)
        3 messages[0].weight
        line 3: messages[0].weight: weight must be 0 or 1, got 2; use 1 to train on this assistant turn or 0 to keep it as context only
    """  # noqa: E501 -- a doctest's expected output is one line
    if isinstance(obj, (ChatExample, PreferenceExample, ReinforcementExample)) and (
        kind is None or obj.kind == kind
    ):
        return obj
    if not isinstance(obj, Mapping):
        return validate_record(ChatExample, obj, line=line, where=where)
    chosen = kind if kind is not None else detect_kind(obj)
    return validate_record(_KINDS[chosen], obj, line=line, where=where)


_CHAT_MESSAGE: TypeAdapter[ChatMessage] = TypeAdapter(ChatMessage)


def parse_message(
    obj: Any, *, line: int | None = None, where: str | None = None, prefix: str = ""
) -> SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage:
    """Parse one message object into the message class of its role.

    Args:
        obj: The parsed JSON object, such as ``{"role": "user", "content": "Hi"}``.
        line: The 1-based line it came from.
        where: How to name its place in errors; defaults to the line.
        prefix: A field path to put before the paths in errors (``messages[2]``).

    Raises:
        ExampleValidationError: The message does not match its role's schema.

    Examples:
        >>> parse_message({"role": "tool", "tool_call_id": "call_1", "content": "21"})
        ToolMessage(role='tool', tool_call_id='call_1', content='21')
    """
    try:
        return _CHAT_MESSAGE.validate_python(obj)
    except ValidationError as exc:
        raise to_example_error(
            exc, None, tags=_TAGS, line=line, where=where, prefix=prefix
        ) from None
