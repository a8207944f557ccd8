"""JobManager against the local backend: the tiny model really trains, with fault injection."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.errors import JobCancelledError, JobFailedError, JobTimeoutError
from finetune_kit.files import FileUploader, UploadedFile
from finetune_kit.jobs import IDEMPOTENCY_METADATA_KEY, AsyncJobManager, JobManager
from finetune_kit.jobs.following import FollowOptions
from finetune_kit.jobs.metrics import MetricPoint
from finetune_kit.jobs.views import JobEvent, StatusChange
from tests.fixtures.local_backend import chat_examples, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import FaultInjector, LocalBackend

FAST = FollowOptions(initial_interval=0.1, max_interval=0.5, events_page_size=10)


def quick_policy(**kwargs: Any) -> RetryPolicy:
    """Real sleeps, short delays: the backend needs real time to train."""
    return RetryPolicy(initial_delay=0.05, max_delay=0.2, **kwargs)


def unique_rows(n: int = 12) -> list[dict[str, Any]]:
    return chat_examples(n, topic=f"element-{os.urandom(4).hex()}")


def all_events(client: openai.OpenAI, job_id: str) -> list[Any]:
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=7))))


def jobs_with_key(client: openai.OpenAI, key: str) -> list[Any]:
    return [
        j
        for j in client.fine_tuning.jobs.list(limit=100)
        if (j.metadata or {}).get(IDEMPOTENCY_METADATA_KEY) == key
    ]


@pytest.fixture
def manager(client: openai.OpenAI) -> JobManager:
    return JobManager(client, policy=quick_policy(), follow_options=FAST, progress=False)


@pytest.fixture
def training_file(client: openai.OpenAI, tmp_path: Path) -> UploadedFile:
    path = write_jsonl(tmp_path / "train.jsonl", unique_rows())
    return FileUploader(client, policy=quick_policy(), progress=False).upload(path)


@pytest.fixture(scope="module")
def finished_job(
    local_backend: LocalBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One job that ran to the end, shared by the tests that only read it."""
    path = write_jsonl(tmp_path_factory.mktemp("finished") / "train.jsonl", unique_rows())
    with local_backend.client() as client:
        uploaded = FileUploader(client, progress=False).upload(path)
        manager = JobManager(client, policy=quick_policy(), follow_options=FAST, progress=False)
        job = manager.create(
            model="gpt-4o-mini", training_file=uploaded, hyperparameters={"n_epochs": 2}
        )
        yield manager.wait(job.id, timeout=300)


