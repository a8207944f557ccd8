"""Running jobs: worker processes that claim queued jobs from the store and train them.

Owns the worker processes' lives: the pool in the server process that starts, watches and
replaces them (``pool``: ``WorkerPool``), the process's own loop (``process``, run as
``python -m finetune_kit.local.worker``), and the runner that trains one job and writes its
events, checkpoints and status to the store (``runner``: ``JobRunner``). A worker is a plain
subprocess talking to the server only through the shared database.

May import: the store, the engine, ``finetune_kit.errors`` and the local backend's shared leaves
(``settings``); never the server or faults (the server imports the pool, not the other way
round). A new way to run a job (another accelerator, a remote runner) starts here.

Example:
    >>> parse_args(["--token", "w0", "--settings", "{}"]).token
    'w0'
"""

from __future__ import annotations

from .pool import WorkerHealth, WorkerPool
from .process import main, parse_args, run_worker

__all__ = ["WorkerHealth", "WorkerPool", "main", "parse_args", "run_worker"]
