"""Chat on llama.cpp, over real HTTP with the real openai client.

The base model is the tiny random Llama saved as a Hugging Face folder (a path base): the
server converts it to GGUF once, serves it with llama.cpp's server (the xllamacpp wheel), and
serves a model fine-tuned on it through its GGUF LoRA adapter. The tuned model learned the
tool-call examples of test_chat_tools.py by heart (50 epochs), so its greedy answers are the
trained ones on either engine: the checks below are exact. ``tiny-random`` itself stays on the
torch generator in the same server.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from finetune_kit.local import LocalBackend
from finetune_kit.local.engine.chat_format import ChatRenderer, normalize_messages
from finetune_kit.local.engine.generation import ModelRef
from finetune_kit.local.engine.tiny_model import build_tiny_model
from tests.fixtures.local_backend import wait_for_job, write_jsonl
from tests.local.test_chat_tools import EXAMPLES, TOOLS, TRAINING_ROWS

HELLO = [{"role": "user", "content": "hi"}]


def save_tiny_folder(folder: Path) -> Path:
    """The tiny random Llama (``tiny-random``'s weights and tokenizer) as a model folder."""
    model, tokenizer = build_tiny_model()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train(client: openai.OpenAI, base: str, rows: list[dict[str, Any]], folder: Path) -> str:
    """Fine-tune ``base`` on ``rows`` until it knows them; return the tuned model's name."""
    path = write_jsonl(folder / "train.jsonl", rows)
    uploaded = client.files.create(file=path, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=base,
        training_file=uploaded.id,
        seed=0,
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {
                    "n_epochs": 50,
                    "batch_size": 1,
                    "learning_rate_multiplier": 50.0,
                }
            },
        },
    )
    done = wait_for_job(client, job.id, timeout=300)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model is not None
    return done.fine_tuned_model


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_folder(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="module")
def backend(base_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    data = tmp_path_factory.mktemp("llama-data")
    with LocalBackend(
        data,
        default_model=str(base_folder),
        model_dirs=[base_folder.parent],
        model_cache_dir=tmp_path_factory.mktemp("llama-cache"),
        chat_engine="llama.cpp",
        default_max_tokens=16,
    ) as running:
        yield running


@pytest.fixture
def client(backend: LocalBackend) -> Iterator[openai.OpenAI]:
    with backend.client() as http_client:
        yield http_client


@pytest.fixture(scope="module")
def tuned(
    backend: LocalBackend, base_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    with backend.client() as client:
        return train(client, str(base_folder), TRAINING_ROWS, tmp_path_factory.mktemp("tools"))


def ask(client: openai.OpenAI, model: str, prompt: str, **kwargs: Any) -> Any:
    params: dict[str, Any] = {"temperature": 0, "max_tokens": 200, "tools": TOOLS, **kwargs}
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], **params
    )


def calls(completion: Any, choice: int = 0) -> list[tuple[str, Any]]:
    found = completion.choices[choice].message.tool_calls or []
    return [(c.function.name, json.loads(c.function.arguments)) for c in found]


def events(client: openai.OpenAI, model: str) -> list[str]:
    job_id = next(j.id for j in client.fine_tuning.jobs.list() if j.fine_tuned_model == model)
    return [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=100).data]


# -- which engine ----------------------------------------------------------------------------


def test_the_tuned_model_is_served_by_llama_cpp_with_its_gguf_adapter(
    client: openai.OpenAI, backend: LocalBackend, tuned: str
) -> None:
    assert any(
        m.startswith("Chat with this model runs on llama.cpp") for m in events(client, tuned)
    )
    assert list(backend.data_dir.rglob("adapter/adapter.gguf"))
    answer = ask(client, tuned, "weather Paris")
    assert calls(answer) == [("weather", {"city": "Paris"})]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert backend.engine_pids, "no llama.cpp process serves the model"


def test_engine_threads_spin_briefly_not_sleep_as_torch_s_do(
    client: openai.OpenAI, backend: LocalBackend, tuned: str
) -> None:
    from finetune_kit.local.engine.llama_cpp import ENGINE_SPINCOUNT
    from finetune_kit.local.engine.registry import USER_OMP_WAIT_POLICY

    ask(client, tuned, "hi")
    # The backend set OMP_WAIT_POLICY=PASSIVE for torch here; sleeping at each of llama.cpp's
    # barriers made it several times slower (bench/llama_threads.py).
    assert os.environ["OMP_WAIT_POLICY"] == (USER_OMP_WAIT_POLICY or "PASSIVE")
    for pid in backend.engine_pids:
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
        assert env.get("OMP_WAIT_POLICY") == USER_OMP_WAIT_POLICY
        assert env["GOMP_SPINCOUNT"] == os.environ.get("GOMP_SPINCOUNT", str(ENGINE_SPINCOUNT))


