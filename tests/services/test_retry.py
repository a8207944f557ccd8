"""The retry policy's pure decision step and its sync/async drivers (no clock is waited on)."""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import logging
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest
import tenacity

from finetune_kit._retry import (
    MAX_RETRY_AFTER,
    RetryDecision,
    RetryPolicy,
    backoff_delay,
    classify_exception,
    parse_retry_after,
    without_client_retries,
)
from finetune_kit.errors import ConfigurationError
from tests.fixtures.clock import FakeClock

REQUEST = httpx2.Request("POST", "http://127.0.0.1:9/v1/fine_tuning/jobs?api-version=x")


def status_error(
    status: int, *, headers: dict[str, str] | None = None, code: str | None = None
) -> openai.APIStatusError:
    body: dict[str, Any] = {"message": "boom", "type": "error", "param": None, "code": code}
    response = httpx2.Response(status, headers=headers, json={"error": body}, request=REQUEST)
    client = openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1", max_retries=0)
    err = client._make_status_error_from_response(response)
    assert isinstance(err, openai.APIStatusError)
    return err


def failing_then(results: list[BaseException | str]) -> tuple[Callable[[], str], list[int]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        item = results[len(calls) - 1]
        if isinstance(item, BaseException):
            raise item
        return item

    return fn, calls


# ---------------------------------------------------------------- parse_retry_after


def test_retry_after_ms_wins_over_seconds() -> None:
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "7"}) == 0.25


def test_retry_after_seconds_allow_floats_and_any_case() -> None:
    assert parse_retry_after({"Retry-After": "1.5"}) == 1.5


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30.0)


def test_retry_after_garbage_or_absent_is_none() -> None:
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "nan"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None


def test_retry_after_overflow_counts_as_too_long() -> None:
    delay = parse_retry_after({"retry-after": "1e400"})
    assert delay is not None
    assert delay > MAX_RETRY_AFTER


# ---------------------------------------------------------------- classify_exception


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    decision = classify_exception(status_error(status))
    assert decision.retry
    assert decision.server_delay is None
    assert str(status) in decision.reason


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_client_errors_are_not_retried(status: int) -> None:
    assert not classify_exception(status_error(status)).retry


def test_connection_errors_and_timeouts_are_retried() -> None:
    assert classify_exception(openai.APIConnectionError(request=REQUEST)).retry
    timeout = classify_exception(openai.APITimeoutError(request=REQUEST))
    assert timeout.retry
    assert "timed out" in timeout.reason


@pytest.mark.parametrize("module_name", ["httpx", "httpx2"])
@pytest.mark.parametrize(
    ("error_name", "retry"),
    [
        # What a streamed body read by openai 3.x raises when the connection goes mid-body.
        ("RemoteProtocolError", True),
        ("ReadError", True),
        ("ConnectError", True),
        ("WriteError", True),
        ("ReadTimeout", True),
        ("PoolTimeout", True),
        ("LocalProtocolError", False),
        ("UnsupportedProtocol", False),
    ],
)
def test_raw_transport_errors_of_either_http_package(
    module_name: str, error_name: str, retry: bool
) -> None:
    module = importlib.import_module(module_name)
    request = module.Request("GET", "http://127.0.0.1:9/v1/files/file-1/content")
    decision = classify_exception(getattr(module, error_name)("gone", request=request))
    assert decision.retry is retry
    if retry:
        assert decision.reason in ("connection error", "request timed out")


def test_httpx2_status_errors_follow_the_status_rules() -> None:
    throttled = httpx2.Response(429, headers={"retry-after": "2"}, request=REQUEST)
    error = httpx2.HTTPStatusError("429", request=REQUEST, response=throttled)
    assert classify_exception(error) == RetryDecision(True, "HTTP 429", 2.0)
    refused = httpx2.Response(403, request=REQUEST)
    assert not classify_exception(
        httpx2.HTTPStatusError("403", request=REQUEST, response=refused)
    ).retry


def test_policy_retries_a_raw_httpx2_drop_then_succeeds() -> None:
    attempts: list[int] = []

    def read_body() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise httpx2.RemoteProtocolError("peer closed connection", request=REQUEST)
        return "body"

    assert RetryPolicy(sleep=lambda s: None).call(read_body) == "body"
    assert len(attempts) == 2


