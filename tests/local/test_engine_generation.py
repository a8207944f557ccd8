"""The Generator on tiny-random: batching, sampling options, stop handling, adapters."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetune_kit.errors import ConfigurationError, LocalBackendError
from finetune_kit.local.engine.generation import ChatResult, Generator, ModelRef
from finetune_kit.local.engine.registry import ModelRegistry
from finetune_kit.local.engine.training import train
from finetune_kit.local.engine.types import TrainingRequest

from .engine_helpers import Recorder, write_jsonl

BASE = ModelRef("tiny-random")


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry(default_model="tiny-random")


@pytest.fixture
def generator(registry: ModelRegistry) -> Iterator[Generator]:
    # A wide window makes concurrent requests land in one batch however slow the machine is.
    generator = Generator(registry, max_adapters=2, batch_window=0.3)
    yield generator
    generator.close()


@pytest.fixture(scope="module")
def adapters(registry: ModelRegistry, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three checkpoints of a run that teaches the tiny model to answer "ok" and stop."""
    folder = tmp_path_factory.mktemp("adapters")
    rows = [
        {"messages": [*ask(f"question {i}"), {"role": "assistant", "content": "ok"}]}
        for i in range(8)
    ]
    recorder = Recorder()
    result = train(
        TrainingRequest(
            base_model="tiny-random",
            training_file=write_jsonl(folder / "train.jsonl", rows),
            output_dir=folder / "out",
            n_epochs=6,
            batch_size=2,
            learning_rate_multiplier=50.0,
        ),
        recorder,
        registry=registry,
    )
    assert recorder.losses[-1] < 0.3
    return [checkpoint.path for checkpoint in result.checkpoints]


def chat_in_threads(
    generator: Generator, jobs: list[tuple[ModelRef, str]], **options: object
) -> list[ChatResult]:
    results: list[ChatResult | None] = [None] * len(jobs)

    def run(index: int) -> None:
        ref, text = jobs[index]
        results[index] = generator.chat(ref, ask(text), **options)  # type: ignore[arg-type]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


def test_batched_greedy_equals_unbatched(generator: Generator) -> None:
    prompts = ["a", "hello there", "the quick brown fox", "x" * 40, "Strontium?", "12"]
    together = chat_in_threads(
        generator, [(BASE, p) for p in prompts], max_tokens=24, temperature=0
    )
    assert generator.largest_batch == len(prompts)
    for prompt, batched in zip(prompts, together, strict=True):
        alone = generator.chat(BASE, ask(prompt), max_tokens=24, temperature=0)
        assert batched.choices[0].text == alone.choices[0].text
        assert batched.completion_tokens == alone.completion_tokens == 24
        assert batched.prompt_tokens == alone.prompt_tokens


def test_a_request_joins_the_running_batch(generator: Generator) -> None:
    long = iter(generator.stream(BASE, ask("long one"), max_tokens=1000, temperature=0))
    first = next(long)
    short = generator.chat(BASE, ask("short"), max_tokens=5, temperature=0)
    # The short request was decoded inside the long one's batch, while it ran.
    assert generator.batches_run == 1
    assert generator.largest_batch == 2
    rest = "".join(delta.text for delta in long)
    alone = generator.chat(BASE, ask("short"), max_tokens=5, temperature=0)
    assert short.choices[0].text == alone.choices[0].text
    whole = generator.chat(BASE, ask("long one"), max_tokens=1000, temperature=0)
    assert first.text + rest == whole.choices[0].text


def test_max_tokens_gives_length_and_counts(generator: Generator) -> None:
    result = generator.chat(BASE, ask("hi"), max_tokens=7, temperature=0)
    assert result.choices[0].finish_reason == "length"
    assert result.completion_tokens == 7
    assert result.prompt_tokens == len(generator.prompt_ids(BASE, ask("hi")))
    assert result.total_tokens == result.prompt_tokens + 7
    assert result.base_model == "tiny-random"


def test_stop_sequences_cut_the_text(generator: Generator) -> None:
    full = generator.chat(BASE, ask("stop test"), max_tokens=30, temperature=0).choices[0].text
    printable = [i for i in range(5, len(full) - 3) if full[i : i + 2].isprintable()]
    cut = printable[0]
    stop = full[cut : cut + 2]
    expected = full[: full.find(stop)]
    result = generator.chat(
        BASE, ask("stop test"), max_tokens=30, temperature=0, stop=[stop, "zzzz"]
    )
    assert result.choices[0].text == expected
    assert result.choices[0].finish_reason == "stop"
    deltas = list(generator.stream(BASE, ask("stop test"), max_tokens=30, temperature=0, stop=stop))
    assert "".join(d.text for d in deltas) == expected
    assert [d.finish_reason for d in deltas][-1] == "stop"
    assert all(d.finish_reason is None for d in deltas[:-1])