def test_the_base_is_converted_once_and_served_by_llama_cpp(
    client: openai.OpenAI, backend: LocalBackend, base_folder: Path
) -> None:
    answer = client.chat.completions.create(
        model=str(base_folder), messages=HELLO, max_tokens=5, temperature=0
    )
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 5
    cache = backend.settings.model_cache_dir
    assert cache is not None
    assert len(list((cache / "gguf").glob("tiny-llama-*.gguf"))) == 1


def test_tiny_random_stays_on_the_torch_generator(
    client: openai.OpenAI, backend: LocalBackend, tmp_path: Path
) -> None:
    pids = backend.engine_pids
    answer = client.chat.completions.create(
        model="tiny-random", messages=HELLO, max_tokens=3, temperature=0
    )
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 3
    assert backend.engine_pids == pids  # no llama.cpp process was started for it


# -- the parameters ----------------------------------------------------------------------------


def test_usage_counts_the_prompt_as_training_renders_it(client: openai.OpenAI, tuned: str) -> None:
    answer = ask(client, tuned, "hi")
    assert answer.choices[0].message.content == "Hello!"
    assert answer.choices[0].finish_reason == "stop"
    renderer = ChatRenderer(build_tiny_model()[1])
    messages = normalize_messages([{"role": "user", "content": "hi"}], TOOLS)
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == len(renderer.render_prompt(messages))
    assert answer.usage.completion_tokens == len(renderer.encode("Hello!<|im_end|>"))


def test_max_tokens_and_max_completion_tokens_cut_the_answer(
    client: openai.OpenAI, tuned: str
) -> None:
    for limit in ({"max_tokens": 3}, {"max_completion_tokens": 3}):
        answer = ask(client, tuned, "hi", **limit)
        assert answer.choices[0].finish_reason == "length"
        assert answer.choices[0].message.content == "Hel"
        assert answer.usage is not None
        assert answer.usage.completion_tokens == 3


def test_a_stop_string_ends_the_answer_without_it(client: openai.OpenAI, tuned: str) -> None:
    answer = ask(client, tuned, "hi", stop=["lo"])
    assert answer.choices[0].message.content == "Hel"
    assert answer.choices[0].finish_reason == "stop"


def test_top_p_keeps_only_the_likeliest_token(client: openai.OpenAI, base_folder: Path) -> None:
    def text(**kwargs: Any) -> str | None:
        return (
            client.chat.completions.create(
                model=str(base_folder), messages=HELLO, max_tokens=8, **kwargs
            )
            .choices[0]
            .message.content
        )

    assert text(temperature=1.5, top_p=1e-9, seed=1) == text(temperature=0)


def test_a_seed_gives_the_same_sampled_answer(client: openai.OpenAI, base_folder: Path) -> None:
    def text(seed: int) -> str | None:
        return (
            client.chat.completions.create(
                model=str(base_folder), messages=HELLO, max_tokens=12, temperature=1.5, seed=seed
            )
            .choices[0]
            .message.content
        )

    first = text(7)
    assert text(7) == first
    assert any(text(seed) != first for seed in (8, 9, 10))


def test_n_choices_each_with_its_index_and_usage(client: openai.OpenAI, tuned: str) -> None:
    answer = ask(client, tuned, "hi", n=3)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert [c.message.content for c in answer.choices] == ["Hello!"] * 3
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 3 * len(
        ChatRenderer(build_tiny_model()[1]).encode("Hello!<|im_end|>")
    )


