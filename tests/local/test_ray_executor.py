"""The Ray executor against a real Ray cluster on this machine (``--executor ray``).

Every test drives the real path: the ``openai`` client over HTTP to a ``LocalBackend`` whose
worker process is the bridge, which runs the job as Ray Train workers (gloo, 2 CPUs) on the
session's cluster (tests/fixtures/ray_cluster.py). They skip when Ray is not installed.
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fixtures.local_backend import wait_for_job, write_jsonl
from tests.fixtures.ray_cluster import (
    RayCluster,
    RayHead,
    events_of,
    ray_backend,
    step_losses,
    varied_chat_rows,
    wait_until,
)

HYPERPARAMETERS = {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 2.0}  # 9 steps
RAY_JOB_TIMEOUT = 240.0  # the workers' start-up alone takes 20-30 s on a busy 2-core machine


def create_job(client: openai.OpenAI, path: Path, **hyperparameters: Any) -> Any:
    with path.open("rb") as stream:
        uploaded = client.files.create(file=stream, purpose="fine-tune")
    return client.fine_tuning.jobs.create(
        training_file=uploaded.id,
        model="tiny-random",
        seed=7,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {**HYPERPARAMETERS, **hyperparameters}},
        },
    )


def result_rows(client: openai.OpenAI, job: Any) -> list[dict[str, str]]:
    [result_id] = job.result_files
    text = client.files.content(result_id).text
    return list(csv.DictReader(io.StringIO(text)))


def steps_of(events: list[Any]) -> list[int]:
    return [int(e.data["step"]) for e in events if e.type == "metrics"]


def last_step(client: openai.OpenAI, job_id: str) -> int:
    return max(steps_of(events_of(client, job_id)), default=0)


def started(client: openai.OpenAI, job_id: str) -> bool:
    return "Fine-tuning job started" in [e.message for e in events_of(client, job_id)]


def workers_events(events: list[Any]) -> list[Any]:
    """The events saying how many Ray workers train, and where (one per worker group)."""
    return [e for e in events if re.match(r"Training on \d+ Ray workers? ", e.message)]


def registered(job_id: str, name: str) -> bool:
    """Whether Ray's controller registered a checkpoint of the job (asked of its actor)."""
    import ray

    from finetune_kit.local.worker.ray_executor.job_actor import find

    actor = find(job_id)
    if actor is None:
        return False
    events = ray.get(actor.drain.remote(0))
    return any(e["type"] == "registered" and e["name"] == name for e in events)


