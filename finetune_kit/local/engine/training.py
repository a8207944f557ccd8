r"""LoRA fine-tuning of a local base model: the training loop the worker process runs.

``train(request, callbacks)`` reads the training file, resolves ``"auto"`` hyperparameters as
OpenAI does, attaches a LoRA adapter (transformers + peft) and trains it with its own compact
loop, then saves the adapter. The loop is built for small CPUs:

- a batch's examples are packed into one row (up to 2,048 tokens per forward pass, gradients
  accumulating beyond it), so the matrix products run once over all their tokens, and a prefix
  every example of the pack shares (a common system prompt, a DPO pair's prompt) runs once
  (``objectives``);
- attention stays within each example: examples of similar length attend in one batched
  product padded to the longest, long or uneven ones one at a time (``packed_attention``);
- the output layer (a 49k-word vocabulary for SmolLM2) runs only at trained positions, so
  system and user tokens cost a forward pass through the body and nothing more;
- no gradient checkpointing, adapter dropout 0, and half the cores by default (``threads_for``:
  the server shares the machine, and on 2 cores one thread trains as fast as two or faster).

On a GPU (``request.device``, see ``device`` and ``placement``) the same loop runs there: the
model is read straight onto the device in bfloat16 (or 4-bit with QLoRA), the tokens per packed
pass are sized from the free memory, gradient checkpointing turns on only when the longest
example would not fit otherwise, and running out of memory fails the run with what to try
instead. The callbacks' optional ``on_device`` hears where it trains.

Supervised loss is the mean cross-entropy over the batch's trained tokens (assistant turns whose
``weight`` is not 0). DPO compares the adapter with the base model (adapter disabled), whose
log-probabilities are computed once up front. Reinforcement samples answers with the adapter,
grades them and follows the reward with a group-relative policy gradient (``rft``): the same
loop, model, checkpoints and resume, with its own objective.

Checkpoints are written at each epoch end into ``output_dir/checkpoints/step-N`` (the newest
three kept): a PEFT adapter plus the optimizer state, so ``resume_from`` continues exactly where
the checkpoint was taken. The data order of each epoch is drawn from the seed and the epoch
number, so a resumed run takes the same steps as an uninterrupted one.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> line = '{"messages": [{"role": "user", "content": "Hi"}, '
    >>> line += '{"role": "assistant", "content": "Hello!"}]}\n'
    >>> _ = (folder / "train.jsonl").write_text(line * 10)
    >>> result = train(TrainingRequest(
    ...     base_model="tiny-random", training_file=folder / "train.jsonl",
    ...     output_dir=folder / "out", n_epochs=2))
    >>> result.status, result.total_steps, result.trained_tokens
    ('succeeded', 20, 2140)
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ...errors import ConfigurationError, LocalBackendError
from ._quiet import quiet_loading
from .chat_format import ChatRenderer
from .device import DeviceInfo, MemoryPlan, is_out_of_memory, out_of_memory_message
from .families import context_length, lora_target_modules
from .objectives import PACK_TOKENS, DpoObjective, PackedScorer, SupervisedObjective
from .placement import TrainingPlacement, release_memory
from .registry import ModelRegistry
from .rft import (
    OnPolicySampler,
    ReinforcementObjective,
    end_of_answer_ids,
    resolve_reinforcement,
)
from .rft import completion_budget as rft_budget
from .tiny_model import TINY_MODEL_NAME
from .training_data import ReinforcementPrompt, load_preference, load_reinforcement, load_supervised
from .types import (
    DEFAULT_DPO_BETA,
    CheckpointInfo,
    Hyperparameters,
    LoraSettings,
    NoCallbacks,
    StepMetrics,
    TrainingCallbacks,
    TrainingRequest,
    TrainingResult,
    auto_batch_size,
    auto_learning_rate_multiplier,
    auto_n_epochs,
)

__all__ = ["STATE_FILE", "available_cores", "resolve_hyperparameters", "threads_for", "train"]

logger = logging.getLogger("finetune_kit.local.training")

STATE_FILE = "finetune_kit-training.json"
"""The file in a checkpoint folder that records where the run was (step, epoch, metrics)."""

ObjectiveWrapper = Callable[
    [SupervisedObjective | DpoObjective, Any, list[Any]], SupervisedObjective | DpoObjective
]
"""``train(parallel=...)``: (objective, model, trainable parameters) -> the objective to use."""

_OPTIMIZER_FILE = "optimizer.pt"
_ADAPTER_WEIGHTS = "adapter_model.safetensors"
_MAX_GRAD_NORM = 1.0


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def threads_for(base_model: str, requested: int | None = None) -> int:
    """Torch threads for a model: the request's, else 1 for ``tiny-random``, else half the cores.

    Half, because the local backend's server (chat) and a training worker share the machine, and
    because waking a second thread for each of a small model's many products costs about what
    it saves. Measured on 2 cores with SmolLM2: one thread trains a batch of one 30 % faster
    than two, a batch of four as fast, and generates as fast; the tiny model's 10-example job
    takes 0.85 s on one thread, 2.4 s on two.
    """
    if requested:
        return requested
    if base_model == TINY_MODEL_NAME:
        return 1
    return max(1, available_cores() // 2)


def resolve_hyperparameters(request: TrainingRequest, n_examples: int) -> Hyperparameters:
    """Replace every ``"auto"`` of a request by the value chosen for a file of this size.

    Example:
        >>> from pathlib import Path
        >>> request = TrainingRequest(base_model="tiny-random", training_file=Path("t.jsonl"),
        ...                           output_dir=Path("o"), batch_size=4)
        >>> resolve_hyperparameters(request, 10).to_dict()
        {'n_epochs': 10, 'batch_size': 4, 'learning_rate_multiplier': 2.5}
    """
    n_epochs = auto_n_epochs(n_examples) if request.n_epochs == "auto" else int(request.n_epochs)
    batch_size = (
        auto_batch_size(n_examples) if request.batch_size == "auto" else int(request.batch_size)
    )
    batch_size = min(batch_size, n_examples)
    multiplier = (
        auto_learning_rate_multiplier(batch_size)
        if request.learning_rate_multiplier == "auto"
        else float(request.learning_rate_multiplier)
    )
    beta: float | None = None
    if request.method == "dpo":
        beta = DEFAULT_DPO_BETA if request.beta == "auto" else float(request.beta)
    resolved = Hyperparameters(n_epochs, batch_size, multiplier, beta)
    if request.method == "reinforcement":
        total_steps = math.ceil(n_examples / batch_size) * n_epochs
        resolved = resolve_reinforcement(request, resolved, total_steps)
    return resolved


@dataclass
class _Position:
    """Where a run is: completed steps, and the next batch to run."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    trained_tokens: int = 0


