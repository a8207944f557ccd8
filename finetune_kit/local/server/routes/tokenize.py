"""``/v1/tokenize`` (also ``/tokenize``): count tokens with a base model's own tokenizer.

An extension of the API (OpenAI has no such route). It answers vLLM's ``/tokenize`` shapes, so
a client written for vLLM works unchanged, and adds one for training data:

- ``{"model", "prompt", "add_special_tokens"?}``: the text's tokens (special tokens added by
  default, as vLLM does) -> ``{"count", "max_model_len", "tokens", "model"}``.
- ``{"model", "messages", "tools"?, "add_generation_prompt"?}``: the conversation rendered
  with the model's chat template, as chat completions render it (the generation prompt added
  by default) -> the same answer.
- ``{"model", "examples", "method"?}``: fine-tuning examples (``supervised``, the default, or
  ``dpo``), each rendered and counted exactly as the local trainer renders it, so a count here
  is what a job bills for the example per epoch (its ``trained_tokens``) ->
  ``{"object": "list", "model", "max_model_len", "data": [{"count", "trained"}, ...]}``. An
  example the trainer cannot read gets ``{"count": null, "trained": 0, "error": {"message",
  "param"}}`` in its place, not a failed request. Preflight on the local backend counts with
  this.

``model`` is any name chat completions take (a base model, an alias such as ``gpt-4o-mini``, a
fine-tuned model: its base model's tokenizer); without one, the server's default base model.
``max_model_len`` is the model's context length: training cuts a longer example off.

Only the tokenizer is loaded (never the weights), once per base model.

Example:
    >>> sorted(route.path for route in router.routes)
    ['/tokenize', '/v1/tokenize']
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ....data.rules import find_lone_surrogates
from ....errors import TrainingDataError
from ...api_errors import InvalidRequestError
from ...engine.chat_format import ChatRenderer, MessageFormatError, normalize_messages
from ...engine.registry import ModelRegistry
from ...engine.training_data import load_preference, load_supervised
from ..context import ServerContext
from .common import StrictInput, context, read_json
from .schemas import answers, json_body

__all__ = ["MAX_EXAMPLES", "TokenizeAnswer", "TokenizeBody", "router"]

router = APIRouter()

MAX_EXAMPLES = 10_000
"""The most examples one request may count."""


class TokenizeBody(StrictInput):
    """``POST /v1/tokenize`` body: one of ``prompt``, ``messages`` or ``examples``."""

    model: Annotated[str, Field(min_length=1)] | None = None
    prompt: str | None = None
    add_special_tokens: bool | None = None
    messages: Annotated[list[dict[str, Any]], Field(min_length=1)] | None = None
    tools: list[dict[str, Any]] | None = None
    add_generation_prompt: bool | None = None
    examples: Annotated[list[dict[str, Any]], Field(max_length=MAX_EXAMPLES)] | None = None
    method: Literal["supervised", "dpo"] | None = None


class _Lenient(BaseModel):
    # Answers are lenient: a field added later breaks no reader of the schema.
    model_config = ConfigDict(extra="allow")


class _CountError(_Lenient):
    message: str
    param: str | None = None


class _ExampleCountAnswer(_Lenient):
    count: int | None
    trained: int
    error: _CountError | None = None


class TokenizeAnswer(_Lenient):
    """The tokens of a prompt or conversation, or one count per example (``data``)."""

    model: str
    max_model_len: int | None
    count: int | None = None
    tokens: list[int] | None = None
    object: Literal["list"] | None = None
    data: list[_ExampleCountAnswer] | None = None


class _Tokenizer:
    """A base model's tokenizer, its renderer and context length; one thread at a time."""

    def __init__(self, tokenizer: Any, max_model_len: int | None) -> None:
        self.tokenizer = tokenizer
        self.renderer = ChatRenderer(tokenizer)
        self.max_model_len = max_model_len
        # A fast tokenizer shared by threads can fail with "Already borrowed".
        self.lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _load_folder(folder: str) -> _Tokenizer:
    from transformers import AutoConfig, AutoTokenizer

    from ...engine._quiet import quiet_loading

    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        config = AutoConfig.from_pretrained(folder)
    return _Tokenizer(tokenizer, getattr(config, "max_position_embeddings", None))


@functools.cache
def _tiny() -> _Tokenizer:
    from ...engine.tiny_model import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    return _Tokenizer(tokenizer, int(tokenizer.model_max_length))


def _tokenizer_of(registry: ModelRegistry, base_model: str) -> _Tokenizer:
    """The tokenizer the trainer and chat use for a base model, without its weights."""
    source = registry.source(base_model)
    if source.kind == "tiny":
        return _tiny()
    if source.kind == "hf":
        assert source.path is not None
        return _load_folder(str(source.path))
    # A GGUF model: its dequantized copy (made once, shared with training) holds the tokenizer.
    gguf = source.path if source.path is not None else registry.default_gguf_path()
    return _load_folder(str(Path(registry.dequantized_folder(gguf, source.name))))


