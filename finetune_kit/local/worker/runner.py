"""Runs one fine-tuning job inside a worker process and records everything it does.

The runner turns the training engine's callbacks into OpenAI's job events, checkpoints and
status changes, straight into the shared SQLite database. Events carry keys (``step-12``), so a
job resumed after a restart never repeats one; the final events and the ``succeeded`` status
are written in one transaction, so a client that sees ``succeeded`` also sees them.

Example:
    >>> runner_doc = JobRunner.__doc__.splitlines()[0]
    >>> runner_doc
    'Trains claimed jobs one after the other (one runner per worker process).'
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ...errors import ConfigurationError, TrainingDataError
from ..engine.device import DeviceInfo, summary_for_event
from ..engine.types import (
    HYPERPARAMETER_RANGES,
    CheckpointInfo,
    EngineMethod,
    Hyperparameters,
    StepMetrics,
    StopSignal,
    TrainingRequest,
    TrainingResult,
)
from ..settings import ServerSettings
from ..store import FileRecord, JobRecord, Store

__all__ = ["MAX_CRASHES", "JobRunner", "result_csv"]

logger = logging.getLogger("finetune_kit.local.worker")

MAX_CRASHES = 3
"""A job whose worker died this many times fails instead of being retried once more."""

_RESULT_COLUMNS = (
    "step",
    "train_loss",
    "train_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
)

_RFT_RESULT_COLUMNS = (
    "step",
    "train_reward_mean",
    "valid_reward_mean",
    "train_loss",
    "train_kl",
    "train_grader_errors",
    "valid_grader_errors",
    "train_completion_tokens_mean",
)
"""A reinforcement job's result file: rewards first (they are what it optimizes)."""


