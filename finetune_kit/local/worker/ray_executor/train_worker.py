"""What every Ray Train worker runs: the engine's own training loop, data-parallel.

``train_loop_per_worker`` runs in each of a job's ``workers`` processes, inside a
``torch.distributed`` group Ray Train set up (gloo on CPUs, NCCL on GPUs). Every rank builds the
same ``TrainingRequest`` and calls ``engine.training.train`` with the data-parallel objective
(``engine.distributed``), so N workers take the same steps one process would. Rank 0 alone speaks
to the job actor: it sends the events (start, each step, each checkpoint, the end), receives the
stop signal as the answer and broadcasts it, so every rank stops at the same step.

Checkpoints: every rank calls ``ray.train.report`` at each epoch end (a collective), rank 0 with
the checkpoint folder, which Ray persists under ``<storage>/<job id>/checkpoint-step-N``; after a
worker dies, Ray starts a new group that resumes from the newest one. The final adapter and a
pause checkpoint are persisted the same way (``adapter-step-N``, ``paused-step-N``).

Errors the engine raises about the job itself (a bad line in the file, a base model it cannot
load) are sent as an ``error`` event and the function returns: retrying them on fresh workers
would fail the same way. Anything else propagates, and Ray restarts the workers.

Example:
    >>> checkpoint_dir_name("checkpoint", 12)
    'checkpoint-step-12'
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ....errors import FinetuneKitError, TrainingDataError
from ...engine.types import CheckpointInfo, Hyperparameters, StepMetrics, StopSignal
from .storage import materialize_file, materialize_folder

__all__ = ["RayWorkerCallbacks", "checkpoint_dir_name", "train_loop_per_worker"]

logger = logging.getLogger("finetune_kit.local.worker")

_SIGNALS: dict[str | None, int] = {None: 0, "pause": 1, "cancel": 2}
_NAMES = {code: name for name, code in _SIGNALS.items()}


def checkpoint_dir_name(kind: str, step: int) -> str:
    """The folder name of a persisted checkpoint: ``checkpoint``, ``paused`` or ``adapter``."""
    return f"{kind}-step-{step}"


class RayWorkerCallbacks:
    """The engine's ``TrainingCallbacks`` on one Ray Train worker.

    Args:
        actor: The job actor's handle.
        group: The ranks' collectives (``None`` with one worker).
        rank: This worker's rank.
        step_delay: Seconds to wait after each step (the server's ``training_step_delay``).
    """

    def __init__(self, actor: Any, group: Any, rank: int, step_delay: float) -> None:
        self._actor = actor
        self._group = group
        self.rank = rank
        self._delay = step_delay
        self._pending: Any = None
        self._signal: str | None = None

    def emit(self, event: dict[str, Any]) -> None:
        """Rank 0 only: send an event to the job actor (not waited for; order is kept)."""
        if self.rank != 0:
            return
        event["time"] = time.time()
        self._pending = self._actor.put.remote(event)

    def flush(self) -> None:
        """Wait until the last event reached the actor.

        Events are sent without waiting; the actor reports ``done`` when ``fit()`` returns,
        which must not overtake them.
        """
        if self._pending is not None:
            import ray

            ray.get(self._pending)
            self._pending = None

    def on_start(self, hyperparameters: Hyperparameters, total_steps: int) -> None:
        """Send the resolved hyperparameters and the run's length."""
        self.emit(
            {
                "type": "start",
                "hyperparameters": dataclasses.asdict(hyperparameters),
                "total_steps": total_steps,
            }
        )

    def on_device(self, device: Any, details: Mapping[str, Any]) -> None:
        """Send where the model trains (``device.DeviceInfo``) and how."""
        self.emit(
            {"type": "device", "device": dataclasses.asdict(device), "details": dict(details)}
        )

    def on_step(self, metrics: StepMetrics) -> None:
        """Send the step's metrics (then wait the step delay, on every rank)."""
        data = dataclasses.asdict(metrics)
        data["extra"] = dict(metrics.extra)
        self.emit({"type": "step", "metrics": data})
        if self._delay > 0:
            time.sleep(self._delay)

    def on_checkpoint(self, checkpoint: CheckpointInfo) -> None:
        """Persist the epoch checkpoint through Ray, then say where it is."""
        name = checkpoint_dir_name("checkpoint", checkpoint.step)
        self.persist(checkpoint.path, name, step=checkpoint.step)
        self.emit(
            {
                "type": "checkpoint",
                "step": checkpoint.step,
                "epoch": checkpoint.epoch,
                "metrics": dict(checkpoint.metrics),
                "name": name,
            }
        )

    def persist(self, folder: Path | None, name: str, *, step: int) -> None:
        """Every rank reports (a collective); rank 0 hands Ray the folder to persist as ``name``."""
        from ray import train
        from ray.train import Checkpoint

        checkpoint = None
        if self.rank == 0 and folder is not None:
            checkpoint = Checkpoint.from_directory(str(folder))
        train.report({"step": step}, checkpoint=checkpoint, checkpoint_dir_name=name)

    def should_stop(self) -> StopSignal | None:
        """Rank 0's latest signal from the job actor, the same on every rank."""
        code = 0
        if self.rank == 0:
            if self._pending is not None:
                import ray

                ready, _ = ray.wait([self._pending], timeout=0)
                if ready:
                    self._signal = ray.get(ready[0])
                    self._pending = None
            code = _SIGNALS.get(self._signal, 0)
        if self._group is not None:
            # Every rank must stop at the same step, or the next collective would hang.
            code = self._group.broadcast_int(code)
        return _NAMES[code]  # type: ignore[return-value]  # None, "pause" or "cancel"


def _scratch(job_id: str, rank: int) -> Path:
    # One folder per job and rank on this node: a worker Ray starts again after a crash (same
    # rank) removes what its killed predecessor left.
    folder = Path(tempfile.gettempdir()) / "finetune_kit-ray" / job_id / f"rank-{rank}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _worker_info(rank: int) -> dict[str, Any]:
    import ray

    return {
        "rank": rank,
        "node_ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]  # Ray's
        "hostname": socket.gethostname(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
    }


def _checkpoint_step(folder: Path | None) -> int | None:
    """The step a checkpoint folder was saved after (``None`` for no checkpoint)."""
    from ...engine.training import STATE_FILE

    if folder is None:
        return None
    try:
        return int(json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError):
        return None


def _placement_group() -> str | None:
    from ray.util import get_current_placement_group

    group = get_current_placement_group()
    return group.id.hex() if group is not None else None


def _error_event(exc: FinetuneKitError) -> dict[str, Any]:
    if isinstance(exc, TrainingDataError):
        param = exc.param if exc.param == "validation_file" else "training_file"
        return {"type": "error", "code": f"invalid_{param}", "message": str(exc), "param": param}
    return {
        "type": "error",
        "code": "training_failed",
        "message": f"Training failed: {type(exc).__name__}: {exc}",
        "param": None,
    }


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Train the job on this worker (Ray Train calls it on every rank).

    Args:
        config: From the job actor: ``actor``, ``job_id``, ``launched``, ``inputs`` (payloads),
            ``request`` (the bridge's ``TrainingRequest``, whose paths are replaced by this
            worker's copies), ``step_delay``, ``use_gpu``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ray import train as ray_train

    from ...engine.distributed import Collective, data_parallel
    from ...engine.training import train
    from ...engine.types import TrainingRequest

    context = ray_train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    group = None
    if world > 1:
        import torch

        device = torch.device("cpu")
        if config.get("use_gpu"):
            from ray.train.torch import get_device

            device = get_device()
        group = Collective(device)
    callbacks = RayWorkerCallbacks(config["actor"], group, rank, float(config["step_delay"]))
    folder = _scratch(str(config["job_id"]), rank)
    try:
        inputs = config["inputs"]
        training_file = materialize_file(inputs["training"], folder / "training.jsonl")
        validation_file = (
            materialize_file(inputs["validation"], folder / "validation.jsonl")
            if inputs.get("validation")
            else None
        )
        init_adapter = (
            materialize_folder(inputs["init_adapter"], folder / "init_adapter")
            if inputs.get("init_adapter")
            else None
        )
        resume_from = None
        checkpoint = ray_train.get_checkpoint()
        if checkpoint is not None:
            # Ray's own: the newest checkpoint of this run (after a worker restart or a pause).
            resume_from = Path(checkpoint.to_directory(str(folder / "resume")))
        elif inputs.get("resume"):
            # The backend's: the run storage was lost, the data folder kept its copy.
            resume_from = materialize_folder(inputs["resume"], folder / "resume")
        workers = group.gather(_worker_info(rank)) if group is not None else [_worker_info(0)]
        callbacks.emit(
            {
                "type": "workers",
                "key": f"ray-workers-{config['launched']}-{os.getpid()}",
                "workers": workers,
                "placement_group": _placement_group(),
                "resumed_step": _checkpoint_step(resume_from),
            }
        )
        request: TrainingRequest = dataclasses.replace(
            config["request"],
            training_file=training_file,
            validation_file=validation_file,
            init_adapter=init_adapter,
            resume_from=resume_from,
            output_dir=folder / "out",
        )
        try:
            result = train(request, callbacks, parallel=data_parallel if group else None)
        except FinetuneKitError as exc:
            logger.warning("job %s: %s", config["job_id"], exc)
            callbacks.emit(_error_event(exc))
            callbacks.flush()
            return
        kept: str | None = None
        if result.status == "succeeded":
            kept = checkpoint_dir_name("adapter", result.steps_done)
            callbacks.persist(result.adapter_path, kept, step=result.steps_done)
        elif result.status == "paused":
            kept = checkpoint_dir_name("paused", result.steps_done)
            callbacks.persist(result.resume_checkpoint, kept, step=result.steps_done)
        callbacks.emit(
            {
                "type": "end",
                "status": result.status,
                "name": kept,
                "steps_done": result.steps_done,
                "total_steps": result.total_steps,
                "trained_tokens": result.trained_tokens,
                "base_model": result.base_model,
                "hyperparameters": dataclasses.asdict(result.hyperparameters),
                "metrics": dict(result.metrics or {}),
            }
        )
        callbacks.flush()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # the job's folder, once its last rank is done
            folder.parent.rmdir()
