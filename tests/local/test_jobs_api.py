"""/v1/fine_tuning/jobs without training: creation checks, validation, queue, list, events.

These tests use a backend of their own with no worker (``max_concurrent_jobs=0``), so jobs stay
queued exactly where the test puts them. Training itself is covered by test_training_jobs.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import openai
import pytest
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

from finetune_kit.local import LocalBackend
from tests.fixtures.local_backend import chat_examples, wait_for_job, write_jsonl


@pytest.fixture(scope="module")
def queue_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    data_dir = tmp_path_factory.mktemp("queue-backend")
    with LocalBackend(data_dir, default_model="tiny-random", max_concurrent_jobs=0) as backend:
        yield backend


@pytest.fixture
def qclient(queue_backend: LocalBackend) -> Iterator[openai.OpenAI]:
    with queue_backend.client() as http_client:
        yield http_client


@pytest.fixture
def training_id(qclient: openai.OpenAI, tmp_path: Path) -> str:
    path = write_jsonl(tmp_path / "train.jsonl", chat_examples(12))
    return qclient.files.create(file=path, purpose="fine-tune").id


class _SpecJob(FineTuningJob):
    """``FineTuningJob`` as OpenAI's spec has it: the SDK's status Literal lacks ``paused``."""

    status: Literal[  # type: ignore[assignment]  # a wider Literal than the SDK's, on purpose
        "validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"
    ]


def _strict_job(response: Any) -> _SpecJob:
    """Our raw JSON parsed strictly: a wrong type or a missing field fails here."""
    return _SpecJob.model_validate(json.loads(response.text), strict=True)


def test_create_with_every_parameter(qclient: openai.OpenAI, training_id: str) -> None:
    raw = qclient.fine_tuning.jobs.with_raw_response.create(
        model="gpt-4o-mini-2024-07-18",
        training_file=training_id,
        validation_file=training_id,
        suffix="my-bot",
        seed=42,
        metadata={"run": "abc", "owner": "tests"},
        integrations=[{"type": "wandb", "wandb": {"project": "p", "tags": ["x"]}}],
        method={
            "type": "dpo",
            "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 2, "batch_size": 1}},
        },
    )
    job = _strict_job(raw)
    assert job.id.startswith("ftjob-")
    assert job.object == "fine_tuning.job"
    assert job.status == "validating_files"
    assert job.model == "tiny-random"  # the base model really used, alias resolved
    assert job.seed == 42
    assert job.metadata == {"run": "abc", "owner": "tests"}
    assert job.validation_file == training_id
    assert job.integrations is not None
    assert job.integrations[0].wandb.project == "p"
    assert job.method is not None
    assert job.method.type == "dpo"
    assert job.method.dpo is not None
    assert job.method.dpo.hyperparameters is not None
    hyper = job.method.dpo.hyperparameters
    assert (hyper.beta, hyper.n_epochs, hyper.batch_size) == (0.2, 2, 1)
    assert hyper.learning_rate_multiplier == "auto"
    assert job.fine_tuned_model is None
    assert job.trained_tokens is None
    assert job.result_files == []


def test_deprecated_hyperparameters_become_the_supervised_method(
    qclient: openai.OpenAI, training_id: str
) -> None:
    job = qclient.fine_tuning.jobs.create(
        model="gpt-3.5-turbo",
        training_file=training_id,
        hyperparameters={"n_epochs": 3, "learning_rate_multiplier": 0.5},
    )
    assert job.method is not None
    assert job.method.supervised is not None
    supervised = job.method.supervised.hyperparameters
    assert supervised is not None
    assert (supervised.n_epochs, supervised.learning_rate_multiplier) == (3, 0.5)
    assert supervised.batch_size == "auto"
    assert (job.hyperparameters.n_epochs, job.hyperparameters.batch_size) == (3, "auto")
    assert 0 <= job.seed < 2**31


@pytest.mark.parametrize(
    ("kwargs", "param", "fragment"),
    [
        ({"model": "no-such-model"}, "model", "no-such-model"),
        ({"training_file": "file-missing"}, "training_file", "file-missing"),
        ({"validation_file": "file-missing"}, "validation_file", "file-missing"),
        ({"suffix": "x" * 65}, "suffix", "64"),
        ({"suffix": "has:colon"}, "suffix", "suffix"),
        ({"seed": -1}, "seed", "seed"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "16"),
        (
            {"method": {"type": "reinforcement", "reinforcement": {"grader": {}}}},
            "method.reinforcement.grader.type",
            "has no 'type'",
        ),
        (
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}},
            "method.supervised.hyperparameters.n_epochs",
            "n_epochs",
        ),
        (
            {"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 3}}}},
            "method.dpo.hyperparameters.beta",
            "beta",
        ),
        (
            # OpenAI takes any multiplier > 0; the local engine refuses more than 100, so
            # the server must too instead of queueing a job its worker cannot train.
            {"hyperparameters": {"learning_rate_multiplier": 500}},
            "hyperparameters.learning_rate_multiplier",
            "(0, 100]",
        ),
        (
            {
                "method": {
                    "type": "supervised",
                    "supervised": {"hyperparameters": {"learning_rate_multiplier": 0}},
                }
            },
            "method.supervised.hyperparameters.learning_rate_multiplier",
            "(0, 100]",
        ),
        (
            {"method": {"type": "dpo", "dpo": {"hyperparameters": {"batch_size": 257}}}},
            "method.dpo.hyperparameters.batch_size",
            "[1, 256]",
        ),
        ({"hyperparameters": {"n_epochs": 51}}, "hyperparameters.n_epochs", "[1, 50]"),
        ({"hyperparameters": {"n_epochs": 2.5}}, "hyperparameters.n_epochs", "n_epochs"),
        ({"integrations": [{"type": "other"}]}, "integrations[0].type", "integrations"),
        ({"extra_body": {"surprise": 1}}, "surprise", "Unrecognized request argument"),
    ],
)
def test_bad_requests_name_the_parameter(
    qclient: openai.OpenAI,
    training_id: str,
    kwargs: dict[str, Any],
    param: str,
    fragment: str,
) -> None:
    call: dict[str, Any] = {"model": "gpt-4o-mini", "training_file": training_id, **kwargs}
    before = len(qclient.fine_tuning.jobs.list(limit=10_000).data)
    with pytest.raises(openai.BadRequestError) as info:
        qclient.fine_tuning.jobs.create(**call)
    assert info.value.param == param
    assert fragment in info.value.message
    assert isinstance(info.value.body, dict)
    assert info.value.body["type"] == "invalid_request_error"
    assert len(qclient.fine_tuning.jobs.list(limit=10_000).data) == before  # nothing stored


def test_a_file_with_another_purpose_is_refused(qclient: openai.OpenAI) -> None:
    other = qclient.files.create(file=("n.txt", b"x"), purpose="user_data")
    with pytest.raises(openai.BadRequestError) as info:
        qclient.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=other.id)
    assert info.value.param == "training_file"
    assert "user_data" in info.value.message


def test_valid_file_moves_to_queued_with_openais_events(
    qclient: openai.OpenAI, training_id: str
) -> None:
    job = qclient.fine_tuning.jobs.create(model="gpt-3.5-turbo", training_file=training_id)
    queued = wait_for_job(qclient, job.id, statuses={"queued"})
    assert queued.status == "queued"
    raw = qclient.fine_tuning.jobs.with_raw_response.list_events(job.id)
    events = [FineTuningJobEvent.model_validate(e) for e in json.loads(raw.text)["data"]]
    assert [e.message for e in reversed(events)] == [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {training_id}",
        "Files validated, moving job to queued state",
    ]
    assert all(e.id.startswith("ftevent-") and e.level == "info" for e in events)


def test_bad_training_file_fails_the_job_naming_the_line(
    qclient: openai.OpenAI, tmp_path: Path
) -> None:
    rows: list[Any] = chat_examples(12)
    rows[2]["messages"][2]["weight"] = 2
    rows[5] = "{not json"
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    file_id = qclient.files.create(file=path, purpose="fine-tune").id
    job = qclient.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=file_id)
    failed = wait_for_job(qclient, job.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "invalid_training_file"
    assert failed.error.param == "training_file"
    assert failed.error.message.startswith("Training file has 2 errors; first: line 3")
    assert "weight" in failed.error.message
    assert failed.finished_at is not None
    last = qclient.fine_tuning.jobs.list_events(job.id, limit=1).data[0]
    assert last.level == "error"
    assert last.message == failed.error.message


def test_too_few_examples_fail_the_job(qclient: openai.OpenAI, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "small.jsonl", chat_examples(3))
    file_id = qclient.files.create(file=path, purpose="fine-tune").id
    job = qclient.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=file_id)
    failed = wait_for_job(qclient, job.id)
    assert failed.error is not None
    assert failed.error.code == "invalid_training_file"
    assert "10" in failed.error.message


def test_list_is_newest_first_with_paging_and_metadata_filter(
    qclient: openai.OpenAI, training_id: str
) -> None:
    tag = {"batch": training_id}
    made = [
        qclient.fine_tuning.jobs.create(
            model="gpt-4o-mini", training_file=training_id, metadata={**tag, "n": str(i)}
        ).id
        for i in range(3)
    ]
    assert [j.id for j in qclient.fine_tuning.jobs.list(metadata=tag).data] == made[::-1]
    page = qclient.fine_tuning.jobs.list(metadata=tag, limit=2)
    assert [j.id for j in page.data] == [made[2], made[1]]
    assert page.has_more is True
    rest = qclient.fine_tuning.jobs.list(metadata=tag, limit=2, after=made[1])
    assert [j.id for j in rest.data] == [made[0]]
    assert rest.has_more is False
    one = qclient.fine_tuning.jobs.list(metadata={**tag, "n": "1"})
    assert [j.id for j in one.data] == [made[1]]
    assert qclient.fine_tuning.jobs.list(metadata={"batch": "nothing"}).data == []
    raw = qclient.fine_tuning.jobs.with_raw_response.list(limit=10)
    for item in json.loads(raw.text)["data"]:
        FineTuningJob.model_validate(item)


def test_unknown_job_is_a_404(qclient: openai.OpenAI) -> None:
    for call in (
        qclient.fine_tuning.jobs.retrieve,
        qclient.fine_tuning.jobs.cancel,
        qclient.fine_tuning.jobs.list_events,
        qclient.fine_tuning.jobs.checkpoints.list,
    ):
        with pytest.raises(openai.NotFoundError):
            call("ftjob-nope")


def test_events_page_backwards_in_time(qclient: openai.OpenAI, training_id: str) -> None:
    job = qclient.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training_id)
    wait_for_job(qclient, job.id, statuses={"queued"})
    first = qclient.fine_tuning.jobs.list_events(job.id, limit=2)
    assert first.has_more is True
    assert next(e.message for e in first.data).startswith("Files validated")
    older = qclient.fine_tuning.jobs.list_events(job.id, limit=2, after=first.data[-1].id)
    assert [e.message for e in older.data] == [f"Created fine-tuning job: {job.id}"]
    assert older.has_more is False


def test_cancel_pause_resume_in_the_queue(qclient: openai.OpenAI, training_id: str) -> None:
    job = qclient.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training_id)
    wait_for_job(qclient, job.id, statuses={"queued"})
    paused = _strict_job(qclient.fine_tuning.jobs.with_raw_response.pause(job.id))
    assert paused.status == "paused"
    with pytest.raises(openai.BadRequestError) as info:
        qclient.fine_tuning.jobs.pause(job.id)
    assert info.value.code == "invalid_job_status"
    resumed = _strict_job(qclient.fine_tuning.jobs.with_raw_response.resume(job.id))
    assert resumed.status == "queued"
    cancelled = _strict_job(qclient.fine_tuning.jobs.with_raw_response.cancel(job.id))
    assert cancelled.status == "cancelled"
    assert cancelled.finished_at is not None
    with pytest.raises(openai.BadRequestError) as info:
        qclient.fine_tuning.jobs.cancel(job.id)
    assert "ended" in info.value.message
    with pytest.raises(openai.BadRequestError):
        qclient.fine_tuning.jobs.resume(job.id)
    messages = [e.message for e in qclient.fine_tuning.jobs.list_events(job.id, limit=3).data]
    assert messages == [
        "Fine-tuning job cancelled",
        "Fine-tuning job resumed",
        "Fine-tuning job paused",
    ]
    assert qclient.fine_tuning.jobs.checkpoints.list(job.id).data == []


def test_continued_fine_tuning_needs_an_existing_model(
    qclient: openai.OpenAI, training_id: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        qclient.fine_tuning.jobs.create(
            model="ft:tiny-random:local::nothere", training_file=training_id
        )
    assert info.value.code == "model_not_available"
