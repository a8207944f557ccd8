"""A server restart loses nothing: files survive, an interrupted job resumes and completes."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import openai

from finetune_kit.local import LocalBackend
from tests.fixtures.local_backend import chat_examples, wait_for_job, write_jsonl


def _messages(client: openai.OpenAI, job_id: str) -> list[str]:
    page = client.fine_tuning.jobs.list_events(job_id, limit=10_000)
    return [e.message for e in reversed(page.data)]


def test_a_job_interrupted_by_a_restart_resumes_without_duplicate_events(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = write_jsonl(tmp_path / "train.jsonl", chat_examples(10))
    settings = {"default_model": "tiny-random", "training_step_delay": 0.05}

    with LocalBackend(data_dir, **settings) as first:  # type: ignore[arg-type]
        client = first.client()
        file_id = client.files.create(file=path, purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(
            model="gpt-3.5-turbo",
            training_file=file_id,
            hyperparameters={"n_epochs": 3, "batch_size": 2},
        )
        # Stop once the first epoch's checkpoint exists and the second epoch has begun.
        deadline = time.monotonic() + 60
        while "Step 7/15" not in " ".join(_messages(client, job.id)[-3:]):
            assert time.monotonic() < deadline, _messages(client, job.id)
            time.sleep(0.02)
        client.close()
    stopped_at = max(
        int(m.group(1))
        for m in (re.match(r"Step (\d+)/", line) for line in _messages_offline(data_dir, job.id))
        if m
    )
    assert stopped_at < 15, "the job finished before the restart; nothing was tested"

    with LocalBackend(data_dir, **settings) as second:  # type: ignore[arg-type]
        client = second.client()
        assert client.files.retrieve(file_id).id == file_id
        done = wait_for_job(client, job.id, timeout=120)
        assert done.status == "succeeded", done.error
        assert done.fine_tuned_model is not None
        messages = _messages(client, job.id)
        assert [m for m, n in Counter(messages).items() if n > 1] == []
        resumed = [
            re.fullmatch(r"Resuming training from the checkpoint at step (\d+)", m)
            for m in messages
        ]
        [resume_step] = [int(m.group(1)) for m in resumed if m]
        # From the epoch checkpoint (step 5) or where the stopped worker left off.
        assert 5 <= resume_step <= stopped_at
        assert sum(m.startswith("Step ") for m in messages) == 15
        assert messages[-1] == "The job has successfully completed"
        answer = client.chat.completions.create(
            model=done.fine_tuned_model,
            messages=[{"role": "user", "content": "Tell me about element 2."}],
            max_tokens=3,
        )
        assert answer.choices[0].message.content is not None
        client.close()


def _messages_offline(data_dir: Path, job_id: str) -> list[str]:
    """Read the events from the database while no server runs."""
    import sqlite3

    with sqlite3.connect(data_dir / "local.sqlite3") as db:
        rows = db.execute(
            "SELECT message FROM events WHERE job_id = ? ORDER BY seq", (job_id,)
        ).fetchall()
    return [row[0] for row in rows]
