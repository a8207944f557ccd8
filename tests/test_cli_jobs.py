"""The job commands of finetune-kit (attach, status, events, cancel, pause, resume, export...).

Run in-process against local backends over real HTTP: one with no worker, so jobs stay queued
where a test puts them, and the suite's shared one, which trains.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import openai
import pytest

from finetune_kit.cli import EXIT_CODES
from finetune_kit.session.state import SessionState
from tests.fixtures.cli import run, run_json
from tests.fixtures.local_backend import chat_examples, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import LocalBackend


@pytest.fixture(scope="module")
def queue_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    from finetune_kit.local import LocalBackend

    data_dir = tmp_path_factory.mktemp("cli-queue-backend")
    with LocalBackend(data_dir, default_model="tiny-random", max_concurrent_jobs=0) as backend:
        yield backend


def _common(backend: LocalBackend, state: Path) -> list[str]:
    return ["--backend", "local", "--base-url", backend.base_url, "--state", str(state)]


def _queued_session(
    capsys: pytest.CaptureFixture[str], backend: LocalBackend, tmp_path: Path, topic: str
) -> tuple[list[str], str]:
    common = _common(backend, tmp_path / "session.json")
    data = write_jsonl(tmp_path / f"{topic}.jsonl", chat_examples(12, topic=topic))
    code, _ = run_json(capsys, *common, "upload", str(data), "--model", "gpt-4o-mini")
    assert code == EXIT_CODES["ok"]
    code, job = run_json(capsys, *common, "train")
    assert code == EXIT_CODES["ok"]
    assert job["status"] in ("validating_files", "queued")
    return common, job["id"]


def _saved(common: list[str]) -> SessionState:
    return SessionState.load(common[common.index("--state") + 1])


def test_pause_resume_cancel_the_sessions_job(
    queue_backend: LocalBackend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    common, job_id = _queued_session(capsys, queue_backend, tmp_path, "pause")
    for command, status in (("pause", "paused"), ("resume", "queued"), ("cancel", "cancelled")):
        code, job = run_json(capsys, *common, command)
        assert code == EXIT_CODES["ok"]
        assert (job["id"], job["status"]) == (job_id, status)
        assert _saved(common).job_status == status
    code, out, _ = run(capsys, *common, "status")
    assert f"job {job_id}: cancelled" in out
    code, _, err = run(capsys, *common, "cancel")  # already ended: the API refuses
    assert code == EXIT_CODES["api"]
    assert "ended" in err


def test_a_job_id_on_the_command_line_is_looked_up_not_adopted(
    queue_backend: LocalBackend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    common, own_id = _queued_session(capsys, queue_backend, tmp_path, "own-job")
    with queue_backend.client() as client:
        path = write_jsonl(tmp_path / "other.jsonl", chat_examples(12, topic="other-job"))
        other_file = client.files.create(file=path, purpose="fine-tune")
        other = client.fine_tuning.jobs.create(training_file=other_file.id, model="gpt-4o-mini")
    before = _saved(common)

    code, job = run_json(capsys, *common, "status", other.id)
    assert (code, job["id"]) == (EXIT_CODES["ok"], other.id)
    code, job = run_json(capsys, *common, "pause", other.id)
    assert job["status"] == "paused"
    code, events = run_json(capsys, *common, "events", other.id)
    assert events[-1]["message"] == "Fine-tuning job paused"
    code, checkpoints = run_json(capsys, *common, "checkpoints", other.id)
    assert checkpoints == []
    code, exported = run_json(capsys, *common, "export", str(tmp_path / "export"), other.id)
    assert code == EXIT_CODES["ok"]
    assert "session.json" not in exported["files"]  # the session's state is not that job's
    assert json.loads((tmp_path / "export" / "job.json").read_text())["id"] == other.id
    code, job = run_json(capsys, *common, "cancel", other.id)
    assert job["status"] == "cancelled"

    after = _saved(common)
    assert (after.job_id, after.job_status, after.training_file_id) == (
        own_id,
        before.job_status,
        before.training_file_id,
    )
    code, job = run_json(capsys, *common, "status")
    assert job["id"] == own_id

    code, job = run_json(capsys, *common, "attach", other.id)  # the explicit way
    assert code == EXIT_CODES["ok"]
    adopted = _saved(common)
    assert (adopted.job_id, adopted.training_file_id) == (other.id, other_file.id)
    code, job = run_json(capsys, *common, "cancel", own_id)  # leave no job queued
    assert job["status"] == "cancelled"


@pytest.mark.parametrize(
    "command",
    [["events"], ["events", "--follow"], ["status"], ["cancel"], ["checkpoints"], ["export", "x"]],
)
def test_a_job_command_without_a_job_says_what_to_do(
    queue_backend: LocalBackend,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: list[str],
) -> None:
    common = _common(queue_backend, tmp_path / "empty.json")
    code, _, err = run(capsys, *common, *command)
    assert code == EXIT_CODES["usage"]
    assert "this session has no job yet: run 'finetune-kit" in err
    assert "train' or 'finetune-kit" in err
    assert "attach JOB_ID' first" in err
    assert "non-empty" not in err


def test_events_follow_prints_until_the_job_ends(
    local_backend: LocalBackend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    common = _common(local_backend, tmp_path / "session.json")
    data = write_jsonl(tmp_path / "follow.jsonl", chat_examples(12, topic="cli-follow"))
    run_json(capsys, *common, "upload", str(data), "--model", "gpt-4o-mini")
    code, job = run_json(capsys, *common, "train", "--epochs", "1")
    code, out, _ = run(capsys, *common, "-q", "events", "--follow", "--timeout", "120")
    assert code == EXIT_CODES["ok"]
    lines = out.strip().splitlines()
    assert lines[-1].endswith("The job has successfully completed")
    assert any(f"Created fine-tuning job: {job['id']}" in line for line in lines)
    assert _saved(common).job_status == "succeeded"
    code, events = run_json(capsys, *common, "events", "--follow")  # ended: one JSON document
    assert code == EXIT_CODES["ok"]
    assert events[-1]["message"] == "The job has successfully completed"

    # compare and eval against another base model (on Azure: the base model's deployment).
    code, comparison = run_json(capsys, *common, "compare", "hi", "--max-tokens", "2")
    assert comparison["base_model"] == job["model"]
    code, comparison = run_json(
        capsys, *common, "compare", "hi", "--base-model", "gpt-4o-mini", "--max-tokens", "2"
    )
    assert code == EXIT_CODES["ok"]
    assert comparison["base_model"] == "gpt-4o-mini" != job["model"]
    held = write_jsonl(tmp_path / "held.jsonl", chat_examples(2, topic="cli-held"))
    code, report = run_json(
        capsys, *common, "eval", str(held), "--base-model", "gpt-4o-mini", "--max-tokens", "2"
    )
    assert code == EXIT_CODES["ok"]
    assert report["base_model"] == "gpt-4o-mini"


def test_a_url_backend_matches_its_saved_url_with_or_without_the_slash(
    local_backend: LocalBackend,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "not-checked-by-this-server")
    data = write_jsonl(tmp_path / "url.jsonl", chat_examples(12, topic="cli-url"))
    state = ["--state", str(tmp_path / "session.json")]
    url = local_backend.base_url  # http://127.0.0.1:PORT/v1, no trailing slash
    code, first = run_json(
        capsys, "--backend", url, *state, "upload", str(data), "--model", "tiny-random"
    )
    assert code == EXIT_CODES["ok"]
    assert _saved(state).base_url == url + "/"
    for given in (url, url + "/"):
        code, again = run_json(capsys, "--backend", given, *state, "upload", str(data))
        assert code == EXIT_CODES["ok"], again
        assert again["training_file"] == first["training_file"]
    code, _, err = run(capsys, "--backend", url + "/other", *state, "upload", str(data))
    assert code == EXIT_CODES["usage"]
    assert "belongs to a session on the 'custom' backend" in err


def test_local_serve_rejects_a_bad_alias_before_serving(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "local", "serve", "--alias", "no-equals-sign")
    assert code == EXIT_CODES["usage"]
    assert "--alias takes NAME=MODEL, got 'no-equals-sign'" in err


def test_local_serve_takes_aliases_and_the_key_from_the_environment(tmp_path: Path) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "FINETUNE_KIT_LOCAL_API_KEY": "sk-local-test"}
    argv = [sys.executable, "-m", "finetune_kit.cli", "local", "serve", "--port", str(port)]
    argv += ["--data-dir", str(tmp_path / "data"), "--model", "tiny-random"]
    argv += ["--alias", "house-model=tiny-random"]
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as server:
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "local serve did not start in 90 s"
                time.sleep(0.2)
            with openai.OpenAI(base_url=base + "/v1", api_key="sk-local-test") as client:
                assert client.models.retrieve("house-model").id == "house-model"
            with (
                openai.OpenAI(base_url=base + "/v1", api_key="sk-wrong", max_retries=0) as bad,
                pytest.raises(openai.AuthenticationError),
            ):
                bad.models.list()
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        assert "sk-local-test" not in (server.stderr.read() if server.stderr else "")
