from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from finetune_kit.errors import SessionError
from finetune_kit.session.state import SessionState


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "run.json"
    state = SessionState(
        backend="local",
        base_url="http://127.0.0.1:8000/v1",
        base_model="gpt-4o-mini",
        dataset_sha256="ab" * 32,
        training_file_id="file-1",
        job_id="ftjob-1",
    )
    state.save(path)
    loaded = SessionState.load(path)
    assert loaded.model_dump(exclude={"created_at", "updated_at"}) == state.model_dump(
        exclude={"created_at", "updated_at"}
    )
    assert loaded.created_at is not None
    assert loaded.updated_at is not None


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    SessionState(job_id="ftjob-old").save(path)
    SessionState(job_id="ftjob-new").save(path)
    assert sorted(os.listdir(tmp_path)) == ["run.json"]
    assert json.loads(path.read_text())["job_id"] == "ftjob-new"


def test_unknown_key_in_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"job_id": "ftjob-1", "api_key": "sk-secret"}))
    with pytest.raises(SessionError, match=r"run\.json.*api_key") as info:
        SessionState.load(path)
    assert info.value.path == str(path)
    assert "sk-secret" not in str(info.value)


def test_missing_file_says_how_to_start(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="FineTuneSession"):
        SessionState.load(tmp_path / "absent.json")


def test_url_with_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="credentials"):
        SessionState(base_url="https://user:sk-secret@example.com/v1")


def test_newer_state_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(SessionError, match="upgrade"):
        SessionState.load(path)


def test_html_escapes_values() -> None:
    html = SessionState(base_model="<script>x</script>")._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
