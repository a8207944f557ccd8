"""A failed job's offending record is best-effort: no network failure while fetching it may hide
the job's own error (JobFailedError) behind a raw transport error."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit._watch import FollowOptions
from finetune_kit.errors import JobFailedError
from finetune_kit.jobs import AsyncJobManager, JobManager
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


class CuttingProxy:
    """An HTTP proxy to the local backend that cuts file-content bodies short.

    The backend's ``drop`` and ``drop-after`` faults close the connection before the first byte
    of the response, which openai wraps as ``APIConnectionError``. A body cut *after* the
    headers is read by the caller from the stream, and openai 3.x lets httpx2's own
    ``RemoteProtocolError`` through: the branch this proxy exists to reach.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.Client(base_url=upstream.rstrip("/").removesuffix("/v1"))
        self.cuts_left = 0
        self.cut = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                skip = {"host", "content-length", "connection", "accept-encoding"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                answer = proxy.upstream.request(
                    self.command, self.path, content=body, headers=headers
                )
                data = answer.content
                cut = (
                    self.command == "GET"
                    and self.path.split("?")[0].endswith("/content")
                    and proxy.take_cut()
                )
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                if not cut:
                    self.wfile.write(data)
                    return
                # The headers promised every byte; a few arrive, then the connection is gone.
                self.wfile.write(data[:10])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

            do_GET = do_POST = do_DELETE = _forward  # noqa: N815  # http.server's names

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def take_cut(self) -> bool:
        if self.cuts_left == 0:
            return False
        self.cuts_left -= 1
        self.cut += 1
        return True

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.upstream.close()


@pytest.fixture
def proxy(local_backend: LocalBackend) -> Iterator[CuttingProxy]:
    running = CuttingProxy(local_backend.base_url)
    yield running
    running.close()


def proxied_client(local_backend: LocalBackend, proxy: CuttingProxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key=local_backend.api_key, max_retries=0)


def test_a_body_cut_short_is_retried_and_the_record_shown(
    local_backend: LocalBackend, proxy: CuttingProxy, failed_job: FailedJob
) -> None:
    proxy.cuts_left = 1
    with proxied_client(local_backend, proxy) as client:
        manager = JobManager(client, policy=quick_policy(), follow_options=FAST, progress=False)
        with pytest.raises(JobFailedError) as info:
            manager.wait(failed_job.id, timeout=60)
    assert proxy.cut == 1
    assert info.value.line == 5
    assert info.value.record == failed_job.bad_line


def test_a_body_cut_short_for_good_still_raises_job_failed(
    local_backend: LocalBackend, proxy: CuttingProxy, failed_job: FailedJob
) -> None:
    proxy.cuts_left = 1_000
    with proxied_client(local_backend, proxy) as client:
        manager = JobManager(client, policy=quick_policy(3), follow_options=FAST, progress=False)
        with pytest.raises(JobFailedError) as info:
            manager.wait(failed_job.id, timeout=60)
    assert proxy.cut == 3  # every attempt of the policy was cut, then the record was given up
    assert info.value.line == 5
    assert info.value.record is None
    assert "line 5" in str(info.value)


def test_async_wait_survives_a_body_cut_short_for_good(
    local_backend: LocalBackend, proxy: CuttingProxy, failed_job: FailedJob
) -> None:
    import asyncio

    proxy.cuts_left = 1_000

    async def scenario() -> JobFailedError:
        async with openai.AsyncOpenAI(
            base_url=proxy.base_url, api_key=local_backend.api_key, max_retries=0
        ) as client:
            manager = AsyncJobManager(
                client, policy=quick_policy(2), follow_options=FAST, progress=False
            )
            with pytest.raises(JobFailedError) as info:
                await manager.wait(failed_job.id, timeout=60)
            return info.value

    error = asyncio.run(scenario())
    assert proxy.cut == 2
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
