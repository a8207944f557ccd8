"""Grader definitions: OpenAI's shapes, strict, with errors that name the grader and the field."""

from __future__ import annotations

from typing import Any

import pytest

from finetune_kit.errors import ConfigurationError
from finetune_kit.graders import (
    GraderValidationError,
    MultiGrader,
    StringCheckGrader,
    parse_grader,
    validate_grader,
)


def string_check(**overrides: Any) -> dict[str, Any]:
    grader = {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}",
        "operation": "eq",
    }
    grader.update(overrides)
    return grader


def score_model(**overrides: Any) -> dict[str, Any]:
    grader: dict[str, Any] = {
        "type": "score_model",
        "name": "judge",
        "model": "gpt-4o-2024-08-06",
        "input": [
            {"role": "system", "content": "Score the answer from 0 to 1."},
            {"role": "user", "content": "Answer: {{sample.output_text}}"},
        ],
    }
    grader.update(overrides)
    return grader


def refused(data: Any) -> GraderValidationError:
    with pytest.raises(GraderValidationError) as info:
        validate_grader(data)
    return info.value


EVERY_TYPE = [
    string_check(),
    {
        "type": "text_similarity",
        "name": "close",
        "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}",
        "evaluation_metric": "rouge_l",
    },
    {"type": "python", "name": "py", "source": "def grade(sample, item):\n    return 1.0\n"},
    {
        "type": "python",
        "name": "py_tagged",
        "source": "def grade(sample, item):\n    return 1.0\n",
        "image_tag": "2025-05-08",
    },
    score_model(
        range=[0, 10],
        sampling_params={
            "temperature": 0.2,
            "top_p": 0.9,
            "seed": 7,
            "max_completions_tokens": 64,
            "reasoning_effort": "low",
        },
    ),
    score_model(
        input=[
            {
                "role": "user",
                "type": "message",
                "content": [
                    {"type": "input_text", "text": "Is {{sample.output_text}} right?"},
                    {"type": "input_image", "image_url": "{{item.image}}", "detail": "low"},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                    "plain {{item.answer}}",
                ],
            },
            {"role": "assistant", "content": {"type": "output_text", "text": "Let me see."}},
        ]
    ),
    {
        "type": "label_model",
        "name": "sentiment",
        "model": "gpt-4o-mini-2024-07-18",
        "input": [{"role": "developer", "content": "Label: {{sample.output_text}}"}],
        "labels": ["positive", "neutral", "negative"],
        "passing_labels": ["positive"],
    },
    {
        "type": "multi",
        "name": "combined",
        "calculate_output": "0.5 * exact + 0.5 * close",
        "graders": {
            "exact": string_check(),
            "close": {
                "type": "text_similarity",
                "name": "close",
                "input": "{{sample.output_text}}",
                "reference": "{{item.answer}}",
                "evaluation_metric": "fuzzy_match",
            },
        },
    },
]


@pytest.mark.parametrize("data", EVERY_TYPE, ids=lambda d: f"{d['type']}-{d['name']}")
def test_every_grader_type_validates_and_echoes_what_was_given(data: dict[str, Any]) -> None:
    spec = validate_grader(data)
    assert spec.type == data["type"]
    assert spec.to_dict() == data


def test_a_spec_and_an_openai_python_object_are_accepted_as_they_are() -> None:
    from openai.types.graders import StringCheckGrader as SDKStringCheck

    spec = parse_grader(string_check())
    assert isinstance(spec, StringCheckGrader)
    assert parse_grader(spec) is spec
    sdk = SDKStringCheck.model_validate(string_check())
    assert validate_grader(sdk).to_dict() == string_check()