def test_whole_workflow_survives_faults_and_sees_every_event_once(
    local_backend: LocalBackend, client: openai.OpenAI, local_faults: FaultInjector, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", unique_rows())
    local_faults.script("POST", "/v1/files", ["429:0.2", "drop"])
    local_faults.script("POST", "/v1/fine_tuning/jobs", ["500", "drop"])
    local_faults.script("GET", "/v1/fine_tuning/jobs/{id}", ["429:0.2", "drop", "503", "500"])
    local_faults.script(
        "GET", "/v1/fine_tuning/jobs/{id}/events", ["drop", "500", "429:0.1", "drop"]
    )
    policy = quick_policy()
    uploaded = FileUploader(client, policy=policy, progress=False).upload(path)
    manager = JobManager(client, policy=policy, follow_options=FAST, progress=False)
    job = manager.create(
        model="gpt-4o-mini",
        training_file=uploaded,
        method="supervised",
        hyperparameters={"n_epochs": 2, "batch_size": 2},
        suffix="faulty",
        seed=7,
        metadata={"test": "workflow"},
    )
    key = (job.metadata or {})[IDEMPOTENCY_METADATA_KEY]
    updates: list[Any] = []
    local_faults.clear_log()
    done = manager.wait(job.id, on_update=updates.append, timeout=300)

    assert done.status == "succeeded"
    assert done.fine_tuned_model is not None
    assert "faulty" in done.fine_tuned_model
    # Faults were met while following, and every event came out once, in time order.
    assert local_faults.count("GET", "/v1/fine_tuning/jobs/{id}/events") > 4
    emitted = [u for u in updates if isinstance(u, JobEvent)]
    assert [e.id for e in emitted] == [e.id for e in all_events(client, job.id)]
    assert emitted[-1].message == "The job has successfully completed"
    points = [u for u in updates if isinstance(u, MetricPoint)]
    total = points[-1].total_steps
    assert total is not None
    assert [p.step for p in points] == list(range(1, total + 1))
    assert all(p.train_loss is not None for p in points)
    statuses = [u.status for u in updates if isinstance(u, StatusChange)]
    assert statuses[-1] == "succeeded"
    assert len(statuses) == len(set(statuses))
    # Nothing was duplicated by the retries.
    assert len(jobs_with_key(client, key)) == 1
    content = path.read_bytes()
    holders = [
        f.id
        for f in client.files.list(purpose="fine-tune")
        if f.bytes == len(content) and client.files.content(f.id).read() == content
    ]
    assert holders == [uploaded.id]
    # The result file agrees with the events.
    results = manager.results(done)
    assert results.steps == [p.step for p in points]
    assert results.train_loss == pytest.approx([p.train_loss for p in points], rel=1e-4)
    checkpoints = manager.checkpoints(job.id)
    assert checkpoints
    assert checkpoints[0].step_number == total


def test_create_after_a_dropped_connection_makes_one_job(
    manager: JobManager,
    client: openai.OpenAI,
    training_file: UploadedFile,
    local_faults: FaultInjector,
) -> None:
    local_faults.script("POST", "/v1/fine_tuning/jobs", ["drop", "drop"])
    job = manager.create(model="gpt-4o-mini", training_file=training_file)
    try:
        assert local_faults.count("POST", "/v1/fine_tuning/jobs") == 3
        key = (job.metadata or {})[IDEMPOTENCY_METADATA_KEY]
        assert [j.id for j in jobs_with_key(client, key)] == [job.id]
    finally:
        manager.cancel(job.id)


def test_create_after_a_lost_response_finds_the_job_instead_of_a_second_one(
    local_backend: LocalBackend,
    client: openai.OpenAI,
    training_file: UploadedFile,
    local_faults: FaultInjector,
) -> None:
    # Control: the SDK's own retry creates a second job.
    local_faults.script("POST", "/v1/fine_tuning/jobs", ["drop-after"])
    control_key = os.urandom(8).hex()
    with local_backend.client(max_retries=1) as sdk:
        sdk.fine_tuning.jobs.create(
            model="gpt-4o-mini",
            training_file=training_file.id,
            metadata={IDEMPOTENCY_METADATA_KEY: control_key},
        )
    control = jobs_with_key(client, control_key)
    for stray in control:
        client.fine_tuning.jobs.cancel(stray.id)
    assert len(control) == 2

    local_faults.clear_log()
    local_faults.script("POST", "/v1/fine_tuning/jobs", ["drop-after"])
    manager = JobManager(client, policy=quick_policy(), progress=False)
    job = manager.create(
        model="gpt-4o-mini", training_file=training_file, idempotency_key="run-1-" + control_key
    )
    again = manager.create(
        model="gpt-4o-mini", training_file=training_file, idempotency_key="run-1-" + control_key
    )
    try:
        assert again.id == job.id  # a rerun with the same key returns the same job
        assert [j.id for j in jobs_with_key(client, "run-1-" + control_key)] == [job.id]
        # One POST, which the server handled; the job was found, not created again.
        posts = local_faults.requests("POST", "/v1/fine_tuning/jobs")
        assert [(r.fault, r.status) for r in posts] == [("drop-after", 200)]
    finally:
        client.fine_tuning.jobs.cancel(job.id)


def test_failed_job_names_the_line_and_shows_the_record(
    manager: JobManager, client: openai.OpenAI, tmp_path: Path
) -> None:
    rows: list[Any] = unique_rows()
    rows[4] = {"messages": [{"role": "user", "content": "a question nobody answers"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    uploader = FileUploader(client, policy=quick_policy(), progress=False)
    from_path = uploader.upload(path, preflight=False)
    job = manager.create(model="gpt-4o-mini", training_file=from_path)
    with pytest.raises(JobFailedError) as info:
        manager.wait(job.id, timeout=120)
    error = info.value
    assert error.job_id == job.id
    assert error.status == "failed"
    assert error.code
    assert error.param == "training_file"
    assert error.line == 5
    assert error.record == path.read_text().splitlines()[4]  # read from the local file
    assert "line 5" in str(error)
    assert "a question nobody answers" in str(error)

    # Uploaded from bytes: the manager knows no local copy and downloads the line.
    data = path.read_bytes().replace(b"nobody answers", b"nobody answers!")
    from_bytes = uploader.upload(data, preflight=False)
    fresh = JobManager(client, policy=quick_policy(), follow_options=FAST, progress=False)
    job = fresh.create(model="gpt-4o-mini", training_file=from_bytes.id)
    with pytest.raises(JobFailedError) as info:
        fresh.wait(job.id, timeout=120)
    assert info.value.record == data.decode().splitlines()[4]


def test_cancelled_job_raises(manager: JobManager, training_file: UploadedFile) -> None:
    job = manager.create(model="gpt-4o-mini", training_file=training_file)
    manager.cancel(job.id)
    with pytest.raises(JobCancelledError) as info:
        manager.wait(job.id, timeout=60)
    assert info.value.job_id == job.id
    assert info.value.status == "cancelled"


def test_timeout_carries_the_last_status_and_leaves_the_job(
    client: openai.OpenAI, training_file: UploadedFile
) -> None:
    ticks = iter(range(0, 10_000, 5))  # each reading of the clock is 5 s later
    policy = RetryPolicy(clock=lambda: float(next(ticks)), sleep=lambda s: None)
    manager = JobManager(client, policy=policy, follow_options=FAST, progress=False)
    job = manager.create(model="gpt-4o-mini", training_file=training_file)
    try:
        with pytest.raises(JobTimeoutError) as info:
            manager.wait(job.id, timeout=12)
        assert info.value.job_id == job.id
        assert info.value.status in {"validating_files", "queued", "running"}
        assert client.fine_tuning.jobs.retrieve(job.id).status not in {"cancelled", "failed"}
    finally:
        client.fine_tuning.jobs.cancel(job.id)


def test_ctrl_c_leaves_the_job_running_and_says_how_to_resume(
    client: openai.OpenAI, training_file: UploadedFile, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    policy = RetryPolicy(sleep=interrupt)
    manager = JobManager(client, policy=policy, follow_options=FAST, progress=False)
    job = manager.create(model="gpt-4o-mini", training_file=training_file)
    try:
        with pytest.raises(KeyboardInterrupt):
            manager.wait(job.id)
        err = capsys.readouterr().err
        assert f"JobManager(client).wait('{job.id}')" in err
        assert f"client.fine_tuning.jobs.cancel('{job.id}')" in err
        assert client.fine_tuning.jobs.retrieve(job.id).status != "cancelled"
    finally:
        client.fine_tuning.jobs.cancel(job.id)


def test_pause_and_resume(
    manager: JobManager, client: openai.OpenAI, training_file: UploadedFile
) -> None:
    # Enough epochs that it cannot end first; paused once validated (a job validating its files
    # cannot be paused: the server says so, as OpenAI does).
    job = manager.create(
        model="gpt-4o-mini", training_file=training_file, hyperparameters={"n_epochs": 50}
    )
    try:
        while manager.retrieve(job.id).status == "validating_files":
            time.sleep(0.05)
        paused = manager.pause(job.id)
        assert paused.status == "paused"
        assert manager.retrieve(job.id).status == "paused"
        resumed = manager.resume(job.id)
        assert resumed.status in {"queued", "running", "validating_files"}
    finally:
        manager.cancel(job.id)


def test_list_pages_through_every_job(manager: JobManager, finished_job: Any) -> None:
    listed = list(manager.list(page_size=2))
    assert finished_job.id in [j.id for j in listed]
    assert len({j.id for j in listed}) == len(listed)
    key = (finished_job.metadata or {})[IDEMPOTENCY_METADATA_KEY]
    assert [j.id for j in manager.list(metadata={IDEMPOTENCY_METADATA_KEY: key})] == [
        finished_job.id
    ]
    found = manager.find_by_key(key)
    assert found is not None
    assert found.id == finished_job.id


def test_sync_and_async_emit_the_same_updates(
    local_backend: LocalBackend, finished_job: Any
) -> None:
    with local_backend.client() as client:
        manager = JobManager(client, policy=quick_policy(), follow_options=FAST, progress=False)
        sync_updates = list(manager.follow(finished_job.id))
        sync_results = manager.results(finished_job.id)

    async def follow_async() -> tuple[list[Any], Any]:
        async with local_backend.async_client() as client:
            manager = AsyncJobManager(
                client, policy=quick_policy(), follow_options=FAST, progress=False
            )
            updates = [u async for u in manager.follow(finished_job.id)]
            return updates, await manager.results(finished_job.id)

    async_updates, async_results = asyncio.run(follow_async())
    assert async_updates == sync_updates
    assert [type(u).__name__ for u in sync_updates].count("JobEvent") == len(
        all_events(local_backend.client(), finished_job.id)
    )
    assert async_results.to_records() == sync_results.to_records()


def test_sync_and_async_follow_one_live_job_alike(
    local_backend: LocalBackend, client: openai.OpenAI, training_file: UploadedFile
) -> None:
    manager = JobManager(client, policy=quick_policy(), follow_options=FAST, progress=False)
    job = manager.create(
        model="gpt-4o-mini", training_file=training_file, hyperparameters={"n_epochs": 1}
    )
    sync_updates: list[Any] = []

    def follow_sync() -> None:
        with local_backend.client() as own:
            JobManager(own, policy=quick_policy(), follow_options=FAST, progress=False).wait(
                job.id, on_update=sync_updates.append, timeout=300
            )

    async def follow_async() -> list[Any]:
        async with local_backend.async_client() as own:
            jobs = AsyncJobManager(own, policy=quick_policy(), follow_options=FAST, progress=False)
            updates: list[Any] = []
            await jobs.wait(job.id, on_update=updates.append, timeout=300)
            return updates

    thread = threading.Thread(target=follow_sync)
    thread.start()
    async_updates = asyncio.run(follow_async())
    thread.join(timeout=300)

    def without_statuses(updates: list[Any]) -> list[Any]:
        return [u for u in updates if not isinstance(u, StatusChange)]

    assert without_statuses(async_updates) == without_statuses(sync_updates)
    assert [e.id for e in async_updates if isinstance(e, JobEvent)] == [
        e.id for e in all_events(client, job.id)
    ]


def test_progress_bar_shows_steps_loss_and_status(
    client: openai.OpenAI, finished_job: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    manager = JobManager(client, policy=quick_policy(), follow_options=FAST, progress=True)
    points = [u for u in manager.follow(finished_job.id) if isinstance(u, MetricPoint)]
    total = points[-1].total_steps
    err = capsys.readouterr().err
    assert f"{total}/{total}" in err
    assert "loss=" in err
    assert f"{finished_job.id} succeeded" in err


def test_wandb_integration_is_sent(manager: JobManager, training_file: UploadedFile) -> None:
    job = manager.create(
        model="gpt-4o-mini",
        training_file=training_file,
        wandb={"project": "ft-tests", "tags": ["ci"]},
    )
    try:
        assert job.integrations
        assert job.integrations[0].type == "wandb"
        assert job.integrations[0].wandb.project == "ft-tests"
    finally:
        manager.cancel(job.id)
