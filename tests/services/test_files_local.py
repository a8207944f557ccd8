"""FileUploader against the local backend over real HTTP, with fault injection."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit._upload_parts import UploadCache, sha_tag
from finetune_kit.data.dataset import Dataset
from finetune_kit.errors import ConfigurationError, PreflightFailedError, UploadError
from finetune_kit.files import AsyncFileUploader, FileUploader
from tests.fixtures.local_backend import chat_examples, write_jsonl
from tests.services.lost_responses import async_losing_client, losing_client

if TYPE_CHECKING:
    from finetune_kit.local import FaultInjector, LocalBackend


class Sleeps:
    """Records the policy's sleeps instead of waiting (faults need no real waiting)."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def policy(sleeps: Sleeps) -> RetryPolicy:
    return RetryPolicy(sleep=sleeps, async_sleep=sleeps.asleep, rng=lambda: 0.0)


def unique_rows(n: int = 12) -> list[dict[str, Any]]:
    """Chat examples with content no other test uploads (so reuse never crosses tests)."""
    tag = os.urandom(6).hex()
    return chat_examples(n, topic=f"isotope-{tag}")


@pytest.fixture
def train_path(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", unique_rows())


def files_with_tag(client: openai.OpenAI, sha256: str) -> list[Any]:
    tag = f".{sha_tag(sha256)}."
    return [f for f in client.files.list() if tag in f.filename]


@pytest.fixture
def uploader(client: openai.OpenAI, policy: RetryPolicy) -> FileUploader:
    return FileUploader(client, policy=policy, progress=False)


def test_upload_then_reuse_without_sending_again(
    uploader: FileUploader, client: openai.OpenAI, train_path: Path, local_faults: FaultInjector
) -> None:
    first = uploader.upload(train_path)
    assert not first.reused
    assert first.sha256 == hashlib.sha256(train_path.read_bytes()).hexdigest()
    assert first.filename == f"train.{first.sha256[:12]}.jsonl"
    assert first.path == train_path
    assert client.files.content(first.id).read() == train_path.read_bytes()

    second = FileUploader(client, progress=False).upload(train_path)  # a fresh process, no cache
    assert second.reused
    assert second.id == first.id
    assert local_faults.count("POST", "/v1/files") == 1
    assert len(files_with_tag(client, first.sha256)) == 1


def test_bytes_and_dataset_sources(
    uploader: FileUploader, client: openai.OpenAI, tmp_path: Path
) -> None:
    rows = unique_rows()
    data = ("\n".join(json.dumps(r) for r in rows) + "\n").encode()
    from_bytes = uploader.upload(data, filename="extra")
    assert from_bytes.filename.startswith("extra.")
    assert from_bytes.path is None
    assert client.files.content(from_bytes.id).read() == data

    dataset = Dataset.from_dicts(unique_rows())
    from_dataset = uploader.upload(dataset)
    assert from_dataset.sha256 == dataset.sha256
    assert client.files.content(from_dataset.id).read() == dataset.to_jsonl_bytes()


def test_invalid_data_is_refused_unless_forced(
    uploader: FileUploader, client: openai.OpenAI, tmp_path: Path, local_faults: FaultInjector
) -> None:
    rows: list[Any] = unique_rows()
    rows[6] = {"messages": [{"role": "user", "content": "no answer here"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(PreflightFailedError) as info:
        uploader.upload(path)
    assert "line 7" in str(info.value)
    assert not info.value.report.ok
    assert local_faults.count("POST", "/v1/files") == 0

    forced = uploader.upload(path, force=True)
    assert client.files.retrieve(forced.id).bytes == path.stat().st_size


def test_rate_limits_and_server_errors_are_retried_with_retry_after(
    uploader: FileUploader,
    client: openai.OpenAI,
    train_path: Path,
    local_faults: FaultInjector,
    sleeps: Sleeps,
) -> None:
    local_faults.script("POST", "/v1/files", ["429:2.5", "500", "503"])
    uploaded = uploader.upload(train_path)
    assert local_faults.count("POST", "/v1/files") == 4
    # Retry-After 2.5 s honoured; then the backoff of retries 2 and 3 (no jitter: rng is 0).
    assert sleeps.slept == [2.5, 1.0, 2.0]
    assert [f.id for f in files_with_tag(client, uploaded.sha256)] == [uploaded.id]


def test_dropped_connection_on_upload_leaves_exactly_one_file(
    uploader: FileUploader, client: openai.OpenAI, train_path: Path, local_faults: FaultInjector
) -> None:
    local_faults.script("POST", "/v1/files", ["drop", "drop"])
    uploaded = uploader.upload(train_path)
    assert local_faults.count("POST", "/v1/files") == 3
    assert [f.id for f in files_with_tag(client, uploaded.sha256)] == [uploaded.id]


def test_response_lost_after_the_server_stored_the_file(
    local_backend: LocalBackend, client: openai.OpenAI, policy: RetryPolicy, tmp_path: Path
) -> None:
    # Control: the SDK's own retries upload the file a second time.
    control_path = write_jsonl(tmp_path / "control.jsonl", unique_rows())
    sdk, _ = losing_client(local_backend, "POST", "/v1/files", max_retries=2)
    with sdk, open(control_path, "rb") as handle:
        sdk.files.create(file=handle, purpose="fine-tune")
    assert sum(f.filename == "control.jsonl" for f in client.files.list()) == 2

    # The uploader looks before sending again: exactly one file.
    path = write_jsonl(tmp_path / "train.jsonl", unique_rows())
    losing, transport = losing_client(local_backend, "POST", "/v1/files")
    with losing:
        uploaded = FileUploader(losing, policy=policy, progress=False).upload(path)
    assert transport.rule.lost == 1
    assert not uploaded.reused
    assert [f.id for f in files_with_tag(client, uploaded.sha256)] == [uploaded.id]


def test_large_file_goes_in_parallel_parts_with_md5(
    client: openai.OpenAI, policy: RetryPolicy, tmp_path: Path, local_faults: FaultInjector
) -> None:
    path = write_jsonl(tmp_path / "big.jsonl", unique_rows(400))
    size = path.stat().st_size
    part_size = 8 * 1024
    n_parts = -(-size // part_size)
    assert n_parts >= 4
    local_faults.script("POST", "/v1/uploads/*/parts", ["500", "drop", "429:0.1"])
    uploader = FileUploader(
        client,
        policy=policy,
        progress=False,
        multipart_threshold=16 * 1024,
        part_size=part_size,
        max_workers=3,
    )
    uploaded = uploader.upload(path)
    assert local_faults.count("POST", "/v1/files") == 0
    assert local_faults.count("POST", "/v1/uploads") == 1
    assert local_faults.count("POST", "/v1/uploads/*/parts") == n_parts + 3
    assert local_faults.count("POST", "/v1/uploads/*/complete") == 1
    assert client.files.content(uploaded.id).read() == path.read_bytes()
    assert uploaded.filename == f"big.{uploaded.sha256[:12]}.jsonl"


def test_lost_completion_of_a_multipart_upload_is_found(
    local_backend: LocalBackend, client: openai.OpenAI, policy: RetryPolicy, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "big.jsonl", unique_rows(200))
    losing, transport = losing_client(local_backend, "POST", r"/v1/uploads/[^/]+/complete")
    with losing:
        uploader = FileUploader(
            losing, policy=policy, progress=False, multipart_threshold=8 * 1024, part_size=4096
        )
        uploaded = uploader.upload(path)
    assert transport.rule.lost == 1
    assert [f.id for f in files_with_tag(client, uploaded.sha256)] == [uploaded.id]
    assert client.files.content(uploaded.id).read() == path.read_bytes()


def test_cache_file_reuses_by_id_and_notices_a_deleted_file(
    client: openai.OpenAI,
    policy: RetryPolicy,
    train_path: Path,
    local_faults: FaultInjector,
    tmp_path: Path,
) -> None:
    cache_path = tmp_path / "uploads.json"
    first = FileUploader(client, policy=policy, progress=False, cache=cache_path).upload(train_path)
    local_faults.clear_log()
    again = FileUploader(client, policy=policy, progress=False, cache=cache_path).upload(train_path)
    assert again.reused
    assert again.id == first.id
    assert local_faults.count("GET", "/v1/files/{id}") == 1  # verified by id
    assert local_faults.count("GET", "/v1/files") == 0  # no listing needed

    client.files.delete(first.id)
    fresh = FileUploader(
        client, policy=policy, progress=False, cache=UploadCache(cache_path)
    ).upload(train_path)
    assert not fresh.reused
    assert fresh.id != first.id
    assert (
        UploadCache(cache_path).get(
            UploadCache.key(str(client.base_url), "fine-tune", fresh.sha256)
        )
        == fresh.id
    )


def test_settings_and_purposes_are_checked(client: openai.OpenAI, train_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        FileUploader(client, multipart_threshold=600 * 1024 * 1024)
    assert info.value.param == "multipart_threshold"
    with pytest.raises(ConfigurationError) as info:
        FileUploader(client, progress=False).upload(train_path, purpose="training")
    assert info.value.param == "purpose"
    with pytest.raises(UploadError, match="not a file"):
        FileUploader(client, progress=False).upload(train_path.parent / "missing.jsonl")
    with pytest.raises(ConfigurationError, match="Dataset"):
        FileUploader(client, progress=False).upload(123)  # type: ignore[arg-type]


def test_async_uploader_behaves_the_same(
    local_backend: LocalBackend, policy: RetryPolicy, tmp_path: Path, local_faults: FaultInjector
) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", unique_rows())
    big = write_jsonl(tmp_path / "big.jsonl", unique_rows(200))

    async def scenario() -> tuple[Any, Any, Any, int]:
        local_faults.script("POST", "/v1/files", ["429:0.2", "drop"])
        losing, transport = async_losing_client(local_backend, "POST", "/v1/files")
        async with losing:
            uploader = AsyncFileUploader(
                losing, policy=policy, progress=False, multipart_threshold=8 * 1024, part_size=4096
            )
            first = await uploader.upload(path)
            again = await uploader.upload(path)
            parted = await uploader.upload(big)
        return first, again, parted, transport.rule.lost

    first, again, parted, lost = asyncio.run(scenario())
    with local_backend.client() as client:
        assert lost == 1
        assert again.reused
        assert again.id == first.id
        assert [f.id for f in files_with_tag(client, first.sha256)] == [first.id]
        assert client.files.content(parted.id).read() == big.read_bytes()
