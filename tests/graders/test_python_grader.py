"""python graders: grade() in a sandboxed process; each isolation layer this machine has, proved.

No test here asserts how long anything took: a stopped loop or allocation shows as its error
flag; a killed process shows as gone from /proc (waited for with a generous deadline).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finetune_kit.graders import (
    SandboxLayers,
    SandboxLimits,
    compile_grader,
    run_grader,
    sandbox_layers,
)
from finetune_kit.graders.sandbox import PythonSandbox

LAYERS = sandbox_layers()


def python(source: str, name: str = "py") -> dict[str, Any]:
    return {"type": "python", "name": name, "source": source}


def run(source: str, item: Any = None, *, sample: str = "answer", **limits: Any) -> Any:
    return run_grader(python(source), sample, item, sandbox=SandboxLimits(**limits))


def runtime_error(result: Any) -> str:
    errors = result.metadata.errors
    assert result.reward == 0.0
    assert errors.python_grader_runtime_error, errors
    return str(errors.python_grader_runtime_error_details)


# --- what a grader sees and returns -------------------------------------------------------


def test_grade_gets_the_sample_and_the_item() -> None:
    source = """
def grade(sample, item):
    assert sample["output_json"] == {"city": "Paris"}
    assert sample["choices"][0]["message"]["content"] == sample["output_text"]
    assert sample["output_tools"] == [] and sample["output_audio"] is None
    return 1.0 if sample["output_json"]["city"] == item["answer"] else 0.0
"""
    result = run_grader(python(source), '{"city": "Paris"}', {"answer": "Paris"})
    assert result.reward == 1.0
    assert not result.metadata.errors.has_error
    assert result.metadata.type == "python"


def test_output_json_is_none_when_the_sample_is_not_json() -> None:
    source = "def grade(sample, item):\n    return 1.0 if sample['output_json'] is None else 0.0\n"
    assert run(source, sample="Paris").reward == 1.0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("return 1 / 0", "ZeroDivisionError"),
        ("return 'high'", "grade() returned str 'high'; return a float"),
        ("return True", "grade() returned bool"),
        ("return float('nan')", "grade() returned nan"),
        ("return None", "grade() returned NoneType"),
        ("raise SystemExit(3)", "SystemExit"),
    ],
)
def test_anything_but_a_finite_number_is_a_runtime_error(body: str, words: str) -> None:
    details = runtime_error(run(f"def grade(sample, item):\n    {body}\n"))
    assert words in details


def test_a_traceback_shows_the_graders_own_lines_and_prints() -> None:
    source = "def grade(sample, item):\n    print('looking at', item)\n    return item['x']\n"
    details = runtime_error(run(source, {"y": 1}))
    assert 'File "<grader>", line 3, in grade' in details
    assert "KeyError: 'x'" in details
    assert "looking at {'y': 1}" in details
    assert "_sandbox.py" not in details


def test_source_that_fails_when_loaded_is_a_runtime_error() -> None:
    details = runtime_error(run("import no_such_module_here\ndef grade(s, i):\n    return 1.0\n"))
    assert "loading the source failed" in details
    assert "ModuleNotFoundError" in details


def test_source_that_exits_while_loading_is_a_runtime_error() -> None:
    details = runtime_error(run("import os\nos._exit(4)\ndef grade(s, i):\n    return 1.0\n"))
    assert "loading the source failed: its process exited with status 4" in details


def test_printing_cannot_forge_a_reply() -> None:
    source = """
import os, sys
def grade(sample, item):
    print('{"reward": 1.0}')
    os.write(1, b'{"reward": 1.0}\\n')
    sys.__stdout__.write('{"reward": 1.0}\\n')
    return 0.25
"""
    assert run(source).reward == 0.25


def test_a_compiled_grader_reuses_its_worker_within_samples_per_worker() -> None:
    # Module-level state persists between the samples one worker grades (documented).
    source = (
        "count = 0\ndef grade(sample, item):\n    global count\n    count += 1\n    return count\n"
    )
    grader = compile_grader(python(source), sandbox=SandboxLimits(samples_per_worker=3))
    with grader:
        rewards = [grader.run("x").reward for _ in range(5)]
    assert rewards == [1.0, 2.0, 3.0, 1.0, 2.0]


def test_a_worker_is_replaced_after_a_failure() -> None:
    source = """
import os
def grade(sample, item):
    if sample["output_text"] == "die":
        os._exit(7)
    return 1.0
