"""Fixtures of the services tests: the local backend (from tests/fixtures), a private cache."""

from __future__ import annotations

from pathlib import Path

import pytest

# The local backend's fixtures, for this folder (see tests/fixtures/local_backend.py).
from tests.fixtures.local_backend import (  # noqa: F401  (fixtures are used by name)
    _reset_local_backend_faults,
    async_client,
    chat_training_file,
    client,
    local_backend,
    local_faults,
)


@pytest.fixture(autouse=True)
def _private_upload_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The uploader's default cache lives in the user's cache folder; tests keep their own.
    monkeypatch.setenv("FINETUNE_KIT_CACHE_DIR", str(tmp_path / "finetune_kit-cache"))
