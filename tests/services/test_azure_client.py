"""The Azure OpenAI client factory, against a fake Azure OpenAI data plane on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest

from finetune_kit.azure import AZURE_SUFFIX_MAX_LENGTH, azure_openai_client
from finetune_kit.errors import ConfigurationError
from finetune_kit.jobs.options import check_suffix, detect_provider
from tests.fixtures.fake_arm import FakeAzureOpenAIServer

KEY = "azure-key-1"


@pytest.fixture
def aoai() -> Iterator[FakeAzureOpenAIServer]:
    with FakeAzureOpenAIServer(api_key=KEY, tokens={"entra-1", "entra-2"}) as server:
        yield server


def test_classic_endpoint_sends_api_key_header_and_api_version_query(
    aoai: FakeAzureOpenAIServer,
) -> None:
    client = azure_openai_client(endpoint=aoai.url, api_version="2024-10-21", api_key=KEY)

    assert isinstance(client, openai.AzureOpenAI)
    assert client.max_retries == 0
    assert list(client.fine_tuning.jobs.list()) == []
    assert list(client.files.list()) == []

    assert aoai.violations == []
    assert [r.path for r in aoai.requests] == ["/openai/fine_tuning/jobs", "/openai/files"]
    for request in aoai.requests:
        assert request.query["api-version"] == ["2024-10-21"]
        assert request.headers["api-key"] == KEY
        assert "authorization" not in request.headers


def test_classic_endpoint_with_entra_token_sends_bearer_and_no_key(
    aoai: FakeAzureOpenAIServer,
) -> None:
    client = azure_openai_client(
        endpoint=aoai.url + "/", api_version="2024-10-21", azure_ad_token="entra-1"
    )

    assert list(client.fine_tuning.jobs.list()) == []

    (request,) = aoai.requests
    assert request.headers["authorization"] == "Bearer entra-1"
    assert "api-key" not in request.headers
    assert aoai.violations == []


def test_token_provider_is_called_per_request_so_a_refreshed_token_is_used(
    aoai: FakeAzureOpenAIServer,
) -> None:
    tokens = iter(["entra-1", "entra-2"])
    client = azure_openai_client(
        endpoint=aoai.url, api_version="2024-10-21", azure_ad_token_provider=lambda: next(tokens)
    )

    list(client.fine_tuning.jobs.list())
    list(client.files.list())

    assert [r.headers["authorization"] for r in aoai.requests] == [
        "Bearer entra-1",
        "Bearer entra-2",
    ]
    assert aoai.violations == []


def test_environment_variables_configure_the_classic_client(
    aoai: FakeAzureOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", aoai.url)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_VERSION", "2025-04-01-preview")

    client = azure_openai_client()

    assert list(client.files.list()) == []
    (request,) = aoai.requests
    assert request.headers["api-key"] == KEY
    assert request.query["api-version"] == ["2025-04-01-preview"]


def test_ad_token_in_environment_wins_over_key_like_the_openai_client(
    aoai: FakeAzureOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", "entra-2")

    client = azure_openai_client(endpoint=aoai.url, api_version="2024-10-21")

    list(client.files.list())
    (request,) = aoai.requests
    assert request.headers["authorization"] == "Bearer entra-2"
    assert "api-key" not in request.headers


def test_endpoint_copied_with_openai_path_is_not_doubled(aoai: FakeAzureOpenAIServer) -> None:
    client = azure_openai_client(
        endpoint=aoai.url + "/openai/", api_version="2024-10-21", api_key=KEY
    )

    list(client.files.list())

    assert [r.path for r in aoai.requests] == ["/openai/files"]


def test_async_classic_client(aoai: FakeAzureOpenAIServer) -> None:
    async def provider() -> str:
        return "entra-2"

    client = azure_openai_client(
        endpoint=aoai.url, api_version="2024-10-21", azure_ad_token_provider=provider, async_=True
    )
    assert isinstance(client, openai.AsyncAzureOpenAI)
    assert client.max_retries == 0

    async def run() -> list[object]:
        return [job async for job in client.fine_tuning.jobs.list()]

    assert asyncio.run(run()) == []
    (request,) = aoai.requests
    assert request.headers["authorization"] == "Bearer entra-2"
    assert request.query["api-version"] == ["2024-10-21"]


def test_v1_base_url_gives_a_plain_openai_client_without_api_version(
    aoai: FakeAzureOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")  # ignored by the v1 API
    client = azure_openai_client(base_url=aoai.url + "/openai/v1/", api_key=KEY)

    assert type(client) is openai.OpenAI
    assert client.max_retries == 0
    assert list(client.fine_tuning.jobs.list()) == []

    (request,) = aoai.requests
    assert request.path == "/openai/v1/fine_tuning/jobs"
    assert "api-version" not in request.query
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert aoai.violations == []


def test_v1_url_given_as_endpoint_is_taken_as_base_url(aoai: FakeAzureOpenAIServer) -> None:
    client = azure_openai_client(endpoint=aoai.url + "/openai/v1", azure_ad_token="entra-1")

    assert type(client) is openai.OpenAI
    list(client.files.list())
    assert [r.path for r in aoai.requests] == ["/openai/v1/files"]


def test_v1_async_client_with_a_sync_token_provider_refreshes_per_request(
    aoai: FakeAzureOpenAIServer,
) -> None:
    tokens = iter(["entra-1", "entra-2"])
    client = azure_openai_client(
        base_url=aoai.url + "/openai/v1/", azure_ad_token_provider=lambda: next(tokens), async_=True
    )
    assert type(client) is openai.AsyncOpenAI

    async def run() -> None:
        [job async for job in client.fine_tuning.jobs.list()]
        [f async for f in client.files.list()]

    asyncio.run(run())
    assert [r.headers["authorization"] for r in aoai.requests] == [
        "Bearer entra-1",
        "Bearer entra-2",
    ]


def test_client_does_not_retry_by_itself(aoai: FakeAzureOpenAIServer) -> None:
    # Retrying is the shared retry policy's job: the client must make exactly one attempt.
    client = azure_openai_client(endpoint=aoai.url, api_version="2024-10-21", api_key="wrong-key")

    with pytest.raises(openai.AuthenticationError):
        list(client.files.list())
    assert len(aoai.requests) == 1


@pytest.mark.parametrize(
    ("kwargs", "param", "names"),
    [
        (
            {"api_version": "2024-10-21", "api_key": KEY},
            "endpoint",
            ["endpoint=", "AZURE_OPENAI_ENDPOINT", "base_url="],
        ),
        (
            {"endpoint": "https://r.openai.azure.com/", "api_key": KEY},
            "api_version",
            ["api_version=", "OPENAI_API_VERSION", "v1"],
        ),
        (
            {"endpoint": "https://r.openai.azure.com/", "api_version": "2024-10-21"},
            "api_key",
            ["AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN", "azure_ad_token_provider="],
        ),
        (
            {"base_url": "https://r.openai.azure.com/openai/v1/"},
            "api_key",
            ["AZURE_OPENAI_API_KEY"],
        ),
        (
            {"endpoint": "https://r.openai.azure.com/", "api_version": "v", "api_key": ""},
            "api_key",
            ["api_key is empty"],
        ),
        (
            {"endpoint": "r.openai.azure.com", "api_version": "v", "api_key": KEY},
            "endpoint",
            ["not an http(s) URL"],
        ),
        (
            {
                "endpoint": "https://r.openai.azure.com/",
                "base_url": "https://r.openai.azure.com/openai/v1/",
                "api_key": KEY,
            },
            "base_url",
            ["mutually exclusive"],
        ),
    ],
)
def test_missing_or_wrong_parameters_are_named(
    kwargs: dict[str, str], param: str, names: list[str]
) -> None:
    with pytest.raises(ConfigurationError) as info:
        azure_openai_client(**kwargs)  # type: ignore[call-overload]

    assert info.value.param == param
    for name in names:
        assert name in str(info.value)
    assert KEY not in str(info.value)


def test_two_credentials_are_refused_without_showing_them() -> None:
    with pytest.raises(ConfigurationError, match="mutually exclusive") as info:
        azure_openai_client(
            endpoint="https://r.openai.azure.com/",
            api_version="2024-10-21",
            api_key=KEY,
            azure_ad_token="entra-secret",
        )

    assert "api_key and azure_ad_token" in str(info.value)
    assert KEY not in str(info.value)
    assert "entra-secret" not in str(info.value)


def test_empty_environment_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "")

    with pytest.raises(ConfigurationError) as info:
        azure_openai_client(endpoint="https://r.openai.azure.com/", api_version="2024-10-21")
    assert info.value.param == "api_key"


def test_key_is_not_in_the_clients_repr() -> None:
    client = azure_openai_client(
        endpoint="https://r.openai.azure.com/", api_version="2024-10-21", api_key=KEY
    )

    assert KEY not in repr(client)


def test_azure_suffix_limit_applies_to_azure_clients() -> None:
    classic = azure_openai_client(
        endpoint="https://r.openai.azure.com/", api_version="2024-10-21", api_key=KEY
    )
    v1 = azure_openai_client(base_url="https://r.openai.azure.com/openai/v1/", api_key=KEY)
    assert detect_provider(classic) == detect_provider(v1) == "azure"

    assert AZURE_SUFFIX_MAX_LENGTH == 18
    assert check_suffix("a" * 18, provider="azure") == "a" * 18
    with pytest.raises(ConfigurationError, match="19 characters") as info:
        check_suffix("support-bot-2026-v1", provider="azure")
    assert info.value.param == "suffix"
