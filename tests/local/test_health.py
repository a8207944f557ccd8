"""``/health`` reports the workers and the file validator; a degraded server is not "ok".

Each fault is real: a data folder no worker can open (a file where its temporary folder
belongs) makes the workers crash-loop; the validator thread is stopped through its own
``stop()``, as it would be gone after a crash.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from finetune_kit.local import LocalBackend


def _health(backend: LocalBackend) -> httpx.Response:
    return httpx.get(backend.base_url.removesuffix("/v1") + "/health", timeout=10)


def _wait_for_status(backend: LocalBackend, status: str, timeout: float = 120) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = _health(backend)
        if response.json()["status"] == status:
            return response
        if time.monotonic() > deadline:
            pytest.fail(f"/health still says {response.json()} after {timeout} s")
        time.sleep(0.2)


def test_a_healthy_server_reports_its_workers_and_validator(tmp_path: Path) -> None:
    with LocalBackend(tmp_path, default_model="tiny-random") as backend:
        response = _health(backend)
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        assert body["status"] == "ok"
        assert body["workers"] == {"expected": 1, "alive": 1, "crash_looping": False}
        assert body["validator"] == {"alive": True}
        assert body["problems"] == []


def test_crash_looping_workers_make_the_server_degraded(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with LocalBackend(data_dir, default_model="tiny-random") as backend:
        [pid] = backend.worker_pids
        tmp = data_dir / "tmp"
        shutil.rmtree(tmp)
        tmp.write_text("not a folder")
        os.kill(pid, signal.SIGKILL)
        try:
            response = _wait_for_status(backend, "degraded")
        finally:
            tmp.unlink()
            tmp.mkdir()
        assert response.status_code == 503
        body = response.json()
        assert body["workers"]["crash_looping"] is True
        assert body["workers"]["expected"] == 1
        assert body["validator"] == {"alive": True}
        [problem] = body["problems"]
        assert "worker" in problem
        assert "logs" in problem
        # An address of the server's disk is no business of an unauthenticated caller.
        assert str(data_dir) not in response.text


def test_a_dead_validator_makes_the_server_degraded(tmp_path: Path) -> None:
    with LocalBackend(tmp_path, default_model="tiny-random", max_concurrent_jobs=0) as backend:
        assert backend._app is not None
        backend._app.context.validator.stop()
        response = _health(backend)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "degraded"
        assert body["validator"] == {"alive": False}
        assert body["workers"] == {"expected": 0, "alive": 0, "crash_looping": False}
        [problem] = body["problems"]
        assert "validat" in problem