"""
    with compile_grader(python(source)) as grader:
        died = grader.run("die")
        assert "exited with status 7" in runtime_error(died)
        assert grader.run("live").reward == 1.0


def test_the_interpreter_missing_is_a_server_error() -> None:
    spec = compile_grader(python("def grade(s, i):\n    return 1.0\n")).spec
    with PythonSandbox(spec.source, python="/nonexistent/python3") as box:
        outcome = box.grade({}, {})
    assert outcome.error == "server"
    assert "cannot start" in str(outcome.details)
    from finetune_kit.graders._python import PythonCode

    grader = PythonCode(spec)
    grader._sandbox = PythonSandbox(spec.source, python="/nonexistent/python3")
    result = grader.run("x")
    errors = result.metadata.errors
    assert result.reward == 0.0
    assert errors.python_grader_server_error
    assert errors.python_grader_server_error_type == "SandboxStartError"
    assert not errors.python_grader_runtime_error
    grader.close()


# --- limits -------------------------------------------------------------------------------


def test_an_infinite_loop_is_stopped_by_the_wall_clock_timeout() -> None:
    result = run("def grade(sample, item):\n    while True:\n        pass\n", timeout=1)
    assert "did not return within 1 s" in runtime_error(result)
    assert result.metadata.errors.unresponsive_reward_error


def test_a_slow_interpreter_start_is_not_counted_in_the_graders_timeout(tmp_path: Path) -> None:
    # An interpreter that takes 2 s to start (a loaded machine) and a 1 s grading timeout: the
    # grading must still run. (It was counted, and a busy machine failed quick graders.)
    sleep = shutil.which("sleep")
    slow = tmp_path / "slow-python"
    slow.write_text(f'#!/bin/sh\n{sleep} 2\nexec {sys.executable} "$@"\n', encoding="utf-8")
    slow.chmod(0o755)
    source = "def grade(sample, item):\n    return 1.0\n"
    with PythonSandbox(source, limits=SandboxLimits(timeout=1), python=str(slow)) as box:
        outcome = box.grade({}, {})
    assert outcome.reward == 1.0, outcome


def test_a_sleep_at_load_time_is_stopped_too() -> None:
    result = run("import time\ntime.sleep(3600)\ndef grade(s, i):\n    return 1.0\n", timeout=1)
    assert "loading the source did not finish" in runtime_error(result)
    assert result.metadata.errors.unresponsive_reward_error


@pytest.mark.skipif(not LAYERS.rlimits, reason="no rlimits here")
def test_a_busy_loop_is_stopped_by_the_cpu_limit() -> None:
    result = run("def grade(sample, item):\n    while True:\n        pass\n", cpu_seconds=1)
    assert "SIGXCPU" in runtime_error(result)
    assert not result.metadata.errors.unresponsive_reward_error


@pytest.mark.skipif(not LAYERS.rlimits, reason="no rlimits here")
def test_a_memory_hog_is_stopped() -> None:
    source = "def grade(sample, item):\n    hog = bytearray(1 << 30)\n    return len(hog)\n"
    assert "MemoryError" in runtime_error(run(source, memory_bytes=256 << 20))


@pytest.mark.skipif(not LAYERS.rlimits, reason="no rlimits here")
def test_a_large_file_is_stopped() -> None:
    source = (
        "def grade(sample, item):\n"
        "    with open('big', 'wb') as f:\n"
        "        f.write(b'x' * (8 << 20))\n"
        "    return 1.0\n"
    )
    assert "File too large" in runtime_error(run(source, file_size_bytes=1 << 20))


# --- isolation ----------------------------------------------------------------------------


def test_the_environment_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-test-value")
    source = (
        "import os\ndef grade(sample, item):\n"
        "    return float(len(set(os.environ) - {'LC_CTYPE'}))\n"
    )
    assert run(source).reward == 0.0
    assert LAYERS.empty_environment


def test_the_working_folder_is_fresh_and_writable() -> None:
    source = """
import os
def grade(sample, item):
    assert os.listdir('.') == []
    with open('scratch.txt', 'w') as f:
        f.write('ok')
    return 1.0
"""
    assert run(source).reward == 1.0


READ_SECRET = """
def grade(sample, item):
    with open(item["path"]) as f:
        return float(len(f.read()))
"""


@pytest.fixture
def data_folder(tmp_path: Path) -> Path:
    """A stand-in for the server's data folder, with a secret in it."""
    folder = tmp_path / "local-data"
    folder.mkdir()
    (folder / "secret.txt").write_text("sk-do-not-read", encoding="utf-8")
    return folder


@pytest.mark.skipif(LAYERS.landlock_abi < 1, reason="no Landlock here")
def test_landlock_denies_reading_the_data_folder(data_folder: Path) -> None:
    # Without namespaces, so Landlock alone is what stops it.
    result = run(READ_SECRET, {"path": str(data_folder / "secret.txt")}, namespaces=False)
    assert "PermissionError" in runtime_error(result)


@pytest.mark.skipif(LAYERS.landlock_abi < 1, reason="no Landlock here")
def test_landlock_also_binds_the_programs_a_grader_starts(data_folder: Path) -> None:
    cat = shutil.which("cat")
    assert cat is not None
    source = """
import subprocess
def grade(sample, item):
    done = subprocess.run([item["cat"], item["path"]], capture_output=True)
    return 1.0 if done.returncode != 0 and not done.stdout else 0.0
"""
    item = {"cat": cat, "path": str(data_folder / "secret.txt")}
    assert run(source, item, namespaces=False).reward == 1.0


