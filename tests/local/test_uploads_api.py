"""/v1/uploads against the real server: parts, ordered completion, md5, cancel, expiry."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import openai
import pytest
from openai.types import Upload
from openai.types.uploads import UploadPart

from finetune_kit.local import LocalBackend


def _create(client: openai.OpenAI, size: int, name: str = "big.jsonl") -> Upload:
    return client.uploads.create(
        bytes=size, filename=name, mime_type="text/jsonl", purpose="fine-tune"
    )


def test_parts_are_assembled_in_the_given_order(client: openai.OpenAI) -> None:
    first, second, third = b'{"a": 1}\n', b'{"b": 2}\n', b'{"c": 3}\n'
    whole = first + second + third
    raw = client.uploads.with_raw_response.create(
        bytes=len(whole), filename="big.jsonl", mime_type="text/jsonl", purpose="fine-tune"
    )
    upload = Upload.model_validate(json.loads(raw.text))
    assert upload.id.startswith("upload_")
    assert upload.status == "pending"
    assert upload.expires_at == upload.created_at + 3600

    # Sent out of order, as parallel uploaders do; completion names the order.
    raw_part = client.uploads.parts.with_raw_response.create(upload.id, data=third)
    part3 = UploadPart.model_validate(json.loads(raw_part.text))
    part1 = client.uploads.parts.create(upload.id, data=first)
    part2 = client.uploads.parts.create(upload.id, data=second)
    assert part1.id.startswith("part_")
    assert part1.upload_id == upload.id

    raw_done = client.uploads.with_raw_response.complete(
        upload.id, part_ids=[part1.id, part2.id, part3.id], md5=hashlib.md5(whole).hexdigest()
    )
    done = Upload.model_validate(json.loads(raw_done.text))
    assert done.status == "completed"
    assert done.file is not None
    assert done.file.bytes == len(whole)
    assert done.file.filename == "big.jsonl"
    assert client.files.content(done.file.id).read() == whole


def test_md5_mismatch_and_size_mismatch_are_refused(client: openai.OpenAI) -> None:
    upload = _create(client, 6)
    a = client.uploads.parts.create(upload.id, data=b"abc")
    b = client.uploads.parts.create(upload.id, data=b"def")
    with pytest.raises(openai.BadRequestError) as info:
        client.uploads.complete(
            upload.id, part_ids=[b.id, a.id], md5=hashlib.md5(b"abcdef").hexdigest()
        )
    assert info.value.param == "md5"
    with pytest.raises(openai.BadRequestError) as info:
        client.uploads.complete(upload.id, part_ids=[a.id])
    assert info.value.param == "bytes"
    with pytest.raises(openai.BadRequestError) as info:
        client.uploads.complete(upload.id, part_ids=[a.id, "part_unknown"])
    assert info.value.param == "part_ids"
    # Nothing was lost: the right order still completes.
    done = client.uploads.complete(upload.id, part_ids=[a.id, b.id])
    assert done.file is not None
    assert client.files.content(done.file.id).read() == b"abcdef"


def test_cancelled_upload_takes_no_more_parts(client: openai.OpenAI) -> None:
    upload = _create(client, 3)
    client.uploads.parts.create(upload.id, data=b"abc")
    cancelled = client.uploads.cancel(upload.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(openai.BadRequestError) as info:
        client.uploads.parts.create(upload.id, data=b"abc")
    assert "cancelled" in info.value.message


def test_sdk_chunked_helper_works(client: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "chunked.jsonl"
    path.write_bytes(b'{"x": "' + b"y" * 3000 + b'"}\n')
    upload = client.uploads.upload_file_chunked(
        file=path, mime_type="text/jsonl", purpose="fine-tune", part_size=1000
    )
    assert upload.status == "completed"
    assert upload.file is not None
    assert client.files.content(upload.file.id).read() == path.read_bytes()


def test_expired_upload_is_refused(local_backend: LocalBackend, client: openai.OpenAI) -> None:
    upload = _create(client, 3)
    part = client.uploads.parts.create(upload.id, data=b"abc")
    # Move the clock of this one upload back past its one-hour lifetime.
    with sqlite3.connect(local_backend.data_dir / "local.sqlite3") as db:
        db.execute(
            "UPDATE uploads SET expires_at = ? WHERE id = ?", (int(time.time()) - 1, upload.id)
        )
    with pytest.raises(openai.BadRequestError) as info:
        client.uploads.complete(upload.id, part_ids=[part.id])
    assert info.value.code == "upload_expired"
    assert not (local_backend.data_dir / "uploads" / upload.id).exists()


def test_unknown_upload_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.uploads.parts.create("upload_nope", data=b"x")


def test_declared_size_over_the_limit_is_refused(tmp_path: Path) -> None:
    from finetune_kit.local import RequestLimits

    limits = RequestLimits(max_upload_bytes=100)
    with LocalBackend(
        tmp_path, default_model="tiny-random", max_concurrent_jobs=0, limits=limits
    ) as b:
        with pytest.raises(openai.BadRequestError) as info:
            _create(b.client(), 101)
        assert info.value.param == "bytes"
        assert "100" in info.value.message


def test_completing_one_upload_in_parallel_makes_one_file(client: openai.OpenAI) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    # Parts big enough that assembling them takes a while: the calls overlap inside it.
    first, second = b"a" * (12 * 1024 * 1024), b"b" * (12 * 1024 * 1024)
    name = f"parallel-{time.time_ns()}.jsonl"
    upload = _create(client, len(first) + len(second), name)
    part_ids = [
        client.uploads.parts.create(upload.id, data=first).id,
        client.uploads.parts.create(upload.id, data=second).id,
    ]
    start = threading.Barrier(3)

    def complete() -> Upload:
        start.wait()
        return client.uploads.complete(upload.id, part_ids=part_ids)

    with ThreadPoolExecutor(3) as pool:
        answers = [f.result() for f in [pool.submit(complete) for _ in range(3)]]
    assert {a.status for a in answers} == {"completed"}
    file_ids = {a.file.id for a in answers if a.file is not None}
    assert len(file_ids) == 1, file_ids
    stored = [f for f in client.files.list(purpose="fine-tune", limit=10_000) if f.filename == name]
    assert [f.id for f in stored] == list(file_ids)
    assert client.files.content(stored[0].id).read() == first + second
    # A retry of the same request answers the same upload and file.
    again = client.uploads.complete(upload.id, part_ids=part_ids)
    assert again.file is not None
    assert again.file.id in file_ids
    # A later call with other parts is not the same request: it is refused, naming the status.
    with pytest.raises(openai.BadRequestError) as info:
        client.uploads.complete(upload.id, part_ids=part_ids[::-1])
    assert info.value.code == "invalid_upload_status"
    assert "completed" in info.value.message
    assert info.value.param == "part_ids"


def test_a_filename_over_255_characters_keeps_its_extension(client: openai.OpenAI) -> None:
    name = "é" + "x" * 300 + ".jsonl"  # a fine-tune file must stay a .jsonl
    data = b'{"a": 1}\n'
    sent = client.files.create(file=(name, data), purpose="fine-tune")
    upload = _create(client, len(data), name)
    part = client.uploads.parts.create(upload.id, data=data)
    done = client.uploads.complete(upload.id, part_ids=[part.id])
    assert done.file is not None
    for filename in (sent.filename, upload.filename, done.file.filename):
        assert filename.endswith(".jsonl"), filename
        assert len(filename) == 255
        assert filename.startswith("éxxx")
    assert client.files.retrieve(sent.id).filename == sent.filename
