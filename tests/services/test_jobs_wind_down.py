"""OpenAI's wind-down: a job refused for an organisation it no longer serves is a typed error.

Since 2026-05-07 OpenAI creates fine-tuning jobs only for organisations that fine-tuned before
(since 2026-07-02, only those that used a fine-tuned model in the last 60 days; from 2027-01-06
no one): ``jobs.create`` answers 403. That answer becomes ``FineTuningUnavailableError``, whose
message says what happened and how to move (one line: Azure or the local backend).

The local backend cannot be OpenAI, so the requests go to it over HTTP through a small proxy
that answers ``POST /v1/fine_tuning/jobs`` as OpenAI does for such an organisation; everything
else (the upload, the lookups) is the real path.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

from finetune_kit.cli import EXIT_CODES, main
from finetune_kit.data.dataset import Dataset
from finetune_kit.errors import FinetuneKitError, FineTuningUnavailableError
from finetune_kit.jobs import AsyncJobManager, JobManager
from finetune_kit.session import FineTuneSession
from finetune_kit.session.state import SessionState
from tests.fixtures.local_backend import chat_examples, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import LocalBackend

# OpenAI's exact wording is not published; what matters is the status (403) on jobs.create.
REFUSED = "Fine-tuning is not available for your organization."
SCOPE = "You have insufficient permissions for this operation. Missing scopes: api.fine_tuning."


class RefusingProxy:
    """OpenAI as such an organisation sees it: a real HTTP server in front of the local backend
    that refuses job creation with a 403 and forwards every other request unchanged."""

    def __init__(self, backend_url: str, message: str = REFUSED) -> None:
        self.message = message
        upstream = httpx.Client(base_url=backend_url.removesuffix("/v1"), trust_env=False)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "POST" and self.path.rstrip("/") == "/v1/fine_tuning/jobs":
                    error = {"message": proxy.message, "type": "invalid_request_error"}
                    error.update(param=None, code=None)
                    self._answer(403, json.dumps({"error": error}).encode(), "application/json")
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                }
                answer = upstream.request(self.command, self.path, content=body, headers=headers)
                self._answer(
                    answer.status_code,
                    answer.content,
                    answer.headers.get("content-type", "application/json"),
                )

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.send_header("x-request-id", "req_wind_down")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _forward  # noqa: N815  # http.server's names

            def log_message(self, format: str, *args: Any) -> None:  # the base's signature
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._upstream = upstream
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._upstream.close()


@pytest.fixture
def openai_refusing(local_backend: LocalBackend) -> Iterator[RefusingProxy]:
    proxy = RefusingProxy(local_backend.base_url)
    yield proxy
    proxy.close()


def _client(proxy: RefusingProxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key="k", max_retries=0)


@pytest.fixture
def training_file(client: openai.OpenAI, tmp_path: Path) -> str:
    data = write_jsonl(tmp_path / "t.jsonl", chat_examples(12, topic="wind-down"))
    with data.open("rb") as handle:
        return client.files.create(file=handle, purpose="fine-tune").id


def test_openais_refusal_is_a_typed_error_saying_how_to_move(
    openai_refusing: RefusingProxy, training_file: str
) -> None:
    with _client(openai_refusing) as refusing:
        manager = JobManager(refusing, provider="openai")
        with pytest.raises(FineTuningUnavailableError) as info:
            manager.create(model="gpt-4o-mini-2024-07-18", training_file=training_file)
    error = info.value
    assert isinstance(error, FinetuneKitError)
    assert isinstance(error.__cause__, openai.PermissionDeniedError)
    assert error.status_code == 403
    assert error.request_id == "req_wind_down"
    assert error.api_message == REFUSED
    message = str(error)
    assert REFUSED in message
    assert "2027-01-06" in message
    assert 'FineTuneSession("azure"' in message
    assert 'FineTuneSession("local"' in message
    assert "migrating" in message


def test_the_async_twin_refuses_the_same(
    openai_refusing: RefusingProxy, training_file: str
) -> None:
    async def scenario() -> None:
        base_url = openai_refusing.base_url
        async with openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0) as refusing:
            manager = AsyncJobManager(refusing, provider="openai")
            with pytest.raises(FineTuningUnavailableError):
                await manager.create(model="gpt-4o-mini", training_file=training_file)

    asyncio.run(scenario())


def test_other_403s_stay_the_apis_own_errors(
    openai_refusing: RefusingProxy, training_file: str
) -> None:
    # A key without the fine-tuning scope is the key's problem, not the wind-down's.
    openai_refusing.message = SCOPE
    with _client(openai_refusing) as refusing:
        with pytest.raises(openai.PermissionDeniedError) as info:
            JobManager(refusing, provider="openai").create(
                model="gpt-4o-mini", training_file=training_file
            )
        assert not isinstance(info.value, FineTuningUnavailableError)
    # Azure and other servers have no such wind-down.
    openai_refusing.message = REFUSED
    with _client(openai_refusing) as refusing, pytest.raises(openai.PermissionDeniedError):
        JobManager(refusing, provider="azure").create(
            model="gpt-4o-mini", training_file=training_file
        )


def test_the_session_keeps_its_state_and_the_cli_says_the_flags(
    openai_refusing: RefusingProxy,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    data = Dataset.from_dicts(chat_examples(12, topic="wind-down-session"))
    state = tmp_path / "s.json"
    with FineTuneSession(
        "openai", base_url=openai_refusing.base_url, model="my-model", state_path=state
    ) as session:
        uploaded = session.upload(data)
        with pytest.raises(FineTuningUnavailableError):
            session.train(follow=False)
    saved = SessionState.load(state)
    assert saved.job_id is None
    assert saved.training_file_id == uploaded.id

    # At the command line: the same error in its words, exit code 7 (the API refused).
    common = ["--backend", "openai", "--base-url", openai_refusing.base_url, "--state", str(state)]
    code = main([*common, "--json", "train"])
    printed = json.loads(capsys.readouterr().out)
    assert code == EXIT_CODES["api"], printed
    assert printed["error"] == "FineTuningUnavailableError"
    assert "--backend azure" in printed["message"]
    assert "--backend local" in printed["message"]
