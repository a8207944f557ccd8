"""Following a fine-tuning job: the sync and async drivers of the shared following logic.

:class:`JobWatcher` and :class:`AsyncJobWatcher` carry out what
:func:`finetune_kit._watch.follow_steps` decides (fetch a page of events, look at the job, sleep,
report an update); every request goes through the retry policy, whose ``sleep`` and ``clock`` are
also the ones used between polls (inject them in tests). A progress bar shows the step out of
the total, the training loss and the time left.

Ctrl-C while following leaves the job running on the backend: the watcher prints the exact
commands to follow it again, cancel it or pause it, then re-raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import AsyncGenerator, Generator
from typing import Any

from tqdm.auto import tqdm

from ._retry import DEFAULT_RETRY_POLICY, RetryPolicy, without_client_retries
from ._watch import (
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

__all__ = ["AsyncJobWatcher", "JobWatcher"]

logger = logging.getLogger("finetune_kit.jobs")

_STEP_OF_TOTAL = re.compile(r"\bstep\s+(\d+)\s*/\s*(\d+)", re.IGNORECASE)


class FollowProgress:
    """A tqdm bar fed with follow updates: step of total, loss, ETA, and the status.

    Args:
        job_id: The job, shown in the bar's description.
        enabled: ``True``/``False``, or ``None`` to show it only on a terminal.
    """

    def __init__(self, job_id: str, enabled: bool | None) -> None:
        self._job_id = job_id
        self._bar: Any = tqdm(
            total=None,
            desc=job_id,
            unit="step",
            disable=None if enabled is None else not enabled,
            leave=True,
            dynamic_ncols=True,
        )
        self._total_from_message: int | None = None

    def update(self, update: JobUpdate) -> None:
        """Reflect one update in the bar.

        Args:
            update: An event, metric point or status change.
        """
        bar = self._bar
        if isinstance(update, StatusChange):
            bar.set_description(f"{self._job_id} {update.status}", refresh=True)
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
            postfix = {}
            if update.train_loss is not None:
                postfix["loss"] = f"{update.train_loss:.4f}"
            if update.valid_loss is not None:
                postfix["valid"] = f"{update.valid_loss:.4f}"
            bar.set_postfix(postfix, refresh=False)
            bar.refresh()

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()


def _interrupted(job_id: str) -> None:
    message = resume_instructions(job_id)
    logger.warning("%s", message)
    print(message, file=sys.stderr)


class JobWatcher:
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
        bar = FollowProgress(job_id, self.progress)
        result: Any = None
        try:
            while True:
                try:
                    action = steps.send(result)
                except StopIteration as stop:
                    return stop.value
                result = None
                if isinstance(action, FetchEvents):
                    kwargs: dict[str, Any] = {"limit": action.limit}
                    if action.after is not None:
                        kwargs["after"] = action.after
                    result = self.policy.call(jobs.list_events, job_id, **kwargs)
                elif isinstance(action, FetchJob):
                    result = self.policy.call(jobs.retrieve, job_id)
                elif isinstance(action, Sleep):
                    self.policy.sleep(action.seconds)
                elif isinstance(action, Emit):
                    bar.update(action.update)
                    yield action.update
        except KeyboardInterrupt:
            _interrupted(job_id)
            raise
        finally:
            bar.close()


class AsyncJobWatcher:
    """The async twin of :class:`JobWatcher` (same decisions, same updates).

    Examples:
        >>> watcher = AsyncJobWatcher(async_client)               # doctest: +SKIP
        >>> async for update in watcher.follow("ftjob-abc"):      # doctest: +SKIP
        ...     print(update)
    """

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
        self.last_job: Any = None

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
        bar = FollowProgress(job_id, self.progress)
        result: Any = None
        try:
            while True:
                try:
                    action = steps.send(result)
                except StopIteration as stop:
                    self.last_job = stop.value
                    return
                result = None
                if isinstance(action, FetchEvents):
                    kwargs: dict[str, Any] = {"limit": action.limit}
                    if action.after is not None:
                        kwargs["after"] = action.after
                    result = await self.policy.acall(jobs.list_events, job_id, **kwargs)
                elif isinstance(action, FetchJob):
                    result = await self.policy.acall(jobs.retrieve, job_id)
                elif isinstance(action, Sleep):
                    await self.policy.asleep(action.seconds)
                elif isinstance(action, Emit):
                    bar.update(action.update)
                    yield action.update
        except (KeyboardInterrupt, asyncio.CancelledError):
            _interrupted(job_id)
            raise
        finally:
            bar.close()
