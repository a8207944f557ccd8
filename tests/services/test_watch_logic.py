"""The pure following logic, driven against a simulated job timeline (no clock is waited on)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from finetune_kit.errors import ConfigurationError, JobTimeoutError
from finetune_kit.jobs.following import (
    Emit,
    EventTail,
    FetchEvents,
    FetchJob,
    FollowOptions,
    Sleep,
    follow_steps,
    resume_instructions,
)
from finetune_kit.jobs.metrics import MetricPoint
from finetune_kit.jobs.views import JobEvent, StatusChange


@dataclass
class SimJob:
    """A job whose events and statuses appear at given times (a test double of the server)."""

    timeline: list[tuple[float, str, Any]]
    now: float = 0.0
    status: str = "validating_files"
    events: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    looked_at: list[tuple[float, str]] = field(default_factory=list)  # (time, status seen)
    slept: list[float] = field(default_factory=list)
    older_pages: int = 0  # event pages asked with `after` (paging back)

    @staticmethod
    def all_event_ids(timeline: list[tuple[float, str, Any]]) -> list[str]:
        """The ids the whole timeline's events get, oldest first (as ``advance`` numbers them)."""
        count = sum(kind == "event" for _, kind, _ in timeline)
        return [f"ev-{number:04d}" for number in range(1, count + 1)]

    def advance(self, now: float) -> None:
        self.now = now
        while self.timeline and self.timeline[0][0] <= now:
            at, kind, payload = self.timeline.pop(0)
            if kind == "status":
                self.status = payload
            else:
                number = len(self.events) + 1
                self.events.append(
                    {"id": f"ev-{number:04d}", "created_at": int(at), "level": "info", **payload}
                )

    def page(self, after: str | None, limit: int) -> SimpleNamespace:
        self.older_pages += after is not None
        newest_first = list(reversed(self.events))
        start = 0
        if after is not None:
            start = next(i for i, e in enumerate(newest_first) if e["id"] == after) + 1
        data = newest_first[start : start + limit]
        return SimpleNamespace(data=data, has_more=start + limit < len(newest_first))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(
    sim: SimJob, options: FollowOptions, timeout: float | None = None
) -> tuple[Any, list[Any], list[str], float]:
    clock = Clock()
    steps: Generator[Any, Any, Any] = follow_steps("ftjob-1", options, clock=clock, timeout=timeout)
    updates: list[Any] = []
    requests: list[str] = []
    result: Any = None
    try:
        while True:
            action = steps.send(result)
            result = None
            sim.advance(clock.now)
            if isinstance(action, FetchEvents):
                requests.append("events")
                result = sim.page(action.after, action.limit)
            elif isinstance(action, FetchJob):
                requests.append("job")
                sim.looked_at.append((clock.now, sim.status))
                result = SimpleNamespace(id="ftjob-1", status=sim.status)
            elif isinstance(action, Sleep):
                assert action.seconds >= 0
                sim.slept.append(action.seconds)
                clock.now += action.seconds
            else:
                assert isinstance(action, Emit)
                updates.append(action.update)
    except StopIteration as stop:
        return stop.value, updates, requests, clock.now


def message(text: str) -> dict[str, Any]:
    return {"message": text, "type": "message", "data": {}}


def metrics(step: int, total: int, loss: float) -> dict[str, Any]:
    return {
        "message": f"Step {step}/{total}: training loss={loss}",
        "type": "metrics",
        "data": {"step": step, "total_steps": total, "train_loss": loss},
    }


def training_timeline(steps: int = 40, step_seconds: float = 1.0) -> list[tuple[float, str, Any]]:
    timeline: list[tuple[float, str, Any]] = [
        (0.0, "event", message("Validating training file")),
        (3.0, "event", message("Files validated, moving job to queued state")),
        (3.0, "status", "queued"),
        (10.0, "status", "running"),
        (10.0, "event", message("Fine-tuning job started")),
    ]
    t = 10.0
    for step in range(1, steps + 1):
        t += step_seconds
        timeline.append((t, "event", metrics(step, steps, round(3.0 / step, 4))))
    timeline += [
        (t + 1, "event", message("New fine-tuned model created")),
        (t + 1, "status", "succeeded"),
        (t + 1.5, "event", message("The job has successfully completed")),
    ]
    return timeline


