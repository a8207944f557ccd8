"""Preflight's multi-process fast path: blocks of lines scanned by a pool of workers.

The parent reads the file in blocks cut at newlines, keeps at most two blocks per worker in
flight (so memory does not grow with the file), and merges the results in line order. Workers
keep their token counter, and so its memory of repeated strings, across blocks.

On Linux, when the calling process runs a single thread, workers are forked after the
encoding is loaded, so its ~40 MB of tables are shared with every worker instead of rebuilt
in each; ``gc.freeze()`` keeps the garbage collector from touching (and so copying) those
shared pages. Elsewhere, or when other threads run (forking a threaded process can deadlock),
workers start with ``forkserver`` or ``spawn`` and load the encoding themselves.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor

from ._scanner import ChunkStats, FileScanner, ScanConfig
from .jsonl import LineChunk
from .tokens import get_encoding

__all__ = ["scan_in_workers", "start_method", "usable_cpus"]

logger = logging.getLogger("finetune_kit.data.preflight")

_worker_scanner: FileScanner | None = None


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return max(1, len(affinity(0)))
    return max(1, os.cpu_count() or 1)


def start_method() -> str:
    """``fork`` when it is safe and cheap (Linux, one thread), else ``forkserver``/``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _init_worker(config: ScanConfig) -> None:
    global _worker_scanner
    _worker_scanner = FileScanner(config)


def _scan_chunk(chunk: LineChunk) -> ChunkStats:
    assert _worker_scanner is not None, "the worker was not initialised"
    return _worker_scanner.scan_chunk(chunk)


def scan_in_workers(
    chunks: Iterable[LineChunk],
    config: ScanConfig,
    workers: int,
    on_result: Callable[[ChunkStats], None],
) -> None:
    """Scan blocks in ``workers`` processes, handing results to ``on_result`` in line order.

    Args:
        chunks: Blocks from ``iter_chunks``, in file order.
        config: What the workers check and count.
        workers: Number of worker processes.
        on_result: Called with each block's statistics, in the blocks' order.
    """
    method = start_method()
    logger.debug("scanning with %d %s workers", workers, method)
    context = multiprocessing.get_context(method)
    frozen = False
    if method == "fork":
        get_encoding(config.encoding)  # loaded once here, shared with every forked worker
        gc.freeze()
        frozen = True
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(config,)
    )
    in_flight: deque[Future[ChunkStats]] = deque()
    limit = 2 * workers
    try:
        for chunk in chunks:
            in_flight.append(pool.submit(_scan_chunk, chunk))
            if frozen:
                # The first submit forked every worker; the parent's GC may run normally again.
                gc.unfreeze()
                frozen = False
            if len(in_flight) >= limit:
                on_result(in_flight.popleft().result())
        while in_flight:
            on_result(in_flight.popleft().result())
    finally:
        if frozen:
            gc.unfreeze()
        pool.shutdown(wait=True, cancel_futures=True)
