"""Fixtures of the services tests come from tests/fixtures (loaded by tests/conftest.py)."""