def test_every_event_once_in_time_order_with_metrics_and_statuses() -> None:
    timeline = training_timeline()
    sim = SimJob(list(timeline))
    # The last read one whole interval after the terminal status, so every sleep is an interval.
    options = FollowOptions(
        initial_interval=2.0, max_interval=20.0, events_page_size=10, final_read_delay=2.0
    )
    job, updates, requests, duration = drive(sim, options)
    assert job.status == "succeeded"
    events = [u for u in updates if isinstance(u, JobEvent)]
    # Against the whole timeline, not what the simulation reached: the completion event is
    # written 0.5 s after the terminal status.
    assert [e.id for e in events] == SimJob.all_event_ids(timeline)
    assert events[-1].message == "The job has successfully completed"
    points = [u for u in updates if isinstance(u, MetricPoint)]
    assert [p.step for p in points] == list(range(1, 41))
    # each metric point follows its own event
    for index, update in enumerate(updates):
        if isinstance(update, MetricPoint):
            previous = updates[index - 1]
            assert isinstance(previous, JobEvent)
            assert previous.data["step"] == update.step
    statuses = [u for u in updates if isinstance(u, StatusChange)]
    assert [s.status for s in statuses] == ["validating_files", "queued", "running", "succeeded"]
    assert statuses[0].previous is None
    assert statuses[-1].terminal
    assert_request_budget(sim, options, requests, duration)


def assert_request_budget(
    sim: SimJob, options: FollowOptions, requests: list[str], duration: float
) -> None:
    """Check the issue's budget, ``duration / interval + events / page``, and its exact slack.

    The formula counts sleeps, and following makes one request per tick, one tick more than
    there are sleeps (the fencepost). Two ticks make a second request: the first (it looks at
    the job *and* reads the history) and the one that sees the terminal status (it looks, then
    drains the events). Older pages come on top, each one after a page of wholly new events.
    So the count is exactly ``sleeps + 3 + older pages``; each sleep is at least
    ``initial_interval`` (no timeout clips one here) and there are at most ``events // page``
    older pages, which bounds it by the formula plus 3, and no less: the formula's own +2 (first
    look, last page) misses the fencepost tick (see the worst case below, where it is reached).
    """
    assert len(requests) == len(sim.slept) + 3 + sim.older_pages, requests
    assert all(seconds >= options.initial_interval for seconds in sim.slept)
    assert sim.older_pages <= len(sim.events) // options.events_page_size
    budget = duration / options.initial_interval + len(sim.events) / options.events_page_size
    assert len(requests) <= budget + 3, (len(requests), budget)


def test_request_budget_worst_case_is_reached() -> None:
    # A step on every tick from the start: the interval never backs off, so every sleep is
    # exactly initial_interval and the bound is met with equality.
    n = 20
    timeline: list[tuple[float, str, Any]] = [(0.0, "status", "running")]
    timeline += [(i + 0.5, "event", metrics(i + 1, n, 1.0)) for i in range(n)]
    timeline += [
        (n + 0.5, "event", message("New fine-tuned model created")),
        (n + 0.5, "status", "succeeded"),
        (n + 1.7, "event", message("The job has successfully completed")),
    ]
    sim = SimJob(list(timeline))
    options = FollowOptions(
        initial_interval=1.0, max_interval=8.0, status_interval=1000, events_page_size=100
    )
    _, updates, requests, duration = drive(sim, options)
    assert [u.id for u in updates if isinstance(u, JobEvent)] == SimJob.all_event_ids(timeline)
    assert_request_budget(sim, options, requests, duration)
    assert len(requests) == duration / options.initial_interval + 3


