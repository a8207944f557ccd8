"""Reinforcement fine-tuning in the engine, on the tiny model: sampling, the loss, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finetune_kit.errors import ConfigurationError, TrainingDataError
from finetune_kit.local.engine.chat_format import ChatRenderer
from finetune_kit.local.engine.objectives import PackedScorer
from finetune_kit.local.engine.packed_attention import PACKED_ATTENTION
from finetune_kit.local.engine.rft import (
    OnPolicySampler,
    ReinforcementObjective,
    group_advantages,
    samples_per_prompt,
)
from finetune_kit.local.engine.tiny_model import build_tiny_model
from finetune_kit.local.engine.training import resolve_hyperparameters, train
from finetune_kit.local.engine.training_data import ReinforcementPrompt, load_reinforcement
from finetune_kit.local.engine.types import (
    CheckpointInfo,
    Hyperparameters,
    NoCallbacks,
    StepMetrics,
    StopSignal,
    TrainingRequest,
)

# The answer's length decides its reward: about half of a group's answers win.
PARITY = {
    "type": "python",
    "name": "even_length",
    "source": "def grade(sample, item):\n    return float(len(sample['output_text']) % 2 == 0)\n",
}
CONTAINS = {
    "type": "string_check",
    "name": "mentions",
    "operation": "like",
    "input": "{{sample.output_text}}",
    "reference": "{{item.letter}}",
}


def _rows(n: int = 10) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "developer", "content": "Answer with one letter."},
                {"role": "user", "content": f"Say the letter {letter}."},
            ],
            "letter": letter,
        }
        for letter in "abcdefghijklmnop"[:n]
    ]


def _write(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


class _Recorder(NoCallbacks):
    def __init__(self, pause_at: int | None = None) -> None:
        self.steps: list[StepMetrics] = []
        self.checkpoints: list[CheckpointInfo] = []
        self.pause_at = pause_at

    def on_step(self, metrics: StepMetrics) -> None:
        self.steps.append(metrics)

    def on_checkpoint(self, checkpoint: CheckpointInfo) -> None:
        self.checkpoints.append(checkpoint)

    def should_stop(self) -> StopSignal | None:
        if self.pause_at is not None and len(self.steps) >= self.pause_at:
            return "pause"
        return None


def _request(tmp_path: Path, **options: Any) -> TrainingRequest:
    settings: dict[str, Any] = {
        "base_model": "tiny-random",
        "method": "reinforcement",
        "training_file": _write(tmp_path / "train.jsonl", _rows(8)),
        "validation_file": _write(tmp_path / "valid.jsonl", _rows(3)),
        "output_dir": tmp_path / "out",
        "grader": CONTAINS,
        "n_epochs": 2,
        "batch_size": 4,
        "compute_multiplier": 0.5,
        "max_completion_tokens": 12,
        "eval_interval": 2,
    }
    settings.update(options)
    return TrainingRequest(**settings)


def _policy() -> tuple[Any, Any, PackedScorer]:
    from peft import LoraConfig, get_peft_model

    model, tokenizer = build_tiny_model()
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    return peft_model, tokenizer, PackedScorer(peft_model, bfloat16=False)


def _greedy(model: Any, prompt: list[int], steps: int, eos: int) -> list[int]:
    """The likeliest continuation, one unpadded sequence, no cache: the reference."""
    import torch

    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(token)
            if token == eos:
                break
    return ids[len(prompt) :]


def test_sampling_on_the_training_model_equals_plain_greedy_decoding() -> None:
    # The training model runs packed attention, which builds no padding mask: prompts of
    # different lengths decoded together are only right if sampling switches it back.
    peft_model, tokenizer, _ = _policy()
    assert peft_model.get_base_model().config._attn_implementation == PACKED_ATTENTION
    renderer = ChatRenderer(tokenizer)
    prompts = [
        ReinforcementPrompt(1, renderer.render_prompt([{"role": "user", "content": text}]), {})
        for text in ("Hi", "Tell me a much longer story about the sea, please.")
    ]
    sampler = OnPolicySampler(peft_model, tokenizer, renderer, frozenset({2}), 2048, bfloat16=False)
    groups = sampler.sample(prompts, n=2, max_tokens=6, seeds=[1, 2], temperature=0.0)
    assert groups is not None
    reference, _ = build_tiny_model()  # same weights; a fresh adapter changes nothing
    for prompt, group in zip(prompts, groups, strict=True):
        expected = _greedy(reference, prompt.prompt_ids, 6, eos=2)
        assert [c.ids for c in group] == [expected, expected]
        assert group[0].text == tokenizer.decode(
            [t for t in expected if t != 2], skip_special_tokens=True
        )
    assert peft_model.get_base_model().config._attn_implementation == PACKED_ATTENTION


def test_seeded_sampling_repeats_and_answers_differ_within_a_group() -> None:
    peft_model, tokenizer, _ = _policy()
    renderer = ChatRenderer(tokenizer)
    prompt = ReinforcementPrompt(1, renderer.render_prompt([{"role": "user", "content": "Hi"}]), {})
    sampler = OnPolicySampler(peft_model, tokenizer, renderer, frozenset({2}), 2048, bfloat16=False)
    first = sampler.sample([prompt], n=4, max_tokens=8, seeds=[5])
    again = sampler.sample([prompt], n=4, max_tokens=8, seeds=[5])
    other = sampler.sample([prompt], n=4, max_tokens=8, seeds=[6])
    assert first == again
    assert first != other
    assert first is not None
    assert len({tuple(c.ids) for c in first[0]}) > 1


def test_one_step_raises_the_likelihood_of_the_answers_that_won() -> None:
    import torch

    peft_model, tokenizer, scorer = _policy()
    renderer = ChatRenderer(tokenizer)
    [prompt] = load_reinforcement(json.dumps(_rows(1)[0]).encode(), renderer)
    sampler = OnPolicySampler(peft_model, tokenizer, renderer, frozenset({2}), 2048, bfloat16=False)
    hp = Hyperparameters(1, 1, 1.0, 0.04, 1.0, 1, 1, "default")
    objective = ReinforcementObjective(
        scorer, peft_model, sampler, PARITY, hp, seed=3, max_completion_tokens=10
    )
    try:
        params = [p for p in peft_model.parameters() if p.requires_grad]
        result = objective.train_batch([prompt], step=0)
        assert result is not None
        [(_, answers, rewards)] = objective.last_groups
        advantages = group_advantages([rewards])[0]
        assert any(advantages), rewards  # this seed's group has winners and losers

        def logps() -> list[float]:
            from finetune_kit.local.engine.training_data import SupervisedExample

            start = prompt.n_tokens - 1
            examples = [
                SupervisedExample(
                    1, prompt.prompt_ids + c.ids, list(range(start, start + len(c.ids))), 0
                )
                for c in answers
            ]
            with torch.no_grad():
                nll, _, segment = scorer.token_nll(examples)
            sums = torch.zeros(len(examples)).index_add(0, segment, -nll)
            return [float(v) for v in sums]

        before = logps()
        with torch.no_grad():
            for param in params:
                param -= 1e-2 * param.grad
        after = logps()
    finally:
        objective.close()
    # Gradient descent on the loss is ascent on sum(A_i * log p_i): a small step raises it.
    gain = sum(a * (y - x) for a, x, y in zip(advantages, before, after, strict=True))
    assert gain > 0
    assert result.extra["train_reward_mean"] == pytest.approx(sum(rewards) / len(rewards))
    assert result.extra["train_kl"] == 0.0  # a fresh adapter is the base model
    assert result.accuracy is None


def test_a_run_reports_rewards_checkpoints_and_an_adapter(tmp_path: Path) -> None:
    recorder = _Recorder()
    result = train(_request(tmp_path), recorder)
    assert result.status == "succeeded"
    assert result.adapter_path is not None
    assert (result.adapter_path / "adapter_model.safetensors").is_file()
    assert result.hyperparameters.to_dict() == {
        "n_epochs": 2,
        "batch_size": 4,
        "learning_rate_multiplier": 0.25,
        "beta": 0.04,
        "compute_multiplier": 0.5,
        "eval_interval": 2,
        "eval_samples": 1,
        "reasoning_effort": "default",
    }
    assert [m.step for m in recorder.steps] == [1, 2, 3, 4]
    for metrics in recorder.steps:
        data = metrics.to_dict()
        assert "train_mean_token_accuracy" not in data
        assert 0 <= data["train_reward_mean"] <= 1
        assert data["train_grader_errors"] == 0
        assert 0 < data["train_completion_tokens_mean"] <= 12
        assert ("valid_reward_mean" in data) == (metrics.step % 2 == 0)
    assert [c.step for c in recorder.checkpoints] == [2, 4]
    assert result.trained_tokens > 0


def test_pause_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    whole = _Recorder()
    train(_request(tmp_path / "whole"), whole)
    first = _Recorder(pause_at=3)
    paused = train(_request(tmp_path / "split"), first)
    assert paused.status == "paused"
    assert paused.resume_checkpoint is not None
    second = _Recorder()
    resumed = train(_request(tmp_path / "split", resume_from=paused.resume_checkpoint), second)
    assert resumed.status == "succeeded"

    def rewards(steps: list[StepMetrics]) -> list[tuple[int, float, float | None]]:
        return [
            (m.step, m.extra["train_reward_mean"], m.extra.get("valid_reward_mean")) for m in steps
        ]

    assert rewards(first.steps + second.steps) == rewards(whole.steps)


def test_a_stop_while_sampling_leaves_the_step_undone(tmp_path: Path) -> None:
    class StopAtOnce(_Recorder):
        def should_stop(self) -> StopSignal | None:
            # Nothing before the first step; then "cancel" from inside its sampling on.
            self.polls = getattr(self, "polls", 0) + 1
            return "cancel" if self.polls > 1 else None

    recorder = StopAtOnce()
    result = train(_request(tmp_path), recorder)
    assert result.status == "cancelled"
    assert result.steps_done == 0
    assert recorder.steps == []


def test_auto_hyperparameters(tmp_path: Path) -> None:
    request = _request(
        tmp_path,
        n_epochs="auto",
        batch_size="auto",
        compute_multiplier="auto",
        eval_interval=None,
        reasoning_effort="low",
    )
    hp = resolve_hyperparameters(request, 10)
    assert hp.to_dict() == {
        "n_epochs": 10,
        "batch_size": 1,
        "learning_rate_multiplier": 0.25,
        "beta": 0.04,
        "compute_multiplier": 1.0,
        "eval_interval": 20,
        "eval_samples": 1,
        "reasoning_effort": "low",
    }
    assert samples_per_prompt(1.0) == 8


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"grader": None}, "grader"),
        ({"compute_multiplier": 0}, "compute_multiplier"),
        ({"compute_multiplier": 11}, "compute_multiplier"),
        ({"eval_samples": 0}, "eval_samples"),
        ({"eval_interval": 0}, "eval_interval"),
        ({"reasoning_effort": "max"}, "reasoning_effort"),
    ],
)
def test_reinforcement_options_are_checked(
    tmp_path: Path, options: dict[str, Any], param: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _request(tmp_path, **options)
    assert caught.value.param == param


def test_an_example_that_ends_with_an_answer_names_its_line(tmp_path: Path) -> None:
    rows: list[Any] = _rows(3)
    rows[1] = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
        ]
    }
    request = _request(tmp_path, training_file=_write(tmp_path / "bad.jsonl", rows))
    with pytest.raises(TrainingDataError) as caught:
        train(request)
    assert caught.value.line == 2
    assert caught.value.field == "messages[1].role"
    assert "ends with the user's turn" in str(caught.value)


def test_a_judge_model_grader_is_refused(tmp_path: Path) -> None:
    judge = {
        "type": "score_model",
        "name": "judge",
        "model": "gpt-4o-mini",
        "input": [{"role": "user", "content": "Score {{sample.output_text}}"}],
    }
    with pytest.raises(ConfigurationError, match="judge model") as caught:
        train(_request(tmp_path, grader=judge))
    assert caught.value.param == "grader"


def test_a_grader_that_always_fails_stops_the_run(tmp_path: Path) -> None:
    broken = {**CONTAINS, "reference": "{{item.no_such_key}}"}
    recorder = _Recorder()
    with pytest.raises(ConfigurationError, match="invalid_variable_error") as caught:
        train(_request(tmp_path, grader=broken, n_epochs=3, batch_size=2), recorder)
    assert caught.value.param == "grader"
    assert [m.extra["train_grader_errors"] for m in recorder.steps] == [8.0, 8.0]


def test_data_parallel_training_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="one process"):
        train(_request(tmp_path), parallel=lambda objective, model, params: objective)
