"""Validation files: preflighted by every rule but the training file's minimum of 10 examples."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.data.dataset import Dataset
from finetune_kit.errors import ConfigurationError, PreflightFailedError
from finetune_kit.files import AsyncFileUploader, FileUploader
from tests.fixtures.local_backend import chat_examples, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import FaultInjector, LocalBackend


def rows(n: int) -> list[dict[str, Any]]:
    return chat_examples(n, topic=f"neon-{os.urandom(6).hex()}")


@pytest.fixture
def uploader(client: openai.OpenAI) -> FileUploader:
    return FileUploader(client, policy=RetryPolicy(sleep=lambda s: None), progress=False)


def test_a_small_validation_file_is_uploaded_as_validation(
    uploader: FileUploader, client: openai.OpenAI, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "valid.jsonl", rows(3))
    with pytest.raises(PreflightFailedError) as info:
        uploader.upload(path)  # as training data: too few examples
    assert [i.code for i in info.value.report.errors] == ["too_few_examples"]

    uploaded = uploader.upload(path, role="validation")
    assert client.files.content(uploaded.id).read() == path.read_bytes()

    # A Dataset too: the docs' `uploader.upload(validation_dataset, role="validation")`.
    dataset = Dataset.from_dicts(rows(2))
    from_dataset = uploader.upload(dataset, role="validation")
    assert client.files.content(from_dataset.id).read() == dataset.to_jsonl_bytes()


def test_every_other_rule_still_applies_to_validation_data(
    uploader: FileUploader, tmp_path: Path, local_faults: FaultInjector
) -> None:
    bad: list[Any] = rows(3)
    bad[1] = {"messages": [{"role": "user", "content": "no answer"}]}
    path = write_jsonl(tmp_path / "valid.jsonl", bad)
    with pytest.raises(PreflightFailedError) as info:
        uploader.upload(path, role="validation")
    codes = {i.code for i in info.value.report.errors}
    assert "too_few_examples" not in codes
    assert codes
    assert all(i.line == 2 for i in info.value.report.errors)
    assert "line 2" in str(info.value)
    assert local_faults.count("POST", "/v1/files") == 0

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(PreflightFailedError) as info:
        uploader.upload(empty, role="validation")
    assert [i.code for i in info.value.report.errors] == ["empty_file"]


def test_an_unknown_role_is_refused(uploader: FileUploader, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "valid.jsonl", rows(3))
    with pytest.raises(ConfigurationError) as info:
        uploader.upload(path, role="test")  # type: ignore[arg-type]  # the wrong value is the test
    assert info.value.param == "role"
    assert "'training' or 'validation'" in str(info.value)


def test_async_uploader_takes_the_role_too(local_backend: LocalBackend, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "valid.jsonl", rows(4))

    async def scenario() -> tuple[PreflightFailedError, Any]:
        async with local_backend.async_client() as client:
            uploader = AsyncFileUploader(
                client, policy=RetryPolicy(sleep=lambda s: None), progress=False
            )
            with pytest.raises(PreflightFailedError) as info:
                await uploader.upload(path)
            return info.value, await uploader.upload(path, role="validation")

    refused, uploaded = asyncio.run(scenario())
    assert [i.code for i in refused.report.errors] == ["too_few_examples"]
    with local_backend.client() as client:
        assert client.files.content(uploaded.id).read() == path.read_bytes()
