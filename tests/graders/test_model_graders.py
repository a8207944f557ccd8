"""score_model and label_model: through a real local backend, and through judges users write."""

from __future__ import annotations

import json
import threading
from typing import Any

import openai
import pytest

from finetune_kit.errors import ConfigurationError
from finetune_kit.graders import (
    GraderModel,
    GraderModelReply,
    GraderModelRequest,
    OpenAIGraderModel,
    TokenUsage,
    compile_grader,
    run_grader,
)


def score_model(**overrides: Any) -> dict[str, Any]:
    grader: dict[str, Any] = {
        "type": "score_model",
        "name": "judge",
        "model": "gpt-4o-mini-2024-07-18",
        "input": [
            {"role": "system", "content": "Score how well the answer matches the reference."},
            {
                "role": "user",
                "content": "Answer: {{sample.output_text}}\nReference: {{item.reference}}",
            },
        ],
        "sampling_params": {"temperature": 0, "seed": 1, "max_completions_tokens": 12},
    }
    grader.update(overrides)
    return grader


def label_model(**overrides: Any) -> dict[str, Any]:
    grader: dict[str, Any] = {
        "type": "label_model",
        "name": "sentiment",
        "model": "gpt-4o-mini-2024-07-18",
        "input": [{"role": "user", "content": "Label the mood of: {{sample.output_text}}"}],
        "labels": ["happy", "neutral", "sad"],
        "passing_labels": ["happy", "neutral"],
    }
    grader.update(overrides)
    return grader


# --- a real local backend, through the openai client ---------------------------------------


def test_score_model_asks_the_local_backend_and_flags_its_unreadable_answer(
    client: openai.OpenAI,
) -> None:
    judge = OpenAIGraderModel(client)
    result = run_grader(score_model(), "Paris", {"reference": "Paris"}, model=judge)
    # The tiny random model writes noise, not the JSON asked for.
    errors = result.metadata.errors
    assert errors.model_grader_parse_error
    assert "not JSON" in (errors.model_grader_parse_error_details or "")
    assert not errors.model_grader_server_error
    assert result.reward == 0.0
    # The backend refuses json_schema response formats: the judge asked again without one.
    assert judge.structured_outputs is False
    assert result.metadata.sampled_model_name
    usage = result.model_grader_token_usage_per_model[result.metadata.sampled_model_name]
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert result.metadata.token_usage == usage.total_tokens


def test_label_model_through_the_local_backend(client: openai.OpenAI) -> None:
    result = run_grader(label_model(), "What a day!", model=OpenAIGraderModel(client))
    assert result.metadata.errors.model_grader_parse_error
    assert result.reward == 0.0
    assert result.metadata.token_usage


def test_a_judge_the_server_cannot_reach_is_a_server_error(client: openai.OpenAI) -> None:
    judge = OpenAIGraderModel(client, model="no-such-model-here")
    result = run_grader(score_model(), "Paris", {"reference": "Paris"}, model=judge)
    errors = result.metadata.errors
    assert errors.model_grader_server_error
    assert "NotFoundError" in (errors.model_grader_server_error_details or "")
    assert result.reward == 0.0


# --- judges users write: the GraderModel protocol -------------------------------------------


class ScriptedJudge:
    """A judge a user might write: answers from a script, records what it was asked."""

    def __init__(self, *answers: str, refusal: str | None = None) -> None:
        self.answers = list(answers)
        self.refusal = refusal
        self.requests: list[GraderModelRequest] = []
        self.lock = threading.Lock()

    def complete(self, request: GraderModelRequest) -> GraderModelReply:
        with self.lock:
            self.requests.append(request)
            text = self.answers.pop(0) if self.answers else ""
        return GraderModelReply(
            text=text,
            model="judge-2026",
            usage=TokenUsage(prompt_tokens=10, completion_tokens=5, total_tokens=15),
            refusal=self.refusal,
        )


def answer(result: Any) -> str:
    return json.dumps(
        {"steps": [{"description": "compare", "conclusion": "close"}], "result": result}
    )


def test_the_judge_gets_rendered_messages_sampling_params_and_the_schema() -> None:
    judge = ScriptedJudge(answer(0.75))
    assert isinstance(judge, GraderModel)
    result = run_grader(score_model(), "Lyon", {"reference": "Paris"}, model=judge)
    assert result.reward == 0.75
    assert result.metadata.scores == {"result": 0.75}
    assert result.metadata.sampled_model_name == "judge-2026"
    assert result.metadata.token_usage == 15
    request = judge.requests[0]
    assert request.model == "gpt-4o-mini-2024-07-18"
    assert request.messages[1] == {"role": "user", "content": "Answer: Lyon\nReference: Paris"}
    assert request.sampling_params is not None
    assert request.sampling_params.max_completions_tokens == 12
    assert request.json_schema is not None
    assert request.json_schema["schema"]["required"] == ["steps", "result"]


