"""AsyncFineTuneSession behaves as its sync twin, against the same local backend."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

from finetune_kit.data.dataset import Dataset
from finetune_kit.jobs.following import FollowOptions
from finetune_kit.session import AsyncFineTuneSession, FineTuneSession
from finetune_kit.session.state import SessionState
from tests.fixtures.local_backend import chat_examples, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import LocalBackend

FAST = FollowOptions(initial_interval=0.1, max_interval=0.5)


def test_async_session_matches_the_sync_one(local_backend: LocalBackend, tmp_path: Path) -> None:
    data = Dataset.from_dicts(chat_examples(12, topic="twin"))
    prompts = ["Tell me about Argon", "Tell me about Neon"]

    sync = FineTuneSession(
        local_backend.client(),
        model="gpt-4o-mini",
        state_path=tmp_path / "sync.json",
        follow_options=FAST,
    )
    sync.upload(data)
    sync_job = sync.train(n_epochs=2, seed=7)
    sync_rows = [
        (r.prompt, r.base.text, r.tuned.text)
        for r in sync.compare(prompts, max_tokens=6, temperature=0)
    ]

    async def run() -> tuple[str, list[tuple[str, str, str]], Path, int]:
        # The client is ours to close: the session leaves a client it was given open.
        async with (
            local_backend.async_client() as client,
            AsyncFineTuneSession(
                client,
                model="gpt-4o-mini",
                state_path=tmp_path / "async.json",
                follow_options=FAST,
            ) as session,
        ):
            uploaded = await session.upload(data)
            assert uploaded.id == sync.state.training_file_id  # same content: reused
            job = await session.train(n_epochs=2, seed=7)
            comparison = await session.compare(prompts, max_tokens=6, temperature=0)
            rows = [(r.prompt, r.base.text, r.tuned.text) for r in comparison.rows]
            again = await session.train()  # carries on with the same job
            assert again.id == job.id
            out = await session.export(tmp_path / "export")
            metrics = await session.metrics()
            return job.status, rows, out, len(metrics.steps)

    status, rows, out, steps = asyncio.run(run())
    assert status == "succeeded"
    saved_sync = SessionState.load(tmp_path / "sync.json")
    saved_async = SessionState.load(tmp_path / "async.json")
    assert saved_async.trained_base_model == saved_sync.trained_base_model
    assert saved_async.job_id != saved_sync.job_id
    assert len(saved_async.checkpoints) == len(saved_sync.checkpoints)
    # Same data, seed and greedy decoding: both tuned models answer alike.
    assert rows == sync_rows
    assert steps == len(sync.metrics().steps)
    job = json.loads((out / "job.json").read_text())
    assert job["id"] == saved_async.job_id
    assert sync_job.id == saved_sync.job_id


def test_async_resume_and_attach(local_backend: LocalBackend, tmp_path: Path) -> None:
    path = tmp_path / "async.json"
    data = Dataset.from_dicts(chat_examples(12, topic="async-resume"))
    other_data = write_jsonl(tmp_path / "other.jsonl", chat_examples(12, topic="async-attach"))

    async def run() -> tuple[str, str, bool, bool]:
        async with local_backend.async_client() as client:
            first = AsyncFineTuneSession(client, model="gpt-4o-mini", state_path=path)
            await first.upload(data)
            created = await first.train(follow=False)
            await first.aclose()
            assert not client.is_closed()  # the caller's client stays open

            async with AsyncFineTuneSession.resume(path, follow_options=FAST) as resumed:
                job = await resumed.train()  # the saved job, followed to the end
                assert job.id == created.id
                assert job.status == "succeeded"
                other_file = await client.files.create(file=other_data, purpose="fine-tune")
                other = await client.fine_tuning.jobs.create(
                    training_file=other_file.id, model="gpt-4o-mini"
                )
                attached = await resumed.attach(other.id)
                assert resumed.state.job_id == other.id
                assert resumed.state.training_file_id == other_file.id
                if attached.status != "succeeded":
                    # What belonged to the first job is gone until the new one succeeds.
                    assert resumed.state.fine_tuned_model is None
                    assert resumed.state.checkpoints == []
                done = await resumed.wait()
                assert done.fine_tuned_model is not None
                assert done.fine_tuned_model != job.fine_tuned_model
                assert (await resumed.chat("hi", max_tokens=2)).model == done.fine_tuned_model
            return created.id, other.id, resumed.client.is_closed(), client.is_closed()

    created, other, resumed_closed, caller_closed = asyncio.run(run())
    assert resumed_closed  # the client the resumed session built is closed with it
    assert not caller_closed
    saved = SessionState.load(path)
    assert saved.job_id == other
    assert created != other


def test_sync_close_leaves_the_callers_client_open(local_backend: LocalBackend) -> None:
    with local_backend.client() as client:
        FineTuneSession(client, state_path=None).close()
        assert not client.is_closed()
        assert list(client.models.list())
    own = FineTuneSession(local_backend.base_url, api_key="k", state_path=None)
    own.close()
    assert own.client.is_closed()
