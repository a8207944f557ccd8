"""The python grader's sandbox launcher: ``python -I -m finetune_kit.graders._sandbox CONFIG``.

Trusted code, run in a fresh interpreter by ``sandbox.PythonSandbox``. While still single-
threaded it isolates itself as far as this machine allows, then loads the untrusted grader
source and answers grading requests on a private copy of stdin/stdout, one JSON object per line:

1. ``PR_SET_PDEATHSIG``: it dies with the process that started it.
2. ``unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID)``: no network interface but a down
   loopback, and a PID namespace whose first process is the grader: when it dies, the kernel
   kills everything it started, even what left its process group. Falls back to user + network
   namespaces, then to none, where unprivileged user namespaces are blocked.
3. rlimits: address space, CPU seconds, open files, file size; no core dumps.
4. Landlock: read-only access to the interpreter, its packages and system libraries; full access
   to the working folder (a fresh temporary folder); nothing else; no TCP (ABI >= 4); no signals
   to or abstract sockets of processes outside the sandbox (ABI >= 6).

Once isolated it sends ``{"started": true, "layers": {...}}``. The first request is
``{"source": "..."}``, answered ``{"ready": true}`` or ``{"error": "load", "details": "..."}``.
Then each ``{"sample": {...}, "item": {...}}`` is answered ``{"reward": 0.5, "cpu": 1.2}`` or
``{"error": "runtime", "details": "...", "cpu": ...}``. The grader's own prints go nowhere (its
stdout and stderr are /dev/null; a short tail is
kept in error details), so it cannot forge an answer by printing.
"""

from __future__ import annotations

import ctypes
import io
import json
import math
import numbers
import os
import sys
import traceback
from typing import Any

__all__ = ["main"]

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWPID = 0x20000000
_PR_SET_PDEATHSIG = 1
_SIGKILL = 9
_TAIL = 2000


def _pdeathsig(libc: ctypes.CDLL) -> None:
    libc.prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)


def _unshare(libc: ctypes.CDLL) -> tuple[bool, bool]:
    """Enter new user and network (and PID) namespaces; return (namespaces, pid namespace)."""
    for flags, pid in (
        (_CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWPID, True),
        (_CLONE_NEWUSER | _CLONE_NEWNET, False),
    ):
        if libc.unshare(flags) == 0:
            return True, pid
    return False, False


def _rlimits(config: dict[str, Any]) -> bool:
    try:
        import resource
    except ImportError:  # not POSIX
        return False
    limits = (
        (resource.RLIMIT_AS, config["memory_bytes"]),
        (resource.RLIMIT_CPU, config["cpu_seconds"]),
        (resource.RLIMIT_NOFILE, config["open_files"]),
        (resource.RLIMIT_FSIZE, config["file_size_bytes"]),
        (resource.RLIMIT_CORE, 0),
    )
    for which, value in limits:
        _soft, hard = resource.getrlimit(which)
        capped = value if hard == resource.RLIM_INFINITY else min(value, hard)
        # CPU: SIGXCPU at the soft limit says why; SIGKILL a second later if it is ignored.
        ceiling = capped + 1 if which == resource.RLIMIT_CPU and capped == value else capped
        resource.setrlimit(which, (capped, ceiling))
    return True


def _read_paths(config: dict[str, Any]) -> list[str]:
    paths = [
        "/usr",
        "/lib",
        "/lib64",
        "/lib32",
        "/bin",
        "/sbin",
        "/etc/ld.so.cache",
        "/etc/localtime",
        "/etc/passwd",
        "/etc/group",
        "/etc/alternatives",
        "/dev/null",
        "/dev/zero",
        "/dev/urandom",
        "/dev/random",
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
    ]
    paths.extend(config.get("read_paths", []))
    return list(dict.fromkeys(paths))


def _landlock(config: dict[str, Any], workdir: str) -> dict[str, Any]:
    try:
        from finetune_kit.graders import _landlock
    except ImportError:
        return {"landlock_abi": 0}
    if _landlock.abi_version() < 1:
        return {"landlock_abi": 0}
    try:
        result = _landlock.restrict(_read_paths(config), [workdir])
    except OSError as exc:
        return {"landlock_abi": 0, "landlock_error": str(exc)}
    return {
        "landlock_abi": result.abi,
        "landlock_network": result.network,
        "landlock_scopes": result.scopes,
    }


