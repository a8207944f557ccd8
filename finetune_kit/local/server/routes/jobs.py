"""``/v1/fine_tuning/jobs``: create, list, retrieve, cancel, pause, resume, events, checkpoints.

Example:
    >>> "/v1/fine_tuning/jobs/{job_id}/events" in {route.path for route in router.routes}
    True
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import Field

from ....errors import ConfigurationError
from ...api_errors import InvalidRequestError, NotFoundError
from ...engine.types import HYPERPARAMETER_RANGES, check_hyperparameter
from ...store import TERMINAL_STATUSES, JobRecord, JobSpec
from ..validator import check_grader
from .common import (
    After,
    Limit,
    StrictInput,
    context,
    list_page,
    page_after,
    read_json,
    unknown_cursor,
)
from .schemas import CheckpointList, EventList, FineTuningJob, JobList, answers, json_body

__all__ = ["JobCreateBody", "router"]

router = APIRouter()

_SUFFIX = re.compile(r"[A-Za-z0-9._-]+")


# Any JSON value here: the engine's own check (check_hyperparameter) judges "auto", the type
# and the range in one message, so the server never queues a job its worker would refuse.
_Hyperparameter = Any


class _Hyperparameters(StrictInput):
    batch_size: _Hyperparameter = None
    learning_rate_multiplier: _Hyperparameter = None
    n_epochs: _Hyperparameter = None


class _DpoHyperparameters(_Hyperparameters):
    beta: _Hyperparameter = None


class _ReinforcementHyperparameters(_Hyperparameters):
    compute_multiplier: _Hyperparameter = None
    eval_interval: _Hyperparameter = None
    eval_samples: _Hyperparameter = None
    reasoning_effort: _Hyperparameter = None


class _Supervised(StrictInput):
    hyperparameters: _Hyperparameters | None = None


class _Dpo(StrictInput):
    hyperparameters: _DpoHyperparameters | None = None


class _Reinforcement(StrictInput):
    # Any JSON value: check_grader judges it and names the grader's own field.
    grader: Any
    hyperparameters: _ReinforcementHyperparameters | None = None


class _Method(StrictInput):
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: _Supervised | None = None
    dpo: _Dpo | None = None
    reinforcement: _Reinforcement | None = None


_METHOD_KEYS = {
    "supervised": ["batch_size", "learning_rate_multiplier", "n_epochs"],
    "dpo": ["batch_size", "learning_rate_multiplier", "n_epochs", "beta"],
    "reinforcement": [
        "batch_size",
        "learning_rate_multiplier",
        "n_epochs",
        "compute_multiplier",
        "eval_interval",
        "eval_samples",
        "reasoning_effort",
    ],
}
"""The hyperparameters each method takes, each ``"auto"`` when not given."""


class _Wandb(StrictInput):
    project: str
    name: str | None = None
    entity: str | None = None
    tags: list[str] | None = None


class _Integration(StrictInput):
    type: Literal["wandb"]
    wandb: _Wandb


class JobCreateBody(StrictInput):
    """``POST /v1/fine_tuning/jobs`` body, checked as OpenAI checks it."""

    model: Annotated[str, Field(min_length=1)]
    training_file: Annotated[str, Field(min_length=1)]
    validation_file: str | None = None
    hyperparameters: _Hyperparameters | None = None
    method: _Method | None = None
    suffix: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    seed: Annotated[int, Field(ge=0, le=2_147_483_647)] | None = None
    metadata: dict[str, str] | None = None
    integrations: list[_Integration] | None = None


def _job_or_404(request: Request, job_id: str) -> JobRecord:
    job = context(request).store.jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"Fine-tuning job {job_id} not found.", param="fine_tuning_job_id")
    return job


def _check_file(request: Request, file_id: str, param: str) -> None:
    record = context(request).store.files.get(file_id)
    if record is None:
        raise InvalidRequestError(
            f"invalid {param}: {file_id} (no such file; upload it with purpose='fine-tune').",
            param=param,
        )
    if record.purpose != "fine-tune":
        raise InvalidRequestError(
            f"invalid {param}: {file_id} has purpose {record.purpose!r}; fine-tuning needs a "
            "file uploaded with purpose='fine-tune'.",
            param=param,
        )


def _normalized_method(body: JobCreateBody) -> dict[str, Any]:
    method = body.method or _Method(type="supervised")
    for other in _METHOD_KEYS:
        if other != method.type and getattr(method, other) is not None:
            raise InvalidRequestError(
                f"method.{other} was given but method.type is {method.type!r}.",
                param=f"method.{other}",
            )
    section = getattr(method, method.type)
    stored: dict[str, Any] = {}
    if method.type == "reinforcement":
        if section is None:
            raise InvalidRequestError(
                "method.reinforcement is required when method.type is 'reinforcement': give "
                "it a grader, {'grader': {...}, 'hyperparameters': {...}}.",
                param="method.reinforcement",
            )
        try:
            stored["grader"] = check_grader(section.grader)
        except ConfigurationError as exc:
            raise InvalidRequestError(str(exc), param=exc.param, code="invalid_grader") from exc
    given = section.hyperparameters if section is not None else None
    if body.hyperparameters is not None and given is not None:
        raise InvalidRequestError(
            "hyperparameters (deprecated) and method hyperparameters were both given; put them "
            f"only in method.{method.type}.hyperparameters.",
            param="hyperparameters",
        )
    chosen = given if given is not None else body.hyperparameters
    where = f"method.{method.type}.hyperparameters" if given is not None else "hyperparameters"
    values = chosen.model_dump(exclude_none=True) if chosen is not None else {}
    hyper = {key: values.get(key, "auto") for key in _METHOD_KEYS[method.type]}
    if "reasoning_effort" in hyper and hyper["reasoning_effort"] == "auto":
        hyper["reasoning_effort"] = "default"  # it has no "auto": OpenAI shows "default"
    for key, value in hyper.items():
        try:
            check_hyperparameter(key, value)
        except ConfigurationError as exc:
            raise InvalidRequestError(
                f"Invalid value for '{where}.{key}': {exc}.", param=f"{where}.{key}"
            ) from exc
        limits = HYPERPARAMETER_RANGES.get(key)
        if isinstance(value, int) and limits is not None and limits.kind is float:
            hyper[key] = float(value)  # shown back as OpenAI shows it: 2 -> 2.0
    return {"type": method.type, method.type: {**stored, "hyperparameters": hyper}}


def _check_metadata(metadata: dict[str, str] | None) -> None:
    if metadata is None:
        return
    if len(metadata) > 16:
        raise InvalidRequestError(
            f"metadata has {len(metadata)} keys; at most 16 are allowed.", param="metadata"
        )
    for key, value in metadata.items():
        if len(key) > 64:
            raise InvalidRequestError(
                f"metadata key {key[:20]!r}... is longer than 64 characters.", param="metadata"
            )
        if len(value) > 512:
            raise InvalidRequestError(
                f"metadata[{key!r}] is longer than 512 characters.", param="metadata"
            )


@router.post(
    "/v1/fine_tuning/jobs",
    response_model=None,
    responses=answers(FineTuningJob),
    openapi_extra=json_body(JobCreateBody),
)
async def create_job(request: Request) -> dict[str, Any]:
    """Create a fine-tuning job; it starts in ``validating_files``."""
    ctx = context(request)
    body = await read_json(request, JobCreateBody)
    method = _normalized_method(body)
    if body.suffix is not None and not _SUFFIX.fullmatch(body.suffix):
        raise InvalidRequestError(
            f"suffix {body.suffix!r} may only hold letters, digits, '.', '_' and '-'.",
            param="suffix",
        )
    _check_metadata(body.metadata)
    target = ctx.catalog.base_for_training(body.model)
    _check_file(request, body.training_file, "training_file")
    if body.validation_file is not None:
        _check_file(request, body.validation_file, "validation_file")
    job = ctx.store.jobs.create(
        JobSpec(
            requested_model=body.model,
            model=target.model,
            base_model=target.base_model,
            init_adapter=str(target.init_adapter) if target.init_adapter else None,
            training_file=body.training_file,
            validation_file=body.validation_file,
            method=method,
            suffix=body.suffix,
            seed=body.seed,
            metadata=body.metadata,
            integrations=[i.model_dump(exclude_none=True) for i in body.integrations]
            if body.integrations is not None
            else None,
        )
    )
    ctx.store.events.add(job.id, "created", f"Created fine-tuning job: {job.id}")
    ctx.validator.notify()
    return job.to_api()


def _metadata_filter(request: Request) -> tuple[dict[str, str], bool]:
    pairs: dict[str, str] = {}
    null = False
    for key, value in request.query_params.multi_items():
        match = re.fullmatch(r"metadata\[(.+)\]", key)
        if match:
            pairs[match.group(1)] = value
        elif key == "metadata" and value == "null":
            null = True
    return pairs, null


# Read by _metadata_filter (FastAPI reads no deepObject), declared here for /openapi.json.
_METADATA_QUERY = {
    "parameters": [
        {
            "name": "metadata",
            "in": "query",
            "required": False,
            "style": "deepObject",
            "explode": True,
            "description": "metadata[key]=value keeps jobs whose metadata holds every pair; "
            "metadata=null keeps jobs without metadata.",
            "schema": {"type": "object", "additionalProperties": {"type": "string"}},
        }
    ]
}


@router.get(
    "/v1/fine_tuning/jobs",
    response_model=None,
    responses=answers(JobList),
    openapi_extra=_METADATA_QUERY,
)
def list_jobs(request: Request, limit: Limit = 20, after: After = None) -> dict[str, Any]:
    """List jobs, newest first (``after``, ``limit``, ``metadata[k]=v``)."""
    pairs, null = _metadata_filter(request)
    store = context(request).store
    jobs, has_more = page_after(
        after,
        lambda job_id: store.jobs.get(job_id) is not None,
        "fine-tuning job",
        lambda: store.jobs.list(
            after=after, limit=limit, metadata=pairs or None, null_metadata=null
        ),
    )
    return list_page([j.to_api() for j in jobs], has_more)


@router.get("/v1/fine_tuning/jobs/{job_id}", response_model=None, responses=answers(FineTuningJob))
def retrieve_job(request: Request, job_id: str) -> dict[str, Any]:
    """Return one job."""
    return _job_or_404(request, job_id).to_api()


def _change_status(
    request: Request,
    job_id: str,
    *,
    to: str,
    allowed: tuple[str, ...],
    action: str,
    done: str,
    event_key: str,
    event: str,
) -> dict[str, Any]:
    store = context(request).store
    job = _job_or_404(request, job_id)
    with store.db.transaction():
        moved = store.jobs.transition(job.id, to, expect=allowed, estimated_finish=None)
        if moved:
            # A user action happens once: a fresh key, never deduplicated.
            store.events.add(job.id, f"{event_key}-{secrets.token_hex(6)}", event)
    if not moved:
        current = _job_or_404(request, job_id)
        if current.status in TERMINAL_STATUSES:
            reason = f"it has already {'completed' if current.status == 'succeeded' else 'ended'}"
        else:
            reason = f"its status is {current.status!r}"
        raise InvalidRequestError(
            f"Cannot {action} job {job_id}: {reason}. Only a job that is "
            f"{' or '.join(allowed)} can be {done}.",
            param="fine_tuning_job_id",
            code="invalid_job_status",
        )
    return _job_or_404(request, job_id).to_api()


@router.post(
    "/v1/fine_tuning/jobs/{job_id}/cancel", response_model=None, responses=answers(FineTuningJob)
)
def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
    """Cancel a job that has not ended (a running job stops at its next step)."""
    return _change_status(
        request,
        job_id,
        to="cancelled",
        allowed=("validating_files", "queued", "running", "paused"),
        action="cancel",
        done="cancelled",
        event_key="cancelled",
        event="Fine-tuning job cancelled",
    )


@router.post(
    "/v1/fine_tuning/jobs/{job_id}/pause", response_model=None, responses=answers(FineTuningJob)
)
def pause_job(request: Request, job_id: str) -> dict[str, Any]:
    """Pause a queued or running job (a running one stops at its next step)."""
    return _change_status(
        request,
        job_id,
        to="paused",
        allowed=("queued", "running"),
        action="pause",
        done="paused",
        event_key="paused",
        event="Fine-tuning job paused",
    )


@router.post(
    "/v1/fine_tuning/jobs/{job_id}/resume", response_model=None, responses=answers(FineTuningJob)
)
def resume_job(request: Request, job_id: str) -> dict[str, Any]:
    """Resume a paused job: it goes back to the queue and continues from its last checkpoint."""
    return _change_status(
        request,
        job_id,
        to="queued",
        allowed=("paused",),
        action="resume",
        done="resumed",
        event_key="resumed",
        event="Fine-tuning job resumed",
    )


@router.get(
    "/v1/fine_tuning/jobs/{job_id}/events", response_model=None, responses=answers(EventList)
)
def list_events(
    request: Request, job_id: str, limit: Limit = 20, after: After = None
) -> dict[str, Any]:
    """List a job's events, newest first (``after``, ``limit``)."""
    job = _job_or_404(request, job_id)
    store = context(request).store

    def is_event(event_id: str) -> bool:
        row = store.db.query_one(
            "SELECT 1 FROM events WHERE id = ? AND job_id = ?", (event_id, job.id)
        )
        return row is not None

    events, has_more = page_after(
        after, is_event, "event", lambda: store.events.list(job.id, after=after, limit=limit)
    )
    return list_page([e.to_api() for e in events], has_more)


@router.get(
    "/v1/fine_tuning/jobs/{job_id}/checkpoints",
    response_model=None,
    responses=answers(CheckpointList),
)
def list_checkpoints(
    request: Request, job_id: str, limit: Limit = 10, after: After = None
) -> dict[str, Any]:
    """List a job's checkpoints, newest step first (``after``, ``limit``)."""
    job = _job_or_404(request, job_id)
    # One read of the whole (short) list: the cursor is looked up in what is paged.
    checkpoints, _ = context(request).store.models.list_checkpoints(job.id)
    if after is not None:
        ids = [c.id for c in checkpoints]
        if after not in ids:
            raise unknown_cursor(after, "checkpoint")
        checkpoints = checkpoints[ids.index(after) + 1 :]
    has_more = len(checkpoints) > limit
    checkpoints = checkpoints[:limit]
    return list_page([c.to_api() for c in checkpoints], has_more)
