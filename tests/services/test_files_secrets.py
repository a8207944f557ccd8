"""A base URL's credentials or query never reach the uploader's repr or its cache file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import openai
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.files import AsyncFileUploader, FileUploader
from finetune_kit.files.parts import UploadCache
from tests.fixtures.local_backend import chat_examples, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import LocalBackend

SECRETS = ("s3cret", "token=abc", "user:")


def with_credentials(base_url: str) -> str:
    return base_url.replace("http://", "http://user:s3cret@", 1)


def test_repr_shows_neither_userinfo_nor_query() -> None:
    url = "https://user:s3cret@proxy.example:8443/v1?token=abc"
    sync = FileUploader(openai.OpenAI(base_url=url, api_key="sk-x"), cache=False)
    async_ = AsyncFileUploader(openai.AsyncOpenAI(base_url=url, api_key="sk-x"), cache=False)
    for uploader in (sync, async_):
        shown = repr(uploader)
        assert "proxy.example:8443/v1" in shown
        for secret in (*SECRETS, "sk-x"):
            assert secret not in shown


def test_cache_file_of_a_real_upload_holds_no_credentials(
    local_backend: LocalBackend, tmp_path: Path
) -> None:
    cache_path = tmp_path / "uploads.json"
    path = write_jsonl(
        tmp_path / "train.jsonl", chat_examples(12, topic=f"xenon-{os.urandom(6).hex()}")
    )
    with openai.OpenAI(
        base_url=with_credentials(local_backend.base_url),
        api_key=local_backend.api_key,
        max_retries=0,
    ) as client:
        uploader = FileUploader(
            client, policy=RetryPolicy(sleep=lambda s: None), progress=False, cache=cache_path
        )
        first = uploader.upload(path)
        text = cache_path.read_text()
        assert first.id in text  # the cache was written...
        for secret in SECRETS:
            assert secret not in text  # ...without the URL's secret
        # The public key still finds the file: a second run reuses it from the cache.
        again = FileUploader(client, progress=False, cache=cache_path).upload(path)
    assert again.reused
    assert again.id == first.id


def test_an_old_cache_file_is_rewritten_without_the_secret(tmp_path: Path) -> None:
    cache_path = tmp_path / "uploads.json"
    leaky = "https://user:s3cret@proxy.example/v1?token=abc|fine-tune|" + "ab" * 32
    cache_path.write_text(
        json.dumps(
            {
                "version": 1,
                "files": {leaky: "file-1"},
                "digests": {"/data/train.jsonl|10|1|2|3": ["cd" * 32, 100.0]},
            }
        )
    )
    cache = UploadCache(cache_path)
    text = cache_path.read_text()
    for secret in SECRETS:
        assert secret not in text
    assert cache.get(UploadCache.key("https://proxy.example/v1", "fine-tune", "ab" * 32)) == (
        "file-1"
    )
    assert json.loads(text)["digests"] == {"/data/train.jsonl|10|1|2|3": ["cd" * 32, 100.0]}


@pytest.mark.parametrize(
    "url",
    [
        "https://user:s3cret@proxy.example/v1?token=abc",
        "https://proxy.example/v1/?token=abc",
        "https://PROXY.example/v1",
    ],
)
def test_cache_keys_of_one_backend_agree(url: str) -> None:
    assert UploadCache.key(url, "fine-tune", "ab") == "https://proxy.example/v1|fine-tune|ab"
