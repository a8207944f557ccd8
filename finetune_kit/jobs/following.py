"""The pure logic of following a job: event tailing, polling schedule, and the decisions of a tick.

Nothing here does I/O. :func:`follow_steps` is a generator that *asks* for what it needs
(``FetchEvents``, ``FetchJob``, ``Sleep``) and says what to report (``Emit``); the sync and async
watchers only carry those actions out, so both behave identically (the same idea as tenacity's
``iter()``, driven by ``Retrying`` and ``AsyncRetrying``).

Request budget. Each tick makes one request: normally one page of events (newest first); instead,
the job itself when its status may have changed (a ``message`` event arrived since the last look;
``metrics`` events never change the status) or when it has not been looked at for
``status_interval`` seconds. Older event pages are fetched only when a whole page was unseen.
Two ticks make a second request: the first (the job and the history) and the one that sees the
terminal status (the job, then the events written around it). ``final_read_delay`` later, a
last page catches an event written just after the terminal status. So following a job costs
exactly one request per tick (a tick more than there are sleeps), plus those two, plus the older
pages: at most ``duration / initial_interval + events / events_page_size + 3`` requests.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from .._interface import command, in_command, say
from .._steps import Sleep
from ..errors import ConfigurationError, JobTimeoutError
from .metrics import point_from_event
from .views import TERMINAL_STATUSES, JobEvent, JobUpdate, StatusChange

__all__ = [
    "Emit",
    "EventTail",
    "FetchEvents",
    "FetchJob",
    "FollowOptions",
    "Sleep",
    "WatchAction",
    "follow_steps",
    "resume_instructions",
]

logger = logging.getLogger("finetune_kit.jobs")


@dataclass(frozen=True)
class FollowOptions:
    """How a job is polled while it is followed.

    Attributes:
        initial_interval: Seconds between polls while the job makes progress (and at the start).
        max_interval: Cap of the interval; it grows by ``backoff`` while nothing happens.
        backoff: Factor applied to the interval after a tick that saw nothing new.
        events_page_size: Events asked per page (``limit``).
        status_interval: Longest time without looking at the job itself (default: max_interval).
        history: Emit the events that happened before following started (else skip them).
        final_read_delay: Seconds after the terminal status before one last page of events (a
            backend may write its last event just after the status changes); 0: none.

    Examples:
        >>> FollowOptions(initial_interval=2, max_interval=30).status_interval
        30.0
    """

    initial_interval: float = 5.0
    max_interval: float = 60.0
    backoff: float = 1.5
    events_page_size: int = 50
    status_interval: float | None = None
    history: bool = True
    final_read_delay: float = 1.0

    def __post_init__(self) -> None:
        if self.initial_interval <= 0 or self.max_interval < self.initial_interval:
            raise ConfigurationError(
                "initial_interval must be positive and max_interval at least initial_interval "
                f"(got {self.initial_interval}, {self.max_interval})",
                param="initial_interval",
            )
        if self.backoff < 1:
            raise ConfigurationError(f"backoff must be >= 1, got {self.backoff}", param="backoff")
        if not 1 <= self.events_page_size <= 10_000:
            raise ConfigurationError(
                f"events_page_size must be in 1..10000, got {self.events_page_size}",
                param="events_page_size",
            )
        if self.status_interval is None:
            object.__setattr__(self, "status_interval", float(self.max_interval))
        elif self.status_interval <= 0:
            raise ConfigurationError("status_interval must be positive", param="status_interval")
        if self.final_read_delay < 0:
            raise ConfigurationError(
                f"final_read_delay must be >= 0, got {self.final_read_delay}",
                param="final_read_delay",
            )


@dataclass(frozen=True)
class FetchEvents:
    """Fetch one page of the job's events (newest first)."""

    after: str | None
    limit: int

    def params(self) -> dict[str, Any]:
        """The keyword arguments of ``jobs.list_events`` (no ``after`` on the first page)."""
        params: dict[str, Any] = {"limit": self.limit}
        if self.after is not None:
            params["after"] = self.after
        return params


@dataclass(frozen=True)
class FetchJob:
    """Retrieve the job."""


