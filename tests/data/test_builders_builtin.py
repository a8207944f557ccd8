"""The built-in builders, driven by name through the registry as users drive them."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from finetune_kit.data.builders import build_dataset
from finetune_kit.data.builders.builtin import (
    ConversationBuilder,
    PreferenceBuilder,
    QABuilder,
    ToolCallBuilder,
)
from finetune_kit.data.builders.template import TemplateBuilder, template_columns
from finetune_kit.data.dataset import Dataset
from finetune_kit.data.records import (
    AssistantMessage,
    ChatExample,
    PreferenceExample,
    Tool,
    ToolMessage,
)
from finetune_kit.errors import ConfigurationError, ExampleValidationError

LIMERICKS = (
    Path(__file__).resolve().parents[2] / "finetune_kit" / "_quickstart" / "element_limericks.csv"
)


def texts(example: ChatExample) -> list[tuple[str, Any]]:
    return [(m.role, m.content) for m in example.messages]


# qa


def test_qa_pairs_with_a_system_prompt() -> None:
    dataset = QABuilder().build([("Tell me about Neon", "Neon glows red.")], system="Elle")
    assert dataset.to_jsonl_bytes() == (
        b'{"messages":[{"role":"system","content":"Elle"},'
        b'{"role":"user","content":"Tell me about Neon"},'
        b'{"role":"assistant","content":"Neon glows red."}]}\n'
    )


def test_qa_accepts_a_mapping_and_needs_no_system() -> None:
    dataset = build_dataset("qa", {"q1": "a1", "q2": "a2"})
    assert [ex.to_dict() for ex in dataset] == [
        ChatExample.single_turn(q, a).to_dict() for q, a in [("q1", "a1"), ("q2", "a2")]
    ]


@pytest.mark.parametrize("bad", [("only one",), ("q", 3), "qa", ("q", "a", "extra")])
def test_qa_names_the_bad_pair(bad: Any) -> None:
    with pytest.raises(
        ExampleValidationError, match=r"^pair 2: expected a \(question, answer\) pair"
    ) as info:
        QABuilder().build([("q", "a"), bad])
    assert info.value.line == 2


# template


def test_template_renders_the_project_csv_with_multiline_cells() -> None:
    with open(LIMERICKS, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    dataset = build_dataset(
        "template",
        LIMERICKS,
        system="You answer with a limerick.",
        user="Tell me about {element}",
        assistant="{limerick}",
    )
    assert len(dataset) == len(rows) > 10
    for example, row in zip(dataset, rows, strict=True):
        assert isinstance(example, ChatExample)
        assert texts(example) == [
            ("system", "You answer with a limerick."),
            ("user", f"Tell me about {row['element']}"),
            ("assistant", row["limerick"]),
        ]
    assert "\n" in rows[0]["limerick"]  # the cells really span lines


def test_a_missing_column_names_the_row_its_line_and_the_column(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text('question,answer\nq1,"two\nlines"\nq2,a2\n', encoding="utf-8")
    with pytest.raises(ExampleValidationError) as info:
        TemplateBuilder().build(path, user="{question}", assistant="{answr}")
    assert info.value.field == "answr"
    assert info.value.line == 2
    assert str(info.value).startswith(
        "row 1 (line 2 of faq.csv): the assistant template needs the column 'answr', which this "
        "row does not have (its columns: question, answer)"
    )


def test_a_misspelt_placeholder_gets_a_did_you_mean() -> None:
    rows = [{"country": "France", "capital": "Paris"}]
    with pytest.raises(ExampleValidationError) as info:
        TemplateBuilder().build(rows, user="Capital of {contry}?", assistant="{capital}")
    assert info.value.field == "contry"
    assert "did you mean {country}?" in str(info.value)
    with pytest.raises(ExampleValidationError) as info:
        TemplateBuilder().build(rows, user="{country}", assistant="{population}")
    assert "did you mean" not in str(info.value)


def test_an_empty_cell_after_a_multiline_one_is_found_on_its_line(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text('question,answer\nq1,"two\nlines"\nq2\n', encoding="utf-8")
    with pytest.raises(
        ExampleValidationError, match=r"^row 2 \(line 4 of faq.csv\): the column 'answer' is empty"
    ) as info:
        TemplateBuilder().build(path, user="{question}", assistant="{answer}")
    assert info.value.line == 4


def test_template_reads_jsonl_tsv_and_a_forced_format(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text(
        '{"q": "a?", "n": 1}\n\n{"q": "b?", "n": 2}\n', encoding="utf-8"
    )
    (tmp_path / "rows.tsv").write_text("q\tn\na?\t1\nb?\t2\n", encoding="utf-8")
    (tmp_path / "rows.txt").write_text("q;n\na?;1\nb?;2\n", encoding="utf-8")
    options = {"user": "{q}", "assistant": "Answer {n}"}
    expected = [
        [("user", "a?"), ("assistant", "Answer 1")],
        [("user", "b?"), ("assistant", "Answer 2")],
    ]
    for dataset in (
        build_dataset("template", tmp_path / "rows.jsonl", **options),
        build_dataset("template", str(tmp_path / "rows.tsv"), **options),
        build_dataset("template", tmp_path / "rows.txt", format="csv", delimiter=";", **options),
    ):
        assert [texts(ex) for ex in dataset if isinstance(ex, ChatExample)] == expected


def test_template_names_the_jsonl_line(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"q": "a?"}\n\n{"x": "b?"}\n', encoding="utf-8")
    with pytest.raises(
        ExampleValidationError,
        match=r"^line 3 of rows.jsonl: the user template needs the column 'q'",
    ):
        TemplateBuilder().build(tmp_path / "rows.jsonl", user="{q}", assistant="a")


def test_template_reads_a_dataframe_and_names_rows_by_index() -> None:
    frame = pd.DataFrame(
        {"element": ["Neon", "Argon", "Xenon"], "poem": ["glows", None, "shines"]},
        index=["ne", "ar", "xe"],
    )
    with pytest.raises(
        ExampleValidationError, match=r"^row 2 \(index 'ar'\): the column 'poem' is empty"
    ):
        TemplateBuilder().build(frame, user="{element}", assistant="{poem}")
    dataset = TemplateBuilder().build(frame.dropna(), user="About {element}", assistant="{poem}!")
    assert [texts(ex) for ex in dataset] == [
        [("user", "About Neon"), ("assistant", "glows!")],
        [("user", "About Xenon"), ("assistant", "shines!")],
    ]


def test_template_reads_numbers_and_literal_braces_from_a_plain_iterable() -> None:
    rows = iter([{"name": "pi", "value": 3.14159}])
    dataset = TemplateBuilder().build(rows, user="{{{name}}}?", assistant="{value:.2f}")
    assert texts(dataset[0]) == [("user", "{pi}?"), ("assistant", "3.14")]


def test_template_reads_a_hugging_face_dataset() -> None:
    datasets = pytest.importorskip("datasets")
    hf = datasets.Dataset.from_dict({"q": ["a?", "b?"], "a": ["A", "B"]})
    dataset = build_dataset("template", hf, user="{q}", assistant="{a}")
    assert [texts(ex)[1][1] for ex in dataset if isinstance(ex, ChatExample)] == ["A", "B"]
    with pytest.raises(ConfigurationError, match=r"pass one split, such as ds\['train'\]"):
        build_dataset("template", datasets.DatasetDict({"train": hf}), user="{q}", assistant="{a}")


@pytest.mark.parametrize(
    ("options", "param", "words"),
    [
        ({"user": "{question", "assistant": "a"}, "user", "expected '}'"),
        ({"user": "{}", "assistant": "a"}, "user", "positional field"),
        ({"user": "q", "assistant": "{0}"}, "assistant", "positional field"),
        ({"user": "q", "assistant": "a", "format": "xml"}, "format", "format"),
        ({"user": "q", "assistant": "a", "usr": "x"}, "usr", "did you mean 'user'?"),
    ],
)
def test_template_options_are_checked_before_reading(
    options: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        build_dataset("template", [{"q": 1}], **options)
    assert info.value.param == param
    assert words in str(info.value)


def test_template_columns() -> None:
    assert template_columns("{a} {b.real} {c[0]} {a}") == ("a", "b", "c")


@pytest.mark.parametrize(
    ("source", "param", "words"),
    [
        ("data.xlsx", "format", "cannot tell the format"),
        (b"q,a\n", "source", "path"),
        ({"q": "a"}, "source", "single mapping"),
        (42, "source", "cannot read rows from a int"),
    ],
)
def test_sources_no_builder_can_read(source: Any, param: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        TemplateBuilder().build(source, user="{q}", assistant="{a}")
    assert info.value.param == param
    assert words in str(info.value)


def test_rows_that_are_not_mappings_are_named() -> None:
    with pytest.raises(ExampleValidationError, match=r"^row 2: expected a row of named columns"):
        TemplateBuilder().build([{"q": "x"}, ["x"]], user="{q}", assistant="a")


# conversations


def test_conversations_alternate_strings_and_keep_weights() -> None:
    talk = [
        "Hi",
        "Hello!",
        {"role": "user", "content": "Tell me about Neon", "name": "ada"},
        ("assistant", "A draft", 0),
        ("user", "Better?"),
        {"role": "assistant", "content": "Neon glows red.", "weight": 1},
    ]
    example = ConversationBuilder().build([talk], system="Elle")[0]
    assert example.to_dict() == {
        "messages": [
            {"role": "system", "content": "Elle"},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Tell me about Neon", "name": "ada"},
            {"role": "assistant", "content": "A draft", "weight": 0},
            {"role": "user", "content": "Better?"},
            {"role": "assistant", "content": "Neon glows red.", "weight": 1},
        ]
    }


def test_conversations_can_train_on_the_last_answer_only() -> None:
    talk = ["q1", "a1", "q2", ("assistant", "a2", 1), "q3", "a3"]
    example = ConversationBuilder().build([talk], train_on="last")[0]
    weights = [m.weight for m in example.messages if isinstance(m, AssistantMessage)]
    # An explicit weight is kept; the others but the last become context.
    assert weights == [0, 1, None]


def test_a_conversation_with_its_own_system_message_keeps_it() -> None:
    talk = [("system", "Mine"), "q", "a"]
    example = ConversationBuilder().build([talk], system="Default")[0]
    assert [m.content for m in example.messages] == ["Mine", "q", "a"]


@pytest.mark.parametrize(
    ("turn", "field", "words"),
    [
        (
            {"role": "user", "content": "q", "weight": 0},
            "turns[1].weight",
            "only allowed on assistant",
        ),
        (("assistant", "a", 2), "turns[1].weight", "must be 0 or 1"),
        (("robot", "a"), "turns[1].role", "unknown role 'robot'"),
        (42, "turns[1]", "expected a message object"),
    ],
)
def test_a_bad_turn_names_the_conversation_and_the_turn(turn: Any, field: str, words: str) -> None:
    with pytest.raises(ExampleValidationError) as info:
        ConversationBuilder().build([["q", "a"], ["q", turn]])
    assert info.value.line == 2
    assert info.value.field == field
    assert str(info.value).startswith(f"conversation 2: {field}: ")
    assert words in str(info.value)


def test_an_empty_conversation_is_an_error() -> None:
    with pytest.raises(
        ExampleValidationError, match=r"^conversation 1: messages: the messages list is empty"
    ):
        build_dataset("conversations", [[]])


# tool calls

WEATHER = Tool.for_function(
    "get_weather",
    description="Current weather in a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def weather_item(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "user": "Weather in Paris and Nice?",
        "calls": [
            {"name": "get_weather", "arguments": {"city": "Paris"}, "result": {"temp_c": 21}},
            {
                "name": "get_weather",
                "arguments": '{"city": "Nice"}',
                "result": "24 °C",
                "id": "call_nice",
            },
        ],
        "answer": "21 °C in Paris, 24 °C in Nice.",
    }
    item.update(changes)
    return item


ONE_CALL = {
    "user": "Weather in Oslo?",
    "calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}, "result": "3 °C"}],
    "answer": "3 °C.",
}


def test_tool_calls_become_call_reply_and_answer() -> None:
    dataset = build_dataset(
        "tool_calls", [weather_item()], tools=[WEATHER.to_dict()], system="Be brief."
    )
    line = json.loads(dataset.to_jsonl_bytes())
    assert line == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris and Nice?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_nice",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Nice"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c":21}'},
            {"role": "tool", "tool_call_id": "call_nice", "content": "24 °C"},
            {"role": "assistant", "content": "21 °C in Paris, 24 °C in Nice."},
        ],
        "tools": [WEATHER.to_dict()],
    }
    # What the builder wrote reads back as the same dataset.
    assert Dataset.from_jsonl(dataset.to_jsonl_bytes()) == dataset


def test_tool_call_items_come_from_a_jsonl_file_too(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_text(json.dumps(weather_item()) + "\n", encoding="utf-8")
    dataset = ToolCallBuilder().build(path, parallel_tool_calls=True)
    assert dataset[0].parallel_tool_calls is True
    assert isinstance(dataset[0].messages[3], ToolMessage)


@pytest.mark.parametrize(
    ("item", "options", "field", "words"),
    [
        (weather_item(answr="x"), {}, "answr", "did you mean 'answer'?"),
        (
            weather_item(calls=[{"name": "f", "arguments": {}}]),
            {},
            "calls[0].result",
            "'result' is missing",
        ),
        (
            weather_item(calls=[{"name": "f", "arguments": "{x", "result": 1}]),
            {},
            "calls[0].arguments",
            "not valid JSON",
        ),
        (weather_item(calls=[]), {}, "calls", "at least 1"),
        (
            weather_item(calls=[{"name": "f", "arguments": "[1]", "result": 1}]),
            {},
            "calls[0].arguments",
            "must hold an object",
        ),
        (
            weather_item(calls=[{"name": "", "arguments": {}, "result": 1}]),
            {},
            "calls[0].name",
            "must not be empty",
        ),
        (
            weather_item(calls=[{"name": "get_wether", "arguments": {}, "result": 1}]),
            {"tools": [WEATHER]},
            "calls[0].name",
            "'get_wether' is not a declared tool (tools: get_weather)",
        ),
        (weather_item(), {"parallel_tool_calls": False}, "calls", "parallel_tool_calls is false"),
        (
            weather_item(
                calls=[
                    {"name": "f", "arguments": {}, "result": 1, "id": "call_2"},
                    {"name": "f", "arguments": {}, "result": 2},
                ]
            ),
            {},
            "calls[0].id",
            "used twice",
        ),
    ],
)
def test_a_bad_tool_call_item_names_the_row_and_field(
    item: dict[str, Any], options: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ExampleValidationError) as info:
        ToolCallBuilder().build([ONE_CALL, item], **options)
    assert info.value.field == field
    assert str(info.value).startswith(f"row 2: {field}: ")
    assert words in str(info.value)


# preferences


def test_preference_rows_from_dicts_tuples_and_a_dataframe() -> None:
    expected = PreferenceExample.single_turn("2+2?", "4", "22", system="Math")
    rows = [{"prompt": "2+2?", "chosen": "4", "rejected": "22"}]
    assert PreferenceBuilder().build(rows, system="Math")[0] == expected
    assert PreferenceBuilder().build([("2+2?", "4", "22")], system="Math")[0] == expected
    frame = pd.DataFrame({"question": ["2+2?"], "good": ["4"], "bad": ["22"]})
    built = build_dataset(
        "preferences",
        frame,
        system="Math",
        prompt_key="question",
        preferred_key="good",
        non_preferred_key="bad",
    )
    assert built[0] == expected
    assert built.method == "dpo"


def test_a_preference_prompt_can_be_a_conversation() -> None:
    row = {
        "prompt": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "2+2?"},
        ],
        "chosen": {"role": "assistant", "content": "4"},
        "rejected": "22",
    }
    example = PreferenceBuilder().build([row])[0]
    assert [m.role for m in example.input.messages] == ["user", "assistant", "user"]
    assert example.preferred_output[0].content == "4"


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"prompt": "q", "chosen": "a"}, "rejected", "non_preferred_key"),
        ({"prompt": "q", "chosen": "a", "rejected": None}, "rejected", "missing or empty"),
        ({"prompt": 3, "chosen": "a", "rejected": "b"}, "prompt", "string or a list of messages"),
        (
            {"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"},
            "prompt[0].content",
            "missing",
        ),
        (
            {"prompt": "q", "chosen": {"role": "user", "content": "a"}, "rejected": "b"},
            "chosen",
            "assistant message",
        ),
    ],
)
def test_a_bad_preference_row_names_the_row_and_field(
    row: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ExampleValidationError) as info:
        PreferenceBuilder().build([row])
    assert info.value.field == field
    assert str(info.value).startswith(f"row 1: {field}: ") or str(info.value).startswith(
        "row 1: the column"
    )
    assert words in str(info.value)


# What the builders write passes preflight: records and preflight agree on the API's format.


def ten(item: Any) -> list[Any]:
    return [item] * 10


@pytest.mark.parametrize(
    ("name", "source", "options"),
    [
        (
            "qa",
            [(f"Tell me about element {i}", f"Limerick {i}") for i in range(10)],
            {"system": "Elle"},
        ),
        ("template", LIMERICKS, {"user": "Tell me about {element}", "assistant": "{limerick}"}),
        (
            "conversations",
            ten(["Hi", "Hello!", "Neon?", ("assistant", "Glows red.", 1)]),
            {"train_on": "last"},
        ),
        ("tool_calls", ten(weather_item()), {"tools": [WEATHER], "system": "Be brief."}),
        (
            "preferences",
            ten({"prompt": "2+2?", "chosen": "4", "rejected": "22"}),
            {"system": "Math"},
        ),
    ],
)
def test_what_each_builtin_builds_passes_preflight(
    name: str, source: Any, options: dict[str, Any]
) -> None:
    dataset = build_dataset(name, source, **options)
    report = dataset.preflight(model=None)
    assert report.ok, [(issue.line, issue.code, issue.message) for issue in report.errors]
    assert report.training.n_examples == len(dataset)
