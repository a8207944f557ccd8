"""A job that cannot run fails with a clear error and its worker goes on to the next job;
workers that keep dying are started again later, and the queue is told why it waits.

Every fault is real, with nothing of ours replaced: a job stored by a server that did not yet
check every range the engine enforces (written into the database the way that server wrote it),
and a data folder whose temporary folder is unusable (a file in its place).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.fine_tuning import FineTuningJobEvent

from finetune_kit.local import LocalBackend
from tests.fixtures.local_backend import chat_examples, wait_for_job, write_jsonl


def _last_event(client: openai.OpenAI, job_id: str) -> FineTuningJobEvent:
    return client.fine_tuning.jobs.list_events(job_id, limit=1).data[0]


def two_jobs(client: openai.OpenAI, path: Path, hyperparameters: dict[str, Any]) -> list[Any]:
    """Two jobs on one uploaded copy of ``path``, created in order."""
    file_id = client.files.create(file=path, purpose="fine-tune").id
    return [
        client.fine_tuning.jobs.create(
            model="tiny-random", training_file=file_id, hyperparameters=hyperparameters
        )
        for _ in range(2)
    ]


def test_a_stored_job_the_engine_refuses_fails_and_the_worker_trains_the_next(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    path = write_jsonl(tmp_path / "train.jsonl", chat_examples(10))
    with (
        LocalBackend(data_dir, default_model="tiny-random", max_concurrent_jobs=0) as first,
        first.client() as client,
    ):
        bad, good = two_jobs(client, path, {"n_epochs": 1, "learning_rate_multiplier": 1})
        for job in (bad, good):
            wait_for_job(client, job.id, statuses={"queued"})
    # The server now refuses 500 with a 400; an older one stored it, and its worker died on it.
    with closing(sqlite3.connect(data_dir / "local.sqlite3")) as db, db:
        [stored] = db.execute("SELECT method FROM jobs WHERE id = ?", (bad.id,)).fetchone()
        method = json.loads(stored)
        method["supervised"]["hyperparameters"]["learning_rate_multiplier"] = 500.0
        db.execute("UPDATE jobs SET method = ? WHERE id = ?", (json.dumps(method), bad.id))

    with LocalBackend(data_dir, default_model="tiny-random") as second:
        workers = second.worker_pids
        with second.client() as client:
            failed = wait_for_job(client, bad.id, timeout=120)
            assert failed.status == "failed"
            assert failed.error is not None
            assert failed.error.code == "invalid_hyperparameters"
            assert failed.error.param == "learning_rate_multiplier"
            assert "learning_rate_multiplier is 500.0" in failed.error.message
            assert "(0, 100]" in failed.error.message
            assert failed.finished_at is not None
            last = _last_event(client, bad.id)
            assert (last.level, last.message) == ("error", failed.error.message)
            done = wait_for_job(client, good.id, timeout=120)
            assert done.status == "succeeded", done.error
        assert second.worker_pids == workers  # the same worker, not a replacement


def test_a_job_that_fails_after_training_fails_and_the_worker_trains_the_next(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    path = write_jsonl(tmp_path / "train.jsonl", chat_examples(10))
    with LocalBackend(data_dir, default_model="tiny-random", training_step_delay=0.2) as backend:
        workers = backend.worker_pids
        with backend.client() as client:
            first, second = two_jobs(client, path, {"n_epochs": 1, "batch_size": 5})
            # The result file goes through data/tmp: a file in its place fails the first job's
            # last stage, after training, where an exception used to end the worker. Only once
            # the job runs: a worker opening the store then would die for another reason.
            wait_for_job(client, first.id, statuses={"running"}, timeout=120)
            tmp = data_dir / "tmp"
            shutil.rmtree(tmp)
            tmp.write_text("not a folder")
            try:
                failed = wait_for_job(client, first.id, timeout=120)
            finally:
                tmp.unlink()
                tmp.mkdir()
            assert failed.status == "failed"
            assert failed.error is not None
            assert failed.error.code == "server_error"
            assert "NotADirectoryError" in failed.error.message
            assert str(data_dir / "logs") in failed.error.message
            assert failed.fine_tuned_model is None
            last = _last_event(client, first.id)
            assert (last.level, last.message) == ("error", failed.error.message)
            done = wait_for_job(client, second.id, timeout=120)
            assert done.status == "succeeded", done.error
            assert done.result_files
        assert backend.worker_pids == workers


def test_workers_that_keep_dying_are_retried_and_the_queue_is_told_why(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = write_jsonl(tmp_path / "train.jsonl", chat_examples(10))
    with LocalBackend(data_dir, default_model="tiny-random") as backend, backend.client() as client:
        file_id = client.files.create(file=path, purpose="fine-tune").id
        [pid] = backend.worker_pids
        # A data folder no new worker can open: each replacement dies as it starts.
        tmp = data_dir / "tmp"
        shutil.rmtree(tmp)
        tmp.write_text("not a folder")
        os.kill(pid, signal.SIGKILL)
        job = client.fine_tuning.jobs.create(
            model="tiny-random", training_file=file_id, hyperparameters={"n_epochs": 1}
        )
        deadline = time.monotonic() + 120
        while True:
            warnings = [
                e for e in client.fine_tuning.jobs.list_events(job.id).data if e.level == "warn"
            ]
            if warnings or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        tmp.unlink()
        tmp.mkdir()
        [warning] = warnings
        assert "the worker process stopped 5 times" in warning.message
        assert str(data_dir / "logs" / "worker-0.log") in warning.message
        assert "restart the server" in warning.message
        assert client.fine_tuning.jobs.retrieve(job.id).status == "queued"
        # The cause is gone: a later attempt starts a worker that trains the queue.
        done = wait_for_job(client, job.id, timeout=180)
        assert done.status == "succeeded", done.error
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]
        assert messages.count(warning.message) == 1


def _damage(data_dir: Path, job_id: str, column: str, status: str | None = None) -> None:
    """Write text that is not JSON into one JSON column of one job, as a bad disk might."""
    with closing(sqlite3.connect(data_dir / "local.sqlite3")) as db, db:
        db.execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", ('{"type": "superv', job_id))
        if status is not None:
            db.execute("UPDATE jobs SET status = ? WHERE id = ?", (status, job_id))


def test_a_queued_job_with_a_damaged_row_fails_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = write_jsonl(tmp_path / "train.jsonl", chat_examples(10))
    with (
        LocalBackend(data_dir, default_model="tiny-random", max_concurrent_jobs=0) as first,
        first.client() as client,
    ):
        bad, good = two_jobs(client, path, {"n_epochs": 1})
        for job in (bad, good):
            wait_for_job(client, job.id, statuses={"queued"})
    _damage(data_dir, bad.id, "method")

    with LocalBackend(data_dir, default_model="tiny-random") as second:
        workers = second.worker_pids
        with second.client() as client:
            listed = client.fine_tuning.jobs.list(limit=10)
            assert {j.id for j in listed.data} == {bad.id, good.id}
            failed = wait_for_job(client, bad.id, timeout=120)
            assert failed.status == "failed"
            assert failed.error is not None
            assert failed.error.code == "server_error"
            assert "damaged" in failed.error.message
            assert "method" in failed.error.message
            last = _last_event(client, bad.id)
            assert (last.level, last.message) == ("error", failed.error.message)
            done = wait_for_job(client, good.id, timeout=120)
            assert done.status == "succeeded", done.error
        assert second.worker_pids == workers  # the worker lived on


def test_a_validating_job_with_a_damaged_row_leaves_the_validator_running(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    path = write_jsonl(tmp_path / "train.jsonl", chat_examples(10))
    with (
        LocalBackend(data_dir, default_model="tiny-random", max_concurrent_jobs=0) as first,
        first.client() as client,
    ):
        file_id = client.files.create(file=path, purpose="fine-tune").id
        bad = client.fine_tuning.jobs.create(model="tiny-random", training_file=file_id)
        wait_for_job(client, bad.id, statuses={"queued"})
    # Back in validating_files, as if the server had stopped while checking its files.
    _damage(data_dir, bad.id, "metadata", status="validating_files")

    with (
        LocalBackend(data_dir, default_model="tiny-random", max_concurrent_jobs=0) as second,
        second.client() as client,
    ):
        failed = wait_for_job(client, bad.id, timeout=120)
        assert failed.status == "failed"
        assert failed.error is not None
        assert failed.error.code == "server_error"
        assert "metadata" in failed.error.message
        last = _last_event(client, bad.id)
        assert (last.level, last.message) == ("error", failed.error.message)
        # The validator thread lived on: the next job's files are checked.
        later = client.fine_tuning.jobs.create(model="tiny-random", training_file=file_id)
        assert wait_for_job(client, later.id, statuses={"queued"}, timeout=60).status == "queued"


def test_a_crash_in_the_file_validator_fails_the_job_with_an_error_event(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    path = write_jsonl(tmp_path / "train.jsonl", chat_examples(10))
    with (
        LocalBackend(data_dir, default_model="tiny-random", max_concurrent_jobs=0) as backend,
        backend.client() as client,
    ):
        file_id = client.files.create(file=path, purpose="fine-tune").id
        # The row stays, the contents go: reading them raises inside the validator.
        (data_dir / "files" / file_id).unlink()
        job = client.fine_tuning.jobs.create(model="tiny-random", training_file=file_id)
        failed = wait_for_job(client, job.id, timeout=60)
        assert failed.status == "failed"
        assert failed.error is not None
        assert failed.error.code == "server_error"
        assert "FileNotFoundError" in failed.error.message
        errors = [
            e
            for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data
            if e.level == "error"
        ]
        assert [e.message for e in errors] == [failed.error.message]


def test_damaged_events_checkpoints_and_a_lost_file_answer_without_a_5xx(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = write_jsonl(tmp_path / "train.jsonl", chat_examples(10))
    with LocalBackend(data_dir, default_model="tiny-random") as first, first.client() as client:
        file_id = client.files.create(file=path, purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(
            model="tiny-random", training_file=file_id, hyperparameters={"n_epochs": 2}
        )
        assert wait_for_job(client, job.id, timeout=120).status == "succeeded"
    # As a bad disk might: text that is not JSON in an event's data and a checkpoint's metrics,
    # and the training file's bytes gone from the data folder.
    with closing(sqlite3.connect(data_dir / "local.sqlite3")) as db, db:
        db.execute("UPDATE events SET data = '{\"step\": 1' WHERE job_id = ?", (job.id,))
        db.execute("UPDATE checkpoints SET metrics = '{\"step\"' WHERE job_id = ?", (job.id,))
    blob = next(p for p in data_dir.rglob(file_id) if p.is_file())
    blob.unlink()

    with LocalBackend(data_dir, default_model="tiny-random") as second, second.client() as client:
        events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
        assert events  # every event still listed, its damaged data left out
        checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
        assert checkpoints
        assert all(c.fine_tuning_job_id == job.id for c in checkpoints)
        assert client.fine_tuning.jobs.retrieve(job.id).status == "succeeded"
        with pytest.raises(openai.NotFoundError) as caught:
            client.files.content(file_id)
        assert file_id in caught.value.message
        assert "data folder" in caught.value.message