@dataclass(frozen=True)
class Emit:
    """Report an update to the caller."""

    update: JobUpdate


WatchAction: TypeAlias = FetchEvents | FetchJob | Sleep | Emit


class EventTail:
    """Turns newest-first event pages into each event exactly once, oldest first.

    Feed the pages of one poll to :meth:`absorb` (it says when an older page is needed: only when
    the whole page was unseen), then :meth:`drain` the new events in time order.

    Examples:
        >>> tail = EventTail()
        >>> tail.absorb([{"id": "e2", "created_at": 2}, {"id": "e1", "created_at": 1}])
        True
        >>> [e["id"] for e in tail.drain()]
        ['e1', 'e2']
        >>> tail.absorb([{"id": "e3", "created_at": 3}, {"id": "e2", "created_at": 2}])
        False
        >>> [e["id"] for e in tail.drain()]
        ['e3']
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._pending: list[Any] = []
        self._pending_ids: set[str] = set()

    @staticmethod
    def _id(event: Any) -> str:
        return str(event["id"] if isinstance(event, dict) else event.id)

    @staticmethod
    def _created_at(event: Any) -> float:
        value = event.get("created_at") if isinstance(event, dict) else event.created_at
        return float(value) if isinstance(value, (int, float)) else -math.inf

    def absorb(self, page: Sequence[Any]) -> bool:
        """Take one page of events, newest first.

        Args:
            page: The page's events.

        Returns:
            ``True`` when every event of the page was new, so older events may be missing
            (fetch the next page, if the backend says there is one).
        """
        new = 0
        for event in page:
            event_id = self._id(event)
            if event_id in self._seen or event_id in self._pending_ids:
                continue
            self._pending.append(event)
            self._pending_ids.add(event_id)
            new += 1
        return bool(page) and new == len(page)

    def drain(self) -> list[Any]:
        """The new events of this poll, oldest first; they count as seen from now on.

        Returns:
            The events in time order (the pages' order reversed; ``created_at`` breaks none of it
            unless a backend returned them out of order).
        """
        events = list(reversed(self._pending))
        events.sort(key=self._created_at)  # stable: reversed page order is kept for ties
        self._seen.update(self._pending_ids)
        self._pending.clear()
        self._pending_ids.clear()
        return events

    @property
    def seen(self) -> int:
        """How many distinct events were drained so far."""
        return len(self._seen)


def resume_instructions(job_id: str) -> str:
    """What to tell a user who stopped following a job: it goes on, and how to act on it.

    Args:
        job_id: The job.

    Returns:
        A few lines with the exact commands to follow, cancel or pause it: under the
        ``finetune-kit`` command, with the global options that reach the same backend and state.
    """
    if in_command():
        return (
            f"Stopped following {job_id}; the job keeps running on the backend.\n"
            f"  follow it again:  {command(f'events {job_id} --follow')}\n"
            f"  cancel it:        {command(f'cancel {job_id}')}\n"
            f"  pause it:         {command(f'pause {job_id}')}"
        )
    return (
        f"Stopped following {job_id}; the job keeps running on the backend.\n"
        f"  follow it again:  finetune-kit events {job_id} --follow"
        f"   (Python: JobManager(client).wait({job_id!r}))\n"
        f"  cancel it:        finetune-kit cancel {job_id}"
        f"   (Python: client.fine_tuning.jobs.cancel({job_id!r}))\n"
        f"  pause it:         finetune-kit pause {job_id}"
        f"   (Python: client.fine_tuning.jobs.pause({job_id!r}))"
    )


def _read_events(
    tail: EventTail, options: FollowOptions, skip_history: bool
) -> Generator[WatchAction, Any, tuple[int, bool]]:
    """Read the new events (paging back while whole pages are new) and emit each one once.

    Returns:
        How many new events were emitted, and whether one of them was a ``message`` event.
    """
    after: str | None = None
    while True:
        page = yield FetchEvents(after=after, limit=options.events_page_size)
        data = list(page.data)
        whole_page_new = tail.absorb(data)
        if skip_history or not (whole_page_new and getattr(page, "has_more", False)):
            break
        after = EventTail._id(data[-1])
    new_events = tail.drain()
    if skip_history:
        return 0, False
    message_seen = False
    for raw in new_events:
        event = JobEvent.of(raw)
        yield Emit(event)
        point = point_from_event(event)
        if point is not None:
            yield Emit(point)
        if event.type != "metrics":
            message_seen = True
    return len(new_events), message_seen


def follow_steps(
    job_id: str,
    options: FollowOptions,
    *,
    clock: Callable[[], float],
    timeout: float | None = None,
) -> Generator[WatchAction, Any, Any]:
    """The decisions of following a job, as a generator of actions.

    Send the result of each ``FetchEvents`` (a page with ``.data`` and ``.has_more``) and
    ``FetchJob`` (the job) back into the generator; send ``None`` after ``Sleep`` and ``Emit``.

    Args:
        job_id: The job.
        options: Polling settings.
        clock: Monotonic clock (injectable for tests).
        timeout: Give up after this many seconds (``None``: never).

    Returns:
        The job in its terminal status, as the generator's return value.

    Raises:
        JobTimeoutError: ``timeout`` elapsed first (carries the last status seen).
    """
    tail = EventTail()
    status: str | None = None
    start = clock()
    last_look = -math.inf
    look_now = True  # nothing is known yet
    delay = options.initial_interval
    status_interval = float(options.status_interval or options.max_interval)
    first_tick = True
    looked_last_tick = False
    warned: set[str] = set()

    while True:
        progressed: bool | None = None  # None: this tick says nothing about progress
        terminal_job: Any = None
        looked = False
        # Never two looks in a row: a tick that looked is followed by a tick that reads events,
        # so a slow interval (>= status_interval) cannot starve the events.
        due = look_now or clock() - last_look >= status_interval
        if due and (first_tick or not looked_last_tick):
            job = yield FetchJob()
            looked = True
            last_look = clock()
            look_now = False
            if job.status != status:
                change = StatusChange(job_id=job_id, status=job.status, previous=status)
                yield Emit(change)
                logger.debug("job %s is %s", job_id, job.status)
                if not change.known and job.status not in warned:
                    # Without a progress bar nothing else would show it.
                    warned.add(job.status)
                    logger.warning(
                        "job %s reports the status %r, which finetune_kit does not know; "
                        "following goes on until it succeeds, fails or is cancelled",
                        job_id,
                        job.status,
                    )
                status = job.status
                progressed = True
            if status in TERMINAL_STATUSES:
                terminal_job = job
        # A tick that looked at the job makes no second request, except the first tick (the
        # history at once) and the final drain (events written around the terminal status).
        if not looked or first_tick or terminal_job is not None:
            skip_history = first_tick and not options.history
            new_events, message_seen = yield from _read_events(tail, options, skip_history)
            if message_seen:
                look_now = True  # its status may have changed; metrics events never change it
            if progressed is None:
                progressed = new_events > 0
            elif new_events:
                progressed = True
        if terminal_job is not None:
            # A backend may write its last event just after the status changes; read once more,
            # a moment later. A job already over when following began has written them all.
            remaining = math.inf if timeout is None else timeout - (clock() - start)
            settle = min(options.final_read_delay, remaining)
            if not first_tick and settle > 0:
                yield Sleep(settle)
                yield from _read_events(tail, options, skip_history=False)
            return terminal_job
        first_tick = False
        looked_last_tick = looked

        if progressed is True:
            delay = options.initial_interval
        elif progressed is False:
            delay = min(delay * options.backoff, options.max_interval)
        if timeout is not None:
            elapsed = clock() - start
            if elapsed >= timeout:
                again = say(
                    f"Wait again with JobManager(client).wait({job_id!r}), or cancel it.",
                    f"Follow it again with {command(f'events {job_id} --follow')}, or cancel it "
                    f"with {command(f'cancel {job_id}')}.",
                )
                raise JobTimeoutError(
                    f"job {job_id} was still {status!r} after {timeout:g} s; it keeps running. "
                    + again,
                    job_id=job_id,
                    status=status,
                )
            delay = min(delay, timeout - elapsed)
        yield Sleep(delay)
