"""Retry decisions for httpx errors (the ARM calls), plugged into the shared policy."""

from __future__ import annotations

import httpx
import httpx2
import openai
import pytest

from finetune_kit._httpx_retry import classify_httpx_error, with_httpx_classification
from finetune_kit._retry import RetryPolicy

REQUEST = httpx.Request("PUT", "https://management.azure.com/subscriptions/s/x")


def status_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    response = httpx.Response(status, headers=headers, request=REQUEST)
    return httpx.HTTPStatusError(f"HTTP {status}", request=REQUEST, response=response)


@pytest.mark.parametrize(
    ("exc", "retry", "delay"),
    [
        (httpx.ConnectError("refused", request=REQUEST), True, None),
        (httpx.ReadTimeout("slow", request=REQUEST), True, None),
        (httpx.ConnectTimeout("slow", request=REQUEST), True, None),
        (httpx.ReadError("reset", request=REQUEST), True, None),
        (httpx.RemoteProtocolError("closed", request=REQUEST), True, None),
        (httpx.UnsupportedProtocol("ftp://"), False, None),
        (status_error(408), True, None),
        (status_error(409), True, None),
        (status_error(429, {"Retry-After": "3"}), True, 3.0),
        (status_error(429, {"retry-after-ms": "250"}), True, 0.25),
        (status_error(503), True, None),
        (status_error(429, {"Retry-After": "121"}), False, None),
        (status_error(500, {"x-should-retry": "false"}), False, None),
        (status_error(400, {"x-should-retry": "true"}), True, None),
        (status_error(400), False, None),
        (status_error(401), False, None),
        (status_error(403), False, None),
        (status_error(404), False, None),
    ],
)
def test_classify_httpx_error(exc: BaseException, retry: bool, delay: float | None) -> None:
    decision = classify_httpx_error(exc)

    assert decision is not None
    assert decision.retry is retry
    assert decision.server_delay == delay


def test_other_exceptions_are_left_to_the_base_policy() -> None:
    assert classify_httpx_error(ValueError("x")) is None
    base = RetryPolicy(max_attempts=4, deadline=30.0, sleep=lambda s: None)
    policy = with_httpx_classification(base)

    assert policy.max_attempts == 4
    assert policy.deadline == 30.0
    assert with_httpx_classification(policy) is policy
    connection = openai.APIConnectionError(request=httpx2.Request("GET", "http://127.0.0.1/"))
    assert policy.decide(connection).retry
    assert not policy.decide(ValueError("x")).retry
    assert policy.decide(status_error(502)).retry


def test_plugged_policy_retries_httpx_errors_with_the_base_sleep_and_backoff() -> None:
    slept: list[float] = []
    base = RetryPolicy(max_attempts=3, sleep=slept.append, rng=lambda: 0.0)
    errors = [status_error(503), status_error(429, {"Retry-After": "2"})]

    def flaky() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    assert with_httpx_classification(base).call(flaky) == "ok"
    assert slept == [0.5, 2.0]