def test_a_stream_matches_the_whole_answer_and_ends_with_usage(
    client: openai.OpenAI, tuned: str
) -> None:
    whole = ask(client, tuned, "clock Lima")
    chunks = list(
        ask(client, tuned, "clock Lima", stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content == "On it."
    streamed_calls = [
        (call.function.name, json.loads(call.function.arguments))
        for c in chunks
        if c.choices
        for call in c.choices[0].delta.tool_calls or []
    ]
    assert streamed_calls == calls(whole) == [("clock", {"city": "Lima"})]
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["tool_calls"]
    assert chunks[-1].usage is not None
    assert whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_parallel_tool_calls_and_every_choice_parsed(client: openai.OpenAI, tuned: str) -> None:
    both = ask(client, tuned, "both Rome", n=2)
    for index in (0, 1):
        assert calls(both, index) == [("weather", {"city": "Rome"}), ("clock", {"city": "Rome"})]
    first_only = ask(client, tuned, "both Rome", parallel_tool_calls=False)
    assert calls(first_only) == [("weather", {"city": "Rome"})]


def test_concurrent_requests_all_get_their_answer(client: openai.OpenAI, tuned: str) -> None:
    prompts = [example["messages"][0]["content"] for example in EXAMPLES] * 2
    expected = {
        p: (ask(client, tuned, p).choices[0].message.content, calls(ask(client, tuned, p)))
        for p in set(prompts)
    }
    got: dict[int, Any] = {}

    def one(index: int) -> None:
        answer = ask(client, tuned, prompts[index])
        got[index] = (answer.choices[0].message.content, calls(answer))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [got[i] for i in range(len(prompts))] == [expected[p] for p in prompts]


# -- errors ------------------------------------------------------------------------------------


def test_a_prompt_beyond_the_context_is_a_400_naming_messages(
    client: openai.OpenAI, base_folder: Path
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=str(base_folder), messages=[{"role": "user", "content": "x" * 5000}]
        )
    assert caught.value.body["param"] == "messages"  # type: ignore[index]


def test_max_tokens_beyond_the_context_is_a_400_naming_it(
    client: openai.OpenAI, base_folder: Path
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=str(base_folder), messages=HELLO, max_completion_tokens=5000
        )
    assert caught.value.body["param"] == "max_completion_tokens"  # type: ignore[index]


# -- a new adapter: blue/green -------------------------------------------------------------------


def test_a_new_model_starts_a_new_process_and_the_old_one_stops(
    client: openai.OpenAI, backend: LocalBackend, base_folder: Path, tuned: str, tmp_path: Path
) -> None:
    ask(client, tuned, "hi")  # the engine holds the first model
    before = set(backend.engine_pids)
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Yo!"}]}
    ] * 10
    other = train(client, str(base_folder), rows, tmp_path)
    assert (
        client.chat.completions.create(model=other, messages=HELLO, temperature=0, max_tokens=10)
        .choices[0]
        .message.content
        == "Yo!"
    )
    after = set(backend.engine_pids)
    assert after
    assert not after & before
    # Both models are served by the new process.
    assert ask(client, tuned, "hi").choices[0].message.content == "Hello!"
    assert set(backend.engine_pids) == after


# -- merged tuned weights ----------------------------------------------------------------------


def test_merged_tuned_weights_serve_each_tuned_model_from_a_merged_file_of_its_own(
    base_folder: Path, tmp_path: Path
) -> None:
    from finetune_kit.local.engine.llama_cpp import LlamaCppEngine
    from finetune_kit.local.engine.registry import ModelRegistry

    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Yo!"}]}
    ] * 10
    with (
        LocalBackend(
            tmp_path / "data",
            default_model=str(base_folder),
            model_dirs=[base_folder.parent],
            model_cache_dir=tmp_path / "cache",
            chat_engine="llama.cpp",
            tuned_weights="merged",
            default_max_tokens=16,
        ) as merged_backend,
        merged_backend.client() as client,
    ):
        tools = train(client, str(base_folder), TRAINING_ROWS, tmp_path)
        # The job's worker merged it, so its first chat does not wait for the merge.
        merged = list(merged_backend.data_dir.rglob("adapter/merged.gguf"))
        assert len(merged) == 1
        assert any(m.endswith("and the model merged with its base") for m in events(client, tools))
        answer = ask(client, tools, "weather Paris")
        assert calls(answer) == [("weather", {"city": "Paris"})]
        # The tuned model has a process of its own; the base gets another.
        assert len(merged_backend.engine_pids) == 1
        client.chat.completions.create(model=str(base_folder), messages=HELLO, max_tokens=2)
        assert len(merged_backend.engine_pids) == 2
        written = merged[0].stat().st_mtime_ns
        (tmp_path / "yo").mkdir()
        yo = train(client, str(base_folder), rows, tmp_path / "yo")
        answer = client.chat.completions.create(
            model=yo, messages=HELLO, temperature=0, max_tokens=10
        )
        assert answer.choices[0].message.content == "Yo!"
        assert calls(ask(client, tools, "weather Paris")) == [("weather", {"city": "Paris"})]
        assert merged[0].stat().st_mtime_ns == written  # merged once, not at each start
        adapters = sorted(p.parent for p in merged_backend.data_dir.rglob("adapter/merged.gguf"))
        assert len(adapters) == 2

    # At most max_merged merged models run at once: the least recently used one stops.
    engine = LlamaCppEngine(
        ModelRegistry(tmp_path / "cache", model_dirs=[base_folder.parent]),
        tuned_weights="merged",
        max_merged=1,
        log_dir=tmp_path / "logs",
    )
    try:
        pids = []
        for adapter in adapters:
            engine.chat(ModelRef(str(base_folder), adapter), HELLO, max_tokens=2)
            (process,) = engine.processes()
            pids.append(process.process.pid)
        assert pids[0] != pids[1]
    finally:
        engine.close()
    assert not engine.processes()


