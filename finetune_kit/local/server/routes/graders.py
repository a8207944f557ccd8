"""``/v1/fine_tuning/alpha/graders/run`` and ``/validate``: OpenAI's graders, served locally.

The same requests and answers as OpenAI's (openai-python's ``client.fine_tuning.alpha.graders``):

- ``POST .../graders/validate`` with ``{"grader"}`` -> ``{"grader"}``, the definition echoed.
- ``POST .../graders/run`` with ``{"grader", "model_sample", "item"?}`` -> OpenAI's
  ``GraderRunResponse``: ``reward``, ``sub_rewards``, ``metadata`` (``name``, ``type``,
  ``errors`` with every flag, ``execution_time``, ``scores``, ``token_usage``,
  ``sampled_model_name``) and ``model_grader_token_usage_per_model``.

The graders are ``finetune_kit.graders``, the same code the library's evaluations and
reinforcement fine-tuning run. A definition that cannot be used (an unknown key, a bad template
or formula, python source without ``grade``) is a 400 whose ``param`` names the field
(``grader.graders.accuracy.reference``); so is a judge model the server does not serve. A
problem met while grading this sample (a template variable the item lacks, a judge's unreadable
answer, an exception in a python grader) is not an HTTP error: the answer's reward is 0 and
``metadata.errors`` says why, as on OpenAI.

``score_model`` and ``label_model`` graders ask one of the server's own models through its chat
service (``grader_model``). ``python`` graders run in the sandboxed worker processes of
``finetune_kit.graders.sandbox`` with OpenAI's limits (2 minutes, 2 GiB), one worker per request.

Example:
    >>> sorted(route.path for route in router.routes)
    ['/v1/fine_tuning/alpha/graders/run', '/v1/fine_tuning/alpha/graders/validate']
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, WithJsonSchema
from starlette.concurrency import run_in_threadpool

from ....errors import GraderValidationError, MissingDependencyError
from ....graders.base import CompiledGrader
from ....graders.compiled import compile_grader
from ...api_errors import InvalidRequestError
from ..context import ServerContext
from ..grader_model import ServedGraderModel, check_models
from .common import StrictInput, context, read_json
from .schemas import answers, json_body

__all__ = ["GraderRunAnswer", "GraderRunBody", "GraderValidateAnswer", "GraderValidateBody"]

router = APIRouter()

_GRADER_TYPES = ["string_check", "text_similarity", "python", "score_model", "label_model", "multi"]

# What the schema says of a grader: its two common keys. The definition itself is checked by
# finetune_kit.graders, whose errors name the field and the fix better than a schema would.
_GRADER = WithJsonSchema(
    {
        "type": "object",
        "description": "A grader definition, as OpenAI's (openai-python's types/graders).",
        "properties": {"type": {"enum": _GRADER_TYPES}, "name": {"type": "string"}},
        "required": ["type", "name"],
        "additionalProperties": True,
    }
)


class GraderValidateBody(StrictInput):
    """``POST /v1/fine_tuning/alpha/graders/validate`` body."""

    grader: Annotated[dict[str, Any], _GRADER]


class GraderRunBody(StrictInput):
    """``POST /v1/fine_tuning/alpha/graders/run`` body."""

    grader: Annotated[dict[str, Any], _GRADER]
    model_sample: str
    item: dict[str, Any] | None = None


class _Lenient(BaseModel):
    # Answers are lenient: a field added later breaks no reader of the schema.
    model_config = ConfigDict(extra="allow")


class GraderRunMetadataAnswer(_Lenient):
    """The run's metadata: who graded, how long it took, every error flag."""

    name: str
    type: str
    errors: dict[str, Any]
    execution_time: float
    scores: dict[str, Any]
    token_usage: int | None = None
    sampled_model_name: str | None = None


class GraderRunAnswer(_Lenient):
    """The reward of one sample and how it was found (OpenAI's ``GraderRunResponse``)."""

    reward: float
    sub_rewards: dict[str, Any]
    metadata: GraderRunMetadataAnswer
    model_grader_token_usage_per_model: dict[str, Any]


class GraderValidateAnswer(_Lenient):
    """The validated grader, echoed (OpenAI's ``GraderValidateResponse``)."""

    grader: dict[str, Any] | None = None


def _compiled(ctx: ServerContext, definition: dict[str, Any]) -> CompiledGrader:
    """Compile a request's grader; every reason it cannot be used is a 400 naming the field."""
    try:
        compiled = compile_grader(definition)
    except GraderValidationError as exc:
        raise InvalidRequestError(str(exc), param=exc.param) from exc
    except MissingDependencyError as exc:
        raise InvalidRequestError(
            f"This server cannot run the grader: {exc} (on the server: pip install "
            "'finetune-kit[graders]').",
            param="grader",
        ) from exc
    try:
        check_models(compiled.spec, ctx.catalog)
    except InvalidRequestError:
        compiled.close()
        raise
    return compiled


def _validate(ctx: ServerContext, body: GraderValidateBody) -> dict[str, Any]:
    compiled = _compiled(ctx, body.grader)
    compiled.close()
    return {"grader": compiled.spec.to_dict()}


def _run(ctx: ServerContext, body: GraderRunBody) -> dict[str, Any]:
    with _compiled(ctx, body.grader) as compiled:
        model = ServedGraderModel(ctx) if compiled.needs_model else None
        result = compiled.run(body.model_sample, body.item, model=model)
    return result.to_dict()


@router.post(
    "/v1/fine_tuning/alpha/graders/validate",
    response_model=None,
    responses=answers(GraderValidateAnswer),
    openapi_extra=json_body(GraderValidateBody),
)
async def validate_grader(request: Request) -> dict[str, Any]:
    """Check a grader definition completely, without running it; echo it."""
    body = await read_json(request, GraderValidateBody)
    # Parsing a python grader's source, loading a metric's library: not on the event loop.
    return await run_in_threadpool(_validate, context(request), body)


@router.post(
    "/v1/fine_tuning/alpha/graders/run",
    response_model=None,
    responses=answers(GraderRunAnswer),
    openapi_extra=json_body(GraderRunBody),
)
async def run_grader(request: Request) -> dict[str, Any]:
    """Grade one model sample with a grader."""
    body = await read_json(request, GraderRunBody)
    return await run_in_threadpool(_run, context(request), body)
