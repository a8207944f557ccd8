"""The Ray executor against a real Ray cluster on this machine (``--executor ray``).

Every test drives the real path: the ``openai`` client over HTTP to a ``LocalBackend`` whose
worker process is the bridge, which runs the job as Ray Train workers (gloo, 2 CPUs) on the
session's cluster (tests/fixtures/ray_cluster.py). They skip when Ray is not installed.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fixtures.local_backend import wait_for_job, write_jsonl
from tests.fixtures.ray_cluster import (
    RayCluster,
    events_of,
    ray_backend,
    step_losses,
    varied_chat_rows,
)

HYPERPARAMETERS = {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2.0}
RAY_JOB_TIMEOUT = 240.0  # the workers' start-up alone takes 20-30 s on a busy 2-core machine


def create_job(client: openai.OpenAI, path: Path, **extra: Any) -> Any:
    with path.open("rb") as stream:
        uploaded = client.files.create(file=stream, purpose="fine-tune")
    return client.fine_tuning.jobs.create(
        training_file=uploaded.id,
        model="tiny-random",
        seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": HYPERPARAMETERS}},
        **extra,
    )


def result_rows(client: openai.OpenAI, job: Any) -> list[dict[str, str]]:
    [result_id] = job.result_files
    text = client.files.content(result_id).text
    return list(csv.DictReader(io.StringIO(text)))


def test_a_job_on_two_workers_trains_as_the_local_executor_does(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    from finetune_kit.local import LocalBackend

    path = write_jsonl(tmp_path / "train.jsonl", varied_chat_rows(12))
    local = LocalBackend(tmp_path / "local", default_model="tiny-random")
    with local, local.client() as client:
        job = create_job(client, path)
        local_job = wait_for_job(client, job.id, timeout=120)
        local_losses = step_losses(events_of(client, job.id))
        local_rows = result_rows(client, local_job)
    assert local_job.status == "succeeded"

    storage = ray_cluster.storage / "two-workers"
    backend = ray_backend(tmp_path / "ray", ray_cluster.address, storage)
    with backend, backend.client() as client:
        job = create_job(client, path)
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

    # Every step once, in order, each loss within 1 % of one process's (in fact ~1e-7).
    steps = [int(e.data["step"]) for e in events if e.type == "metrics"]
    assert steps == list(range(1, 7))
    losses = step_losses(events)
    assert losses.keys() == local_losses.keys()
    for step, loss in local_losses.items():
        assert losses[step] == pytest.approx(loss, rel=0.01), step
    assert done.trained_tokens == local_job.trained_tokens
    assert done.hyperparameters.n_epochs == 2

    # Which workers trained, and where.
    [workers] = [e for e in events if e.message.startswith("Training on 2 Ray workers")]
    assert workers.data["workers"] == 2
    assert "on 1 node" in workers.message
    # The same closing events as the local executor, in the same order.
    assert [e.message for e in events[-2:]] == [
        f"New fine-tuned model created: {done.fine_tuned_model}",
        "The job has successfully completed",
    ]

    # Checkpoints at the epoch ends, copied into the data folder; the result file; the model.
    assert sorted(c.step_number for c in checkpoints) == [3, 6]
    assert [r["step"] for r in rows] == [r["step"] for r in local_rows]
    for row, local_row in zip(rows, local_rows, strict=True):
        assert float(row["train_loss"]) == pytest.approx(float(local_row["train_loss"]), rel=0.01)
    assert answer.choices[0].message.role == "assistant"
    job_dir = tmp_path / "ray" / "jobs" / job.id
    assert (job_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in (job_dir / "checkpoints").iterdir()) == ["step-3", "step-6"]
    # The run's folder in the Ray storage is gone once the job ended.
    assert not (storage / job.id).exists()
