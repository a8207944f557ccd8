"""Chat rendering, the loss mask, and training-file errors (tiny byte-level tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finetune_kit.errors import TrainingDataError
from finetune_kit.local.engine.chat_format import (
    ChatRenderer,
    MessageFormatError,
    normalize_messages,
)
from finetune_kit.local.engine.tiny_model import build_tiny_tokenizer
from finetune_kit.local.engine.training_data import load_preference, load_supervised

from .engine_helpers import chat_rows, preference_rows, write_jsonl


@pytest.fixture(scope="module")
def renderer() -> ChatRenderer:
    return ChatRenderer(build_tiny_tokenizer())


def trained_text(renderer: ChatRenderer, ids: list[int], flags: list[bool]) -> str:
    return renderer.decode([t for t, keep in zip(ids, flags, strict=True) if keep])


def test_template_is_chatml_with_default_system_prompt(renderer: ChatRenderer) -> None:
    text = renderer.render_text([{"role": "user", "content": "Hi"}], generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_multi_turn_mask_trains_only_weighted_assistant_turns(renderer: ChatRenderer) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "draft answer"},
        {"role": "user", "content": "better?"},
        {"role": "assistant", "content": "final answer"},
    ]
    normalized = normalize_messages(messages)
    example = renderer.render_training(normalized, [False, True])
    assert trained_text(renderer, example.input_ids, example.trained) == "final answer<|im_end|>"
    both = renderer.render_training(normalized, [True, True])
    assert (
        trained_text(renderer, both.input_ids, both.trained)
        == "draft answer<|im_end|>final answer<|im_end|>"
    )
    # The mask covers contiguous spans exactly: nothing of the headers or user turns.
    full = renderer.decode(both.input_ids)
    assert full.count("<|im_start|>assistant\n") == 2
    assert renderer.decode(both.input_ids[: both.trained.index(True)]).endswith(
        "<|im_start|>assistant\n"
    )


def test_weights_from_a_file_line_and_targets_shift(renderer: ChatRenderer, tmp_path: Path) -> None:
    row = {
        "messages": [
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "no", "weight": 0},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "yes", "weight": 1},
        ]
    }
    [example] = load_supervised(write_jsonl(tmp_path / "t.jsonl", [row]), renderer)
    predicted = renderer.decode([example.input_ids[p + 1] for p in example.targets])
    assert predicted == "yes<|im_end|>"
    assert example.n_tokens == len(example.input_ids)


def test_tool_calls_are_rendered_into_the_assistant_text(renderer: ChatRenderer) -> None:
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."},
    ]
    normalized = normalize_messages(messages, tools)
    assert normalized[0]["role"] == "system"
    assert '"name": "weather"' in normalized[0]["content"]
    assert normalized[2]["content"] == (
        '<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    )
    assert normalized[3] == {"role": "tool", "content": "sunny"}
    example = renderer.render_training(normalized, [True, True])
    assert trained_text(renderer, example.input_ids, example.trained) == (
        normalized[2]["content"] + "<|im_end|>It is sunny.<|im_end|>"
    )


def test_content_parts_and_roles_are_normalized() -> None:
    messages: list[dict[str, Any]] = [
        {
            "role": "developer",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        {"role": "function", "name": "f", "content": "out"},
    ]
    assert normalize_messages(messages) == [
        {"role": "system", "content": "ab"},
        {"role": "tool", "content": "out"},
    ]
    with pytest.raises(MessageFormatError) as info:
        normalize_messages(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
        )
    assert info.value.field == "messages[0].content[0]"
    with pytest.raises(MessageFormatError, match="narrator"):
        normalize_messages([{"role": "narrator", "content": "x"}])


def test_legacy_prompt_completion_lines_are_read(renderer: ChatRenderer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "2+2=", "completion": "4"}])
    [example] = load_supervised(path, renderer)
    assert renderer.decode([example.input_ids[p + 1] for p in example.targets]) == "4<|im_end|>"


def test_long_examples_are_truncated_but_billed_in_full(
    renderer: ChatRenderer, tmp_path: Path
) -> None:
    row = {
        "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y" * 200}]
    }
    [example] = load_supervised(write_jsonl(tmp_path / "t.jsonl", [row]), renderer, max_len=100)
    assert len(example.input_ids) == 100
    assert example.n_tokens > 200
    assert max(example.targets) == 98


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b", "weight": 2},
                ]
            },
            "messages[1].weight",
            "use 0",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a", "weight": 1},
                    {"role": "assistant", "content": "b"},
                ]
            },
            "messages[0].weight",
            "assistant messages only",
        ),
        ({"messages": [{"role": "user", "content": "a"}]}, "messages", "no assistant message"),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b", "weight": 0},
                ]
            },
            "messages",
            "weight 0",
        ),
        (preference_rows(1)[0], "messages", "method dpo"),
        (
            {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "b"}]},
            "messages[0].content",
            "string",
        ),
        ([1, 2], None, "JSON object"),
    ],
)
def test_bad_lines_name_line_and_field(
    renderer: ChatRenderer, tmp_path: Path, line: object, field: str | None, words: str
) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [*chat_rows(2), line])
    with pytest.raises(TrainingDataError) as info:
        load_supervised(path, renderer, param="validation_file")
    error = info.value
    assert error.line == 3
    assert error.field == field
    assert error.param == "validation_file"
    assert str(error).startswith("validation_file line 3: ")
    assert words in str(error)


def test_undecodable_and_empty_files(renderer: ChatRenderer, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(chat_rows(1)[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match="line 2") as info:
        load_supervised(path, renderer)
    assert info.value.line == 2
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match="no examples"):
        load_supervised(path, renderer)


def test_preference_pairs(renderer: ChatRenderer, tmp_path: Path) -> None:
    pairs = load_preference(write_jsonl(tmp_path / "p.jsonl", preference_rows(2)), renderer)
    pair = pairs[0]
    chosen = renderer.decode([pair.chosen.input_ids[p + 1] for p in pair.chosen.targets])
    rejected = renderer.decode([pair.rejected.input_ids[p + 1] for p in pair.rejected.targets])
    assert (chosen, rejected) == ("Gallium melts in a hand<|im_end|>", "I do not know.<|im_end|>")
    assert pair.chosen.targets[0] == pair.rejected.targets[0]
    with pytest.raises(TrainingDataError, match="method supervised") as info:
        load_preference(write_jsonl(tmp_path / "c.jsonl", chat_rows(1)), renderer)
    assert info.value.line == 1
    bad = preference_rows(1)[0] | {"preferred_output": []}
    with pytest.raises(TrainingDataError, match="one assistant message"):
        load_preference(write_jsonl(tmp_path / "b.jsonl", [bad]), renderer)
