"""Following a fine-tuning job: the sync and async drivers of the shared following logic.

:class:`JobWatcher` and :class:`AsyncJobWatcher` carry out what
:func:`finetune_kit.jobs.following.follow_steps` decides (fetch a page of events, look at the job,
sleep, report an update); every request goes through the retry policy, whose ``sleep`` and
``clock`` are also the ones used between polls (inject them in tests). A progress bar shows the
step out of the total, the training loss and the time left (from the job's
``estimated_finish``, else from the pace of the steps made while following: :class:`StepRate`).

Ctrl-C while following leaves the job running on the backend: the watcher prints the exact
commands to follow it again, cancel it or pause it, then re-raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, MutableMapping
from typing import Any

from tqdm.auto import tqdm

from .._retry import DEFAULT_RETRY_POLICY, RetryPolicy, without_client_retries
from .following import (
    Emit,
    FetchEvents,
    FetchJob,
    FollowOptions,
    Sleep,
    follow_steps,
    resume_instructions,
)
from .metrics import MetricPoint
from .views import JobEvent, JobUpdate, StatusChange

__all__ = ["AsyncJobWatcher", "JobWatcher", "interruption_noted"]

logger = logging.getLogger("finetune_kit.jobs")

_STEP_OF_TOTAL = re.compile(r"\bstep\s+(\d+)\s*/\s*(\d+)", re.IGNORECASE)
_BEFORE_TRAINING = frozenset({"validating_files", "queued", "pending"})


class StepRate:
    """The pace of training, measured on live steps only.

    Following a job that already ran replays its history: dozens of steps arrive in the first
    poll, which an average since following began would read as a burst of speed. So the rate
    is measured from the last step of the first poll that brought any, to the latest step seen.

    Args:
        clock: Monotonic clock the steps are timed with.

    Examples:
        >>> now = [0.0]
        >>> rate = StepRate(lambda: now[0])
        >>> for step in range(1, 51):
        ...     rate.observe(step)                # history, all in the first poll
        >>> rate.polled()
        >>> now[0] = 10.0
        >>> rate.observe(55)
        >>> rate.per_second()
        0.5
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._base: tuple[int, float] | None = None
        self._base_open = True
        self._latest: tuple[int, float] | None = None

    def observe(self, step: int) -> None:
        """Record that ``step`` was seen now.

        Args:
            step: The step of a metric point.
        """
        if self._base_open:
            self._base = (step, self._clock())
        else:
            self._latest = (step, self._clock())

    def polled(self) -> None:
        """Say that a poll ended: later steps are live."""
        if self._base is not None:
            self._base_open = False

    def per_second(self) -> float | None:
        """Steps per second since the base step, or ``None`` before two live observations."""
        if self._base is None or self._latest is None:
            return None
        steps = self._latest[0] - self._base[0]
        seconds = self._latest[1] - self._base[1]
        return steps / seconds if steps > 0 and seconds > 0 else None


class _StepBar(tqdm):  # type: ignore[type-arg]  # tqdm's stubs make it generic over iterables
    """A tqdm bar whose rate (hence its time left) is given, not averaged since it started."""

    live_rate: float | None = None

    @property
    def format_dict(self) -> MutableMapping[str, Any]:
        values = super().format_dict
        values["rate"] = self.live_rate
        if self.live_rate is None:
            # tqdm falls back on (n - initial) / elapsed: with initial = n that is 0, shown "?".
            values["initial"] = values.get("n", 0)
        return values