def test_tuned_weights_must_be_adapter_or_merged(tmp_path: Path) -> None:
    from finetune_kit.errors import ConfigurationError
    from finetune_kit.local import settings
    from finetune_kit.local.engine import llama_cpp

    # The server's setting and the engine's argument name the same choices.
    assert settings.TUNED_WEIGHTS == llama_cpp.TUNED_WEIGHTS

    with pytest.raises(ConfigurationError, match=r"use adapter .* or merged") as info:
        LocalBackend(tmp_path, default_model="tiny-random", tuned_weights="fast")
    assert info.value.param == "tuned_weights"


@pytest.mark.parametrize(
    ("kv_cache_mib", "variable", "per_slot"),
    [(None, None, True), (1024, None, False), (None, "1024", False), (2048, "1024", True)],
)
def test_each_slot_has_a_cache_of_its_own_when_they_fit_in_kv_cache_mib(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kv_cache_mib: int | None,
    variable: str | None,
    per_slot: bool,
) -> None:
    from finetune_kit.local.engine.llama_cpp import LLAMA_KV_CACHE_ENV, LlamaCppEngine
    from finetune_kit.local.engine.registry import DEFAULT_BASE_MODEL, ModelRegistry

    if variable is None:
        monkeypatch.delenv(LLAMA_KV_CACHE_ENV, raising=False)
    else:
        monkeypatch.setenv(LLAMA_KV_CACHE_ENV, variable)
    # SmolLM2-135M: 30 layers of 3 key/value heads of 64, f16: 22.5 KiB a token. Its 8 slots of
    # 8,192 tokens take 1,440 MiB; one shared cache of 2,048 tokens a slot takes 360. llama.cpp
    # clears its cache when it starts, so the process's resident memory shows which it got.
    engine = LlamaCppEngine(
        ModelRegistry(tmp_path / "cache"), kv_cache_mib=kv_cache_mib, log_dir=tmp_path / "logs"
    )
    try:
        answer = engine.chat(ModelRef(DEFAULT_BASE_MODEL), HELLO, max_tokens=2, temperature=0)
        assert answer.completion_tokens == 2
        (process,) = engine.processes()
        status = Path(f"/proc/{process.process.pid}/status").read_text()
        resident_mib = int(status.split("VmRSS:")[1].split()[0]) / 1024
    finally:
        engine.close()
    if per_slot:
        assert resident_mib > 1440
    else:
        assert resident_mib < 1000


@pytest.mark.parametrize("value", ["lots", "-1"])
def test_a_kv_cache_variable_that_is_not_a_number_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    from finetune_kit.errors import ConfigurationError
    from finetune_kit.local.engine.llama_cpp import LLAMA_KV_CACHE_ENV, LlamaCppEngine
    from finetune_kit.local.engine.registry import ModelRegistry

    monkeypatch.setenv(LLAMA_KV_CACHE_ENV, value)
    with pytest.raises(ConfigurationError, match="whole number of at least 0") as info:
        LlamaCppEngine(ModelRegistry(tmp_path / "cache"))
    assert info.value.param == LLAMA_KV_CACHE_ENV