def _check_text(value: Any, param: str) -> None:
    found = find_lone_surrogates(value)
    if found:
        path, escape = found[0]
        where = f"{param}{path or ''}"  # a string's path is empty, a list item's "[i]..."
        raise InvalidRequestError(
            f"Invalid value for '{where}': it holds {escape}, half of a surrogate pair, which no "
            "tokenizer can read; remove it or write the whole character.",
            param=where,
        )


def _choose(body: TokenizeBody) -> str:
    given = [name for name in ("prompt", "messages", "examples") if getattr(body, name) is not None]
    if len(given) != 1:
        raise InvalidRequestError(
            "Give exactly one of 'prompt', 'messages' or 'examples' "
            f"({', '.join(repr(g) for g in given) or 'none'} given).",
            param=given[-1] if given else "messages",
        )
    extra = {
        "prompt": ("add_special_tokens",),
        "messages": ("tools", "add_generation_prompt"),
        "examples": ("method",),
    }
    for form, options in extra.items():
        if form == given[0]:
            continue
        for option in options:
            if getattr(body, option) is not None:
                raise InvalidRequestError(
                    f"'{option}' goes with '{form}', not with '{given[0]}'.", param=option
                )
    return given[0]


def _tokens(tok: _Tokenizer, body: TokenizeBody, form: str) -> list[int]:
    if form == "prompt":
        assert body.prompt is not None
        _check_text(body.prompt, "prompt")
        add = True if body.add_special_tokens is None else body.add_special_tokens
        with tok.lock:
            return list(tok.tokenizer(body.prompt, add_special_tokens=add)["input_ids"])
    assert body.messages is not None
    _check_text(body.messages, "messages")
    _check_text(body.tools, "tools")
    try:
        messages = normalize_messages(body.messages, body.tools)
    except MessageFormatError as exc:
        raise InvalidRequestError(
            f"Invalid value for '{exc.field}': {exc}.", param=exc.field
        ) from exc
    prompt = True if body.add_generation_prompt is None else body.add_generation_prompt
    with tok.lock:
        return tok.renderer.encode(tok.renderer.render_text(messages, generation_prompt=prompt))


def _count_example(tok: _Tokenizer, example: dict[str, Any], method: str) -> dict[str, Any]:
    found = find_lone_surrogates(example)
    if found:
        path, escape = found[0]
        message = f"it holds {escape}, half of a surrogate pair, which no tokenizer can read"
        return {"count": None, "trained": 0, "error": {"message": message, "param": path}}
    line = json.dumps(example, ensure_ascii=False).encode("utf-8")
    try:
        with tok.lock:
            if method == "dpo":
                pair = load_preference(line, tok.renderer, param="example")[0]
                count, trained = pair.n_tokens, pair.chosen.n_trained + pair.rejected.n_trained
            else:
                item = load_supervised(line, tok.renderer, param="example")[0]
                count, trained = item.n_tokens, item.n_trained
    except TrainingDataError as exc:
        # The trainer's own words, less the "example line 1:" it puts before them.
        text = str(exc).removeprefix("example line 1: ")
        return {"count": None, "trained": 0, "error": {"message": text, "param": exc.field}}
    except RecursionError:
        message = "it is nested too deeply to render"
        return {"count": None, "trained": 0, "error": {"message": message, "param": None}}
    return {"count": count, "trained": trained}


def _count_examples(
    tok: _Tokenizer, examples: Sequence[dict[str, Any]], method: str
) -> list[dict[str, Any]]:
    return [_count_example(tok, example, method) for example in examples]


def _tokenize(ctx: ServerContext, body: TokenizeBody) -> dict[str, Any]:
    form = _choose(body)
    base = ctx.catalog.chat_target(body.model or ctx.registry.default_model).base_model
    tok = _tokenizer_of(ctx.registry, base)
    if form == "examples":
        assert body.examples is not None
        data = _count_examples(tok, body.examples, body.method or "supervised")
        return {
            "object": "list",
            "model": base,
            "max_model_len": tok.max_model_len,
            "data": data,
        }
    try:
        tokens = _tokens(tok, body, form)
    except RecursionError as exc:
        raise InvalidRequestError(
            f"Invalid value for '{form}': it is nested too deeply to render.", param=form
        ) from exc
    return {
        "count": len(tokens),
        "max_model_len": tok.max_model_len,
        "tokens": tokens,
        "model": base,
    }


async def _serve(request: Request) -> dict[str, Any]:
    body = await read_json(request, TokenizeBody)
    # Loading a tokenizer the first time, and rendering many examples, both take a while.
    return await run_in_threadpool(_tokenize, context(request), body)


@router.post(
    "/v1/tokenize",
    response_model=None,
    responses=answers(TokenizeAnswer),
    openapi_extra=json_body(TokenizeBody),
)
async def tokenize(request: Request) -> dict[str, Any]:
    """Count tokens with a base model's own tokenizer (see the module docstring)."""
    return await _serve(request)


@router.post("/tokenize", response_model=None, include_in_schema=False)
async def tokenize_vllm_path(request: Request) -> dict[str, Any]:
    """The same, at vLLM's path (outside ``/v1``)."""
    return await _serve(request)
