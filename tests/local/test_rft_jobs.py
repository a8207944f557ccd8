"""Reinforcement fine-tuning jobs over HTTP with the openai client, on the tiny model.

A whole job with a string_check grader (events, metrics as the library reads them, checkpoints,
the result file, the tuned model answering), pause, resume, cancel, a killed worker, and the
checks before a job is queued (the grader, the hyperparameters, the data).
"""

from __future__ import annotations

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
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from finetune_kit.jobs import JobManager, MetricSeries
from finetune_kit.local import LocalBackend
from tests.fixtures.local_backend import wait_for_job, write_jsonl

GRADER = {
    "type": "string_check",
    "name": "says_the_letter",
    "operation": "like",
    "input": "{{sample.output_text}}",
    "reference": "{{item.letter}}",
}
FAST = {"compute_multiplier": 0.5, "reasoning_effort": "low"}  # 4 answers of 64 tokens at most


def _rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        {
            "messages": [
                {"role": "developer", "content": "Answer with one letter."},
                {"role": "user", "content": f"Say the letter {letters[i % 26]}."},
            ],
            "letter": letters[i % 26],
        }
        for i in range(start, start + n)
    ]


def _upload(client: openai.OpenAI, path: Path, rows: list[Any]) -> str:
    return client.files.create(file=write_jsonl(path, rows), purpose="fine-tune").id


def _method(grader: Any = GRADER, **hyperparameters: Any) -> dict[str, Any]:
    return {
        "type": "reinforcement",
        "reinforcement": {"grader": grader, "hyperparameters": {**FAST, **hyperparameters}},
    }


def _events(client: openai.OpenAI, job_id: str) -> list[FineTuningJobEvent]:
    """Every event, oldest first, each parsed strictly."""
    raw = client.fine_tuning.jobs.with_raw_response.list_events(job_id, limit=10_000)
    return [FineTuningJobEvent.model_validate(e) for e in reversed(json.loads(raw.text)["data"])]


