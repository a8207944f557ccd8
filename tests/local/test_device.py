"""Device selection on a machine without a GPU: what resolves, what fails at start and how, what
a job reports, where the worker pool places jobs (a GPU list given as a user gives it), QLoRA's
refusal off CUDA, and the memory plan and out-of-memory message a GPU run would use."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import openai
import pytest
import torch

from finetune_kit.errors import ConfigurationError
from finetune_kit.local import LocalBackend
from finetune_kit.local.engine.device import (
    DeviceInfo,
    is_out_of_memory,
    out_of_memory_message,
    parse_gpus,
    plan_memory,
    requested_device,
    resolve_device,
)
from finetune_kit.local.engine.precision import resolve_dtype
from tests.fixtures.cli import run
from tests.fixtures.local_backend import chat_examples, wait_for_job, write_jsonl

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the behaviour of a machine without a CUDA GPU"
)

QWEN_05B = SimpleNamespace(
    hidden_size=896, intermediate_size=4864, num_hidden_layers=24, vocab_size=151936
)


def _worker_environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode(errors="replace").partition("=") for item in raw if item)
    return {name: value for name, _, value in pairs}


def _train_one(backend: LocalBackend, tmp_path: Path) -> tuple[str, list[dict[str, object]]]:
    """Train a small job; return its final status and its events' raw JSON, oldest first."""
    with backend.client() as client:
        path = write_jsonl(tmp_path / "train.jsonl", chat_examples(10))
        file_id = client.files.create(file=path, purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(
            model="gpt-4o-mini",
            training_file=file_id,
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
        )
        done = wait_for_job(client, job.id)
        raw = client.fine_tuning.jobs.with_raw_response.list_events(job.id, limit=1000)
        events = list(reversed(json.loads(raw.text)["data"]))
        return done.status, events


# -- choosing a device -------------------------------------------------------------------------


def test_auto_and_cpu_resolve_to_the_cpu_here() -> None:
    for asked in ("auto", "cpu", None):
        device = resolve_device(asked)
        assert device.name == "cpu"
        assert device.kind == "cpu"
        assert "CPU cores" in device.description


def test_the_environment_variable_chooses_when_nothing_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_DEVICE", "CUDA:1")
    assert requested_device(None) == "cuda:1"
    assert requested_device("cpu") == "cpu"  # an explicit choice wins


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:x", "tpu", ""])
def test_a_value_that_is_no_device_is_refused_naming_the_choices(value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        requested_device(value)
    assert caught.value.param == "device"
    assert "auto, cpu, cuda, cuda:N, mps" in str(caught.value)
    assert "--device" in str(caught.value)


@pytest.mark.parametrize("value", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_where_there_is_none_fails_when_the_backend_is_made(value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        LocalBackend(default_model="tiny-random", device=value)
    message = str(caught.value)
    assert caught.value.param == "device"
    assert f"device is {value!r}, but torch sees no CUDA GPU" in message
    assert "--device cpu" in message
    if torch.version.cuda is None:
        assert "CPU-only build" in message


def test_local_serve_with_cuda_where_there_is_none_exits_before_serving(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys,
        "local",
        "serve",
        "--device",
        "cuda",
        "--model",
        "tiny-random",
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        "0",
    )
    assert code != 0
    assert "--device" in err
    assert "no CUDA GPU" in err
    assert not (tmp_path / "data" / "server.json").exists()


def test_mps_where_there_is_none_fails_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_DEVICE", "mps")
    with pytest.raises(ConfigurationError, match=r"FINETUNE_KIT_LOCAL_DEVICE"):
        LocalBackend(default_model="tiny-random")


def test_dtype_follows_the_device() -> None:
    gpu = DeviceInfo("cuda:0", "cuda", "NVIDIA A100", 40 * 1024**3, bfloat16=True)
    old_gpu = DeviceInfo("cuda:0", "cuda", "Tesla T4", 16 * 1024**3, bfloat16=False)
    assert resolve_dtype("auto", tiny=False, device=gpu) == "bfloat16"
    assert resolve_dtype("auto", tiny=False, device=old_gpu) == "float32"
    # tiny-random stays float32 everywhere: its runs must repeat bit for bit.
    assert resolve_dtype("auto", tiny=True, device=gpu) == "float32"
    assert resolve_dtype("bfloat16", tiny=True, device=old_gpu) == "bfloat16"


# -- what a job says ---------------------------------------------------------------------------


def test_a_job_says_which_device_trained_it(tmp_path: Path) -> None:
    with LocalBackend(tmp_path / "data", default_model="tiny-random", device="cpu") as backend:
        status, events = _train_one(backend, tmp_path)
    assert status == "succeeded"
    reports = [e for e in events if str(e["message"]).startswith("Training on ")]
    assert len(reports) == 1
    report = reports[0]
    assert report["message"] == (
        f"Training on {resolve_device('cpu').summary()} in float32, 2048 tokens per forward pass"
    )
    data = report["data"]
    assert isinstance(data, dict)
    assert data["name"] == "cpu"
    assert data["kind"] == "cpu"
    assert data["dtype"] == "float32"
    assert data["qlora"] is False
    assert data["gradient_checkpointing"] is False
    # It comes before the first step, as a job's log reads.
    messages = [str(e["message"]) for e in events]
    first_step = next(i for i, m in enumerate(messages) if m.startswith("Step 1/"))
    assert messages.index(str(report["message"])) < first_step


def test_qlora_off_cuda_fails_the_job_saying_what_it_needs(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "data", default_model="tiny-random", qlora=True)
    with backend, backend.client() as client:
        path = write_jsonl(tmp_path / "train.jsonl", chat_examples(10))
        file_id = client.files.create(file=path, purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=file_id)
        done = wait_for_job(client, job.id)
    assert done.status == "failed"
    assert done.error is not None
    assert "qlora needs a CUDA GPU" in done.error.message
    assert "--device cuda" in done.error.message


# -- placing jobs on GPUs ----------------------------------------------------------------------


def test_jobs_are_placed_one_per_gpu_given_as_a_user_gives_them(tmp_path: Path) -> None:
    # Three GPU ids, as `local serve --gpus 0,1,2` gives them: three workers, one GPU each.
    with LocalBackend(tmp_path / "data", default_model="tiny-random", gpus="0,1,2") as backend:
        assert backend.settings.max_concurrent_jobs == 3
        pids = backend.worker_pids
        assert len(pids) == 3
        placed = sorted(_worker_environment(pid).get("CUDA_VISIBLE_DEVICES", "") for pid in pids)
        assert placed == ["0", "1", "2"]
        # On this machine torch then sees no GPU in any worker: the job trains on the CPU
        # and says so.
        status, events = _train_one(backend, tmp_path)
    assert status == "succeeded"
    assert any(str(e["message"]).startswith("Training on cpu") for e in events)


def test_a_gpu_count_from_the_environment_places_that_many_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_GPUS", "2")
    with LocalBackend(tmp_path / "data", default_model="tiny-random") as backend:
        placed = sorted(
            _worker_environment(pid).get("CUDA_VISIBLE_DEVICES", "") for pid in backend.worker_pids
        )
    assert placed == ["0", "1"]


def test_explicit_concurrency_shares_the_gpus_in_turn(tmp_path: Path) -> None:
    with LocalBackend(
        tmp_path / "data", default_model="tiny-random", gpus="4,7", max_concurrent_jobs=3
    ) as backend:
        placed = sorted(
            _worker_environment(pid).get("CUDA_VISIBLE_DEVICES", "") for pid in backend.worker_pids
        )
    assert placed == ["4", "4", "7"]


def test_the_cpu_device_places_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with LocalBackend(
        tmp_path / "data", default_model="tiny-random", device="cpu", gpus="0,1"
    ) as backend:
        assert backend.settings.max_concurrent_jobs == 1
        environments = [_worker_environment(pid) for pid in backend.worker_pids]
    assert len(environments) == 1
    assert "CUDA_VISIBLE_DEVICES" not in environments[0]


@pytest.mark.parametrize("value", ["0,0", "a,b", "1,-2", "gpu0"])
def test_a_gpu_list_that_is_neither_ids_nor_a_count_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        LocalBackend(default_model="tiny-random", gpus=value)
    assert caught.value.param == "gpus"
    assert "--gpus" in str(caught.value)


def test_gpu_settings_read_ids_counts_and_lists() -> None:
    assert parse_gpus("0, 2") == ("0", "2")
    assert parse_gpus(4) == ("0", "1", "2", "3")
    assert parse_gpus([1, 3]) == ("1", "3")
    assert parse_gpus(None) is None


# -- memory ------------------------------------------------------------------------------------


def test_the_memory_plan_grows_packs_with_free_memory_and_checkpoints_when_short() -> None:
    roomy = plan_memory(QWEN_05B, free_bytes=70 * 1024**3, longest_example=2000, default_pack=2048)
    tight = plan_memory(QWEN_05B, free_bytes=8 * 1024**3, longest_example=2000, default_pack=2048)
    short = plan_memory(QWEN_05B, free_bytes=2 * 1024**3, longest_example=2000, default_pack=2048)
    assert not roomy.gradient_checkpointing
    assert roomy.pack_tokens > tight.pack_tokens >= 2000
    assert roomy.pack_tokens % 256 == 0
    assert short.gradient_checkpointing
    assert short.pack_tokens >= 2000
    # On a CPU nothing is planned: the CPU's pack size, no checkpointing.
    cpu = plan_memory(QWEN_05B, free_bytes=None, longest_example=100, default_pack=2048)
    assert (cpu.pack_tokens, cpu.gradient_checkpointing) == (2048, False)


def test_running_out_of_memory_is_recognised_and_explained() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    gpu = DeviceInfo("cuda:0", "cuda", "NVIDIA L4", 24 * 1024**3, True, "3")
    message = out_of_memory_message(
        gpu, batch_size=16, pack_tokens=8192, longest_example=3000, checkpointing=True
    )
    assert message.startswith("Out of memory on cuda:0 (NVIDIA L4, 24 GiB, CUDA_VISIBLE_DEVICES=3)")
    assert "batch_size=8" in message
    assert "max_seq_len=1500" in message
    assert "qlora" in message.lower()


def test_an_openai_client_reads_the_device_event(tmp_path: Path) -> None:
    with LocalBackend(tmp_path / "data", default_model="tiny-random") as backend:
        _train_one(backend, tmp_path)
        with backend.client() as client:
            jobs = client.fine_tuning.jobs.list().data
            events = client.fine_tuning.jobs.list_events(jobs[0].id, limit=100).data
    device = [e for e in events if e.message.startswith("Training on ")]
    assert len(device) == 1
    assert isinstance(device[0], openai.types.fine_tuning.FineTuningJobEvent)
    assert device[0].level == "info"
