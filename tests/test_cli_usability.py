"""The first ten minutes at the command line: options where users put them, quiet when asked,
and messages in the command line's own words."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from finetune_kit.cli import EXIT_CODES
from tests.fixtures.cli import run
from tests.fixtures.local_backend import chat_examples, wait_for_job, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import LocalBackend

# `python -m finetune_kit.cli` with Python's own Ctrl-C handler, whatever the parent ignores.
_CLI_WITH_CTRL_C = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('finetune_kit.cli', run_name='__main__', alter_sys=True)"
)


def _common(local_backend: LocalBackend, tmp_path: Path) -> list[str]:
    return [
        "--backend",
        "local",
        "--base-url",
        local_backend.base_url,
        "--state",
        str(tmp_path / "s.json"),
    ]


def test_global_options_work_after_the_command(
    local_backend: LocalBackend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import json

    data = write_jsonl(tmp_path / "train.jsonl", chat_examples(12, topic="options-after"))
    # Everything after the command, as users type it.
    code, out, _ = run(
        capsys, "upload", str(data), "--model", "gpt-4o-mini", "--json", "-q",
        *_common(local_backend, tmp_path),
    )  # fmt: skip
    assert code == EXIT_CODES["ok"]
    assert json.loads(out)["training_file"].startswith("file-")
    # Before the command still works, and an option given after the command wins.
    code, out, _ = run(
        capsys, "--state", str(tmp_path / "other.json"), "status", "--json",
        "--state", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert code == EXIT_CODES["usage"]  # the session has no job yet
    assert json.loads(out)["error"] == "SessionError"


def test_quiet_silences_the_event_lines(
    local_backend: LocalBackend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    common = _common(local_backend, tmp_path)
    data = write_jsonl(tmp_path / "train.jsonl", chat_examples(12, topic="quiet"))
    run(capsys, *common, "upload", str(data), "--model", "gpt-4o-mini")
    code, out, err = run(capsys, *common, "-q", "train", "--epochs", "1", "--follow")
    assert code == EXIT_CODES["ok"]
    assert "succeeded" in out
    assert "Step" not in err
    assert "status:" not in err


def test_errors_name_the_command_lines_flags_and_commands(
    local_backend: LocalBackend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    common = _common(local_backend, tmp_path)
    code, _, err = run(capsys, *common, "train", "--model", "gpt-4o-mini")
    assert code == EXIT_CODES["usage"]
    assert "finetune-kit" in err
    assert "upload FILE" in err
    assert "upload(data)" not in err

    rows: list[Any] = chat_examples(12, topic="words")
    rows[2]["messages"][1]["weight"] = 1
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    code, _, err = run(capsys, *common, "upload", str(bad), "--model", "gpt-4o-mini")
    assert code == EXIT_CODES["data"]
    assert "--force" in err
    assert "--fix" in err
    assert "force=True" not in err
    assert "autofix()" not in err

    good = write_jsonl(tmp_path / "good.jsonl", chat_examples(12, topic="words-good"))
    run(capsys, *common, "upload", str(good), "--model", "gpt-4o-mini")
    code, _, err = run(capsys, *common, "train", "--follow", "--timeout", "0.001")
    assert code == EXIT_CODES["timeout"]
    assert "JobManager" not in err
    state = str(tmp_path / "s.json")
    assert f"--state {state} events" in err
    assert f"--base-url {local_backend.base_url}" in err


def test_ctrl_c_says_once_how_to_carry_on_with_the_same_options(tmp_path: Path) -> None:
    from finetune_kit.local import LocalBackend

    # Slow steps, so the job is still running when the command is interrupted.
    with LocalBackend(
        tmp_path / "data", default_model="tiny-random", training_step_delay=0.5
    ) as backend:
        client = backend.client()
        data = write_jsonl(tmp_path / "t.jsonl", chat_examples(12, topic="ctrl-c"))
        with data.open("rb") as handle:
            uploaded = client.files.create(file=handle, purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            model="gpt-4o-mini", training_file=uploaded.id, hyperparameters={"n_epochs": 20}
        )
        state = tmp_path / "s.json"
        # A test run started in the background (`cmd &` in a script, nohup) hands its
        # children SIGINT ignored, and Python keeps it so: this command must get Ctrl-C as a
        # user at a terminal does.
        argv = [sys.executable, "-c", _CLI_WITH_CTRL_C, "--backend", "local"]
        argv += ["--base-url", backend.base_url, "--state", str(state)]
        argv += ["events", job.id, "--follow"]
        with subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ) as command:
            assert command.stdout is not None
            first = command.stdout.readline()  # following has begun: an event was printed
            assert first, command.stderr.read() if command.stderr else ""
            command.send_signal(signal.SIGINT)
            _, err = command.communicate(timeout=120)
        assert command.returncode == EXIT_CODES["interrupted"]
        assert err.count("Stopped following") == 1, err
        prefix = f"finetune-kit --backend local --base-url {backend.base_url} --state {state}"
        assert f"{prefix} events {job.id} --follow" in err
        assert f"{prefix} cancel {job.id}" in err
        assert "JobManager" not in err
        client.fine_tuning.jobs.cancel(job.id)
        wait_for_job(client, job.id)
        client.close()