def _wait_for_step(client: openai.OpenAI, job_id: str, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    pattern = re.compile(r"Step (\d+)/")
    while time.monotonic() < deadline:
        for event in client.fine_tuning.jobs.list_events(job_id, limit=5).data:
            match = pattern.match(event.message)
            if match and int(match.group(1)) >= step:
                return
        time.sleep(0.05)
    pytest.fail(f"job {job_id} did not reach step {step}")


@pytest.fixture(scope="module")
def slow_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    """A backend whose steps last a little longer, so a test can act while a job runs."""
    with LocalBackend(
        tmp_path_factory.mktemp("rft-backend"), default_model="tiny-random", training_step_delay=0.2
    ) as backend:
        yield backend


@pytest.fixture
def slow_client(slow_backend: LocalBackend) -> Iterator[openai.OpenAI]:
    with slow_backend.client() as http_client:
        yield http_client


def test_a_reinforcement_job_trains_and_reports_like_openai(
    client: openai.OpenAI, tmp_path: Path
) -> None:
    train = _upload(client, tmp_path / "train.jsonl", _rows(10))
    valid = _upload(client, tmp_path / "valid.jsonl", _rows(4, start=10))
    job = client.fine_tuning.jobs.create(
        model="o4-mini",
        training_file=train,
        validation_file=valid,
        suffix="rft",
        method=_method(n_epochs=2, batch_size=5, eval_interval=2, eval_samples=2),  # type: ignore[arg-type]
    )
    assert job.method is not None
    assert job.method.type == "reinforcement"
    assert job.method.reinforcement is not None
    assert job.method.reinforcement.grader.to_dict() == GRADER
    done = wait_for_job(client, job.id, timeout=300)
    raw = client.fine_tuning.jobs.with_raw_response.retrieve(job.id)
    done = FineTuningJob.model_validate(json.loads(raw.text))
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model is not None
    assert done.fine_tuned_model.startswith("ft:tiny-random:local:rft:")
    assert done.trained_tokens is not None
    assert done.trained_tokens > 0
    assert done.method is not None
    assert done.method.reinforcement is not None
    hyper = done.method.reinforcement.hyperparameters
    assert hyper is not None
    assert hyper.model_dump() == {
        "batch_size": 5,
        "compute_multiplier": 0.5,
        "eval_interval": 2,
        "eval_samples": 2,
        "learning_rate_multiplier": 0.25,  # "auto", resolved
        "n_epochs": 2,
        "reasoning_effort": "low",
    }

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
    assert [e.data["step"] for e in metrics] == [1, 2, 3, 4]  # type: ignore[index]
    for event in metrics:
        data = event.data
        assert isinstance(data, dict)
        assert re.fullmatch(
            rf"Step {data['step']}/4: train reward mean=\d\.\d{{4}}"
            r"(, validation reward mean=\d\.\d{4})?",
            event.message,
        )
        assert 0 <= data["train_reward_mean"] <= 1
        assert data["train_grader_errors"] == 0
        assert "train_mean_token_accuracy" not in data
        # An evaluation every 2 steps, over the whole validation file.
        assert ("valid_reward_mean" in data) == (data["step"] % 2 == 0)
    checkpoint_messages = [m for m in messages if m.startswith("Checkpoint created")]
    assert len(checkpoint_messages) == 2  # one per epoch

    # The library reads the rewards from the events and from the result file.
    series = MetricSeries.from_events(events)
    assert series.steps == [1, 2, 3, 4]
    assert all(isinstance(v, float) for v in series.column("train_reward_mean"))
    valid_rewards = series.column("valid_reward_mean")
    assert [v is None for v in valid_rewards] == [True, False, True, False]
    results = JobManager(client).results(done)
    assert results.column("train_reward_mean") == series.column("train_reward_mean")
    assert results.column("valid_reward_mean") == valid_rewards
    frame = results.to_dataframe()
    assert {"train_reward_mean", "valid_reward_mean", "train_loss"} <= set(frame.columns)
    results.plot_loss(tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 0

    raw_checkpoints = client.fine_tuning.jobs.checkpoints.with_raw_response.list(job.id)
    checkpoints = [
        FineTuningJobCheckpoint.model_validate(c) for c in json.loads(raw_checkpoints.text)["data"]
    ]
    assert [c.step_number for c in checkpoints] == [4, 2]
    assert checkpoints[0].metrics.to_dict()["train_reward_mean"] == series.last.get(  # type: ignore[union-attr]
        "train_reward_mean"
    )
    for model in (done.fine_tuned_model, checkpoints[1].fine_tuned_model_checkpoint):
        answer = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Say the letter z."}],
            max_tokens=4,
        )
        assert answer.model == model
        assert answer.choices[0].message.content is not None


def test_pause_resume_and_cancel(slow_client: openai.OpenAI, tmp_path: Path) -> None:
    train = _upload(slow_client, tmp_path / "train.jsonl", _rows(10))
    job = slow_client.fine_tuning.jobs.create(
        model="tiny-random",
        training_file=train,
        method=_method(n_epochs=2, batch_size=2),  # type: ignore[arg-type]
    )
    _wait_for_step(slow_client, job.id, 6)  # past the first epoch's checkpoint at step 5
    assert slow_client.fine_tuning.jobs.pause(job.id).status == "paused"
    time.sleep(0.5)
    assert slow_client.fine_tuning.jobs.retrieve(job.id).status == "paused"
    assert slow_client.fine_tuning.jobs.resume(job.id).status == "queued"
    done = wait_for_job(slow_client, job.id, timeout=300)
    assert done.status == "succeeded", done.error
    messages = [e.message for e in _events(slow_client, job.id)]
    assert [m for m, n in Counter(messages).items() if n > 1] == []
    assert sum(m.startswith("Step ") for m in messages) == 10  # every step exactly once
    assert sum(m.startswith("Resuming training from the checkpoint") for m in messages) == 1

    other = slow_client.fine_tuning.jobs.create(
        model="tiny-random",
        training_file=train,
        method=_method(n_epochs=3, batch_size=2),  # type: ignore[arg-type]
    )
    _wait_for_step(slow_client, other.id, 1)
    assert slow_client.fine_tuning.jobs.cancel(other.id).status == "cancelled"
    time.sleep(1.0)
    steps_then = [e.message for e in _events(slow_client, other.id) if e.type == "metrics"]
    time.sleep(1.0)
    steps_now = [e.message for e in _events(slow_client, other.id) if e.type == "metrics"]
    assert steps_now == steps_then  # training stopped
    final = slow_client.fine_tuning.jobs.retrieve(other.id)
    assert (final.status, final.fine_tuned_model) == ("cancelled", None)


def test_a_killed_worker_is_replaced_and_the_job_resumes(
    slow_backend: LocalBackend, slow_client: openai.OpenAI, tmp_path: Path
) -> None:
    train = _upload(slow_client, tmp_path / "train.jsonl", _rows(10))
    job = slow_client.fine_tuning.jobs.create(
        model="tiny-random",
        training_file=train,
        method=_method(n_epochs=2, batch_size=2),  # type: ignore[arg-type]
    )
    _wait_for_step(slow_client, job.id, 6)
    [pid] = slow_backend.worker_pids
    os.kill(pid, signal.SIGKILL)
    done = wait_for_job(slow_client, job.id, timeout=300)
    assert done.status == "succeeded", done.error
    messages = [e.message for e in _events(slow_client, job.id)]
    assert "Resuming training from the checkpoint at step 5" in messages
    assert [m for m, n in Counter(messages).items() if n > 1] == []


@pytest.mark.parametrize(
    ("method", "param", "fragment"),
    [
        (
            _method({**GRADER, "refrence": "x"}),
            "method.reinforcement.grader.refrence",
            "did you mean 'reference'",
        ),
        (
            _method({**GRADER, "input": "{{answer}}"}),
            "method.reinforcement.grader.input",
            "namespace",
        ),
        (
            _method(
                {
                    "type": "score_model",
                    "name": "judge",
                    "model": "gpt-4o-mini",
                    "input": [{"role": "user", "content": "Rate {{sample.output_text}}"}],
                }
            ),
            "method.reinforcement.grader.type",
            "judge model",
        ),
        ({"type": "reinforcement"}, "method.reinforcement", "grader"),
        (
            {"type": "reinforcement", "reinforcement": {"hyperparameters": {}}},
            "method.reinforcement.grader",
            "",
        ),
        (
            {"type": "reinforcement", "reinforcement": {"grader": GRADER}, "supervised": {}},
            "method.supervised",
            "method.type",
        ),
        (
            _method(eval_samples=0),
            "method.reinforcement.hyperparameters.eval_samples",
            "eval_samples",
        ),
        (
            _method(compute_multiplier=20),
            "method.reinforcement.hyperparameters.compute_multiplier",
            "(1e-05, 10]",
        ),
        (
            _method(reasoning_effort="max"),
            "method.reinforcement.hyperparameters.reasoning_effort",
            "low",
        ),
        (_method(beta=0.1), "method.reinforcement.hyperparameters.beta", ""),
    ],
)
def test_a_bad_reinforcement_method_is_a_400_naming_the_field(
    client: openai.OpenAI, tmp_path: Path, method: dict[str, Any], param: str, fragment: str
) -> None:
    train = _upload(client, tmp_path / "train.jsonl", _rows(10))
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(
            model="tiny-random",
            training_file=train,
            method=method,  # type: ignore[arg-type]
        )
    assert caught.value.param == param, caught.value.message
    assert fragment in caught.value.message


def test_chat_data_fails_a_reinforcement_job_naming_the_line(
    client: openai.OpenAI, tmp_path: Path
) -> None:
    rows: list[Any] = _rows(10)
    rows[3] = {
        "messages": [
            {"role": "user", "content": "Say the letter d."},
            {"role": "assistant", "content": "d"},
        ]
    }
    train = _upload(client, tmp_path / "train.jsonl", rows)
    job = client.fine_tuning.jobs.create(
        model="tiny-random",
        training_file=train,
        method=_method(),  # type: ignore[arg-type]
    )
    failed = wait_for_job(client, job.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error.code, failed.error.param) == ("invalid_training_file", "training_file")
    assert "line 4" in failed.error.message
    assert "end with the user turn" in failed.error.message


def test_a_grader_that_fails_on_every_answer_fails_the_job(
    client: openai.OpenAI, tmp_path: Path
) -> None:
    # Valid, but every line lacks the key it reads: each grading is an invalid_variable_error.
    train = _upload(client, tmp_path / "train.jsonl", _rows(10))
    job = client.fine_tuning.jobs.create(
        model="tiny-random",
        training_file=train,
        method=_method({**GRADER, "reference": "{{item.answer}}"}, batch_size=2),  # type: ignore[arg-type]
    )
    failed = wait_for_job(client, job.id, timeout=300)
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error.code, failed.error.param) == (
        "invalid_grader",
        "method.reinforcement.grader",
    )
    assert "invalid_variable_error" in failed.error.message
    assert "item.answer" in failed.error.message
    steps = [e for e in _events(client, job.id) if e.type == "metrics"]
    assert [e.message for e in steps][-1].endswith("grader errors=8")