def test_an_unknown_key_is_an_error_naming_it_and_the_likely_key() -> None:
    data = string_check()
    data["refrence"] = data.pop("reference")
    error = refused(data)
    assert error.field == "refrence"
    assert error.grader == "exact"
    assert "unknown key 'refrence'" in str(error)
    assert "did you mean 'reference'" in str(error)
    assert isinstance(error, ConfigurationError)
    assert error.param == "grader.refrence"


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (string_check(operation="contains"), "operation", "'eq', 'ne', 'like' or 'ilike'"),
        (string_check(input=3), "input", "valid string (got a number)"),
        ({"name": "x", "input": "a"}, "type", "has no 'type'"),
        ({"type": "strng_check", "name": "x"}, "type", "did you mean 'string_check'"),
        (
            score_model(sampling_params={"max_completion_tokens": 5}),
            "sampling_params.max_completion_tokens",
            "did you mean 'max_completions_tokens'",
        ),
        (score_model(sampling_params={"temperature": 3}), "sampling_params.temperature", "2"),
        (score_model(range=[1, 0]), "range", "low < high"),
        (score_model(range=[0, 1, 2]), "range", "two finite numbers"),
        (score_model(input=[]), "input", "at least 1"),
        (
            score_model(input=[{"role": "usr", "content": "x"}]),
            "input[0].role",
            "'user', 'assistant', 'system' or 'developer'",
        ),
        (
            score_model(input=[{"role": "user", "content": [{"type": "input_text", "txt": "x"}]}]),
            "input[0].content[0].txt",
            "did you mean 'text'",
        ),
        (
            score_model(input=[{"role": "user", "content": [{"type": "input_txt", "text": "x"}]}]),
            "input[0].content[0]",
            "input_text, output_text, input_image or input_audio",
        ),
        (score_model(input=[{"role": "user", "content": 5}]), "input[0].content", "a string"),
        (
            {
                "type": "label_model",
                "name": "l",
                "model": "m",
                "input": [{"role": "user", "content": "x"}],
                "labels": ["yes", "no"],
                "passing_labels": ["maybe"],
            },
            "passing_labels",
            "subset of labels",
        ),
        (
            {
                "type": "label_model",
                "name": "l",
                "model": "m",
                "input": [{"role": "user", "content": "x"}],
                "labels": ["yes", "yes"],
                "passing_labels": ["yes"],
            },
            "labels",
            "unique",
        ),
        ({"type": "python", "name": "p"}, "source", "required"),
    ],
)
def test_bad_definitions_name_the_field(data: Any, field: str, words: str) -> None:
    error = refused(data)
    assert error.field == field, str(error)
    assert words in str(error)


def test_cosine_is_refused_naming_the_metric() -> None:
    error = refused(
        {
            "type": "text_similarity",
            "name": "emb",
            "input": "a",
            "reference": "b",
            "evaluation_metric": "cosine",
        }
    )
    assert error.field == "evaluation_metric"
    assert "'cosine' needs an embeddings model" in str(error)


def test_a_multi_grader_maps_names_to_graders_and_errors_inside_it_carry_the_path() -> None:
    spec = validate_grader(EVERY_TYPE[-1])
    assert isinstance(spec, MultiGrader)
    assert list(spec.graders) == ["exact", "close"]

    bad = {
        "type": "multi",
        "name": "m",
        "calculate_output": "a",
        "graders": {"a": string_check(name="inner", operaton="eq")},
    }
    error = refused(bad)
    assert error.field == "graders.a.operaton"
    assert error.grader == "inner"
    assert error.param == "grader.graders.a.operaton"


def test_a_single_grader_where_the_map_belongs_is_explained() -> None:
    # openai-python types MultiGrader.graders as one grader; OpenAI's guide sends a map.
    error = refused(
        {"type": "multi", "name": "m", "calculate_output": "exact", "graders": string_check()}
    )
    assert error.field == "graders"
    assert "must map names to graders" in str(error)


def test_a_multi_grader_cannot_hold_another() -> None:
    inner = {
        "type": "multi",
        "name": "in",
        "calculate_output": "x",
        "graders": {"x": string_check()},
    }
    error = refused(
        {"type": "multi", "name": "m", "calculate_output": "i", "graders": {"i": inner}}
    )
    assert error.field == "graders.i.type"
    assert "cannot be nested" in str(error)


def test_python_source_is_checked_without_running_it(tmp_path: Any) -> None:
    marker = tmp_path / "ran"
    ran = f"open({str(marker)!r}, 'w').close()\ndef grade(sample, item):\n    return 1.0\n"
    validate_grader({"type": "python", "name": "p", "source": ran})
    assert not marker.exists()

    error = refused(
        {"type": "python", "name": "p", "source": "def grade(sample, item)\n  return 1"}
    )
    assert error.field == "source"
    assert "not valid Python at line 1" in str(error)

    error = refused({"type": "python", "name": "p", "source": "def score(sample, item):\n  pass"})
    assert "defines no grade function" in str(error)

    big = "def grade(sample, item):\n    return 1.0\n" + "#" * (256 * 1024)
    error = refused({"type": "python", "name": "p", "source": big})
    assert "the limit is 262,144" in str(error)


@pytest.mark.parametrize(
    "source",
    [
        "grade = lambda sample, item: 1.0\n",
        "from math import floor as grade\n",
        "try:\n    import numpy\nexcept ImportError:\n    pass\nelse:\n"
        "    def grade(sample, item):\n        return 1.0\n",
    ],
)
def test_grade_may_be_defined_any_top_level_way(source: str) -> None:
    validate_grader({"type": "python", "name": "p", "source": source})


def test_a_bad_template_inside_a_multi_grader_is_named_by_its_path() -> None:
    from finetune_kit.graders import compile_grader

    bad = {
        "type": "multi",
        "name": "m",
        "calculate_output": "a",
        "graders": {"a": string_check(name="inner", input="{{answer}}")},
    }
    with pytest.raises(GraderValidationError) as info:
        compile_grader(bad)
    assert info.value.field == "graders.a.input"
    assert info.value.param == "grader.graders.a.input"
    assert info.value.grader == "inner"