def result_csv(points: Sequence[Mapping[str, Any]], *, method: str = "supervised") -> bytes:
    """Build the result file OpenAI attaches to a finished job.

    Args:
        points: The ``data`` of the job's metrics events, in step order.
        method: The job's method: a reinforcement job's file has reward columns.

    Returns:
        CSV bytes with the columns ``step,train_loss,train_accuracy,valid_loss,
        valid_mean_token_accuracy`` (reinforcement: ``step,train_reward_mean,
        valid_reward_mean,train_loss,train_kl,train_grader_errors,valid_grader_errors,
        train_completion_tokens_mean``); cells are empty where a step has no value.

    Example:
        >>> print(result_csv([{"step": 1, "train_loss": 2.5, "train_mean_token_accuracy": 0.1}])
        ...       .decode(), end="")
        step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy
        1,2.5,0.1,,
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if method == "reinforcement":
        writer.writerow(_RFT_RESULT_COLUMNS)
        for p in points:
            writer.writerow(
                [int(p.get("step", 0)), *(_cell(p.get(c)) for c in _RFT_RESULT_COLUMNS[1:])]
            )
        return out.getvalue().encode()
    writer.writerow(_RESULT_COLUMNS)
    for p in points:
        writer.writerow(
            [
                int(p.get("step", 0)),
                _cell(p.get("train_loss")),
                _cell(p.get("train_mean_token_accuracy")),
                _cell(p.get("valid_loss")),
                _cell(p.get("valid_mean_token_accuracy")),
            ]
        )
    return out.getvalue().encode()


def _cell(value: Any) -> str:
    return "" if value is None else repr(float(value))


def _step_message(metrics: StepMetrics) -> str:
    """The metrics event's message: losses, or a reinforcement step's rewards."""
    head = f"Step {metrics.step}/{metrics.total_steps}: "
    reward = metrics.extra.get("train_reward_mean")
    if reward is not None:
        message = head + f"train reward mean={reward:.4f}"
        valid = metrics.extra.get("valid_reward_mean")
        if valid is not None:
            message += f", validation reward mean={valid:.4f}"
        errors = int(metrics.extra.get("train_grader_errors", 0))
        if errors:
            message += f", grader errors={errors}"
        return message
    message = head + f"training loss={metrics.train_loss:.4f}"
    if metrics.valid_loss is not None:
        message += f", validation loss={metrics.valid_loss:.4f}"
    return message


class _JobCallbacks:
    """The engine's callbacks for one job: events, checkpoints, progress, stop requests."""

    def __init__(self, runner: JobRunner, job: JobRecord) -> None:
        self._runner = runner
        self._store = runner.store
        self._job = job
        self._segment_start = time.time()
        self._segment_first_step: int | None = None
        self._last_poll = 0.0
        self._last_signal: StopSignal | None = None
        self.shutdown_requested = False

    def on_start(self, hyperparameters: Hyperparameters, total_steps: int) -> None:
        self._store.jobs.update(
            self._job.id,
            resolved_hyperparameters=hyperparameters.to_dict(),
            total_steps=total_steps,
        )
        self._segment_start = time.time()

    def on_device(self, device: DeviceInfo, details: Mapping[str, Any]) -> None:
        message = summary_for_event(device, details)
        # Keyed by what it says: a resumed job reports again only if it moved (another GPU).
        key = "device-" + hashlib.sha256(message.encode()).hexdigest()[:12]
        data: dict[str, Any] = {**device.to_dict(), **details}
        self._store.events.add(self._job.id, key, message, data=data)

    def on_step(self, metrics: StepMetrics) -> None:
        data: dict[str, Any] = dict(metrics.to_dict())
        data["step"] = metrics.step
        data["total_steps"] = metrics.total_steps
        message = _step_message(metrics)
        self._store.events.add(
            self._job.id, f"step-{metrics.step}", message, type="metrics", data=data
        )
        if self._segment_first_step is None:
            self._segment_first_step = metrics.step - 1
            self._segment_start = time.time() - 1e-3
        done = metrics.step - self._segment_first_step
        elapsed = time.time() - self._segment_start
        remaining = max(0, metrics.total_steps - metrics.step)
        estimate = int(time.time() + (elapsed / max(1, done)) * remaining) + 1
        self._store.jobs.update(
            self._job.id,
            step=metrics.step,
            total_steps=metrics.total_steps,
            estimated_finish=estimate,
        )
        if self._runner.settings.training_step_delay > 0:
            # A testing aid: lets a test pause, cancel or interrupt a job that would otherwise
            # finish in a fraction of a second.
            self._runner.stop_event.wait(self._runner.settings.training_step_delay)

    def on_checkpoint(self, checkpoint: CheckpointInfo) -> None:
        name = self._job.checkpoint_model_name(checkpoint.step)
        metrics = {k: float(v) for k, v in checkpoint.metrics.items() if k != "step"}
        self._store.models.add_checkpoint(
            job_id=self._job.id,
            step=checkpoint.step,
            model_name=name,
            base_model=self._job.base_model,
            path=str(checkpoint.path),
            metrics=metrics,
        )
        self._store.events.add(
            self._job.id,
            f"checkpoint-{checkpoint.step}",
            f"Checkpoint created at step {checkpoint.step} with Snapshot ID: {name}",
        )

    def should_stop(self) -> StopSignal | None:
        if self._runner.stop_event.is_set():
            self.shutdown_requested = True
            return "pause"
        now = time.monotonic()
        if now - self._last_poll < 0.05:
            return self._last_signal
        self._last_poll = now
        job = self._store.jobs.get(self._job.id)
        signal: StopSignal | None = None
        if job is None or job.status == "cancelled":
            signal = "cancel"
        elif job.status != "running":
            # Paused, or already resumed again (queued): stop here and let the queue take the
            # job back from where it stopped.
            signal = "pause"
        self._last_signal = signal
        return signal


class Prepared(NamedTuple):
    """What a claimed job needs to train (``JobRunner._prepare``)."""

    training: FileRecord
    validation: FileRecord | None
    request: TrainingRequest
    resume_from: Path | None
    resume_step: int | None


