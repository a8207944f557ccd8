r"""Run untrusted python grader code in a sandboxed worker process.

:class:`PythonSandbox` starts ``python -I -m finetune_kit.graders._sandbox`` (isolated mode: no
``PYTHON*`` variables, no user site, no current folder on ``sys.path``) with an empty
environment, in a fresh temporary folder, in a new session. The launcher isolates itself with
every layer the machine allows (user, network and PID namespaces; rlimits; Landlock), loads the
grader's source, and grades samples sent to it one at a time. The layers it managed to apply are
reported in :attr:`PythonSandbox.layers`; a layer that is unavailable is skipped, with a warning
logged once per process.

A worker serves one grader only, and is reused for up to ``SandboxLimits.samples_per_worker``
samples (RFT and evaluations grade thousands): module-level state of the grader's code persists
between those samples. A sample that exceeds the wall-clock ``timeout`` kills the worker's
whole process group (and with a PID namespace everything it started); the next sample starts a
fresh worker, as does one after the worker has used half its CPU budget.

Examples:
    >>> source = "def grade(sample, item):\n    return len(sample['output_text']) / 10"
    >>> with PythonSandbox(source) as box:
    ...     box.grade({"output_text": "hello"}, {}).reward
    0.5
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "PythonSandbox",
    "SandboxLayers",
    "SandboxLimits",
    "SandboxOutcome",
    "sandbox_layers",
]

logger = logging.getLogger("finetune_kit")

_MAX_REPLY = 1 << 20
_warned: set[str] = set()


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of a python grader's worker process. The defaults are OpenAI's.

    Attributes:
        timeout: Wall-clock seconds for one ``grade()`` call (and for loading the source).
        memory_bytes: Address space of the worker (``RLIMIT_AS``): 2 GiB, like OpenAI's 2 GB.
        cpu_seconds: CPU seconds of one worker (``RLIMIT_CPU``); a worker that has used half is
            replaced before the next sample.
        file_size_bytes: Largest file the grader may write (``RLIMIT_FSIZE``); not a disk
            quota: many files may add up to more.
        open_files: Open file descriptors (``RLIMIT_NOFILE``).
        samples_per_worker: Samples one worker grades before it is replaced.
        read_paths: Extra files or folders the grader may read (with Landlock), such as an
            ``NLTK_DATA`` folder.
        namespaces: Try user, network and PID namespaces.
        landlock: Try Landlock.
        start_timeout: Wall-clock seconds for a worker's interpreter to start and isolate
            itself, before the grader's source is loaded (not counted in ``timeout``).
    """

    timeout: float = 120.0
    memory_bytes: int = 2 * 1024**3
    cpu_seconds: int = 240
    file_size_bytes: int = 1024**3
    open_files: int = 64
    samples_per_worker: int = 256
    read_paths: tuple[str, ...] = ()
    namespaces: bool = True
    landlock: bool = True
    start_timeout: float = 60.0


@dataclass(frozen=True)
class SandboxLayers:
    """The isolation a worker got (see docs/graders.md for what each layer does and does not do).

    Attributes:
        empty_environment: The worker's environment was empty (no API keys, tokens, paths).
        process_group: The worker leads its own session: a timeout kills its process group.
        rlimits: Memory, CPU, file-size and open-file limits were set.
        user_namespace: It runs in a new user namespace.
        network_namespace: It has no network but a down loopback interface.
        pid_namespace: It is the first process of a PID namespace: everything it starts dies
            with it, and it sees no process outside.
        landlock_abi: The Landlock ABI used; 0 when Landlock was not applied.
        landlock_network: Landlock denies every TCP bind and connect (ABI >= 4).
        landlock_scopes: Landlock denies signals to, and abstract Unix sockets of, processes
            outside the sandbox (ABI >= 6).
    """

    empty_environment: bool = False
    process_group: bool = False
    rlimits: bool = False
    user_namespace: bool = False
    network_namespace: bool = False
    pid_namespace: bool = False
    landlock_abi: int = 0
    landlock_network: bool = False
    landlock_scopes: bool = False

    @property
    def filesystem(self) -> bool:
        """Files outside the allowed paths are unreadable (Landlock)."""
        return self.landlock_abi > 0

    @property
    def network(self) -> bool:
        """No network connection can be made (a network namespace, or Landlock's TCP rules)."""
        return self.network_namespace or self.landlock_network

    def missing(self) -> list[str]:
        """The layers that were not applied, by name."""
        return [
            name
            for name, value in (
                ("empty_environment", self.empty_environment),
                ("rlimits", self.rlimits),
                ("user_namespace", self.user_namespace),
                ("network_namespace", self.network_namespace),
                ("pid_namespace", self.pid_namespace),
                ("landlock", self.landlock_abi > 0),
                ("landlock_network", self.landlock_network),
                ("landlock_scopes", self.landlock_scopes),
            )
            if not value
        ]


