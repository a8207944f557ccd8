"""The shared policy judges httpx errors (the ARM calls) by the same rules as openai's."""

from __future__ import annotations

import httpx
import httpx2
import openai
import pytest

from finetune_kit._retry import RetryPolicy, classify_exception

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
    decision = classify_exception(exc)

    assert decision.retry is retry
    assert decision.server_delay == delay


def test_openai_and_httpx_errors_are_judged_alike() -> None:
    policy = RetryPolicy(max_attempts=4, deadline=30.0, sleep=lambda s: None)
    connection = openai.APIConnectionError(request=httpx2.Request("GET", "http://127.0.0.1/"))
    assert policy.decide(connection).retry
    assert policy.decide(httpx.ConnectError("refused", request=REQUEST)).retry
    assert not policy.decide(ValueError("x")).retry
    assert policy.decide(status_error(502)).retry


def test_policy_retries_httpx_errors_with_its_sleep_and_backoff() -> None:
    slept: list[float] = []
    base = RetryPolicy(max_attempts=3, sleep=slept.append, rng=lambda: 0.0)
    errors = [status_error(503), status_error(429, {"Retry-After": "2"})]

    def flaky() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    assert base.call(flaky) == "ok"
    assert slept == [0.5, 2.0]
