"""Preflight checks against the model the user works with, never one they did not choose.

``finetune-kit preflight`` used to default to gpt-4o-mini, so from its shutdown day
(2027-01-14) it refused every file for a model nobody asked for. Now it takes the session's
model (from ``--state``), the local backend's own tokenizer on the local backend, or no model at
all: the limits the data has alone, and the report says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune_kit.cli import EXIT_CODES
from finetune_kit.data.dataset import Dataset
from finetune_kit.session import FineTuneSession
from finetune_kit.session.state import SessionState
from tests.fixtures.cli import run, run_json
from tests.fixtures.local_backend import chat_examples, write_jsonl

AFTER_SHUTDOWNS = "2027-02-01"  # after gpt-4o-mini's (2027-01-14) and gpt-4.1-mini's
UNREACHABLE = "http://127.0.0.1:9/v1"


def _codes(report: dict[str, object]) -> set[str]:
    issues = report["issues"]
    assert isinstance(issues, list)
    return {issue["code"] for issue in issues}


def test_without_a_model_the_data_is_checked_alone_and_the_report_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "t.jsonl", chat_examples(12))
    code, report = run_json(
        capsys, "--state", str(tmp_path / "none.json"), "preflight", str(data), "--as-of",
        AFTER_SHUTDOWNS,
    )  # fmt: skip
    assert code == EXIT_CODES["ok"], report
    assert report["model"] is None
    assert "model_shut_down" not in _codes(report)
    assert "no_model" in _codes(report)
    code, out, _ = run(capsys, "--state", str(tmp_path / "none.json"), "preflight", str(data))
    assert "no model" in out


def test_the_sessions_model_and_backend_are_the_default(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "t.jsonl", chat_examples(12))
    # A session on another server speaking the API: its model's limits, not OpenAI's dates.
    custom = tmp_path / "custom.json"
    SessionState(backend="custom", base_url=UNREACHABLE, base_model="gpt-4.1-mini").save(custom)
    code, report = run_json(
        capsys, "--state", str(custom), "preflight", str(data), "--as-of", AFTER_SHUTDOWNS
    )
    assert code == EXIT_CODES["ok"], report
    assert report["model"] == "gpt-4.1-mini"
    assert "model_shut_down" not in _codes(report)
    # On OpenAI the same model's shutdown date counts.
    on_openai = tmp_path / "openai.json"
    SessionState(backend="openai", base_model="gpt-4.1-mini").save(on_openai)
    code, report = run_json(
        capsys, "--state", str(on_openai), "preflight", str(data), "--as-of", AFTER_SHUTDOWNS
    )
    assert code == EXIT_CODES["data"]
    assert report["model"] == "gpt-4.1-mini"
    assert "model_shut_down" in _codes(report)
    # --model still says which, and 'none' none at all.
    code, report = run_json(
        capsys, "--state", str(custom), "preflight", str(data), "--model", "none"
    )
    assert report["model"] is None


def test_on_the_local_backend_the_backends_tokenizer_counts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "t.jsonl", chat_examples(12, topic="local-preflight"))
    state = tmp_path / "local.json"
    common = ["--backend", "local", "--local-model", "tiny-random"]
    common += ["--local-data-dir", str(tmp_path / "data"), "--state", str(state)]
    code, report = run_json(capsys, *common, "preflight", str(data))
    assert code == EXIT_CODES["ok"], report
    assert report["model"] is None  # OpenAI's table does not apply there
    assert report["encoding"] != "o200k_base"  # the base model's own tokenizer counted


def test_a_session_without_a_model_preflights_without_one(tmp_path: Path) -> None:
    session = FineTuneSession(UNREACHABLE, api_key="k", state_path=None)
    report = session.preflight(Dataset.from_dicts(chat_examples(12)))
    assert report.ok
    assert report.model is None
    session.close()
