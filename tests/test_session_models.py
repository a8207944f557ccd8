"""A saved session keeps its models: a later command never silently trains another one.

The session's base model and, on the local backend, the local base model OpenAI names map to
are in the state file; a later command (or ``resume``) uses them, and one that names another
model is refused with an error naming both.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune_kit.cli import EXIT_CODES
from finetune_kit.errors import SessionError
from finetune_kit.session import AsyncFineTuneSession, FineTuneSession
from finetune_kit.session.state import SessionState
from tests.fixtures.cli import run, run_json
from tests.fixtures.local_backend import chat_examples, write_jsonl

UNREACHABLE = "http://127.0.0.1:9/v1"  # nothing listens: a refused session sends nothing


def test_the_local_model_is_saved_and_a_later_command_trains_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", chat_examples(12, topic="local-model"))
    state = tmp_path / "s.json"
    where = ["--backend", "local", "--local-data-dir", str(tmp_path / "data")]
    code, _ = run_json(
        capsys,
        *where,
        "--local-model",
        "tiny-random",
        "--state",
        str(state),
        "upload",
        str(data),
        "--model",
        "gpt-4o-mini",
    )
    assert code == EXIT_CODES["ok"]
    assert SessionState.load(state).local_model == "tiny-random"

    # No --local-model: the saved one, not the backend's default (SmolLM2).
    code, job = run_json(capsys, "--state", str(state), "-q", "train", "--follow")
    assert code == EXIT_CODES["ok"]
    assert job["model"] == "tiny-random"
    assert SessionState.load(state).local_model == "tiny-random"


def test_the_default_local_model_is_saved_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The backend's default (here from the environment) is what the session trains: saved, so
    # a later run with another default carries on with the same model.
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_MODEL", "tiny-random")
    state = tmp_path / "s.json"
    with FineTuneSession(
        "local", model="gpt-4o-mini", local_data_dir=tmp_path / "data", state_path=state
    ) as session:
        session.save()
    assert SessionState.load(state).local_model == "tiny-random"


def test_another_local_model_is_refused_naming_both(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "s.json"
    folder = tmp_path / "data"
    SessionState(
        backend="local",
        local_data_dir=str(folder),
        base_model="gpt-4o-mini",
        local_model="tiny-random",
        job_id="ftjob-keep",
    ).save(state)
    before = state.read_bytes()
    for twin in (FineTuneSession, AsyncFineTuneSession):
        with pytest.raises(SessionError) as info:
            twin(
                "local",
                local_model="smollm2-135m-instruct",
                local_data_dir=folder,
                state_path=state,
            )
        assert "'tiny-random'" in str(info.value)
        assert "'smollm2-135m-instruct'" in str(info.value)
        with pytest.raises(SessionError, match=r"'tiny-random'.*'smollm2-135m-instruct'"):
            twin.resume(state, local_model="smollm2-135m-instruct")

    code, _, err = run(
        capsys, "--local-model", "smollm2-135m-instruct", "--state", str(state), "status"
    )
    assert code == EXIT_CODES["usage"]
    assert "'tiny-random'" in err
    assert "'smollm2-135m-instruct'" in err
    assert "--local-model" in err  # the CLI's words, not the Python argument
    assert "--state" in err
    assert state.read_bytes() == before
    assert not folder.exists()  # refused before a backend was started there


def test_a_later_command_never_changes_the_base_model(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    state = tmp_path / "s.json"
    saved = SessionState(backend="custom", base_url=UNREACHABLE + "/", base_model="gpt-4o-mini")
    saved.training_file_id = "file-1"
    saved.save(state)
    before = state.read_bytes()
    for twin in (FineTuneSession, AsyncFineTuneSession):
        with pytest.raises(SessionError, match=r"'gpt-4o-mini'.*'gpt-4\.1-mini'"):
            twin.resume(state, api_key="k", model="gpt-4.1-mini")
    code, _, err = run(capsys, "--state", str(state), "train", "--model", "gpt-4.1-mini")
    assert code == EXIT_CODES["usage"]
    assert "'gpt-4o-mini'" in err
    assert "'gpt-4.1-mini'" in err
    assert "--model" in err
    assert state.read_bytes() == before
    # The same model (its snapshot name) carries on, under the name saved.
    session = FineTuneSession.resume(state, model="gpt-4o-mini-2024-07-18")
    assert session.state.base_model == "gpt-4o-mini"
    session.close()
