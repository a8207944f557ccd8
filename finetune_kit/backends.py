"""Build an ``openai`` client for a backend: OpenAI, Azure OpenAI, the local backend, or any URL.

Every client built here has the ``openai`` client's own retries turned off (``max_retries=0``):
finetune_kit's retry policy does the retrying, so the two never stack.

- ``"openai"``: ``https://api.openai.com/v1`` (or ``OPENAI_BASE_URL``); key from ``api_key`` or
  ``OPENAI_API_KEY``.
- ``"azure"``: an Azure OpenAI resource, classic endpoint or v1 base URL (see
  :func:`~finetune_kit.azure.azure_openai_client`).
- ``"local"``: a running ``finetune-kit local serve`` (``FINETUNE_KIT_LOCAL_URL``, default
  ``http://127.0.0.1:8000/v1``); key from ``api_key`` or ``FINETUNE_KIT_LOCAL_API_KEY`` when the
  server wants one. To run the local backend in this process, use
  :class:`~finetune_kit.local.LocalBackend` (or ``FineTuneSession("local")``).
- a URL: any server speaking the same API; key from ``api_key`` or ``OPENAI_API_KEY``.

Examples:
    >>> client = make_client("https://llm.example.com/v1", api_key="not-a-real-key")
    >>> str(client.base_url), client.max_retries
    ('https://llm.example.com/v1/', 0)
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, Literal, overload

import openai

from ._interface import say
from .azure.client import azure_openai_client
from .errors import ConfigurationError

__all__ = ["DEFAULT_LOCAL_URL", "BackendName", "backend_kind", "make_client"]

BackendName = Literal["openai", "azure", "local"]

DEFAULT_LOCAL_URL = "http://127.0.0.1:8000/v1"
"""Where ``finetune-kit local serve`` listens unless told otherwise."""

_LOCAL_URL_ENV = "FINETUNE_KIT_LOCAL_URL"
_LOCAL_KEY_ENV = "FINETUNE_KIT_LOCAL_API_KEY"
_LOCAL_PLACEHOLDER_KEY = "local"  # the openai client insists on a key; a keyless server ignores it


def backend_kind(backend: str) -> Literal["openai", "azure", "local", "custom"]:
    """Name the kind of a backend argument: one of the three names, or ``custom`` for a URL.

    Raises:
        ConfigurationError: ``backend`` is neither a known name nor an http(s) URL.
    """
    if backend in ("openai", "azure", "local"):
        return backend  # type: ignore[return-value]  # narrowed by the membership test
    if backend.startswith(("http://", "https://")):
        return "custom"
    raise ConfigurationError(
        f"unknown backend {backend!r}: use 'openai', 'azure', 'local' or a base URL such as "
        "'https://host/v1'",
        param="backend",
    )


@overload
def make_client(
    backend: str = ...,
    *,
    api_key: str | None = ...,
    base_url: str | None = ...,
    async_: Literal[False] = ...,
    timeout: float | None = ...,
    azure_endpoint: str | None = ...,
    api_version: str | None = ...,
    azure_ad_token: str | None = ...,
    azure_ad_token_provider: Callable[[], str] | None = ...,
) -> openai.OpenAI: ...


@overload
def make_client(
    backend: str = ...,
    *,
    api_key: str | None = ...,
    base_url: str | None = ...,
    async_: Literal[True],
    timeout: float | None = ...,
    azure_endpoint: str | None = ...,
    api_version: str | None = ...,
    azure_ad_token: str | None = ...,
    azure_ad_token_provider: Callable[[], str | Awaitable[str]] | None = ...,
) -> openai.AsyncOpenAI: ...


@overload
def make_client(
    backend: str = ...,
    *,
    api_key: str | None = ...,
    base_url: str | None = ...,
    async_: bool,
    timeout: float | None = ...,
    azure_endpoint: str | None = ...,
    api_version: str | None = ...,
    azure_ad_token: str | None = ...,
    azure_ad_token_provider: Callable[[], Any] | None = ...,
) -> openai.OpenAI | openai.AsyncOpenAI: ...


def make_client(
    backend: str = "openai",
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    async_: bool = False,
    timeout: float | None = None,
    azure_endpoint: str | None = None,
    api_version: str | None = None,
    azure_ad_token: str | None = None,
    azure_ad_token_provider: Callable[[], str | Awaitable[str]] | None = None,
) -> openai.OpenAI | openai.AsyncOpenAI:
    """Build an ``openai`` client for ``backend``, with the client's own retries off.

    Args:
        backend: ``"openai"``, ``"azure"``, ``"local"`` or a base URL.
        api_key: The key (never logged); each backend falls back to its environment variable.
        base_url: Overrides the backend's URL (for ``"local"``: where the server listens; for
            ``"azure"``: the v1 base URL).
        async_: Build an ``AsyncOpenAI`` client.
        timeout: Request timeout in seconds (the ``openai`` default when ``None``).
        azure_endpoint: Azure resource endpoint (``"azure"`` only).
        api_version: Azure API version (``"azure"`` only, classic endpoint).
        azure_ad_token: Entra ID token (``"azure"`` only).
        azure_ad_token_provider: Callable returning an Entra ID token (``"azure"`` only).

    Returns:
        The client.

    Raises:
        ConfigurationError: The backend is unknown, or a parameter it needs is missing.
    """
    kind = backend_kind(backend)
    if kind == "azure":
        azure: Any = azure_openai_client  # one call for both overloads (sync and async)
        return azure(  # type: ignore[no-any-return]  # azure is Any: see the line above
            endpoint=azure_endpoint,
            api_version=api_version,
            api_key=api_key,
            azure_ad_token=azure_ad_token,
            azure_ad_token_provider=azure_ad_token_provider,
            base_url=base_url,
            async_=async_,
            timeout=timeout,
        )
    azure_only = {
        "azure_endpoint": azure_endpoint,
        "api_version": api_version,
        "azure_ad_token": azure_ad_token,
        "azure_ad_token_provider": azure_ad_token_provider,
    }
    for name, value in azure_only.items():
        if value is not None:
            raise ConfigurationError(
                f"{name} is for the 'azure' backend only, not {backend!r}", param=name
            )

    options: dict[str, Any] = {"max_retries": 0}
    if timeout is not None:
        options["timeout"] = timeout
    if kind == "local":
        options["base_url"] = base_url or os.environ.get(_LOCAL_URL_ENV) or DEFAULT_LOCAL_URL
        options["api_key"] = api_key or os.environ.get(_LOCAL_KEY_ENV) or _LOCAL_PLACEHOLDER_KEY
    else:
        if kind == "custom":
            options["base_url"] = backend if base_url is None else base_url
        elif base_url is not None:
            options["base_url"] = base_url
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if key is None:
            raise ConfigurationError(
                "no API key: "
                + say(
                    "pass api_key=... or set OPENAI_API_KEY",
                    "set OPENAI_API_KEY, or name the variable holding it with --api-key-env",
                ),
                param=say("api_key", "--api-key-env"),
            )
        options["api_key"] = key
    return openai.AsyncOpenAI(**options) if async_ else openai.OpenAI(**options)
