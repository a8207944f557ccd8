"""Our results and echoes parse with openai-python's own response types.

GraderRunResponse is parsed strictly (``model_validate``). A validate response holding a multi
grader can only be parsed the way the client parses responses (``construct_type``): the SDK types
``MultiGrader.graders`` as a single grader, so a strict parse of OpenAI's own map shape fails.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai._models import construct_type
from openai.types.fine_tuning.alpha import GraderRunResponse, GraderValidateResponse

from finetune_kit.graders import (
    GraderModelReply,
    GraderModelRequest,
    TokenUsage,
    run_grader,
    validate_grader,
)

from .test_specs import EVERY_TYPE

ERROR_FLAGS = {
    "formula_parse_error",
    "invalid_variable_error",
    "model_grader_parse_error",
    "model_grader_refusal_error",
    "model_grader_server_error",
    "model_grader_server_error_details",
    "other_error",
    "python_grader_runtime_error",
    "python_grader_runtime_error_details",
    "python_grader_server_error",
    "python_grader_server_error_type",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
}


class Judge:
    def complete(self, request: GraderModelRequest) -> GraderModelReply:
        assert request.json_schema is not None
        labels = request.json_schema["schema"]["properties"]["result"].get("enum")
        text = json.dumps({"steps": [], "result": labels[0] if labels else 1})
        return GraderModelReply(
            text=text,
            model="judge-1",
            usage=TokenUsage(prompt_tokens=3, completion_tokens=2, total_tokens=5),
        )


@pytest.mark.parametrize("grader", EVERY_TYPE, ids=lambda d: f"{d['type']}-{d['name']}")
def test_run_results_parse_strictly_as_grader_run_response(grader: dict[str, Any]) -> None:
    item = {"answer": "Paris", "image": "https://example.test/a.png"}
    data = run_grader(grader, "Paris", item, model=Judge()).to_dict()
    assert set(data["metadata"]["errors"]) >= ERROR_FLAGS
    parsed = GraderRunResponse.model_validate(data)
    assert parsed.reward == data["reward"]
    assert parsed.metadata.name == grader["name"]
    assert parsed.metadata.type == grader["type"]
    assert parsed.metadata.errors.api_model_grader_parse_error is False
    if grader["type"] in ("score_model", "label_model"):
        assert parsed.metadata.token_usage == 5
        assert parsed.metadata.sampled_model_name == "judge-1"
        assert parsed.api_model_grader_token_usage_per_model["judge-1"] == {
            "prompt_tokens": 3,
            "completion_tokens": 2,
            "total_tokens": 5,
            "cached_tokens": 0,
        }
    if grader["type"] == "multi":
        assert parsed.sub_rewards == {"exact": 1.0, "close": 1.0}


def test_error_flags_parse_with_their_sdk_names() -> None:
    grader = {
        "type": "string_check",
        "name": "s",
        "input": "{{item.missing}}",
        "reference": "x",
        "operation": "eq",
    }
    data = run_grader(grader, "x").to_dict()
    parsed = GraderRunResponse.model_validate(data)
    assert parsed.metadata.errors.invalid_variable_error is True
    assert parsed.reward == 0.0
    # The detail is a local addition, kept by the SDK as an extra field.
    assert parsed.metadata.errors.model_extra
    assert "missing" in parsed.metadata.errors.model_extra["invalid_variable_error_details"]


@pytest.mark.parametrize("grader", EVERY_TYPE, ids=lambda d: f"{d['type']}-{d['name']}")
def test_validate_echoes_parse_as_the_client_parses_them(grader: dict[str, Any]) -> None:
    body = {"grader": validate_grader(grader).to_dict()}
    parsed = construct_type(value=body, type_=GraderValidateResponse)
    assert isinstance(parsed, GraderValidateResponse)
    assert parsed.grader is not None
    assert parsed.grader.type == grader["type"]
    # label_model and multi land in the union's first member (StringCheckGrader): compare the
    # data, without the serializer's warnings about that class.
    assert parsed.grader.to_dict(warnings=False) == grader
