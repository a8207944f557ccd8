"""Azure OpenAI: build an ``openai`` client for an Azure resource; Azure's suffix limit.

Fine-tuning on Azure OpenAI uses the same calls as on OpenAI (``client.files.create``,
``client.fine_tuning.jobs.create``...); only the client differs. Two ways to reach a resource:

* the classic endpoint, ``https://RES.openai.azure.com/``, with an ``api_version`` sent as the
  ``api-version`` query parameter: an ``openai.AzureOpenAI`` client;
* the GA "v1" API, ``https://RES.openai.azure.com/openai/v1/``, which needs no api-version: a
  plain ``openai.OpenAI`` client pointed at that base URL.

Either way the client has the ``openai`` client's own retries off (``max_retries=0``), because
finetune_kit's retry policy does the retrying. A fine-tuned model must then be deployed before it
answers: see :mod:`finetune_kit.azure.deployer`.

Examples:
    >>> client = azure_openai_client(
    ...     endpoint="https://my-resource.openai.azure.com/",
    ...     api_version="2024-10-21",
    ...     api_key="not-a-real-key",
    ... )
    >>> str(client.base_url)
    'https://my-resource.openai.azure.com/openai/'
    >>> client.max_retries
    0
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, Literal, overload
from urllib.parse import urlsplit

import openai

from ..errors import ConfigurationError

__all__ = [
    "AZURE_SUFFIX_MAX_LENGTH",
    "azure_openai_client",
]

logger = logging.getLogger("finetune_kit.azure")

AZURE_SUFFIX_MAX_LENGTH = 18
"""Azure OpenAI accepts a fine-tuning ``suffix`` of at most this many characters.

