"""Retry decisions for plain ``httpx`` calls (the Azure management API), under the shared policy.

The shared :class:`~finetune_kit._retry.RetryPolicy` classifies ``openai`` exceptions. The Azure
deployment helper talks to the ARM control plane with ``httpx`` directly, whose failures are
``httpx`` exceptions; :func:`classify_httpx_error` judges them by the same rules (connection
errors and timeouts, 408/409/429/5xx retried, ``Retry-After`` honoured up to the policy's maximum,
a longer one meaning "do not retry"), reusing the policy's own header parsing.

:func:`with_httpx_classification` plugs it into a given policy: it returns a policy with the same
attempts, deadline, backoff, sleep and clock whose decision asks :func:`classify_httpx_error`
first and leaves every other exception to the given policy's own ``decide``.

Examples:
    >>> import httpx
    >>> request = httpx.Request("GET", "https://management.azure.com/x")
    >>> response = httpx.Response(429, headers={"Retry-After": "3"}, request=request)
    >>> error = httpx.HTTPStatusError("throttled", request=request, response=response)
    >>> classify_httpx_error(error)
    RetryDecision(retry=True, reason='HTTP 429', server_delay=3.0)
"""

from __future__ import annotations

import math

import httpx
import tenacity
from tenacity.wait import wait_base

from ._retry import (
    MAX_RETRY_AFTER,
    RETRYABLE_STATUS_CODES,
    RetryDecision,
    RetryPolicy,
    parse_retry_after,
)

__all__ = ["classify_httpx_error", "with_httpx_classification"]


def classify_httpx_error(
    exc: BaseException, *, max_retry_after: float = MAX_RETRY_AFTER, now: float | None = None
) -> RetryDecision | None:
    """Decide whether a failed ``httpx`` call may be retried.

    Timeouts, network errors (connect, read, write, close) and a server closing the connection
    mid-response are retried. An ``httpx.HTTPStatusError`` (from ``raise_for_status``) is judged
    by its status and headers exactly as the shared policy judges an ``openai`` status error:
    ``Retry-After`` longer than ``max_retry_after`` means no retry, ``x-should-retry`` overrides,
    408, 409, 429 and 5xx are retried, other statuses are not. Other ``httpx`` errors (a bad URL,
    an unsupported scheme, a proxy refusing) are not retried.

    Args:
        exc: The exception an attempt raised.
        max_retry_after: The longest server-requested delay honoured, in seconds.
        now: The current unix time, for ``Retry-After`` HTTP dates.

    Returns:
        The decision, or ``None`` when ``exc`` is not an ``httpx`` error (another classifier
        should judge it).
    """
    if isinstance(exc, httpx.TimeoutException):
        return RetryDecision(True, "request timed out")
    if isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError)):
        return RetryDecision(True, "connection error")
    if not isinstance(exc, httpx.HTTPStatusError):
        if isinstance(exc, httpx.HTTPError):
            return RetryDecision(False, f"{type(exc).__name__} is not a retryable HTTP error")
        return None

    status = exc.response.status_code
    label = f"HTTP {status}"
    headers = exc.response.headers
    delay = parse_retry_after(headers, now=now)
    if delay is not None and math.isfinite(delay) and delay > max_retry_after:
        return RetryDecision(
            False,
            f"{label}: Retry-After of {delay:g} s exceeds the maximum of {max_retry_after:g} s",
        )
    server_delay = delay if delay is not None and 0 < delay <= max_retry_after else None
    override = headers.get("x-should-retry")
    if override == "true":
        return RetryDecision(True, f"{label}: x-should-retry is true", server_delay)
    if override == "false":
        return RetryDecision(False, f"{label}: x-should-retry is false")
    if status in RETRYABLE_STATUS_CODES or status >= 500:
        return RetryDecision(True, label, server_delay)
    return RetryDecision(False, f"{label}: a client error, retrying would not change it")


class _BackoffOf(wait_base):
    """The base policy's own backoff (its jitter source included), as a tenacity wait."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return self._policy.backoff(retry_state.attempt_number - 1)


class _HttpxAwarePolicy(RetryPolicy):
    def __init__(self, base: RetryPolicy) -> None:
        super().__init__(
            max_attempts=base.max_attempts,
            deadline=base.deadline,
            initial_delay=base.initial_delay,
            max_delay=base.max_delay,
            jitter=base.jitter,
            max_retry_after=base.max_retry_after,
            wait=base.wait if base.wait is not None else _BackoffOf(base),
            stop=base.stop,
            sleep=base.sleep,
            async_sleep=base.asleep,
            clock=base.clock,
        )
        self.base = base

    def __repr__(self) -> str:
        return f"with_httpx_classification({self.base!r})"

    def decide(self, exc: BaseException) -> RetryDecision:
        decision = classify_httpx_error(exc, max_retry_after=self.max_retry_after)
        return decision if decision is not None else self.base.decide(exc)


def with_httpx_classification(policy: RetryPolicy) -> RetryPolicy:
    """The given policy, also able to judge ``httpx`` errors.

    Attempts, deadline, backoff (with the policy's jitter source), sleep and clock are the
    policy's own, so an injected sleep or clock keeps working; ``openai`` and other exceptions are
    still judged by ``policy.decide``.

    Args:
        policy: The shared retry policy (or a user's configured copy of it).

    Returns:
        A policy to use for ``httpx`` calls.
    """
    if isinstance(policy, _HttpxAwarePolicy):
        return policy
    return _HttpxAwarePolicy(policy)