def test_an_event_written_just_after_the_terminal_status_is_emitted_once() -> None:
    # The status turns terminal at 11.9 and the last event is written at 12.1; the watcher
    # looks at the job at 12.0, between the two.
    timeline: list[tuple[float, str, Any]] = [
        (0.0, "event", message("Validating training file")),
        (0.0, "status", "running"),
    ]
    timeline += [(1.0 + i, "event", metrics(i + 1, 10, 1.0)) for i in range(10)]
    timeline += [
        (11.0, "event", message("New fine-tuned model created")),
        (11.9, "status", "succeeded"),
        (12.1, "event", message("The job has successfully completed")),
    ]
    sim = SimJob(list(timeline))
    options = FollowOptions(initial_interval=1.0, max_interval=8.0, events_page_size=5)
    job, updates, requests, duration = drive(sim, options)
    assert job.status == "succeeded"
    terminal_look = next(at for at, status in sim.looked_at if status == "succeeded")
    assert 11.9 <= terminal_look < 12.1  # the case this test is about
    events = [u for u in updates if isinstance(u, JobEvent)]
    assert [e.id for e in events] == SimJob.all_event_ids(timeline)
    assert events[-1].message == "The job has successfully completed"
    assert_request_budget(sim, options, requests, duration)


def test_history_is_paged_back_when_the_whole_first_page_is_new() -> None:
    sim = SimJob(training_timeline(steps=95))
    sim.advance(10_000)  # the job finished long ago
    options = FollowOptions(initial_interval=1.0, events_page_size=20)
    job, updates, requests, _ = drive(sim, options)
    assert job.status == "succeeded"
    events = [u for u in updates if isinstance(u, JobEvent)]
    assert [e.id for e in events] == [e["id"] for e in sim.events]
    # one look at the job (already over), then ceil(101 / 20) pages, and nothing else
    assert requests == ["job"] + ["events"] * math.ceil(len(sim.events) / 20)


def test_history_false_skips_past_events_with_one_page() -> None:
    sim = SimJob(training_timeline(steps=5))
    sim.advance(12.5)
    options = FollowOptions(initial_interval=1.0, events_page_size=3, history=False)
    _, updates, _, _ = drive(sim, options)
    events = [u for u in updates if isinstance(u, JobEvent)]
    assert events
    assert all(e.created_at >= 13 for e in events)
    assert len({e.id for e in events}) == len(events)


def test_idle_polling_backs_off_to_the_cap() -> None:
    timeline = [(0.0, "event", message("Validating")), (500.0, "status", "cancelled")]
    sim = SimJob(timeline)
    options = FollowOptions(initial_interval=5, max_interval=60, backoff=2, status_interval=60)
    job, _, requests, duration = drive(sim, options)
    assert job.status == "cancelled"
    assert duration >= 500
    assert len(requests) < 30  # 5, 10, 20, 40, 60, 60... not every 5 s (100+)


def test_unknown_and_paused_statuses_are_reported_not_fatal() -> None:
    timeline = [
        (1.0, "status", "paused"),
        (1.0, "event", message("Job paused")),
        (4.0, "status", "compacting_weights"),
        (4.0, "event", message("Something new")),
        (8.0, "status", "succeeded"),
        (8.0, "event", message("done")),
    ]
    _, updates, _, _ = drive(SimJob(timeline), FollowOptions(initial_interval=1, max_interval=4))
    changes = [u for u in updates if isinstance(u, StatusChange)]
    assert [c.status for c in changes] == [
        "validating_files",
        "paused",
        "compacting_weights",
        "succeeded",
    ]
    assert [c.known for c in changes] == [True, True, False, True]


def test_an_unknown_status_is_logged_once_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    timeline = [
        (1.0, "status", "compacting_weights"),
        (1.0, "event", message("Something new")),
        (4.0, "status", "running"),
        (4.0, "event", message("Back to work")),
        (7.0, "status", "compacting_weights"),
        (7.0, "event", message("Something new again")),
        (9.0, "status", "pending"),
        (9.0, "event", message("Pending")),
        (12.0, "status", "succeeded"),
        (12.0, "event", message("done")),
    ]
    with caplog.at_level(logging.WARNING, logger="finetune_kit.jobs"):
        _, updates, _, _ = drive(
            SimJob(timeline), FollowOptions(initial_interval=1, max_interval=2)
        )
    statuses = [u.status for u in updates if isinstance(u, StatusChange)]
    assert statuses.count("compacting_weights") == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per status, and never for a known one (pending)
    assert "'compacting_weights'" in warnings[0].getMessage()
    assert "ftjob-1" in warnings[0].getMessage()


