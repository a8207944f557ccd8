"""A failed job's offending record is best-effort: no network failure while fetching it may hide
the job's own error (JobFailedError) behind a raw transport error."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import openai
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.errors import JobFailedError
from finetune_kit.jobs import AsyncJobManager, JobManager
from finetune_kit.jobs.following import FollowOptions
from tests.fixtures.local_backend import chat_examples, wait_for_job, write_jsonl

if TYPE_CHECKING:
    from pathlib import Path

    from finetune_kit.local import FaultInjector, LocalBackend

FAST = FollowOptions(initial_interval=0.1, max_interval=0.5, events_page_size=10)
CONTENT_ROUTE = "/v1/files/{id}/content"


def quick_policy(attempts: int = 3) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, initial_delay=0.01, max_delay=0.05)


@dataclass
class FailedJob:
    id: str
    bad_line: str


@pytest.fixture(scope="module")
def failed_job(local_backend: LocalBackend, tmp_path_factory: pytest.TempPathFactory) -> FailedJob:
    """A job the backend failed on line 5 of a file uploaded from bytes (no local copy)."""
    rows: list[Any] = chat_examples(12, topic=f"argon-{os.urandom(4).hex()}")
    rows[4] = {"messages": [{"role": "user", "content": "a question nobody answers"}]}
    path = write_jsonl(tmp_path_factory.mktemp("failing") / "bad.jsonl", rows)
    with local_backend.client() as client:
        uploaded = client.files.create(file=("bad.jsonl", path.read_bytes()), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=uploaded.id)
        failed = wait_for_job(client, job.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert "line 5" in (failed.error.message or "")
    return FailedJob(id=job.id, bad_line=path.read_text().splitlines()[4])


def test_a_body_cut_short_is_retried_and_the_record_shown(
    client: openai.OpenAI, local_faults: FaultInjector, failed_job: FailedJob
) -> None:
    # A body cut after its headers is read from the stream: openai 3.x lets httpx2's own
    # RemoteProtocolError through (not an APIConnectionError), the branch this file is about.
    local_faults.script("GET", CONTENT_ROUTE, ["cut"])
    manager = JobManager(client, policy=quick_policy(), follow_options=FAST, progress=False)
    with pytest.raises(JobFailedError) as info:
        manager.wait(failed_job.id, timeout=60)
    assert [r.fault for r in local_faults.requests("GET", CONTENT_ROUTE)] == ["cut", None]
    assert info.value.line == 5
    assert info.value.record == failed_job.bad_line


def test_a_body_cut_short_for_good_still_raises_job_failed(
    client: openai.OpenAI, local_faults: FaultInjector, failed_job: FailedJob
) -> None:
    local_faults.script("GET", CONTENT_ROUTE, ["cut"] * 10)
    manager = JobManager(client, policy=quick_policy(3), follow_options=FAST, progress=False)
    with pytest.raises(JobFailedError) as info:
        manager.wait(failed_job.id, timeout=60)
    # every attempt of the policy was cut, then the record was given up
    assert local_faults.count("GET", CONTENT_ROUTE) == 3
    assert info.value.line == 5
    assert info.value.record is None
    assert "line 5" in str(info.value)


def test_async_wait_survives_a_body_cut_short_for_good(
    local_backend: LocalBackend, local_faults: FaultInjector, failed_job: FailedJob
) -> None:
    import asyncio

    local_faults.script("GET", CONTENT_ROUTE, ["cut"] * 10)

    async def scenario() -> JobFailedError:
        async with local_backend.async_client() as client:
            manager = AsyncJobManager(
                client, policy=quick_policy(2), follow_options=FAST, progress=False
            )
            with pytest.raises(JobFailedError) as info:
                await manager.wait(failed_job.id, timeout=60)
            return info.value

    error = asyncio.run(scenario())
    assert local_faults.count("GET", CONTENT_ROUTE) == 2
    assert error.line == 5
    assert error.record is None


@pytest.mark.parametrize(
    ("faults", "found"),
    [
        (["drop"], True),  # retried, then read
        (["drop-after"], True),
        (["drop", "drop", "drop"], False),  # every attempt lost: the record is given up
    ],
)
def test_dropped_connections_on_the_content_route(
    client: openai.OpenAI,
    local_faults: FaultInjector,
    failed_job: FailedJob,
    faults: list[str],
    found: bool,
) -> None:
    local_faults.script("GET", CONTENT_ROUTE, faults)
    manager = JobManager(client, policy=quick_policy(3), follow_options=FAST, progress=False)
    with pytest.raises(JobFailedError) as info:
        manager.wait(failed_job.id, timeout=60)
    assert info.value.line == 5
    assert info.value.record == (failed_job.bad_line if found else None)
    assert local_faults.count("GET", CONTENT_ROUTE) == (len(faults) if not found else 2)


def test_a_local_copy_is_read_instead_of_downloading(
    client: openai.OpenAI, local_faults: FaultInjector, failed_job: FailedJob, tmp_path: Path
) -> None:
    job = client.fine_tuning.jobs.retrieve(failed_job.id)
    copy = tmp_path / "copy.jsonl"
    copy.write_text("\n".join(["{}"] * 4 + ["the local line 5"]) + "\n")
    manager = JobManager(
        client,
        policy=quick_policy(),
        follow_options=FAST,
        progress=False,
        local_files={job.training_file: copy},
    )
    with pytest.raises(JobFailedError) as info:
        manager.wait(failed_job.id, timeout=60)
    assert info.value.record == "the local line 5"
    assert local_faults.count("GET", CONTENT_ROUTE) == 0
