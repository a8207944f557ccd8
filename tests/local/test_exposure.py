"""Who can reach the local backend, and where its key goes.

A server on a non-loopback address is refused without a key unless the user says so
(``allow_no_key=True``, ``--allow-no-key``), and warns loudly with one; ``--api-key none``
means no key, as the help says; the key never reaches the worker processes' environment.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest

from finetune_kit.errors import ConfigurationError
from finetune_kit.local import LocalBackend
from tests.fixtures.cli import run
from tests.fixtures.local_backend import free_port, serve_cli

SECRET = "sk-local-exposure-secret"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_a_non_loopback_address_without_a_key_is_refused(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        LocalBackend(tmp_path, host=host, default_model="tiny-random")
    assert info.value.param == "allow_no_key"
    message = str(info.value)
    assert host in message
    assert "api_key" in message
    assert "allow_no_key=True" in message
    # Said so explicitly: accepted (not started here, so nothing listens without a key).
    LocalBackend(tmp_path, host=host, allow_no_key=True, default_model="tiny-random")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_a_loopback_address_needs_no_key(tmp_path: Path, host: str) -> None:
    LocalBackend(tmp_path, host=host, default_model="tiny-random")


def test_a_non_loopback_address_with_a_key_warns_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="finetune_kit")
    backend = LocalBackend(
        tmp_path,
        host="0.0.0.0",
        api_key=SECRET,
        default_model="tiny-random",
        max_concurrent_jobs=0,
    )
    with backend:
        response = httpx.get(f"http://127.0.0.1:{backend.port}/v1/models")
        assert response.status_code == 401
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    [warning] = [w for w in warnings if "0.0.0.0" in w]
    assert "every machine" in warning
    assert "plain HTTP" in warning
    assert SECRET not in caplog.text


def test_the_cli_refuses_a_non_loopback_address_without_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "local",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
        "--data-dir",
        str(tmp_path / "data"),
        "--model",
        "tiny-random",
    )
    assert code == 2
    assert "--allow-no-key" in err
    assert "--api-key" in err
    assert "allow_no_key=" not in err  # the CLI names its flags, not Python arguments


def test_api_key_none_means_no_key_even_over_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "FINETUNE_KIT_LOCAL_API_KEY": SECRET}
    server, base = serve_cli(tmp_path, "--api-key", "none", env=env)
    try:
        response = httpx.get(base + "/v1/models", timeout=10)
        assert response.status_code == 200, response.text
    finally:
        server.terminate()
        server.wait(30)
        if server.stderr is not None:
            server.stderr.close()


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc (Linux)")
def test_the_key_from_the_environment_never_reaches_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_API_KEY", SECRET)
    monkeypatch.setenv("SOME_OTHER_NAME", SECRET)  # the same key under any name
    with LocalBackend(tmp_path, api_key=SECRET, default_model="tiny-random") as backend:
        [pid] = backend.worker_pids
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert SECRET.encode() not in environ
    assert b"FINETUNE_KIT_LOCAL_API_KEY" not in environ
    assert SECRET.encode() not in cmdline
