"""The pure pieces of uploading: digests, names, limits, part plans, file windows, the cache."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import re
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finetune_kit.errors import ConfigurationError, UploadError
from finetune_kit.files.parts import (
    FILE_SIZE_LIMIT,
    UPLOAD_SIZE_LIMIT,
    FileWindow,
    ProgressCounter,
    SequentialDigest,
    UploadCache,
    check_purpose,
    check_size,
    default_cache_path,
    digest_bytes,
    digest_file,
    plan_parts,
    remote_filename,
    token_filename,
)


def test_file_digest_matches_hashlib_and_bytes_digest(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    digest = digest_file(path, md5=True, chunk_size=1000)
    assert digest.size == len(data)
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.md5 == hashlib.md5(data).hexdigest()
    assert digest_bytes(data, md5=True) == digest
    assert digest_file(path).md5 is None


def test_remote_filename_carries_the_content_tag() -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    assert remote_filename("train", sha) == f"train.{sha[:12]}.jsonl"
    assert remote_filename(f"train.{sha[:12]}", sha) == f"train.{sha[:12]}.jsonl"
    assert remote_filename("../../etc/passwd", sha).startswith("etc-passwd.")
    assert remote_filename("", sha, extension=".csv") == f"data.{sha[:12]}.csv"


def test_purposes() -> None:
    assert check_purpose("fine-tune") == "fine-tune"
    with pytest.raises(ConfigurationError, match="'fine-tune'") as info:
        check_purpose("fine_tune")
    assert info.value.param == "purpose"


def test_size_limits_say_what_to_do() -> None:
    check_size(FILE_SIZE_LIMIT, multipart=False, name="a.jsonl")
    with pytest.raises(UploadError, match="512 MB"):
        check_size(FILE_SIZE_LIMIT + 1, multipart=False, name="a.jsonl")
    check_size(FILE_SIZE_LIMIT + 1, multipart=True, name="a.jsonl")
    with pytest.raises(UploadError, match="8 GB"):
        check_size(UPLOAD_SIZE_LIMIT + 1, multipart=True, name="a.jsonl")
    with pytest.raises(UploadError, match="empty"):
        check_size(0, multipart=False, name="a.jsonl")


@given(size=st.integers(1, 10_000), part_size=st.integers(1, 3_000))
def test_parts_cover_every_byte_once(size: int, part_size: int) -> None:
    parts = plan_parts(size, part_size)
    assert [p.index for p in parts] == list(range(len(parts)))
    assert parts[0].offset == 0
    for before, after in itertools.pairwise(parts):
        assert before.offset + before.length == after.offset
        assert before.length == part_size
    assert parts[-1].offset + parts[-1].length == size
    assert 0 < parts[-1].length <= part_size


def test_part_size_limit() -> None:
    with pytest.raises(ConfigurationError) as info:
        plan_parts(10, 64 * 1024 * 1024 + 1)
    assert info.value.param == "part_size"


@pytest.mark.parametrize("in_memory", [True, False])
def test_window_reads_its_range_and_seeks_like_a_file(tmp_path: Path, in_memory: bool) -> None:
    data = bytes(range(256)) * 10
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    source = data if in_memory else path
    with FileWindow(source, offset=100, length=300) as window:
        assert isinstance(window, io.IOBase)
        assert window.seek(0, os.SEEK_END) == 300
        assert window.read(10) == b""
        window.seek(0)
        assert window.read(7) == data[100:107]
        assert window.tell() == 7
        assert window.read() == data[107:400]
        window.seek(-5, os.SEEK_END)
        assert window.read(100) == data[395:400]
        with pytest.raises(io.UnsupportedOperation):  # no fileno: clients must size it by seeking
            window.fileno()


def test_window_counts_progress_once_across_retries() -> None:
    counted: list[int] = []
    counter = ProgressCounter(counted.append)
    data = b"a" * 1000
    for _attempt in range(3):  # a part sent three times
        with FileWindow(data, offset=0, length=600, progress=counter, progress_key=0) as window:
            while window.read(128):
                pass
    with FileWindow(data, offset=600, length=400, progress=counter, progress_key=1) as window:
        window.read()
    assert counter.total == 1000
    assert sum(counted) == 1000


def test_cache_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "uploads.json"
    cache = UploadCache(path)
    key = UploadCache.key("http://127.0.0.1:1/v1/", "fine-tune", "ab" * 32)
    assert cache.get(key) is None
    cache.put(key, "file-1")
    assert UploadCache(path).get(key) == "file-1"
    cache.forget(key)
    assert UploadCache(path).get(key) is None
    path.write_text("{not json")
    assert UploadCache(path).get(key) is None
    path.write_text('{"a|b|c": "file-old"}')  # an unknown layout is ignored, not an error
    assert UploadCache(path).get("a|b|c") is None


def test_token_names_are_unique_and_never_look_like_a_tag() -> None:
    names = {token_filename("train") for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert re.fullmatch(r"train\.u[0-9a-f]{11}\.jsonl", name)
        assert not re.search(r"\.[0-9a-f]{12}\.", name)


def test_digest_cache_trusts_only_settled_files(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"one\n")
    cache_path = tmp_path / "cache.json"
    cache = UploadCache(cache_path)
    now = time.time()
    cache.remember_digest(path, "a" * 64, hashed_at=now)
    assert cache.digest_of(path) is None  # written just now: it could change unseen
    stat = path.stat()
    os.utime(path, (stat.st_atime - 60, stat.st_mtime - 60))
    cache.remember_digest(path, "a" * 64, hashed_at=now)
    assert UploadCache(cache_path).digest_of(path) == "a" * 64
    path.write_bytes(b"two\n")  # same size, new version
    assert cache.digest_of(path) is None


def test_default_cache_path_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINETUNE_KIT_CACHE_DIR", str(tmp_path / "ft"))
    assert default_cache_path() == tmp_path / "ft" / "uploads.json"
    monkeypatch.delenv("FINETUNE_KIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "finetune_kit" / "uploads.json"


def test_processing_states() -> None:
    from types import SimpleNamespace

    from finetune_kit.files import FileUploader

    state = FileUploader._processing_state
    assert state(SimpleNamespace(id="f", status="processed")) is None
    assert state(SimpleNamespace(id="f")) is None  # no status reported: nothing to wait for
    assert state(SimpleNamespace(id="f", status="uploaded")) == "uploaded"
    assert state(SimpleNamespace(id="f", status="pending")) == "pending"
    with pytest.raises(UploadError, match="bad line 3") as info:
        state(SimpleNamespace(id="f", status="error", status_details="bad line 3"))
    assert info.value.file_id == "f"


def test_sequential_digest_survives_a_retry_and_refuses_gaps() -> None:
    data = os.urandom(10_000)
    digest = SequentialDigest(len(data))
    for attempt in range(2):  # the second attempt starts over and reads everything again
        stop = 6_000 if attempt == 0 else len(data)
        with FileWindow(data, offset=0, length=len(data), digest=digest) as window:
            while window.tell() < stop and window.read(1024):
                pass
    result = digest.result()
    assert result is not None
    assert result.sha256 == hashlib.sha256(data).hexdigest()

    gappy = SequentialDigest(len(data))
    gappy.feed(0, data[:100])
    gappy.feed(200, data[200:])
    assert gappy.result() is None
    assert SequentialDigest(5).result() is None  # nothing read yet