@dataclass(frozen=True)
class Reference:
    """The same job trained by the local executor (one process)."""

    path: Path
    losses: dict[int, float]
    trained_tokens: int
    rows: list[dict[str, str]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    from finetune_kit.local import LocalBackend

    folder = tmp_path_factory.mktemp("reference")
    path = write_jsonl(folder / "train.jsonl", varied_chat_rows(12))
    local = LocalBackend(folder / "local", default_model="tiny-random")
    with local, local.client() as client:
        job = wait_for_job(client, create_job(client, path).id, timeout=120)
        assert job.status == "succeeded", job.error
        yield Reference(
            path,
            step_losses(events_of(client, job.id)),
            int(job.trained_tokens or 0),
            result_rows(client, job),
        )


def assert_same_training(events: list[Any], job: Any, reference: Reference) -> None:
    """Every step once, in order, each loss within 1 % of one process's; the same tokens."""
    assert steps_of(events) == sorted(reference.losses)
    losses = step_losses(events)
    for step, loss in reference.losses.items():
        assert losses[step] == pytest.approx(loss, rel=0.01), step
    assert job.trained_tokens == reference.trained_tokens


def test_a_job_on_two_workers_trains_as_the_local_executor_does(
    ray_cluster: RayCluster, reference: Reference, tmp_path: Path
) -> None:
    storage = ray_cluster.storage / "two-workers"
    backend = ray_backend(tmp_path, ray_cluster.address, storage)
    with backend, backend.client() as client:
        job = create_job(client, reference.path)
        done = wait_for_job(client, job.id, timeout=RAY_JOB_TIMEOUT)
        assert done.status == "succeeded", done.error
        events = events_of(client, job.id)
        checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
        rows = result_rows(client, done)
        answer = client.chat.completions.create(
            model=str(done.fine_tuned_model),
            messages=[{"role": "user", "content": "alpha beta"}],
            max_tokens=4,
        )

    assert_same_training(events, done, reference)
    assert done.hyperparameters.n_epochs == 3
    # Which workers trained, and where.
    [workers] = workers_events(events)
    assert workers.data["workers"] == 2
    assert workers.message.startswith("Training on 2 Ray workers (data-parallel) on 1 node: ")
    # The same closing events as the local executor, in the same order.
    assert [e.message for e in events[-2:]] == [
        f"New fine-tuned model created: {done.fine_tuned_model}",
        "The job has successfully completed",
    ]
    # Checkpoints at the epoch ends, copied into the data folder; the result file; the model.
    assert sorted(c.step_number for c in checkpoints) == [3, 6, 9]
    assert [r["step"] for r in rows] == [r["step"] for r in reference.rows]
    for row, local_row in zip(rows, reference.rows, strict=True):
        assert float(row["train_loss"]) == pytest.approx(float(local_row["train_loss"]), rel=0.01)
    assert answer.choices[0].message.role == "assistant"
    job_dir = tmp_path / "jobs" / job.id
    assert (job_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in (job_dir / "checkpoints").iterdir()) == [
        "step-3",
        "step-6",
        "step-9",
    ]
    # The run's folder in the Ray storage is gone once the job ended.
    assert not (storage / job.id).exists()


def test_a_killed_worker_and_a_lost_job_actor_restart_from_the_last_checkpoint(
    ray_cluster: RayCluster, reference: Reference, tmp_path: Path
) -> None:
    import ray

    from finetune_kit.local.worker.ray_executor.job_actor import find

    backend = ray_backend(
        tmp_path, ray_cluster.address, ray_cluster.storage / "killed", training_step_delay=0.5
    )
    with backend, backend.client() as client:
        job = create_job(client, reference.path)
        # Once Ray registered the epoch-1 checkpoint (step 3): rank 1 dies in epoch 2. Ray
        # restarts the worker group from that checkpoint.
        wait_until(lambda: registered(job.id, "checkpoint-step-3"), RAY_JOB_TIMEOUT, "step 3")
        [workers] = workers_events(events_of(client, job.id))
        os.kill(workers.data["pids"][1], signal.SIGKILL)
        # Then the job's actor itself is lost (as when its node dies), with the run it owns:
        # the bridge starts the run again, and Ray resumes it from the epoch-2 checkpoint.
        wait_until(lambda: registered(job.id, "checkpoint-step-6"), RAY_JOB_TIMEOUT, "step 6")
        ray.kill(find(job.id), no_restart=True)
        done = wait_for_job(client, job.id, timeout=RAY_JOB_TIMEOUT)
        events = events_of(client, job.id)

    assert done.status == "succeeded", done.error
    warnings = [e.message for e in events if e.level == "warn"]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("Ray worker(s) ")
    assert warnings[0].endswith("Ray restarts the workers from the last checkpoint")
    assert warnings[1].startswith("The job's actor on the Ray cluster was lost (")
    groups = workers_events(events)
    assert [g.data["resumed_step"] for g in groups] == [None, 3, 6]
    assert groups[1].message.endswith("resumed from the checkpoint at step 3")
    # The steps run again after each restart are recorded once; the training is unchanged.
    assert_same_training(events, done, reference)


def test_a_restarted_backend_follows_the_run_and_pause_resume_cancel_reach_it(
    ray_cluster: RayCluster, reference: Reference, tmp_path: Path
) -> None:
    import ray

    storage = ray_cluster.storage / "lifecycle"
    first = ray_backend(tmp_path, ray_cluster.address, storage, training_step_delay=0.5)
    with first, first.client() as client:
        job = create_job(client, reference.path, n_epochs=5)  # 15 steps
        wait_until(lambda: last_step(client, job.id) >= 1, RAY_JOB_TIMEOUT, "no step 1")
    # The server is gone; the run goes on on the cluster. A new server on the same data folder
    # finds it again and follows it from where the store stands.
    second = ray_backend(tmp_path, ray_cluster.address, storage, training_step_delay=0.5)
    with second, second.client() as client:
        wait_until(lambda: last_step(client, job.id) >= 3, RAY_JOB_TIMEOUT, "no step 3")
        client.fine_tuning.jobs.pause(job.id)
        # Paused once the run stopped and its pause checkpoint came back to the data folder.
        paused_dir = tmp_path / "jobs" / job.id / "paused"
        [pause_checkpoint] = wait_until(
            lambda: list(paused_dir.glob("step-*")), RAY_JOB_TIMEOUT, "no pause checkpoint"
        )
        paused_at = last_step(client, job.id)
        assert pause_checkpoint.name == f"step-{paused_at}"
        assert client.fine_tuning.jobs.retrieve(job.id).status == "paused"

        client.fine_tuning.jobs.resume(job.id)
        wait_until(
            lambda: last_step(client, job.id) >= paused_at + 2, RAY_JOB_TIMEOUT, "no new steps"
        )
        client.fine_tuning.jobs.cancel(job.id)
        done = wait_for_job(client, job.id, timeout=60)
        # The run stops: the cluster's CPUs are free again (its workers and placement group),
        # and its folder in the Ray storage goes.
        wait_until(lambda: ray.available_resources().get("CPU") == 2, 60, "CPUs still held")
        wait_until(lambda: not (storage / job.id).exists(), 60, "the run's storage is left")
        events = events_of(client, job.id)

    assert done.status == "cancelled"
    messages = [e.message for e in events]
    assert messages.count("Fine-tuning job started") == 1
    assert "Following the training run already on the Ray cluster" in messages
    steps = steps_of(events)
    # Each step once, in order, across the restart and the pause; cancelled before the end.
    assert steps == list(range(1, max(steps) + 1))
    assert max(steps) < 15
    # Two worker groups: the first run (followed across the restart), then the resumed one,
    # which Ray started from the pause checkpoint.
    run, resumed = workers_events(events)
    assert run.data["resumed_step"] is None
    assert resumed.data["resumed_step"] == paused_at
    assert f"Resuming training from the checkpoint at step {paused_at}" in messages
    assert "The job has successfully completed" not in messages


def test_a_run_left_on_the_cluster_stops_when_its_job_was_cancelled_meanwhile(
    ray_cluster: RayCluster, reference: Reference, tmp_path: Path
) -> None:
    import ray

    from finetune_kit.local.worker.ray_executor.job_actor import find

    storage = ray_cluster.storage / "left"
    # One worker: what is tested here is the run's life, not data parallelism.
    first = ray_backend(
        tmp_path, ray_cluster.address, storage, training_step_delay=0.5, workers_per_job=1
    )
    with first, first.client() as client:
        job = create_job(client, reference.path, n_epochs=5)
        wait_until(lambda: workers_events(events_of(client, job.id)), RAY_JOB_TIMEOUT, "workers")
    # The run goes on without a server; its job waits in the queue. A server with no bridge
    # free (none at all, here) cancels it: nothing tells the run yet.
    busy = ray_backend(
        tmp_path, ray_cluster.address, storage, max_concurrent_jobs=0, workers_per_job=1
    )
    with busy, busy.client() as client:
        assert client.fine_tuning.jobs.retrieve(job.id).status == "queued"
        client.fine_tuning.jobs.cancel(job.id)
    assert find(job.id) is not None
    # The next bridge finds the run of an ended job in the storage and stops it.
    third = ray_backend(tmp_path, ray_cluster.address, storage, workers_per_job=1)
    with third, third.client() as client:
        wait_until(lambda: find(job.id) is None, 120, "the run is still on the cluster")
        wait_until(lambda: not (storage / job.id).exists(), 60, "the run's storage is left")
        wait_until(lambda: ray.available_resources().get("CPU") == 2, 60, "CPUs still held")
        assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


def test_the_cluster_going_away_fails_the_job_and_the_backend_keeps_serving(
    ray_head: RayHead, reference: Reference, tmp_path: Path
) -> None:
    backend = ray_backend(
        tmp_path, ray_head.address, ray_head.storage, training_step_delay=1.0, workers_per_job=1
    )
    with backend, backend.client() as client:
        job = create_job(client, reference.path)
        # The job's run is on the cluster (its actor launched) when the whole cluster goes.
        wait_until(lambda: started(client, job.id), RAY_JOB_TIMEOUT, "not started")
        ray_head.kill()
        failed = wait_for_job(client, job.id, timeout=120)
        # Still serving: the API answers, and a new job fails at once, saying why.
        assert [m.id for m in client.models.list()]
        again = wait_for_job(client, create_job(client, reference.path).id, timeout=120)

    for ended in (failed, again):
        assert ended.status == "failed"
        assert ended.error is not None
        assert ended.error.code == "cluster_unreachable"
        assert f"The Ray cluster at {ray_head.address} cannot be reached" in ended.error.message
        assert "--ray-address" in ended.error.message


def test_a_cluster_that_refuses_the_server_fails_the_job_saying_why(
    ray_cluster: RayCluster, reference: Reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cluster demands its token; this server's worker processes are given another one.
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0" * 64)
    backend = ray_backend(tmp_path, ray_cluster.address, tmp_path / "storage", workers_per_job=1)
    with backend, backend.client() as client:
        failed = wait_for_job(client, create_job(client, reference.path).id, timeout=120)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "cluster_unreachable"
    assert f"The Ray cluster at {ray_cluster.address} answers but refused" in failed.error.message
    assert "RAY_AUTH_TOKEN" in failed.error.message