:func:`finetune_kit.jobs.options.check_suffix` applies it when ``provider="azure"``.
"""

_ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"
_API_KEY_ENV = "AZURE_OPENAI_API_KEY"
_AD_TOKEN_ENV = "AZURE_OPENAI_AD_TOKEN"
_API_VERSION_ENV = "OPENAI_API_VERSION"

_CREDENTIAL_HELP = (
    "pass one of api_key=, azure_ad_token= or azure_ad_token_provider=, or set the "
    f"{_API_KEY_ENV} or {_AD_TOKEN_ENV} environment variable"
)


def _env(name: str) -> str | None:
    # An empty variable is as good as unset: it is a common leftover of `export X=`.
    value = os.environ.get(name)
    return value or None


def _is_v1_base_url(url: str) -> bool:
    return urlsplit(url).path.rstrip("/").endswith("/openai/v1")


def _check_url(url: str, param: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"{param}={url!r} is not an http(s) URL; pass the resource's URL, such as "
            "'https://my-resource.openai.azure.com/'",
            param=param,
        )
    if parts.username or parts.password:
        raise ConfigurationError(
            f"{param} must not carry credentials in the URL; pass api_key= instead",
            param=param,
        )
    return url


def _resolve_credential(
    api_key: str | None,
    azure_ad_token: str | None,
    azure_ad_token_provider: Callable[[], Any] | None,
) -> tuple[str | None, str | None, Callable[[], Any] | None]:
    given = [
        name
        for name, value in (
            ("api_key", api_key),
            ("azure_ad_token", azure_ad_token),
            ("azure_ad_token_provider", azure_ad_token_provider),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise ConfigurationError(
            f"{' and '.join(given)} were both given, but they are mutually exclusive: "
            "pass exactly one credential",
            param=given[1],
        )
    for name, value in (("api_key", api_key), ("azure_ad_token", azure_ad_token)):
        if value is not None and not value.strip():
            raise ConfigurationError(f"{name} is empty; {_CREDENTIAL_HELP}", param=name)
    if given:
        return api_key, azure_ad_token, azure_ad_token_provider
    # Same precedence as openai.AzureOpenAI: an AD token in the environment wins over a key.
    env_token = _env(_AD_TOKEN_ENV)
    if env_token is not None:
        logger.debug("Azure credential: Entra ID token from %s", _AD_TOKEN_ENV)
        return None, env_token, None
    env_key = _env(_API_KEY_ENV)
    if env_key is not None:
        logger.debug("Azure credential: api key from %s", _API_KEY_ENV)
        return env_key, None, None
    raise ConfigurationError(
        f"Azure OpenAI needs a credential: {_CREDENTIAL_HELP}", param="api_key"
    )


def _async_token_provider(
    provider: Callable[[], str | Awaitable[str]],
) -> Callable[[], Awaitable[str]]:
    # openai.AsyncOpenAI awaits a callable api_key; a sync provider (the usual
    # azure-identity get_bearer_token_provider) is wrapped so both kinds work.
    async def provide() -> str:
        token = provider()
        if isinstance(token, Awaitable):
            token = await token
        return token

    return provide


@overload
def azure_openai_client(
    *,
    endpoint: str | None = ...,
    api_version: str | None = ...,
    api_key: str | None = ...,
    azure_ad_token: str | None = ...,
    azure_ad_token_provider: Callable[[], str] | None = ...,
    base_url: str | None = ...,
    async_: Literal[False] = ...,
    timeout: float | None = ...,
    default_headers: dict[str, str] | None = ...,
) -> openai.OpenAI: ...


@overload
def azure_openai_client(
    *,
    endpoint: str | None = ...,
    api_version: str | None = ...,
    api_key: str | None = ...,
    azure_ad_token: str | None = ...,
    azure_ad_token_provider: Callable[[], str | Awaitable[str]] | None = ...,
    base_url: str | None = ...,
    async_: Literal[True],
    timeout: float | None = ...,
    default_headers: dict[str, str] | None = ...,
) -> openai.AsyncOpenAI: ...


def azure_openai_client(
    *,
    endpoint: str | None = None,
    api_version: str | None = None,
    api_key: str | None = None,
    azure_ad_token: str | None = None,
    azure_ad_token_provider: Callable[[], str | Awaitable[str]] | None = None,
    base_url: str | None = None,
    async_: bool = False,
    timeout: float | None = None,
    default_headers: dict[str, str] | None = None,
) -> openai.OpenAI | openai.AsyncOpenAI:
    """Build an ``openai`` client for an Azure OpenAI resource, with its own retries off.

    Classic endpoint: give ``endpoint`` (or ``AZURE_OPENAI_ENDPOINT``) and ``api_version`` (or
    ``OPENAI_API_VERSION``); the result is an ``openai.AzureOpenAI`` (``AsyncAzureOpenAI`` with
    ``async_=True``) sending the key in the ``api-key`` header, or an Entra ID token as
    ``Authorization: Bearer``, and ``api-version`` as a query parameter, to
    ``{endpoint}/openai/...``.

    v1 API: give ``base_url="https://RES.openai.azure.com/openai/v1/"`` (an ``endpoint`` whose
    path ends in ``/openai/v1`` is taken as one too); the result is a plain ``openai.OpenAI``
    (``AsyncOpenAI``), the way Microsoft's v1 docs set it up: the key, token or token provider is
    its ``api_key`` and is sent as ``Authorization: Bearer``. No api-version is needed; one given
    explicitly is sent as the ``api-version`` query parameter, ``OPENAI_API_VERSION`` is ignored.
    A ``base_url`` not ending in ``/openai/v1`` (a gateway in front of the classic API) gets an
    ``AzureOpenAI`` client and needs an api-version.

    Credentials are mutually exclusive. With none given, ``AZURE_OPENAI_AD_TOKEN`` is used, else
    ``AZURE_OPENAI_API_KEY`` (the ``openai`` client's own precedence). A token provider is called
    before every request, so a token that expires is refreshed.

    Args:
        endpoint: The resource endpoint, such as ``https://my-resource.openai.azure.com/``.
        api_version: The data-plane API version, such as ``"2024-10-21"``.
        api_key: The resource's key (never logged or shown).
        azure_ad_token: A Microsoft Entra ID token for scope
            ``https://cognitiveservices.azure.com/.default``.
        azure_ad_token_provider: A callable returning such a token, called per request; for
            example ``azure.identity.get_bearer_token_provider(DefaultAzureCredential(),
            "https://cognitiveservices.azure.com/.default")``. With ``async_=True`` it may return
            an awaitable.
        base_url: The v1 base URL, ``https://RES.openai.azure.com/openai/v1/``.
        async_: Build the async client.
        timeout: Request timeout in seconds; the ``openai`` default when ``None``.
        default_headers: Extra headers sent with every request.

    Returns:
        An ``openai.AzureOpenAI`` / ``openai.OpenAI`` client (their async twins with
        ``async_=True``), with ``max_retries=0``.

    Raises:
        ConfigurationError: A parameter is missing (naming it and its environment variable),
            two credentials were given, or a URL is not usable.

    Examples:
        >>> client = azure_openai_client(
        ...     base_url="https://my-resource.openai.azure.com/openai/v1/", api_key="not-a-real-key"
        ... )
        >>> type(client).__name__, str(client.base_url)
        ('OpenAI', 'https://my-resource.openai.azure.com/openai/v1/')
    """
    if endpoint is not None and base_url is not None:
        raise ConfigurationError(
            "endpoint and base_url are mutually exclusive: pass endpoint= (with api_version=) "
            "for the classic API, or base_url='https://RES.openai.azure.com/openai/v1/' for v1",
            param="base_url",
        )
    if base_url is None and endpoint is not None and _is_v1_base_url(endpoint):
        logger.debug("endpoint ends in /openai/v1: using it as the v1 base URL")
        base_url, endpoint = endpoint, None
    key, ad_token, provider = _resolve_credential(api_key, azure_ad_token, azure_ad_token_provider)

    options: dict[str, Any] = {"max_retries": 0}
    if timeout is not None:
        options["timeout"] = timeout
    if default_headers:
        options["default_headers"] = default_headers

    if base_url is not None and _is_v1_base_url(_check_url(base_url, "base_url")):
        if api_version is not None:
            options["default_query"] = {"api-version": api_version}
        elif _env(_API_VERSION_ENV) is not None:
            logger.debug("v1 base URL: %s ignored, the v1 API needs no version", _API_VERSION_ENV)
        return _v1_client(base_url, key, ad_token, provider, async_=async_, options=options)

    version = api_version or _env(_API_VERSION_ENV)
    if version is None:
        raise ConfigurationError(
            "Azure OpenAI's classic API needs an api version: pass api_version='2024-10-21' (or "
            f"newer) or set {_API_VERSION_ENV}; or use the v1 API, which needs none, with "
            "base_url='https://RES.openai.azure.com/openai/v1/'",
            param="api_version",
        )
    options["api_version"] = version
    if base_url is not None:
        options["base_url"] = base_url
    else:
        resolved_endpoint = endpoint or _env(_ENDPOINT_ENV)
        if resolved_endpoint is None:
            raise ConfigurationError(
                "Azure OpenAI needs an endpoint: pass endpoint='https://RES.openai.azure.com/' or "
                f"set {_ENDPOINT_ENV}; or pass base_url='https://RES.openai.azure.com/openai/v1/' "
                "for the v1 API",
                param="endpoint",
            )
        options["azure_endpoint"] = _classic_endpoint(_check_url(resolved_endpoint, "endpoint"))

    if key is not None:
        options["api_key"] = key
    elif ad_token is not None:
        options["azure_ad_token"] = ad_token
    else:
        options["azure_ad_token_provider"] = provider
    if async_:
        return openai.AsyncAzureOpenAI(**options)
    return openai.AzureOpenAI(**options)


def _classic_endpoint(endpoint: str) -> str:
    # AzureOpenAI appends /openai itself; an endpoint copied with it would give /openai/openai.
    stripped = endpoint.rstrip("/")
    if stripped.endswith("/openai"):
        logger.debug("endpoint ends in /openai: dropped it, the client adds it")
        return stripped[: -len("/openai")] + "/"
    return endpoint


def _v1_client(
    base_url: str,
    key: str | None,
    ad_token: str | None,
    provider: Callable[[], Any] | None,
    *,
    async_: bool,
    options: dict[str, Any],
) -> openai.OpenAI | openai.AsyncOpenAI:
    credential: Any = key if key is not None else ad_token
    if async_:
        if provider is not None:
            credential = _async_token_provider(provider)
        return openai.AsyncOpenAI(base_url=base_url, api_key=credential, **options)
    if provider is not None:
        credential = provider
    return openai.OpenAI(base_url=base_url, api_key=credential, **options)
