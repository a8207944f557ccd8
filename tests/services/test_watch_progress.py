"""The follow progress bar: its time left comes from live steps or the job's estimated_finish."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from finetune_kit.jobs.metrics import MetricPoint
from finetune_kit.jobs.views import StatusChange
from finetune_kit.jobs.watcher import FollowProgress, StepRate


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def point(step: int, total: int = 100) -> MetricPoint:
    return MetricPoint(step=step, total_steps=total, train_loss=1.0 / step)


def shown(progress: FollowProgress) -> str:
    return str(progress._bar)


def remaining(progress: FollowProgress) -> str:
    match = re.search(r"<([^,\]]+)", shown(progress))
    assert match is not None, shown(progress)
    return match.group(1)


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


def replay_history(progress: FollowProgress, clock: Clock, steps: int) -> None:
    """What following a job that already ran shows first: its past steps, in one poll."""
    progress.update(StatusChange(job_id="ftjob-1", status="running"))
    for step in range(1, steps + 1):
        clock.now += 0.001
        progress.update(point(step))
    progress.polled()


def test_replayed_history_gives_no_rate() -> None:
    clock = Clock()
    rate = StepRate(clock)
    for step in range(1, 51):
        clock.now += 0.001
        rate.observe(step)
    rate.polled()
    assert rate.per_second() is None  # 50 steps in 0.05 s is the replay, not the pace
    clock.now += 10
    rate.observe(55)
    assert rate.per_second() == pytest.approx(0.5)  # 5 steps in 10 s, from step 50


def test_no_steps_before_the_first_poll_ends_means_the_next_poll_is_the_base() -> None:
    clock = Clock()
    rate = StepRate(clock)
    rate.polled()  # a poll with no metric: the job is queued
    clock.now = 600  # ten minutes in the queue must not slow the pace
    rate.observe(1)
    rate.polled()
    clock.now = 604
    rate.observe(3)
    assert rate.per_second() == pytest.approx(0.5)


def test_time_left_after_history_counts_live_steps_only(clock: Clock) -> None:
    progress = FollowProgress("ftjob-1", True, clock=clock, wall_clock=lambda: 5e9)
    replay_history(progress, clock, 50)
    assert remaining(progress) == "?"  # tqdm's own average would say seconds
    clock.now += 10
    for step in range(51, 56):
        progress.update(point(step))
    # 5 steps in 10 s: 45 steps left take 90 s.
    assert progress.rate == pytest.approx(0.5, rel=1e-3)
    assert remaining(progress) == "01:30"
    assert "55/100" in shown(progress)
    progress.close()


def test_estimated_finish_wins_when_the_backend_gives_one(clock: Clock) -> None:
    wall = Clock(1_700_000_000.0)
    progress = FollowProgress("ftjob-1", True, clock=clock, wall_clock=wall)
    progress.job(SimpleNamespace(estimated_finish=int(wall.now) + 200))
    replay_history(progress, clock, 60)
    progress.update(point(60))
    assert progress.rate == pytest.approx(40 / 200)
    assert remaining(progress) == "03:20"
    # A finish time already past says nothing: the live pace is used again.
    wall.now += 1000
    progress.update(point(60))
    assert progress.rate is None
    progress.close()


def test_a_disabled_bar_still_tracks_the_rate(clock: Clock) -> None:
    progress = FollowProgress("ftjob-1", False, clock=clock)
    replay_history(progress, clock, 10)
    clock.now += 4
    progress.update(point(12))
    assert progress.rate == pytest.approx(0.5, rel=1e-3)
    progress.close()


def label(progress: FollowProgress) -> str:
    return str(progress._bar.desc).removesuffix(": ")


def test_live_steps_move_a_queued_label_to_running(clock: Clock) -> None:
    progress = FollowProgress("ftjob-1", False, clock=clock)
    progress.update(StatusChange(job_id="ftjob-1", status="queued"))
    progress.polled()
    assert label(progress) == "ftjob-1 queued"
    # The status is looked at every minute at most; steps arrive with every poll.
    clock.now += 5
    progress.update(point(183, 1200))
    assert label(progress) == "ftjob-1 running"
    assert "183/1200" in shown(progress)


def test_history_does_not_move_the_label(clock: Clock) -> None:
    # A job put back in the queue (a server restart) has steps already: replayed in the first
    # poll, they say nothing about now.
    progress = FollowProgress("ftjob-1", False, clock=clock)
    progress.update(StatusChange(job_id="ftjob-1", status="queued"))
    for step in range(1, 6):
        progress.update(point(step))
    assert label(progress) == "ftjob-1 queued"
    progress.polled()
    progress.update(StatusChange(job_id="ftjob-1", status="paused", previous="queued"))
    progress.polled()
    progress.update(point(6))
    assert label(progress) == "ftjob-1 paused"  # only a status before training moves on