def _attach_adapter(model: Any, request: TrainingRequest) -> Any:
    from peft import LoraConfig, PeftModel, get_peft_model

    if request.init_adapter is not None:
        try:
            return PeftModel.from_pretrained(model, str(request.init_adapter), is_trainable=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigurationError(
                f"init_adapter {str(request.init_adapter)!r} is not an adapter of this base "
                f"model: {exc}",
                param="init_adapter",
            ) from exc
    lora = request.lora
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        # The model's own layer names (Qwen, Gemma, Phi-3... differ), see families.
        target_modules=lora_target_modules(
            model, lora.target_modules, LoraSettings().target_modules
        ),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _keep_activations_in_bfloat16(peft_model: Any) -> None:
    """Stop peft from casting activations to the adapter's float32 before each adapter.

    Under autocast the adapter's products run in bfloat16 anyway; the casts would only copy every
    activation twice per adapted layer.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in peft_model.modules():
        if isinstance(module, BaseTunerLayer):
            # The flag peft reads (see peft.helpers.disable_input_dtype_casting); untyped there.
            layer: Any = module
            layer.cast_input_dtype_enabled = False


def _epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    import torch

    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919) % (2**63))
    return [int(i) for i in torch.randperm(n, generator=generator)]


class _Run:
    """One training run: model, data, optimizer and position."""

    def __init__(
        self,
        request: TrainingRequest,
        callbacks: TrainingCallbacks,
        registry: ModelRegistry,
    ) -> None:
        import torch

        self.torch = torch
        self.request = request
        self.callbacks = callbacks
        self.base_model = registry.resolve(request.base_model)
        tiny = self.base_model == TINY_MODEL_NAME
        self.placement = TrainingPlacement.choose(
            device=request.device, dtype=request.dtype, qlora=request.qlora, tiny=tiny
        )
        self.device: DeviceInfo = self.placement.device
        started = time.perf_counter()
        model, tokenizer = registry.load(
            self.base_model, shared=False, **self.placement.load_options()
        )
        logger.debug("loaded %s in %.2f s", self.base_model, time.perf_counter() - started)
        renderer = ChatRenderer(tokenizer)
        max_len = request.max_seq_len or context_length(model.config)
        loaders: dict[str, Callable[..., list[Any]]] = {
            "dpo": load_preference,
            "reinforcement": load_reinforcement,
        }
        load = loaders.get(request.method, load_supervised)
        self.train_items = load(request.training_file, renderer, max_len=max_len)
        self.valid_items = (
            load(request.validation_file, renderer, param="validation_file", max_len=max_len)
            if request.validation_file is not None
            else []
        )
        self.hyperparameters = resolve_hyperparameters(request, len(self.train_items))
        hp = self.hyperparameters
        self.steps_per_epoch = math.ceil(len(self.train_items) / hp.batch_size)
        self.total_steps = self.steps_per_epoch * hp.n_epochs
        self.eval_interval = (
            hp.eval_interval or request.eval_interval or max(1, round(self.total_steps / 20))
        )
        self.dtype = self.placement.dtype
        bfloat16 = self.dtype == "bfloat16"
        # Frozen base weights in bfloat16 where the device multiplies it natively; peft keeps
        # the adapter (what the optimizer updates) in float32, and autocast runs each product
        # in bfloat16. Everything lives on the device: weights, adapter, optimizer state,
        # batches, and the DPO reference (the same model with its adapter off).
        model = self.placement.place(model)
        torch.manual_seed(request.seed)
        with quiet_loading():
            self.model = _attach_adapter(model, request)
        self.placement.adapter_to_bfloat16(self.model)
        if bfloat16:
            _keep_activations_in_bfloat16(self.model)
        self.completion_budget = request.max_completion_tokens or (
            rft_budget(hp.reasoning_effort) if hp.reasoning_effort is not None else 0
        )
        self.longest = max(
            (self._length(item) for item in [*self.train_items, *self.valid_items]), default=1
        )
        self.memory: MemoryPlan = self.placement.plan(
            self.model,
            longest_example=self.longest,
            default_pack=PACK_TOKENS,
            checkpointing=request.gradient_checkpointing,
        )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params, lr=hp.learning_rate, weight_decay=0.0, foreach=True
        )
        self.scorer = PackedScorer(
            self.model,
            bfloat16=bfloat16,
            pack_tokens=self.memory.pack_tokens,
            # Checkpointed layers cannot keep a shared prefix's keys and values in a cache.
            share_prefix=not self.memory.gradient_checkpointing,
        )
        report = getattr(callbacks, "on_device", None)
        if report is not None:
            report(self.device, self.device_details())
        self.objective: SupervisedObjective | DpoObjective | ReinforcementObjective
        if request.method == "reinforcement":
            assert request.grader is not None
            sampler = OnPolicySampler(
                self.model,
                tokenizer,
                renderer,
                end_of_answer_ids(model, tokenizer),
                max_len,
                bfloat16=bfloat16,
            )
            self.objective = ReinforcementObjective(
                self.scorer,
                self.model,
                sampler,
                request.grader,
                hp,
                seed=request.seed,
                max_completion_tokens=self.completion_budget,
                # A step samples for long: a cancel or pause stops it mid-way.
                interrupted=lambda: callbacks.should_stop() is not None,
            )
        elif request.method == "dpo":
            assert hp.beta is not None
            self.objective = DpoObjective(
                self.scorer, self.model, hp.beta, [*self.train_items, *self.valid_items]
            )
        else:
            self.objective = SupervisedObjective(self.scorer)
        self.position = _Position()
        self.last_metrics: StepMetrics | None = None
        self.checkpoint_root = request.output_dir / "checkpoints"

    def _length(self, item: Any) -> int:
        if isinstance(item, ReinforcementPrompt):  # its prompt and the longest answer
            return item.n_tokens + self.completion_budget
        chosen = getattr(item, "chosen", None)
        if chosen is not None:  # a preference pair: both answers share a pack
            return len(chosen.input_ids) + len(item.rejected.input_ids)
        return len(item.input_ids)

    def device_details(self) -> dict[str, Any]:
        """How the run uses its device: dtype, QLoRA, tokens per pass, checkpointing."""
        return {
            "dtype": self.dtype,
            "qlora": self.placement.qlora,
            "pack_tokens": self.memory.pack_tokens,
            "gradient_checkpointing": self.memory.gradient_checkpointing,
        }

    def out_of_memory(self) -> str:
        """The failure message of a run that ran out of device memory."""
        return out_of_memory_message(
            self.device,
            batch_size=self.hyperparameters.batch_size,
            pack_tokens=self.memory.pack_tokens,
            longest_example=self.longest,
            checkpointing=self.memory.gradient_checkpointing,
        )

    # -- checkpoints ------------------------------------------------------------------------

    def _state(self, metrics: StepMetrics | None) -> dict[str, Any]:
        return {
            "format": 1,
            "base_model": self.base_model,
            "method": self.request.method,
            "seed": self.request.seed,
            "hyperparameters": self.hyperparameters.to_dict(),
            "total_steps": self.total_steps,
            "n_examples": len(self.train_items),
            "dtype": self.dtype,
            "device": self.device.name,
            "step": self.position.step,
            "epoch": self.position.epoch,
            "batch": self.position.batch,
            "trained_tokens": self.position.trained_tokens,
            "metrics": metrics.to_dict() if metrics is not None else {},
        }

    def save(self, folder: Path, *, with_optimizer: bool) -> None:
        """Write the adapter (and the resume state) into ``folder``, atomically."""
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        staging = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        weights = get_peft_model_state_dict(self.model, save_embedding_layers=False)
        save_file(
            {key: value.detach().contiguous() for key, value in weights.items()},
            str(staging / _ADAPTER_WEIGHTS),
            metadata={"format": "pt"},
        )
        config = replace(self.model.peft_config["default"], base_model_name_or_path=self.base_model)
        config.save_pretrained(str(staging))
        if with_optimizer:
            self.torch.save(self.optimizer.state_dict(), staging / _OPTIMIZER_FILE)
        (staging / STATE_FILE).write_text(
            json.dumps(self._state(self.last_metrics), indent=1), encoding="utf-8"
        )
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)

    def restore(self, folder: Path) -> None:
        """Load a checkpoint's adapter, optimizer state and position."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        try:
            state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
            weights = load_file(str(folder / _ADAPTER_WEIGHTS))
            # Saved on whichever device trained it; load_state_dict moves it to the params'.
            optimizer_state = self.torch.load(
                folder / _OPTIMIZER_FILE, weights_only=True, map_location="cpu"
            )
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"resume_from {str(folder)!r} is not a checkpoint of a local training run: {exc}",
                param="resume_from",
            ) from exc
        expected = {
            "base_model": self.base_model,
            "method": self.request.method,
            "hyperparameters": self.hyperparameters.to_dict(),
            "total_steps": self.total_steps,
        }
        for key, value in expected.items():
            if state.get(key) != value:
                raise ConfigurationError(
                    f"resume_from {str(folder)!r} was saved with {key}={state.get(key)!r}, but "
                    f"this run has {key}={value!r}; resume with the request that made it",
                    param="resume_from",
                )
        set_peft_model_state_dict(self.model, weights)
        self.optimizer.load_state_dict(optimizer_state)
        self.position = _Position(
            step=int(state["step"]),
            epoch=int(state["epoch"]),
            batch=int(state["batch"]),
            trained_tokens=int(state["trained_tokens"]),
        )
        logger.debug("resumed from %s at step %d", folder, self.position.step)

    def kept_checkpoints(self) -> list[CheckpointInfo]:
        """The epoch checkpoints on disk, oldest first."""
        found: list[CheckpointInfo] = []
        if not self.checkpoint_root.is_dir():
            return found
        for folder in self.checkpoint_root.glob("step-*"):
            try:
                state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            found.append(
                CheckpointInfo(
                    int(state["step"]), int(state["epoch"]), folder, dict(state["metrics"])
                )
            )
        return sorted(found, key=lambda info: info.step)

    def checkpoint(self) -> None:
        """Save an epoch-end checkpoint, report it, and delete the ones beyond the newest N."""
        folder = self.checkpoint_root / f"step-{self.position.step}"
        self.save(folder, with_optimizer=True)
        metrics = self.last_metrics.to_dict() if self.last_metrics is not None else {}
        self.callbacks.on_checkpoint(
            CheckpointInfo(self.position.step, self.position.epoch, folder, metrics)
        )
        for old in self.kept_checkpoints()[: -self.request.keep_checkpoints]:
            shutil.rmtree(old.path, ignore_errors=True)

    # -- steps ------------------------------------------------------------------------------

    def _valid_batch(self, step: int) -> list[Any]:
        size = min(self.hyperparameters.batch_size, len(self.valid_items))
        start = ((step // self.eval_interval) - 1) * size
        return [self.valid_items[(start + i) % len(self.valid_items)] for i in range(size)]

    def run_step(self, batch: Sequence[Any]) -> None:
        torch = self.torch
        hp = self.hyperparameters
        step = self.position.step
        for group in self.optimizer.param_groups:
            group["lr"] = hp.learning_rate * (1 - step / self.total_steps)
        self.model.train()
        objective = self.objective
        result: Any
        if isinstance(objective, ReinforcementObjective):
            result = objective.train_batch(batch, step=step)
            if result is None:  # interrupted while sampling: nothing changed
                self.optimizer.zero_grad(set_to_none=True)
                self.model.eval()
                return
        else:
            result = objective.train_batch(batch)
        torch.nn.utils.clip_grad_norm_(self.params, _MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.model.eval()
        self.position.step += 1
        self.position.batch += 1
        self.position.trained_tokens += sum(self.objective.tokens(item) for item in batch)
        valid: tuple[float, float] | tuple[None, None] = (None, None)
        full: tuple[float, float] | tuple[None, None] = (None, None)
        epoch_done = self.position.batch == self.steps_per_epoch
        extra = dict(result.extra)
        if isinstance(objective, ReinforcementObjective):
            # Every eval_interval steps and at the end, over the whole validation file.
            last = self.position.step == self.total_steps
            if self.valid_items and (self.position.step % self.eval_interval == 0 or last):
                extra.update(objective.evaluate(self.valid_items, step=step) or {})
        elif self.valid_items:
            if self.position.step % self.eval_interval == 0:
                valid = objective.evaluate(self._valid_batch(self.position.step))
            if epoch_done:
                full = objective.evaluate(self.valid_items)
        self.last_metrics = StepMetrics(
            step=self.position.step,
            total_steps=self.total_steps,
            epoch=self.position.epoch + 1,
            train_loss=result.loss,
            train_mean_token_accuracy=result.accuracy,
            valid_loss=valid[0],
            valid_mean_token_accuracy=valid[1],
            full_valid_loss=full[0],
            full_valid_mean_token_accuracy=full[1],
            trained_tokens=self.position.trained_tokens,
            extra=extra,
        )
        self.callbacks.on_step(self.last_metrics)

    def result(self, status: Any, adapter: Path | None, resume: Path | None) -> TrainingResult:
        return TrainingResult(
            status=status,
            base_model=self.base_model,
            adapter_path=adapter,
            trained_tokens=self.position.trained_tokens,
            hyperparameters=self.hyperparameters,
            total_steps=self.total_steps,
            steps_done=self.position.step,
            checkpoints=self.kept_checkpoints(),
            resume_checkpoint=resume,
            metrics=self.last_metrics.to_dict() if self.last_metrics is not None else None,
        )

    def pause(self) -> TrainingResult:
        at_epoch_end = self.checkpoint_root / f"step-{self.position.step}"
        if self.position.batch == 0 and (at_epoch_end / _OPTIMIZER_FILE).is_file():
            folder = at_epoch_end
        else:
            folder = self.request.output_dir / "paused" / f"step-{self.position.step}"
            self.save(folder, with_optimizer=True)
        logger.debug("paused at step %d; resume from %s", self.position.step, folder)
        return self.result("paused", None, folder)

    def run(self) -> TrainingResult:
        hp = self.hyperparameters
        self.callbacks.on_start(hp, self.total_steps)
        n = len(self.train_items)
        while self.position.epoch < hp.n_epochs:
            order = _epoch_order(self.request.seed, self.position.epoch, n)
            while self.position.batch < self.steps_per_epoch:
                signal = self.callbacks.should_stop()
                if signal == "cancel":
                    logger.debug("cancelled at step %d", self.position.step)
                    return self.result("cancelled", None, None)
                if signal == "pause":
                    return self.pause()
                start = self.position.batch * hp.batch_size
                batch = [self.train_items[i] for i in order[start : start + hp.batch_size]]
                self.run_step(batch)
            self.position.epoch += 1
            self.position.batch = 0
            self.checkpoint()
        adapter = self.request.output_dir / "adapter"
        self.save(adapter, with_optimizer=False)
        return self.result("succeeded", adapter, None)


def train(
    request: TrainingRequest,
    callbacks: TrainingCallbacks | None = None,
    *,
    registry: ModelRegistry | None = None,
    parallel: ObjectiveWrapper | None = None,
) -> TrainingResult:
    """Fine-tune a LoRA adapter on a local base model.

    Args:
        request: What to train on and how.
        callbacks: Receives the resolved hyperparameters, step metrics and checkpoints, and is
            polled for cancel/pause before every step; ``None`` for none.
        registry: Resolves and loads the base model; default: one built from the request's
            ``cache_dir``, ``default_model`` and ``aliases``.
        parallel: Replaces the loop's objective, given it, the model and its trainable
            parameters: ``distributed.data_parallel`` trains in every process of a
            ``torch.distributed`` group as one process would (the Ray executor's workers).

    Returns:
        How the run ended: succeeded (with the adapter), cancelled, or paused (with the folder
        to resume from).

    Raises:
        TrainingDataError: The training or validation file has a bad line (named in the message).
        ConfigurationError: A hyperparameter, the base model, the device, QLoRA or
            ``resume_from`` is unusable.
        LocalBackendError: The base model cannot be loaded, or the device ran out of memory
            (the message says with what, and what to try instead).
    """
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    previous_threads = torch.get_num_threads()
    started = time.perf_counter()
    run: _Run | None = None
    out_of_memory: str | None = None
    try:
        registry = registry or ModelRegistry(
            request.cache_dir, request.default_model, request.aliases
        )
        torch.set_num_threads(
            threads_for(registry.resolve(request.base_model), request.num_threads)
        )
        run = _Run(request, callbacks or NoCallbacks(), registry)
        if request.resume_from is not None:
            run.restore(request.resume_from)
        else:
            # A fresh run owns its output folder: leftovers of an earlier attempt would be
            # mistaken for this run's checkpoints.
            for leftover in ("checkpoints", "paused", "adapter"):
                shutil.rmtree(request.output_dir / leftover, ignore_errors=True)
        if parallel is not None:
            if isinstance(run.objective, ReinforcementObjective):
                raise ConfigurationError(
                    "reinforcement fine-tuning trains in one process; run it with the local "
                    "executor, not data-parallel",
                    param="method",
                )
            run.objective = parallel(run.objective, run.model, run.params)
        result = run.run()
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        logger.warning("training ran out of memory: %s", exc)
        out_of_memory = (
            run.out_of_memory()
            if run is not None
            else f"Out of memory while loading {request.base_model}: {exc}; free memory, use "
            "qlora, or train a smaller model"
        )
    finally:
        if run is not None and isinstance(run.objective, ReinforcementObjective):
            run.objective.close()  # a python grader's worker process
        torch.set_num_threads(previous_threads)
    if out_of_memory is not None:
        # Outside the except block: the exception's frames no longer hold the run's tensors,
        # so its memory goes back before the worker takes the next job.
        device = run.device if run is not None else None
        run = None
        release_memory(device)
        raise LocalBackendError(out_of_memory)
    logger.debug(
        "training %s after %d/%d steps in %.1f s",
        result.status,
        result.steps_done,
        result.total_steps,
        time.perf_counter() - started,
    )
    return result
