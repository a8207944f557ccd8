"""FileUploader against the local backend over real HTTP, with fault injection."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.data.dataset import Dataset
from finetune_kit.errors import ConfigurationError, PreflightFailedError, UploadError
from finetune_kit.files import AsyncFileUploader, FileUploader
from finetune_kit.files.parts import UploadCache
from tests.fixtures.local_backend import chat_examples, write_jsonl

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


def copies(client: openai.OpenAI, content: bytes) -> list[str]:
    """Ids of the remote files holding exactly this content, whatever their names."""
    return [
        f.id
        for f in client.files.list()
        if f.bytes == len(content) and client.files.content(f.id).read() == content
    ]


def age(path: Path, seconds: float = 60) -> Path:
    """Make a file look written a while ago (a digest of a just-written file is not cached)."""
    stat = path.stat()
    os.utime(path, (stat.st_atime - seconds, stat.st_mtime - seconds))
    return path


@pytest.fixture
def uploader(client: openai.OpenAI, policy: RetryPolicy) -> FileUploader:
    return FileUploader(client, policy=policy, progress=False)


def test_upload_then_reuse_without_sending_again(
    uploader: FileUploader, client: openai.OpenAI, tmp_path: Path, local_faults: FaultInjector
) -> None:
    train_path = write_jsonl(tmp_path / "train.jsonl", unique_rows(13))  # a size no one else has
    first = uploader.upload(train_path)
    assert not first.reused
    assert first.sha256 == hashlib.sha256(train_path.read_bytes()).hexdigest()
    # Nothing of that size was on the backend: hashed while sent, under a unique name.
    assert re.fullmatch(r"train\.u[0-9a-f]{11}\.jsonl", first.filename)
    assert first.path == train_path
    assert client.files.content(first.id).read() == train_path.read_bytes()

    second = FileUploader(client, progress=False).upload(train_path)  # another run, same cache
    assert second.reused
    assert second.id == first.id
    assert local_faults.count("POST", "/v1/files") == 1
    assert copies(client, train_path.read_bytes()) == [first.id]


def test_tagged_names_let_a_run_without_the_cache_find_the_file(
    client: openai.OpenAI, tmp_path: Path, local_faults: FaultInjector
) -> None:
    train_path = write_jsonl(tmp_path / "train.jsonl", unique_rows(14))
    first = FileUploader(client, progress=False, cache=False, prehash=True).upload(train_path)
    assert first.filename == f"train.{first.sha256[:12]}.jsonl"
    elsewhere = FileUploader(client, progress=False, cache=False).upload(train_path)
    assert elsewhere.reused
    assert elsewhere.id == first.id
    assert local_faults.count("POST", "/v1/files") == 1


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
    assert copies(client, train_path.read_bytes()) == [uploaded.id]


def test_dropped_connection_on_upload_leaves_exactly_one_file(
    uploader: FileUploader, client: openai.OpenAI, train_path: Path, local_faults: FaultInjector
) -> None:
    local_faults.script("POST", "/v1/files", ["drop", "drop"])
    uploaded = uploader.upload(train_path)
    assert local_faults.count("POST", "/v1/files") == 3
    assert copies(client, train_path.read_bytes()) == [uploaded.id]


def test_response_lost_after_the_server_stored_the_file(
    local_backend: LocalBackend,
    client: openai.OpenAI,
    policy: RetryPolicy,
    tmp_path: Path,
    local_faults: FaultInjector,
) -> None:
    # Control: the SDK's own retries upload the file a second time.
    control_path = write_jsonl(tmp_path / "control.jsonl", unique_rows())
    local_faults.script("POST", "/v1/files", ["drop-after"])
    with local_backend.client(max_retries=2) as sdk, open(control_path, "rb") as handle:
        sdk.files.create(file=handle, purpose="fine-tune")
    assert sum(f.filename == "control.jsonl" for f in client.files.list()) == 2

    # The uploader looks before sending again: exactly one file.
    local_faults.clear_log()
    path = write_jsonl(tmp_path / "train.jsonl", unique_rows())
    local_faults.script("POST", "/v1/files", ["drop-after"])
    uploaded = FileUploader(client, policy=policy, progress=False).upload(path)
    assert not uploaded.reused
    assert copies(client, path.read_bytes()) == [uploaded.id]
    # One POST, which the server handled; the file was found, not sent again.
    assert [(r.fault, r.status) for r in local_faults.requests("POST", "/v1/files")] == [
        ("drop-after", 200)
    ]


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
    assert copies(client, path.read_bytes()) == [uploaded.id]
    assert uploaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_lost_completion_of_a_multipart_upload_is_found(
    client: openai.OpenAI, policy: RetryPolicy, tmp_path: Path, local_faults: FaultInjector
) -> None:
    path = write_jsonl(tmp_path / "big.jsonl", unique_rows(200))
    local_faults.script("POST", "/v1/uploads/{id}/complete", ["drop-after"])
    uploader = FileUploader(
        client, policy=policy, progress=False, multipart_threshold=8 * 1024, part_size=4096
    )
    uploaded = uploader.upload(path)
    assert copies(client, path.read_bytes()) == [uploaded.id]
    # The server completed the upload; the file was found instead of completing it again.
    completions = local_faults.requests("POST", "/v1/uploads/{id}/complete")
    assert [(r.fault, r.status) for r in completions] == [("drop-after", 200)]


def test_cache_file_reuses_by_id_and_notices_a_deleted_file(
    client: openai.OpenAI,
    policy: RetryPolicy,
    train_path: Path,
    local_faults: FaultInjector,
    tmp_path: Path,
) -> None:
    cache_path = tmp_path / "uploads.json"
    age(train_path)
    first = FileUploader(client, policy=policy, progress=False, cache=cache_path).upload(train_path)
    assert UploadCache(cache_path).digest_of(train_path) == first.sha256
    local_faults.clear_log()
    again = FileUploader(client, policy=policy, progress=False, cache=cache_path).upload(train_path)
    assert again.reused
    assert again.id == first.id
    # Neither hashed again nor listed: the digest and the id came from the cache.
    assert local_faults.count("GET", "/v1/files/{id}") == 1
    assert local_faults.count("GET", "/v1/files") == 0

    client.files.delete(first.id)
    fresh = FileUploader(
        client, policy=policy, progress=False, cache=UploadCache(cache_path)
    ).upload(train_path)
    assert not fresh.reused
    assert fresh.id != first.id
    assert fresh.filename == f"train.{fresh.sha256[:12]}.jsonl"  # digest known: tagged name
    key = UploadCache.key(str(client.base_url), "fine-tune", fresh.sha256)
    assert UploadCache(cache_path).get(key) == fresh.id


def test_a_changed_file_is_hashed_again(
    client: openai.OpenAI, policy: RetryPolicy, tmp_path: Path
) -> None:
    path = age(write_jsonl(tmp_path / "train.jsonl", unique_rows()))
    uploader = FileUploader(client, policy=policy, progress=False, cache=tmp_path / "c.json")
    first = uploader.upload(path)
    write_jsonl(path, unique_rows())  # same size, new content
    age(path, 30)
    second = uploader.upload(path)
    assert second.id != first.id
    assert second.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


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
        FileUploader(client, progress=False).upload(123)  # type: ignore[arg-type]  # the wrong type is the test


def test_async_uploader_behaves_the_same(
    local_backend: LocalBackend, policy: RetryPolicy, tmp_path: Path, local_faults: FaultInjector
) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", unique_rows())
    big = write_jsonl(tmp_path / "big.jsonl", unique_rows(200))

    async def scenario() -> tuple[Any, Any, Any]:
        # A 429, a drop before the server acts, then one after it stored the file.
        local_faults.script("POST", "/v1/files", ["429:0.2", "drop", "drop-after"])
        async with local_backend.async_client() as async_client:
            uploader = AsyncFileUploader(
                async_client,
                policy=policy,
                progress=False,
                multipart_threshold=8 * 1024,
                part_size=4096,
            )
            first = await uploader.upload(path)
            again = await uploader.upload(path)
            parted = await uploader.upload(big)
        return first, again, parted

    first, again, parted = asyncio.run(scenario())
    with local_backend.client() as client:
        assert again.reused
        assert again.id == first.id
        assert copies(client, path.read_bytes()) == [first.id]
        assert copies(client, big.read_bytes()) == [parted.id]
    # The file stored by the third attempt was found: no fourth POST.
    assert [(r.fault, r.status) for r in local_faults.requests("POST", "/v1/files")] == [
        ("429", 429),
        ("drop", None),
        ("drop-after", 200),
    ]


def test_progress_bar_counts_bytes(
    client: openai.OpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", unique_rows(40))
    FileUploader(client, progress=True).upload(path, preflight=False)
    err = capsys.readouterr().err
    assert "upload train." in err
    assert "100%" in err
