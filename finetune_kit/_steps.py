"""The sync and async drivers of step generators: pure decisions, carried out by thin loops.

A step generator holds a service's decisions and does no I/O itself: it yields an *action* (look
a file up, send it, sleep...) and is sent back the action's result. :func:`run_steps` and
:func:`arun_steps` carry the actions out, one with plain calls, the other awaiting them, so the
sync and async twins of a service decide identically (tenacity's ``iter()`` driven by
``Retrying`` and ``AsyncRetrying``; :func:`finetune_kit.jobs.following.follow_steps` is the same
idea for a generator that also reports updates to its caller).

An action that raises has its exception thrown into the generator at the ``yield``, so a
decision about a failure (a best-effort lookup that may fail) is taken there too; one the
generator does not catch comes out of the driver unchanged. Ctrl-C and a cancelled task are
thrown in too, so the generator's ``finally`` blocks run then, as a plain function's would.

Examples:
    >>> def steps():
    ...     total = yield 2
    ...     try:
    ...         yield 0
    ...     except ZeroDivisionError:
    ...         total += 1
    ...     return total
    >>> run_steps(steps(), lambda n: 10 // n)
    6
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Sleep", "arun_steps", "run_steps"]

A = TypeVar("A")
R = TypeVar("R")


@dataclass(frozen=True)
class Sleep:
    """The action every poller shares: wait, on the policy's sleep, before looking again."""

    seconds: float


def run_steps(steps: Generator[A, Any, R], act: Callable[[A], Any]) -> R:
    """Carry out every action a step generator yields, with plain calls.

    Args:
        steps: The generator of actions.
        act: Carries one action out and returns its result.

    Returns:
        The generator's return value.
    """
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            action = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]  # StopIteration.value is Any
        result, error = None, None
        try:
            result = act(action)
        except BaseException as exc:  # handed to the generator, which decides
            error = exc


async def arun_steps(steps: Generator[A, Any, R], act: Callable[[A], Awaitable[Any]]) -> R:
    """Carry out every action a step generator yields, awaiting each one.

    Args:
        steps: The generator of actions.
        act: Coroutine function carrying one action out and returning its result.

    Returns:
        The generator's return value.
    """
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            action = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]  # StopIteration.value is Any
        result, error = None, None
        try:
            result = await act(action)
        except BaseException as exc:  # handed to the generator, which decides
            error = exc