def test_non_api_errors_are_not_retried() -> None:
    assert not classify_exception(OSError("disk")).retry
    assert not classify_exception(KeyboardInterrupt()).retry


def test_insufficient_quota_fails_fast_even_with_retry_after() -> None:
    err = status_error(429, headers={"retry-after": "1"}, code="insufficient_quota")
    decision = classify_exception(err)
    assert not decision.retry
    assert "quota" in decision.reason


def test_retry_after_in_range_is_the_delay() -> None:
    decision = classify_exception(status_error(429, headers={"retry-after": "3"}))
    assert decision.retry
    assert decision.server_delay == 3.0


def test_retry_after_over_120_seconds_means_no_retry() -> None:
    decision = classify_exception(status_error(503, headers={"retry-after": "121"}))
    assert not decision.retry
    assert "121" in decision.reason
    assert classify_exception(status_error(503, headers={"retry-after": "120"})).retry


def test_zero_or_negative_retry_after_falls_back_to_backoff() -> None:
    assert classify_exception(status_error(429, headers={"retry-after": "0"})).server_delay is None
    assert classify_exception(status_error(429, headers={"retry-after": "-4"})).server_delay is None


def test_x_should_retry_overrides_the_status() -> None:
    assert classify_exception(status_error(400, headers={"x-should-retry": "true"})).retry
    assert not classify_exception(status_error(500, headers={"x-should-retry": "false"})).retry


# ---------------------------------------------------------------- backoff


def test_backoff_doubles_then_caps_and_jitter_only_shortens() -> None:
    no_jitter = [backoff_delay(n, rng=lambda: 0.0) for n in range(6)]
    assert no_jitter == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff_delay(2, rng=lambda: 0.999) == pytest.approx(2.0 * 0.75, rel=1e-3)
    assert backoff_delay(10_000, rng=lambda: 0.0) == 8.0


# ---------------------------------------------------------------- the drivers


def test_call_retries_with_server_delay_then_backoff() -> None:
    clock = FakeClock()
    policy = RetryPolicy(sleep=clock.sleep, clock=clock, rng=lambda: 0.0)
    fn, calls = failing_then(
        [
            status_error(429, headers={"retry-after": "2"}),
            status_error(500),
            openai.APIConnectionError(request=REQUEST),
            "ok",
        ]
    )
    assert policy.call(fn) == "ok"
    assert len(calls) == 4
    assert clock.slept == [2.0, 1.0, 2.0]


def test_call_reraises_the_original_exception_unchanged() -> None:
    clock = FakeClock()
    policy = RetryPolicy(sleep=clock.sleep, clock=clock)
    err = status_error(404)
    fn, calls = failing_then([err])
    with pytest.raises(openai.NotFoundError) as info:
        policy.call(fn)
    assert info.value is err
    assert len(calls) == 1
    assert clock.slept == []


def test_attempt_limit() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=3, sleep=clock.sleep, clock=clock, rng=lambda: 0.0)
    fn, calls = failing_then([status_error(503)] * 5)
    with pytest.raises(openai.InternalServerError):
        policy.call(fn)
    assert len(calls) == 3
    assert clock.slept == [0.5, 1.0]


def test_deadline_stops_before_a_sleep_that_would_cross_it() -> None:
    clock = FakeClock()
    policy = RetryPolicy(
        max_attempts=50, deadline=10.0, sleep=clock.sleep, clock=clock, rng=lambda: 0
    )
    fn, calls = failing_then([status_error(429, headers={"retry-after": "4"})] * 50)
    with pytest.raises(openai.RateLimitError):
        policy.call(fn)
    # 4 + 4 = 8 s fits in 10 s; a third 4 s sleep would end at 12 s.
    assert clock.slept == [4.0, 4.0]
    assert len(calls) == 3


