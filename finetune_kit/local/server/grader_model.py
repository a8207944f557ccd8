"""The judge of model graders on the local backend: the server's own chat, as a ``GraderModel``.

``score_model`` and ``label_model`` graders run by ``/v1/fine_tuning/alpha/graders/run`` ask a
model the server serves (a base model, an alias such as ``gpt-4o-mini``, a fine-tuned model or
a checkpoint), through the same chat service as ``/v1/chat/completions``: no HTTP round trip,
the same generator, the same errors. OpenAI's grader objects name only a ``model`` (no endpoint),
so a grader cannot send its questions anywhere else; :func:`check_models` refuses a model the
server does not serve before anything runs.

The local models take no ``response_format``: the answer's JSON schema is described in a last
system message instead, and the grader reads the JSON out of the answer. Content parts other
than text (images, audio) cannot be shown to a text model: such a question fails, which the
grader reports as ``model_grader_server_error``.

Example:
    >>> from finetune_kit.graders import parse_grader
    >>> grader = parse_grader({"type": "score_model", "name": "judge", "model": "gpt-4o-mini",
    ...                        "input": [{"role": "user", "content": "{{sample.output_text}}"}]})
    >>> list(graded_models(grader))
    [('grader.model', 'gpt-4o-mini')]
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from ...graders.model import GraderModelReply, GraderModelRequest
from ...graders.result import TokenUsage
from ...graders.specs import GraderSpec, MultiGrader
from ..api_errors import ApiError, InvalidRequestError
from .catalog import ModelCatalog
from .chat_service import ChatParams, ChatService
from .context import ServerContext

__all__ = ["ServedGraderModel", "check_models", "graded_models"]


def graded_models(spec: GraderSpec) -> Iterator[tuple[str, str]]:
    """Yield ``(param, model)`` for each judge model a grader names, a multi grader's included."""
    if isinstance(spec, MultiGrader):
        for key, sub in spec.graders.items():
            model = getattr(sub, "model", None)
            if isinstance(model, str):
                yield f"grader.graders.{key}.model", model
        return
    model = getattr(spec, "model", None)
    if isinstance(model, str):
        yield "grader.model", model


def check_models(spec: GraderSpec, catalog: ModelCatalog) -> None:
    """Refuse a grader whose judge model this server does not serve.

    Raises:
        InvalidRequestError: ``model_not_found``, ``param`` naming the grader's field.
    """
    for param, model in graded_models(spec):
        try:
            catalog.chat_target(model)
        except ApiError as exc:
            raise InvalidRequestError(
                f"Invalid value for '{param}': the local backend does not serve the model "
                f"{model!r}, and a grader's judge is a model it serves (a base model, an alias "
                "such as gpt-4o-mini, a fine-tuned model or a checkpoint: GET /v1/models lists "
                "them).",
                param=param,
                code="model_not_found",
            ) from exc


def _text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    pieces = []
    for part in content or ():
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind != "text":
            raise ValueError(
                f"message {index} holds a {kind!r} part; the local backend serves text models, "
                "so a grader's judge here reads text parts only"
            )
        pieces.append(str(part.get("text", "")))
    return "".join(pieces)


def _described(json_schema: Mapping[str, Any]) -> str:
    schema = json_schema.get("schema", json_schema)
    return (
        "Answer with one JSON object and nothing else, matching this JSON schema:\n"
        + json.dumps(schema)
    )


class ServedGraderModel:
    """A ``GraderModel`` that asks the models this server serves, through its chat service.

    Args:
        context: The running server's shared state (its catalog and generator).
    """

    def __init__(self, context: ServerContext) -> None:
        self._context = context

    def complete(self, request: GraderModelRequest) -> GraderModelReply:
        """Ask the judge; errors (an unknown model, a prompt too long) propagate to the grader."""
        target = self._context.catalog.chat_target(request.model)
        messages: list[dict[str, Any]] = [
            {"role": message["role"], "content": _text(message.get("content"), index)}
            for index, message in enumerate(request.messages)
        ]
        if request.json_schema is not None:
            messages.append({"role": "system", "content": _described(request.json_schema)})
        sampling = request.sampling_params
        params = ChatParams(
            max_tokens=sampling.max_completions_tokens if sampling else None,
            max_tokens_param="max_completions_tokens",
            temperature=sampling.temperature if sampling else None,
            top_p=sampling.top_p if sampling else None,
            seed=sampling.seed if sampling else None,
        )
        service = ChatService(self._context.generator())
        result = service.complete(target, messages, params)
        choice = result.choices[0]
        usage = TokenUsage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            total_tokens=result.prompt_tokens + result.completion_tokens,
        )
        return GraderModelReply(text=choice.text or "", model=target.name, usage=usage)

    def __repr__(self) -> str:
        return "ServedGraderModel()"
