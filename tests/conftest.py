"""Shared test fixtures.

Tests talk to the real local backend over HTTP; fixtures for it live in tests/fixtures/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.local_backend", "tests.fixtures.ray_cluster"]

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
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in _LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("FINETUNE_KIT_"):
            monkeypatch.delenv(name, raising=False)
    # The uploader remembers uploads in the user's cache folder; each test keeps its own.
    monkeypatch.setenv("FINETUNE_KIT_CACHE_DIR", str(tmp_path / "finetune_kit-cache"))
    # The local backend's default data folder is in the user's data folder; likewise.
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_DATA_DIR", str(tmp_path / "finetune_kit-local"))
