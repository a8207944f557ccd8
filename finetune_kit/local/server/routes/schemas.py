"""What the local backend's routes declare in ``/openapi.json``: bodies, answers, errors.

The routes read their bodies themselves (``read_json`` turns every problem into OpenAI's 400
naming the parameter), so FastAPI never sees a body parameter and would declare none. Each route
declares its body here instead: ``json_body(Model)`` names the same pydantic model that
``read_json`` validates with, so the schema and the check cannot drift apart;
``multipart_body(...)`` describes a form. ``answers(Model)`` declares the 200 answer by a model
of the JSON the route returns (lenient, like the ``openai`` client's own types: a field added
later breaks no reader). Every operation also answers errors in OpenAI's shape
(``ErrorResponse``), which ``LocalApp`` adds to each one as ``4XX``.

Example:
    >>> body = json_body(ErrorResponse)["requestBody"]["content"]["application/json"]
    >>> body["schema"]
    {'$ref': '#/components/schemas/ErrorResponse'}
    >>> sorted(answers(FileObject)[200])
    ['description', 'model']
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "REQUEST_MODELS",
    "ChatCompletion",
    "Checkpoint",
    "CheckpointList",
    "DeletedObject",
    "ErrorResponse",
    "Event",
    "EventList",
    "FileList",
    "FileObject",
    "FineTuningJob",
    "JobList",
    "Model",
    "ModelList",
    "Upload",
    "UploadPart",
    "answers",
    "json_body",
    "multipart_body",
]

REQUEST_MODELS: dict[str, type[BaseModel]] = {}
"""Every model a route declared with ``json_body``, by component name."""


class _Answer(BaseModel):
    # Outputs are lenient: a field the server adds later breaks no client reading the schema.
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Answer):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(_Answer):
    """The body of every error answer."""

    error: ErrorDetail


class FileObject(_Answer):
    """A file (OpenAI's ``FileObject``)."""

    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str
    status_details: str | None = None
    expires_at: int | None = None


class _Page(_Answer):
    object: Literal["list"]
    has_more: bool
    first_id: str | None
    last_id: str | None


class FileList(_Page):
    """A page of files, in the order asked for."""

    data: list[FileObject]


class DeletedObject(_Answer):
    """The answer to a delete (a file or a model)."""

    id: str
    object: str
    deleted: bool


class Upload(_Answer):
    """An upload (OpenAI's ``Upload``), with its file once completed."""

    id: str
    object: Literal["upload"]
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: str
    file: FileObject | None = None


class UploadPart(_Answer):
    """One part of an upload."""

    id: str
    object: Literal["upload.part"]
    created_at: int
    upload_id: str


class JobError(_Answer):
    """Why a job failed."""

    code: str | None = None
    message: str
    param: str | None = None


class Hyperparameters(_Answer):
    """A job's hyperparameters: ``"auto"`` until training resolves them."""

    batch_size: int | str | None = None
    learning_rate_multiplier: float | str | None = None
    n_epochs: int | str | None = None


class FineTuningJob(_Answer):
    """A fine-tuning job (OpenAI's ``FineTuningJob``); ``status`` is an open string."""

    id: str
    object: Literal["fine_tuning.job"]
    created_at: int
    error: JobError | None
    fine_tuned_model: str | None
    finished_at: int | None
    hyperparameters: Hyperparameters
    model: str
    organization_id: str
    result_files: list[str]
    seed: int | None
    status: str
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    estimated_finish: int | None = None
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None
    method: dict[str, Any] | None = None
    user_provided_suffix: str | None = None


class JobList(_Page):
    """A page of jobs, newest first."""

    data: list[FineTuningJob]


class Event(_Answer):
    """A job event."""

    id: str
    object: Literal["fine_tuning.job.event"]
    created_at: int
    level: str
    message: str
    type: str
    data: dict[str, Any]


class EventList(_Page):
    """A page of a job's events, newest first."""

    data: list[Event]


class Checkpoint(_Answer):
    """A job's checkpoint (OpenAI's ``FineTuningJobCheckpoint``)."""

    id: str
    object: Literal["fine_tuning.job.checkpoint"]
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: dict[str, Any]


class CheckpointList(_Page):
    """A page of a job's checkpoints, newest step first."""

    data: list[Checkpoint]


class Model(_Answer):
    """A model: base model, alias, fine-tuned model or checkpoint."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(_Answer):
    """Every model."""

    object: Literal["list"]
    data: list[Model]


class CompletionUsage(_Answer):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionFunctionCall(_Answer):
    name: str
    arguments: str


class CompletionToolCall(_Answer):
    id: str
    type: Literal["function"]
    function: CompletionFunctionCall


class CompletionMessage(_Answer):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = None
    tool_calls: list[CompletionToolCall] | None = None


class CompletionChoice(_Answer):
    index: int
    message: CompletionMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(_Answer):
    """A chat completion (``stream`` false); a stream answers ``text/event-stream`` chunks."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage
    system_fingerprint: str | None = None
    service_tier: str | None = None


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """Declare a route's JSON body (``openapi_extra``) by the model ``read_json`` checks it with.

    Args:
        model: The body's model; its name is its component's name, unique among bodies.

    Returns:
        The ``openapi_extra`` of the route.
    """
    REQUEST_MODELS[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def multipart_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """Declare a route's ``multipart/form-data`` body (``openapi_extra``).

    Args:
        properties: The form's fields and their JSON schemas (a file is
            ``{"type": "string", "format": "binary"}``).
        required: The fields that must be sent.

    Returns:
        The ``openapi_extra`` of the route.
    """
    schema = {"type": "object", "properties": properties, "required": required}
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }


def answers(
    model: type[BaseModel], content: dict[str, Any] | None = None
) -> dict[int | str, dict[str, Any]]:
    """Declare a route's 200 answer (``responses``) by a model of its JSON.

    Args:
        model: The model of the JSON answer.
        content: Other media types the route may answer with, such as
            ``{"text/event-stream": {"schema": {"type": "string"}}}``.

    Returns:
        The ``responses`` of the route (use it with ``response_model=None``).
    """
    answer: dict[str, Any] = {"model": model, "description": model.__doc__ or "Success."}
    if content:
        answer["content"] = content
    return {200: answer}
