"""Fault injection for tests: make chosen requests fail the way real networks and APIs fail.

Off by default. When a backend runs with ``faults=True``, every request first meets a
``FaultInjector`` that may, for a route (method + path pattern):

- answer ``429`` with ``Retry-After`` (seconds) and ``retry-after-ms`` headers,
- answer ``500`` or ``503`` with OpenAI's error body,
- drop the connection without sending a single byte back (the ``openai`` client raises
  ``APIConnectionError``), either before handling the request (``drop``) or after handling it
  (``drop-after``: the file or job exists, only the response is lost),
- cut a response short (``cut``): its headers and first bytes arrive, then the connection closes
  (a body read from the stream fails mid-way, as when a proxy dies during a download),
- or wait a while before handling the request.

Faults come from a script (a sequence consumed one request at a time: ``["429", "500", "ok"]``)
or a probability. Every request is logged so a test can count the attempts a client made.

Example:
    >>> faults = FaultInjector()
    >>> faults.script("POST", "/v1/files", ["429", "drop"])
    >>> [faults.decide("POST", "/v1/files").fault.kind for _ in range(2)]
    ['429', 'drop']
    >>> faults.decide("POST", "/v1/files").fault is None
    True
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from ...errors import ConfigurationError

__all__ = [
    "Fault",
    "FaultControl",
    "FaultDecision",
    "FaultInjector",
    "FaultKind",
    "FaultSpec",
    "RequestRecord",
]

FaultKind = Literal["429", "500", "503", "drop", "drop-after", "cut", "delay", "ok"]
"""What a fault does: an HTTP error, a dropped connection (before or after handling the
request), a response cut short, a delay, or nothing (``ok``)."""

_KINDS = ("429", "500", "503", "drop", "drop-after", "cut", "delay", "ok")


@dataclass(frozen=True)
class Fault:
    """One fault.

    Attributes:
        kind: ``"429"``, ``"500"``, ``"503"``, ``"drop"`` (the connection closes before the
            request is handled), ``"drop-after"`` (the request is handled, its effects are
            stored, then the connection closes before any byte of the response is sent),
            ``"cut"`` (the request is handled, the response's headers and first bytes are
            sent, then the connection closes), ``"delay"`` or ``"ok"``.
        retry_after: Seconds sent in ``Retry-After`` / ``retry-after-ms`` (429; 503 when set);
            ``None`` uses the injector's default for a 429 and sends none for a 503.
        seconds: How long a ``delay`` waits before the request is handled normally.

    Example:
        >>> Fault.parse("429:0.25")
        Fault(kind='429', retry_after=0.25, seconds=0.0)
        >>> Fault.parse("delay:1.5").seconds
        1.5
    """

    kind: FaultKind
    retry_after: float | None = None
    seconds: float = 0.0

    @classmethod
    def parse(cls, spec: FaultSpec) -> Fault:
        """Read a fault from a ``Fault`` or a string.

        Strings: ``"429"``, ``"429:<retry_after>"``, ``"500"``, ``"503"``,
        ``"503:<retry_after>"``, ``"drop"``, ``"drop-after"``, ``"cut"``, ``"delay:<seconds>"``,
        ``"ok"``.

        Args:
            spec: The fault.

        Returns:
            The fault.

        Raises:
            ConfigurationError: The string names no known fault.
        """
        if isinstance(spec, Fault):
            return spec
        text = str(spec).strip().lower()
        kind, _, arg = text.partition(":")
        if kind not in _KINDS:
            raise ConfigurationError(
                f"Unknown fault {spec!r}; use one of 429, 429:<seconds>, 500, 503, drop, "
                "drop-after, cut, delay:<seconds>, ok.",
                param="faults",
            )
        try:
            value = float(arg) if arg else None
        except ValueError as exc:
            raise ConfigurationError(
                f"Fault {spec!r}: {arg!r} is not a number of seconds.", param="faults"
            ) from exc
        if kind == "delay":
            return cls(kind="delay", seconds=value or 0.0)
        if kind in ("429", "503"):
            return cls(kind=kind, retry_after=value)  # type: ignore[arg-type]  # checked above
        return cls(kind=kind)  # type: ignore[arg-type]  # checked above


FaultSpec = Fault | str
"""A ``Fault`` or its string form (``"429"``, ``"drop-after"``, ``"delay:0.5"``...)."""


@dataclass(frozen=True)
class FaultDecision:
    """What to do with one request.

    Attributes:
        fault: The fault to inject, or ``None`` to handle the request normally.
        delay: Seconds to wait first (latency rules plus a ``delay`` fault).
        retry_after: Seconds for ``Retry-After`` on an error, when one is sent.
    """

    fault: Fault | None
    delay: float = 0.0
    retry_after: float | None = None


@dataclass
class RequestRecord:
    """One request the server saw while fault injection was on.

    Attributes:
        method: The HTTP method.
        path: The URL path, without the query string.
        fault: The fault injected (``"429"``, ``"drop"``, ``"drop-after"``...), or ``None``.
        status: The status answered; for ``drop-after``, the status the route produced but
            never sent (so a test can tell the server handled the request); ``None`` when the
            connection was dropped before the request was handled.
        started_at: Unix time the request arrived.
        retry_count: The client's ``x-stainless-retry-count`` header, when sent.
        delay: Seconds of injected latency the request waited (latency rules plus a ``delay``
            fault), so a test checks the server's record instead of timing the client.
        finished_at: Unix time the server was done with the request (its response sent, or the
            connection dropped); ``None`` while it runs. With ``started_at`` it gives the
            requests really in flight at once.
    """

    method: str
    path: str
    fault: str | None = None
    status: int | None = None
    started_at: float = field(default_factory=time.time)
    retry_count: int | None = None
    delay: float = 0.0
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready data."""
        return asdict(self)


