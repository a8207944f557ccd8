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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import IO, Any

from ._scanner import ChunkStats, FileScanner, ScanConfig
from .jsonl import LineChunk, read_chunk
from .tokens import get_encoding

__all__ = ["scan_in_workers", "start_method", "usable_cpus"]

logger = logging.getLogger("finetune_kit.data.preflight")

_worker_scanner: FileScanner | None = None
_worker_files: dict[str, IO[bytes]] = {}


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


def _scan_range(path: str, offset: int, length: int) -> ChunkStats:
    # The worker reads its own block: nothing but two integers crosses the pipe.
    assert _worker_scanner is not None, "the worker was not initialised"
    stream = _worker_files.get(path)
    if stream is None:
        stream = _worker_files[path] = open(path, "rb")  # noqa: SIM115 -- kept for the worker's life
    return _worker_scanner.scan_chunk(read_chunk(stream, offset, length))


def scan_in_workers(
    config: ScanConfig,
    workers: int,
    on_result: Callable[[ChunkStats], None],
    *,
    chunks: Iterable[LineChunk] = (),
    path: str | None = None,
    ranges: Iterable[tuple[int, int]] = (),
) -> None:
    """Scan blocks in ``workers`` processes, handing results to ``on_result`` in line order.

    Args:
        config: What the workers check and count.
        workers: Number of worker processes.
        on_result: Called with each block's statistics, in the blocks' order.
        chunks: Blocks from ``iter_chunks``, sent to the workers.
        path: A file whose ``ranges`` the workers read themselves.
        ranges: ``(offset, length)`` ranges of ``path`` from ``iter_chunk_ranges``; their line
            numbers are fixed up here, in order, once the lines before them are counted.
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
    lines_before = 0

    def deliver(stats: ChunkStats) -> None:
        nonlocal lines_before
        if path is not None:
            stats.shift_lines(lines_before)
        lines_before += stats.n_lines
        on_result(stats)

    try:
        jobs: Iterator[tuple[Any, ...]] = (
            ((_scan_range, path, offset, length) for offset, length in ranges)
            if path is not None
            else ((_scan_chunk, chunk) for chunk in chunks)
        )
        for function, *arguments in jobs:
            in_flight.append(pool.submit(function, *arguments))
            if frozen:
                # The first submit forked every worker; the parent's GC may run normally again.
                gc.unfreeze()
                frozen = False
            if len(in_flight) >= limit:
                deliver(in_flight.popleft().result())
        while in_flight:
            deliver(in_flight.popleft().result())
    finally:
        if frozen:
            gc.unfreeze()
        pool.shutdown(wait=True, cancel_futures=True)