def _send(out: io.BufferedWriter, message: dict[str, Any]) -> None:
    out.write(json.dumps(message).encode() + b"\n")
    out.flush()


def _cpu() -> float:
    try:
        import resource
    except ImportError:
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return float(usage.ru_utime + usage.ru_stime)


def _details(captured: io.StringIO) -> str:
    text = traceback.format_exc()
    # The launcher's own frames say nothing to the grader's author.
    marker = 'File "<grader>"'
    start = text.find(marker)
    if start >= 0:
        text = "Traceback (most recent call last):\n  " + text[start:]
    printed = captured.getvalue()[-_TAIL:]
    if printed:
        text += f"\nOutput before the error:\n{printed}"
    return text[-(2 * _TAIL) :]


def _check_reward(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"grade() returned {type(value).__name__} {value!r:.100}; return a float")
    reward = float(value)
    if not math.isfinite(reward):
        raise ValueError(f"grade() returned {reward}; return a finite float")
    return reward


def _serve(requests: io.BufferedReader, out: io.BufferedWriter, layers: dict[str, Any]) -> None:
    # Isolated: say so (and how) before any untrusted code, so the host can time the grader's
    # own work apart from the interpreter's start.
    _send(out, {"started": True, "layers": layers})
    first = requests.readline()
    if not first:
        return
    source = json.loads(first)["source"]
    captured = io.StringIO()
    sys.stdout = sys.stderr = captured
    namespace: dict[str, Any] = {"__name__": "__grader__", "__builtins__": __builtins__}
    try:
        exec(compile(source, "<grader>", "exec"), namespace)  # running it is the sandbox's purpose
        grade = namespace.get("grade")
        if not callable(grade):
            raise TypeError("the source defines no grade(sample, item) function")
    except BaseException:  # anything the untrusted code raises is its error
        _send(out, {"error": "load", "details": _details(captured), "cpu": _cpu()})
        return
    _send(out, {"ready": True})
    while True:
        line = requests.readline()
        if not line:
            return
        request = json.loads(line)
        captured = io.StringIO()
        sys.stdout = sys.stderr = captured
        try:
            reward = _check_reward(grade(request["sample"], request["item"]))
        except BaseException:  # anything the untrusted code raises is its error
            _send(out, {"error": "runtime", "details": _details(captured), "cpu": _cpu()})
            continue
        _send(out, {"reward": reward, "cpu": _cpu()})


def _become_child(child: int, *closing: io.IOBase) -> None:
    """In the child, return; in the parent, wait for that child (reaping any other) and exit."""
    if child == 0:
        return
    for stream in closing:
        stream.close()
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            # A signal that ended the child shows as 128 + its number, as a shell shows it.
            os._exit(128 - code if code < 0 else code)


def main() -> None:
    """Isolate this process, then serve grading requests (see the module's docstring)."""
    config = json.loads(sys.argv[1])
    # The protocol moves to private descriptors (os.dup's are not inherited by children), and
    # 0, 1, 2 point at /dev/null: nothing the grader prints or reads touches it.
    requests = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    layers: dict[str, Any] = {"empty_environment": not os.environ.keys() - {"LC_CTYPE"}}
    libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
    if libc is not None:
        _pdeathsig(libc)
        namespaces, pid_namespace = _unshare(libc) if config["namespaces"] else (False, False)
    else:
        namespaces = pid_namespace = False
    layers.update(
        user_namespace=namespaces, network_namespace=namespaces, pid_namespace=pid_namespace
    )
    if pid_namespace and libc is not None:
        # A new PID namespace holds this process's children. Its first process is a small init
        # that reaps orphans and ends with the grader, taking everything else in it along; the
        # grader is its child, so it keeps normal signal handling (an init ignores SIGXCPU).
        for _role in ("init", "grader"):
            _become_child(os.fork(), requests, out)
            _pdeathsig(libc)
    layers["rlimits"] = _rlimits(config)
    workdir = os.getcwd()
    layers.update(
        _landlock(config, workdir)
        if config["landlock"] and libc is not None
        else {"landlock_abi": 0}
    )
    _serve(requests, out, layers)


if __name__ == "__main__":
    main()
