"""Fault injection: scripted and random faults, dropped connections, latency, request log."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from finetune_kit.errors import ConfigurationError, LocalBackendError
from finetune_kit.local import Fault, FaultInjector, LocalBackend, RemoteFaults
from finetune_kit.local.faults import compile_path
from tests.fixtures.local_backend import chat_examples, write_jsonl


def test_scripted_429_carries_retry_after_headers(
    client: openai.OpenAI, local_faults: FaultInjector
) -> None:
    local_faults.script("GET", "/v1/models", ["429:2.5"])
    with pytest.raises(openai.RateLimitError) as info:
        client.models.list()
    headers = info.value.response.headers
    assert headers["retry-after"] == "2.5"
    assert headers["retry-after-ms"] == "2500"
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.type == "requests"
    # The script is used up: the next request goes through.
    assert client.models.list().data


def test_each_fault_kind_reaches_the_client_as_openai_raises_it(
    client: openai.OpenAI, local_faults: FaultInjector
) -> None:
    local_faults.script("GET", "/v1/files", ["500", "503", "drop", "ok", "429"])
    with pytest.raises(openai.InternalServerError) as info:
        client.files.list()
    assert info.value.status_code == 500
    with pytest.raises(openai.InternalServerError) as info:
        client.files.list()
    assert info.value.status_code == 503
    with pytest.raises(openai.APIConnectionError):
        client.files.list()
    client.files.list()
    with pytest.raises(openai.RateLimitError):
        client.files.list()
    log = local_faults.requests("GET", "/v1/files")
    assert [r.fault for r in log] == ["500", "503", "drop", None, "429"]
    assert [r.status for r in log] == [500, 503, None, 200, 429]


def test_drop_after_stores_the_file_and_loses_the_response(
    client: openai.OpenAI, local_faults: FaultInjector, tmp_path: Path
) -> None:
    # Big enough that the multipart body reaches the server in many reads.
    tag = os.urandom(4).hex()
    path = write_jsonl(tmp_path / f"lost-{tag}.jsonl", chat_examples(2000, topic=tag))
    assert path.stat().st_size > 256 * 1024
    local_faults.script("POST", "/v1/files", ["drop-after"])
    with pytest.raises(openai.APIConnectionError), open(path, "rb") as handle:
        client.files.create(file=handle, purpose="fine-tune")
    [record] = local_faults.requests("POST", "/v1/files")
    assert (record.fault, record.status) == ("drop-after", 200)
    stored = [f for f in client.files.list() if f.filename == path.name]
    assert len(stored) == 1
    assert stored[0].bytes == path.stat().st_size
    assert client.files.content(stored[0].id).read() == path.read_bytes()


def test_drop_after_sends_not_one_byte(
    local_backend: LocalBackend, local_faults: FaultInjector, caplog: pytest.LogCaptureFixture
) -> None:
    url = httpx.URL(local_backend.base_url)
    local_faults.script("GET", "/v1/models", ["drop-after"])
    with socket.create_connection((url.host, url.port or 80), timeout=10) as sock:
        request = f"GET /v1/models HTTP/1.1\r\nHost: {url.host}\r\n\r\n"
        sock.sendall(request.encode())
        assert sock.recv(65536) == b""  # closed, without even a status line
    [record] = local_faults.requests("GET", "/v1/models")
    assert (record.fault, record.status) == ("drop-after", 200)
    # The server took the close as planned: no complaint about a missing response.
    assert not [r for r in caplog.records if r.name.startswith("uvicorn") and r.levelno >= 30]


def test_cut_sends_the_headers_and_a_few_bytes_of_the_body(
    local_backend: LocalBackend,
    client: openai.OpenAI,
    local_faults: FaultInjector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    content = b"".join(json.dumps(row).encode() + b"\n" for row in chat_examples(3))
    uploaded = client.files.create(file=("cut.jsonl", content), purpose="fine-tune")
    local_faults.script("GET", "/v1/files/{id}/content", ["cut", "cut"])
    url = httpx.URL(local_backend.base_url)
    with socket.create_connection((url.host, url.port or 80), timeout=10) as sock:
        request = (
            f"GET /v1/files/{uploaded.id}/content HTTP/1.1\r\nHost: {url.host}\r\n"
            f"Authorization: Bearer {local_backend.api_key}\r\n\r\n"
        )
        sock.sendall(request.encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert f"content-length: {len(content)}".encode() in head.lower()
    assert body == content[:10]  # the headers promised every byte; ten arrived
    # Read from the stream, the SDK lets the transport's own error through (not wrapped).
    with (
        pytest.raises(Exception, match=r"complete message body") as info,
        client.files.with_streaming_response.content(uploaded.id) as response,
    ):
        response.read()
    assert not isinstance(info.value, openai.APIError)
    log = local_faults.requests("GET", "/v1/files/{id}/content")
    assert [(r.fault, r.status) for r in log] == [("cut", 200), ("cut", 200)]
    assert not [r for r in caplog.records if r.name.startswith("uvicorn") and r.levelno >= 30]


def test_drop_after_creates_the_job_and_loses_the_response(
    client: openai.OpenAI, local_faults: FaultInjector, chat_training_file: Path
) -> None:
    with open(chat_training_file, "rb") as handle:
        training = client.files.create(file=handle, purpose="fine-tune")
    key = os.urandom(6).hex()
    local_faults.set_probability("POST", "/v1/fine_tuning/jobs", "drop-after", 1.0)
    with pytest.raises(openai.APIConnectionError):
        client.fine_tuning.jobs.create(
            model="gpt-4o-mini", training_file=training.id, metadata={"lost": key}
        )
    local_faults.clear()
    jobs = [
        j for j in client.fine_tuning.jobs.list(limit=100) if (j.metadata or {}) == {"lost": key}
    ]
    try:
        assert len(jobs) == 1
        assert jobs[0].training_file == training.id
    finally:
        for job in jobs:
            client.fine_tuning.jobs.cancel(job.id)


def test_drop_after_on_a_stream_and_on_completing_an_upload(
    client: openai.OpenAI, local_faults: FaultInjector
) -> None:
    chat: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hi."}]
    local_faults.script("POST", "/v1/chat/completions", ["drop-after"])
    with pytest.raises(openai.APIConnectionError):  # not even the status line arrives
        client.chat.completions.create(model="gpt-4o-mini", messages=chat, stream=True)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=chat, stream=True, max_tokens=4
    )
    assert [chunk.id for chunk in stream]  # the next request streams normally

    content = b"".join(
        json.dumps(row).encode() + b"\n" for row in chat_examples(40, topic=os.urandom(4).hex())
    )
    upload = client.uploads.create(
        bytes=len(content), filename="parts.jsonl", mime_type="text/jsonl", purpose="fine-tune"
    )
    half = len(content) // 2
    parts = [
        client.uploads.parts.create(upload.id, data=chunk).id
        for chunk in (content[:half], content[half:])
    ]
    local_faults.script("POST", "/v1/uploads/{id}/complete", ["drop-after"])
    with pytest.raises(openai.APIConnectionError):
        client.uploads.complete(upload.id, part_ids=parts)
    assert [(r.fault, r.status) for r in local_faults.requests("POST", "/v1/**")] == [
        ("drop-after", 200),
        (None, 200),
        (None, 200),
        (None, 200),
        (None, 200),
        ("drop-after", 200),
    ]
    [stored] = [
        f for f in client.files.list() if f.filename == "parts.jsonl" and f.bytes == len(content)
    ]
    assert client.files.content(stored.id).read() == content


def test_the_openai_client_retries_through_scripted_faults(
    local_backend: LocalBackend, local_faults: FaultInjector
) -> None:
    local_faults.script("GET", "/v1/models", ["503", "drop"])
    local_faults.script("GET", "/v1/models", ["429:0.01"])
    with local_backend.client(max_retries=3) as retrying:
        assert retrying.models.list().data
    log = local_faults.requests("GET", "/v1/models")
    assert [r.fault for r in log] == ["503", "drop", "429", None]
    assert [r.retry_count for r in log] == [0, 1, 2, 3]
    assert local_faults.count("GET", "/v1/models") == 4


def test_probability_one_always_and_zero_never(
    client: openai.OpenAI, local_faults: FaultInjector
) -> None:
    local_faults.set_probability("GET", "/v1/fine_tuning/jobs", "503", 1.0)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            client.fine_tuning.jobs.list()
    local_faults.clear()
    local_faults.set_probability("GET", "/v1/fine_tuning/jobs", "503", 0.0)
    for _ in range(3):
        client.fine_tuning.jobs.list()


def test_patterns_select_routes(client: openai.OpenAI, local_faults: FaultInjector) -> None:
    local_faults.script("GET", "/v1/fine_tuning/jobs/{job_id}", ["500"])
    client.fine_tuning.jobs.list()  # another route: untouched
    with pytest.raises(openai.InternalServerError):
        client.fine_tuning.jobs.retrieve("ftjob-any")
    local_faults.script("POST", "/files", ["500"])  # "/v1" may be left out
    with pytest.raises(openai.InternalServerError):
        client.files.create(file=("t.jsonl", b"{}\n"), purpose="fine-tune")


def test_latency_delays_requests(client: openai.OpenAI, local_faults: FaultInjector) -> None:
    # The server's own record of the latency it injected: no clock is read in the test.
    local_faults.latency("*", "/v1/models", 0.3)
    client.models.list()
    local_faults.script("GET", "/v1/models", ["delay:0.2"])
    client.models.list()
    client.fine_tuning.jobs.list()  # another route: no latency
    records = local_faults.requests()
    assert [(r.path, r.delay) for r in records] == [
        ("/v1/models", 0.3),
        ("/v1/models", pytest.approx(0.5)),
        ("/v1/fine_tuning/jobs", 0.0),
    ]
    # Each finished after it started; the record is complete once the answer was sent.
    assert all(r.finished_at is not None and r.finished_at >= r.started_at for r in records)


def test_the_async_client_sees_the_same_faults(
    async_client: openai.AsyncOpenAI, local_faults: FaultInjector
) -> None:
    local_faults.script("GET", "/v1/models", ["drop", "429"])

    async def run() -> list[str]:
        seen = []
        async with async_client as http_client:
            for _ in range(3):
                try:
                    await http_client.models.list()
                    seen.append("ok")
                except openai.APIConnectionError:
                    seen.append("connection")
                except openai.RateLimitError:
                    seen.append("429")
        return seen

    assert asyncio.run(run()) == ["connection", "429", "ok"]


def test_remote_control_over_http(local_backend: LocalBackend, client: openai.OpenAI) -> None:
    remote = RemoteFaults(local_backend.base_url)
    remote.script("GET", "/v1/models", ["500", Fault("429", retry_after=0.5)])
    with pytest.raises(openai.InternalServerError):
        client.models.list()
    with pytest.raises(openai.RateLimitError) as info:
        client.models.list()
    assert info.value.response.headers["retry-after-ms"] == "500"
    remote.set_probability("DELETE", "/v1/files/*", "drop", 1.0)
    with pytest.raises(openai.APIConnectionError):
        client.files.delete("file-x")
    remote.latency("GET", "/v1/files", 0.0)
    assert remote.count("GET", "/v1/models") == 2
    assert [r.fault for r in remote.requests("DELETE", "/v1/files/{id}")] == ["drop"]
    remote.clear()
    doomed = client.files.create(file=("doomed.jsonl", b"{}\n"), purpose="fine-tune")
    remote.script("DELETE", "/v1/files/{id}", ["drop-after"])
    with pytest.raises(openai.APIConnectionError):
        client.files.delete(doomed.id)
    with pytest.raises(openai.NotFoundError):  # handled: the file is gone
        client.files.retrieve(doomed.id)
    [deleted] = remote.requests("DELETE", "/v1/files/{id}")
    assert (deleted.fault, deleted.status) == ("drop-after", 200)
    remote.clear()
    assert remote.count() == 0
    with pytest.raises(LocalBackendError, match="Unknown fault"):
        remote.script("GET", "/v1/models", ["418"])


def test_admin_routes_do_not_exist_without_fault_injection(tmp_path: object) -> None:
    with LocalBackend(default_model="tiny-random", max_concurrent_jobs=0) as backend:
        with pytest.raises(LocalBackendError, match="faults=True"):
            _ = backend.faults
        with pytest.raises(LocalBackendError, match="fault injection on"):
            RemoteFaults(backend.base_url).clear()


def test_fault_specs_and_patterns() -> None:
    assert Fault.parse("503:2") == Fault("503", retry_after=2.0)
    assert Fault.parse(" DROP ") == Fault("drop")
    assert Fault.parse("Drop-After") == Fault("drop-after")
    with pytest.raises(ConfigurationError):
        Fault.parse("teapot")
    with pytest.raises(ConfigurationError):
        Fault.parse("429:soon")
    assert compile_path("/v1/files/*").fullmatch("/v1/files/file-1")
    assert not compile_path("/v1/files/*").fullmatch("/v1/files/file-1/content")
    assert compile_path("/v1/**").fullmatch("/v1/files/file-1/content")
    with pytest.raises(ConfigurationError):
        compile_path("v1/files")
    with pytest.raises(ConfigurationError):
        FaultInjector().set_probability("GET", "/v1/files", "500", 1.5)
