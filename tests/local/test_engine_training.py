"""The training loop on tiny-random: determinism, checkpoints, resume, validation, DPO, stops."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from finetune_kit.errors import ConfigurationError, TrainingDataError
from finetune_kit.local.engine.registry import ModelRegistry
from finetune_kit.local.engine.training import STATE_FILE, train
from finetune_kit.local.engine.types import TrainingRequest

from .engine_helpers import Recorder, chat_rows, preference_rows, write_jsonl


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry(default_model="tiny-random")


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", chat_rows(10))


def request(train_file: Path, out: Path, **options: Any) -> TrainingRequest:
    defaults: dict[str, Any] = {"n_epochs": 3, "batch_size": 2, "seed": 7}
    defaults.update(options)
    base = defaults.pop("base_model", "gpt-4o-mini")
    return TrainingRequest(base_model=base, training_file=train_file, output_dir=out, **defaults)


def test_auto_hyperparameters_follow_openai(
    registry: ModelRegistry, train_file: Path, tmp_path: Path
) -> None:
    recorder = Recorder()
    result = train(
        request(train_file, tmp_path / "out", n_epochs="auto", batch_size="auto"),
        recorder,
        registry=registry,
    )
    hyperparameters, total_steps = recorder.started[0]
    # 10 examples: 100 // 10 epochs, batch size 1, as OpenAI's auto rules give.
    assert hyperparameters.to_dict() == {
        "n_epochs": 10,
        "batch_size": 1,
        "learning_rate_multiplier": 2.5,
    }
    assert total_steps == 100 == result.steps_done == len(recorder.steps)
    assert result.status == "succeeded"
    assert result.base_model == "tiny-random"
    # Billed like OpenAI: every example's tokens, once per epoch.
    assert recorder.steps[9].trained_tokens * 10 == result.trained_tokens
    assert result.adapter_path is not None
    assert (result.adapter_path / "adapter_model.safetensors").is_file()


def test_same_seed_same_run_other_seed_other_run(
    registry: ModelRegistry, train_file: Path, tmp_path: Path
) -> None:
    runs = []
    for index, seed in enumerate((7, 7, 8)):
        recorder = Recorder()
        train(request(train_file, tmp_path / f"o{index}", seed=seed), recorder, registry=registry)
        runs.append(recorder.losses)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert len(runs[0]) == 15


def test_loss_goes_down_and_accuracy_is_reported(
    registry: ModelRegistry, train_file: Path, tmp_path: Path
) -> None:
    recorder = Recorder()
    train(
        request(train_file, tmp_path / "out", n_epochs=6, learning_rate_multiplier=20.0),
        recorder,
        registry=registry,
    )
    first, last = recorder.steps[:5], recorder.steps[-5:]
    assert sum(m.train_loss for m in last) < 0.7 * sum(m.train_loss for m in first)
    assert sum(m.train_mean_token_accuracy for m in last) > sum(
        m.train_mean_token_accuracy for m in first
    )
    assert all(0 <= m.train_mean_token_accuracy <= 1 for m in recorder.steps)


def test_checkpoints_at_epoch_ends_last_three_kept(
    registry: ModelRegistry, train_file: Path, tmp_path: Path
) -> None:
    recorder = Recorder()
    result = train(request(train_file, tmp_path / "out", n_epochs=5), recorder, registry=registry)
    assert [c.step for c in recorder.checkpoints] == [5, 10, 15, 20, 25]
    assert [c.epoch for c in recorder.checkpoints] == [1, 2, 3, 4, 5]
    assert [c.step for c in result.checkpoints] == [15, 20, 25]
    on_disk = sorted(p.name for p in (tmp_path / "out" / "checkpoints").iterdir())
    assert on_disk == ["step-15", "step-20", "step-25"]
    for checkpoint in result.checkpoints:
        assert checkpoint.metrics["step"] == checkpoint.step
        assert "train_loss" in checkpoint.metrics
        assert (checkpoint.path / "adapter_config.json").is_file()
        config = json.loads((checkpoint.path / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == "tiny-random"


def test_validation_metrics(registry: ModelRegistry, train_file: Path, tmp_path: Path) -> None:
    valid = write_jsonl(tmp_path / "valid.jsonl", chat_rows(4))
    recorder = Recorder()
    result = train(
        request(train_file, tmp_path / "out", validation_file=valid, eval_interval=2),
        recorder,
        registry=registry,
    )
    with_valid = [m.step for m in recorder.steps if m.valid_loss is not None]
    assert with_valid == [2, 4, 6, 8, 10, 12, 14]
    full = [m.step for m in recorder.steps if m.full_valid_loss is not None]
    assert full == [5, 10, 15]
    for metrics in recorder.steps:
        if metrics.valid_loss is not None:
            assert metrics.valid_mean_token_accuracy is not None
            assert math.isfinite(metrics.valid_loss)
    assert "full_valid_loss" in result.checkpoints[-1].metrics
    assert "full_valid_mean_token_accuracy" in recorder.steps[-1].to_dict()
    assert "valid_loss" not in recorder.steps[0].to_dict()


def test_cancel(registry: ModelRegistry, train_file: Path, tmp_path: Path) -> None:
    recorder = Recorder(stop_at={3: "cancel"})
    result = train(request(train_file, tmp_path / "out"), recorder, registry=registry)
    assert result.status == "cancelled"
    assert result.steps_done == 3 == len(recorder.steps)
    assert result.adapter_path is None
    assert not (tmp_path / "out" / "adapter").exists()


@pytest.mark.parametrize("pause_after", [5, 7])
def test_pause_then_resume_equals_an_uninterrupted_run(
    registry: ModelRegistry, train_file: Path, tmp_path: Path, pause_after: int
) -> None:
    whole = Recorder()
    train(request(train_file, tmp_path / "whole"), whole, registry=registry)

    first = Recorder(stop_at={pause_after: "pause"})
    paused = train(request(train_file, tmp_path / "run"), first, registry=registry)
    assert paused.status == "paused"
    assert paused.steps_done == pause_after
    assert paused.resume_checkpoint is not None
    if pause_after == 5:  # an epoch boundary: the epoch checkpoint is the resume point
        assert paused.resume_checkpoint == tmp_path / "run" / "checkpoints" / "step-5"
    state = json.loads((paused.resume_checkpoint / STATE_FILE).read_text())
    assert state["step"] == pause_after

    second = Recorder()
    done = train(
        request(train_file, tmp_path / "run", resume_from=paused.resume_checkpoint),
        second,
        registry=registry,
    )
    assert done.status == "succeeded"
    assert second.started[0][1] == 15
    assert [m.step for m in second.steps] == list(range(pause_after + 1, 16))
    assert len(first.steps) + len(second.steps) == whole.started[0][1] == 15
    assert first.losses + second.losses == pytest.approx(whole.losses, rel=1e-5)
    assert done.trained_tokens == whole.steps[-1].trained_tokens
    assert [c.step for c in done.checkpoints] == [5, 10, 15]


def test_resume_refuses_another_request(
    registry: ModelRegistry, train_file: Path, tmp_path: Path
) -> None:
    paused = train(
        request(train_file, tmp_path / "run"), Recorder(stop_at={2: "pause"}), registry=registry
    )
    assert paused.resume_checkpoint is not None
    with pytest.raises(ConfigurationError, match="n_epochs") as info:
        train(
            request(train_file, tmp_path / "run", n_epochs=4, resume_from=paused.resume_checkpoint),
            registry=registry,
        )
    assert info.value.param == "resume_from"


def test_dpo_starts_at_log2_and_learns_the_preference(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    pairs = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(6))
    recorder = Recorder()
    result = train(
        TrainingRequest(
            base_model="tiny-random",
            training_file=pairs,
            validation_file=pairs,
            output_dir=tmp_path / "out",
            method="dpo",
            n_epochs=6,
            batch_size=2,
            learning_rate_multiplier=20.0,
            seed=3,
        ),
        recorder,
        registry=registry,
    )
    assert result.status == "succeeded"
    assert result.hyperparameters.beta == 0.1
    # The adapter starts as a no-op, so the policy equals the reference: loss = log 2.
    assert recorder.steps[0].train_loss == pytest.approx(math.log(2), abs=1e-4)
    last = recorder.steps[-3:]
    assert sum(m.train_loss for m in last) / 3 < 0.6
    assert all(m.extra["reward_accuracy"] == 1.0 for m in last)
    assert recorder.steps[-1].full_valid_loss is not None
    assert recorder.steps[-1].full_valid_loss < math.log(2)


def test_bad_training_data_names_the_line(
    registry: ModelRegistry, tmp_path: Path, train_file: Path
) -> None:
    rows = chat_rows(4)
    rows[2]["messages"][2]["weight"] = 5
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(TrainingDataError, match="training_file line 3") as info:
        train(request(bad, tmp_path / "out"), registry=registry)
    assert info.value.field == "messages[2].weight"
    with pytest.raises(TrainingDataError, match="validation_file line 3"):
        train(request(train_file, tmp_path / "out", validation_file=bad), registry=registry)


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"n_epochs": 0}, "n_epochs"),
        ({"batch_size": 300}, "batch_size"),
        ({"learning_rate_multiplier": 0}, "learning_rate_multiplier"),
        ({"beta": 3.0}, "beta"),
        ({"method": "reinforcement"}, "grader"),  # it needs a grader
        ({"method": "ppo"}, "method"),
    ],
)
def test_hyperparameters_are_checked(tmp_path: Path, options: dict[str, Any], param: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        request(tmp_path / "t.jsonl", tmp_path / "out", **options)
    assert info.value.param == param


def test_unknown_base_model(registry: ModelRegistry, train_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown model 'llama-9'"):
        train(request(train_file, tmp_path / "out", base_model="llama-9"), registry=registry)


def test_continued_fine_tuning_from_an_adapter(
    registry: ModelRegistry, train_file: Path, tmp_path: Path
) -> None:
    first = Recorder()
    done = train(request(train_file, tmp_path / "a", n_epochs=2), first, registry=registry)
    second = Recorder()
    train(
        request(train_file, tmp_path / "b", n_epochs=1, init_adapter=done.adapter_path),
        second,
        registry=registry,
    )
    # Starting from the trained adapter, the first loss is where the first run ended.
    assert second.losses[0] < first.losses[0]


def test_packing_and_shared_prefixes_change_no_loss_or_gradient(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from finetune_kit.local.engine.chat_format import ChatRenderer
    from finetune_kit.local.engine.objectives import PackedScorer, shared_prefix
    from finetune_kit.local.engine.training_data import load_supervised

    model, tokenizer = registry.load("tiny-random", shared=False)
    # A random (not zero) adapter, so that its gradient flows through the shared prefix too.
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    rows = chat_rows(4)
    rows[3]["messages"].insert(1, {"role": "user", "content": "Hello"})  # a longer prompt
    examples = load_supervised(write_jsonl(tmp_path / "t.jsonl", rows), ChatRenderer(tokenizer))
    prefix = shared_prefix(examples)
    assert 8 <= prefix < min(min(e.targets) for e in examples)
    scorer = PackedScorer(peft_model, bfloat16=False)
    params = [p for p in peft_model.parameters() if p.requires_grad]

    together, _, segments = scorer.token_nll(examples)
    together.sum().backward()
    packed_grads = [p.grad.clone() for p in params]
    peft_model.zero_grad()
    alone = [scorer.token_nll([example])[0] for example in examples]
    sum(part.sum() for part in alone).backward()

    assert segments.tolist() == [i for i, e in enumerate(examples) for _ in e.targets]
    assert torch.allclose(together, torch.cat(alone), atol=1e-5)
    for packed, single in zip(packed_grads, [p.grad for p in params], strict=True):
        assert torch.allclose(packed, single, rtol=1e-4, atol=1e-4)
    assert shared_prefix(examples[:1]) == 0


@pytest.mark.parametrize("prefix", [0, 5])
def test_padded_attention_equals_the_fused_kernel_per_example(prefix: int) -> None:
    import torch

    from finetune_kit.local.engine import packed_attention

    bounds = [0, 3, 10, 15]

    def attend(padded_up_to: int) -> tuple[Any, list[Any]]:
        torch.manual_seed(1)
        q = torch.randn(1, 4, bounds[-1], 8, requires_grad=True)
        k = torch.randn(1, 2, prefix + bounds[-1], 8, requires_grad=True)  # two query groups
        v = torch.randn(1, 2, prefix + bounds[-1], 8, requires_grad=True)
        layer = SimpleNamespace(num_key_value_groups=2)
        previous = packed_attention.MAX_PADDED_LENGTH
        packed_attention.MAX_PADDED_LENGTH = padded_up_to
        try:
            out, _ = packed_attention.packed_causal_attention(
                layer, q, k, v, None, cu_seq_lens_q=torch.tensor(bounds)
            )
        finally:
            packed_attention.MAX_PADDED_LENGTH = previous
        out.pow(2).sum().backward()
        return out, [q.grad, k.grad, v.grad]

    padded, padded_grads = attend(512)
    fused, fused_grads = attend(0)  # every example longer than the limit: the fused kernel
    assert padded.shape == (1, bounds[-1], 4, 8)
    assert torch.allclose(padded, fused, atol=1e-5)
    for a, b in zip(padded_grads, fused_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
