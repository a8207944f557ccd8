"""Preflight and the local backend: what preflight passes, the local trainer can use."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import openai
import pytest

from finetune_kit.data.report import PreflightReport
from finetune_kit.data.validation import preflight
from finetune_kit.errors import PreflightFailedError
from finetune_kit.jobs.following import FollowOptions
from finetune_kit.session import AsyncFineTuneSession, FineTuneSession
from finetune_kit.session.backend_tokenizer import BackendTokenizer
from tests.fixtures.local_backend import chat_examples, wait_for_job, write_jsonl

CORPUS = Path(__file__).parent / "bad_inputs"


def test_a_lone_surrogate_fails_the_job_at_validation_naming_the_line(
    client: openai.OpenAI,
) -> None:
    # The trainer's tokenizer raised a TypeError on it; the file check now refuses it first.
    with (CORPUS / "lone_surrogate.jsonl").open("rb") as stream:
        file = client.files.create(file=stream, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(training_file=file.id, model="gpt-4o-mini")
    done = wait_for_job(client, job.id)
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.code == "invalid_training_file"
    assert "line 3" in (done.error.message or "")
    assert "surrogate" in (done.error.message or "")


FAST = FollowOptions(initial_interval=0.1, max_interval=0.5)


def _local_session(tmp_path: Path) -> FineTuneSession:
    return FineTuneSession(
        "local",
        model="gpt-4o-mini",
        local_model="tiny-random",
        local_data_dir=tmp_path / "local-data",
        state_path=tmp_path / "run.json",
        follow_options=FAST,
    )


def test_on_the_local_backend_preflight_counts_what_training_bills(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_examples(12))
    with _local_session(tmp_path) as session:
        report = session.preflight(train)
        assert report.ok, report.errors
        # Counted by the base model's own tokenizer, not by OpenAI's encoding.
        assert report.encoding == "tiny-random"
        by_o200k = preflight(train, model=None)
        assert report.billing_tokens > 2 * by_o200k.billing_tokens
        assert "tiny-random" in next(i for i in report.infos if i.code == "no_model").message
        session.upload(train)
        job = session.train(n_epochs=1)
    assert job.status == "succeeded"
    # One epoch bills every example once: the job's own count is preflight's.
    assert job.trained_tokens == report.billing_tokens


def test_the_tokenize_route_counts_each_example_as_the_trainer_does(
    client: openai.OpenAI,
) -> None:
    from finetune_kit.local.engine.chat_format import ChatRenderer
    from finetune_kit.local.engine.tiny_model import build_tiny_tokenizer
    from finetune_kit.local.engine.training_data import load_supervised

    rows = chat_examples(3)
    rows[1]["messages"][2]["weight"] = 0
    rows[1]["messages"].append({"role": "assistant", "content": "More."})
    with BackendTokenizer(client, "gpt-4o-mini") as tokenizer:
        batch = tokenizer.count_examples(rows, method="supervised")
    assert (batch.tokenizer, batch.max_example_tokens) == ("tiny-random", 2048)
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    trained = load_supervised(data, ChatRenderer(build_tiny_tokenizer()))
    assert [(c.total, c.trained) for c in batch.counts] == [
        (item.n_tokens, item.n_trained) for item in trained
    ]

    answer = client.post("/tokenize", body={"prompt": "Hello"}, cast_to=object)
    assert answer == {
        "count": 5,
        "max_model_len": 2048,
        "tokens": answer["tokens"],
        "model": "tiny-random",
    }
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/tokenize", body={"prompt": "Hi", "examples": []}, cast_to=object)
    assert info.value.body["param"] == "examples"


def test_an_example_the_local_model_cannot_read_is_an_error_of_preflight(
    client: openai.OpenAI,
) -> None:
    rows = chat_examples(12)
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    rows[4]["messages"][1]["content"] = [{"type": "text", "text": "What is this?"}, image]
    with BackendTokenizer(client) as tokenizer:
        report = preflight(rows, tokenizer=tokenizer)
    assert [(i.code, i.line, i.field) for i in report.errors] == [
        ("backend_rejects_example", 5, "messages[1].content[1]")
    ]
    assert "text only" in report.errors[0].message
    assert report.training.n_valid_examples == 11


def test_a_legacy_prompt_completion_file_is_refused_for_a_chat_model(tmp_path: Path) -> None:
    rows = [{"prompt": f"Element {i}?", "completion": f"Number {i}."} for i in range(12)]
    legacy = write_jsonl(tmp_path / "legacy.jsonl", rows)
    with _local_session(tmp_path) as session:
        report = session.preflight(legacy)
        (error,) = report.errors
        assert error.code == "format_not_supported"
        assert "tiny-random takes chat" in error.message
        assert "prompt/completion" in error.message
        with pytest.raises(PreflightFailedError, match="tiny-random takes chat"):
            session.upload(legacy)


def test_dpo_pairs_count_both_answers_as_the_trainer_does(client: openai.OpenAI) -> None:
    from finetune_kit.local.engine.chat_format import ChatRenderer
    from finetune_kit.local.engine.tiny_model import build_tiny_tokenizer
    from finetune_kit.local.engine.training_data import load_preference

    pair = {
        "input": {"messages": [{"role": "user", "content": "Tell me about Neon."}]},
        "preferred_output": [{"role": "assistant", "content": "Neon glows red."}],
        "non_preferred_output": [{"role": "assistant", "content": "No."}],
    }
    with BackendTokenizer(client) as tokenizer:
        (count,) = tokenizer.count_examples([pair], method="dpo").counts
    (trained,) = load_preference(json.dumps(pair).encode(), ChatRenderer(build_tiny_tokenizer()))
    assert count.total == trained.n_tokens == trained.chosen.n_tokens + trained.rejected.n_tokens


def test_the_async_session_counts_on_the_local_backend_too(
    client: openai.OpenAI, tmp_path: Path
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_examples(12))

    async def run() -> PreflightReport:
        async with AsyncFineTuneSession(
            "local",
            model="gpt-4o-mini",
            local_model="tiny-random",
            local_data_dir=tmp_path / "local-data",
            state_path=None,
        ) as session:
            return session.preflight(train)

    report = asyncio.run(run())
    assert report.encoding == "tiny-random"
    with BackendTokenizer(client) as tokenizer:
        assert report.billing_tokens == preflight(train, tokenizer=tokenizer).billing_tokens


def test_a_prompt_completion_file_fails_a_job_created_by_a_raw_client(
    client: openai.OpenAI, tmp_path: Path
) -> None:
    # The session's preflight refuses it; a job created with the plain openai client is checked
    # by the server with the same rule, as OpenAI refuses legacy data for a chat model.
    rows = [{"prompt": f"Tell me about {i}", "completion": f" {i} is a number."} for i in range(12)]
    with write_jsonl(tmp_path / "legacy.jsonl", rows).open("rb") as stream:
        file = client.files.create(file=stream, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(training_file=file.id, model="gpt-4o-mini")
    done = wait_for_job(client, job.id)
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.code == "invalid_training_file"
    assert "chat" in (done.error.message or "")
