"""When a part fails for good, the other parts stop before the Upload is cancelled."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.errors import UploadError
from finetune_kit.files import AsyncFileUploader, FileUploader
from tests.fixtures.local_backend import chat_examples, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import FaultInjector, LocalBackend

PARTS = "/v1/uploads/{id}/parts"
CANCEL = "/v1/uploads/{id}/cancel"
PART_SIZE = 4096
WORKERS = 3


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = write_jsonl(
        tmp_path / "big.jsonl", chat_examples(200, topic=f"krypton-{os.urandom(6).hex()}")
    )
    assert path.stat().st_size > 6 * PART_SIZE
    return path


def in_parts(cls: type[FileUploader] | type[AsyncFileUploader], client: Any) -> Any:
    """An uploader sending every file in parts, one attempt per part, nothing cached."""
    return cls(
        client,
        policy=RetryPolicy(max_attempts=1),
        progress=False,
        multipart_threshold=8 * 1024,
        part_size=PART_SIZE,
        max_workers=WORKERS,
        cache=False,
    )


def one_part_fails_for_good(faults: FaultInjector) -> None:
    # No retries (one attempt per part): the first part sent fails for good at once, while
    # the parts sent beside it are still held by the server.
    faults.script("POST", PARTS, ["500"] + ["delay:0.4"] * (WORKERS - 1))


def test_async_siblings_stop_before_the_upload_is_cancelled(
    local_backend: LocalBackend,
    big_file: Path,
    local_faults: FaultInjector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    one_part_fails_for_good(local_faults)

    async def scenario() -> tuple[UploadError, int, int]:
        async with local_backend.async_client() as client:
            uploader = in_parts(AsyncFileUploader, client)
            with pytest.raises(UploadError) as info:
                await uploader.upload(big_file, preflight=False)
            at_error = local_faults.count("POST", PARTS)
            # Longer than the parts in flight are held: a sibling still running would post more.
            await asyncio.sleep(1.0)
            return info.value, at_error, local_faults.count("POST", PARTS)

    error, at_error, later = asyncio.run(scenario())
    assert "the upload was cancelled" in str(error)
    assert isinstance(error.__cause__, openai.InternalServerError)
    assert later == at_error  # nothing was posted after the upload gave up
    assert at_error <= WORKERS + 1  # the parts in flight, not the whole file
    cancels = local_faults.requests("POST", CANCEL)
    assert len(cancels) == 1
    assert all(r.started_at <= cancels[0].started_at for r in local_faults.requests("POST", PARTS))
    assert "exception was never retrieved" not in caplog.text


@pytest.mark.parametrize("failing", range(WORKERS))
def test_sync_siblings_finish_and_none_starts_before_the_upload_is_cancelled(
    client: openai.OpenAI, big_file: Path, local_faults: FaultInjector, failing: int
) -> None:
    # The part that fails is not always the first one sent: when a later one fails while the
    # first is still held, its worker must not go on to send the rest of the file.
    script = ["delay:0.4"] * WORKERS
    script[failing] = "500"
    local_faults.script("POST", PARTS, script)
    uploader = in_parts(FileUploader, client)
    with pytest.raises(UploadError, match="the upload was cancelled"):
        uploader.upload(big_file, preflight=False)
    cancels = local_faults.requests("POST", CANCEL)
    assert len(cancels) == 1
    parts = local_faults.requests("POST", PARTS)
    assert all(r.started_at <= cancels[0].started_at for r in parts)
    assert len(parts) <= WORKERS + 1  # the parts in flight, not the whole file