def test_status_is_looked_at_without_events_every_status_interval() -> None:
    # A backend that emits no event when the job ends.
    timeline = [(0.0, "event", message("started")), (30.0, "status", "succeeded")]
    options = FollowOptions(initial_interval=1, max_interval=8, status_interval=10)
    job, _, _, duration = drive(SimJob(timeline), options)
    assert job.status == "succeeded"
    assert duration <= 30 + 10 + 8


def test_timeout_carries_the_last_status() -> None:
    timeline = [(0.0, "status", "running")]
    with pytest.raises(JobTimeoutError) as info:
        drive(SimJob(timeline), FollowOptions(initial_interval=1, max_interval=5), timeout=30)
    assert info.value.status == "running"
    assert info.value.job_id == "ftjob-1"
    assert "wait" in str(info.value)


def test_event_tail_dedups_across_overlapping_pages_and_orders_ties() -> None:
    tail = EventTail()
    assert tail.absorb([{"id": "c", "created_at": 5}, {"id": "b", "created_at": 5}])
    assert not tail.absorb([{"id": "b", "created_at": 5}, {"id": "a", "created_at": 4}])
    assert [e["id"] for e in tail.drain()] == ["a", "b", "c"]
    assert tail.drain() == []
    assert not tail.absorb([])
    assert tail.seen == 3


def test_follow_options_are_checked() -> None:
    with pytest.raises(ConfigurationError):
        FollowOptions(initial_interval=0)
    with pytest.raises(ConfigurationError):
        FollowOptions(initial_interval=10, max_interval=5)
    with pytest.raises(ConfigurationError):
        FollowOptions(events_page_size=0)


def test_resume_instructions_name_the_job() -> None:
    text = resume_instructions("ftjob-xyz")
    assert "keeps running" in text
    assert "client.fine_tuning.jobs.cancel('ftjob-xyz')" in text
    assert "wait('ftjob-xyz')" in text
    assert "finetune-kit events ftjob-xyz --follow" in text
    assert "finetune-kit cancel ftjob-xyz" in text


def test_the_ctrl_c_text_in_the_docs_is_what_the_watcher_prints() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "jobs.md").read_text(encoding="utf-8")
    after = page[page.index("**Ctrl-C**") :]
    shown = re.search(r"```text\n(.*?)\n```", after, re.DOTALL)
    assert shown is not None, "docs/jobs.md lost its Ctrl-C sample"
    job_id = re.search(r"Stopped following (\S+);", shown.group(1))
    assert job_id is not None
    assert shown.group(1) == resume_instructions(job_id.group(1)), (
        "docs/jobs.md's Ctrl-C sample is stale: paste resume_instructions('ftjob-abc')"
    )


def test_slow_polling_does_not_starve_events() -> None:
    # Events 20 s apart: the interval reaches its cap, which is over status_interval, so every
    # tick is due for a look at the job; events must still be read on every other tick.
    timeline: list[tuple[float, str, Any]] = [(0.0, "status", "running")]
    timeline += [(20.0 * i, "event", metrics(i, 5, 1.0 / i)) for i in range(1, 6)]
    timeline += [(101.0, "status", "succeeded")]
    options = FollowOptions(initial_interval=1, max_interval=8, status_interval=2)
    job, updates, requests, _ = drive(SimJob(timeline), options)
    assert job.status == "succeeded"
    assert [u.step for u in updates if isinstance(u, MetricPoint)] == [1, 2, 3, 4, 5]
    assert "job,job" not in ",".join(requests)


def test_the_last_read_after_the_terminal_status_stays_within_the_timeout() -> None:
    timeline: list[tuple[float, str, Any]] = [(0.0, "status", "running")]
    timeline += [(i + 0.5, "event", metrics(i + 1, 9, 1.0)) for i in range(9)]
    timeline += [(9.5, "event", message("done")), (9.5, "status", "succeeded")]
    options = FollowOptions(initial_interval=1.0, max_interval=4.0)
    job, _, requests, duration = drive(SimJob(list(timeline)), options, timeout=10.2)
    assert job.status == "succeeded"
    assert duration <= 10.2
    assert requests[-1] == "events"
