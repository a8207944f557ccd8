r"""Reinforcement fine-tuning (RFT): sample answers, grade them, follow the reward.

OpenAI's ``method={"type": "reinforcement", ...}`` on the local engine. Each optimizer step
takes ``batch_size`` prompts of the training file (reinforcement examples: messages ending with
the user's turn) and, for each:

1. samples ``G`` answers with the adapter being trained (on-policy, temperature 1), on the
   training model itself (``OnPolicySampler``);
2. grades each answer with the job's grader (``finetune_kit.graders``, compiled once per run;
   the line's other keys are the grader's ``item``); a grading that fails counts 0;
3. turns the rewards into group-relative advantages, ``A_i = (r_i - mean) / (std + 1e-4)``
   over the prompt's ``G`` answers (std with Bessel's correction), so an answer is pushed up or
   down by how it did against its siblings, not by the reward's scale;
4. updates the LoRA adapter with the clipped policy-gradient loss of GRPO, as trl computes it
   (``loss_type="bnpo"``: a token mean over the step's answers), with a KL penalty to the base
   model, which is the same model with its adapter disabled (no second copy in memory)::

       ratio_t = exp(logp_t - logp_t.detach())                      (1 in value: one update
       L_t     = -min(ratio_t * A, clip(ratio_t, 1-eps, 1+eps) * A)  per sampled batch, so the
       KL_t    = exp(ref_t - logp_t) - (ref_t - logp_t) - 1          clip never binds)
       loss    = sum_t (L_t + beta * KL_t) / answer tokens

A prompt whose answers all scored the same carries no signal (every advantage is 0) and is
left out of the forward and backward passes, as DAPO's dynamic sampling does; a step where
every prompt is like that changes nothing.

Why generation runs here, on the training model, with the built-in batch decoder: the adapter
changes at every step, and the policy must be sampled as it is now. The llama.cpp engine reads
LoRA adapters once, when its process starts (a new GGUF adapter and a restart per step); vLLM
could load each step's adapter, but is a GPU server. The decoder here reads the live adapter
weights with no copy, batches every answer of the step in one running batch (finished answers
leave it), computes each prompt once for its ``G`` answers, and is the decoder the local
backend's chat uses. ``bench/rft.py`` measures its share of a step.

Hyperparameters, OpenAI's names (``resolve_reinforcement``; ``docs/local-backend.md``):

- ``n_epochs``, ``batch_size`` (prompts per step), ``learning_rate_multiplier``: as for
  supervised jobs (``"auto"`` alike, but a smaller learning rate: ``AUTO_RFT_LR_MULTIPLIER``).
- ``compute_multiplier``: answers sampled per prompt, ``samples_per_prompt``.
- ``eval_interval``: steps between evaluations on the validation file; ``eval_samples``:
  answers sampled per validation prompt. Each evaluation grades every validation prompt and
  reports ``valid_reward_mean``; the last step is always evaluated.
- ``reasoning_effort``: the models here do not reason apart from their answer; it sets the
  answer's token budget instead (``completion_budget``).

Example:
    >>> samples_per_prompt(1.0), samples_per_prompt(0.1), completion_budget("low")
    (8, 2, 64)
    >>> group_advantages([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    [[0.866, -0.866, -0.866, 0.866], [0.0, 0.0, 0.0, 0.0]]
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ...errors import ConfigurationError
from ...graders import CompiledGrader, Sample, compile_grader
from .batch_decoding import BaseSlot, BatchDecoder, DecodeParams, DecodeRequest
from .chat_format import ChatRenderer
from .objectives import PackedScorer
from .tool_parsing import parse_tool_calls
from .training_data import ReinforcementPrompt, SupervisedExample
from .types import Hyperparameters, TrainingRequest

__all__ = [
    "AUTO_RFT_LR_MULTIPLIER",
    "CLIP_EPSILON",
    "DEFAULT_KL_BETA",
    "Completion",
    "OnPolicySampler",
    "ReinforcementObjective",
    "RftStepResult",
    "completion_budget",
    "end_of_answer_ids",
    "group_advantages",
    "resolve_reinforcement",
    "samples_per_prompt",
]

logger = logging.getLogger("finetune_kit.local.rft")

DEFAULT_KL_BETA = 0.04
"""The KL penalty's weight for ``beta="auto"`` (trl's default before it moved to 0)."""

CLIP_EPSILON = 0.2
"""GRPO's ratio clip (trl's ``epsilon``)."""

SAMPLING_TEMPERATURE = 1.0
"""Answers are sampled from the policy itself (no temperature, no top-p), as trl does."""

AUTO_RFT_LR_MULTIPLIER = 0.25
"""``learning_rate_multiplier="auto"`` for reinforcement: 0.25, a learning rate of 5e-5.

