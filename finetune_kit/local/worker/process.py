"""The worker process: claims queued jobs from the shared database and trains them.

Started by the server (``WorkerPool``) as ``python -m finetune_kit.local.worker``; a plain
subprocess rather than ``multiprocessing``, so a user's script is never re-imported in the
child. The worker stops when its standard input says ``stop`` or closes, which also happens
when the server dies: a worker never outlives its server.

Example:
    >>> parse_args(["--token", "w0", "--settings", "{}"]).token
    'w0'
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence

from ..settings import ServerSettings
from ..store import Store

__all__ = ["main", "parse_args", "run_worker"]

logger = logging.getLogger("finetune_kit.local.worker")

IDLE_POLL_SECONDS = 0.2
"""How often an idle worker looks for a queued job."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the worker's command line (``--token``, ``--settings``)."""
    parser = argparse.ArgumentParser(prog="python -m finetune_kit.local.worker")
    parser.add_argument("--token", required=True, help="this worker's identity")
    parser.add_argument("--settings", required=True, help="ServerSettings.worker_json()")
    return parser.parse_args(argv)


def _watch_stdin(stop: threading.Event) -> None:
    try:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
    except (OSError, ValueError):  # pragma: no cover - stdin closed under us
        pass
    stop.set()


def _warm_up() -> None:
    """Import the heavy libraries now, while idle, so the first job does not wait for them."""
    started = time.perf_counter()
    # The noqa: imported for their side effect alone (loaded once, while the worker is idle).
    import peft  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM  # noqa: F401

    logger.debug("worker libraries imported in %.1f s", time.perf_counter() - started)


def run_worker(settings: ServerSettings, token: str, stop: threading.Event) -> None:
    """Train queued jobs until ``stop`` is set.

    Args:
        settings: The server's settings (without its API key).
        token: This worker's identity.
        stop: Set to stop; a running job stops at its next step and returns to the queue.
    """
    from .runner import JobRunner

    # The store first: a data folder the worker cannot use stops it in a second, not after the
    # slow imports, so the pool sees a crash loop at once.
    store = Store(settings.data_dir)
    try:
        if settings.executor == "ray":
            # A bridge to a Ray cluster: it trains nothing here, so it needs no torch.
            from .ray_executor import RayJobRunner

            runner: JobRunner = RayJobRunner(store, settings, token, stop)
        else:
            _warm_up()
            runner = JobRunner(store, settings, token, stop)
        logger.debug("worker %s ready", token)
        while not stop.is_set():
            if not runner.run_next():
                stop.wait(IDLE_POLL_SECONDS)
    finally:
        store.close()
        logger.debug("worker %s stopped", token)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m finetune_kit.local.worker``."""
    args = parse_args(argv)
    settings = ServerSettings.from_worker_json(args.settings)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [" + args.token + "] %(message)s",
    )
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True, name="stdin-watch").start()
    run_worker(settings, args.token, stop)
    return 0
