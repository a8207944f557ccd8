"""/v1/fine_tuning/alpha/graders/run and /validate, through the real ``openai`` client.

Answers are parsed by openai-python's own types (``GraderRunResponse``, ``GraderValidateResponse``),
the way the client parses them: leniently, so a multi grader's ``graders`` map (which the SDK
types as a single grader) comes back intact in ``to_dict()`` though its Python class is the
union's first member; tests compare ``.type`` and ``to_dict()``, never ``isinstance``.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
from openai.types.fine_tuning.alpha import GraderRunResponse, GraderValidateResponse

if TYPE_CHECKING:
    from finetune_kit.local import LocalBackend

EXACT: dict[str, Any] = {
    "type": "string_check",
    "name": "exact",
    "operation": "eq",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
}
MULTI: dict[str, Any] = {
    "type": "multi",
    "name": "name_and_email",
    "calculate_output": "0.5 * name + 0.5 * email",
    "graders": {
        "name": {
            "type": "text_similarity",
            "name": "name",
            "evaluation_metric": "fuzzy_match",
            "input": "{{sample.output_json.name}}",
            "reference": "{{item.name}}",
        },
        "email": {
            "type": "string_check",
            "name": "email",
            "operation": "eq",
            "input": "{{sample.output_json.email}}",
            "reference": "{{item.email}}",
        },
    },
}
SCORE_MODEL: dict[str, Any] = {
    "type": "score_model",
    "name": "helpful",
    "model": "tiny-random",
    "input": [
        {"role": "system", "content": "Score the answer from 0 to 1."},
        {"role": "user", "content": "Answer: {{sample.output_text}}"},
    ],
    "sampling_params": {"max_completions_tokens": 4, "temperature": 0, "seed": 1},
}
ALL_FLAGS = {
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


def test_validate_echoes_the_grader(client: openai.OpenAI) -> None:
    response = client.fine_tuning.alpha.graders.validate(grader=EXACT)
    assert isinstance(response, GraderValidateResponse)
    assert response.grader is not None
    assert response.grader.type == "string_check"
    assert response.grader.to_dict() == EXACT


def test_validate_keeps_a_multi_graders_map(client: openai.OpenAI) -> None:
    response = client.fine_tuning.alpha.graders.validate(grader=MULTI)
    assert response.grader is not None
    assert response.grader.type == "multi"
    assert response.grader.to_dict() == MULTI


def test_an_invalid_grader_is_a_400_naming_the_field(client: openai.OpenAI) -> None:
    bad = {**EXACT, "refrence": EXACT["reference"]}
    del bad["reference"]
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.alpha.graders.validate(grader=bad)
    assert info.value.status_code == 400
    assert info.value.param == "grader.refrence"
    assert "did you mean 'reference'" in info.value.message
    broken = json.loads(json.dumps(MULTI))
    broken["calculate_output"] = "0.5 * nme + email"
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.alpha.graders.run(grader=broken, model_sample="{}")
    assert info.value.param == "grader.calculate_output"
    assert "'nme' (did you mean 'name'?)" in info.value.message


def test_run_answers_openais_shape(client: openai.OpenAI) -> None:
    raw = client.fine_tuning.alpha.graders.with_raw_response.run(
        grader=EXACT,
        model_sample="Paris",
        item={"answer": "Paris"},
    )
    body = json.loads(raw.text)
    # Every flag OpenAI defines is sent, and the answer parses strictly as the SDK's type.
    assert set(body["metadata"]["errors"]) >= ALL_FLAGS
    strict = GraderRunResponse.model_validate(body, strict=True)
    assert strict.reward == 1.0
    response = raw.parse()
    assert response.reward == 1.0
    assert response.sub_rewards == {}
    assert response.metadata.name == "exact"
    assert response.metadata.type == "string_check"
    assert response.metadata.errors.invalid_variable_error is False
    assert response.metadata.errors.api_model_grader_server_error is False
    assert response.api_model_grader_token_usage_per_model == {}


def test_a_sample_problem_is_a_flag_not_an_http_error(client: openai.OpenAI) -> None:
    response = client.fine_tuning.alpha.graders.run(
        grader=EXACT,
        model_sample="Paris",
        item={"solution": "Paris"},
    )
    assert response.reward == 0.0
    assert response.metadata.errors.invalid_variable_error is True
    errors = response.metadata.errors.to_dict()
    assert "item has no key 'answer'" in errors["invalid_variable_error_details"]


def test_run_text_similarity_and_multi(client: openai.OpenAI) -> None:
    similar = {
        "type": "text_similarity",
        "name": "close",
        "evaluation_metric": "rouge_l",
        "input": "{{sample.output_text}}",
        "reference": "the quick brown fox",
    }
    response = client.fine_tuning.alpha.graders.run(
        grader=similar,
        model_sample="the quick red fox",
    )
    assert response.reward == pytest.approx(0.75)
    assert response.metadata.scores["rouge_l"] == pytest.approx(0.75)

    response = client.fine_tuning.alpha.graders.run(
        grader=MULTI,
        model_sample=json.dumps({"name": "Ada Lovelace", "email": "ada@example.com"}),
        item={"name": "Ada Lovelace", "email": "ada@example.org"},
    )
    assert response.sub_rewards == {"name": 1.0, "email": 0.0}
    assert response.reward == 0.5


def test_run_a_python_grader_in_its_sandbox(client: openai.OpenAI) -> None:
    source = (
        "def grade(sample, item):\n"
        "    answer = (sample['output_json'] or {}).get('answer')\n"
        "    return 1.0 if answer == item['expected'] else 0.25\n"
    )
    grader = {"type": "python", "name": "json_answer", "source": source}
    response = client.fine_tuning.alpha.graders.run(
        grader=grader,
        model_sample='{"answer": 42}',
        item={"expected": 42},
    )
    assert response.reward == 1.0
    raising = {**grader, "source": "def grade(sample, item):\n    raise KeyError('nope')\n"}
    response = client.fine_tuning.alpha.graders.run(grader=raising, model_sample="x")
    assert response.reward == 0.0
    assert response.metadata.errors.python_grader_runtime_error is True
    assert "KeyError" in (response.metadata.errors.python_grader_runtime_error_details or "")


def test_a_model_grader_asks_a_model_the_server_serves(client: openai.OpenAI) -> None:
    response = client.fine_tuning.alpha.graders.run(
        grader=SCORE_MODEL,
        model_sample="Paris is the capital of France.",
    )
    # The tiny model writes no JSON: reward 0, and the flag says why; the judge really answered.
    assert response.reward == 0.0
    assert response.metadata.errors.api_model_grader_parse_error is True
    assert response.metadata.sampled_model_name == "tiny-random"
    assert isinstance(response.metadata.token_usage, int)
    assert response.metadata.token_usage > 0
    assert list(response.api_model_grader_token_usage_per_model) == ["tiny-random"]
    # An alias the server serves is a judge too: it answers as the model it stands for.
    aliased = client.fine_tuning.alpha.graders.run(
        grader={**SCORE_MODEL, "model": "gpt-4o-mini"},
        model_sample="Paris.",
    )
    assert aliased.metadata.sampled_model_name == "tiny-random"


def test_a_judge_the_server_does_not_serve_is_a_400_naming_the_field(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.alpha.graders.validate(grader={**SCORE_MODEL, "model": "no-such-model"})
    assert info.value.param == "grader.model"
    assert info.value.code == "model_not_found"
    label = {
        "type": "label_model",
        "name": "tone",
        "model": "no-such-model",
        "input": [{"role": "user", "content": "{{sample.output_text}}"}],
        "labels": ["kind", "rude"],
        "passing_labels": ["kind"],
    }
    multi = {**MULTI, "graders": {**MULTI["graders"], "tone": label}}
    multi["calculate_output"] = "name + email + tone"
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.alpha.graders.run(grader=multi, model_sample="{}")
    assert info.value.param == "grader.graders.tone.model"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"grader": EXACT}, "model_sample"),
        ({"grader": EXACT, "model_sample": "x", "item": ["not", "an", "object"]}, "item"),
        ({"grader": "string_check", "model_sample": "x"}, "grader"),
        ({"grader": EXACT, "model_sample": "x", "extra": 1}, "extra"),
        ({"grader": {"type": "nonsense", "name": "x"}, "model_sample": "x"}, "grader.type"),
    ],
)
def test_malformed_bodies_are_400s_naming_the_parameter(
    local_backend: LocalBackend, body: dict[str, Any], param: str
) -> None:
    response = httpx.post(
        local_backend.base_url + "/fine_tuning/alpha/graders/run", json=body, timeout=30
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_the_async_client_too(local_backend: LocalBackend) -> None:
    async def run() -> tuple[float, str]:
        async with local_backend.async_client() as client:
            ran = await client.fine_tuning.alpha.graders.run(
                grader=EXACT,
                model_sample="Paris",
                item={"answer": "Paris"},
            )
            validated = await client.fine_tuning.alpha.graders.validate(grader=MULTI)
            assert validated.grader is not None
            return ran.reward, validated.grader.type

    assert asyncio.run(run()) == (1.0, "multi")


def test_both_routes_and_their_bodies_are_in_the_openapi_schema(
    local_backend: LocalBackend,
) -> None:
    schema = httpx.get(local_backend.base_url.removesuffix("/v1") + "/openapi.json").json()
    components = schema["components"]["schemas"]
    for route, body in (("run", "GraderRunBody"), ("validate", "GraderValidateBody")):
        operation = schema["paths"][f"/v1/fine_tuning/alpha/graders/{route}"]["post"]
        declared = operation["requestBody"]["content"]["application/json"]["schema"]
        assert declared == {"$ref": f"#/components/schemas/{body}"}
        assert components[body]["additionalProperties"] is False
        assert components[body]["properties"]["grader"]["required"] == ["type", "name"]
        assert {"200", "4XX"} <= set(operation["responses"])
    assert components["GraderRunBody"]["required"] == ["grader", "model_sample"]