A policy gradient is far noisier than a supervised one; on ``bench/rft.py``'s task SmolLM2
learns at 5e-5 and goes off the rails within a few steps at the supervised 5e-4.
"""

BASE_SAMPLES = 8
"""Answers per prompt at ``compute_multiplier`` 1: fewer leave many groups without a winner."""

COMPLETION_BUDGETS: Mapping[str, int] = {"low": 64, "default": 256, "medium": 256, "high": 1024}
"""The answer's token budget for each ``reasoning_effort``."""

MAX_DECODE_ROWS = 64
"""Answers decoded in one running batch: more prompts wait for the next batch (memory)."""

ALL_FAILED_STEPS = 3
"""A job whose every grading failed in this many steps in a row stops (OpenAI stops a job
after too many grader errors)."""

_STD_EPSILON = 1e-4


def samples_per_prompt(compute_multiplier: float) -> int:
    """Answers sampled for each prompt: ``8 x compute_multiplier``, from 2 to 64.

    Example:
        >>> samples_per_prompt(2), samples_per_prompt(10)
        (16, 64)
    """
    return max(2, min(64, round(BASE_SAMPLES * compute_multiplier)))


def completion_budget(reasoning_effort: str) -> int:
    """The most tokens a sampled answer may have for a ``reasoning_effort``.

    Example:
        >>> completion_budget("default"), completion_budget("high")
        (256, 1024)
    """
    return COMPLETION_BUDGETS[reasoning_effort]


