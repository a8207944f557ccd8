"""The vLLM contract: what the local backend sends a vLLM server, and how it maps the answers.

CI has no GPU, so no vLLM: a stand-in server here accepts exactly the requests vLLM's OpenAI
server accepts for what the backend uses (``/health``, ``/v1/load_lora_adapter``,
``/v1/unload_lora_adapter``, ``/v1/chat/completions``; strict bodies: an unknown field, a value
out of vLLM's ranges, a model that is neither the served base nor a loaded adapter, an adapter
loaded twice or a folder without ``adapter_config.json`` is an error), answers as vLLM answers
(JSON and server-sent events, usage, finish reasons), and records every request. Each test ends
by checking that every request the stand-in received was valid. The backend runs for real over
HTTP with a real tiny model trained by a real job.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import openai
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from finetune_kit.errors import ConfigurationError
from finetune_kit.local import LocalBackend
from finetune_kit.local.engine.vllm import adapter_name, vllm_setting
from tests.fixtures.local_backend import chat_examples, free_port, wait_for_job, write_jsonl

SERVED = "tiny-random"
CONTEXT = 2048


# -- what vLLM accepts ---------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoadAdapter(_Strict):
    lora_name: str = Field(min_length=1)
    lora_path: str = Field(min_length=1)


class UnloadAdapter(_Strict):
    lora_name: str = Field(min_length=1)
    lora_int_id: int | None = None


class Message(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class StreamOptions(_Strict):
    include_usage: bool | None = True
    continuous_usage_stats: bool | None = False


class ChatRequest(_Strict):
    """The fields of vLLM's ChatCompletionRequest the backend may send, with vLLM's bounds."""

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> ChatRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("Stream options can only be defined when `stream=True`.")
        return self


def _vllm_error(status: int, message: str, kind: str = "BadRequestError") -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": status}},
        status_code=status,
    )


Reply = Callable[[ChatRequest], list[str]]


class StandInVllm:
    """A stand-in vLLM OpenAI server on 127.0.0.1 that checks every request it receives."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[str] = []
        self.adapters: dict[str, str] = {}
        self.reply: Reply = lambda request: ["Hello there."] * request.n
        self.finish = "stop"
        self.app = FastAPI()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._routes()

    def _check(self, path: str, body: dict[str, Any], model: type[_Strict]) -> Any:
        self.requests.append((path, body))
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            self.errors.append(f"{path}: {exc}")
            return None

    def _routes(self) -> None:
        app = self.app

        @app.get("/health")
        def health() -> Response:
            return Response(status_code=200)

        @app.post("/v1/load_lora_adapter")
        async def load(request: Request) -> Response:
            body = await request.json()
            parsed = self._check("/v1/load_lora_adapter", body, LoadAdapter)
            if parsed is None:
                return _vllm_error(400, "invalid request")
            if parsed.lora_name in self.adapters:
                return _vllm_error(
                    400, f"The lora adapter '{parsed.lora_name}' has already been loaded."
                )
            if not (Path(parsed.lora_path) / "adapter_config.json").is_file():
                self.errors.append(f"load: {parsed.lora_path} is no adapter folder")
                return _vllm_error(400, f"No adapter found for {parsed.lora_path}")
            self.adapters[parsed.lora_name] = parsed.lora_path
            return PlainTextResponse(
                f"Success: LoRA adapter '{parsed.lora_name}' added successfully."
            )

        @app.post("/v1/unload_lora_adapter")
        async def unload(request: Request) -> Response:
            body = await request.json()
            parsed = self._check("/v1/unload_lora_adapter", body, UnloadAdapter)
            if parsed is None:
                return _vllm_error(400, "invalid request")
            if self.adapters.pop(parsed.lora_name, None) is None:
                return _vllm_error(
                    404, f"The lora adapter '{parsed.lora_name}' cannot be found.", "NotFoundError"
                )
            return PlainTextResponse(
                f"Success: LoRA adapter '{parsed.lora_name}' removed successfully."
            )

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            parsed = self._check("/v1/chat/completions", body, ChatRequest)
            if parsed is None:
                return _vllm_error(400, "invalid request")
            if parsed.model != SERVED and parsed.model not in self.adapters:
                self.errors.append(f"chat: model {parsed.model!r} is not served")
                return _vllm_error(
                    404, f"The model `{parsed.model}` does not exist.", "NotFoundError"
                )
            prompt = sum(len(m.content) for m in parsed.messages)
            if prompt + (parsed.max_tokens or 0) > CONTEXT:
                return _vllm_error(
                    400,
                    f"This model's maximum context length is {CONTEXT} tokens. However, you "
                    f"requested {prompt + (parsed.max_tokens or 0)} tokens ({prompt} in the "
                    f"messages, {parsed.max_tokens} in the completion). Please reduce the length "
                    "of the messages or completion.",
                )
            texts = self.reply(parsed)
            if parsed.stream:
                return StreamingResponse(
                    self._events(parsed, texts, prompt), media_type="text/event-stream"
                )
            return JSONResponse(self._completion(parsed, texts, prompt))

    def _usage(self, prompt: int, texts: list[str]) -> dict[str, Any]:
        completion = sum(len(t.split()) for t in texts)
        return {
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion,
            "completion_tokens": completion,
            "prompt_tokens_details": None,
        }

    def _completion(self, request: ChatRequest, texts: list[str], prompt: int) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": [
                {
                    "index": i,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "tool_calls": [],
                        "reasoning_content": None,
                    },
                    "logprobs": None,
                    "finish_reason": self.finish,
                    "stop_reason": None,
                }
                for i, text in enumerate(texts)
            ],
            "usage": self._usage(prompt, texts),
            "prompt_logprobs": None,
        }

    def _events(self, request: ChatRequest, texts: list[str], prompt: int) -> Iterator[str]:
        ident = f"chatcmpl-{uuid.uuid4().hex}"

        def chunk(choices: list[dict[str, Any]], usage: Any = None) -> str:
            body = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": request.model,
                "choices": choices,
            }
            if usage is not None:
                body["usage"] = usage
            return f"data: {json.dumps(body)}\n\n"

        for i in range(len(texts)):
            yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}}])
        for i, text in enumerate(texts):
            for word in text.split(" "):
                piece = word if word == text.split(" ")[0] else " " + word
                yield chunk([{"index": i, "delta": {"content": piece}, "finish_reason": None}])
            yield chunk([{"index": i, "delta": {"content": ""}, "finish_reason": self.finish}])
        options = request.stream_options
        if options is not None and options.include_usage:
            yield chunk([], self._usage(prompt, texts))
        yield "data: [DONE]\n\n"

    def chats(self) -> list[dict[str, Any]]:
        return [body for path, body in self.requests if path == "/v1/chat/completions"]


