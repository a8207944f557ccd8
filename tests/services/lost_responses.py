"""An HTTP transport that delivers a request for real, then loses the server's response.

The local backend's fault injection drops a connection *before* handling the request. The
ambiguous case a client must survive is the other one: the server acted (stored the file,
created the job) and the connection went before the answer arrived. No server can be asked to
do that reliably, so this wrapper around the real transport sends the request over real HTTP,
reads and discards the response, and raises the error a dropped connection raises.
"""

from __future__ import annotations

import re
from typing import Any

import httpx2
import openai


class _Rule:
    def __init__(self, method: str, path: str, times: int) -> None:
        self.method = method.upper()
        self.path = re.compile(path)
        self.remaining = times
        self.lost = 0

    def take(self, request: httpx2.Request) -> bool:
        if self.remaining <= 0 or request.method != self.method:
            return False
        if not self.path.fullmatch(request.url.path):
            return False
        self.remaining -= 1
        self.lost += 1
        return True


def _lost(request: httpx2.Request) -> httpx2.RemoteProtocolError:
    return httpx2.RemoteProtocolError(
        "Server disconnected without sending a response.", request=request
    )


class LosingTransport(httpx2.BaseTransport):
    """Loses the response of the next ``times`` requests matching ``method`` and ``path``."""

    def __init__(self, method: str, path: str, times: int = 1) -> None:
        self.rule = _Rule(method, path, times)
        self._inner = httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._inner.handle_request(request)
        if self.rule.take(request):
            response.read()
            response.close()
            raise _lost(request)
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncLosingTransport(httpx2.AsyncBaseTransport):
    """The async twin of :class:`LosingTransport`."""

    def __init__(self, method: str, path: str, times: int = 1) -> None:
        self.rule = _Rule(method, path, times)
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if self.rule.take(request):
            await response.aread()
            await response.aclose()
            raise _lost(request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def losing_client(
    backend: Any, method: str, path: str, times: int = 1, **kwargs: Any
) -> tuple[openai.OpenAI, LosingTransport]:
    """An ``openai.OpenAI`` for the backend whose matching responses get lost."""
    transport = LosingTransport(method, path, times)
    client = backend.client(http_client=httpx2.Client(transport=transport), **kwargs)
    return client, transport


def async_losing_client(
    backend: Any, method: str, path: str, times: int = 1, **kwargs: Any
) -> tuple[openai.AsyncOpenAI, AsyncLosingTransport]:
    """An ``openai.AsyncOpenAI`` for the backend whose matching responses get lost."""
    transport = AsyncLosingTransport(method, path, times)
    client = backend.async_client(http_client=httpx2.AsyncClient(transport=transport), **kwargs)
    return client, transport
