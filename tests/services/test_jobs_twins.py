"""The sync and async job managers create alike: same requests, same job, after a lost response."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.errors import ConfigurationError
from finetune_kit.jobs import IDEMPOTENCY_METADATA_KEY, AsyncJobManager, JobManager
from tests.fixtures.local_backend import chat_examples, write_jsonl

if TYPE_CHECKING:
    from openai.types.fine_tuning import FineTuningJob

    from finetune_kit.local import FaultInjector, LocalBackend

_ID = re.compile(r"ftjob-[A-Za-z0-9]+")


def policy() -> RetryPolicy:
    return RetryPolicy(initial_delay=0.01, max_delay=0.05)


def requests_of(faults: FaultInjector) -> list[tuple[Any, ...]]:
    return [(r.method, _ID.sub("<id>", r.path), r.fault, r.status) for r in faults.requests()]


def shape(job: FineTuningJob, key: str) -> tuple[Any, ...]:
    metadata = dict(job.metadata or {})
    assert metadata.pop(IDEMPOTENCY_METADATA_KEY) == key
    return (job.model, job.training_file, job.seed, metadata, job.method)


def jobs_with_key(client: openai.OpenAI, key: str) -> list[str]:
    return [
        j.id
        for j in client.fine_tuning.jobs.list(limit=100)
        if (j.metadata or {}).get(IDEMPOTENCY_METADATA_KEY) == key
    ]


@pytest.fixture
def training_file_id(client: openai.OpenAI, tmp_path: Path) -> str:
    path = write_jsonl(tmp_path / "train.jsonl", chat_examples(12, topic=os.urandom(4).hex()))
    return client.files.create(file=("train.jsonl", path.read_bytes()), purpose="fine-tune").id


@pytest.mark.parametrize("keyed", [True, False])
def test_sync_and_async_create_alike_after_a_lost_response(
    local_backend: LocalBackend,
    client: openai.OpenAI,
    local_faults: FaultInjector,
    training_file_id: str,
    keyed: bool,
) -> None:
    arguments: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "training_file": training_file_id,
        "hyperparameters": {"n_epochs": 1},
        "seed": 3,
        "metadata": {"run": "twins"},
    }
    keys = {"sync": os.urandom(6).hex(), "async": os.urandom(6).hex()}

    def key_argument(side: str) -> dict[str, Any]:
        return {"idempotency_key": keys[side]} if keyed else {}

    local_faults.clear()
    local_faults.script("POST", "/v1/fine_tuning/jobs", ["drop-after"])
    sync_job = JobManager(client, policy=policy(), progress=False).create(
        **arguments, **key_argument("sync")
    )
    sync_requests = requests_of(local_faults)
    local_faults.clear()

    async def run_async() -> FineTuningJob:
        local_faults.script("POST", "/v1/fine_tuning/jobs", ["drop-after"])
        async with local_backend.async_client() as own:
            return await AsyncJobManager(own, policy=policy(), progress=False).create(
                **arguments, **key_argument("async")
            )

    async_job = asyncio.run(run_async())
    async_requests = requests_of(local_faults)
    try:
        assert async_requests == sync_requests
        # The lost response was found by its key, not created twice, on both sides.
        assert [r[2:] for r in sync_requests if r[0] == "POST"] == [("drop-after", 200)]
        sync_key = (sync_job.metadata or {})[IDEMPOTENCY_METADATA_KEY]
        async_key = (async_job.metadata or {})[IDEMPOTENCY_METADATA_KEY]
        if keyed:
            assert (sync_key, async_key) == (keys["sync"], keys["async"])
        assert shape(async_job, async_key) == shape(sync_job, sync_key)
        assert jobs_with_key(client, sync_key) == [sync_job.id]
        assert jobs_with_key(client, async_key) == [async_job.id]
    finally:
        client.fine_tuning.jobs.cancel(sync_job.id)
        client.fine_tuning.jobs.cancel(async_job.id)


def test_sync_and_async_refuse_the_same_arguments_alike(
    local_backend: LocalBackend, client: openai.OpenAI, local_faults: FaultInjector
) -> None:
    bad = {"model": "gpt-4o-mini", "training_file": "file-a", "seed": -1}

    with pytest.raises(ConfigurationError) as sync_info:
        JobManager(client, progress=False).create(**bad)

    async def run_async() -> ConfigurationError:
        async with local_backend.async_client() as own:
            with pytest.raises(ConfigurationError) as info:
                await AsyncJobManager(own, progress=False).create(**bad)
            return info.value

    async_error = asyncio.run(run_async())
    assert (async_error.param, str(async_error)) == (sync_info.value.param, str(sync_info.value))
    assert sync_info.value.param == "seed"
    assert local_faults.count() == 0  # refused before any request