@dataclass(frozen=True)
class SandboxOutcome:
    """The result of grading one sample in the sandbox.

    Attributes:
        reward: The float ``grade()`` returned; None on error.
        error: ``"runtime"`` (the grader's code failed: it raised, returned a non-number, ran
            out of memory, was killed), ``"timeout"`` (it did not answer in time) or
            ``"server"`` (the sandbox itself could not run).
        details: A traceback or the reason, for ``metadata.errors``.
        server_error_type: For ``"server"`` errors, a short name of what failed.
    """

    reward: float | None = None
    error: Literal["runtime", "timeout", "server"] | None = None
    details: str | None = None
    server_error_type: str | None = None


class _SandboxStartError(Exception):
    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class _WorkerGoneError(Exception):
    """The worker stopped answering (it exited, timed out, or wrote nonsense)."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    workdir: str
    samples: int = 0
    cpu: float = 0.0
    buffer: bytearray = field(default_factory=bytearray)

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise _WorkerGoneError(f"the grader's process is gone ({exc})") from None

    def receive(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _WorkerGoneError(f"it did not answer within {timeout:g} s", timeout=True)
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                code = self.process.wait()
                raise _WorkerGoneError(_exit_reason(code))
            self.buffer += chunk
            if len(self.buffer) > _MAX_REPLY:
                raise _WorkerGoneError("it wrote more than 1 MiB without a reply")
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer = bytearray(rest)
        try:
            message = json.loads(line)
        except ValueError:
            raise _WorkerGoneError("it wrote something that is not a reply") from None
        if not isinstance(message, dict):
            raise _WorkerGoneError("it wrote something that is not a reply")
        return message

    def kill(self) -> None:
        # The whole session: a grandchild still in the group dies too (with a PID namespace,
        # the kernel also kills the ones that left it).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _exit_reason(code: int) -> str:
    number = -code if code < 0 else code - 128 if code > 128 else 0
    if number:
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        hint = {
            "SIGXCPU": " (its CPU time limit)",
            "SIGKILL": " (killed: past its CPU limit, or by the system's out-of-memory killer)",
            "SIGSEGV": " (a crash)",
            "SIGXFSZ": " (its file size limit)",
        }.get(name, "")
        return f"its process was ended by {name}{hint}"
    return f"its process exited with status {code}"


class PythonSandbox:
    """A sandboxed worker process running one python grader's ``grade(sample, item)``.

    Thread-safe: concurrent :meth:`grade` calls take turns on the one worker. Close it (or use
    it as a context manager) to stop the worker; one left open is stopped when collected.

    Args:
        source: The grader's source, which must define ``grade(sample, item) -> float``.
        limits: The worker's limits.
        python: The interpreter to run it with (``sys.executable`` by default); it must be able
            to import finetune_kit.
    """

    def __init__(
        self, source: str, *, limits: SandboxLimits | None = None, python: str | None = None
    ) -> None:
        self.source = source
        self.limits = limits or SandboxLimits()
        self.python = python or sys.executable
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        self._layers: SandboxLayers | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def layers(self) -> SandboxLayers | None:
        """The isolation the last worker got; None before the first one started."""
        return self._layers

    def grade(self, sample: dict[str, Any], item: dict[str, Any]) -> SandboxOutcome:
        """Grade one sample.

        Args:
            sample: The ``sample`` argument (JSON-serializable).
            item: The ``item`` argument (JSON-serializable).

        Returns:
            The reward, or what went wrong.
        """
        try:
            request = json.loads(json.dumps({"sample": sample, "item": item}))
        except (TypeError, ValueError) as exc:
            return SandboxOutcome(
                error="server",
                details=f"the sample or item is not JSON: {exc}",
                server_error_type="InvalidInput",
            )
        with self._lock:
            try:
                worker = self._ensure_worker()
            except _SandboxStartError as exc:
                return SandboxOutcome(error="server", details=str(exc), server_error_type=exc.kind)
            except _LoadError as exc:
                return SandboxOutcome(
                    error="timeout" if exc.timeout else "runtime", details=str(exc)
                )
            try:
                worker.send(request)
                reply = worker.receive(self.limits.timeout)
            except _WorkerGoneError as exc:
                self._stop()
                if exc.timeout:
                    return SandboxOutcome(
                        error="timeout",
                        details=f"grade() did not return within {self.limits.timeout:g} s "
                        "(wall clock); its process was killed",
                    )
                return SandboxOutcome(error="runtime", details=f"grade() failed: {exc}")
            worker.samples += 1
            worker.cpu = float(reply.get("cpu") or 0.0)
            if (
                worker.samples >= self.limits.samples_per_worker
                or worker.cpu >= self.limits.cpu_seconds / 2
            ):
                self._stop()
            if "reward" in reply and isinstance(reply["reward"], (int, float)):
                return SandboxOutcome(reward=float(reply["reward"]))
            return SandboxOutcome(error="runtime", details=str(reply.get("details") or reply))

    def close(self) -> None:
        """Stop the worker, if one is running, and remove its folder."""
        with self._lock:
            self._stop()

    def __enter__(self) -> PythonSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _stop(self) -> None:
        worker, self._worker = self._worker, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if worker is not None:
            worker.kill()

    def _ensure_worker(self) -> _Worker:
        if self._worker is not None:
            return self._worker
        worker = self._start()
        self._finalizer = weakref.finalize(self, worker.kill)
        layers: SandboxLayers | None = None
        try:
            started = worker.receive(self.limits.start_timeout)
            layers = _layers_from(started.get("layers") or {})
            worker.send({"source": self.source})
            reply = worker.receive(self.limits.timeout)
        except _WorkerGoneError as exc:
            self._finalizer.detach()
            self._finalizer = None
            worker.kill()
            # Past the start, what happens is the source's own doing (its module-level code).
            if layers is not None and exc.timeout:
                raise _LoadError(
                    f"loading the source did not finish within {self.limits.timeout:g} s "
                    "(wall clock); its process was killed",
                    timeout=True,
                ) from None
            if layers is not None:
                raise _LoadError(f"loading the source failed: {exc}") from None
            raise _SandboxStartError(
                f"the sandbox did not start: {exc}", "SandboxStartError"
            ) from None
        if reply.get("error") == "load":
            self._finalizer.detach()
            self._finalizer = None
            worker.kill()
            raise _LoadError(f"loading the source failed:\n{reply.get('details')}")
        self._layers = layers
        _warn_missing(layers)
        self._worker = worker
        return worker

    def _start(self) -> _Worker:
        if not hasattr(os, "killpg"):
            raise _SandboxStartError(
                "python graders need a POSIX system (Linux for the full sandbox)", "Unsupported"
            )
        limits = self.limits
        config = {
            "memory_bytes": limits.memory_bytes,
            "cpu_seconds": limits.cpu_seconds,
            "file_size_bytes": limits.file_size_bytes,
            "open_files": limits.open_files,
            "read_paths": list(limits.read_paths),
            "namespaces": limits.namespaces,
            "landlock": limits.landlock,
        }
        workdir = tempfile.mkdtemp(prefix="finetune_kit-grader-")
        command = [self.python, "-I", "-m", "finetune_kit.graders._sandbox", json.dumps(config)]
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=workdir,
                env={},
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise _SandboxStartError(
                f"the sandbox's interpreter {self.python!r} cannot start: {exc}",
                "SandboxStartError",
            ) from None
        return _Worker(process, workdir)


class _LoadError(Exception):
    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


def _layers_from(reported: dict[str, Any]) -> SandboxLayers:
    return SandboxLayers(
        empty_environment=bool(reported.get("empty_environment")),
        process_group=True,
        rlimits=bool(reported.get("rlimits")),
        user_namespace=bool(reported.get("user_namespace")),
        network_namespace=bool(reported.get("network_namespace")),
        pid_namespace=bool(reported.get("pid_namespace")),
        landlock_abi=int(reported.get("landlock_abi") or 0),
        landlock_network=bool(reported.get("landlock_network")),
        landlock_scopes=bool(reported.get("landlock_scopes")),
    )


def _warn_missing(layers: SandboxLayers) -> None:
    missing = [name for name in layers.missing() if name not in _warned]
    if missing:
        _warned.update(missing)
        logger.warning(
            "python grader sandbox: not available here: %s; graders run without these "
            "layers (see docs/graders.md)",
            ", ".join(missing),
        )


_probed: list[SandboxLayers] = []


def sandbox_layers(limits: SandboxLimits | None = None) -> SandboxLayers:
    """The isolation a python grader gets on this machine (starts a worker once, then cached).

    Args:
        limits: The limits to probe with (default limits when omitted; then cached).

    Returns:
        The layers a worker managed to apply.
    """
    if limits is None and _probed:
        return _probed[0]
    with PythonSandbox("def grade(sample, item):\n    return 0.0\n", limits=limits) as box:
        outcome = box.grade({}, {})
        layers = box.layers
    if layers is None:
        raise RuntimeError(f"the sandbox did not start: {outcome.details}")
    if limits is None:
        _probed.append(layers)
    return layers
