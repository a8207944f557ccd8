"""``train()`` called again: the same parameters carry on; others are refused, never ignored.

A session has one job. Asking it to train with other hyperparameters (or another method, suffix
or seed) used to return the old job and silently drop them; now it is refused with an error that
names each differing parameter and how to start anew (``restart=True``, ``--restart``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import openai
import pytest

from finetune_kit.cli import EXIT_CODES
from finetune_kit.data.dataset import Dataset
from finetune_kit.errors import ConfigurationError
from finetune_kit.jobs.following import FollowOptions
from finetune_kit.session import AsyncFineTuneSession, FineTuneSession
from tests.fixtures.cli import run, run_json
from tests.fixtures.local_backend import chat_examples, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import LocalBackend

FAST = FollowOptions(initial_interval=0.1, max_interval=0.5)


def _n_epochs(job: object) -> object:
    return job.hyperparameters.n_epochs  # type: ignore[attr-defined]


def test_other_parameters_are_refused_and_the_same_carry_on(
    client: openai.OpenAI, tmp_path: Path
) -> None:
    session = FineTuneSession(
        client, model="gpt-4o-mini", state_path=tmp_path / "s.json", follow_options=FAST
    )
    session.upload(Dataset.from_dicts(chat_examples(12, topic="train-again")))
    first = session.train(n_epochs=1, suffix="one")
    assert first.status == "succeeded"

    with pytest.raises(ConfigurationError) as info:
        session.train(n_epochs=2, suffix="one")
    message = str(info.value)
    assert first.id in message
    assert "n_epochs" in message
    assert "the job has 1, this call asks 2" in message
    assert "restart=True" in message
    assert "suffix" not in message  # the same suffix is not a difference
    assert info.value.param == "hyperparameters.n_epochs"

    for asked in ({"method": "dpo"}, {"suffix": "two"}, {"seed": 7}, {"batch_size": 4}):
        with pytest.raises(ConfigurationError, match=next(iter(asked))):
            session.train(**asked)  # type: ignore[arg-type]

    # The same parameters, or none: the session's job, followed as before.
    assert session.train(n_epochs=1, suffix="one").id == first.id
    assert session.train(n_epochs=1, method="supervised").id == first.id
    assert session.train().id == first.id
    assert session.state.job_id == first.id

    second = session.train(n_epochs=2, restart=True)
    assert second.id != first.id
    assert _n_epochs(second) == 2
    assert session.train(n_epochs=2).id == second.id
    session.close()


def test_an_attached_job_is_compared_with_what_it_reports(
    client: openai.OpenAI, local_backend: LocalBackend, tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "t.jsonl", chat_examples(12, topic="train-attached"))
    with data.open("rb") as handle:
        uploaded = client.files.create(file=handle, purpose="fine-tune")
    created = client.fine_tuning.jobs.create(
        model="gpt-4o-mini",
        training_file=uploaded.id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
    )
    session = FineTuneSession(client, state_path=tmp_path / "s.json", follow_options=FAST)
    session.attach(created.id)
    with pytest.raises(ConfigurationError, match="n_epochs"):
        session.train(n_epochs=3, follow=False)
    # "auto" asks nothing in particular: the job's own choice is kept.
    assert session.train(n_epochs="auto", follow=False).id == created.id
    session.close()


def test_the_async_twin_refuses_too(local_backend: LocalBackend, tmp_path: Path) -> None:
    import asyncio

    async def scenario() -> None:
        async with local_backend.async_client() as async_client:
            session = AsyncFineTuneSession(
                async_client,
                model="gpt-4o-mini",
                state_path=tmp_path / "s.json",
                follow_options=FAST,
            )
            await session.upload(Dataset.from_dicts(chat_examples(12, topic="train-again-a")))
            first = await session.train(n_epochs=1)
            with pytest.raises(ConfigurationError, match="n_epochs"):
                await session.train(n_epochs=2)
            assert (await session.train(n_epochs=1)).id == first.id

    asyncio.run(scenario())


def test_the_cli_refuses_other_flags_and_restarts_on_request(
    local_backend: LocalBackend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    common = ["--backend", "local", "--base-url", local_backend.base_url]
    common += ["--state", str(tmp_path / "s.json")]
    data = write_jsonl(tmp_path / "train.jsonl", chat_examples(12, topic="cli-train-again"))
    code, _ = run_json(capsys, *common, "upload", str(data), "--model", "gpt-4o-mini")
    assert code == EXIT_CODES["ok"]
    code, first = run_json(capsys, *common, "-q", "train", "--epochs", "1", "--follow")
    assert code == EXIT_CODES["ok"]

    code, _, err = run(capsys, *common, "train", "--epochs", "2")
    assert code == EXIT_CODES["usage"]
    assert "--epochs" in err
    assert "--restart" in err
    assert "restart=True" not in err  # the CLI's words
    assert "waits" not in err  # nothing was created, so nothing waits

    code, again = run_json(capsys, *common, "train", "--epochs", "1")
    assert again["id"] == first["id"]
    code, second = run_json(
        capsys, *common, "-q", "train", "--epochs", "2", "--restart", "--follow"
    )
    assert code == EXIT_CODES["ok"]
    assert second["id"] != first["id"]
    assert second["hyperparameters"]["n_epochs"] == 2
