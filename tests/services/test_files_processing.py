"""Waiting for a file to be processed: the one branch the local backend cannot take.

The local backend answers ``processed`` at once, so the uploads here go to it for real through a
transport that rewrites the ``status`` of the file objects it returns (``POST /v1/files`` and
``GET /v1/files/{id}``), as a backend that processes files in the background would answer.
Everything else (the upload, the listing, the retrieves) is the real path.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2
import openai
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.errors import UploadError
from finetune_kit.files import AsyncFileUploader, FileUploader
from tests.fixtures.clock import FakeClock
from tests.fixtures.local_backend import chat_examples, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import FaultInjector, LocalBackend

_FILE_OBJECT = re.compile(r"/v1/files(/file-[A-Za-z0-9]+)?")


class Statuses:
    """The statuses to report, one per file object returned; ``None`` passes the real one."""

    def __init__(self, script: list[str] | None = None, *, forever: str | None = None) -> None:
        self.script = list(script or [])
        self.forever = forever
        self.reported: list[str] = []

    def rewrite(self, request: httpx2.Request, response: httpx2.Response) -> httpx2.Response:
        if request.method not in ("GET", "POST") or not _FILE_OBJECT.fullmatch(request.url.path):
            return response
        body = json.loads(response.content)
        if body.get("object") != "file":
            return response  # a listing: left as the backend wrote it
        status = self.script.pop(0) if self.script else self.forever
        if status is None:
            return response
        body["status"] = status
        if status == "error":
            body["status_details"] = "line 3 is not valid JSON"
        self.reported.append(status)
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        return httpx2.Response(response.status_code, headers=headers, json=body, request=request)


class RewritingTransport(httpx2.BaseTransport):
    def __init__(self, statuses: Statuses) -> None:
        self._inner = httpx2.HTTPTransport()
        self._statuses = statuses

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._inner.handle_request(request)
        response.read()
        return self._statuses.rewrite(request, response)

    def close(self) -> None:
        self._inner.close()


class AsyncRewritingTransport(httpx2.AsyncBaseTransport):
    def __init__(self, statuses: Statuses) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._statuses = statuses

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        await response.aread()
        return self._statuses.rewrite(request, response)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=0.0)


@pytest.fixture
def policy(clock: FakeClock) -> RetryPolicy:
    return RetryPolicy(clock=clock, sleep=clock.sleep, async_sleep=clock.asleep)


@pytest.fixture
def train_path(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", chat_examples(12, topic=os.urandom(6).hex()))


def rewriting_client(local_backend: LocalBackend, statuses: Statuses) -> openai.OpenAI:
    return local_backend.client(http_client=httpx2.Client(transport=RewritingTransport(statuses)))


def test_waits_with_backoff_until_processed(
    local_backend: LocalBackend,
    local_faults: FaultInjector,
    policy: RetryPolicy,
    clock: FakeClock,
    train_path: Path,
) -> None:
    statuses = Statuses(["uploaded", "pending", "running"])
    with rewriting_client(local_backend, statuses) as client:
        uploaded = FileUploader(client, policy=policy, progress=False, cache=False).upload(
            train_path
        )
    assert uploaded.status == "processed"
    assert statuses.reported == ["uploaded", "pending", "running"]
    assert clock.slept == [0.5, 1.0, 2.0]  # the delay doubles from 0.5 s
    assert local_faults.count("GET", "/v1/files/{id}") == 3


def test_gives_up_after_the_processing_timeout(
    local_backend: LocalBackend, policy: RetryPolicy, clock: FakeClock, train_path: Path
) -> None:
    statuses = Statuses(forever="uploaded")
    with rewriting_client(local_backend, statuses) as client:
        uploader = FileUploader(
            client, policy=policy, progress=False, cache=False, processing_timeout=30
        )
        with pytest.raises(UploadError) as info:
            uploader.upload(train_path)
    # Doubling up to the 10 s cap, until the next look would start after 30 s.
    assert clock.slept == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    error = info.value
    assert error.file_id is not None
    assert error.file_id.startswith("file-")
    assert f"file {error.file_id} was still 'uploaded' after 30 s" in str(error)
    assert "wait_for_processing=False" in str(error)


def test_a_file_the_backend_could_not_process_is_an_error(
    local_backend: LocalBackend, policy: RetryPolicy, clock: FakeClock, train_path: Path
) -> None:
    statuses = Statuses(["uploaded", "error"])
    with rewriting_client(local_backend, statuses) as client, pytest.raises(UploadError) as info:
        FileUploader(client, policy=policy, progress=False, cache=False).upload(train_path)
    assert clock.slept == [0.5]
    assert "could not process file" in str(info.value)
    assert "'error'" in str(info.value)
    assert "line 3 is not valid JSON" in str(info.value)


def test_no_wait_when_turned_off(
    local_backend: LocalBackend,
    local_faults: FaultInjector,
    policy: RetryPolicy,
    clock: FakeClock,
    train_path: Path,
) -> None:
    statuses = Statuses(forever="uploaded")
    with rewriting_client(local_backend, statuses) as client:
        uploaded = FileUploader(
            client, policy=policy, progress=False, cache=False, wait_for_processing=False
        ).upload(train_path)
    assert uploaded.status == "uploaded"
    assert clock.slept == []
    assert local_faults.count("GET", "/v1/files/{id}") == 0


def test_a_reused_file_still_being_processed_is_waited_for(
    local_backend: LocalBackend,
    client: openai.OpenAI,
    policy: RetryPolicy,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", chat_examples(12, topic=os.urandom(6).hex()))
    cache = tmp_path / "uploads.json"
    first = FileUploader(client, policy=policy, progress=False, cache=cache).upload(path)
    # The cache names the file: it is retrieved (reported "running"), then waited for.
    statuses = Statuses(["running", "running"])
    with rewriting_client(local_backend, statuses) as rewriting:
        again = FileUploader(rewriting, policy=policy, progress=False, cache=cache).upload(path)
    assert again.reused
    assert again.id == first.id
    assert again.status == "processed"
    assert clock.slept == [0.5, 1.0]


def test_async_waits_and_times_out_alike(
    local_backend: LocalBackend, clock: FakeClock, policy: RetryPolicy, tmp_path: Path
) -> None:
    async def scenario(statuses: Statuses, **settings: Any) -> Any:
        # New content each time: a file already uploaded would be reused from the listing.
        rows = chat_examples(12, topic=os.urandom(6).hex())
        train_path = write_jsonl(tmp_path / f"train-{os.urandom(3).hex()}.jsonl", rows)
        http_client = httpx2.AsyncClient(transport=AsyncRewritingTransport(statuses))
        async with local_backend.async_client(http_client=http_client) as client:
            uploader = AsyncFileUploader(
                client, policy=policy, progress=False, cache=False, **settings
            )
            try:
                return await uploader.upload(train_path)
            except UploadError as exc:
                return exc

    done = asyncio.run(scenario(Statuses(["uploaded", "pending", "running"])))
    assert done.status == "processed"
    assert clock.slept == [0.5, 1.0, 2.0]

    clock.slept.clear()
    clock.now = 0.0
    late = asyncio.run(scenario(Statuses(forever="uploaded"), processing_timeout=30))
    assert isinstance(late, UploadError)
    assert "was still 'uploaded' after 30 s" in str(late)
    assert clock.slept == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
