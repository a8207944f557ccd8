"""The values that go in and out of the local training engine (``training``).

The worker process builds a ``TrainingRequest``, passes an object implementing
``TrainingCallbacks`` and gets a ``TrainingResult``; on the way it receives the resolved
``Hyperparameters``, one ``StepMetrics`` per optimizer step and one ``CheckpointInfo`` per saved
checkpoint.

Example:
    >>> from pathlib import Path
    >>> request = TrainingRequest(
    ...     base_model="tiny-random", training_file=Path("train.jsonl"), output_dir=Path("out")
    ... )
    >>> request.n_epochs, request.method
    ('auto', 'supervised')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from ...errors import ConfigurationError
from .precision import DtypeName

__all__ = [
    "BASE_LEARNING_RATE",
    "DEFAULT_DPO_BETA",
    "HYPERPARAMETER_RANGES",
    "REASONING_EFFORTS",
    "CheckpointInfo",
    "EngineMethod",
    "HyperparameterRange",
    "Hyperparameters",
    "LoraSettings",
    "NoCallbacks",
    "StepMetrics",
    "StopSignal",
    "TrainingCallbacks",
    "TrainingRequest",
    "TrainingResult",
    "TrainingStatus",
    "auto_batch_size",
    "auto_learning_rate_multiplier",
    "auto_n_epochs",
    "check_hyperparameter",
]

EngineMethod = Literal["supervised", "dpo", "reinforcement"]
"""A fine-tuning method this engine trains: supervised (SFT), DPO, or reinforcement (RFT, a
group-relative policy gradient against a grader; see ``rft``).

The same names as ``finetune_kit.data``'s ``MethodName`` (the methods OpenAI offers for a base
model), kept apart: this is what the engine trains, that is what a provider offers.
"""
ReasoningEffort = Literal["default", "low", "medium", "high"]
REASONING_EFFORTS: tuple[str, ...] = ("default", "low", "medium", "high")
"""OpenAI's ``reasoning_effort`` values for reinforcement fine-tuning (no ``"auto"``)."""
TrainingStatus = Literal["succeeded", "cancelled", "paused"]
StopSignal = Literal["cancel", "pause"]
Auto = Literal["auto"]

BASE_LEARNING_RATE = 2e-4
"""The learning rate for ``learning_rate_multiplier=1``: lr = 2e-4 x multiplier.

2e-4 is the usual LoRA learning rate; ``"auto"`` picks a multiplier of 2.5 or more (see
``auto_learning_rate_multiplier``), about what OpenAI shows for small files.
"""

DEFAULT_DPO_BETA = 0.1
"""``beta`` chosen for ``"auto"``, as OpenAI's default."""