def test_user_wait_and_stop_objects_are_used() -> None:
    clock = FakeClock()
    policy = RetryPolicy(
        wait=tenacity.wait_fixed(7),
        stop=tenacity.stop_after_attempt(2),
        sleep=clock.sleep,
        clock=clock,
    )
    fn, calls = failing_then([status_error(500), status_error(500), "never"])
    with pytest.raises(openai.InternalServerError):
        policy.call(fn)
    assert clock.slept == [7.0]
    assert len(calls) == 2
    # A server-requested delay still wins over the user's wait.
    clock2 = FakeClock()
    policy2 = RetryPolicy(wait=tenacity.wait_fixed(7), sleep=clock2.sleep, clock=clock2)
    fn2, _ = failing_then([status_error(429, headers={"retry-after-ms": "300"}), "ok"])
    assert policy2.call(fn2) == "ok"
    assert clock2.slept == [0.3]


def test_sync_and_async_drivers_make_the_same_decisions() -> None:
    script: list[BaseException | str] = [
        status_error(429, headers={"retry-after": "1.25"}),
        openai.APITimeoutError(request=REQUEST),
        status_error(502),
        "done",
    ]
    sync_clock = FakeClock()
    sync_fn, sync_calls = failing_then(script)
    sync_policy = RetryPolicy(sleep=sync_clock.sleep, clock=sync_clock, rng=lambda: 0.5)
    assert sync_policy.call(sync_fn) == "done"

    async_clock = FakeClock()
    async_fn, async_calls = failing_then(script)

    async def coro() -> str:
        return async_fn()

    async_policy = RetryPolicy(async_sleep=async_clock.asleep, clock=async_clock, rng=lambda: 0.5)
    assert asyncio.run(async_policy.acall(coro)) == "done"
    assert sync_clock.slept == async_clock.slept == [1.25, 1.0 * 0.875, 2.0 * 0.875]
    assert len(sync_calls) == len(async_calls) == 4


def test_call_idempotent_looks_before_creating_again() -> None:
    clock = FakeClock()
    policy = RetryPolicy(sleep=clock.sleep, clock=clock)
    remote: list[str] = []
    creates: list[int] = []

    def create() -> str:
        creates.append(1)
        remote.append("job-1")  # the server acted, then the connection dropped
        raise openai.APIConnectionError(request=REQUEST)

    def find() -> str | None:
        return remote[0] if remote else None

    assert policy.call_idempotent(create, find) == "job-1"
    assert creates == [1]
    assert remote == ["job-1"]


def test_call_idempotent_creates_again_when_nothing_was_created() -> None:
    clock = FakeClock()
    policy = RetryPolicy(sleep=clock.sleep, clock=clock)
    fn, calls = failing_then([status_error(500), "created"])
    lookups: list[int] = []

    def find() -> str | None:
        lookups.append(1)
        return None

    assert policy.call_idempotent(fn, find) == "created"
    assert len(calls) == 2
    assert lookups == [1]


def test_async_call_idempotent() -> None:
    clock = FakeClock()
    policy = RetryPolicy(async_sleep=clock.asleep, clock=clock)
    remote: list[str] = []

    async def create() -> str:
        remote.append("file-1")
        raise openai.APIConnectionError(request=REQUEST)

    async def find() -> str | None:
        return remote[0] if remote else None

    assert asyncio.run(policy.acall_idempotent(create, find)) == "file-1"
    assert remote == ["file-1"]


def test_decisions_are_logged_at_debug_without_query_strings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    policy = RetryPolicy(sleep=clock.sleep, clock=clock, rng=lambda: 0.0)
    fn, _ = failing_then([status_error(429, headers={"retry-after": "1"}), status_error(400)])
    with (
        caplog.at_level(logging.DEBUG, logger="finetune_kit.retry"),
        pytest.raises(openai.BadRequestError),
    ):
        policy.call(fn)
    text = caplog.text
    assert "POST /v1/fine_tuning/jobs" in text
    assert "will retry" in text
    assert "not retrying" in text
    assert "sleeping 1.00 s" in text
    assert "api-version" not in text
    assert all(record.levelno == logging.DEBUG for record in caplog.records)


def test_bad_settings_name_the_parameter() -> None:
    with pytest.raises(ConfigurationError) as info:
        RetryPolicy(max_attempts=0)
    assert info.value.param == "max_attempts"
    with pytest.raises(ConfigurationError):
        RetryPolicy(jitter=2)


def test_without_client_retries_copies_the_client() -> None:
    client = openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    assert client.max_retries == 2
    quiet = without_client_retries(client)
    assert quiet.max_retries == 0
    assert client.max_retries == 2
    assert without_client_retries(quiet) is quiet