@pytest.fixture(scope="module")
def vllm() -> Iterator[StandInVllm]:
    stand_in = StandInVllm()
    server = uvicorn.Server(
        uvicorn.Config(stand_in.app, host="127.0.0.1", port=stand_in.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield stand_in
    server.should_exit = True
    thread.join(10)


@pytest.fixture(autouse=True)
def _every_request_was_valid(vllm: StandInVllm) -> Iterator[None]:
    vllm.reply = lambda request: ["Hello there."] * request.n
    vllm.finish = "stop"
    yield
    assert vllm.errors == [], vllm.errors


@pytest.fixture(scope="module")
def backend(vllm: StandInVllm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    with LocalBackend(
        tmp_path_factory.mktemp("vllm-backend"), default_model="tiny-random", vllm=vllm.url
    ) as running:
        yield running


@pytest.fixture(scope="module")
def tuned(backend: LocalBackend, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A fine-tuned model (name, adapter folder) trained by a real job."""
    folder = tmp_path_factory.mktemp("vllm-train")
    with backend.client() as client:
        path = write_jsonl(folder / "train.jsonl", chat_examples(10))
        file_id = client.files.create(file=path, purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(
            model="gpt-4o-mini",
            training_file=file_id,
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        )
        done = wait_for_job(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model is not None
    adapter = next(backend.data_dir.rglob(f"{job.id}/adapter"))
    return done.fine_tuned_model, adapter.resolve()


def _eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.05)


# -- settings ----------------------------------------------------------------------------------


def test_the_vllm_setting_reads_start_urls_and_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert vllm_setting("start") == "start"
    assert vllm_setting("http://gpu-box:8001/v1") == "http://gpu-box:8001"
    assert vllm_setting("off") is None
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_VLLM", "http://127.0.0.1:9")
    assert vllm_setting(None) == "http://127.0.0.1:9"
    with pytest.raises(ConfigurationError) as caught:
        LocalBackend(default_model="tiny-random", vllm="vllm://nowhere")
    assert caught.value.param == "vllm"
    assert "--vllm" in str(caught.value)


# -- adapters ------------------------------------------------------------------------------------


def test_a_succeeded_jobs_model_and_checkpoints_are_loaded_into_vllm(
    vllm: StandInVllm, backend: LocalBackend, tuned: tuple[str, Path]
) -> None:
    _, adapter = tuned
    _eventually(lambda: adapter_name(adapter) in vllm.adapters, "the model's adapter is loaded")
    assert vllm.adapters[adapter_name(adapter)] == str(adapter)
    with backend.client() as client:
        job_id = client.fine_tuning.jobs.list().data[0].id
        checkpoints = client.fine_tuning.jobs.checkpoints.list(job_id).data
    assert checkpoints
    folders = {str(p.resolve()) for p in backend.data_dir.rglob("checkpoints/step-*")}
    _eventually(lambda: folders <= set(vllm.adapters.values()), "every checkpoint is loaded")
    loads = [body for path, body in vllm.requests if path == "/v1/load_lora_adapter"]
    # Each folder once: the sync loads what is new, never again.
    assert len({b["lora_name"] for b in loads}) == len(loads)


def test_chat_with_a_fine_tuned_model_goes_to_its_adapter_in_vllm(
    vllm: StandInVllm, backend: LocalBackend, tuned: tuple[str, Path]
) -> None:
    name, adapter = tuned
    with backend.client() as client:
        answer = client.chat.completions.create(
            model=name,
            messages=[
                {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": "Tell me about element 3."},
            ],
            max_tokens=20,
            temperature=0.5,
            top_p=0.9,
            seed=12345,
            stop=["\n\n", "END"],
        )
    sent = vllm.chats()[-1]
    assert sent == {
        "model": adapter_name(adapter),
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Tell me about element 3."},
        ],
        "max_tokens": 20,
        "temperature": 0.5,
        "top_p": 0.9,
        "n": 1,
        "stop": ["\n\n", "END"],
        "seed": 12345,
    }
    assert answer.model == name
    assert answer.choices[0].message.content == "Hello there."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == len("Be brief.") + len("Tell me about element 3.")
    assert answer.usage.completion_tokens == 2
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 2


def test_several_choices_and_a_cut_answer_keep_their_shapes(
    vllm: StandInVllm, backend: LocalBackend, tuned: tuple[str, Path]
) -> None:
    vllm.reply = lambda request: [f"Answer {i}" for i in range(request.n)]
    vllm.finish = "length"
    with backend.client() as client:
        answer = client.chat.completions.create(
            model=tuned[0], messages=[{"role": "user", "content": "Hi"}], n=3, max_tokens=2
        )
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert [c.message.content for c in answer.choices] == ["Answer 0", "Answer 1", "Answer 2"]
    assert {c.finish_reason for c in answer.choices} == {"length"}
    assert vllm.chats()[-1]["n"] == 3
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 6


def test_a_stream_keeps_its_chunks_and_usage(
    vllm: StandInVllm, backend: LocalBackend, tuned: tuple[str, Path]
) -> None:
    vllm.reply = lambda request: ["One two three."]
    with backend.client() as client:
        chunks = list(
            client.chat.completions.create(
                model=tuned[0],
                messages=[{"role": "user", "content": "Count"}],
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=8,
            )
        )
    sent = vllm.chats()[-1]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One two three."
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == len("Count")
    assert chunks[-1].usage.completion_tokens == 3


def test_tool_calls_are_written_into_the_prompt_and_read_back_from_the_answer(
    vllm: StandInVllm, backend: LocalBackend, tuned: tuple[str, Path]
) -> None:
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    vllm.reply = lambda request: [call]
    tools: list[Any] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    with backend.client() as client:
        answer = client.chat.completions.create(
            model=tuned[0],
            messages=[
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "user", "content": "And Paris?"},
            ],
            tools=tools,
        )
    sent = vllm.chats()[-1]
    # As training renders them: declarations in the system message, calls in the text.
    assert "tools" not in sent
    assert sent["messages"][0]["role"] == "system"
    assert "<tools>" in sent["messages"][0]["content"]
    assert '"name": "get_weather"' in sent["messages"][0]["content"]
    assert sent["messages"][2]["content"].startswith("<tool_call>")
    assert sent["messages"][3] == {"role": "tool", "content": "sunny"}
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    function = choice.message.tool_calls[0].function  # type: ignore[union-attr]
    assert function.name == "get_weather"
    assert json.loads(function.arguments) == {"city": "Paris"}


def test_the_base_model_is_served_by_vllm_under_its_served_name(
    vllm: StandInVllm, backend: LocalBackend
) -> None:
    with backend.client() as client:
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
    assert vllm.chats()[-1]["model"] == SERVED
    assert answer.choices[0].message.content == "Hello there."


def test_vllms_refusal_of_a_too_long_request_is_a_400_naming_max_tokens(
    vllm: StandInVllm, backend: LocalBackend, tuned: tuple[str, Path]
) -> None:
    with backend.client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=tuned[0],
            messages=[{"role": "user", "content": "Hi"}],
            max_completion_tokens=CONTEXT,
        )
    assert caught.value.body is not None
    error: Any = caught.value.body
    assert error["param"] == "max_completion_tokens"
    assert "maximum context length" in error["message"]


def test_deleting_a_model_unloads_its_adapter(
    vllm: StandInVllm, backend: LocalBackend, tuned: tuple[str, Path]
) -> None:
    name, adapter = tuned
    _eventually(lambda: adapter_name(adapter) in vllm.adapters, "the adapter is loaded")
    with backend.client() as client:
        assert client.models.delete(name).deleted
    _eventually(lambda: adapter_name(adapter) not in vllm.adapters, "the adapter is unloaded")
    unloads = [body for path, body in vllm.requests if path == "/v1/unload_lora_adapter"]
    assert {"lora_name": adapter_name(adapter)} in unloads


def test_the_vllm_engine_is_a_chat_engine_the_router_sends_its_models_to(
    vllm: StandInVllm, backend: LocalBackend
) -> None:
    from finetune_kit.local.engine.generation import Generator, ModelRef
    from finetune_kit.local.engine.registry import ModelRegistry
    from finetune_kit.local.engine.serving import ChatDeltas, ChatEngine, EngineRouter
    from finetune_kit.local.engine.vllm import VllmClient, VllmEngine

    registry = ModelRegistry(default_model="tiny-random")
    client = VllmClient(vllm.url, served_model=SERVED, base_model="tiny-random")
    engine = VllmEngine(registry, client)
    assert isinstance(engine, ChatEngine)
    router = EngineRouter([engine], Generator(registry))
    try:
        assert router.engine_for(ModelRef("gpt-4o-mini")) is engine
        assert not engine.serves(ModelRef("/no/such/model"))
        vllm.reply = lambda request: ["Routed."]
        result = router.chat(ModelRef("tiny-random"), [{"role": "user", "content": "Hi"}], n=1)
        stream = router.stream(ModelRef("tiny-random"), [{"role": "user", "content": "Hi"}])
        assert isinstance(stream, ChatDeltas)
        text = "".join(delta.text for delta in stream)
    finally:
        router.close()
        client.close()
    assert result.choices[0].text == "Routed."
    assert text == "Routed."
    assert stream.completion_tokens == 1
    assert vllm.chats()[-1]["model"] == SERVED
