"""``/v1/chat/completions``: OpenAI's chat completions, non-streaming and streaming (SSE).

Base models (and their aliases), fine-tuned models and checkpoints are all served; an unknown
model is a 404 ``model_not_found``, as on OpenAI. Parameters that would change the response's
shape and that the local backend cannot honour (legacy ``functions``, JSON mode, logprobs, audio)
are refused with a 400 naming the parameter; harmless ones (``user``, ``store``, penalties...) are
accepted and ignored.

Tool calling works as a model fine-tuned on tool-call examples learned it: the request's
``tools`` are written into the prompt, and the conversation's tool calls and ``tool`` messages
into its text, exactly as training writes an example (``chat_format.normalize_messages``); the
answer's ``<tool_call>`` blocks come back as ``message.tool_calls`` (``chat_service``,
``tool_parsing``). ``tool_choice`` ``"auto"`` (the default) and ``"none"`` (the tools are left
out of the prompt and the answer is plain text) are honoured; ``"required"`` and a named
function are refused with a 400 naming ``tool_choice``, since nothing here can force a call.
``parallel_tool_calls=false`` returns only a choice's first call.

Example:
    >>> [route.path for route in router.routes]
    ['/v1/chat/completions']
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    WithJsonSchema,
    model_validator,
)
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from ...api_errors import ApiError, InvalidRequestError, error_body
from ...store.ids import new_id
from ..chat_service import ChatParams, ChatService, ChoiceToolCall, ToolOptions
from .common import StrictInput, context, read_json
from .schemas import ChatCompletion, answers, json_body

__all__ = ["ChatCompletionBody", "router"]

router = APIRouter()

logger = logging.getLogger("finetune_kit.local.server")

_UNSUPPORTED = {
    "functions": "legacy function calling (use 'tools')",
    "function_call": "legacy function calling (use 'tool_choice')",
    "audio": "audio output",
    "modalities": "audio output",
    "prediction": "predicted outputs",
    "top_logprobs": "log probabilities",
    "web_search_options": "web search",
}


# What the schema declares for a parameter that only some values pass: validation takes any
# value, so that the check after it can say why the others are refused.
_ONLY_NULL = WithJsonSchema({"type": "null", "description": "Not supported: leave it out."})


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Annotated[str, WithJsonSchema({"const": "text"})]
    text: str | None = None


class _FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    arguments: str


class _ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    type: str = "function"
    function: _FunctionCall


class _Message(BaseModel):
    # Lenient: clients send back messages they received, with keys such as "refusal".
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[_TextPart] | None = None
    name: str | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None
    function_call: _FunctionCall | None = None

    def to_engine(self, index: int) -> dict[str, Any]:
        """Return the message as the generator takes it (text parts joined)."""
        if self.content is None or isinstance(self.content, str):
            text = self.content or ""
        else:
            pieces = []
            for part_index, part in enumerate(self.content):
                if part.type != "text":
                    raise InvalidRequestError(
                        f"messages[{index}].content[{part_index}] is a {part.type!r} part; the "
                        "local backend serves text models and accepts only text parts.",
                        param=f"messages[{index}].content[{part_index}].type",
                    )
                pieces.append(part.text or "")
            text = "".join(pieces)
        message: dict[str, Any] = {"role": self.role, "content": text}
        if self.name is not None:
            message["name"] = self.name
        # Training renders these into the text: the history must carry them the same way.
        if self.tool_calls:
            message["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.function_call is not None:
            message["function_call"] = self.function_call.model_dump()
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


class _FunctionDefinition(StrictInput):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _Tool(StrictInput):
    type: Literal["function"]
    function: _FunctionDefinition
    _as_sent: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_as_sent(cls, data: Any, handler: ModelWrapValidatorHandler[_Tool]) -> _Tool:
        tool = handler(data)
        # The prompt gets the declaration exactly as sent (its keys' order included), as
        # training writes the example's: a dump of the model would reorder and fill it.
        tool._as_sent = dict(data) if isinstance(data, dict) else tool.model_dump()
        return tool

    def declaration(self) -> dict[str, Any]:
        """The declaration as the client sent it."""
        return self._as_sent


class _FunctionName(StrictInput):
    name: str


class _NamedToolChoice(StrictInput):
    type: Literal["function"]
    function: _FunctionName


class _StreamOptions(StrictInput):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatCompletionBody(StrictInput):
    """``POST /v1/chat/completions`` body."""

    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[_Message], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    # OpenAI's range: a signed 64-bit integer.
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    # Accepted and ignored: they do not change what a client can parse.
    user: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    logprobs: Annotated[bool | None, WithJsonSchema({"enum": [False, None]})] = None
    response_format: Annotated[
        dict[str, Any] | None,
        WithJsonSchema(
            {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {"type": {"const": "text"}},
                        "required": ["type"],
                    },
                    {"type": "null"},
                ]
            }
        ),
    ] = None
    tools: Annotated[list[_Tool], Field(min_length=1)] | None = None
    tool_choice: Literal["none", "auto", "required"] | _NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # Refused (see _UNSUPPORTED); declared so the error names them clearly.
    functions: Annotated[Any, _ONLY_NULL] = None
    function_call: Annotated[Any, _ONLY_NULL] = None
    audio: Annotated[Any, _ONLY_NULL] = None
    modalities: Annotated[Any, _ONLY_NULL] = None
    prediction: Annotated[Any, _ONLY_NULL] = None
    top_logprobs: Annotated[Any, _ONLY_NULL] = None
    web_search_options: Annotated[Any, _ONLY_NULL] = None


def _check_supported(body: ChatCompletionBody) -> None:
    for name, feature in _UNSUPPORTED.items():
        if getattr(body, name) is not None:
            raise InvalidRequestError(
                f"The local backend does not support {feature} ('{name}'); remove it.",
                param=name,
            )
    if body.logprobs:
        raise InvalidRequestError(
            "The local backend does not return log probabilities; set logprobs to false.",
            param="logprobs",
        )
    if body.response_format is not None and body.response_format.get("type") != "text":
        raise InvalidRequestError(
            "The local backend supports only response_format={'type': 'text'}.",
            param="response_format",
        )
    if body.stream_options is not None and not body.stream:
        raise InvalidRequestError(
            "stream_options is only allowed when stream is true.", param="stream_options"
        )
    _check_tools(body)


def _check_tools(body: ChatCompletionBody) -> None:
    if body.tools is None:
        for name in ("tool_choice", "parallel_tool_calls"):
            if getattr(body, name) is not None:
                raise InvalidRequestError(
                    f"Invalid value for '{name}': '{name}' is only allowed when 'tools' are "
                    "specified.",
                    param=name,
                )
        return
    seen: set[str] = set()
    for index, tool in enumerate(body.tools):
        if tool.function.name in seen:
            raise InvalidRequestError(
                f"Two tools are named {tool.function.name!r}: tool names must be unique.",
                param=f"tools[{index}].function.name",
            )
        seen.add(tool.function.name)
    if body.tool_choice is not None and body.tool_choice not in ("auto", "none"):
        raise InvalidRequestError(
            "The local backend supports tool_choice 'auto' and 'none': it cannot force a tool "
            "call. Use 'auto' (a model fine-tuned on tool calls makes them when it should).",
            param="tool_choice",
        )


def _tool_options(body: ChatCompletionBody) -> ToolOptions | None:
    if body.tools is None:
        return None
    if body.tool_choice == "none":
        logger.debug("tool_choice is 'none': %d tool(s) left out of the prompt", len(body.tools))
        return None
    parallel = True if body.parallel_tool_calls is None else body.parallel_tool_calls
    return ToolOptions([tool.declaration() for tool in body.tools], parallel=parallel)


def _params(body: ChatCompletionBody) -> ChatParams:
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    # max_completion_tokens replaced max_tokens; when a client sends both, it is the one used.
    newer = body.max_completion_tokens is not None
    return ChatParams(
        max_tokens=body.max_completion_tokens if newer else body.max_tokens,
        max_tokens_param="max_completion_tokens" if newer else "max_tokens",
        temperature=body.temperature,
        top_p=body.top_p,
        stop=stop,
        seed=body.seed,
        n=body.n or 1,
    )


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


_STREAM = {"text/event-stream": {"schema": {"type": "string"}}}


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses=answers(ChatCompletion, _STREAM),
    openapi_extra=json_body(ChatCompletionBody),
)
async def create_chat_completion(request: Request) -> dict[str, Any] | StreamingResponse:
    """Generate a chat completion with a base, fine-tuned or checkpoint model."""
    ctx = context(request)
    body = await read_json(request, ChatCompletionBody)
    _check_supported(body)
    target = ctx.catalog.chat_target(body.model)
    messages = [m.to_engine(i) for i, m in enumerate(body.messages)]
    params = _params(body)
    tools = _tool_options(body)
    service = ChatService(await run_in_threadpool(ctx.generator))
    completion_id = new_id("chatcmpl")
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = await run_in_threadpool(service.start_stream, target, messages, params, tools)
        return StreamingResponse(
            _sse(chunks, completion_id, created, target.name, include_usage),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )
    result = await run_in_threadpool(service.complete, target, messages, params, tools)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": target.name,
        "system_fingerprint": "fp_local",
        "service_tier": "default",
        "choices": [
            {
                "index": index,
                "message": _message(choice.text, choice.tool_calls),
                "finish_reason": choice.finish_reason,
                "logprobs": None,
            }
            for index, choice in enumerate(result.choices)
        ],
        "usage": _usage(result.prompt_tokens, result.completion_tokens),
    }


def _tool_call(call: ChoiceToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _message(content: str | None, calls: tuple[ChoiceToolCall, ...]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content,
        "refusal": None,
        "annotations": [],
    }
    if calls:
        message["tool_calls"] = [_tool_call(call) for call in calls]
    return message


def _sse(
    pieces: Iterator[Any], completion_id: str, created: int, model: str, include_usage: bool
) -> Iterator[str]:
    """Format stream pieces as OpenAI's ``chat.completion.chunk`` server-sent events."""

    def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> str:
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_local",
            "service_tier": "default",
            "choices": choices,
        }
        if include_usage:
            payload["usage"] = usage
        return f"data: {json.dumps(payload)}\n\n"

    started: set[int] = set()
    try:
        for piece in pieces:
            if piece.usage is not None:
                if include_usage:
                    yield chunk([], _usage(*piece.usage))
                continue
            if piece.index not in started:
                if not (piece.text or piece.tool_calls or piece.finish_reason):
                    continue  # text held back (it may be a tool call): nothing to say yet
                started.add(piece.index)
                # As OpenAI: content null in the first delta of an answer that is only calls.
                first_content = None if piece.tool_calls and not piece.text else ""
                yield chunk(
                    [
                        {
                            "index": piece.index,
                            "delta": {
                                "role": "assistant",
                                "content": first_content,
                                "refusal": None,
                            },
                            "finish_reason": None,
                            "logprobs": None,
                        }
                    ]
                )
            if piece.text:
                yield chunk(
                    [
                        {
                            "index": piece.index,
                            "delta": {"content": piece.text},
                            "finish_reason": None,
                            "logprobs": None,
                        }
                    ]
                )
            for call_index, call in enumerate(piece.tool_calls):
                # One chunk per call, its arguments whole: clients accumulate by index.
                yield chunk(
                    [
                        {
                            "index": piece.index,
                            "delta": {"tool_calls": [{"index": call_index, **_tool_call(call)}]},
                            "finish_reason": None,
                            "logprobs": None,
                        }
                    ]
                )
            if piece.finish_reason is not None:
                yield chunk(
                    [
                        {
                            "index": piece.index,
                            "delta": {},
                            "finish_reason": piece.finish_reason,
                            "logprobs": None,
                        }
                    ]
                )
    except ApiError as exc:
        yield f"data: {json.dumps(exc.body())}\n\n"
    except Exception as exc:
        # The status line is sent already: report the failure in the stream, as OpenAI does.
        logger.exception("chat stream failed")
        body = error_body(f"Generation failed: {type(exc).__name__}: {exc}", type="server_error")
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"
