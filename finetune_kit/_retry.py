"""The one retry policy every remote call of finetune_kit goes through.

The ``openai`` client's own retries are turned off for every client the library uses (clients
it builds get ``max_retries=0``; a user's client is used through
``client.with_options(max_retries=0)``), so retries are never stacked.

What is retried, and how long it waits, follows openai-python >= 2.52 (``_base_client.py``,
``_should_retry`` and ``_calculate_retry_timeout``), with two additions: a 429 whose code is
``insufficient_quota`` is a billing problem and fails at once, and every call has an overall
deadline.

The decision is one pure function, :func:`classify_exception`; tenacity's ``Retrying`` and
``AsyncRetrying`` drive it, so the sync and async paths decide identically. ``sleep`` and the
clock are injectable, so tests never wait on a real clock.

Examples:
    >>> slept = []
    >>> policy = RetryPolicy(sleep=slept.append)
    >>> policy.call(lambda: "done")
    'done'
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import inspect
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar, cast

import openai
import tenacity
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "HTTP_ERRORS",
    "MAX_RETRY_AFTER",
    "RETRYABLE_STATUS_CODES",
    "RetryDecision",
    "RetryPolicy",
    "aiter_items",
    "backoff_delay",
    "classify_exception",
    "iter_items",
    "parse_retry_after",
    "without_client_retries",
]

logger = logging.getLogger("finetune_kit.retry")

T = TypeVar("T")

MAX_RETRY_AFTER = 120.0
"""Longest server-requested delay honoured, in seconds; a longer one means "do not retry"."""

RETRYABLE_STATUS_CODES = frozenset({408, 409, 429})
"""Status codes retried besides every 5xx: request timeout, lock conflict, rate limit."""


@dataclass(frozen=True)
class RetryDecision:
    """What to do after a failed attempt.

    Attributes:
        retry: Whether another attempt may be made.
        reason: A short explanation, safe to log (never holds a secret).
        server_delay: The delay the server asked for (``Retry-After``/``retry-after-ms``), in
            seconds, when it gave one within (0, 120]; ``None`` means "use the backoff".
    """

    retry: bool
    reason: str
    server_delay: float | None = None


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """Read the delay a server asked for, in seconds, from response headers.

    ``retry-after-ms`` (milliseconds) comes first, then ``retry-after`` as seconds (floats allowed)
    and last ``retry-after`` as an HTTP date, as openai-python reads them. A numeric overflow
    (``1e400``) counts as an excessive delay.

    Args:
        headers: Response headers (any mapping; names are matched case-insensitively).
        now: The current unix time, for HTTP dates (defaults to ``time.time()``).

    Returns:
        The delay in seconds (possibly zero, negative or huge: the caller judges it), or ``None``
        when no usable header is present.

    Examples:
        >>> parse_retry_after({"Retry-After": "2"})
        2.0
        >>> parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"})
        1.5
    """
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value is None:
            continue
        try:
            delay = float(value)
        except ValueError:
            continue
        if math.isnan(delay):
            continue
        if math.isinf(delay) and value.strip().lower().lstrip("+") not in ("inf", "infinity"):
            # An overflowing number is a server asking for a very long wait, not garbage.
            return MAX_RETRY_AFTER * 1000 + 1
        return delay / divisor
    raw_date = lowered.get("retry-after")
    if raw_date is None:
        return None
    try:
        parsed = email.utils.parsedate_tz(raw_date)
        if parsed is None:
            return None
        moment = email.utils.mktime_tz(parsed)
    except (TypeError, ValueError, OverflowError):
        return None
    return float(moment - (time.time() if now is None else now))


class _HttpErrorClasses(NamedTuple):
    timeouts: tuple[type[BaseException], ...]
    connections: tuple[type[BaseException], ...]
    statuses: tuple[type[BaseException], ...]
    every: tuple[type[BaseException], ...]


def _http_error_classes() -> _HttpErrorClasses:
    """The error classes of whichever HTTP packages are installed, sorted by what they mean.

    openai 3.x sends through ``httpx2`` and openai < 3 through ``httpx``; the Azure management
    calls use ``httpx``. A streamed body (``with_streaming_response``) is read after openai has
    returned the response, so a connection lost mid-body reaches the caller as the HTTP
    package's own exception, not an ``openai`` one. ``httpx`` is a dependency of finetune_kit;
    ``httpx2`` comes with openai 3.x and is looked up by name, so the library runs whichever
    openai it meets and no HTTP package's types appear in a signature.
    """
    found: dict[str, list[type[BaseException]]] = {
        "timeouts": [],
        "connections": [],
        "statuses": [],
        "every": [],
    }
    for name in ("httpx", "httpx2"):
        try:
            module: Any = importlib.import_module(name)
        except ImportError:
            continue
        found["timeouts"].append(module.TimeoutException)
        found["connections"].extend((module.NetworkError, module.RemoteProtocolError))
        found["statuses"].append(module.HTTPStatusError)
        found["every"].append(module.HTTPError)
    return _HttpErrorClasses(**{key: tuple(value) for key, value in found.items()})


_HTTP_ERRORS = _http_error_classes()

HTTP_ERRORS: tuple[type[BaseException], ...] = _HTTP_ERRORS.every
"""The base error class of each installed HTTP package (``httpx``, ``httpx2``), for callers that
must survive any HTTP failure, such as a best-effort download."""


def _error_code(exc: openai.APIError) -> str | None:
    if exc.code is not None:
        return exc.code
    body = exc.body
    if isinstance(body, Mapping):
        nested = body.get("error")
        if isinstance(nested, Mapping):
            code = nested.get("code") or nested.get("type")
            return str(code) if code is not None else None
    return None


def classify_exception(
    exc: BaseException, *, max_retry_after: float = MAX_RETRY_AFTER, now: float | None = None
) -> RetryDecision:
    """Decide whether a failed call may be retried (the one pure decision step).

    It judges the ``openai`` client's exceptions and plain ``httpx``/``httpx2`` ones (the Azure
    management API is called with ``httpx`` directly; a streamed body read by openai 3.x raises
    ``httpx2`` errors unwrapped) by the same rules, in order:

    1. connection errors and timeouts are retried;
    2. a 429 whose code is ``insufficient_quota`` is never retried (a billing problem);
    3. a ``Retry-After`` longer than ``max_retry_after`` means no retry (openai-python >= 2.52);
    4. an ``x-should-retry: true|false`` header overrides the status rules;
    5. 408, 409, 429 and every 5xx are retried; any other status is not;
    6. anything else (a bad URL, a ``ValueError``...) is not retried.

    Args:
        exc: The exception the attempt raised.
        max_retry_after: The longest server-requested delay honoured, in seconds.
        now: The current unix time, for ``Retry-After`` HTTP dates.

    Returns:
        The decision, with the server's delay when it asked for one within range.

    Examples:
        >>> classify_exception(ValueError("bad input")).retry
        False
        >>> import httpx
        >>> request = httpx.Request("GET", "https://management.azure.com/x")
        >>> response = httpx.Response(429, headers={"Retry-After": "3"}, request=request)
        >>> error = httpx.HTTPStatusError("throttled", request=request, response=response)
        >>> classify_exception(error)
        RetryDecision(retry=True, reason='HTTP 429', server_delay=3.0)
    """
    if isinstance(exc, (openai.APITimeoutError, *_HTTP_ERRORS.timeouts)):
        return RetryDecision(True, "request timed out")
    if isinstance(exc, (openai.APIConnectionError, *_HTTP_ERRORS.connections)):
        return RetryDecision(True, "connection error")
    headers: Mapping[str, str]
    if isinstance(exc, openai.APIStatusError):
        status, headers, code = exc.status_code, exc.response.headers, _error_code(exc)
    elif isinstance(exc, _HTTP_ERRORS.statuses):
        response = cast("Any", exc).response  # the classes were looked up by name: untyped
        status, headers, code = int(response.status_code), response.headers, None
    else:
        return RetryDecision(False, f"{type(exc).__name__} is not a retryable API error")

    label = f"HTTP {status}" + (f" ({code})" if code else "")
    if status == 429 and code == "insufficient_quota":
        return RetryDecision(
            False, f"{label}: out of quota, a billing problem that waiting won't fix"
        )

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


def backoff_delay(
    retry_number: int,
    *,
    initial: float = 0.5,
    maximum: float = 8.0,
    jitter: float = 0.25,
    rng: Callable[[], float] = random.random,
) -> float:
    """The exponential backoff delay before a retry, with jitter.

    ``min(initial * 2**retry_number, maximum) * (1 - jitter * rng())``, as openai-python computes
    it (``retry_number`` counts from 0 for the first retry).

    Args:
        retry_number: How many retries were already made.
        initial: Delay before the first retry, in seconds.
        maximum: Cap of the delay before jitter, in seconds.
        jitter: Fraction of the delay randomly removed (0 disables jitter).
        rng: Source of uniform numbers in [0, 1).

    Returns:
        The delay in seconds, never negative.

    Examples:
        >>> backoff_delay(3, rng=lambda: 0.0)
        4.0
    """
    base = min(initial * math.pow(2.0, min(retry_number, 1000)), maximum)
    return max(base * (1.0 - jitter * rng()), 0.0)


class _HasMaxRetries(Protocol):
    max_retries: int

    def with_options(self, *, max_retries: int) -> Any: ...


ClientT = TypeVar("ClientT", bound=_HasMaxRetries)


def without_client_retries(client: ClientT) -> ClientT:
    """Return the client with its own retries turned off, so only the policy retries.

    A client that already has ``max_retries=0`` is returned as is; any other is copied with
    ``client.with_options(max_retries=0)`` (the original is not changed).

    Args:
        client: An ``openai.OpenAI``/``AsyncOpenAI`` (or Azure) client.

    Returns:
        A client that never retries by itself.
    """
    if client.max_retries == 0:
        return client
    logger.debug("using the client with max_retries=0: retries are done by the retry policy")
    quiet: ClientT = client.with_options(max_retries=0)
    return quiet


def _describe(retry_state: tenacity.RetryCallState) -> str:
    exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
    name = getattr(retry_state.fn, "__qualname__", None) or getattr(
        retry_state.fn, "__name__", "call"
    )
    request = getattr(exc, "request", None)
    url = getattr(request, "url", None)
    if request is not None and url is not None:
        # Only method and path: a query string or header could carry something secret.
        return f"{request.method} {url.path}"
    return str(name)


class _RetryIfDecided(tenacity.retry_base):
    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        assert exc is not None
        decision = self._policy.decide(exc)
        logger.debug(
            "%s attempt %d failed with %s: %s",
            _describe(retry_state),
            retry_state.attempt_number,
            type(exc).__name__,
            ("will retry, " if decision.retry else "not retrying, ") + decision.reason,
        )
        return decision.retry


class _ServerOrBackoffWait(wait_base):
    def __init__(self, policy: RetryPolicy, fallback: wait_base | None) -> None:
        self._policy = policy
        self._fallback = fallback

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
        if exc is not None:
            decision = self._policy.decide(exc)
            if decision.server_delay is not None:
                return decision.server_delay
        if self._fallback is not None:
            return float(self._fallback(retry_state))
        return self._policy.backoff(retry_state.attempt_number - 1)


class _StopAtDeadline(stop_base):
    """Stop when the next sleep would end past the deadline (measured on the policy's clock)."""

    def __init__(self, clock: Callable[[], float], deadline: float) -> None:
        self._clock = clock
        self._deadline = deadline
        self._start = clock()

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        elapsed = self._clock() - self._start
        return elapsed + retry_state.upcoming_sleep > self._deadline


class _LoggedStop(stop_base):
    def __init__(self, inner: stop_base) -> None:
        self._inner = inner

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        stopped = bool(self._inner(retry_state))
        if stopped:
            logger.debug(
                "%s: giving up after %d attempts (attempt limit or deadline reached)",
                _describe(retry_state),
                retry_state.attempt_number,
            )
        return stopped


def _log_before_sleep(retry_state: tenacity.RetryCallState) -> None:
    logger.debug(
        "%s: sleeping %.2f s before attempt %d",
        _describe(retry_state),
        retry_state.upcoming_sleep,
        retry_state.attempt_number + 1,
    )


class RetryPolicy:
    """The retry policy shared by every remote call: what is retried, and how long to wait.

    Retried: connection errors, timeouts, HTTP 408, 409, 429 and 5xx. Never retried: any other
    4xx, a 429 whose code is ``insufficient_quota``, and a ``Retry-After`` longer than
    ``max_retry_after``. The ``x-should-retry`` header overrides the status rules. The delay is
    the server's ``retry-after-ms``/``Retry-After`` when it gives one within range, else
    exponential backoff with jitter. A call gives up after ``max_attempts`` attempts, or before a
    sleep that would end past ``deadline`` seconds after the first attempt; the last exception is
    then raised unchanged (an ``openai`` exception stays one).

    Args:
        max_attempts: Attempts per call, the first one included.
        deadline: Overall time budget of one call, retries and sleeps included, in seconds
            (``None``: no deadline).
        initial_delay: Backoff before the first retry, in seconds.
        max_delay: Cap of the backoff, in seconds.
        jitter: Fraction of each backoff delay randomly removed.
        max_retry_after: Longest server-requested delay honoured, in seconds.
        wait: A tenacity ``wait`` object replacing the backoff (a server's delay still wins).
        stop: A tenacity ``stop`` object replacing ``max_attempts`` (the deadline still applies).
        sleep: Sleep function of the sync driver (tests pass a recorder).
        async_sleep: Sleep coroutine function of the async driver.
        clock: Monotonic clock measuring the deadline.
        rng: Source of uniform numbers in [0, 1) for the jitter.

    Examples:
        >>> attempts = []
        >>> def flaky():
        ...     attempts.append(1)
        ...     if len(attempts) < 2:
        ...         raise openai.APIConnectionError(request=_example_request())
        ...     return "ok"
        >>> RetryPolicy(sleep=lambda s: None).call(flaky), len(attempts)
        ('ok', 2)
    """

    def __init__(
        self,
        *,
        max_attempts: int = 6,
        deadline: float | None = 600.0,
        initial_delay: float = 0.5,
        max_delay: float = 8.0,
        jitter: float = 0.25,
        max_retry_after: float = MAX_RETRY_AFTER,
        wait: wait_base | None = None,
        stop: stop_base | None = None,
        sleep: Callable[[float], None] | None = None,
        async_sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ConfigurationError(
                f"max_attempts must be at least 1, got {max_attempts}", param="max_attempts"
            )
        if deadline is not None and deadline <= 0:
            raise ConfigurationError(
                f"deadline must be positive seconds or None, got {deadline}", param="deadline"
            )
        if initial_delay < 0 or max_delay < 0:
            raise ConfigurationError("delays cannot be negative", param="initial_delay")
        if not 0 <= jitter <= 1:
            raise ConfigurationError(f"jitter must be in [0, 1], got {jitter}", param="jitter")
        self.max_attempts = max_attempts
        self.deadline = deadline
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.jitter = jitter
        self.max_retry_after = max_retry_after
        self.wait = wait
        self.stop = stop
        self._sleep = sleep if sleep is not None else time.sleep
        self._async_sleep = async_sleep if async_sleep is not None else asyncio.sleep
        self.clock = clock
        self._rng = rng

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, deadline={self.deadline}, "
            f"initial_delay={self.initial_delay}, max_delay={self.max_delay}, "
            f"max_retry_after={self.max_retry_after})"
        )

    def decide(self, exc: BaseException) -> RetryDecision:
        """Classify a failure with this policy's settings (see :func:`classify_exception`).

        Args:
            exc: The exception an attempt raised.

        Returns:
            The decision.
        """
        return classify_exception(exc, max_retry_after=self.max_retry_after)

    def backoff(self, retry_number: int) -> float:
        """The backoff delay before retry number ``retry_number`` (from 0), jitter included.

        Args:
            retry_number: How many retries were already made.

        Returns:
            The delay in seconds.
        """
        return backoff_delay(
            retry_number,
            initial=self.initial_delay,
            maximum=self.max_delay,
            jitter=self.jitter,
            rng=self._rng,
        )

    def sleep(self, seconds: float) -> None:
        """Sleep with the policy's (injectable) sync sleep.

        Args:
            seconds: How long.
        """
        self._sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        """Sleep with the policy's (injectable) async sleep.

        Args:
            seconds: How long.
        """
        await self._async_sleep(seconds)

    def _strategies(self) -> dict[str, Any]:
        stop: stop_base = (
            self.stop if self.stop is not None else tenacity.stop_after_attempt(self.max_attempts)
        )
        if self.deadline is not None:
            stop = stop | _StopAtDeadline(self.clock, self.deadline)
        return {
            "retry": _RetryIfDecided(self),
            "wait": _ServerOrBackoffWait(self, self.wait),
            "stop": _LoggedStop(stop),
            "before_sleep": _log_before_sleep,
            "reraise": True,
        }

    def retrying(self) -> tenacity.Retrying:
        """A fresh tenacity ``Retrying`` carrying this policy (one per call: it holds the deadline).

        Returns:
            The sync controller; ``for attempt in policy.retrying(): with attempt: ...`` works.
        """
        return tenacity.Retrying(sleep=self._sleep, **self._strategies())

    def async_retrying(self) -> tenacity.AsyncRetrying:
        """A fresh tenacity ``AsyncRetrying`` carrying this policy.

        Returns:
            The async controller.
        """
        return tenacity.AsyncRetrying(sleep=self._async_sleep, **self._strategies())

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call ``fn(*args, **kwargs)``, retrying under this policy.

        Args:
            fn: The call to make, typically an ``openai`` client method.
            *args: Its positional arguments.
            **kwargs: Its keyword arguments.

        Returns:
            What ``fn`` returned.

        Raises:
            Exception: The last attempt's exception, unchanged, once retrying stops.
        """
        return self.retrying()(fn, *args, **kwargs)

    async def acall(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)``, retrying under this policy.

        Args:
            fn: The coroutine function to call, typically an ``openai.AsyncOpenAI`` method.
            *args: Its positional arguments.
            **kwargs: Its keyword arguments.

        Returns:
            What ``fn`` returned.

        Raises:
            Exception: The last attempt's exception, unchanged, once retrying stops.
        """

        async def attempt() -> T:
            # A plain function returning an awaitable (a lambda around a coroutine call, or the
            # openai client's paginators) is awaited too; tenacity would hand it back as is.
            result: Any = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return cast("T", result)

        return await self.async_retrying()(attempt)

    def call_idempotent(self, create: Callable[[], T], find: Callable[[], T | None]) -> T:
        """Create something remote exactly once, even when an attempt fails ambiguously.

        A failed POST may still have taken effect (the connection dropped after the server acted).
        So before every retry, ``find()`` looks for what the earlier attempt may have created; when
        it finds it, that is returned and nothing is created again. ``find`` runs under this
        policy too.

        Args:
            create: Makes the remote object (one attempt).
            find: Looks it up; returns ``None`` when it does not exist.

        Returns:
            The created or found object.
        """
        attempted = False

        def attempt() -> T:
            nonlocal attempted
            if attempted:
                found = self.call(find)
                if found is not None:
                    logger.debug("found what an earlier attempt created; not creating it again")
                    return found
            attempted = True
            return create()

        return self.call(attempt)

    async def acall_idempotent(
        self, create: Callable[[], Awaitable[T]], find: Callable[[], Awaitable[T | None]]
    ) -> T:
        """Async twin of :meth:`call_idempotent`.

        Args:
            create: Coroutine function making the remote object (one attempt).
            find: Coroutine function looking it up; returns ``None`` when it does not exist.

        Returns:
            The created or found object.
        """
        attempted = False

        async def attempt() -> T:
            nonlocal attempted
            if attempted:
                found = await self.acall(find)
                if found is not None:
                    logger.debug("found what an earlier attempt created; not creating it again")
                    return found
            attempted = True
            return await create()

        return await self.acall(attempt)


def iter_items(policy: RetryPolicy, first_page: Callable[[], Any]) -> Iterator[Any]:
    """Iterate every item of a cursor-paged list, each page fetched under the policy.

    Args:
        policy: The retry policy.
        first_page: Fetches the first page (``lambda: client.files.list(purpose=...)``).

    Yields:
        The items, page after page.
    """
    page = policy.call(first_page)
    while True:
        yield from page.data
        if not page.has_next_page():
            return
        page = policy.call(page.get_next_page)


async def aiter_items(
    policy: RetryPolicy, first_page: Callable[[], Awaitable[Any]]
) -> AsyncIterator[Any]:
    """Async twin of :func:`iter_items`.

    Args:
        policy: The retry policy.
        first_page: Coroutine function fetching the first page.

    Yields:
        The items, page after page.
    """
    page = await policy.acall(first_page)
    while True:
        for item in page.data:
            yield item
        if not page.has_next_page():
            return
        page = await policy.acall(page.get_next_page)


def _example_request() -> Any:
    """A request object for the docstring examples (openai's errors need one)."""
    try:
        import httpx2 as transport
    except ImportError:  # openai < 3 uses httpx
        import httpx as transport  # type: ignore[no-redef]  # the same Request API under another name

    return transport.Request("GET", "http://127.0.0.1/v1/files")


DEFAULT_RETRY_POLICY = RetryPolicy()
"""The policy used when none is given."""
