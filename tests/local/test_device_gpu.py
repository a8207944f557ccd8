"""The engine on a CUDA GPU (skipped without one; bench/gpu-run.sh runs them on a GPU machine):
a job trains there in bfloat16 and says so, the packed forward pass matches the model's own on
the GPU, chat decodes there, an out-of-memory run fails with its advice and the next run trains,
and QLoRA trains where bitsandbytes is installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from finetune_kit.errors import LocalBackendError
from finetune_kit.local import LocalBackend
from finetune_kit.local.engine.generation import Generator, ModelRef
from finetune_kit.local.engine.registry import ModelRegistry
from finetune_kit.local.engine.training import train
from finetune_kit.local.engine.types import TrainingRequest
from tests.fixtures.local_backend import chat_examples, wait_for_job, write_jsonl
from tests.local.test_architectures import FAMILIES, build_model, examples

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    family = next(f for f in FAMILIES if f.name == "qwen2.5")
    return build_model(family, tmp_path_factory.mktemp("gpu-models") / "qwen2.5")


def test_a_job_trains_on_the_gpu_in_bfloat16_and_says_so(qwen: Path, tmp_path: Path) -> None:
    with (
        LocalBackend(
            tmp_path / "data", default_model=str(qwen), model_dirs=[qwen.parent], device="cuda"
        ) as backend,
        backend.client() as client,
    ):
        path = write_jsonl(tmp_path / "train.jsonl", examples(10))
        file_id = client.files.create(file=path, purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=file_id)
        done = wait_for_job(client, job.id, timeout=300)
        raw = client.fine_tuning.jobs.with_raw_response.list_events(job.id, limit=100)
        assert done.fine_tuned_model is not None
        answer = client.chat.completions.create(
            model=done.fine_tuned_model,
            messages=[{"role": "user", "content": "What is item 2?"}],
            max_tokens=8,
            temperature=0,
        )
    assert done.status == "succeeded", done.error
    reports = [e for e in json.loads(raw.text)["data"] if e["message"].startswith("Training on")]
    data = reports[0]["data"]
    assert data["kind"] == "cuda"
    assert data["dtype"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")
    assert data["description"] == torch.cuda.get_device_name(0)
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_chat_decodes_on_the_gpu(qwen: Path) -> None:
    generator = Generator(ModelRegistry(default_model="tiny-random"), device="cuda")
    try:
        result = generator.chat(
            ModelRef(str(qwen)),
            [{"role": "user", "content": "Hi"}],
            max_tokens=6,
            temperature=0.7,
            seed=3,
            n=3,
        )
        again = generator.chat(
            ModelRef(str(qwen)),
            [{"role": "user", "content": "Hi"}],
            max_tokens=6,
            temperature=0.7,
            seed=3,
            n=3,
        )
    finally:
        generator.close()
    assert len(result.choices) == 3
    assert [c.text for c in result.choices] == [c.text for c in again.choices]


def test_running_out_of_memory_fails_the_run_and_the_next_one_trains(
    qwen: Path, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", chat_examples(10))
    request = TrainingRequest(
        base_model=str(qwen),
        training_file=path,
        output_dir=tmp_path / "out",
        n_epochs=1,
        device="cuda",
        gradient_checkpointing=False,
    )
    registry = ModelRegistry(default_model="tiny-random")
    # The process may use almost nothing: the first forward pass cannot fit.
    torch.cuda.set_per_process_memory_fraction(0.0005)
    try:
        with pytest.raises(LocalBackendError) as caught:
            train(request, registry=registry)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    message = str(caught.value)
    assert message.startswith("Out of memory on cuda:0") or "Out of memory while loading" in message
    assert "qlora" in message.lower()
    assert train(request, registry=registry).status == "succeeded"


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="no bitsandbytes")
def test_qlora_trains_a_bfloat16_adapter_on_a_4_bit_base(qwen: Path, tmp_path: Path) -> None:
    from finetune_kit.local.engine.types import NoCallbacks

    class Seen(NoCallbacks):
        def __init__(self) -> None:
            self.details: dict[str, object] = {}

        def on_device(self, device: object, details: dict[str, object]) -> None:
            self.details = dict(details)

    seen = Seen()
    path = write_jsonl(tmp_path / "train.jsonl", examples(10))
    result = train(
        TrainingRequest(
            base_model=str(qwen),
            training_file=path,
            output_dir=tmp_path / "out",
            n_epochs=1,
            device="cuda",
            qlora=True,
        ),
        seen,
        registry=ModelRegistry(default_model="tiny-random"),
    )
    assert result.status == "succeeded"
    assert seen.details["qlora"] is True