class FaultControl(Protocol):
    """What tests use to steer faults, in-process (``FaultInjector``) or over HTTP."""

    def script(
        self,
        method: str,
        path: str,
        faults: Sequence[FaultSpec],
        *,
        retry_after: float | None = None,
    ) -> None:
        """Inject these faults, in order, on the next matching requests."""

    def set_probability(
        self,
        method: str,
        path: str,
        fault: FaultSpec,
        probability: float,
        *,
        retry_after: float | None = None,
    ) -> None:
        """Inject ``fault`` on each matching request with this probability."""

    def latency(self, method: str, path: str, seconds: float) -> None:
        """Delay every matching request by ``seconds``."""

    def clear(self) -> None:
        """Remove every rule and empty the request log."""

    def requests(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Return the logged requests, optionally only those matching a route."""

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Return how many logged requests match a route."""


def compile_path(pattern: str) -> re.Pattern[str]:
    """Compile a route pattern.

    ``*`` matches within one path segment, ``**`` across segments, ``{name}`` one whole
    segment; a lone ``*`` matches every path.

    Args:
        pattern: Such as ``/v1/files``, ``/v1/files/{file_id}`` or ``/v1/fine_tuning/**``.

    Returns:
        A regular expression matching whole paths.

    Example:
        >>> bool(compile_path("/v1/fine_tuning/jobs/{id}/events").fullmatch(
        ...     "/v1/fine_tuning/jobs/ftjob-abc/events"))
        True
    """
    if pattern.strip() in ("*", "**"):
        return re.compile(r".*")
    if not pattern.startswith("/"):
        raise ConfigurationError(
            f"Route pattern {pattern!r} must start with '/', such as '/v1/files'.", param="path"
        )
    out = []
    for token in re.split(r"(\*\*|\*|\{[^}/]+\})", pattern):
        if token == "**":
            out.append(".*")
        elif token == "*":
            out.append("[^/]*")
        elif token.startswith("{") and token.endswith("}"):
            out.append("[^/]+")
        else:
            out.append(re.escape(token))
    return re.compile("".join(out))


@dataclass
class _Rule:
    method: str
    pattern: str
    regex: re.Pattern[str]
    script: deque[Fault] = field(default_factory=deque)
    fault: Fault | None = None
    probability: float = 0.0
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        if self.method != "*" and self.method != method.upper():
            return False
        if self.regex.fullmatch(path):
            return True
        # Patterns may leave out the /v1 prefix: "/files" matches "/v1/files".
        return path.startswith("/v1/") and bool(self.regex.fullmatch(path[3:]))


class FaultInjector:
    """Decides, request by request, which fault to inject; thread-safe.

    Args:
        retry_after: Default ``Retry-After`` seconds of a 429.
        seed: Seed of the random draws of probability rules (reproducible tests).
        max_log: How many requests the log keeps (oldest dropped first).

    Example:
        >>> faults = FaultInjector(seed=1)
        >>> faults.set_probability("GET", "/v1/models", "503", 1.0)
        >>> faults.decide("GET", "/v1/models").fault.kind
        '503'
        >>> faults.clear()
        >>> faults.decide("GET", "/v1/models").fault is None
        True
    """

    def __init__(
        self, *, retry_after: float = 1.0, seed: int | None = None, max_log: int = 10_000
    ) -> None:
        self.default_retry_after = retry_after
        self._lock = threading.Lock()
        self._scripts: list[_Rule] = []
        self._probabilities: list[_Rule] = []
        self._latencies: list[_Rule] = []
        self._random = random.Random(seed)
        self._log: deque[RequestRecord] = deque(maxlen=max_log)

    def script(
        self,
        method: str,
        path: str,
        faults: Sequence[FaultSpec],
        *,
        retry_after: float | None = None,
    ) -> None:
        """Inject these faults, one per matching request, in order; then behave normally.

        Args:
            method: HTTP method, or ``"*"`` for any.
            path: Route pattern (see ``compile_path``).
            faults: Such as ``["429", "500", "drop", "drop-after", "ok"]``.
            retry_after: ``Retry-After`` seconds for the 429s (and 503s) of this script.
        """
        parsed = [self._with_retry_after(Fault.parse(f), retry_after) for f in faults]
        with self._lock:
            self._scripts.append(self._rule(method, path, script=deque(parsed)))

    def set_probability(
        self,
        method: str,
        path: str,
        fault: FaultSpec,
        probability: float,
        *,
        retry_after: float | None = None,
    ) -> None:
        """Inject ``fault`` on each matching request with this probability.

        Args:
            method: HTTP method, or ``"*"`` for any.
            path: Route pattern (see ``compile_path``).
            fault: The fault, such as ``"503"``.
            probability: Between 0 and 1.
            retry_after: ``Retry-After`` seconds when the fault is a 429 or 503.
        """
        if not 0.0 <= probability <= 1.0:
            raise ConfigurationError(
                f"probability must be between 0 and 1, not {probability}.", param="probability"
            )
        parsed = self._with_retry_after(Fault.parse(fault), retry_after)
        with self._lock:
            self._probabilities.append(
                self._rule(method, path, fault=parsed, probability=probability)
            )

    def latency(self, method: str, path: str, seconds: float) -> None:
        """Delay every matching request by ``seconds`` (rules add up).

        Args:
            method: HTTP method, or ``"*"`` for any.
            path: Route pattern (see ``compile_path``).
            seconds: The delay.
        """
        if seconds < 0:
            raise ConfigurationError("seconds must not be negative.", param="seconds")
        with self._lock:
            self._latencies.append(self._rule(method, path, seconds=seconds))

    def clear(self) -> None:
        """Remove every rule and empty the request log."""
        with self._lock:
            self._scripts.clear()
            self._probabilities.clear()
            self._latencies.clear()
            self._log.clear()

    def clear_log(self) -> None:
        """Empty the request log, keeping the rules."""
        with self._lock:
            self._log.clear()

    def requests(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Return the logged requests, oldest first, optionally only those matching a route.

        Args:
            method: HTTP method, or ``None``/``"*"`` for any.
            path: Route pattern, or ``None`` for any.

        Returns:
            Copies of the records.
        """
        rule = self._rule(method or "*", path or "*")
        with self._lock:
            return [
                RequestRecord(**r.to_dict()) for r in self._log if rule.matches(r.method, r.path)
            ]

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Return how many logged requests match a route (how many attempts a client made)."""
        return len(self.requests(method, path))

    def decide(self, method: str, path: str) -> FaultDecision:
        """Choose what happens to one request (scripts first, then probabilities).

        Args:
            method: The request's method.
            path: The request's path.

        Returns:
            The decision.
        """
        with self._lock:
            delay = sum(r.seconds for r in self._latencies if r.matches(method, path))
            fault: Fault | None = None
            for rule in self._scripts:
                if rule.script and rule.matches(method, path):
                    fault = rule.script.popleft()
                    break
            self._scripts = [r for r in self._scripts if r.script]
            if fault is None:
                for rule in self._probabilities:
                    if rule.matches(method, path) and self._random.random() < rule.probability:
                        fault = rule.fault
                        break
        if fault is not None and fault.kind == "delay":
            return FaultDecision(fault=None, delay=delay + fault.seconds)
        if fault is not None and fault.kind == "ok":
            fault = None
        retry_after = None
        if fault is not None and fault.kind in ("429", "503"):
            retry_after = fault.retry_after
            if retry_after is None and fault.kind == "429":
                retry_after = self.default_retry_after
        return FaultDecision(fault=fault, delay=delay, retry_after=retry_after)

    def record(self, record: RequestRecord) -> None:
        """Add a request to the log (the middleware calls this)."""
        with self._lock:
            self._log.append(record)

    def _rule(self, method: str, path: str, **kwargs: Any) -> _Rule:
        return _Rule(method=method.upper(), pattern=path, regex=compile_path(path), **kwargs)

    @staticmethod
    def _with_retry_after(fault: Fault, retry_after: float | None) -> Fault:
        if retry_after is not None and fault.kind in ("429", "503") and fault.retry_after is None:
            return Fault(kind=fault.kind, retry_after=retry_after)
        return fault
