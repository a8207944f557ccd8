"""Shared test fixtures.

Tests talk to the real local backend over HTTP; fixtures for it live in tests/fixtures/.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.fixtures.local_backend"]

# Nothing may reach a model hub while tests run: everything they load is on disk.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Variables that would make a test talk to a real service or read a user's configuration.
_LEAKY_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "AZURE_OPENAI_ENDPOINT",
    "OPENAI_API_VERSION",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("FINETUNE_KIT_"):
            monkeypatch.delenv(name, raising=False)
