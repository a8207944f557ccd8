"""The daemon habit: ``finetune-kit local serve`` started once, every command uses it.

A session on ``"local"`` for a data folder that a running ``local serve`` holds talks to that
server (its model already loaded) instead of starting a second backend in its own process, which
the folder's lock would refuse anyway.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from finetune_kit._served import RECORD_NAME, find_served
from finetune_kit.cli import EXIT_CODES
from finetune_kit.errors import SessionError
from finetune_kit.session import FineTuneSession
from finetune_kit.session.state import SessionState
from tests.fixtures.cli import run_json
from tests.fixtures.local_backend import chat_examples, write_jsonl


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """``finetune-kit local serve`` on tiny-random for a data folder, in its own process."""
    data_dir = tmp_path / "served-data"
    port = _free_port()
    argv = [sys.executable, "-m", "finetune_kit.cli", "local", "serve", "--port", str(port)]
    argv += ["--data-dir", str(data_dir), "--model", "tiny-random"]
    env = {k: v for k, v in os.environ.items() if k != "FINETUNE_KIT_LOCAL_API_KEY"}
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as server:
        try:
            deadline = time.monotonic() + 90
            while find_served(data_dir) is None:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "local serve did not start in 90 s"
                time.sleep(0.2)
            yield data_dir, port
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    assert not (data_dir / RECORD_NAME).exists()  # a stopped server withdraws its record


def test_commands_use_the_server_running_for_the_data_folder(
    served: tuple[Path, int], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data_dir, port = served
    url = f"http://127.0.0.1:{port}/v1"
    state = tmp_path / "s.json"
    common = ["--backend", "local", "--local-data-dir", str(data_dir), "--state", str(state)]
    data = write_jsonl(tmp_path / "train.jsonl", chat_examples(12, topic="served"))

    code, uploaded = run_json(capsys, *common, "upload", str(data), "--model", "gpt-4o-mini")
    assert code == EXIT_CODES["ok"], uploaded
    saved = SessionState.load(state)
    assert saved.base_url is not None
    assert saved.base_url.rstrip("/") == url
    assert saved.local_model == "tiny-random"  # the server's model, saved

    code, job = run_json(capsys, "--state", str(state), "-q", "train", "--epochs", "1", "--follow")
    assert code == EXIT_CODES["ok"], job
    assert job["model"] == "tiny-random"
    code, reply = run_json(capsys, "--state", str(state), "chat", "hi", "--max-tokens", "2")
    assert code == EXIT_CODES["ok"], reply
    assert reply["model"] == job["fine_tuned_model"]

    # The same in Python: no backend started in this process.
    with FineTuneSession(
        "local", model="gpt-4o-mini", local_data_dir=data_dir, state_path=tmp_path / "p.json"
    ) as session:
        assert session.local_backend is None
        assert str(session.client.base_url).rstrip("/") == url
        assert [j.id for j in session.client.fine_tuning.jobs.list()] == [job["id"]]

    # A session on another local model is told, not silently given the server's.
    with pytest.raises(SessionError) as info:
        FineTuneSession(
            "local",
            local_model="smollm2-135m-instruct",
            local_data_dir=data_dir,
            state_path=tmp_path / "other.json",
        )
    assert "'tiny-random'" in str(info.value)
    assert "'smollm2-135m-instruct'" in str(info.value)


def test_a_second_serve_for_the_same_folder_is_refused_and_the_record_kept(
    served: tuple[Path, int], tmp_path: Path
) -> None:
    data_dir, port = served
    argv = [sys.executable, "-m", "finetune_kit.cli", "local", "serve"]
    argv += ["--port", str(_free_port()), "--data-dir", str(data_dir), "--model", "tiny-random"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert f"already runs for {data_dir}" in done.stderr
    record = json.loads((data_dir / RECORD_NAME).read_text())
    assert record["url"] == f"http://127.0.0.1:{port}/v1"
    assert "key" not in {k for k in record if k != "api_key_required"}
    httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).raise_for_status()


def test_a_stale_record_is_ignored_and_the_backend_started_in_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # A server killed without cleaning up: its record names a port nobody listens on.
    stale = {
        "url": f"http://127.0.0.1:{_free_port()}/v1",
        "pid": 999999,
        "default_model": "tiny-random",
        "api_key_required": False,
    }
    (data_dir / RECORD_NAME).write_text(json.dumps(stale))
    assert find_served(data_dir) is None
    with FineTuneSession(
        "local", local_model="tiny-random", local_data_dir=data_dir, state_path=None
    ) as session:
        assert session.local_backend is not None
        assert session.client.models.retrieve("tiny-random").id == "tiny-random"
