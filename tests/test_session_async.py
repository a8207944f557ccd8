"""AsyncFineTuneSession behaves as its sync twin, against the same local backend."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

from finetune_kit._watch import FollowOptions
from finetune_kit.data.dataset import Dataset
from finetune_kit.session import AsyncFineTuneSession, FineTuneSession
from finetune_kit.state import SessionState
from tests.fixtures.local_backend import chat_examples

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
        async with AsyncFineTuneSession(
            local_backend.async_client(),
            model="gpt-4o-mini",
            state_path=tmp_path / "async.json",
            follow_options=FAST,
        ) as session:
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
