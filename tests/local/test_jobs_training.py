"""Jobs that really train the tiny model: lifecycle, events, results, checkpoints, models,
pause/resume, cancel, the queue, DPO, continued fine-tuning and a crashed worker."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types import Model
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from finetune_kit.local import LocalBackend
from tests.fixtures.local_backend import chat_examples, wait_for_job, write_jsonl

HELLO = [{"role": "user", "content": "Tell me about element 1."}]


def _events(client: openai.OpenAI, job_id: str) -> list[FineTuningJobEvent]:
    """Every event, oldest first, each parsed strictly."""
    raw = client.fine_tuning.jobs.with_raw_response.list_events(job_id, limit=10_000)
    return [FineTuningJobEvent.model_validate(e) for e in reversed(json.loads(raw.text)["data"])]


def _upload(client: openai.OpenAI, path: Path) -> str:
    return client.files.create(file=path, purpose="fine-tune").id


@pytest.fixture(scope="module")
def slow_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    """A backend whose steps last a little, so a test can act while a job runs."""
    data_dir = tmp_path_factory.mktemp("slow-backend")
    with LocalBackend(
        data_dir, default_model="tiny-random", training_step_delay=0.05, default_max_tokens=8
    ) as backend:
        yield backend


@pytest.fixture
def slow_client(slow_backend: LocalBackend) -> Iterator[openai.OpenAI]:
    with slow_backend.client() as http_client:
        yield http_client


def _wait_for_step(client: openai.OpenAI, job_id: str, step: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    pattern = re.compile(r"Step (\d+)/")
    while time.monotonic() < deadline:
        for event in client.fine_tuning.jobs.list_events(job_id, limit=5).data:
            match = pattern.match(event.message)
            if match and int(match.group(1)) >= step:
                return
        time.sleep(0.05)
    pytest.fail(f"job {job_id} did not reach step {step}")


def test_a_job_trains_and_reports_like_openai(
    local_backend: LocalBackend, client: openai.OpenAI, tmp_path: Path
) -> None:
    train = _upload(client, write_jsonl(tmp_path / "t.jsonl", chat_examples(12)))
    valid = _upload(client, write_jsonl(tmp_path / "v.jsonl", chat_examples(4, topic="metal")))
    job = client.fine_tuning.jobs.create(
        model="gpt-4o-mini",
        training_file=train,
        validation_file=valid,
        suffix="unit",
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
    )
    done = wait_for_job(client, job.id)
    raw = client.fine_tuning.jobs.with_raw_response.retrieve(job.id)
    done = FineTuningJob.model_validate(json.loads(raw.text))
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model is not None
    assert re.fullmatch(r"ft:tiny-random:local:unit:[A-Za-z0-9]{8}", done.fine_tuned_model)
    assert done.trained_tokens is not None
    assert done.trained_tokens > 0
    assert done.finished_at is not None
    assert done.estimated_finish is None
    assert done.hyperparameters.n_epochs == 2
    assert isinstance(done.hyperparameters.batch_size, int)
    assert isinstance(done.hyperparameters.learning_rate_multiplier, float)

    events = _events(client, job.id)
    messages = [e.message for e in events]
    assert messages[:5] == [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {train}",
        f"Validating validation file: {valid}",
        "Files validated, moving job to queued state",
        "Fine-tuning job started",
    ]
    assert messages[-2:] == [
        f"New fine-tuned model created: {done.fine_tuned_model}",
        "The job has successfully completed",
    ]
    assert len(messages) == len(set(messages))
    metrics = [e for e in events if e.type == "metrics"]
    total = metrics[0].data["total_steps"]  # type: ignore[index]
    assert [e.data["step"] for e in metrics] == list(range(1, total + 1))  # type: ignore[index]
    for event in metrics:
        assert isinstance(event.data, dict)
        assert re.fullmatch(
            rf"Step {event.data['step']}/{total}: training loss=\d+\.\d+.*", event.message
        )
        assert {"train_loss", "train_mean_token_accuracy", "total_steps"} <= set(event.data)
    assert any("valid_loss" in e.data for e in metrics if isinstance(e.data, dict))
    checkpoint_messages = [m for m in messages if m.startswith("Checkpoint created at step")]
    assert len(checkpoint_messages) == 2  # one per epoch
    assert checkpoint_messages[-1] == (
        f"Checkpoint created at step {total} with Snapshot ID: "
        f"{done.fine_tuned_model}:ckpt-step-{total}"
    )

    [result_id] = done.result_files
    result = client.files.retrieve(result_id)
    assert (result.purpose, result.filename) == ("fine-tune-results", "step_metrics.csv")
    rows = list(csv.DictReader(io.StringIO(client.files.content(result_id).text)))
    assert list(rows[0]) == [
        "step",
        "train_loss",
        "train_accuracy",
        "valid_loss",
        "valid_mean_token_accuracy",
    ]
    assert [int(r["step"]) for r in rows] == list(range(1, total + 1))

    raw_checkpoints = client.fine_tuning.jobs.checkpoints.with_raw_response.list(job.id)
    checkpoints = [
        FineTuningJobCheckpoint.model_validate(c) for c in json.loads(raw_checkpoints.text)["data"]
    ]
    assert [c.step_number for c in checkpoints] == [total, total // 2]
    assert checkpoints[0].id.startswith("ftckpt-")
    assert checkpoints[0].metrics.train_loss is not None

    models = {m.id for m in client.models.list().data}
    assert {done.fine_tuned_model, checkpoints[1].fine_tuned_model_checkpoint} <= models
    Model.model_validate(client.models.retrieve(done.fine_tuned_model).model_dump())
    for name in (done.fine_tuned_model, checkpoints[1].fine_tuned_model_checkpoint):
        answer = client.chat.completions.create(
            model=name, messages=HELLO, max_tokens=4, temperature=0
        )
        assert answer.model == name
        assert answer.usage is not None
        assert answer.usage.completion_tokens == 4
    adapter = local_backend.data_dir / "jobs" / job.id / "adapter"
    assert adapter.is_dir()
    deleted = client.models.delete(done.fine_tuned_model)
    assert (deleted.id, deleted.deleted) == (done.fine_tuned_model, True)
    assert not adapter.exists()  # deleted as on OpenAI: its files go too
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=done.fine_tuned_model, messages=HELLO)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(done.fine_tuned_model)
    kept = checkpoints[1].fine_tuned_model_checkpoint  # a model of its own, not deleted with it
    assert client.chat.completions.create(model=kept, messages=HELLO, max_tokens=2).model == kept
    with pytest.raises(openai.BadRequestError):
        client.models.delete("tiny-random")


def test_estimated_finish_while_running_then_cancel(
    slow_client: openai.OpenAI, tmp_path: Path
) -> None:
    train = _upload(slow_client, write_jsonl(tmp_path / "t.jsonl", chat_examples(12)))
    job = slow_client.fine_tuning.jobs.create(
        model="tiny-random",
        training_file=train,
        hyperparameters={"n_epochs": 5, "batch_size": 1},
    )
    _wait_for_step(slow_client, job.id, 3)
    running = slow_client.fine_tuning.jobs.retrieve(job.id)
    assert running.status == "running"
    assert running.estimated_finish is not None
    assert running.estimated_finish >= int(time.time())
    assert running.hyperparameters.n_epochs == 5  # resolved once training started
    cancelled = slow_client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    time.sleep(0.5)
    steps_then = [e.message for e in _events(slow_client, job.id) if e.type == "metrics"]
    time.sleep(0.5)
    steps_now = [e.message for e in _events(slow_client, job.id) if e.type == "metrics"]
    assert steps_now == steps_then  # training stopped
    final = slow_client.fine_tuning.jobs.retrieve(job.id)
    assert final.status == "cancelled"
    assert final.fine_tuned_model is None
    assert final.estimated_finish is None


def test_pause_and_resume_continue_from_the_last_checkpoint(
    slow_client: openai.OpenAI, tmp_path: Path
) -> None:
    train = _upload(slow_client, write_jsonl(tmp_path / "t.jsonl", chat_examples(10)))
    job = slow_client.fine_tuning.jobs.create(
        model="tiny-random", training_file=train, hyperparameters={"n_epochs": 3, "batch_size": 2}
    )
    _wait_for_step(slow_client, job.id, 7)  # past the first epoch's checkpoint at step 5
    paused = slow_client.fine_tuning.jobs.pause(job.id)
    assert paused.status == "paused"
    time.sleep(0.5)
    assert slow_client.fine_tuning.jobs.retrieve(job.id).status == "paused"
    resumed = slow_client.fine_tuning.jobs.resume(job.id)
    assert resumed.status == "queued"
    done = wait_for_job(slow_client, job.id)
    assert done.status == "succeeded", done.error
    messages = [e.message for e in _events(slow_client, job.id)]
    assert "Fine-tuning job paused" in messages
    assert "Fine-tuning job resumed" in messages
    resuming = [m for m in messages if m.startswith("Resuming training from the checkpoint")]
    assert len(resuming) == 1
    duplicates = [m for m, n in Counter(messages).items() if n > 1]
    assert duplicates == []
    steps = [m for m in messages if m.startswith("Step ")]
    assert len(steps) == 15  # every step exactly once
    assert messages[-1] == "The job has successfully completed"


def test_jobs_wait_in_the_queue_for_the_one_worker(
    slow_client: openai.OpenAI, tmp_path: Path
) -> None:
    train = _upload(slow_client, write_jsonl(tmp_path / "t.jsonl", chat_examples(10)))
    spec: dict[str, Any] = {"model": "tiny-random", "training_file": train}
    first = slow_client.fine_tuning.jobs.create(**spec, hyperparameters={"n_epochs": 2})
    second = slow_client.fine_tuning.jobs.create(**spec, hyperparameters={"n_epochs": 1})
    _wait_for_step(slow_client, first.id, 2)
    assert slow_client.fine_tuning.jobs.retrieve(second.id).status == "queued"
    assert wait_for_job(slow_client, first.id).status == "succeeded"
    assert wait_for_job(slow_client, second.id).status == "succeeded"


def test_a_crashed_worker_is_replaced_and_the_job_resumes(
    slow_backend: LocalBackend, slow_client: openai.OpenAI, tmp_path: Path
) -> None:
    train = _upload(slow_client, write_jsonl(tmp_path / "t.jsonl", chat_examples(10)))
    job = slow_client.fine_tuning.jobs.create(
        model="tiny-random", training_file=train, hyperparameters={"n_epochs": 2, "batch_size": 2}
    )
    _wait_for_step(slow_client, job.id, 7)
    [pid] = slow_backend.worker_pids
    os.kill(pid, signal.SIGKILL)
    done = wait_for_job(slow_client, job.id, timeout=120)
    assert done.status == "succeeded", done.error
    assert slow_backend.worker_pids != [pid]
    messages = [e.message for e in _events(slow_client, job.id)]
    assert "Resuming training from the checkpoint at step 5" in messages
    assert [m for m, n in Counter(messages).items() if n > 1] == []


def test_dpo_and_continued_fine_tuning(client: openai.OpenAI, tmp_path: Path) -> None:
    sft_file = _upload(client, write_jsonl(tmp_path / "sft.jsonl", chat_examples(10)))
    sft = client.fine_tuning.jobs.create(
        model="tiny-random", training_file=sft_file, hyperparameters={"n_epochs": 1}
    )
    sft_done = wait_for_job(client, sft.id)
    assert sft_done.fine_tuned_model is not None
    pairs = [
        {
            "input": {"messages": [{"role": "user", "content": f"Name {i}?"}]},
            "preferred_output": [{"role": "assistant", "content": f"Name {i} is fine."}],
            "non_preferred_output": [{"role": "assistant", "content": "No."}],
        }
        for i in range(10)
    ]
    dpo_file = _upload(client, write_jsonl(tmp_path / "dpo.jsonl", pairs))
    dpo = client.fine_tuning.jobs.create(
        model=sft_done.fine_tuned_model,
        training_file=dpo_file,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1, "n_epochs": 1}}},
    )
    assert dpo.model == sft_done.fine_tuned_model
    dpo_done = wait_for_job(client, dpo.id)
    assert dpo_done.status == "succeeded", dpo_done.error
    assert dpo_done.fine_tuned_model is not None
    assert dpo_done.fine_tuned_model.startswith("ft:tiny-random:local::")
    assert dpo_done.method is not None
    assert dpo_done.method.dpo is not None
    answer = client.chat.completions.create(
        model=dpo_done.fine_tuned_model, messages=HELLO, max_tokens=2
    )
    assert answer.choices[0].message.content is not None


def test_deleting_a_model_a_job_trains_from_keeps_its_files_for_that_job(
    slow_backend: LocalBackend, slow_client: openai.OpenAI, tmp_path: Path
) -> None:
    train = _upload(slow_client, write_jsonl(tmp_path / "t.jsonl", chat_examples(10)))
    first = slow_client.fine_tuning.jobs.create(
        model="tiny-random", training_file=train, hyperparameters={"n_epochs": 1}
    )
    base = wait_for_job(slow_client, first.id).fine_tuned_model
    assert base is not None
    adapter = slow_backend.data_dir / "jobs" / first.id / "adapter"
    second = slow_client.fine_tuning.jobs.create(
        model=base, training_file=train, hyperparameters={"n_epochs": 2}
    )
    assert slow_client.models.delete(base).deleted is True
    assert adapter.is_dir()  # the second job has not ended: it still needs them
    with pytest.raises(openai.BadRequestError):
        slow_client.fine_tuning.jobs.create(model=base, training_file=train)
    done = wait_for_job(slow_client, second.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model is not None


def _ended_jobs(client: openai.OpenAI, tmp_path: Path) -> dict[str, FineTuningJob]:
    """One job in each terminal state: trained, failed on its file, cancelled."""
    good = _upload(client, write_jsonl(tmp_path / "good.jsonl", chat_examples(10)))
    bad = _upload(client, write_jsonl(tmp_path / "bad.jsonl", chat_examples(3)))
    spec: dict[str, Any] = {"model": "tiny-random", "hyperparameters": {"n_epochs": 1}}
    succeeded = client.fine_tuning.jobs.create(training_file=good, **spec)
    failed = client.fine_tuning.jobs.create(training_file=bad, **spec)
    cancelled = client.fine_tuning.jobs.create(training_file=good, **spec)
    client.fine_tuning.jobs.cancel(cancelled.id)
    jobs = {job.id: wait_for_job(client, job.id) for job in (succeeded, failed, cancelled)}
    assert [j.status for j in jobs.values()] == ["succeeded", "failed", "cancelled"]
    assert jobs[succeeded.id].fine_tuned_model is not None
    return jobs


def test_an_ended_job_cannot_be_cancelled_paused_or_resumed(
    client: openai.OpenAI, tmp_path: Path
) -> None:
    for job_id, ended in _ended_jobs(client, tmp_path).items():
        events_before = [e.id for e in _events(client, job_id)]
        for action in (
            client.fine_tuning.jobs.cancel,
            client.fine_tuning.jobs.pause,
            client.fine_tuning.jobs.resume,
        ):
            with pytest.raises(openai.BadRequestError) as info:
                action(job_id)
            assert info.value.status_code == 400
            assert info.value.code == "invalid_job_status", (ended.status, action.__name__)
            assert info.value.param == "fine_tuning_job_id"
            after = client.fine_tuning.jobs.retrieve(job_id)
            assert after.status == ended.status, action.__name__
            assert after.fine_tuned_model == ended.fine_tuned_model
            assert after.finished_at == ended.finished_at
            assert after.error == ended.error
            assert after.result_files == ended.result_files
        assert [e.id for e in _events(client, job_id)] == events_before
        if ended.fine_tuned_model is not None:
            answer = client.chat.completions.create(
                model=ended.fine_tuned_model, messages=HELLO, max_tokens=2
            )
            assert answer.model == ended.fine_tuned_model
