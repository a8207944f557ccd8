"""The sync and async uploaders decide alike: same inputs, same results, same requests."""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.files import AsyncFileUploader, FileUploader, UploadedFile
from tests.fixtures.local_backend import chat_examples, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import FaultInjector, LocalBackend

_ID = re.compile(r"(file|upload|part)[-_][A-Za-z0-9]+")
_TOKEN = re.compile(r"\.u[0-9a-f]{11}\.")


@dataclass(frozen=True)
class Step:
    source: str  # a name in the inputs
    kwargs: dict[str, Any] = field(default_factory=dict)
    faults: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    prehash: bool | None = None


STEPS = [
    Step("train"),  # new: hashed while it is sent, under a unique name
    Step("train"),  # the same content again: reused from the cache
    Step("train", {"reuse": False}, (("POST", "/v1/files", ("429:0.1", "drop-after")),)),
    Step("data", {"filename": "extra"}),  # bytes: the digest is known, the name tagged
    Step("train", prehash=True, kwargs={"cache": "fresh"}),  # listed and found by its tag
    Step("big", faults=(("POST", "/v1/uploads/{id}/parts", ("500", "drop")),)),
    Step(
        "big",
        faults=(("POST", "/v1/uploads/{id}/complete", ("drop-after",)),),
        kwargs={"reuse": False},
    ),
    Step("valid", {"role": "validation"}),
]


def aged(path: Path) -> Path:
    # A digest of a file written within the last 2 s is not cached (it could still change), so
    # without this the runs would differ by how long after writing each one started.
    stat = path.stat()
    os.utime(path, (stat.st_atime - 60, stat.st_mtime - 60))
    return path


def inputs(tmp_path: Path) -> dict[str, Any]:
    tag = os.urandom(6).hex()
    rows = chat_examples(12, topic=f"radon-{tag}")
    return {
        "train": aged(write_jsonl(tmp_path / "train.jsonl", rows)),
        "data": ("\n".join(json.dumps(r) for r in rows[:11]) + "\n").encode(),
        "big": aged(write_jsonl(tmp_path / "big.jsonl", chat_examples(150, topic=f"radon-{tag}"))),
        "valid": aged(write_jsonl(tmp_path / "valid.jsonl", rows[:3])),
    }


def settings(step: Step, cache: Path) -> dict[str, Any]:
    return {
        "policy": RetryPolicy(sleep=lambda s: None, async_sleep=_no_sleep),
        "progress": False,
        "multipart_threshold": 16 * 1024,
        "part_size": 8 * 1024,
        "max_workers": 2,
        "prehash": step.prehash,
        "cache": False if step.kwargs.get("cache") == "fresh" else cache,
    }


async def _no_sleep(seconds: float) -> None:
    return None


def upload_kwargs(step: Step) -> dict[str, Any]:
    return {k: v for k, v in step.kwargs.items() if k != "cache"}


def outcome(uploaded: UploadedFile) -> tuple[Any, ...]:
    return (
        uploaded.reused,
        uploaded.sha256,
        uploaded.bytes,
        uploaded.purpose,
        uploaded.status,
        _TOKEN.sub(".u<token>.", uploaded.filename),
        uploaded.path.name if uploaded.path else None,
    )


def requests_of(faults: FaultInjector) -> list[tuple[Any, ...]]:
    seen = [(r.method, _ID.sub("<id>", r.path), r.fault, r.status) for r in faults.requests()]
    # Parts go out in parallel: their order is the scheduler's, not a decision.
    return sorted(seen, key=lambda r: (r[1].endswith("/parts"), repr(r)))


def arm(faults: FaultInjector, step: Step) -> None:
    faults.clear()
    for method, route, script in step.faults:
        faults.script(method, route, list(script))


def test_sync_and_async_uploaders_give_the_same_results_and_requests(
    local_backend: LocalBackend, local_faults: FaultInjector, tmp_path: Path
) -> None:
    sources = inputs(tmp_path)

    sync_log: list[tuple[Any, ...]] = []
    created: set[str] = set()
    with local_backend.client() as client:
        for step in STEPS:
            arm(local_faults, step)
            uploader = FileUploader(client, **settings(step, tmp_path / "sync.json"))
            uploaded = uploader.upload(sources[step.source], **upload_kwargs(step))
            created.add(uploaded.id)
            sync_log.append((outcome(uploaded), requests_of(local_faults)))
        # The async run starts from the same remote state: nothing of the sync run is left.
        for file_id in created:
            client.files.delete(file_id)

    async def run_async() -> list[tuple[Any, ...]]:
        log: list[tuple[Any, ...]] = []
        async with local_backend.async_client() as client:
            for step in STEPS:
                arm(local_faults, step)
                uploader = AsyncFileUploader(client, **settings(step, tmp_path / "async.json"))
                uploaded = await uploader.upload(sources[step.source], **upload_kwargs(step))
                log.append((outcome(uploaded), requests_of(local_faults)))
        return log

    async_log = asyncio.run(run_async())
    for index, (sync_step, async_step) in enumerate(zip(sync_log, async_log, strict=True)):
        assert async_step == sync_step, f"step {index}: {STEPS[index]}"
    # The scenario took the branches it names (it would compare equal on one that did nothing).
    reused = [entry[0][0] for entry in sync_log]
    assert reused == [False, True, False, False, True, False, False, False]
    faults_met = {r[2] for _, requests in sync_log for r in requests}
    assert {"429", "drop-after", "500", "drop"} <= faults_met


@pytest.mark.parametrize("prehash", [None, True])
def test_sync_and_async_refuse_alike(
    local_backend: LocalBackend, tmp_path: Path, prehash: bool | None
) -> None:
    rows: list[Any] = chat_examples(12)
    rows[3] = {"messages": [{"role": "user", "content": "no answer"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", rows)

    def refusal(call: Any) -> str:
        try:
            call()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        raise AssertionError("the bad data was uploaded")

    with local_backend.client() as client:
        sync = refusal(lambda: FileUploader(client, progress=False, prehash=prehash).upload(path))

    async def run_async() -> str:
        async with local_backend.async_client() as client:
            uploader = AsyncFileUploader(client, progress=False, prehash=prehash)
            try:
                await uploader.upload(path)
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"
        raise AssertionError("the bad data was uploaded")

    assert asyncio.run(run_async()) == sync
    assert sync.startswith("PreflightFailedError")
    assert "line 4" in sync
