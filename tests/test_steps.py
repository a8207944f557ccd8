"""The step drivers: what an action raises is thrown into the generator, Ctrl-C included.

A session's wait() is a step generator whose ``finally`` saves the job's last status; it must
run when Ctrl-C (or a task's cancellation) lands in the middle of an action, as it does in a
plain function.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import pytest

from finetune_kit._steps import arun_steps, run_steps


def _steps(done: list[str]) -> Generator[str, Any, str]:
    try:
        yield "wait"
    finally:
        done.append((yield "refresh"))
    return "unreachable"


def _act(action: str) -> str:
    if action == "wait":
        raise KeyboardInterrupt
    return "refreshed"


def test_ctrl_c_in_an_action_runs_the_generators_finally_then_propagates() -> None:
    done: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_steps(_steps(done), _act)
    assert done == ["refreshed"]


def test_a_cancelled_action_runs_the_generators_finally_then_propagates() -> None:
    done: list[str] = []

    async def act(action: str) -> str:
        if action == "wait":
            raise asyncio.CancelledError
        return "refreshed"

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(arun_steps(_steps(done), act))
    assert done == ["refreshed"]


def test_an_error_the_generator_catches_is_its_decision() -> None:
    def steps() -> Generator[int, Any, str]:
        try:
            yield 0
        except ZeroDivisionError:
            return "decided"
        return "not reached"

    assert run_steps(steps(), lambda n: 1 // n) == "decided"
