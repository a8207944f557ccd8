"""Fixtures of the services tests: the local backend (from tests/fixtures) and fault helpers."""

from __future__ import annotations

# The local backend's fixtures, for this folder (see tests/fixtures/local_backend.py).
from tests.fixtures.local_backend import (  # noqa: F401  (fixtures are used by name)
    _reset_local_backend_faults,
    async_client,
    chat_training_file,
    client,
    local_backend,
    local_faults,
)