def auto_n_epochs(n_examples: int) -> int:
    """Epochs OpenAI picks for ``n_epochs="auto"`` (the cookbook's rule).

    Three epochs, raised for small files so about 100 examples are seen (at most 25 epochs), and
    lowered for large ones so about 25,000 are (at least one).

    Example:
        >>> auto_n_epochs(10), auto_n_epochs(50), auto_n_epochs(20000)
        (10, 3, 1)
    """
    if n_examples * 3 < 100:
        return min(25, 100 // max(1, n_examples))
    if n_examples * 3 > 25000:
        return max(1, 25000 // n_examples)
    return 3


def auto_batch_size(n_examples: int) -> int:
    """Batch size for ``batch_size="auto"``: about 0.2 % of the examples, from 1 to 256.

    That is OpenAI's documented behaviour; small files train one example per step.

    Example:
        >>> auto_batch_size(10), auto_batch_size(5000), auto_batch_size(10**6)
        (1, 10, 256)
    """
    return max(1, min(256, round(n_examples * 0.002)))


def auto_learning_rate_multiplier(batch_size: int) -> float:
    """Multiplier for ``learning_rate_multiplier="auto"``: 2.5 (lr 5e-4), raised for large batches.

    On 10 limerick examples (10 epochs of batch 1) a multiplier of 0.5 does not teach SmolLM2 the
    style, 2.5 does, and 5 makes it recite its training answers. Larger batches average away more
    gradient noise and take fewer steps, so, as OpenAI does, they get a larger rate:
    ``2.5 x sqrt(batch_size / 8)`` above 8, at most 10.

    Example:
        >>> auto_learning_rate_multiplier(1), auto_learning_rate_multiplier(32)
        (2.5, 5.0)
    """
    if batch_size <= 8:
        return 2.5
    return round(min(10.0, 2.5 * math.sqrt(batch_size / 8)), 4)


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapter shape.

    Attributes:
        rank: Rank ``r`` of the update matrices.
        alpha: Scaling numerator (the update is scaled by ``alpha / rank``).
        dropout: Dropout on the adapter input; 0 keeps steps deterministic and fast.
        target_modules: Linear layers that get an adapter (every projection of a Llama block).
    """

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )


@dataclass(frozen=True)
class HyperparameterRange:
    """The numbers a hyperparameter may take besides ``"auto"``.

    Attributes:
        kind: ``int`` or ``float`` (an int is a valid float).
        low: The lower bound, included unless ``low_open``.
        high: The upper bound, included.
        low_open: Whether ``low`` itself is refused.
    """

    kind: type
    low: float
    high: float
    low_open: bool = False

    def describe(self) -> str:
        """The range in words, such as ``an integer in [1, 50]``."""
        bound = (
            f"({self.low:g}, {self.high:g}]" if self.low_open else f"[{self.low:g}, {self.high:g}]"
        )
        return f"{'an integer' if self.kind is int else 'a number'} in {bound}"


HYPERPARAMETER_RANGES: Mapping[str, HyperparameterRange] = {
    "n_epochs": HyperparameterRange(int, 1, 50),
    "batch_size": HyperparameterRange(int, 1, 256),
    # OpenAI sets no upper bound; 100 (a learning rate of 2e-2) makes a typo such as 500 fail
    # at once instead of training a broken model.
    "learning_rate_multiplier": HyperparameterRange(float, 0, 100, low_open=True),
    "beta": HyperparameterRange(float, 0, 2, low_open=True),
    # Reinforcement fine-tuning's (OpenAI's ranges; it sets no upper bound on the two counts:
    # these catch a typo before a CPU spends days evaluating).
    "compute_multiplier": HyperparameterRange(float, 0.00001, 10, low_open=True),
    "eval_interval": HyperparameterRange(int, 1, 100_000),
    "eval_samples": HyperparameterRange(int, 1, 1_000),
}
"""The values the engine accepts for each hyperparameter besides ``"auto"`` (OpenAI's ranges,
with ``learning_rate_multiplier`` capped at 100); the server checks a job's against them.
``reasoning_effort`` is a word, not a number: see ``REASONING_EFFORTS``."""


def check_hyperparameter(name: str, value: Any) -> None:
    """Refuse a hyperparameter value the engine cannot train with.

    Args:
        name: A key of ``HYPERPARAMETER_RANGES``.
        value: ``"auto"`` or a number.

    Raises:
        ConfigurationError: The value is of the wrong type or out of range; ``param`` is
            ``name``.

    Example:
        >>> check_hyperparameter("n_epochs", "auto")
        >>> try:
        ...     check_hyperparameter("learning_rate_multiplier", 500)
        ... except ConfigurationError as exc:
        ...     print(exc)
        learning_rate_multiplier is 500; use 'auto' or a number in (0, 100]
    """
    if name == "reasoning_effort":
        if value not in REASONING_EFFORTS:
            raise ConfigurationError(
                f"reasoning_effort is {value!r}; use one of {', '.join(REASONING_EFFORTS)}",
                param=name,
            )
        return
    if value == "auto":
        return
    limits = HYPERPARAMETER_RANGES[name]
    kinds: tuple[type, ...] = (int,) if limits.kind is int else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if ok:
        below = value <= limits.low if limits.low_open else value < limits.low
        ok = not below and value <= limits.high
    if not ok:
        raise ConfigurationError(
            f"{name} is {value!r}; use 'auto' or {limits.describe()}", param=name
        )


@dataclass(frozen=True)
class TrainingRequest:
    """Everything one fine-tuning run needs.

    Attributes:
        base_model: A base model name, alias or path (see ``ModelRegistry.resolve``).
        training_file: The JSONL training file.
        output_dir: Where checkpoints (``checkpoints/step-N``) and the final adapter
            (``adapter``) are written.
        method: ``"supervised"`` (chat examples), ``"dpo"`` (preference pairs) or
            ``"reinforcement"`` (prompts graded by ``grader``; see ``rft``).
        validation_file: Optional JSONL validation file (same format as the training file).
        n_epochs: 1-50 or ``"auto"`` (see ``auto_n_epochs``).
        batch_size: 1-256 or ``"auto"`` (see ``auto_batch_size``).
        learning_rate_multiplier: In (0, 100] or ``"auto"``; the learning rate is
            ``BASE_LEARNING_RATE`` times it.
        beta: DPO's beta in (0, 2] or ``"auto"`` (0.1); for reinforcement, the weight of the
            KL penalty to the base model (``"auto"``: ``rft.DEFAULT_KL_BETA``); ignored for
            supervised.
        grader: Reinforcement only: the grader definition (``finetune_kit.graders``), compiled
            once per run.
        compute_multiplier: Reinforcement only: in (0.00001, 10] or ``"auto"`` (1); scales the
            completions sampled per prompt (``rft.samples_per_prompt``).
        eval_samples: Reinforcement only: completions sampled per validation prompt, 1-1000
            or ``"auto"``.
        reasoning_effort: Reinforcement only: ``default``, ``low``, ``medium``, ``high``: the
            completion length budget (``rft.completion_budget``).
        max_completion_tokens: Reinforcement only: overrides that budget.
        seed: Seeds the adapter initialisation and the data order: equal seeds, equal runs.
        resume_from: A checkpoint folder of an earlier run of the same request: training
            continues from its step.
        init_adapter: An adapter folder (a fine-tuned model) to start from instead of a fresh
            adapter: continued fine-tuning, or DPO on top of a supervised model.
        cache_dir: The model registry's cache folder (``None``: its default).
        default_model: The registry's default base model (``None``: its default).
        aliases: Extra registry aliases.
        lora: Adapter shape.
        max_seq_len: Truncate examples to this many tokens (``None``: the model's context).
        eval_interval: Steps between validation batches (``None``: about 20 per run;
            reinforcement: about 5, each over the whole validation file).
        num_threads: Torch CPU threads (``None``: see ``training.threads_for``: half the cores
            this process may use, 1 for ``tiny-random``).
        keep_checkpoints: Epoch checkpoints kept on disk; older ones are deleted.
        dtype: ``"auto"``, ``"float32"`` or ``"bfloat16"`` (see ``precision``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``; ``None`` reads
            ``$FINETUNE_KIT_LOCAL_DEVICE`` (default ``auto``: CUDA when present; see ``device``).
        qlora: Quantize the base model to 4 bits (NF4) and train a bfloat16 adapter on it
            (CUDA and the ``qlora`` extra, bitsandbytes).
        gradient_checkpointing: ``True``/``False`` to force it; ``None`` turns it on when the
            longest example would not fit the free GPU memory otherwise.
    """

    base_model: str
    training_file: Path
    output_dir: Path
    method: EngineMethod = "supervised"
    validation_file: Path | None = None
    n_epochs: int | Auto = "auto"
    batch_size: int | Auto = "auto"
    learning_rate_multiplier: float | Auto = "auto"
    beta: float | Auto = "auto"
    grader: Mapping[str, Any] | None = None
    compute_multiplier: float | Auto = "auto"
    eval_samples: int | Auto = "auto"
    reasoning_effort: ReasoningEffort = "default"
    max_completion_tokens: int | None = None
    seed: int = 0
    resume_from: Path | None = None
    init_adapter: Path | None = None
    cache_dir: Path | None = None
    default_model: str | None = None
    aliases: Mapping[str, str] | None = None
    lora: LoraSettings = field(default_factory=LoraSettings)
    max_seq_len: int | None = None
    eval_interval: int | None = None
    num_threads: int | None = None
    keep_checkpoints: int = 3
    dtype: DtypeName = "auto"
    device: str | None = None
    qlora: bool = False
    gradient_checkpointing: bool | None = None

    def __post_init__(self) -> None:
        if self.method not in ("supervised", "dpo", "reinforcement"):
            raise ConfigurationError(
                f"method is {self.method!r}; the local engine trains 'supervised', 'dpo' or "
                "'reinforcement'",
                param="method",
            )
        if self.method == "reinforcement" and self.grader is None:
            raise ConfigurationError(
                "method 'reinforcement' needs a grader to score the sampled answers",
                param="grader",
            )
        for name in HYPERPARAMETER_RANGES:
            value = getattr(self, name)
            check_hyperparameter(name, "auto" if value is None else value)
        check_hyperparameter("reasoning_effort", self.reasoning_effort)
        if self.max_completion_tokens is not None and self.max_completion_tokens < 1:
            raise ConfigurationError(
                "max_completion_tokens must be at least 1", param="max_completion_tokens"
            )
        if self.keep_checkpoints < 1:
            raise ConfigurationError(
                "keep_checkpoints must be at least 1", param="keep_checkpoints"
            )


@dataclass(frozen=True)
class Hyperparameters:
    """Hyperparameters with every ``"auto"`` resolved.

    Attributes:
        n_epochs: Passes over the training file.
        batch_size: Examples per optimizer step.
        learning_rate_multiplier: The learning rate is ``BASE_LEARNING_RATE`` times it.
        beta: DPO's beta, or reinforcement's KL weight; ``None`` for supervised.
        compute_multiplier: Reinforcement only: scales the completions sampled per prompt.
        eval_interval: Reinforcement only: steps between validation evaluations.
        eval_samples: Reinforcement only: completions sampled per validation prompt.
        reasoning_effort: Reinforcement only: the completion budget's name.
    """

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    beta: float | None = None
    compute_multiplier: float | None = None
    eval_interval: int | None = None
    eval_samples: int | None = None
    reasoning_effort: str | None = None

    @property
    def learning_rate(self) -> float:
        """The peak learning rate."""
        return BASE_LEARNING_RATE * self.learning_rate_multiplier

    def to_dict(self) -> dict[str, int | float | str]:
        """The values as the job object's ``hyperparameters`` shows them.

        ``beta`` for DPO (and reinforcement's KL weight), the reinforcement ones for
        reinforcement.
        """
        values: dict[str, int | float | str] = {
            "n_epochs": self.n_epochs,
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
        }
        optional = {
            "beta": self.beta,
            "compute_multiplier": self.compute_multiplier,
            "eval_interval": self.eval_interval,
            "eval_samples": self.eval_samples,
            "reasoning_effort": self.reasoning_effort,
        }
        values.update({key: value for key, value in optional.items() if value is not None})
        return values


@dataclass(frozen=True)
class StepMetrics:
    """Metrics of one optimizer step, as OpenAI's ``metrics`` events carry them.

    Attributes:
        step: 1-based step number.
        total_steps: Steps in the whole run.
        epoch: 1-based epoch the step belongs to.
        train_loss: Mean loss over the batch's trained tokens (DPO: mean pair loss;
            reinforcement: the policy-gradient loss).
        train_mean_token_accuracy: Share of trained tokens predicted exactly (DPO: on the
            preferred answers; reinforcement: ``None``, there is no reference answer).
        valid_loss: Loss on a validation batch, at evaluation steps only.
        valid_mean_token_accuracy: Accuracy on that batch.
        full_valid_loss: Loss on the whole validation file, at epoch ends only.
        full_valid_mean_token_accuracy: Accuracy on the whole validation file.
        trained_tokens: Tokens processed so far (each example's tokens, once per epoch).
        extra: Method-specific metrics (DPO: ``reward_accuracy``, ``reward_margin``;
            reinforcement: ``train_reward_mean``, ``valid_reward_mean``... see ``rft``).
    """

    step: int
    total_steps: int
    epoch: int
    train_loss: float
    train_mean_token_accuracy: float | None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None
    trained_tokens: int = 0
    extra: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, float]:
        """The metrics as an event's ``data``: ``step`` and every metric that has a value."""
        data: dict[str, float] = {"step": self.step, "train_loss": self.train_loss}
        optional = {
            "train_mean_token_accuracy": self.train_mean_token_accuracy,
            "valid_loss": self.valid_loss,
            "valid_mean_token_accuracy": self.valid_mean_token_accuracy,
            "full_valid_loss": self.full_valid_loss,
            "full_valid_mean_token_accuracy": self.full_valid_mean_token_accuracy,
        }
        data.update({key: value for key, value in optional.items() if value is not None})
        data.update(self.extra)
        return data


@dataclass(frozen=True)
class CheckpointInfo:
    """An adapter saved at the end of an epoch (or where a paused run stopped).

    Attributes:
        step: The step it was saved after.
        epoch: Epochs completed (a paused run may stop mid-epoch: then the epoch it is in).
        path: The folder: a PEFT adapter (usable by ``Generator``) and the state needed to resume
            from it (``resume_from``).
        metrics: The metrics of its step (``StepMetrics.to_dict()``).
    """

    step: int
    epoch: int
    path: Path
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class TrainingResult:
    """How a run ended.

    Attributes:
        status: ``"succeeded"``, ``"cancelled"`` or ``"paused"``.
        base_model: The base model really used (``ModelRegistry.resolve`` of the request's).
        adapter_path: The final adapter (succeeded), else ``None``.
        trained_tokens: Tokens trained on, as OpenAI bills them: each example's tokens once per
            epoch (DPO: both answers), over the whole run including before a resume.
        hyperparameters: The resolved hyperparameters.
        total_steps: Steps of the whole run.
        steps_done: Steps completed when it ended.
        checkpoints: The epoch checkpoints kept on disk, oldest first.
        resume_checkpoint: Where a paused run can be resumed from (pass as ``resume_from``).
        metrics: The last step's metrics, when a step ran.
    """

    status: TrainingStatus
    base_model: str
    adapter_path: Path | None
    trained_tokens: int
    hyperparameters: Hyperparameters
    total_steps: int
    steps_done: int
    checkpoints: list[CheckpointInfo]
    resume_checkpoint: Path | None = None
    metrics: Mapping[str, float] | None = None


class TrainingCallbacks(Protocol):
    """What the training loop reports to, and asks, its caller (the worker process).

    A callbacks object may also have ``on_device(device, details)``: the loop calls it, when
    present, once the model is on its device (``device.DeviceInfo``, and a dict of how it trains
    there: dtype, QLoRA, tokens per pass, gradient checkpointing). ``NoCallbacks`` has it.
    """

    def on_start(self, hyperparameters: Hyperparameters, total_steps: int) -> None:
        """Training begins (or resumes), with the resolved hyperparameters."""

    def on_step(self, metrics: StepMetrics) -> None:
        """An optimizer step finished."""

    def on_checkpoint(self, checkpoint: CheckpointInfo) -> None:
        """An epoch-end checkpoint was saved."""

    def should_stop(self) -> StopSignal | None:
        """Polled before every step: ``"cancel"``, ``"pause"`` or ``None`` to go on."""


class NoCallbacks:
    """Callbacks that ignore every report and never stop; subclass it to override a few.

    Example:
        >>> class Printer(NoCallbacks):
        ...     def on_step(self, metrics: StepMetrics) -> None:
        ...         print(metrics.step, round(metrics.train_loss, 3))
    """

    def on_start(self, hyperparameters: Hyperparameters, total_steps: int) -> None:
        """Ignore the start."""

    def on_device(self, device: Any, details: Mapping[str, Any]) -> None:
        """Ignore where the model trains (``device.DeviceInfo`` and how)."""

    def on_step(self, metrics: StepMetrics) -> None:
        """Ignore a step."""

    def on_checkpoint(self, checkpoint: CheckpointInfo) -> None:
        """Ignore a checkpoint."""

    def should_stop(self) -> StopSignal | None:
        """Never stop."""
        return None
