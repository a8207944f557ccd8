"""The constructor on an existing state file: carry on the same session, refuse another one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from finetune_kit.data.dataset import Dataset
from finetune_kit.errors import ConfigurationError, SessionError
from finetune_kit.jobs import IDEMPOTENCY_METADATA_KEY
from finetune_kit.jobs.following import FollowOptions
from finetune_kit.session import AsyncFineTuneSession, FineTuneSession
from finetune_kit.session.state import SessionState
from tests.fixtures.local_backend import chat_examples

if TYPE_CHECKING:
    from finetune_kit.local import LocalBackend

FAST = FollowOptions(initial_interval=0.1, max_interval=0.5)
UNREACHABLE = "http://127.0.0.1:9/v1"  # nothing listens there; the constructor makes no call


def test_rerunning_the_readme_cell_trains_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's cell, run twice as after a kernel restart (relative state path, default
    # local data folder, which conftest points into tmp_path).
    monkeypatch.chdir(tmp_path)
    data = Dataset.from_dicts(chat_examples(12, topic="readme"))
    seen: list[tuple[str, list[str], list[str]]] = []
    for _ in range(2):
        with FineTuneSession(
            "local",
            model="gpt-4o-mini",
            state_path="run.json",
            local_model="tiny-random",
            follow_options=FAST,
        ) as session:
            assert session.preflight(data).ok
            session.upload(data)
            job = session.train()
            assert job.status == "succeeded"
            files = [f.id for f in session.client.files.list() if f.purpose == "fine-tune"]
            jobs = [j.id for j in session.client.fine_tuning.jobs.list()]
            seen.append((job.id, files, jobs))
    (first_job, _, _), (second_job, files, jobs) = seen
    assert second_job == first_job
    assert len(files) == 1
    assert jobs == [first_job]
    assert SessionState.load(tmp_path / "run.json").job_id == first_job


def test_same_backend_with_or_without_a_trailing_slash_carries_on(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    SessionState(
        backend="custom", base_url=UNREACHABLE + "/", base_model="m", job_id="ftjob-1"
    ).save(path)
    session = FineTuneSession(UNREACHABLE, api_key="k", model="m", state_path=path)
    assert session.state.job_id == "ftjob-1"
    again = FineTuneSession(UNREACHABLE + "/", api_key="k", state_path=path)
    assert again.state.base_model == "m"
    assert SessionState.load(path).job_id == "ftjob-1"


@pytest.mark.parametrize(
    ("backend", "model", "field"),
    [
        (UNREACHABLE, "other-model", "model"),
        ("http://127.0.0.1:9/other/v1", "m", "base_url"),
        ("local", "m", "backend"),  # refused before a local backend is started
    ],
)
def test_another_sessions_file_is_refused_and_kept(
    tmp_path: Path, backend: str, model: str, field: str
) -> None:
    path = tmp_path / "run.json"
    saved = SessionState(backend="custom", base_url=UNREACHABLE + "/", base_model="m")
    saved.job_id = "ftjob-keep"
    saved.save(path)
    before = path.read_bytes()
    for twin in (FineTuneSession, AsyncFineTuneSession):
        with pytest.raises(SessionError) as info:
            twin(backend, api_key="k", model=model, state_path=path)
        message = str(info.value)
        assert str(path) in message
        assert f"its {field} is" in message
        assert "ftjob-keep" in message
        assert f"{twin.__name__}.resume(" in message
        assert "another state_path" in message
        assert "delete the file" in message
        assert info.value.path == str(path)
    assert path.read_bytes() == before


def test_a_local_folder_other_than_the_saved_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    SessionState(
        backend="local", local_data_dir=str(tmp_path / "a"), base_model="gpt-4o-mini"
    ).save(path)
    with pytest.raises(SessionError, match="its local_data_dir is") as info:
        FineTuneSession("local", local_data_dir=tmp_path / "b", state_path=path)
    assert str(tmp_path / "b") in str(info.value)
    assert not (tmp_path / "b").exists()  # nothing was started there


def test_async_constructor_carries_on_too(local_backend: LocalBackend, tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    data = Dataset.from_dicts(chat_examples(12, topic="async-carry-on"))

    async def first() -> tuple[str, str | None]:
        async with local_backend.async_client() as client:
            session = AsyncFineTuneSession(client, model="gpt-4o-mini", state_path=path)
            await session.upload(data)
            job = await session.train(follow=False)
            return job.id, session.state.job_key

    async def second() -> str:
        async with local_backend.async_client() as client:
            session = AsyncFineTuneSession(
                client, model="gpt-4o-mini", state_path=path, follow_options=FAST
            )
            await session.upload(data)
            return (await session.train()).id

    created, key = asyncio.run(first())
    assert key is not None
    assert asyncio.run(second()) == created
    with local_backend.client() as client:
        same_key = client.fine_tuning.jobs.list(metadata={IDEMPOTENCY_METADATA_KEY: key})
        assert [j.id for j in same_key] == [created]


def test_a_client_passed_in_carries_on_the_session_built_by_name(tmp_path: Path) -> None:
    import openai

    path = tmp_path / "run.json"
    # Nothing is called: the constructor only reads and compares the state file.
    first = FineTuneSession("openai", api_key="k", model="gpt-4o-mini", state_path=path)
    first.state.job_id = "ftjob-by-name"
    first.save()
    first.close()
    with openai.OpenAI(api_key="k") as client:
        again = FineTuneSession(client, model="gpt-4o-mini", state_path=path)
        assert again.state.job_id == "ftjob-by-name"
    azure = tmp_path / "azure.json"
    SessionState(
        backend="azure",
        azure_endpoint="https://res.openai.azure.com",
        azure_api_version="2025-04-01-preview",
        base_model="gpt-4o-mini",
        job_id="ftjob-azure",
    ).save(azure)
    with openai.AzureOpenAI(
        api_key="k", azure_endpoint="https://res.openai.azure.com", api_version="2025-04-01-preview"
    ) as client:
        assert FineTuneSession(client, state_path=azure).state.job_id == "ftjob-azure"
    with (
        openai.AzureOpenAI(
            api_key="k", azure_endpoint="https://other.openai.azure.com", api_version="2025-04-01"
        ) as client,
        pytest.raises(SessionError, match="Azure resource"),
    ):
        FineTuneSession(client, state_path=azure)


def test_a_refused_new_job_keeps_the_previous_one(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    import openai

    with local_backend.client() as client:
        session = FineTuneSession(
            client, model="gpt-4o-mini", state_path=tmp_path / "s.json", follow_options=FAST
        )
        session.upload(Dataset.from_dicts(chat_examples(12, topic="kept-a")))
        first = session.train()
        assert first.status == "succeeded"
        tuned = session.state.fine_tuned_model
        session.upload(Dataset.from_dicts(chat_examples(12, topic="kept-b")))
        # Refused before any request, then by the server's 400: no job exists either time.
        with pytest.raises(ConfigurationError, match="seed"):
            session.train(seed=-1)
        with pytest.raises(openai.BadRequestError):
            session.train(learning_rate_multiplier=500)
        for state in (session.state, SessionState.load(tmp_path / "s.json")):
            assert (state.job_id, state.fine_tuned_model) == (first.id, tuned)
        assert session.chat("hi", max_tokens=2).model == tuned
        assert [j.id for j in client.fine_tuning.jobs.list() if j.id == first.id] == [first.id]
        session.close()
