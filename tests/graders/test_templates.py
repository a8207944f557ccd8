"""Templates as OpenAI's guide writes them: bad ones refused, missing values flagged."""

from __future__ import annotations

from typing import Any

import pytest

from finetune_kit.graders import GraderValidationError, Sample, compile_grader, run_grader


def check(input_text: str, reference: str, operation: str = "eq") -> dict[str, Any]:
    return {
        "type": "string_check",
        "name": "check",
        "input": input_text,
        "reference": reference,
        "operation": operation,
    }


@pytest.mark.parametrize(
    ("template", "sample", "item", "expected"),
    [
        ("{{sample.output_text}}", "Paris", {}, "Paris"),
        ("{{ sample.output_text }}", "Paris", {}, "Paris"),
        ("{{item.answer}}", "x", {"answer": "Paris"}, "Paris"),
        ("{{item.city.name}}", "x", {"city": {"name": "Paris"}}, "Paris"),
        ("{{item.cities[1]}}", "x", {"cities": ["Rome", "Paris"]}, "Paris"),
        ("{{sample.output_json.city}}", '{"city": "Paris"}', {}, "Paris"),
        ("{{sample.output_json}}", '{"a": 1}', {}, '{"a": 1}'),
        (
            "{{item.n}} and {{item.ok}} and {{item.none}}",
            "x",
            {"n": 3, "ok": True, "none": None},
            "3 and true and null",
        ),
        ("{{item.obj}}", "x", {"obj": {"b": [1, "é"]}}, '{"b": [1, "é"]}'),
        ('{"result": {"a": 1}} {{item.k}}', "x", {"k": "v"}, '{"result": {"a": 1}} v'),
        ("{{item.answer-key}}", "x", {"answer-key": "Paris"}, "Paris"),
    ],
)
def test_templates_render_as_the_guide_describes(
    template: str, sample: str, item: dict[str, Any], expected: str
) -> None:
    assert run_grader(check(template, expected), sample, item).reward == 1.0


def test_tool_calls_are_reachable_by_index() -> None:
    sample = Sample.from_message(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        }
    )
    grader = check("{{sample.output_tools[0].function.name}}", "get_weather")
    assert run_grader(grader, sample).reward == 1.0
    choice = check(
        "{{sample.choices[0].message.tool_calls[0].function.arguments}}", "Paris", "like"
    )
    assert run_grader(choice, sample).reward == 1.0


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{{sample.output_text}", "never closed"),
        ("{{item.a}} {{ item.b", "never closed"),
        ("{{ {{item.a}} }}", "never closed"),
        ("{item.answer}}", "single '{'"),
        ("{{answer}}", "the namespace 'answer'"),
        ("{{output.text}}", "the namespace 'output'"),
        ("{{item}}", "no variable"),
        ("{{}}", "the namespace '(nothing)'"),
        ("{{item.a b}}", "not a variable path"),
        ("{{item.list[x]}}", "not a variable path"),
    ],
)
def test_a_bad_template_is_refused_naming_the_grader_and_field(template: str, words: str) -> None:
    with pytest.raises(GraderValidationError) as info:
        compile_grader(check("{{sample.output_text}}", template))
    assert info.value.field == "reference"
    assert info.value.grader == "check"
    assert words in str(info.value)
    assert "grader 'check', field 'reference': bad template" in str(info.value)


def test_a_bad_template_inside_a_model_graders_message_names_the_message() -> None:
    grader = {
        "type": "score_model",
        "name": "judge",
        "model": "m",
        "input": [
            {"role": "system", "content": "Grade."},
            {"role": "user", "content": [{"type": "input_text", "text": "{{sampel.output_text}}"}]},
        ],
    }
    with pytest.raises(GraderValidationError) as info:
        compile_grader(grader)
    assert info.value.field == "input[1].content[0].text"


@pytest.mark.parametrize(
    ("template", "item", "words"),
    [
        (
            "{{item.answer}}",
            {"solution": "Paris"},
            "item has no key 'answer' (its keys: 'solution')",
        ),
        ("{{item.cities[2]}}", {"cities": ["a"]}, "item.cities has 1 item(s), so [2] is missing"),
        ("{{item.city.name}}", {"city": "Paris"}, "item.city is a string, not an object"),
        ("{{item.answer}}", None, "item has no key 'answer'"),
    ],
)
def test_a_missing_variable_gives_reward_0_with_invalid_variable_error(
    template: str, item: Any, words: str
) -> None:
    result = run_grader(check(template, "Paris", "ne"), "Paris", item)
    assert result.reward == 0.0
    errors = result.metadata.errors
    assert errors.invalid_variable_error
    assert words in (errors.invalid_variable_error_details or "")
    assert not errors.sample_parse_error


def test_output_json_of_a_sample_that_is_not_json_is_a_sample_parse_error() -> None:
    result = run_grader(check("{{sample.output_json.city}}", "Paris", "ne"), "Paris, surely")
    assert result.reward == 0.0
    assert result.metadata.errors.sample_parse_error
    assert "not valid JSON" in (result.metadata.errors.sample_parse_error_details or "")
    assert not result.metadata.errors.invalid_variable_error


def test_a_rendered_value_is_never_read_as_a_template() -> None:
    result = run_grader(check("{{sample.output_text}}", "{{item.x}}"), "{{item.x}}", {"x": "no"})
    assert result.reward == 0.0
    assert (
        run_grader(
            check("{{sample.output_text}}", "{{item.x}}"), "{{item.y}}", {"x": "{{item.y}}"}
        ).reward
        == 1.0
    )
