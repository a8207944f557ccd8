"""/v1/models: base models and aliases, retrieve, delete refusals, and /health."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai.types import Model

from finetune_kit.local import LocalBackend


def test_models_list_base_models_and_aliases(client: openai.OpenAI) -> None:
    raw = client.models.with_raw_response.list()
    payload = json.loads(raw.text)
    assert payload["object"] == "list"
    models = [Model.model_validate(item) for item in payload["data"]]
    ids = [m.id for m in models]
    assert {"tiny-random", "smollm2-135m-instruct", "gpt-3.5-turbo", "gpt-4o-mini"} <= set(ids)
    assert len(ids) == len(set(ids))
    assert all(m.owned_by == "system" for m in models if not m.id.startswith("ft:"))


def test_retrieve_accepts_aliases_and_snapshots(client: openai.OpenAI) -> None:
    assert client.models.retrieve("gpt-4o-mini-2024-07-18").id == "gpt-4o-mini-2024-07-18"
    assert client.models.retrieve("tiny-random").object == "model"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-17")
    assert info.value.code == "model_not_found"


def test_only_fine_tuned_models_can_be_deleted(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.models.delete("gpt-4o-mini")
    assert "base model" in info.value.message
    with pytest.raises(openai.NotFoundError):
        client.models.delete("ft:tiny-random:local::gone")


def test_health_needs_nothing(local_backend: LocalBackend) -> None:
    response = httpx.get(local_backend.base_url.removesuffix("/v1") + "/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
