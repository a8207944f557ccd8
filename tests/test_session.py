"""FineTuneSession end to end against the local backend: real HTTP, real SQLite, a real model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import openai
import pytest

from finetune_kit.data.dataset import Dataset
from finetune_kit.data.records import ChatExample
from finetune_kit.errors import ConfigurationError, JobFailedError, SessionError
from finetune_kit.jobs import IDEMPOTENCY_METADATA_KEY
from finetune_kit.jobs.following import FollowOptions
from finetune_kit.session import FineTuneSession
from finetune_kit.session.state import SessionState
from tests.fixtures.local_backend import chat_examples, wait_for_job, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import LocalBackend


FAST = FollowOptions(initial_interval=0.1, max_interval=0.5)


def _dataset(n: int = 12, topic: str = "element") -> Dataset[ChatExample]:
    return Dataset.from_dicts(chat_examples(n, topic=topic))


def _jobs_with_key(client: openai.OpenAI, key: str) -> list[str]:
    return [j.id for j in client.fine_tuning.jobs.list(metadata={IDEMPOTENCY_METADATA_KEY: key})]


def test_whole_workflow_saves_state_without_secrets(
    client: openai.OpenAI, local_backend: LocalBackend, tmp_path: Path
) -> None:
    state_path = tmp_path / "run.json"
    session = FineTuneSession(
        client, model="gpt-4o-mini", state_path=state_path, follow_options=FAST
    )

    report = session.preflight(_dataset())
    assert report.ok
    uploaded = session.upload(_dataset())
    assert json.loads(state_path.read_text())["training_file_id"] == uploaded.id

    job = session.train(n_epochs=2, suffix="limericks")
    assert job.status == "succeeded"
    assert job.fine_tuned_model is not None
    assert ":limericks:" in job.fine_tuned_model

    saved = SessionState.load(state_path)
    assert saved.job_id == job.id
    assert saved.fine_tuned_model == job.fine_tuned_model
    assert saved.trained_base_model == job.model
    assert saved.checkpoints
    assert saved.dataset_sha256 == _dataset().sha256

    reply = session.chat("Tell me about Neon", max_tokens=4)
    assert reply.model == job.fine_tuned_model
    assert reply.completion_tokens >= 1

    comparison = session.compare(["Tell me about Argon", "Tell me about Xenon"], max_tokens=4)
    assert [row.prompt for row in comparison.rows] == ["Tell me about Argon", "Tell me about Xenon"]
    assert comparison.base_model == job.model
    assert comparison.tuned_model == job.fine_tuned_model
    other = session.compare("Tell me about Argon", base_model="tiny-random", max_tokens=2)
    assert other.base_model == "tiny-random"

    metrics = session.metrics()
    assert metrics.steps
    assert all(loss is not None for loss in metrics.train_loss)


def test_checkpoint_chat_by_step_and_unknown_step(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    session = FineTuneSession(
        local_backend.client(),
        model="gpt-4o-mini",
        state_path=tmp_path / "s.json",
        follow_options=FAST,
    )
    session.upload(_dataset(topic="checkpoint"))
    session.train(n_epochs=2)
    steps = [c.step for c in session.state.checkpoints]
    assert steps
    reply = session.chat("hello", checkpoint=steps[-1], max_tokens=2)
    assert reply.model.endswith(f":ckpt-step-{steps[-1]}")
    with pytest.raises(ConfigurationError, match="no checkpoint at step 99999") as info:
        session.chat("hello", checkpoint=99999)
    assert info.value.param == "checkpoint"


def test_resume_carries_on_without_duplicate_upload_or_job(
    client: openai.OpenAI, local_backend: LocalBackend, tmp_path: Path
) -> None:
    state_path = tmp_path / "run.json"
    first = FineTuneSession(client, model="gpt-4o-mini", state_path=state_path, follow_options=FAST)
    uploaded = first.upload(_dataset(topic="resume"))
    created = first.train(follow=False)
    key = first.state.job_key
    assert key is not None

    # A new process: only the state file survives.
    second = FineTuneSession.resume(state_path, follow_options=FAST)
    assert second.state.job_id == created.id
    again = second.upload(_dataset(topic="resume"))
    assert again.id == uploaded.id
    job = second.train()
    assert job.id == created.id
    assert job.status == "succeeded"
    assert _jobs_with_key(client, key) == [created.id]
    assert SessionState.load(state_path).fine_tuned_model == job.fine_tuned_model


def test_train_after_a_crash_between_create_and_save_finds_the_job(
    client: openai.OpenAI, local_backend: LocalBackend, tmp_path: Path
) -> None:
    # The key is saved before the create: a state file that has the key but not the job id
    # (the process died in between) must lead to the existing job, not a second one.
    state_path = tmp_path / "run.json"
    session = FineTuneSession(
        client, model="gpt-4o-mini", state_path=state_path, follow_options=FAST
    )
    session.upload(_dataset(topic="crash"))
    job = session.train(follow=False)
    state = SessionState.load(state_path)
    state.job_id = None
    state.job_status = None
    state.save(state_path)

    resumed = FineTuneSession.resume(state_path)
    again = resumed.train(follow=False)
    assert again.id == job.id
    assert _jobs_with_key(client, state.job_key or "") == [job.id]


def test_failed_job_names_the_line_and_a_new_train_starts_a_new_job(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    rows: list[object] = list(chat_examples(12, topic="broken"))
    bad = json.loads(json.dumps(rows[3]))
    bad["messages"][1]["weight"] = 1  # weight on a user message: the server's preflight fails it
    rows[3] = bad
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    session = FineTuneSession(
        local_backend.client(),
        model="gpt-4o-mini",
        state_path=tmp_path / "s.json",
        follow_options=FAST,
    )
    session.upload(path, force=True)
    with pytest.raises(JobFailedError) as info:
        session.train()
    assert info.value.line == 4
    assert info.value.record is not None
    assert '"weight": 1' in info.value.record
    failed_id = session.state.job_id
    assert session.state.job_status == "failed"

    session.upload(_dataset(topic="fixed"))
    job = session.train()
    assert job.id != failed_id
    assert job.status == "succeeded"


def test_attach_adopts_a_job_started_elsewhere(
    client: openai.OpenAI, local_backend: LocalBackend, tmp_path: Path, chat_training_file: Path
) -> None:
    with chat_training_file.open("rb") as handle:
        file = client.files.create(file=handle, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(training_file=file.id, model="gpt-4o-mini")
    session = FineTuneSession(client, state_path=tmp_path / "s.json", follow_options=FAST)
    attached = session.attach(job.id)
    assert attached.id == job.id
    assert session.state.training_file_id == file.id
    assert session.state.base_model == job.model
    done = session.wait()
    assert done.status == "succeeded"
    assert SessionState.load(tmp_path / "s.json").fine_tuned_model == done.fine_tuned_model


def test_export_writes_every_artifact(local_backend: LocalBackend, tmp_path: Path) -> None:
    session = FineTuneSession(
        local_backend.client(),
        model="gpt-4o-mini",
        state_path=tmp_path / "s.json",
        follow_options=FAST,
    )
    session.upload(_dataset(topic="export"), validation=_dataset(n=3, topic="held-out"))
    job = session.train(n_epochs=1)
    out = session.export(tmp_path / "export")
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "checkpoints.json",
        "events.jsonl",
        "job.json",
        "results.csv",
        "session.json",
        "training.jsonl",
        "validation.jsonl",
    ]
    assert json.loads((out / "job.json").read_text())["id"] == job.id
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[-1]["message"] == "The job has successfully completed"
    assert (out / "results.csv").read_text().startswith("step,")
    assert (out / "training.jsonl").read_bytes() == _dataset(topic="export").to_jsonl_bytes()


def test_steps_before_their_prerequisites_say_what_to_do(tmp_path: Path) -> None:
    session = FineTuneSession(
        "http://127.0.0.1:9/v1", api_key="not-used", model="m", state_path=None
    )
    with pytest.raises(SessionError, match=r"call upload\(data\) first"):
        session.train()
    with pytest.raises(SessionError, match="train"):
        session.chat("hello")
    with pytest.raises(SessionError, match=r"attach\(job_id\)"):
        session.status()


def test_local_session_survives_a_restart(tmp_path: Path) -> None:
    # The notebook case: the kernel dies while the job trains; a new session on the same state
    # file restarts the local backend on the same data folder and the job finishes there.
    state_path = tmp_path / "run.json"
    data_dir = tmp_path / "local-data"
    with FineTuneSession(
        "local",
        model="gpt-4o-mini",
        local_model="tiny-random",
        local_data_dir=data_dir,
        state_path=state_path,
        follow_options=FAST,
    ) as first:
        first.upload(_dataset(topic="restart"))
        created = first.train(follow=False)
    saved = SessionState.load(state_path)
    assert saved.backend == "local"
    assert saved.local_data_dir == str(data_dir)

    with FineTuneSession.resume(
        state_path, local_model="tiny-random", follow_options=FAST
    ) as second:
        job = second.train()
        assert job.id == created.id
        assert job.status == "succeeded"
        jobs = list(second.client.fine_tuning.jobs.list())
        assert [j.id for j in jobs] == [created.id]


def test_the_key_is_never_saved_or_shown(tmp_path: Path) -> None:
    from finetune_kit.local import LocalBackend

    secret = "sk-test-0123456789abcdef"
    state_path = tmp_path / "run.json"
    with LocalBackend(tmp_path / "data", api_key=secret, default_model="tiny-random") as backend:
        # The server's own model name: an OpenAI name would be held to OpenAI's shutdown
        # dates on a URL backend, and this test must not depend on today's date.
        session = FineTuneSession(
            backend.base_url, api_key=secret, model="tiny-random", state_path=state_path
        )
        session.upload(_dataset(topic="secret"))
        shown = repr(session) + session._repr_html_() + state_path.read_text()
        assert secret not in shown
        assert SessionState.load(state_path).base_url == backend.base_url + "/"
        with pytest.raises(openai.AuthenticationError):
            FineTuneSession(backend.base_url, api_key="sk-wrong", state_path=None).files.upload(
                _dataset(topic="secret")
            )


def test_attach_replaces_what_belonged_to_the_previous_job(
    client: openai.OpenAI, local_backend: LocalBackend, tmp_path: Path
) -> None:
    path = tmp_path / "s.json"
    session = FineTuneSession(client, model="gpt-4o-mini", state_path=path, follow_options=FAST)
    session.upload(_dataset(topic="attach-first"))
    first = session.train(n_epochs=1)
    session.state.deployment = "first-deployment"  # what an Azure deploy() leaves
    other_path = write_jsonl(tmp_path / "other.jsonl", chat_examples(12, topic="attach-other"))
    other_file = client.files.create(file=other_path, purpose="fine-tune")
    other = client.fine_tuning.jobs.create(training_file=other_file.id, model="gpt-4o-mini")
    other = wait_for_job(client, other.id)
    assert other.fine_tuned_model is not None

    session.attach(other.id)
    saved = SessionState.load(path)
    assert saved.job_id == other.id
    assert saved.fine_tuned_model == other.fine_tuned_model != first.fine_tuned_model
    assert saved.training_file_id == other_file.id
    assert saved.dataset_sha256 is None  # the attached job's data was not uploaded here
    assert saved.deployment is None
    assert saved.checkpoints
    assert all(c.model.startswith(other.fine_tuned_model) for c in saved.checkpoints)
    assert session.chat("hi", max_tokens=2).model == other.fine_tuned_model


def test_new_data_gets_a_new_job_and_unchanged_data_keeps_the_old_one(
    client: openai.OpenAI,
    local_backend: LocalBackend,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "s.json"
    session = FineTuneSession(client, model="gpt-4o-mini", state_path=path, follow_options=FAST)
    session.upload(_dataset(topic="old-data"))
    first = session.train(n_epochs=1, follow=False)
    session.upload(_dataset(topic="old-data"))  # the same content: the same file
    assert session.train(follow=False).id == first.id

    session.upload(_dataset(topic="new-data"))
    with caplog.at_level(logging.WARNING, logger="finetune_kit.session"):
        second = session.train(n_epochs=1)  # even though the first job may still be running
    assert second.id != first.id
    assert second.status == "succeeded"
    assert second.training_file == session.state.training_file_id != first.training_file
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(first.id in message and "new job" in message for message in warned)
    assert session.train().id == second.id
    saved = SessionState.load(path)
    assert saved.job_id == second.id
    assert saved.fine_tuned_model == second.fine_tuned_model
    assert client.fine_tuning.jobs.retrieve(first.id).training_file == first.training_file