class JobRunner:
    """Trains claimed jobs one after the other (one runner per worker process).

    Args:
        store: The shared store.
        settings: The server's settings (model registry and testing aids).
        token: This worker's identity, as stored in a job's ``held_by``.
        stop_event: Set when the worker must stop; a running job then stops at the next step
            and goes back to the queue, to resume from its last checkpoint.
    """

    crash_subject = "The worker process training this job"
    """Who stopped, in the message of a job failed after ``MAX_CRASHES`` crashes."""

    def __init__(
        self, store: Store, settings: ServerSettings, token: str, stop_event: threading.Event
    ) -> None:
        self.store = store
        self.settings = settings
        self.token = token
        self.stop_event = stop_event

    def run_next(self) -> bool:
        """Claim the oldest queued job and train it; return whether there was one."""
        job = self.store.jobs.claim(self.token)
        if job is None:
            return False
        try:
            self.run(job)
        except Exception as exc:
            # Whatever went wrong, this job fails and the worker lives on for the next one: a
            # worker that died here would leave the job ``running`` with no crash counted.
            logger.exception("job %s: the worker could not run it", job.id)
            self._fail_unexpected(job, exc)
        # Not in a ``finally``: should even failing the job raise, the worker dies still holding
        # it, so the pool puts it back in the queue and counts the crash against it.
        self.store.jobs.release(job.id, self.token)
        return True

    def run(self, job: JobRecord) -> None:
        """Train one claimed (``running``) job to its end, pause, cancellation or failure."""
        prepared = self._prepare(job)
        if prepared is None:
            return
        store = self.store
        store.events.add(job.id, "started", "Fine-tuning job started")
        if prepared.resume_from is not None:
            store.events.add(
                job.id,
                f"resume-{job.attempts}",
                f"Resuming training from the checkpoint at step {prepared.resume_step}",
            )
        request, resume_from = prepared.request, prepared.resume_from
        callbacks = _JobCallbacks(self, job)
        logger.debug("job %s: training %s (resume from %s)", job.id, job.base_model, resume_from)
        try:
            from ..engine.training import train

            result = train(request, callbacks)
        except TrainingDataError as exc:
            param = exc.param if exc.param == "validation_file" else "training_file"
            self._fail(job, f"invalid_{param}", str(exc), param=param)
            return
        except ConfigurationError as exc:
            if exc.param != "grader":
                raise
            # The grader failed on every answer of several steps (see rft.ALL_FAILED_STEPS).
            self._fail(job, "invalid_grader", str(exc), param="method.reinforcement.grader")
            return
        except Exception as exc:
            logger.exception("job %s: training failed", job.id)
            self._fail(job, "training_failed", f"Training failed: {type(exc).__name__}: {exc}")
            return
        self._finish(job, result, shutdown=callbacks.shutdown_requested)

    def _prepare(self, job: JobRecord) -> Prepared | None:
        """What training ``job`` needs, or ``None`` once it has failed for want of it.

        A damaged record, too many crashes, a deleted file or a hyperparameter the engine
        refuses each fail the job, with a message that says what to do.
        """
        store = self.store
        if job.damaged:
            logger.warning("job %s: its stored record is damaged (%s)", job.id, job.damaged)
            self._fail(job, "server_error", job.damage_message(str(store.db.path)))
            return None
        if job.crashes >= MAX_CRASHES:
            self._fail(
                job,
                "server_error",
                f"{self.crash_subject} stopped unexpectedly {job.crashes} times; see the "
                f"worker logs in {self.settings.data_dir / 'logs'}.",
            )
            return None
        training = store.files.get(job.training_file)
        validation = store.files.get(job.validation_file) if job.validation_file else None
        if training is None or (job.validation_file and validation is None):
            missing = job.training_file if training is None else job.validation_file
            param = "training_file" if training is None else "validation_file"
            self._fail(
                job,
                f"invalid_{param}",
                f"File {missing} was deleted before training started; upload it again and "
                "create a new job.",
                param=param,
            )
            return None
        resume_from, resume_step = self._resume_point(job)
        try:
            request = self._request(
                job, training, validation, resume_from, job.requested_hyperparameters()
            )
        except ConfigurationError as exc:
            # A job stored before the server checked every range the engine enforces.
            hyperparameter = exc.param in HYPERPARAMETER_RANGES or exc.param == "reasoning_effort"
            self._fail(
                job,
                "invalid_hyperparameters" if hyperparameter else "invalid_request",
                f"This job cannot be trained: {exc}. Create a new job with a valid value.",
                param=exc.param,
            )
            return None
        return Prepared(training, validation, request, resume_from, resume_step)

    def _request(
        self,
        job: JobRecord,
        training: FileRecord,
        validation: FileRecord | None,
        resume_from: Path | None,
        hyper: Mapping[str, Any],
    ) -> TrainingRequest:
        store = self.store
        method: EngineMethod = "supervised"
        if job.method_type == "dpo":
            method = "dpo"
        elif job.method_type == "reinforcement":
            method = "reinforcement"
        section = job.method.get("reinforcement") or {}
        rft: dict[str, Any] = {}
        if method == "reinforcement":
            interval = hyper.get("eval_interval", "auto")
            rft = {
                "grader": section.get("grader"),
                "compute_multiplier": hyper.get("compute_multiplier", "auto"),
                "eval_samples": hyper.get("eval_samples", "auto"),
                "eval_interval": None if interval == "auto" else interval,
                "reasoning_effort": hyper.get("reasoning_effort", "default"),
            }
        return TrainingRequest(
            base_model=job.base_model,
            method=method,
            training_file=store.files.path(training.id),
            validation_file=store.files.path(validation.id) if validation is not None else None,
            output_dir=store.job_dir(job.id),
            n_epochs=hyper.get("n_epochs", "auto"),
            batch_size=hyper.get("batch_size", "auto"),
            learning_rate_multiplier=hyper.get("learning_rate_multiplier", "auto"),
            beta=hyper.get("beta", "auto"),
            seed=job.seed,
            resume_from=resume_from,
            init_adapter=Path(job.init_adapter) if job.init_adapter else None,
            cache_dir=self.settings.model_cache_dir,
            default_model=self.settings.default_model,
            aliases=self.settings.aliases,
            device=self.settings.device,
            qlora=self.settings.qlora,
            **rft,
        )

    def _resume_point(self, job: JobRecord) -> tuple[Path | None, int | None]:
        """The newest usable resume point: a pause checkpoint or the last epoch checkpoint."""
        candidates: list[tuple[int, Path]] = []
        if job.resume_from and job.resume_step is not None and Path(job.resume_from).exists():
            candidates.append((job.resume_step, Path(job.resume_from)))
        latest = self.store.models.latest_checkpoint(job.id)
        if latest is not None:
            candidates.append((latest.step, Path(latest.path)))
        if not candidates:
            return None, None
        step, path = max(candidates, key=lambda c: c[0])
        return path, step

    def _finish(self, job: JobRecord, result: TrainingResult, *, shutdown: bool) -> None:
        store = self.store
        if result.status == "paused":
            resume = str(result.resume_checkpoint) if result.resume_checkpoint else None
            step = result.steps_done if result.resume_checkpoint else None
            store.jobs.update(job.id, resume_from=resume, resume_step=step, estimated_finish=None)
            if shutdown:
                # Stopped because the server stops: back to the queue, to resume on restart.
                store.jobs.transition(job.id, "queued", expect=("running",))
            return
        if result.status == "cancelled":
            store.jobs.transition(job.id, "cancelled", expect=("running",))
            return
        assert result.adapter_path is not None
        name = job.model_name
        engine_note = self._write_served_adapters(job, result)
        points = store.events.metrics(job.id)
        results = store.files.save_bytes(
            result_csv(points, method=job.method_type),
            filename="step_metrics.csv",
            purpose="fine-tune-results",
        )
        with store.db.transaction():
            current = store.jobs.get(job.id)
            if current is None or current.status != "running":
                logger.debug("job %s ended as %s before it could succeed", job.id, current)
                store.files.delete(results.id)
                return
            store.models.add_model(
                name,
                job_id=job.id,
                base_model=job.base_model,
                adapter_path=str(result.adapter_path),
            )
            if engine_note is not None:
                store.events.add(job.id, "engine", engine_note)
            store.events.add(job.id, "model", f"New fine-tuned model created: {name}")
            store.events.add(job.id, "completed", "The job has successfully completed")
            store.jobs.transition(
                job.id,
                "succeeded",
                expect=("running",),
                fine_tuned_model=name,
                trained_tokens=result.trained_tokens,
                result_files=[results.id],
                estimated_finish=None,
                resolved_hyperparameters=result.hyperparameters.to_dict(),
            )

    def _write_served_adapters(self, job: JobRecord, result: TrainingResult) -> str | None:
        """Write the GGUF adapters llama.cpp serves the model and its checkpoints with.

        With ``tuned_weights="merged"``, the model's merged GGUF too, so its first chat does
        not wait for the merge. Returns the job event saying which engine serves chat with the
        model (``None`` when the server's chat engine is ``torch``). Never fails the job:
        llama.cpp writes a file it lacks on first use.
        """
        if self.settings.chat_engine == "torch":
            return None
        from ..engine.gguf import UnsupportedModelError, write_merged_gguf
        from ..engine.llama_cpp import (
            llama_cpp_unavailable_reason,
            served_base_gguf,
            write_served_adapter,
        )
        from ..engine.registry import ModelRegistry

        torch_note = "Chat with this model runs on the torch generator: {}"
        unavailable = llama_cpp_unavailable_reason()
        if unavailable is not None:
            return torch_note.format(unavailable)
        assert result.adapter_path is not None
        folders = [result.adapter_path, *(c.path for c in result.checkpoints)]
        try:
            registry = ModelRegistry(
                cache_dir=self.settings.model_cache_dir,
                default_model=self.settings.default_model,
                aliases=self.settings.aliases,
            )
            for folder in folders:
                write_served_adapter(registry, job.base_model, folder)
            merged = self.settings.tuned_weights == "merged"
            if merged:
                write_merged_gguf(result.adapter_path, served_base_gguf(registry, job.base_model))
        except UnsupportedModelError as exc:
            return torch_note.format(exc)
        except Exception as exc:  # a conversion that fails here is retried on first use
            logger.exception("job %s: writing the GGUF adapters failed", job.id)
            return (
                "Chat with this model runs on llama.cpp; its GGUF adapter could not be written "
                f"now ({type(exc).__name__}: {exc}) and will be on first use"
            )
        return (
            "Chat with this model runs on llama.cpp (on the CPU): wrote its GGUF LoRA adapter "
            f"and those of its {len(folders) - 1} checkpoint(s)"
            + (", and the model merged with its base" if merged else "")
        )

    def _fail_unexpected(self, job: JobRecord, exc: Exception) -> None:
        log = self.settings.data_dir / "logs"
        self._fail(
            job,
            "server_error",
            f"The local backend failed while running this job ({type(exc).__name__}: {exc}); "
            f"the traceback is in the worker log in {log}. Create a new job to try again.",
        )

    def _fail(self, job: JobRecord, code: str, message: str, *, param: str | None = None) -> None:
        with self.store.db.transaction():
            moved = self.store.jobs.transition(
                job.id,
                "failed",
                expect=("running",),
                error={"code": code, "message": message, "param": param},
                estimated_finish=None,
            )
            if moved:
                self.store.events.add(job.id, "failed", message, level="error")
