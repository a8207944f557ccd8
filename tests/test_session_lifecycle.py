"""The session's shutdown checks: the API's ``shutdown_date``, Azure's own dates, none locally.

A small fake server on 127.0.0.1 answers ``GET .../models/{id}`` with the dates a test sets and
``POST .../chat/completions`` with a fixed answer, and records every request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.data.dataset import Dataset
from finetune_kit.data.validation import preflight
from finetune_kit.errors import ModelShutdownWarning
from finetune_kit.session import AsyncFineTuneSession, FineTuneSession
from tests.fixtures.fake_arm import RecordedRequest, Reply, _FakeServer
from tests.fixtures.local_backend import chat_examples

if TYPE_CHECKING:
    from finetune_kit.local import LocalBackend

QUICK = RetryPolicy(sleep=lambda _: None, max_attempts=2)


class FakeModelsServer(_FakeServer):
    """Models with the ``shutdown_date`` a test gives (``"500"``: the lookup fails)."""

    def __init__(self, models: dict[str, str | None]) -> None:
        super().__init__()
        self.models = models

    def lookups(self, model: str) -> int:
        return sum(1 for r in self.requests if r.method == "GET" and r.path.endswith(model))

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method == "POST" and request.path.endswith("/chat/completions"):
            return Reply(200, _completion(request.body["model"]))
        name = request.path.rsplit("/models/", 1)[-1]
        if request.method != "GET" or "/models/" not in request.path:
            return Reply(404, {"error": {"message": "not found"}})
        if name not in self.models:
            return Reply(404, {"error": {"message": f"no model {name}"}})
        if self.models[name] == "500":
            return Reply(500, {"error": {"message": "upstream trouble"}})
        body = {"id": name, "object": "model", "created": 0, "owned_by": "fake"}
        return Reply(200, {**body, "shutdown_date": self.models[name]})


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "fine"},
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@pytest.fixture
def server() -> Iterator[FakeModelsServer]:
    models = {
        "acme-gone": "2020-01-01",  # long past, whatever today is
        "acme-current": None,
        "acme-broken": "500",
        # In OpenAI's table with a date already past (2026-10-23); Azure gives none.
        "gpt-4.1-nano-2025-04-14": None,
    }
    with FakeModelsServer(models) as fake:
        yield fake


def test_the_apis_shutdown_date_is_read_once_per_model(server: FakeModelsServer) -> None:
    session = FineTuneSession(server.url + "/v1", api_key="k", state_path=None, policy=QUICK)
    with pytest.warns(ModelShutdownWarning, match="acme-gone was shut down on 2020-01-01"):
        session.chat("hi", model="acme-gone")
    session.chat("hi again", model="acme-gone")  # checked already: no second lookup
    assert server.lookups("acme-gone") == 1
    assert session.chat("hi", model="acme-current").text == "fine"


def test_a_failed_lookup_is_logged_at_debug_and_does_not_block(
    server: FakeModelsServer, caplog: pytest.LogCaptureFixture
) -> None:
    session = FineTuneSession(server.url + "/v1", api_key="k", state_path=None, policy=QUICK)
    with caplog.at_level(logging.DEBUG, logger="finetune_kit.lifecycle"):
        reply = session.chat("hi", model="acme-broken")
    assert reply.text == "fine"
    assert server.lookups("acme-broken") == 2  # the policy's two attempts, then the fallback
    debug = [r for r in caplog.records if r.name == "finetune_kit.lifecycle"]
    assert any(
        r.levelno == logging.DEBUG and "models.retrieve(acme-broken) failed" in r.getMessage()
        for r in debug
    )


def test_azure_uses_the_apis_dates_not_openais_table(server: FakeModelsServer) -> None:
    session = FineTuneSession(
        "azure",
        base_url=server.url + "/openai/v1/",
        api_key="k",
        state_path=None,
        policy=QUICK,
    )
    # OpenAI's table says 2026-10-23 for this snapshot; Azure's API gives no date.
    assert session.chat("hi", model="gpt-4.1-nano-2025-04-14").text == "fine"
    assert server.lookups("gpt-4.1-nano-2025-04-14") == 1
    with pytest.warns(ModelShutdownWarning, match="2020-01-01"):
        session.chat("hi", model="acme-gone")


def test_the_async_twin_reads_the_apis_date(server: FakeModelsServer) -> None:
    async def run() -> str:
        async with AsyncFineTuneSession(
            server.url + "/v1", api_key="k", state_path=None, policy=QUICK
        ) as session:
            with pytest.warns(ModelShutdownWarning, match="2020-01-01"):
                await session.chat("hi", model="acme-gone")
            return (await session.chat("hi", model="acme-current")).text

    assert asyncio.run(run()) == "fine"
    assert server.lookups("acme-gone") == 1


def test_openai_shutdown_dates_never_refuse_local_work(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    # After gpt-4o-mini's OpenAI shutdown (2027-01-14) the local backend, which maps the name
    # to its own model, must go on preflighting, uploading and answering (train() checks the
    # same way: no lookup, no table date, on local).
    later = dt.date(2027, 6, 1)
    data = Dataset.from_dicts(chat_examples(12, topic="after-shutdown"))
    openai_view = preflight(data, model="gpt-4o-mini", as_of=later)
    assert "model_shut_down" in {i.code for i in openai_view.errors}  # the date is past...
    with local_backend.client() as client:
        session = FineTuneSession(client, model="gpt-4o-mini", state_path=tmp_path / "s.json")
        report = session.preflight(data, as_of=later)
        assert report.ok, report.summary()
        assert {i.code for i in report.issues}.isdisjoint(
            {"model_shut_down", "model_shutdown_soon"}
        )
        session.upload(data)
        # Today's date may be within OpenAI's warning window: no warning on local either.
        session.chat("hi", model="gpt-4o-mini", max_tokens=2)


def test_openai_table_dates_never_refuse_azure_data() -> None:
    later = dt.date(2027, 6, 1)  # after gpt-4o-mini's OpenAI shutdown (2027-01-14)
    data = Dataset.from_dicts(chat_examples(12, topic="azure-after-shutdown"))
    shutdown_codes = {"model_shut_down", "model_shutdown_soon"}
    on_openai = FineTuneSession("openai", api_key="k", model="gpt-4o-mini", state_path=None)
    assert "model_shut_down" in {i.code for i in on_openai.preflight(data, as_of=later).errors}
    v1 = "http://127.0.0.1:9/openai/v1/"  # preflight is offline: nothing is called
    for twin in (FineTuneSession, AsyncFineTuneSession):
        on_azure = twin("azure", base_url=v1, api_key="k", model="gpt-4o-mini", state_path=None)
        report = on_azure.preflight(data, as_of=later)
        assert report.ok, report.summary()
        assert shutdown_codes.isdisjoint(i.code for i in report.issues)
        assert shutdown_codes.isdisjoint(report.issue_counts)
        assert report.base_model == "gpt-4o-mini-2024-07-18"  # the model's limits still apply


def test_any_other_server_uses_the_apis_dates_not_openais_table(server: FakeModelsServer) -> None:
    # A server speaking the API by URL (vLLM, a gateway, the local backend by address) keeps
    # its models on its own schedule: OpenAI's past date for this snapshot must not warn.
    session = FineTuneSession(server.url + "/v1", api_key="k", state_path=None, policy=QUICK)
    assert session.chat("hi", model="gpt-4.1-nano-2025-04-14").text == "fine"
    assert server.lookups("gpt-4.1-nano-2025-04-14") == 1


def test_openai_table_dates_apply_only_to_openai_itself() -> None:
    later = dt.date(2027, 6, 1)  # after gpt-4o-mini's OpenAI shutdown (2027-01-14)
    data = Dataset.from_dicts(chat_examples(12, topic="custom-after-shutdown"))
    shutdown_codes = {"model_shut_down", "model_shutdown_soon"}
    # Preflight is offline: none of these addresses is called.
    for url, applies in [
        ("https://api.openai.com/v1", True),
        ("http://127.0.0.1:9/v1", False),
        ("https://llm.example.internal/v1", False),
    ]:
        session = FineTuneSession(url, api_key="k", model="gpt-4o-mini", state_path=None)
        report = session.preflight(data, as_of=later)
        assert bool(shutdown_codes & {i.code for i in report.issues}) is applies, url
        assert report.base_model == "gpt-4o-mini-2024-07-18"  # the model's limits still apply
