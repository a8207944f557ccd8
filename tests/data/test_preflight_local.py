"""Preflight and the local backend: what preflight passes, the local trainer can use."""

from __future__ import annotations

from pathlib import Path

import openai

from tests.fixtures.local_backend import wait_for_job

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