def test_without_landlock_the_file_is_readable(data_folder: Path) -> None:
    # The control: the same grader reads it when Landlock is off (so the denial above is real).
    result = run(READ_SECRET, {"path": str(data_folder / "secret.txt")}, landlock=False)
    assert result.reward == len("sk-do-not-read")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


CONNECT = """
import socket
import sys
def grade(sample, item):
    socket.create_connection(("127.0.0.1", item["port"]), timeout=5).close()
    return 1.0
"""


def _accepted(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


@pytest.mark.skipif(not LAYERS.network_namespace, reason="no network namespace here")
def test_a_network_namespace_stops_a_connection(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    details = runtime_error(run(CONNECT, {"port": port}, landlock=False))
    assert "unreachable" in details.lower() or "OSError" in details
    assert not _accepted(listener)


@pytest.mark.skipif(not LAYERS.landlock_network, reason="no Landlock TCP rules here")
def test_landlock_stops_a_connection(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    details = runtime_error(run(CONNECT, {"port": port}, namespaces=False))
    assert "PermissionError" in details
    assert not _accepted(listener)


def test_without_network_layers_the_connection_is_made(listener: socket.socket) -> None:
    # The control for the two tests above.
    port = listener.getsockname()[1]
    assert run(CONNECT, {"port": port}, namespaces=False, landlock=False).reward == 1.0
    deadline = time.monotonic() + 30
    while not _accepted(listener):
        assert time.monotonic() < deadline, "the control connection never arrived"
        time.sleep(0.05)


@pytest.mark.skipif(
    not (LAYERS.pid_namespace or LAYERS.landlock_scopes), reason="no PID namespace or scopes"
)
def test_the_server_process_cannot_be_signalled() -> None:
    source = (
        "import os, signal\ndef grade(sample, item):\n    os.kill(item['pid'], 0)\n    return 1.0\n"
    )
    details = runtime_error(run(source, {"pid": os.getpid()}))
    assert "ProcessLookupError" in details or "PermissionError" in details


# --- processes a grader leaves behind -----------------------------------------------------


def _running(token: str) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if token.encode() in cmdline and b"sleep" in cmdline:
                stat = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
                if stat[0] != "Z":
                    return True
    return False


def _gone(token: str) -> bool:
    deadline = time.monotonic() + 60
    while _running(token):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _spawner(*, leave_group: bool, then: str) -> str:
    return f"""
import os, time
def grade(sample, item):
    done, started = os.pipe()  # close-on-exec: the read sees EOF once the exec happened
    if os.fork() == 0:
        {"os.setsid()" if leave_group else "pass"}
        os.execv(item["sleep"], ["sleep", item["token"]])
    os.close(started)
    os.read(done, 1)
    {then}
"""


def _sleep_item() -> dict[str, Any]:
    sleep = shutil.which("sleep")
    assert sleep is not None
    # A unique duration: the test finds this very process in /proc by it.
    return {"sleep": sleep, "token": f"{1000 + uuid.uuid4().int % 10**6 / 10**6:.6f}"}


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_a_grandchild_in_the_process_group_is_killed_on_timeout() -> None:
    item = _sleep_item()
    source = _spawner(leave_group=False, then="time.sleep(3600)")
    result = run(source, item, timeout=3, namespaces=False)
    assert result.metadata.errors.unresponsive_reward_error
    assert _gone(item["token"])


@pytest.mark.skipif(not LAYERS.pid_namespace, reason="no PID namespace here")
def test_a_grandchild_that_left_the_process_group_dies_with_the_pid_namespace() -> None:
    item = _sleep_item()
    with compile_grader(python(_spawner(leave_group=True, then="return 1.0"))) as grader:
        assert grader.run("x", item).reward == 1.0
        assert _running(item["token"])  # alive while the worker is
    assert _gone(item["token"])  # closing the grader killed it


# --- which layers -------------------------------------------------------------------------


def test_layers_are_reported_and_each_can_be_turned_off() -> None:
    assert isinstance(LAYERS, SandboxLayers)
    assert LAYERS.process_group
    none = sandbox_layers(SandboxLimits(namespaces=False, landlock=False))
    assert not none.user_namespace
    assert not none.pid_namespace
    assert none.landlock_abi == 0
    assert {"user_namespace", "landlock"} <= set(none.missing())


def _pids_of(token: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if token.encode() in cmdline and b"sleep" in cmdline:
                pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_without_a_pid_namespace_a_grandchild_that_left_the_group_survives() -> None:
    # The documented limit, and the control for the PID-namespace test above.
    item = _sleep_item()
    with compile_grader(
        python(_spawner(leave_group=True, then="return 1.0")),
        sandbox=SandboxLimits(namespaces=False),
    ) as grader:
        assert grader.run("x", item).reward == 1.0
    try:
        assert _running(item["token"])
    finally:
        for pid in _pids_of(item["token"]):
            os.kill(pid, 9)
    assert _gone(item["token"])