def test_n_choices_and_seeds(generator: Generator) -> None:
    greedy = generator.chat(BASE, ask("n"), max_tokens=10, temperature=0, n=3)
    assert [c.index for c in greedy.choices] == [0, 1, 2]
    assert len({c.text for c in greedy.choices}) == 1
    assert greedy.completion_tokens == 30
    first = generator.chat(BASE, ask("n"), max_tokens=10, temperature=1.0, seed=11, n=3)
    again = generator.chat(BASE, ask("n"), max_tokens=10, temperature=1.0, seed=11, n=3)
    other = generator.chat(BASE, ask("n"), max_tokens=10, temperature=1.0, seed=12, n=3)
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    assert len({c.text for c in first.choices}) > 1
    assert [c.text for c in first.choices] != [c.text for c in other.choices]
    # top_p near 0 keeps only the most likely token: sampling becomes greedy.
    narrow = generator.chat(BASE, ask("n"), max_tokens=10, temperature=1.0, top_p=1e-6, seed=5)
    assert narrow.choices[0].text == greedy.choices[0].text


def test_seeded_sampling_does_not_depend_on_the_batch(generator: Generator) -> None:
    alone = generator.chat(BASE, ask("seeded"), max_tokens=12, temperature=0.8, seed=3)
    together = chat_in_threads(
        generator,
        [(BASE, "seeded"), (BASE, "another"), (BASE, "third one")],
        max_tokens=12,
        temperature=0.8,
        seed=3,
    )
    assert together[0].choices[0].text == alone.choices[0].text


def test_stream_matches_chat(generator: Generator) -> None:
    stream = generator.stream(BASE, ask("stream"), max_tokens=15, temperature=0)
    deltas = list(stream)
    chat = generator.chat(BASE, ask("stream"), max_tokens=15, temperature=0)
    assert "".join(d.text for d in deltas) == chat.choices[0].text
    assert len(deltas) > 1
    assert stream.completion_tokens == 15
    assert stream.prompt_tokens == chat.prompt_tokens


def test_closing_a_stream_early_stops_it(generator: Generator) -> None:
    stream = generator.stream(BASE, ask("long"), max_tokens=400, temperature=0)
    iterator = iter(stream)
    next(iterator)
    stream.close()
    result = generator.chat(BASE, ask("next"), max_tokens=3, temperature=0)
    assert result.completion_tokens == 3


def test_adapter_answers_and_stops(generator: Generator, adapters: list[Path]) -> None:
    tuned = generator.chat(ModelRef("tiny-random", adapters[-1]), ask("question 99"), temperature=0)
    assert tuned.choices[0].text == "ok"
    assert tuned.choices[0].finish_reason == "stop"
    base = generator.chat(BASE, ask("question 99"), max_tokens=5, temperature=0)
    assert base.choices[0].text != "ok"


def test_base_and_adapters_in_one_batch(generator: Generator, adapters: list[Path]) -> None:
    jobs = [
        (BASE, "question 1"),
        (ModelRef("tiny-random", adapters[-1]), "question 2"),
        (ModelRef("gpt-4o-mini", adapters[0]), "question 3"),
    ]
    together = chat_in_threads(generator, jobs, max_tokens=6, temperature=0)
    assert generator.largest_batch == 3
    for (ref, text), batched in zip(jobs, together, strict=True):
        alone = generator.chat(ref, ask(text), max_tokens=6, temperature=0)
        assert batched.choices[0].text == alone.choices[0].text


def test_adapters_least_recently_used_evicted(generator: Generator, adapters: list[Path]) -> None:
    first, second, third = adapters
    for path in (first, second, first, third):
        generator.chat(ModelRef("tiny-random", path), ask("q"), max_tokens=2, temperature=0)
    assert generator.loaded_adapters() == [first, third]
    again = generator.chat(ModelRef("tiny-random", second), ask("question 5"), temperature=0)
    assert again.choices[0].finish_reason in ("stop", "length")
    assert generator.loaded_adapters() == [third, second]


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10**6}, "max_tokens"),
    ],
)
def test_bad_parameters(generator: Generator, options: dict[str, object], param: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        generator.chat(BASE, ask("x"), **options)  # type: ignore[arg-type]
    assert info.value.param == param


def test_bad_messages_and_adapters(generator: Generator, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="role") as info:
        generator.chat(BASE, [{"role": "robot", "content": "x"}])
    assert info.value.param == "messages"
    with pytest.raises(ConfigurationError, match="no adapter"):
        generator.chat(ModelRef("tiny-random", tmp_path), ask("x"))
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(LocalBackendError, match="cannot load the adapter"):
        generator.chat(ModelRef("tiny-random", tmp_path), ask("x"), max_tokens=2)
    with pytest.raises(ConfigurationError, match="unknown model"):
        generator.chat(ModelRef("nope-model"), ask("x"))


def test_close_fails_running_and_pending_requests(registry: ModelRegistry) -> None:
    generator = Generator(registry)
    stream = iter(generator.stream(BASE, ask("long"), max_tokens=1500, temperature=0))
    next(stream)
    generator.close()
    with pytest.raises(LocalBackendError, match="closed"):
        list(stream)
    with pytest.raises(LocalBackendError, match="closed"):
        generator.chat(BASE, ask("x"), max_tokens=2)
