"""The same bytes uploaded with another purpose are another file (never the first one reused).

OpenAI keeps a file's purpose for life: a ``fine-tune`` file handed back for a ``batch`` upload
would be refused by the Batch API, and the other way round by ``jobs.create``. Every way the
uploader can find a file again (its cache, a tagged name) must match the purpose as well as
the content.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import openai
import pytest

from finetune_kit.files import FileUploader
from tests.fixtures.local_backend import chat_examples, write_jsonl

# (first purpose, second purpose): both directions, since either upload may come first.
ORDERS = [("fine-tune", "batch"), ("batch", "fine-tune")]


def fresh_file(tmp_path: Path) -> Path:
    """Valid chat JSONL that no other test uploads (so nothing else can be reused)."""
    rows: list[dict[str, Any]] = chat_examples(12, topic=f"purpose-{os.urandom(6).hex()}")
    return write_jsonl(tmp_path / "train.jsonl", rows)


def check_second_is_new(
    client: openai.OpenAI, first_id: str, second_id: str, second_reused: bool, purpose: str
) -> None:
    assert not second_reused
    assert second_id != first_id
    assert client.files.retrieve(second_id).purpose == purpose


@pytest.mark.parametrize(("first", "second"), ORDERS)
def test_the_cache_matches_the_purpose(
    client: openai.OpenAI, tmp_path: Path, first: str, second: str
) -> None:
    path, cache = fresh_file(tmp_path), tmp_path / "uploads.json"
    one = FileUploader(client, progress=False, cache=cache).upload(path, purpose=first)
    two = FileUploader(client, progress=False, cache=cache).upload(path, purpose=second)
    check_second_is_new(client, one.id, two.id, two.reused, second)
    # Each purpose is still found again by its own upload.
    again = FileUploader(client, progress=False, cache=cache).upload(path, purpose=first)
    assert again.reused
    assert again.id == one.id


@pytest.mark.parametrize(("first", "second"), ORDERS)
def test_a_tagged_name_matches_the_purpose(
    client: openai.OpenAI, tmp_path: Path, first: str, second: str
) -> None:
    path = fresh_file(tmp_path)
    one = FileUploader(client, progress=False, cache=False, prehash=True).upload(
        path, purpose=first
    )
    two = FileUploader(client, progress=False, cache=False).upload(path, purpose=second)
    check_second_is_new(client, one.id, two.id, two.reused, second)