@pytest.mark.parametrize(
    ("text", "grader_range", "reward", "parse_error"),
    [
        (answer(0.4), None, 0.4, False),
        (answer(1.7), None, 1.0, False),  # clipped to the range, not rescaled
        (answer(-3), None, 0.0, False),
        (answer(7), [0, 10], 7.0, False),
        (answer("0.5"), None, 0.5, False),
        ("```json\n" + answer(0.3) + "\n```", None, 0.3, False),
        ("Here you go: " + answer(0.6) + " Thanks.", None, 0.6, False),
        ("0.9", None, 0.9, False),
        (answer("high"), None, 0.0, True),
        (answer(True), None, 0.0, True),
        (json.dumps({"steps": []}), None, 0.0, True),
        ("I think it is fine.", None, 0.0, True),
        (answer(float("nan")), None, 0.0, True),
    ],
)
def test_score_model_reads_the_result(
    text: str, grader_range: list[float] | None, reward: float, parse_error: bool
) -> None:
    grader = score_model() if grader_range is None else score_model(range=grader_range)
    result = run_grader(grader, "x", {"reference": "y"}, model=ScriptedJudge(text))
    assert result.reward == reward
    assert result.metadata.errors.model_grader_parse_error is parse_error


@pytest.mark.parametrize(
    ("label", "reward", "parse_error"),
    [("happy", 1.0, False), ("neutral", 1.0, False), ("sad", 0.0, False), ("angry", 0.0, True)],
)
def test_label_model_passes_on_passing_labels(label: str, reward: float, parse_error: bool) -> None:
    judge = ScriptedJudge(answer(label))
    result = run_grader(label_model(), "x", model=judge)
    assert result.reward == reward
    assert result.metadata.errors.model_grader_parse_error is parse_error
    assert judge.requests[0].json_schema is not None
    schema = judge.requests[0].json_schema["schema"]
    assert schema["properties"]["result"]["enum"] == ["happy", "neutral", "sad"]


def test_a_refusal_is_flagged() -> None:
    result = run_grader(score_model(), "x", {"reference": "y"}, model=ScriptedJudge(refusal="No."))
    assert result.metadata.errors.model_grader_refusal_error
    assert result.metadata.errors.model_grader_refusal_error_details == "No."
    assert result.reward == 0.0


def test_a_judge_that_raises_is_a_server_error() -> None:
    class Down:
        def complete(self, request: GraderModelRequest) -> GraderModelReply:
            raise TimeoutError("judge timed out after 30 s")

    result = run_grader(score_model(), "x", {"reference": "y"}, model=Down())
    errors = result.metadata.errors
    assert errors.model_grader_server_error
    assert errors.model_grader_server_error_details == "TimeoutError: judge timed out after 30 s"


def test_a_missing_variable_asks_no_model() -> None:
    judge = ScriptedJudge(answer(1))
    result = run_grader(score_model(), "x", {"other": "y"}, model=judge)
    assert result.metadata.errors.invalid_variable_error
    assert judge.requests == []


def test_a_model_grader_without_a_model_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="pass model="):
        run_grader(score_model(), "x", {"reference": "y"})


def test_content_parts_become_chat_parts() -> None:
    grader = score_model(
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Is this {{item.thing}}?"},
                    {"type": "input_image", "image_url": "{{item.url}}", "detail": "low"},
                ],
            },
            {"role": "user", "content": [{"type": "input_text", "text": "a"}, "b"]},
        ]
    )
    judge = ScriptedJudge(answer(1))
    run_grader(grader, "x", {"thing": "a cat", "url": "https://example.test/cat.png"}, model=judge)
    first, second = judge.requests[0].messages
    assert first["content"] == [
        {"type": "text", "text": "Is this a cat?"},
        {
            "type": "image_url",
            "image_url": {"url": "https://example.test/cat.png", "detail": "low"},
        },
    ]
    assert second["content"] == "a\nb"


def test_a_multi_grader_adds_up_its_judges_tokens() -> None:
    grader = {
        "type": "multi",
        "name": "both",
        "calculate_output": "(score + mood) / 2",
        "graders": {"score": score_model(), "mood": label_model()},
    }
    judge = ScriptedJudge(answer(0.5), answer("happy"))
    with compile_grader(grader) as compiled:
        assert compiled.needs_model
        result = compiled.run("x", {"reference": "y"}, model=judge)
    assert result.reward == 0.75
    assert result.sub_rewards == {"score": 0.5, "mood": 1.0}
    assert result.metadata.token_usage == 30
    assert result.model_grader_token_usage_per_model["judge-2026"].total_tokens == 30
