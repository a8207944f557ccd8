"""/v1/chat/completions on the tiny model: shapes, usage, sampling parameters, streaming."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from finetune_kit.local import LocalBackend

HELLO = [{"role": "user", "content": "Hello there"}]


def _strict_chunk(line: str) -> ChatCompletionChunk:
    """One SSE ``data:`` line as openai's chunk type, validated strictly from the raw JSON."""
    assert line.startswith("data: "), line
    return ChatCompletionChunk.model_validate(json.loads(line.removeprefix("data: ")), strict=True)


def test_completion_shape_and_usage(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO, max_tokens=4, n=3, seed=7
    )
    completion = ChatCompletion.model_validate(json.loads(raw.text))
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "tiny-random"  # the base model really used
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert all(c.message.role == "assistant" for c in completion.choices)
    assert all(c.finish_reason == "length" for c in completion.choices)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 12
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_default_length_and_max_completion_tokens(client: openai.OpenAI) -> None:
    default = client.chat.completions.create(model="tiny-random", messages=HELLO)
    assert default.usage is not None
    assert default.usage.completion_tokens <= 16  # the fixture's default_max_tokens
    # Seeded: an unseeded sample could end the turn within two tokens.
    short = client.chat.completions.create(
        model="tiny-random", messages=HELLO, max_completion_tokens=2, seed=3
    )
    assert short.usage is not None
    assert short.usage.completion_tokens == 2


def test_seed_and_temperature_make_answers_reproducible(client: openai.OpenAI) -> None:
    def answer(**kwargs: object) -> str | None:
        result = client.chat.completions.create(
            model="tiny-random", messages=HELLO, max_tokens=8, **kwargs
        )
        return result.choices[0].message.content

    assert answer(seed=3, temperature=1.2) == answer(seed=3, temperature=1.2)
    assert answer(temperature=0) == answer(temperature=0, top_p=0.5)


def test_stop_strings_end_the_answer(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(
        model="tiny-random", messages=HELLO, max_tokens=12, temperature=0
    ).choices[0]
    text = full.message.content or ""
    candidates = [text[i : i + 2] for i in range(2, len(text) - 2)]
    stop = next((c for c in candidates if c.strip() and "\ufffd" not in c), None)
    if stop is None:
        pytest.skip("the tiny model's greedy answer has no usable stop string")
    cut = client.chat.completions.create(
        model="tiny-random", messages=HELLO, max_tokens=12, temperature=0, stop=[stop]
    ).choices[0]
    assert cut.finish_reason == "stop"
    assert cut.message.content == text[: text.index(stop)]


def test_streaming_matches_the_whole_answer(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model="gpt-3.5-turbo", messages=HELLO, max_tokens=6, temperature=0
    )
    with client.chat.completions.with_streaming_response.create(
        model="gpt-3.5-turbo",
        messages=HELLO,
        max_tokens=6,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    # Our own JSON, each payload parsed strictly: a field of the wrong type or a missing one
    # fails here, where the client's lenient parse would let it through.
    chunks = [_strict_chunk(line) for line in lines[:-1]]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    assert all(c.usage is None for c in chunks[:-1])


def test_raw_stream_is_server_sent_events(local_backend: LocalBackend) -> None:
    body = {"model": "tiny-random", "messages": HELLO, "max_tokens": 3, "stream": True, "n": 2}
    with httpx.stream(
        "POST", local_backend.base_url + "/chat/completions", json=body, timeout=60
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line[6:]) for line in lines[:-1]]
    assert {p["choices"][0]["index"] for p in payloads} == {0, 1}
    assert all("usage" not in p for p in payloads)
    for line in lines[:-1]:
        _strict_chunk(line)


def test_unknown_model_is_a_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-nonexistent-9", messages=HELLO)
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="ft:tiny-random:local::missing", messages=HELLO)
    assert info.value.code == "model_not_found"


def test_unsupported_parameters_name_the_parameter(client: openai.OpenAI) -> None:
    # Tools are served (tests/local/test_chat_tools.py); legacy functions are not.
    function = {"name": "f", "parameters": {"type": "object"}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny-random", messages=HELLO, functions=[function])
    assert info.value.param == "functions"
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="tiny-random",
            messages=[{"role": "user", "content": [image]}],  # type: ignore[list-item]
        )
    assert info.value.param == "messages[0].content[0].type"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny-random", messages=HELLO, max_tokens=10**6)
    assert info.value.param == "max_tokens"
    for stream in (False, True):
        # The error names the parameter the client sent, not the older one it replaced.
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model="tiny-random", messages=HELLO, max_completion_tokens=10**6, stream=stream
            )
        assert info.value.param == "max_completion_tokens"
        assert "max_completion_tokens is 1000000" in info.value.message
        assert "max_tokens" not in info.value.message.replace("max_completion_tokens", "")
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny-random", messages=HELLO, temperature=3)
    assert info.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny-random", messages=[])
    assert info.value.param == "messages"
    # Harmless parameters are accepted.
    assert client.chat.completions.create(
        model="tiny-random", messages=HELLO, max_tokens=1, user="u", presence_penalty=0.1
    ).choices


def test_async_client_chats(async_client: openai.AsyncOpenAI) -> None:
    async def run() -> list[tuple[int, str]]:
        async with async_client as http_client:
            results = await asyncio.gather(
                *(
                    http_client.chat.completions.create(
                        model="gpt-4o-mini", messages=HELLO, max_tokens=3
                    )
                    for _ in range(4)
                )
            )
        return [
            (r.usage.completion_tokens if r.usage else -1, r.choices[0].finish_reason)
            for r in results
        ]

    # Sampled answers may end on their own before max_tokens; each says which it was.
    for tokens, finish_reason in asyncio.run(run()):
        assert (tokens, finish_reason) == (3, "length") or (finish_reason == "stop" and tokens < 3)


def test_any_64_bit_seed_samples_and_a_larger_one_is_a_400(client: openai.OpenAI) -> None:
    def answer(seed: int) -> str | None:
        result = client.chat.completions.create(
            model="tiny-random", messages=HELLO, max_tokens=4, seed=seed, temperature=1.5
        )
        return result.choices[0].message.content

    # OpenAI's seed is a signed 64-bit integer; the sampler once overflowed beyond about 7e16.
    for seed in (7 * 10**16, 2**63 - 1, -(2**63)):
        assert answer(seed) == answer(seed)
    for seed in (2**63, -(2**63) - 1, 10**30):
        with pytest.raises(openai.BadRequestError) as info:
            answer(seed)
        assert info.value.param == "seed"
        assert "922337203685477580" in info.value.message  # the bound it is past