def end_of_answer_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Tokens that end an answer: the tokenizer's end and the model's end-of-turn tokens."""
    found: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, (list, tuple)):
            found.update(int(v) for v in value)
    return frozenset(found)


def resolve_reinforcement(
    request: TrainingRequest, base: Hyperparameters, total_steps: int
) -> Hyperparameters:
    """Add the reinforcement hyperparameters to the resolved common ones.

    Args:
        request: The run's request.
        base: ``n_epochs``, ``batch_size`` and ``learning_rate_multiplier`` already resolved.
        total_steps: Steps of the whole run (``eval_interval="auto"`` evaluates about 5 times).

    Returns:
        The hyperparameters with ``beta`` (the KL weight), ``compute_multiplier``,
        ``eval_interval``, ``eval_samples`` and ``reasoning_effort`` set.
    """
    multiplier = (
        AUTO_RFT_LR_MULTIPLIER
        if request.learning_rate_multiplier == "auto"
        else float(request.learning_rate_multiplier)
    )
    return replace(
        base,
        learning_rate_multiplier=multiplier,
        beta=DEFAULT_KL_BETA if request.beta == "auto" else float(request.beta),
        compute_multiplier=(
            1.0 if request.compute_multiplier == "auto" else float(request.compute_multiplier)
        ),
        eval_interval=request.eval_interval or max(1, math.ceil(total_steps / 5)),
        eval_samples=1 if request.eval_samples == "auto" else int(request.eval_samples),
        reasoning_effort=request.reasoning_effort,
    )


def group_advantages(rewards: Sequence[Sequence[float]]) -> list[list[float]]:
    """Group-relative advantages: each reward against its group's mean, in its group's std.

    A group whose rewards are all equal gets zeros. Rounded to 3 places for display only in
    this example; the engine uses the exact values.

    Example:
        >>> group_advantages([[0.0, 1.0]])
        [[-0.707, 0.707]]
    """
    result: list[list[float]] = []
    for group in rewards:
        n = len(group)
        mean = sum(group) / n
        variance = sum((r - mean) ** 2 for r in group) / (n - 1) if n > 1 else 0.0
        std = math.sqrt(variance)
        if std == 0:
            result.append([0.0] * n)
        else:
            result.append([round((r - mean) / (std + _STD_EPSILON), 3) for r in group])
    return result


def _advantages(rewards: Sequence[float]) -> list[float]:
    n = len(rewards)
    mean = sum(rewards) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1)) if n > 1 else 0.0
    if std == 0:
        return [0.0] * n
    return [(r - mean) / (std + _STD_EPSILON) for r in rewards]


@dataclass(frozen=True)
class Completion:
    """One sampled answer.

    Attributes:
        ids: Its token ids, the end-of-turn token included when it ended on its own.
        text: Its text (special tokens left out).
        finish_reason: ``"stop"`` (it ended its turn) or ``"length"`` (the budget ran out).
    """

    ids: list[int]
    text: str
    finish_reason: str


class _PolicyDecoder(BatchDecoder):
    """The batch decoder on the model being trained: its adapter on, each prompt run once.

    ``add`` computes each request's prompt once and gives each of its ``n`` answers a copy of
    the cache (the stock decoder computes the prompt once per answer); ``_advance`` keeps each
    finished answer's token ids, which the loss needs exactly as they were sampled.
    """

    def __init__(self, slot: BaseSlot, *, bfloat16: bool) -> None:
        super().__init__(slot)
        self.bfloat16 = bfloat16
        self.finished: dict[tuple[int, int], Completion] = {}

    def _inference(self) -> contextlib.AbstractContextManager[Any]:
        stack = contextlib.ExitStack()
        stack.enter_context(self.torch.inference_mode())
        if self.bfloat16:
            # The frozen weights are bfloat16 and the adapter float32, as in training.
            device = self.slot.model.device.type
            stack.enter_context(self.torch.autocast(device, dtype=self.torch.bfloat16))
        return stack

    def _forward(self, adapters: Sequence[str], **inputs: Any) -> Any:
        # One adapter, always the one being trained: no switching per call.
        return self.slot.peft(**inputs)

    def add(self, requests: Sequence[DecodeRequest], adapters: dict[int, str]) -> None:
        """Prefill each request's prompt once and start its ``n`` answers from it."""
        torch = self.torch
        from transformers import DynamicCache

        from .transformers_compat import cache_argument

        rows = [
            self._row(request, index, adapters[id(request)])
            for request in requests
            for index in range(request.params.n)
        ]
        prompts = [request.prompt_ids for request in requests]
        width = max(len(p) for p in prompts)
        pad = int(self.slot.tokenizer.pad_token_id or 0)
        device = self.slot.model.device
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        expand = torch.tensor(
            [i for i, request in enumerate(requests) for _ in range(request.params.n)],
            device=device,
        )
        cache = DynamicCache(config=self.slot.model.config)
        with self._inference():
            out = self._forward(
                [],
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                logits_to_keep=1,
                **{cache_argument(self.slot.model): cache},
            )
            tokens = self._sample(out.logits[:, -1, :].index_select(0, expand), rows)
            keep = self._advance(rows, tokens)
            if not keep:
                return
            index = expand[torch.tensor(keep, device=device)]
            cache.batch_select_indices(index)
            self._merge(
                cache,
                mask[index],
                positions[index, -1:],
                [rows[i] for i in keep],
                [tokens[i] for i in keep],
            )

    def _row(self, request: DecodeRequest, index: int, adapter: str) -> Any:
        from .batch_decoding import _Sequence

        generator = self.torch.Generator().manual_seed(request.params.seed * 131 + index)
        return _Sequence(request, index, adapter, generator)

    def _advance(self, rows: Sequence[Any], tokens: Sequence[int]) -> list[int]:
        keep = super()._advance(rows, tokens)
        kept = set(keep)
        for position, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            if position in kept:
                continue
            ended = token in self.slot.eos_ids
            ids = [*row.ids, token] if ended else list(row.ids)
            self.finished[(id(row.request), row.index)] = Completion(
                ids, row.text, "stop" if ended else "length"
            )
        # Nobody reads the decoder's event queues here: empty them as they fill.
        for request in {id(row.request): row.request for row in rows}.values():
            while not request.events.empty():
                request.events.get_nowait()
        return keep