class FollowProgress:
    """A tqdm bar fed with follow updates: step of total, loss, time left, and the status.

    The time left comes from the job's ``estimated_finish`` when the backend gives one, else
    from the pace of the steps that happened while following (see :class:`StepRate`).

    Args:
        job_id: The job, shown in the bar's description.
        enabled: ``True``/``False``, or ``None`` to show it only on a terminal.
        clock: Monotonic clock timing the steps (the retry policy's, in the watchers).
        wall_clock: Unix time, to read ``estimated_finish`` against.
    """

    def __init__(
        self,
        job_id: str,
        enabled: bool | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._job_id = job_id
        self._bar: Any = _StepBar(
            total=None,
            desc=job_id,
            unit="step",
            disable=None if enabled is None else not enabled,
            leave=True,
            dynamic_ncols=True,
        )
        self._total_from_message: int | None = None
        self._steps = StepRate(clock)
        # The label shows the last status seen, which is looked at far less often than steps
        # arrive: a live step proves a job shown as queued is running now.
        self._status: str | None = None
        self._polls = 0
        self._status_poll = 0
        self._wall_clock = wall_clock
        self._estimated_finish: float | None = None

    @property
    def rate(self) -> float | None:
        """Steps per second the time left is computed from (``None``: not known yet)."""
        bar = self._bar
        finish = self._estimated_finish
        if finish is not None and bar.total:
            left = finish - self._wall_clock()
            if left > 0 and bar.total > bar.n:
                return float(bar.total - bar.n) / left
        return self._steps.per_second()

    def job(self, job: Any) -> None:
        """Take what the job itself says (its ``estimated_finish``, unix seconds).

        Args:
            job: The job as retrieved.
        """
        finish = getattr(job, "estimated_finish", None)
        self._estimated_finish = float(finish) if isinstance(finish, (int, float)) else None

    def polled(self) -> None:
        """Say that one poll ended (the steps seen after it are live)."""
        self._steps.polled()
        self._polls += 1

    def update(self, update: JobUpdate) -> None:
        """Reflect one update in the bar.

        Args:
            update: An event, metric point or status change.
        """
        bar = self._bar
        if isinstance(update, StatusChange):
            self._label(update.status)
        elif isinstance(update, JobEvent):
            # Only for the bar's total: message texts are not a contract, so nothing else
            # depends on this.
            match = _STEP_OF_TOTAL.search(update.message)
            if match:
                self._total_from_message = int(match.group(2))
        elif isinstance(update, MetricPoint):
            total = update.total_steps or self._total_from_message
            if total and bar.total != total:
                bar.total = total
            bar.n = update.step
            self._steps.observe(update.step)
            if self._status in _BEFORE_TRAINING and self._polls > self._status_poll:
                # A step after the poll that saw the status (not history replayed with it).
                self._label("running")
            bar.live_rate = self.rate
            postfix = {}
            if update.train_loss is not None:
                postfix["loss"] = f"{update.train_loss:.4f}"
            if update.valid_loss is not None:
                postfix["valid"] = f"{update.valid_loss:.4f}"
            bar.set_postfix(postfix, refresh=False)
            bar.refresh()

    def _label(self, status: str) -> None:
        self._status = status
        self._status_poll = self._polls
        self._bar.set_description(f"{self._job_id} {status}", refresh=True)

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()


def note_interrupted(job_id: str, exc: BaseException) -> None:
    """Say once how to carry on with a job whose following was interrupted.

    Printed, not logged as well: a log handler writing to the same terminal (the CLI's, or
    Python's last-resort handler when none is configured) would show it twice.
    """
    message = resume_instructions(job_id)
    logger.debug("following %s interrupted", job_id)
    print(message, file=sys.stderr, flush=True)
    mark_noted(exc)


def mark_noted(exc: BaseException) -> None:
    """Mark an interruption whose resume instructions were printed (so none prints them again)."""
    exc._finetune_kit_noted = True  # type: ignore[attr-defined]  # a marker on the instance


def was_noted(exc: BaseException) -> bool:
    """Whether the resume instructions of this interruption were printed already."""
    return bool(getattr(exc, "_finetune_kit_noted", False))


@contextlib.contextmanager
def interruption_noted(job_id: Callable[[], str | None]) -> Iterator[None]:
    """Say how to carry on when Ctrl-C stops following a job, once.

    The watcher says it when the interruption reaches it; one that lands while the caller
    handles an update (between two of the watcher's steps, such as the CLI printing an event)
    does not reach it, so it is said here.

    Args:
        job_id: Gives the job being followed, or ``None`` when there is none (yet).

    Examples:
        >>> with interruption_noted(lambda: None):
        ...     pass
    """
    try:
        yield
    except KeyboardInterrupt as exc:
        followed = job_id()
        if followed is not None and not was_noted(exc):
            note_interrupted(followed, exc)
        raise


class _WatcherBase:
    """What both watchers are made of: the client (its own retries off), policy, options, bar."""

    def __init__(
        self,
        client: Any,
        *,
        policy: RetryPolicy | None = None,
        options: FollowOptions | None = None,
        progress: bool | None = None,
    ) -> None:
        self._client = without_client_retries(client)
        self.policy = policy if policy is not None else DEFAULT_RETRY_POLICY
        self.options = options if options is not None else FollowOptions()
        self.progress = progress


class JobWatcher(_WatcherBase):
    """Follows a job over the sync ``openai`` client.

    Args:
        client: An ``openai.OpenAI`` client (used with its own retries off).
        policy: The retry policy; its ``sleep`` and ``clock`` also pace the polling.
        options: Polling settings.
        progress: Show a progress bar (``None``: only on a terminal).

    Examples:
        >>> watcher = JobWatcher(client, options=FollowOptions(2))  # doctest: +SKIP
        >>> for update in watcher.follow("ftjob-abc"):              # doctest: +SKIP
        ...     print(update)
    """

    def follow(
        self, job_id: str, *, timeout: float | None = None
    ) -> Generator[JobUpdate, None, Any]:
        """Yield the job's updates until it reaches a terminal status.

        Args:
            job_id: The job.
            timeout: Give up after this many seconds (``JobTimeoutError``).

        Yields:
            Events (each once, oldest first), metric points, status changes.

        Returns:
            The job in its terminal status (the generator's return value).
        """
        jobs = self._client.fine_tuning.jobs
        steps = follow_steps(job_id, self.options, clock=self.policy.clock, timeout=timeout)
        bar = FollowProgress(job_id, self.progress, clock=self.policy.clock)
        result: Any = None
        interrupted: BaseException | None = None
        try:
            while True:
                try:
                    action = steps.send(result)
                except StopIteration as stop:
                    return stop.value
                result = None
                if isinstance(action, FetchEvents):
                    result = self.policy.call(jobs.list_events, job_id, **action.params())
                elif isinstance(action, FetchJob):
                    result = self.policy.call(jobs.retrieve, job_id)
                    bar.job(result)
                elif isinstance(action, Sleep):
                    bar.polled()
                    self.policy.sleep(action.seconds)
                elif isinstance(action, Emit):
                    bar.update(action.update)
                    yield action.update
        except KeyboardInterrupt as exc:
            interrupted = exc
            raise
        finally:
            bar.close()  # first, so the note is not drawn over by the bar
            if interrupted is not None:
                note_interrupted(job_id, interrupted)


class AsyncJobWatcher(_WatcherBase):
    """The async twin of :class:`JobWatcher` (same decisions, same updates).

    Examples:
        >>> watcher = AsyncJobWatcher(async_client)               # doctest: +SKIP
        >>> async for update in watcher.follow("ftjob-abc"):      # doctest: +SKIP
        ...     print(update)
    """

    last_job: Any = None
    """The job in its terminal status, once :meth:`follow` has ended (per instance)."""

    async def follow(
        self, job_id: str, *, timeout: float | None = None
    ) -> AsyncGenerator[JobUpdate, None]:
        """Yield the job's updates until it reaches a terminal status.

        An async generator cannot return a value, so the terminal job is left in
        :attr:`last_job`.

        Args:
            job_id: The job.
            timeout: Give up after this many seconds (``JobTimeoutError``).

        Yields:
            Events (each once, oldest first), metric points, status changes.
        """
        jobs = self._client.fine_tuning.jobs
        steps = follow_steps(job_id, self.options, clock=self.policy.clock, timeout=timeout)
        bar = FollowProgress(job_id, self.progress, clock=self.policy.clock)
        result: Any = None
        interrupted: BaseException | None = None
        try:
            while True:
                try:
                    action = steps.send(result)
                except StopIteration as stop:
                    self.last_job = stop.value
                    return
                result = None
                if isinstance(action, FetchEvents):
                    result = await self.policy.acall(jobs.list_events, job_id, **action.params())
                elif isinstance(action, FetchJob):
                    result = await self.policy.acall(jobs.retrieve, job_id)
                    bar.job(result)
                elif isinstance(action, Sleep):
                    bar.polled()
                    await self.policy.asleep(action.seconds)
                elif isinstance(action, Emit):
                    bar.update(action.update)
                    yield action.update
        except (KeyboardInterrupt, asyncio.CancelledError) as exc:
            interrupted = exc
            raise
        finally:
            bar.close()
            if interrupted is not None:
                note_interrupted(job_id, interrupted)
