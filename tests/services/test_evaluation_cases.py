"""Held-out examples become cases: the last assistant turn is the reference, the rest the prompt."""

from __future__ import annotations

from typing import Any

import pytest

from finetune_kit.errors import ConfigurationError
from finetune_kit.inference.evaluation import EvalCase, to_eval_cases
from finetune_kit.inference.replies import ReplyToolCall

SYSTEM = "Elle answers with a limerick."


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": list(messages), **extra}


def test_chat_example_splits_at_the_last_assistant_turn() -> None:
    example = chat(
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Tell me about Neon"},
        {"role": "assistant", "content": "Neon glows red..."},
    )
    (case,) = to_eval_cases([example])
    assert [m["role"] for m in case.messages] == ["system", "user"]
    assert case.reference == "Neon glows red..."
    assert case.prompt_text == "Tell me about Neon"
    assert case.source is example


def test_multi_turn_prompt_keeps_earlier_turns_without_training_weights() -> None:
    example = chat(
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "draft", "weight": 0},
        {"role": "user", "content": "better?"},
        {"role": "assistant", "content": "final", "weight": 1},
    )
    (case,) = to_eval_cases([example])
    assert case.messages == (
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "draft"},
        {"role": "user", "content": "better?"},
    )
    assert case.reference == "final"


def test_tool_call_reference_and_tools_are_kept() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    example = chat(
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [call]},
        tools=tools,
        parallel_tool_calls=False,
    )
    (case,) = to_eval_cases([example])
    assert case.reference is None
    assert case.has_reference
    assert case.reference_tool_calls == (
        ReplyToolCall(name="get_weather", arguments='{"city": "Paris"}', id="call_1"),
    )
    assert case.tools == tuple(tools)
    assert case.parallel_tool_calls is False
    assert case.to_dict()["reference_tool_calls"][0]["function"]["name"] == "get_weather"


def test_example_ending_with_a_user_turn_has_no_reference_and_keeps_extra_keys() -> None:
    example = chat({"role": "user", "content": "Count donors"}, reference_answer={"donors": 5})
    (case,) = to_eval_cases([example])
    assert case.reference is None
    assert not case.has_reference
    assert case.extra == {"reference_answer": {"donors": 5}}


def test_preference_example_uses_the_preferred_output() -> None:
    example = {
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello!"}],
        "non_preferred_output": [{"role": "assistant", "content": "What."}],
    }
    (case,) = to_eval_cases([example])
    assert case.messages == ({"role": "user", "content": "Hi"},)
    assert case.reference == "Hello!"


def test_pairs_strings_cases_and_records_with_to_dict() -> None:
    class Record:
        def to_dict(self) -> dict[str, Any]:
            return chat({"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"})

    given = EvalCase(messages=({"role": "user", "content": "x"},), reference="y")
    cases = to_eval_cases(
        [
            ("Capital of France?", "Paris"),
            ([{"role": "user", "content": "Capital of Italy?"}], "Rome"),
            ("No reference", None),
            "Just a prompt",
            given,
            Record(),
        ]
    )
    assert [c.reference for c in cases] == ["Paris", "Rome", None, None, "y", "4"]
    assert cases[0].messages == ({"role": "user", "content": "Capital of France?"},)
    assert cases[4] is given


def test_system_is_added_only_where_there_is_none() -> None:
    cases = to_eval_cases(
        [
            ("Q", "A"),
            chat({"role": "developer", "content": "own"}, {"role": "user", "content": "Q"}),
        ],
        system=SYSTEM,
    )
    assert cases[0].messages[0] == {"role": "system", "content": SYSTEM}
    assert cases[1].messages[0] == {"role": "developer", "content": "own"}


def test_content_parts_give_their_text() -> None:
    example = chat(
        {"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "image_url"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat"}]},
    )
    (case,) = to_eval_cases([example])
    assert case.prompt_text == "Describe"
    assert case.reference == "A cat"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (("a", "b", "c"), r"examples\[1\] is a tuple of 3 items"),
        (("prompt", 42), r"examples\[1\]: the reference is a string or None"),
        ((7, "ref"), r"examples\[1\]: a prompt is a string"),
        (42, r"examples\[1\] is a int"),
        ({"prompt": "x"}, r"examples\[1\] has neither 'messages'"),
        ({"messages": []}, r"examples\[1\] has no 'messages' list"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, r"examples\[1\] has only an"),
        ({"messages": ["hello"]}, r"examples\[1\]\.messages\[0\] is not a message"),
        (
            {"messages": [{"role": "user"}, {"role": "assistant", "tool_calls": [{"id": "c"}]}]},
            r"examples\[1\]\.messages\[1\]\.tool_calls\[0\] has no function name",
        ),
    ],
)
def test_unusable_items_are_named_by_index(item: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        to_eval_cases([("fine", "ok"), item])
    assert info.value.param == "examples"


def test_typed_records_become_cases() -> None:
    from finetune_kit.data.records import parse_example

    chat_example = parse_example(
        chat(
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Tell me about Neon"},
            {"role": "assistant", "content": "Neon glows red...", "weight": 1},
        )
    )
    preference = parse_example(
        {
            "input": {"messages": [{"role": "user", "content": "Hi"}]},
            "preferred_output": [{"role": "assistant", "content": "Hello!"}],
            "non_preferred_output": [{"role": "assistant", "content": "What."}],
        }
    )
    reinforcement = parse_example(
        chat({"role": "user", "content": "Count donors"}, reference_answer={"donors": 5})
    )
    cases = to_eval_cases([chat_example, preference, reinforcement])
    assert cases[0].messages[-1] == {"role": "user", "content": "Tell me about Neon"}
    assert [c.reference for c in cases] == ["Neon glows red...", "Hello!", None]
    assert cases[2].extra == {"reference_answer": {"donors": 5}}
    assert cases[0].source is chat_example
