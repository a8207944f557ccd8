from __future__ import annotations

from typing import TYPE_CHECKING

import openai
import pytest

from finetune_kit.backends import DEFAULT_LOCAL_URL, backend_kind, make_client
from finetune_kit.errors import ConfigurationError

if TYPE_CHECKING:
    from finetune_kit.local import LocalBackend


def test_every_built_client_has_its_own_retries_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    clients = [
        make_client("openai"),
        make_client("local"),
        make_client("https://llm.example.com/v1", api_key="k"),
        make_client(
            "azure",
            azure_endpoint="https://r.openai.azure.com/",
            api_version="2024-10-21",
            api_key="k",
        ),
        make_client("openai", async_=True),
    ]
    assert [c.max_retries for c in clients] == [0, 0, 0, 0, 0]
    assert isinstance(clients[3], openai.AzureOpenAI)
    assert isinstance(clients[4], openai.AsyncOpenAI)
    assert str(clients[1].base_url) == DEFAULT_LOCAL_URL + "/"


def test_missing_key_and_misplaced_options_name_the_parameter() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY") as info:
        make_client("openai")
    assert info.value.param == "api_key"
    with pytest.raises(ConfigurationError, match="azure") as info:
        make_client("openai", api_key="k", api_version="2024-10-21")
    assert info.value.param == "api_version"
    with pytest.raises(ConfigurationError, match="unknown backend 'opneai'") as info:
        backend_kind("opneai")
    assert info.value.param == "backend"


def test_local_backend_reachable_through_its_url(
    local_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_URL", local_backend.base_url)
    client = make_client("local")
    ids = [m.id for m in client.models.list()]
    assert "tiny-random" in ids
