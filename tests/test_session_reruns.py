"""Reruns never duplicate work: the same script run again, each time in a new process.

Each run is a real Python process that builds the session of docs/session.md on the local
backend (started in that process, on a new random port each time), uploads the same file and
trains. However many runs, the backend holds one file and one job.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from finetune_kit.cli import EXIT_CODES
from tests.fixtures.cli import run_json
from tests.fixtures.local_backend import chat_examples, write_jsonl

if TYPE_CHECKING:
    import openai

ROOT = Path(__file__).resolve().parent.parent

# The pattern of docs/session.md, with a fast follow so a run takes seconds.
_RUN = textwrap.dedent(
    """
    import json
    from finetune_kit import FineTuneSession, FollowOptions

    with FineTuneSession(
        "local",
        model="gpt-4o-mini",
        state_path="run.json",
        local_model="tiny-random",
        local_data_dir="data",
        progress=False,
        follow_options=FollowOptions(initial_interval=0.1, max_interval=0.5),
    ) as session:
        uploaded = session.upload("train.jsonl")
        job = session.train(n_epochs=1)
        client = session.client
        print(json.dumps({
            "file": uploaded.id,
            "job": job.id,
            "status": job.status,
            "files": [f.id for f in client.files.list(purpose="fine-tune")],
            "jobs": [j.id for j in client.fine_tuning.jobs.list()],
        }))
    """
)


def _run(folder: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _RUN],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_three_runs_in_new_processes_make_one_file_and_one_job(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", chat_examples(12, topic="rerun"))
    first = _run(tmp_path)
    second = _run(tmp_path)
    # The upload cache may be gone (another machine user, a cleaned cache): the session's own
    # state names the file and the content's sha256, which is enough.
    shutil.rmtree(tmp_path / "finetune_kit-cache", ignore_errors=True)
    third = _run(tmp_path)
    assert first["status"] == "succeeded"
    for later in (second, third):
        assert later["file"] == first["file"]
        assert later["job"] == first["job"]
    assert third["files"] == [first["file"]]
    assert third["jobs"] == [first["job"]]


def test_the_cli_upload_twice_sends_the_file_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", chat_examples(12, topic="cli-rerun"))
    common = [
        "--backend",
        "local",
        "--local-model",
        "tiny-random",
        "--local-data-dir",
        str(tmp_path / "data"),
        "--state",
        str(tmp_path / "s.json"),
    ]
    # Each command starts the local backend anew, on another random port.
    code, first = run_json(capsys, *common, "upload", str(data), "--model", "gpt-4o-mini")
    assert code == EXIT_CODES["ok"]
    code, second = run_json(capsys, *common, "upload", str(data))
    assert code == EXIT_CODES["ok"]
    assert second["training_file"] == first["training_file"]
    assert second["reused"] is True


def test_an_uploader_keyed_by_a_stable_backend_id_reuses_across_ports(
    local_backend: Any, client: openai.OpenAI, tmp_path: Path
) -> None:
    from finetune_kit.files import FileUploader

    data = write_jsonl(tmp_path / "t.jsonl", chat_examples(12, topic="backend-id"))
    cache = tmp_path / "uploads.json"
    first = FileUploader(client, cache=cache, progress=False, backend_id="file:///srv/x").upload(
        data
    )
    # The same backend reached by another URL (a new port): the id, not the URL, keys the cache.
    moved = client.with_options(base_url=str(client.base_url).replace("127.0.0.1", "localhost"))
    again = FileUploader(moved, cache=cache, progress=False, backend_id="file:///srv/x").upload(
        data
    )
    assert again.id == first.id
    assert again.reused