class OnPolicySampler:
    """Samples answers from a PEFT model as it is now (see the module docstring).

    Args:
        peft_model: The model being trained.
        tokenizer: Its tokenizer.
        renderer: Its chat renderer.
        eos_ids: Tokens that end an answer.
        context: The model's context length.
        bfloat16: Run under bfloat16 autocast (the training run's setting).

    Example:
        >>> from peft import LoraConfig, get_peft_model
        >>> from finetune_kit.local.engine.tiny_model import build_tiny_model
        >>> model, tokenizer = build_tiny_model()
        >>> peft_model = get_peft_model(model, LoraConfig(target_modules=["q_proj"]))
        >>> sampler = OnPolicySampler(peft_model, tokenizer, ChatRenderer(tokenizer),
        ...                           frozenset({2}), 2048, bfloat16=False)
        >>> prompt = ReinforcementPrompt(1, [1, 75, 108], {})
        >>> [group] = sampler.sample([prompt], n=3, max_tokens=4, seeds=[7])
        >>> [len(c.ids) for c in group], {c.finish_reason for c in group}
        ([4, 4, 4], {'length'})
    """

    def __init__(
        self,
        peft_model: Any,
        tokenizer: Any,
        renderer: ChatRenderer,
        eos_ids: frozenset[int],
        context: int,
        *,
        bfloat16: bool,
    ) -> None:
        self.peft_model = peft_model
        self.base = peft_model.get_base_model()
        self.slot = BaseSlot("policy", self.base, tokenizer, renderer, eos_ids, context, peft_model)
        self.bfloat16 = bfloat16

    @contextlib.contextmanager
    def _decoding_attention(self) -> Any:
        # Training switched the model to packed attention, which builds no padding mask; a
        # batch of left-padded prompts needs SDPA with its mask. Switched back afterwards.
        current = self.base.config._attn_implementation
        self.base.set_attn_implementation("sdpa")
        try:
            yield
        finally:
            self.base.set_attn_implementation(current)

    def sample(
        self,
        prompts: Sequence[ReinforcementPrompt],
        *,
        n: int,
        max_tokens: int,
        seeds: Sequence[int],
        interrupted: Callable[[], bool] = lambda: False,
        temperature: float = SAMPLING_TEMPERATURE,
    ) -> list[list[Completion]] | None:
        """Sample ``n`` answers for each prompt.

        Args:
            prompts: The prompts.
            n: Answers per prompt.
            max_tokens: Most tokens per answer (also bounded by the context).
            seeds: One seed per prompt: equal seeds and weights, equal answers.
            interrupted: Polled between decoding steps; when it says so, sampling stops.
            temperature: 1 samples the policy itself (training); 0 takes the likeliest token.

        Returns:
            The answers, one list of ``n`` per prompt; ``None`` when interrupted.
        """
        per_batch = max(1, MAX_DECODE_ROWS // n)
        groups: list[list[Completion]] = []
        was_training = self.peft_model.training
        self.peft_model.eval()
        try:
            with self._decoding_attention():
                for start in range(0, len(prompts), per_batch):
                    chunk = prompts[start : start + per_batch]
                    found = self._sample_chunk(
                        chunk,
                        n,
                        max_tokens,
                        seeds[start : start + per_batch],
                        interrupted,
                        temperature,
                    )
                    if found is None:
                        return None
                    groups.extend(found)
        finally:
            if was_training:
                self.peft_model.train()
        return groups

    def _sample_chunk(
        self,
        prompts: Sequence[ReinforcementPrompt],
        n: int,
        max_tokens: int,
        seeds: Sequence[int],
        interrupted: Callable[[], bool],
        temperature: float,
    ) -> list[list[Completion]] | None:
        decoder = _PolicyDecoder(self.slot, bfloat16=self.bfloat16)
        requests = [
            DecodeRequest(
                self.slot.name,
                None,
                prompt.prompt_ids,
                DecodeParams(
                    max_tokens=max(1, min(max_tokens, self.slot.context - prompt.n_tokens)),
                    temperature=temperature,
                    top_p=1.0,
                    stop=(),
                    seed=seed,
                    n=n,
                ),
            )
            for prompt, seed in zip(prompts, seeds, strict=True)
        ]
        decoder.add(requests, {id(request): "default" for request in requests})
        while decoder.rows:
            if interrupted():
                return None
            decoder.step()
        return [[decoder.finished[(id(request), i)] for i in range(n)] for request in requests]


@dataclass(frozen=True)
class RftStepResult:
    """One reinforcement step: its loss (no token accuracy) and its metrics."""

    loss: float
    accuracy: float | None
    extra: dict[str, float]


@dataclass
class _Graded:
    rewards: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None


def _error_text(result: Any) -> str:
    """The error flags a grading set, with the first details given (for logs and failures)."""
    errors = result.metadata.errors.model_dump()
    flags = [key for key, value in errors.items() if value is True]
    details = [
        str(value) for key, value in errors.items() if key.endswith(("_details", "_type")) and value
    ]
    return ", ".join(flags) + (f": {details[0]}" if details else "")


class ReinforcementObjective:
    """What one reinforcement step computes: sample, grade, advantages, the GRPO loss.

    Args:
        scorer: Per-token log-likelihoods on the model being trained.
        peft_model: The model (its adapter disabled gives the KL reference).
        sampler: Samples answers from it.
        grader: The job's grader definition; compiled here, once.
        hyperparameters: The resolved hyperparameters (reinforcement ones set).
        seed: The run's seed: answers are sampled from seeds drawn from it and the step.
        max_completion_tokens: The answers' token budget (``None``: from reasoning_effort).
        interrupted: Polled while sampling; a step interrupted returns ``None``.

    Raises:
        GraderValidationError: The grader is invalid.
        ConfigurationError: The grader asks a model (score_model, label_model), which a
            training run has none to ask.
    """

    def __init__(
        self,
        scorer: PackedScorer,
        peft_model: Any,
        sampler: OnPolicySampler,
        grader: Mapping[str, Any],
        hyperparameters: Hyperparameters,
        *,
        seed: int,
        max_completion_tokens: int | None = None,
        interrupted: Callable[[], bool] = lambda: False,
    ) -> None:
        self.scorer = scorer
        self.torch = scorer.torch
        self.peft_model = peft_model
        self.sampler = sampler
        self.grader: CompiledGrader = compile_grader(grader)
        if self.grader.needs_model:
            self.grader.close()
            raise ConfigurationError(
                f"grader {self.grader.name!r} asks a judge model ({self.grader.type}); the "
                "local backend grades reinforcement jobs without one: use string_check, "
                "text_similarity, python, or a multi grader of those",
                param="grader",
            )
        hp = hyperparameters
        assert hp.compute_multiplier is not None
        assert hp.eval_samples is not None
        self.beta = hp.beta or 0.0
        self.samples = samples_per_prompt(hp.compute_multiplier)
        self.eval_samples = hp.eval_samples
        self.max_tokens = max_completion_tokens or completion_budget(
            hp.reasoning_effort or "default"
        )
        self.seed = seed
        self.interrupted = interrupted
        self._billed: dict[int, int] = {}
        self._failed_steps = 0
        self.last_groups: list[tuple[ReinforcementPrompt, list[Completion], list[float]]] = []
        """The last step's prompts, their answers and rewards (for inspection)."""

    def close(self) -> None:
        """Stop the grader's worker process, if it has one."""
        self.grader.close()

    def tokens(self, item: ReinforcementPrompt) -> int:
        """Tokens trained for one prompt in the last step: its answers, each with the prompt."""
        return self._billed.get(id(item), item.n_tokens)

    def _seeds(self, step: int, count: int, salt: int) -> list[int]:
        # One seed per prompt of a step, from the run's seed: a resumed run samples what an
        # uninterrupted one would.
        return [
            (self.seed * 1_000_003 + step * 7_919 + salt * 104_729 + i * 31) % (2**31)
            for i in range(count)
        ]

    def _grade(
        self, prompts: Sequence[ReinforcementPrompt], groups: Sequence[Sequence[Completion]]
    ) -> list[_Graded]:
        graded: list[_Graded] = []
        for prompt, group in zip(prompts, groups, strict=True):
            found = _Graded()
            for completion in group:
                result = self.grader.run(_sample(completion, prompt), prompt.item)
                found.rewards.append(float(result.reward))
                if result.metadata.errors.has_error:
                    found.errors += 1
                    if found.first_error is None:
                        found.first_error = _error_text(result)
            graded.append(found)
        return graded

    def train_batch(
        self, items: Sequence[ReinforcementPrompt], *, step: int
    ) -> RftStepResult | None:
        """Sample, grade and backpropagate one step (gradients accumulate; no optimizer step).

        Args:
            items: The step's prompts.
            step: The step's index (0-based), for the sampling seeds.

        Returns:
            The step's loss and metrics, or ``None`` when interrupted while sampling (nothing
            was changed).

        Raises:
            ConfigurationError: Every grading failed in ``ALL_FAILED_STEPS`` steps in a row.
        """
        started = time.perf_counter()
        groups = self.sampler.sample(
            items,
            n=self.samples,
            max_tokens=self.max_tokens,
            seeds=self._seeds(step, len(items), 0),
            interrupted=self.interrupted,
        )
        if groups is None:
            return None
        generated = time.perf_counter()
        graded = self._grade(items, groups)
        grading = time.perf_counter() - generated
        self.last_groups = [
            (item, list(group), found.rewards)
            for item, group, found in zip(items, groups, graded, strict=True)
        ]
        rewards = [r for g in graded for r in g.rewards]
        errors = sum(g.errors for g in graded)
        self._check_grader(errors, len(rewards), graded)
        loss, kl, trained = self._backward(items, groups, graded)
        answer_tokens = [len(c.ids) for group in groups for c in group]
        for item, group in zip(items, groups, strict=True):
            self._billed[id(item)] = sum(item.n_tokens + len(c.ids) for c in group)
        mean = sum(rewards) / len(rewards)
        extra = {
            "train_reward_mean": mean,
            "train_reward_std": math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards)),
            "train_grader_errors": float(errors),
            "train_completion_tokens_mean": sum(answer_tokens) / len(answer_tokens),
            "train_frac_reward_zero_std": sum(1 for g in graded if max(g.rewards) == min(g.rewards))
            / len(graded),
            "generation_seconds": generated - started,
            "grading_seconds": grading,
            "step_seconds": time.perf_counter() - started,
        }
        if trained:
            extra["train_kl"] = kl
        return RftStepResult(loss, None, extra)

    def _check_grader(self, errors: int, gradings: int, graded: Sequence[_Graded]) -> None:
        self._failed_steps = self._failed_steps + 1 if errors == gradings else 0
        if errors:
            first = next(g.first_error for g in graded if g.first_error is not None)
            logger.warning("%d of %d gradings failed; first: %s", errors, gradings, first)
        if self._failed_steps >= ALL_FAILED_STEPS:
            raise ConfigurationError(
                f"the grader {self.grader.name!r} failed on every answer of "
                f"{ALL_FAILED_STEPS} steps in a row (first error: {first}); check it with "
                "finetune_kit.graders.run_grader on an answer and a line of the training file",
                param="grader",
            )

    def _backward(
        self,
        items: Sequence[ReinforcementPrompt],
        groups: Sequence[Sequence[Completion]],
        graded: Sequence[_Graded],
    ) -> tuple[float, float, int]:
        """The GRPO loss's backward pass over the groups with a signal.

        Returns:
            ``(loss, mean KL per token, trained answer tokens)``.
        """
        torch = self.torch
        work: list[tuple[list[SupervisedExample], list[float]]] = []
        total = 0
        for item, group, found in zip(items, groups, graded, strict=True):
            advantages = _advantages(found.rewards)
            if not any(advantages):
                continue
            start = item.n_tokens - 1
            examples = [
                SupervisedExample(
                    item.line,
                    item.prompt_ids + c.ids,
                    list(range(start, start + len(c.ids))),
                    item.n_tokens + len(c.ids),
                )
                for c in group
            ]
            work.append((examples, advantages))
            total += sum(len(c.ids) for c in group)
        loss_sum = 0.0
        kl_sum = 0.0
        for examples, advantages in work:
            # Packed per prompt: its answers share the prompt, which then runs once.
            offset = 0
            for pack in self.scorer.packs(examples):
                weights = torch.tensor(
                    advantages[offset : offset + len(pack)], device=self.scorer.device
                )
                offset += len(pack)
                nll, _, segment = self.scorer.token_nll(pack)
                logp = -nll
                advantage = weights[segment]
                ratio = torch.exp(logp - logp.detach())
                clipped = torch.clamp(ratio, 1 - CLIP_EPSILON, 1 + CLIP_EPSILON)
                per_token = -torch.min(ratio * advantage, clipped * advantage)
                if self.beta:
                    with torch.no_grad(), self.peft_model.disable_adapter():
                        reference = -self.scorer.token_nll(pack)[0]
                    delta = reference - logp
                    kl = torch.exp(delta) - delta - 1
                    per_token = per_token + self.beta * kl
                    kl_sum += float(kl.detach().sum())
                (per_token.sum() / total).backward()
                loss_sum += float(per_token.detach().sum())
        if not total:
            return 0.0, 0.0, 0
        return loss_sum / total, kl_sum / total, total

    def evaluate(
        self, items: Sequence[ReinforcementPrompt], *, step: int
    ) -> dict[str, float] | None:
        """Grade ``eval_samples`` answers to every validation prompt, without gradients.

        Returns:
            ``valid_reward_mean``, ``valid_grader_errors`` and
            ``valid_completion_tokens_mean``; ``None`` when interrupted.
        """
        groups = self.sampler.sample(
            items,
            n=self.eval_samples,
            max_tokens=self.max_tokens,
            seeds=self._seeds(step, len(items), 1),
            interrupted=self.interrupted,
        )
        if groups is None:
            return None
        graded = self._grade(items, groups)
        rewards = [r for g in graded for r in g.rewards]
        answer_tokens = [len(c.ids) for group in groups for c in group]
        return {
            "valid_reward_mean": sum(rewards) / len(rewards),
            "valid_grader_errors": float(sum(g.errors for g in graded)),
            "valid_completion_tokens_mean": sum(answer_tokens) / len(answer_tokens),
        }


def _sample(completion: Completion, prompt: ReinforcementPrompt) -> Sample:
    """The answer as the grader's ``sample``: its text, and its tool calls when it made any."""
    message: dict[str, Any] = {"role": "assistant", "content": completion.text}
    if prompt.tool_names:
        parsed = parse_tool_calls(completion.text, prompt.tool_names)
        if parsed.tool_calls:
            message["content"] = parsed.content
            message["tool_calls"] = [
                {
                    "id": f"call_{index}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for index, call in enumerate(parsed.tool_calls)
            ]
    return Sample.from_message(message, finish_reason=completion.finish_reason)
