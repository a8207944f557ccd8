"""A :class:`GraderModel` over any ``openai`` client: OpenAI, Azure, the local backend...

It only calls the client it is given (``client.chat.completions.create``): no network code of
finetune_kit's own, and the client's own retry settings apply.

Examples:
    >>> import openai
    >>> judge = OpenAIGraderModel(openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9"))
    >>> judge.structured_outputs is None
    True
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import openai

from .model import GraderModelReply, GraderModelRequest
from .result import TokenUsage

__all__ = ["OpenAIGraderModel"]

logger = logging.getLogger("finetune_kit")


class OpenAIGraderModel:
    """Ask judge models through an ``openai`` client's chat completions.

    The answer's JSON schema is sent as ``response_format`` (structured outputs). A server
    that refuses it (a 400 naming ``response_format``, as the local backend does) is asked
    again without it, with the schema described in a last system message instead, and is
    asked that way from then on. A grader's ``sampling_params`` map to ``temperature``,
    ``top_p``, ``seed``, ``max_completion_tokens`` and ``reasoning_effort``.

    Args:
        client: An ``openai.OpenAI`` or anything with ``.chat.completions.create``.
        model: Ask this model instead of the one each grader names (for instance a local
            model standing in for ``gpt-4o-2024-08-06``).
        structured_outputs: True to always send the schema as ``response_format``, False to
            never send it, None (default) to find out on the first call.
    """

    def __init__(
        self, client: Any, *, model: str | None = None, structured_outputs: bool | None = None
    ) -> None:
        self.client = client
        self.model = model
        self.structured_outputs = structured_outputs
        self._lock = threading.Lock()

    def complete(self, request: GraderModelRequest) -> GraderModelReply:
        """Ask the judge; see the class docstring for how the answer's shape is requested."""
        structured = self.structured_outputs
        if request.json_schema is not None and structured is not False:
            try:
                return self._create(request, structured=True)
            except openai.BadRequestError as exc:
                if structured is True or not _about_response_format(exc):
                    raise
                with self._lock:
                    self.structured_outputs = False
                logger.debug(
                    "grader model: the server refused response_format (%s); describing the "
                    "answer's schema in the prompt instead",
                    exc,
                )
        return self._create(request, structured=False)

    def _create(self, request: GraderModelRequest, *, structured: bool) -> GraderModelReply:
        messages = [dict(message) for message in request.messages]
        kwargs: dict[str, Any] = {}
        if request.json_schema is not None:
            if structured:
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": dict(request.json_schema),
                }
            else:
                messages.append({"role": "system", "content": _describe(request.json_schema)})
        params = request.sampling_params
        if params is not None:
            for name, wire in (
                ("temperature", "temperature"),
                ("top_p", "top_p"),
                ("seed", "seed"),
                ("max_completions_tokens", "max_completion_tokens"),
                ("reasoning_effort", "reasoning_effort"),
            ):
                value = getattr(params, name)
                if value is not None:
                    kwargs[wire] = value
        completion = self.client.chat.completions.create(
            model=self.model or request.model, messages=messages, **kwargs
        )
        choice = completion.choices[0]
        message = choice.message
        usage = completion.usage
        tokens = None
        if usage is not None:
            details = getattr(usage, "prompt_tokens_details", None)
            tokens = TokenUsage(
                prompt_tokens=usage.prompt_tokens or 0,
                completion_tokens=usage.completion_tokens or 0,
                total_tokens=usage.total_tokens or 0,
                cached_tokens=(getattr(details, "cached_tokens", None) or 0) if details else 0,
            )
        return GraderModelReply(
            text=message.content or "",
            model=completion.model or request.model,
            usage=tokens,
            refusal=getattr(message, "refusal", None),
        )

    def __repr__(self) -> str:
        return f"OpenAIGraderModel(model={self.model!r})"


def _about_response_format(exc: openai.BadRequestError) -> bool:
    param = getattr(exc, "param", None)
    return param == "response_format" or "response_format" in str(exc)


def _describe(json_schema: Any) -> str:
    schema = json_schema.get("schema", json_schema)
    return (
        "Answer with one JSON object and nothing else, matching this JSON schema:\n"
        + json.dumps(schema)
    )
