"""Records: strict parsing, exact round-trips to the API lines, errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from pydantic import ValidationError

from finetune_kit.data.records import (
    AssistantMessage,
    ChatExample,
    ImagePart,
    ImageURL,
    PreferenceExample,
    ReinforcementExample,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolMessage,
    UserMessage,
    detect_kind,
    parse_example,
    parse_message,
)
from finetune_kit.errors import ExampleValidationError
from tests.data.records_strategies import chat_dicts, preference_dicts, reinforcement_dicts

SEED_FILE = Path(__file__).resolve().parents[3] / "shared" / "data" / "seed-training-data.jsonl"


def compact(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def seed_lines() -> list[str]:
    if not SEED_FILE.exists():
        return []
    return SEED_FILE.read_text(encoding="utf-8").splitlines()


@pytest.mark.skipif(not SEED_FILE.exists(), reason=f"{SEED_FILE} is not on this machine")
@pytest.mark.parametrize("number", range(1, 11))
def test_seed_lines_round_trip_to_the_same_compact_json(number: int) -> None:
    text = seed_lines()[number - 1]
    example = parse_example(json.loads(text), line=number)
    assert isinstance(example, ChatExample)
    assert example.to_json_line() == compact(json.loads(text))
    assert [m.role for m in example.messages] == ["system", "user", "assistant"]


@settings(max_examples=150, deadline=None)
@given(chat_dicts())
def test_chat_examples_round_trip_exactly(obj: dict[str, Any]) -> None:
    example = parse_example(obj, kind="chat")
    assert isinstance(example, ChatExample)
    # String comparison: key order matters to a line-for-line round trip, not just equality.
    assert example.to_json_line() == compact(obj)
    assert ChatExample.from_dict(example.to_dict()) == example


@settings(max_examples=100, deadline=None)
@given(preference_dicts())
def test_preference_examples_round_trip_exactly(obj: dict[str, Any]) -> None:
    example = parse_example(obj)
    assert isinstance(example, PreferenceExample)
    assert example.to_json_line() == compact(obj)


@settings(max_examples=100, deadline=None)
@given(reinforcement_dicts())
def test_reinforcement_examples_round_trip_with_their_extra_keys(obj: dict[str, Any]) -> None:
    example = parse_example(obj)
    assert isinstance(example, ReinforcementExample)
    assert example.to_json_line() == compact(obj)
    assert example.extra == {k: v for k, v in obj.items() if k not in ("messages", "tools")}


def test_null_fields_are_never_added() -> None:
    message = AssistantMessage(tool_calls=[ToolCall.for_function("call_1", "f", {"x": 1})])
    assert message.to_dict() == {
        "role": "assistant",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}
        ],
    }
    assert "null" not in ChatExample.single_turn("q", "a").to_json_line()


def test_an_explicit_null_content_next_to_tool_calls_is_dropped_not_kept() -> None:
    # The API reads an absent content and a null one alike; records never write nulls.
    obj = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert "content" not in parse_message(obj).to_dict()


def test_nulls_inside_free_form_json_are_kept() -> None:
    schema = {"type": "object", "properties": {"unit": {"default": None}}}
    tool = Tool.for_function("f", parameters=schema)
    assert tool.to_dict()["function"]["parameters"] == schema
    example = ReinforcementExample.single_turn("q", reference=None, meta={"a": None})
    assert example.to_json_line().endswith('"reference":null,"meta":{"a":null}}')


def test_key_order_follows_the_api_docs_whatever_order_the_input_used() -> None:
    obj = {
        "parallel_tool_calls": False,
        "messages": [
            {"content": "q", "role": "user"},
            {"weight": 0, "content": "a", "role": "assistant"},
            {"content": "21", "tool_call_id": "c", "role": "tool"},
        ],
    }
    line = ChatExample.from_dict(obj).to_json_line()
    assert line == (
        '{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a","weight":0},'
        '{"role":"tool","tool_call_id":"c","content":"21"}],"parallel_tool_calls":false}'
    )


def test_records_keep_unicode_as_utf8_in_their_lines() -> None:
    example = ChatExample.single_turn("Ça va ? 🙂", "Très bien, 谢谢")
    assert "Ça va ? 🙂" in example.to_json_line()
    assert "\\u" not in example.to_json_line()


def test_content_parts_with_images_are_typed() -> None:
    message = UserMessage(
        content=[
            TextPart(text="What is this?"),
            ImagePart(image_url=ImageURL(url="data:image/png;base64,AAAA", detail="low")),
        ]
    )
    parsed = parse_message(message.to_dict())
    assert isinstance(parsed, UserMessage)
    assert isinstance(parsed.content, list)
    assert isinstance(parsed.content[1], ImagePart)
    assert parsed.content[1].image_url.detail == "low"


def test_name_is_kept_on_messages() -> None:
    message = parse_message({"role": "system", "content": "s", "name": "example_user"})
    assert isinstance(message, SystemMessage)
    assert message.name == "example_user"


def test_tool_calls_serialise_dict_arguments_to_a_json_string() -> None:
    call = ToolCall.for_function("call_9", "lookup", {"element": "Gallium", "n": 31})
    assert call.function.arguments == '{"element":"Gallium","n":31}'
    assert json.loads(call.function.arguments) == {"element": "Gallium", "n": 31}


def test_records_are_immutable() -> None:
    message = UserMessage(content="hi")
    with pytest.raises(ValidationError):
        message.content = "bye"  # type: ignore[misc]


def test_records_compare_by_value() -> None:
    assert ChatExample.single_turn("q", "a", system="s") == ChatExample.from_dict(
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
            ]
        }
    )


@pytest.mark.parametrize(
    ("obj", "kind"),
    [
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
            "chat",
        ),
        ({"messages": [{"role": "user", "content": "q"}], "answer": 4}, "reinforcement"),
        ({"input": {"messages": []}}, "preference"),
        ({"preferred_output": []}, "preference"),
        ({"messages": "not a list"}, "chat"),
        ({}, "chat"),
    ],
)
def test_detect_kind(obj: dict[str, Any], kind: str) -> None:
    assert detect_kind(obj) == kind


def _assistant_call(arguments: Any) -> dict[str, Any]:
    function = {"name": "f", "arguments": arguments}
    return {
        "role": "assistant",
        "tool_calls": [{"id": "c", "type": "function", "function": function}],
    }


Q = {"role": "user", "content": "q"}
A = {"role": "assistant", "content": "a"}


@pytest.mark.parametrize(
    ("obj", "field", "words"),
    [
        ({"messages": [Q, {**A, "weight": 2}]}, "messages[1].weight", "must be 0 or 1"),
        ({"messages": [Q, {**A, "weight": True}]}, "messages[1].weight", "got boolean true"),
        ({"messages": [Q, {**A, "weight": 1.0}]}, "messages[1].weight", "got number 1.0"),
        ({"messages": [{**Q, "weight": 1}, A]}, "messages[0].weight", "only allowed on assistant"),
        ({"messages": [Q, {**A, "wieght": 1}]}, "messages[1].wieght", "did you mean 'weight'?"),
        (
            {"messages": [{"role": "bot", "content": "x"}, A]},
            "messages[0].role",
            "unknown role 'bot'",
        ),
        ({"messages": [{"content": "x"}, A]}, "messages[0].role", "has no 'role'"),
        ({"messages": ["hi", A]}, "messages[0]", "must be an object"),
        ({"messages": [{"role": "user", "content": 7}, A]}, "messages[0].content", "got number"),
        ({"messages": [Q, {"role": "assistant"}]}, "messages[1].content", "content or tool_calls"),
        (
            {"messages": [Q, _assistant_call({"a": 1})]},
            "messages[1].tool_calls[0].function.arguments",
            "json.dumps",
        ),
        (
            {"messages": [Q, _assistant_call("[1, 2]")]},
            "messages[1].tool_calls[0].function.arguments",
            "holds a JSON array; it must hold an object",
        ),
        (
            {"messages": [{"role": "tool", "tool_call_id": "", "content": "x"}, A]},
            "messages[0].tool_call_id",
            "must not be empty",
        ),
        (
            {"messages": [Q, _assistant_call("{oops")]},
            "messages[1].tool_calls[0].function.arguments",
            "not valid JSON",
        ),
        (
            {"messages": [{"role": "tool", "content": "x"}, A]},
            "messages[0].tool_call_id",
            "'tool_call_id' is missing",
        ),
        ({"messages": [Q, A], "tols": []}, "tols", "did you mean 'tools'?"),
        ({"messages": [Q, A], "functions": []}, "functions", "legacy function calling"),
        ({"messages": []}, "messages", "empty"),
        ({"prompt": "p", "completion": "c"}, "prompt", "legacy completions format"),
        ({"messages": [Q, A], "parallel_tool_calls": "no"}, "parallel_tool_calls", "true or false"),
        (
            {"messages": [{"role": "user", "content": [{"type": "txt", "text": "a"}]}, A]},
            "messages[0].content[0].type",
            "unknown content part type 'txt'",
        ),
        (
            {
                "messages": [
                    Q,
                    {
                        "role": "assistant",
                        "content": [{"type": "image_url", "image_url": {"url": "u"}}],
                    },
                ]
            },
            "messages[1].content[0].type",
            "images go in user messages only",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"uri": "u"}}]},
                    A,
                ]
            },
            "messages[0].content[0].image_url.uri",
            "did you mean 'url'?",
        ),
        (
            {"messages": [{"role": "system", "content": "s"}, Q], "answer": 1},
            "messages[0].role",
            "use a developer message",
        ),
        (
            {"input": {"messages": [Q]}, "preferred_output": [A, A], "non_preferred_output": [A]},
            "preferred_output",
            "exactly one assistant message",
        ),
        (
            {"input": {"messages": [Q]}, "preferred_output": [Q], "non_preferred_output": [A]},
            "preferred_output[0].role",
            "assistant",
        ),
        (
            {"input": {"messages": [Q]}, "preferred_completion": [A], "non_preferred_output": [A]},
            "preferred_completion",
            "'preferred_output'",
        ),
    ],
)
def test_errors_name_the_line_the_field_and_a_fix(obj: Any, field: str, words: str) -> None:
    with pytest.raises(ExampleValidationError) as info:
        parse_example(obj, line=42)
    assert info.value.line == 42
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(f"line 42: {field}: ")
    assert words in message
    assert ";" in message  # the how-to-fix part follows the problem


def test_a_reinforcement_example_must_end_with_the_user() -> None:
    with pytest.raises(ExampleValidationError) as info:
        ReinforcementExample.from_dict({"messages": [Q, A]})
    assert info.value.field == "messages[1].role"
    assert "last message must be from the user" in str(info.value)


def test_a_line_that_is_not_an_object_is_named() -> None:
    with pytest.raises(ExampleValidationError, match=r"^line 5: expected a JSON object, got array"):
        parse_example([1, 2], line=5)


def test_errors_without_a_line_start_with_the_field() -> None:
    with pytest.raises(ExampleValidationError, match=r"^messages\[0\]\.role: unknown role"):
        parse_example({"messages": [{"role": "robot", "content": "x"}]})


def test_forcing_a_kind_overrides_detection() -> None:
    obj = {"messages": [{"role": "system", "content": "s"}, Q]}
    with pytest.raises(ExampleValidationError):
        parse_example(obj)  # detected as reinforcement, which has no system role
    assert isinstance(parse_example(obj, kind="chat"), ChatExample)


def test_single_turn_builders_write_what_the_api_documents() -> None:
    assert PreferenceExample.single_turn("q", "good", "bad").to_json_line() == (
        '{"input":{"messages":[{"role":"user","content":"q"}]},'
        '"preferred_output":[{"role":"assistant","content":"good"}],'
        '"non_preferred_output":[{"role":"assistant","content":"bad"}]}'
    )
    assert ToolMessage(tool_call_id="c", content="x").to_dict() == {
        "role": "tool",
        "tool_call_id": "c",
        "content": "x",
    }


def test_parse_example_passes_records_through() -> None:
    example = PreferenceExample.single_turn("q", "good", "bad")
    assert parse_example(example) is example
    assert parse_example(example, kind="preference") is example
    with pytest.raises(ExampleValidationError, match="expected a JSON object"):
        parse_example(example, kind="chat")
