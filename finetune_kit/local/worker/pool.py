"""Starts, watches and stops the server's worker processes.

One worker process per concurrent job (``max_concurrent_jobs``, 1 by default); the others wait
in ``queued``. A worker that dies is replaced, and the job it held goes back to the queue to
resume from its last checkpoint (a job whose worker dies three times fails). Workers that keep
dying (five restarts within a minute: a broken install or data folder) are started again after
growing pauses, up to five minutes, and every queued job gets a ``warn`` event saying why it
waits; once the cause is fixed, the next attempt trains the queue.

On a machine with several GPUs each worker is given one (``CUDA_VISIBLE_DEVICES``), the GPUs in
turn, so jobs train one per GPU; a replaced worker gets the GPU of the one it replaces (see
``finetune_kit.local.engine.device``).

Example:
    >>> import tempfile, pathlib
    >>> from finetune_kit.local.settings import ServerSettings
    >>> from finetune_kit.local.store import Store
    >>> with tempfile.TemporaryDirectory() as d:
    ...     settings = ServerSettings(data_dir=pathlib.Path(d), max_concurrent_jobs=0)
    ...     store = Store(settings.data_dir)
    ...     pool = WorkerPool(settings, store)
    ...     pool.start(); n = len(pool.processes); pool.stop(); store.close()
    >>> n
    0
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO

from ..engine.device import parse_gpus, placement_gpus, requested_device, worker_gpu
from ..settings import ServerSettings
from ..store import Store

__all__ = ["WorkerHealth", "WorkerPool", "worker_environment"]

logger = logging.getLogger("finetune_kit.local.worker")

_RESTART_WINDOW = 60.0
_MAX_RESTARTS = 5
_FIRST_BACKOFF = 2.0
_MAX_BACKOFF = 300.0


# Keys a worker never needs: it trains from the data folder and calls no API.
_SECRET_VARIABLES = frozenset(
    {
        "FINETUNE_KIT_LOCAL_API_KEY",
        "OPENAI_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_AD_TOKEN",
    }
)


def worker_environment(environ: Mapping[str, str], api_key: str | None) -> dict[str, str]:
    """The environment a worker process starts with: the server's, without any API key.

    Drops the variables that hold keys, and any variable whose value is the server's key, under
    whatever name it was passed; the worker's environment is readable by its user (``/proc``),
    and a worker has no use for a key.

    Args:
        environ: The server's environment.
        api_key: The key the server requires, if any.

    Returns:
        A new mapping.

    Example:
        >>> worker_environment({"PATH": "/bin", "FINETUNE_KIT_LOCAL_API_KEY": "k", "X": "k"}, "k")
        {'PATH': '/bin'}
    """
    return {
        name: value
        for name, value in environ.items()
        if name not in _SECRET_VARIABLES and not (api_key and value == api_key)
    }


@dataclass(frozen=True)
class WorkerHealth:
    """What ``/health`` says of the workers.

    Attributes:
        expected: Worker processes configured (``max_concurrent_jobs``).
        alive: Worker processes running now.
        crash_looping: Workers keep dying and one waits out a pause before it is started
            again, or the thread that replaces dead workers has stopped: jobs do not train.
    """

    expected: int
    alive: int
    crash_looping: bool


@dataclass
class _Worker:
    index: int
    token: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    started: float = field(default_factory=time.monotonic)


class WorkerPool:
    """The worker processes of one server.

    Args:
        settings: The server's settings.
        store: The server's store (to requeue the job of a worker that died).
        monitor_interval: Seconds between checks that every worker is alive.
    """

    def __init__(
        self, settings: ServerSettings, store: Store, *, monitor_interval: float = 0.5
    ) -> None:
        self._settings = settings
        self._store = store
        self._interval = monitor_interval
        self._workers: dict[int, _Worker] = {}
        self._restarts: list[float] = []
        # Touched by the monitor thread only: workers waiting out a pause, and the pause level.
        self._due: dict[int, float] = {}
        self._backoffs = 0
        self._outage: int | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self.log_dir = settings.data_dir / "logs"
        self.gpus = placement_gpus(requested_device(settings.device), parse_gpus(settings.gpus))
        """The GPU ids the workers are placed on, in turn (none: no placement)."""

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        """The live worker processes."""
        with self._lock:
            return [w.process for w in self._workers.values()]

    def health(self) -> WorkerHealth:
        """Report the workers: how many run, and whether they keep dying."""
        with self._lock:
            alive = sum(w.process.poll() is None for w in self._workers.values())
        expected = self._settings.max_concurrent_jobs
        # Read from another thread than the monitor's: len() of a dict is one atomic step.
        waiting = len(self._due) > 0
        monitor_gone = (
            expected > 0
            and not self._stopping.is_set()
            and (self._monitor is None or not self._monitor.is_alive())
        )
        return WorkerHealth(expected=expected, alive=alive, crash_looping=waiting or monitor_gone)

    def start(self) -> None:
        """Start every worker and the thread that watches them."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for index in range(self._settings.max_concurrent_jobs):
            self._spawn(index)
        if self._settings.max_concurrent_jobs > 0:
            self._monitor = threading.Thread(
                target=self._watch, name="finetune_kit-local-workers", daemon=True
            )
            self._monitor.start()

    def _spawn(self, index: int) -> None:
        token = f"worker-{index}-{secrets.token_hex(4)}"
        env = worker_environment(os.environ, self._settings.api_key)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        gpu = worker_gpu(index, self.gpus)
        if gpu is not None:
            # The worker sees its one GPU as cuda:0; its jobs say which physical one it is.
            env["CUDA_VISIBLE_DEVICES"] = gpu
        log = open(self.log_dir / f"worker-{index}.log", "ab")  # noqa: SIM115  # lives with the worker
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "finetune_kit.local.worker",
                "--token",
                token,
                "--settings",
                self._settings.worker_json(),
            ],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        logger.debug("started worker %s (pid %s)", token, process.pid)
        with self._lock:
            self._workers[index] = _Worker(index, token, process, log)

    def _watch(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self._check_workers()
            except Exception:
                # This thread is the only one that replaces dead workers: one failed round
                # (a busy database while requeueing) must not end it.
                logger.exception("checking the worker processes failed")

    def _check_workers(self) -> None:
        with self._lock:
            dead = [w for w in self._workers.values() if w.process.poll() is not None]
        for worker in dead:
            if self._stopping.is_set():
                return
            self._replace(worker)
        now = time.monotonic()
        for index, due in list(self._due.items()):
            if now >= due and not self._stopping.is_set():
                # Spawned first: should that fail, the slot stays due and is tried again.
                self._spawn(index)
                del self._due[index]
                self._restarts.append(now)

    def _replace(self, worker: _Worker) -> None:
        code = worker.process.returncode
        requeued = self._store.jobs.requeue_held(worker.token, crashed=True)
        if worker.process.stdin is not None:
            worker.process.stdin.close()
        worker.log.close()
        logger.warning(
            "worker %s exited with code %s; requeued %s; see %s",
            worker.token,
            code,
            requeued or "no job",
            self.log_dir / f"worker-{worker.index}.log",
        )
        now = time.monotonic()
        if now - worker.started >= _RESTART_WINDOW:
            self._backoffs, self._outage = 0, None  # it had been working: a new problem
        self._restarts = [t for t in self._restarts if now - t < _RESTART_WINDOW]
        if self._backoffs == 0 and len(self._restarts) < _MAX_RESTARTS:
            self._restarts.append(now)
            self._spawn(worker.index)
            return
        # Restarting at once would only spin: wait, longer each time, and say so on the queue.
        delay = min(_MAX_BACKOFF, _FIRST_BACKOFF * 2**self._backoffs)
        self._backoffs += 1
        logger.error(
            "workers keep dying (%d restarts in %.0f s); starting worker %d again in %.0f s",
            len(self._restarts),
            _RESTART_WINDOW,
            worker.index,
            delay,
        )
        with self._lock:
            self._workers.pop(worker.index, None)
        self._due[worker.index] = now + delay
        self._tell_the_queue(code, worker.index)

    def _tell_the_queue(self, code: int | None, index: int) -> None:
        """Add a ``warn`` event, once per outage, to every job waiting for a worker."""
        if self._outage is None:
            self._outage = int(time.time())
        message = (
            f"Training is waiting: the worker process stopped {_MAX_RESTARTS} times within "
            f"{_RESTART_WINDOW:.0f} s (last exit code {code}), so the server starts a new one "
            f"after growing pauses (up to {_MAX_BACKOFF / 60:.0f} min). The cause is in "
            f"{self.log_dir / f'worker-{index}.log'}; once it is fixed the queue trains again, "
            "or restart the server."
        )
        try:
            for job_id in self._store.jobs.ids_in_status("queued"):
                self._store.events.add(
                    job_id, f"workers-stopping-{self._outage}", message, level="warn"
                )
        except Exception:  # the store may be what is broken; the log line above still says it
            logger.exception("could not tell the queued jobs that the workers keep dying")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every worker: a running job stops at its next step and returns to the queue.

        Args:
            timeout: Seconds to wait for the workers to stop before killing them.
        """
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(timeout)
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            try:
                assert worker.process.stdin is not None
                worker.process.stdin.write(b"stop\n")
                worker.process.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        for worker in workers:
            if not self._store.jobs.held_by(worker.token):
                # Idle (or still importing torch): nothing to save, no reason to wait for it.
                worker.process.terminate()
        deadline = time.monotonic() + timeout
        for worker in workers:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("worker %s did not stop in time; killing it", worker.token)
                worker.process.kill()
                worker.process.wait()
            worker.log.close()
            self._store.jobs.requeue_held(worker.token)
