"""Chat and compare against the local backend (tiny model) over real HTTP, faults included."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import openai
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.inference import AsyncInferenceClient, Comparison, InferenceClient
from finetune_kit.inference.replies import ChatReply
from tests.fixtures.local_backend import chat_examples, wait_for_job, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import FaultInjector, LocalBackend

BASE = "tiny-random"
CHAT = "/v1/chat/completions"
FAST_RETRIES = RetryPolicy(initial_delay=0.01, max_delay=0.05)
GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 8}


@pytest.fixture(scope="module")
def tuned_job(
    local_backend: LocalBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A job fine-tuned on the tiny model: its model and checkpoints are served."""
    path = write_jsonl(tmp_path_factory.mktemp("train") / "train.jsonl", chat_examples(12))
    with local_backend.client() as client:
        with path.open("rb") as handle:
            uploaded = client.files.create(file=handle, purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            model=BASE,
            training_file=uploaded.id,
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        )
        finished = wait_for_job(client, job.id, timeout=120)
        assert finished.status == "succeeded", finished.error
        yield finished


@pytest.fixture
def inference(client: openai.OpenAI) -> InferenceClient:
    return InferenceClient(client, policy=FAST_RETRIES, concurrency=4)


def test_chat_reports_text_tokens_latency_and_model(inference: InferenceClient) -> None:
    reply = inference.chat(BASE, "Tell me about Neon", **GREEDY)
    assert isinstance(reply, ChatReply)
    assert isinstance(reply.text, str)
    assert reply.prompt_tokens is not None
    assert reply.prompt_tokens > 0
    assert reply.completion_tokens is not None
    assert 1 <= reply.completion_tokens <= 8
    assert reply.total_tokens == reply.prompt_tokens + reply.completion_tokens
    assert reply.latency > 0
    assert reply.finish_reason in ("stop", "length")
    assert reply.model
    assert reply.attempts == 1
    assert reply.tool_calls == ()
    # The system message is really sent: a longer one makes a longer prompt.
    short = inference.chat(BASE, "Tell me about Neon", system="Be brief.", **GREEDY)
    long = inference.chat(BASE, "Tell me about Neon", system="Be brief. " * 10, **GREEDY)
    assert short.prompt_tokens is not None
    assert long.prompt_tokens is not None
    assert long.prompt_tokens > short.prompt_tokens


def test_chat_with_an_openai_name_a_tuned_model_and_a_checkpoint(
    inference: InferenceClient, client: openai.OpenAI, tuned_job: Any
) -> None:
    messages = [{"role": "user", "content": "Tell me about element 3."}]
    assert inference.chat("gpt-4o-mini", messages, **GREEDY).text is not None
    tuned = inference.chat(tuned_job, messages, **GREEDY)
    assert tuned.completion_tokens
    checkpoints = client.fine_tuning.jobs.checkpoints.list(tuned_job.id).data
    assert checkpoints
    from_checkpoint = inference.chat(checkpoints[0], messages, **GREEDY)
    assert from_checkpoint.completion_tokens


def test_compare_puts_base_and_tuned_side_by_side(
    inference: InferenceClient, local_faults: FaultInjector, tuned_job: Any
) -> None:
    prompts = ["Tell me about element 1.", "Tell me about element 2.", "Tell me about Argon"]
    comparison = inference.compare(BASE, tuned_job, prompts, system="Be brief.", **GREEDY)
    assert isinstance(comparison, Comparison)
    assert comparison.tuned_model == tuned_job.fine_tuned_model
    assert [row.prompt for row in comparison] == prompts
    for row in comparison:
        assert row.base is not None
        assert row.tuned is not None
        assert row.case.messages[0] == {"role": "system", "content": "Be brief."}
    # Every prompt went to both models, each request once.
    assert local_faults.count("POST", CHAT) == 2 * len(prompts)
    text = comparison.to_text(width=120)
    assert f"tuned: {tuned_job.fine_tuned_model}"[:40] in text.replace("\n", "")
    frame = comparison.to_dataframe()
    assert list(frame["base_answer"]) == [row.base.text for row in comparison]  # type: ignore[union-attr]
    assert comparison.summary()["base"]["errors"] == 0


def test_429_500_503_and_dropped_connections_are_retried(
    inference: InferenceClient, local_faults: FaultInjector
) -> None:
    local_faults.script("POST", CHAT, ["429", "500", "503", "drop"], retry_after=0.05)
    reply = inference.chat(BASE, "Tell me about Neon", **GREEDY)
    assert reply.attempts == 5
    seen = [record.fault for record in local_faults.requests("POST", CHAT)]
    assert seen == ["429", "500", "503", "drop", None]


def test_a_compare_cell_that_fails_after_retries_is_shown_not_lost(
    client: openai.OpenAI, local_faults: FaultInjector
) -> None:
    one_retry = InferenceClient(
        client, policy=RetryPolicy(max_attempts=2, initial_delay=0.01), concurrency=1
    )
    # One worker sends in order: base of prompt 0, tuned of prompt 0, base of prompt 1...
    local_faults.script("POST", CHAT, ["ok", "500", "500"])
    comparison = one_retry.compare(BASE, "gpt-4o-mini", ["first", "second"], **GREEDY)
    assert comparison[0].base is not None
    assert comparison[0].tuned is None
    assert comparison[0].tuned_error is not None
    assert comparison[0].tuned_error.startswith("InternalServerError")
    assert comparison[1].base is not None
    assert comparison[1].tuned is not None
    assert "[error] InternalServerError" in comparison.to_text(width=200)


def test_an_unknown_model_stops_the_comparison(inference: InferenceClient) -> None:
    with pytest.raises(openai.NotFoundError):
        inference.compare(BASE, "no-such-model", ["a", "b", "c"], **GREEDY)


def test_async_chat_and_compare_match_the_sync_client(
    inference: InferenceClient, local_backend: LocalBackend, tuned_job: Any
) -> None:
    prompts = ["Tell me about element 1.", "Tell me about Argon"]
    sync_comparison = inference.compare(BASE, tuned_job, prompts, **GREEDY)
    sync_reply = inference.chat(BASE, "Tell me about Neon", **GREEDY)

    async def run() -> tuple[ChatReply, Comparison]:
        async with local_backend.async_client() as async_client:
            twin = AsyncInferenceClient(async_client, policy=FAST_RETRIES, concurrency=4)
            reply = await twin.chat(BASE, "Tell me about Neon", **GREEDY)
            comparison = await twin.compare(BASE, tuned_job, prompts, **GREEDY)
            return reply, comparison

    async_reply, async_comparison = asyncio.run(run())
    assert async_reply.text == sync_reply.text
    assert async_reply.completion_tokens == sync_reply.completion_tokens
    for sync_row, async_row in zip(sync_comparison, async_comparison, strict=True):
        assert async_row.base is not None
        assert sync_row.base is not None
        assert async_row.base.text == sync_row.base.text
        assert async_row.tuned is not None
        assert sync_row.tuned is not None
        assert async_row.tuned.text == sync_row.tuned.text
