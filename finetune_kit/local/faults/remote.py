"""Steer the fault injection of a local backend running in another process, over HTTP.

The server must run with faults enabled (``finetune-kit local serve --faults`` or
``serve(faults=True)``); its private ``/_faults`` routes then exist. ``RemoteFaults`` offers the
same methods as the in-process ``FaultInjector``.

Example:
    >>> remote = RemoteFaults("http://127.0.0.1:8000/v1")
    >>> remote.admin_url
    'http://127.0.0.1:8000/_faults'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from ...errors import LocalBackendError
from .injector import Fault, FaultSpec, RequestRecord

__all__ = ["RemoteFaults"]


def _spec(fault: FaultSpec) -> str:
    if isinstance(fault, Fault):
        if fault.kind == "delay":
            return f"delay:{fault.seconds}"
        if fault.retry_after is not None:
            return f"{fault.kind}:{fault.retry_after}"
        return fault.kind
    return str(fault)


class RemoteFaults:
    """Fault injection control of a server in another process.

    Args:
        base_url: The server's base URL, with or without the trailing ``/v1``.
        api_key: The server's API key, when it has one.
        timeout: Seconds to wait for each admin request.

    Example:
        >>> RemoteFaults("http://127.0.0.1:9/v1", api_key="k")  # doctest: +ELLIPSIS
        RemoteFaults('http://127.0.0.1:9/_faults', api_key=***)
    """

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 10.0) -> None:
        root = base_url.rstrip("/")
        if root.endswith("/v1"):
            root = root[: -len("/v1")]
        self.admin_url = root + "/_faults"
        self._api_key = api_key
        self._timeout = timeout

    def __repr__(self) -> str:
        key = "***" if self._api_key else "None"
        return f"RemoteFaults({self.admin_url!r}, api_key={key})"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            response = httpx.request(
                method, self.admin_url + path, headers=headers, timeout=self._timeout, **kwargs
            )
        except httpx.HTTPError as exc:
            raise LocalBackendError(
                f"Cannot reach the fault-injection routes at {self.admin_url}: {exc}"
            ) from exc
        if response.status_code == 404:
            raise LocalBackendError(
                f"{self.admin_url} does not exist: start the server with fault injection on "
                "(serve(faults=True) or `finetune-kit local serve --faults`)."
            )
        if response.status_code >= 400:
            raise LocalBackendError(
                f"Fault-injection request failed ({response.status_code}): {response.text}"
            )
        return response.json()

    def script(
        self,
        method: str,
        path: str,
        faults: Sequence[FaultSpec],
        *,
        retry_after: float | None = None,
    ) -> None:
        """Inject these faults, one per matching request, in order (see ``FaultInjector``)."""
        self._call(
            "POST",
            "/script",
            json={
                "method": method,
                "path": path,
                "faults": [_spec(f) for f in faults],
                "retry_after": retry_after,
            },
        )

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
        self._call(
            "POST",
            "/probability",
            json={
                "method": method,
                "path": path,
                "fault": _spec(fault),
                "probability": probability,
                "retry_after": retry_after,
            },
        )

    def latency(self, method: str, path: str, seconds: float) -> None:
        """Delay every matching request by ``seconds``."""
        self._call("POST", "/latency", json={"method": method, "path": path, "seconds": seconds})

    def clear(self) -> None:
        """Remove every rule and empty the request log."""
        self._call("POST", "/clear")

    def requests(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Return the logged requests, oldest first, optionally only those matching a route."""
        params = {k: v for k, v in (("method", method), ("path", path)) if v is not None}
        payload = self._call("GET", "/requests", params=params)
        return [RequestRecord(**item) for item in payload["data"]]

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Return how many logged requests match a route."""
        return len(self.requests(method, path))
