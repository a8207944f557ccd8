"""The job actor: one detached, named Ray actor per job, owning its training run on the cluster.

``launch`` starts it (``ftk-job-<job id>`` in the ``finetune_kit`` namespace, no CPU of its
own); ``find`` finds it again after the bridge (or the whole backend) restarted. It

- holds the job's inputs in the object store (``ray.put`` by the actor, so they outlive the
  bridge that sent them);
- runs Ray Train's ``TorchTrainer.fit()`` in a thread: ``workers`` processes running
  ``train_worker.train_loop_per_worker``, restarted by Ray from the last checkpoint when one
  dies (``FailureConfig``);
- is the job's event channel: rank 0 appends events (``put``) and the bridge reads them from an
  index (``drain``). The actor runs one call at a time, so events keep the order rank 0 sent
  them in; the bridge stores them by key, so a step run again after a restart is recorded once;
- is the job's control channel: ``signal("cancel" | "pause")``, which rank 0 receives as the
  answer to its next ``put`` and broadcasts to the other ranks.

The training run's controller and workers are owned by this actor, so killing it (``hard_stop``)
ends them too; the placement group Ray Train made is removed by hand then, since without Ray's
state API (the ``ray[default]`` extra) nothing else frees its CPUs.

Example:
    >>> actor_name("ftjob-abc")
    'ftk-job-ftjob-abc'
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any

from .cluster import NAMESPACE

__all__ = [
    "ACTOR_PREFIX",
    "JobActor",
    "actor_name",
    "find",
    "hard_stop",
    "launch",
    "remove_placement_group",
]

logger = logging.getLogger("finetune_kit.local.worker")

TORCH_TIMEOUT_S = 300
"""Seconds a collective may wait for a slow rank (a model load) before the run fails."""

_NAME_WAIT_SECONDS = 10.0

CONTROLLER_POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
"""How often Ray Train's controller polls its workers; the run's value comes from the server's
environment, else ``CONTROLLER_POLL_SECONDS``."""

CONTROLLER_POLL_SECONDS = "0.5"
"""The controller takes one checkpoint report at a time, when it polls (every 2 s by Ray's
default): an epoch shorter than that waited up to 2 s at its checkpoint. Polling every 0.5 s
costs the controller a few small calls a second."""


ACTOR_PREFIX = "ftk-job-"
"""Job actors are named this, then the job id."""


def actor_name(job_id: str) -> str:
    """The job actor's name in the ``finetune_kit`` namespace."""
    return ACTOR_PREFIX + job_id


def _relay(actor: Any) -> Any:
    """A Ray Train callback (it runs in the controller): registered checkpoints, failures."""
    from ray.train import UserCallback

    class FailureRelay(UserCallback):
        def after_report(
            self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
        ) -> None:
            # The controller registered this checkpoint: from now on a restart resumes from it
            # (a worker lost between the report and this moment resumes from the one before).
            if checkpoint is not None:
                name = str(checkpoint.path).rstrip("/").rpartition("/")[2]
                actor.put.remote({"type": "registered", "name": name})

        def after_exception(self, run_context: Any, worker_exceptions: Mapping[int, Any]) -> None:
            ranks = sorted(worker_exceptions)
            first = worker_exceptions[ranks[0]]
            summary = (str(first).strip().splitlines() or [""])[0][:300]
            actor.put.remote(
                {
                    "type": "warn",
                    "key": f"ray-worker-failure-{time.time_ns()}",
                    "message": (
                        f"Ray worker(s) {', '.join(map(str, ranks))} failed "
                        f"({type(first).__name__}: {summary}); Ray restarts the workers from "
                        "the last checkpoint"
                    ),
                }
            )

    return FailureRelay()


class JobActor:
    """The body of a job's actor (made remote by ``launch``).

    Args:
        job_id: The job.
        spec: What to train: ``workers``, ``resources_per_worker``, ``use_gpu``, ``storage``,
            ``max_failures``, ``inputs`` (payloads, see ``storage``) and ``config`` (the rest
            of the worker function's configuration).
    """

    def __init__(self, job_id: str, spec: dict[str, Any]) -> None:
        import ray

        self.job_id = job_id
        self.launched = int(time.time())
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._signal: str | None = None
        self.state = "created"
        self.error: str | None = None
        self.placement_group: str | None = None
        inputs: dict[str, Any] = {}
        for name, payload in spec.pop("inputs").items():
            if payload is None or "uri" in payload:
                inputs[name] = payload
            else:
                # Put by this actor: the object lives as long as the job does.
                inputs[name] = {"ref": [ray.put(payload.get("bytes", payload.get("files")))]}
        self.spec = spec
        self.inputs = inputs
        self._thread: threading.Thread | None = None

    # -- the channels -----------------------------------------------------------------------

    def put(self, event: dict[str, Any]) -> str | None:
        """Append an event; answer the current stop signal."""
        with self._lock:
            if event.get("type") == "workers":
                self.placement_group = event.get("placement_group")
            self._events.append(event)
            return self._signal

    def drain(self, start: int = 0) -> list[dict[str, Any]]:
        """The events from index ``start`` on."""
        with self._lock:
            return list(self._events[start:])

    def signal(self, value: str | None) -> None:
        """Ask the run to stop: ``"cancel"`` or ``"pause"``."""
        self._signal = value

    def status(self) -> dict[str, Any]:
        """The run's state (``created``, ``running``, ``finished``, ``failed``) and error."""
        return {"state": self.state, "error": self.error, "events": len(self._events)}

    def placement_group_id(self) -> str | None:
        """The placement group of the run's workers (hex), once they reported in."""
        return self.placement_group

    # -- the run ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start ``fit()`` in a thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._fit, name=f"fit-{self.job_id}", daemon=True
            )
            self._thread.start()

    def _fit(self) -> None:
        import ray
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        from .train_worker import train_loop_per_worker

        spec = self.spec
        me = ray.get_runtime_context().current_actor
        config = dict(spec["config"])
        config.update(actor=me, inputs=self.inputs, job_id=self.job_id, launched=self.launched)
        self.state = "running"
        try:
            trainer = TorchTrainer(
                train_loop_per_worker,
                train_loop_config=config,
                torch_config=TorchConfig(
                    backend="nccl" if spec["use_gpu"] else "gloo", timeout_s=TORCH_TIMEOUT_S
                ),
                scaling_config=ScalingConfig(
                    num_workers=spec["workers"],
                    use_gpu=spec["use_gpu"],
                    resources_per_worker=dict(spec["resources_per_worker"]),
                ),
                run_config=RunConfig(
                    # The job id, never reused: the same name resumes that run's checkpoints.
                    name=self.job_id,
                    storage_path=spec["storage"],
                    failure_config=FailureConfig(max_failures=spec["max_failures"]),
                    # Every checkpoint stays until the bridge has copied it back and the job
                    # ended (then the bridge removes the run's folder).
                    checkpoint_config=CheckpointConfig(num_to_keep=None),
                    callbacks=[_relay(me)],
                ),
            )
            trainer.fit()
            self.state = "finished"
        except Exception as exc:  # reported to the bridge, which fails the job with it
            self.error = f"{type(exc).__name__}: {exc}"
            logger.error("job %s: training failed\n%s", self.job_id, traceback.format_exc())
            self.state = "failed"
        self.put({"type": "done", "state": self.state, "error": self.error})


def launch(job_id: str, spec: dict[str, Any]) -> Any:
    """Create the job's detached actor and start its run; return the actor's handle."""
    import ray

    remote = ray.remote(JobActor)
    deadline = time.monotonic() + _NAME_WAIT_SECONDS
    while True:
        try:
            # No CPU of its own: it waits on the run; one call at a time: events stay in order.
            # Any: Ray's typing of an actor's methods misses their .remote.
            handle: Any = remote.options(
                num_cpus=0,
                max_concurrency=1,
                max_restarts=0,
                name=actor_name(job_id),
                namespace=NAMESPACE,
                lifetime="detached",
                # Inherited by the run's controller and workers, which the actor starts.
                runtime_env={"env_vars": run_environment()},
            ).remote(job_id, spec)
            break
        except ValueError:
            # The name of the job's previous actor (killed at a pause) is freed a moment
            # after the kill; a resume that comes quicker waits for it.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    ray.get(handle.start.remote())
    return handle


def run_environment() -> dict[str, str]:
    """Environment variables a job's run gets on the cluster (see ``CONTROLLER_POLL_SECONDS``)."""
    return {CONTROLLER_POLL_ENV: os.environ.get(CONTROLLER_POLL_ENV) or CONTROLLER_POLL_SECONDS}


def find(job_id: str) -> Any | None:
    """The job's actor, if it still lives on the cluster."""
    import ray

    try:
        return ray.get_actor(actor_name(job_id), namespace=NAMESPACE)
    except ValueError:
        return None


def hard_stop(handle: Any, placement_group: str | None = None) -> None:
    """Kill the job's actor (its run's controller and workers die with it) and free its CPUs.

    Args:
        handle: The job actor.
        placement_group: The run's placement group (hex) when known already; else the actor is
            asked for it first.
    """
    import ray

    group = placement_group
    if group is None:
        try:
            group = ray.get(handle.placement_group_id.remote(), timeout=10)
        except Exception:  # the actor may be dead already: nothing to ask it
            logger.debug("could not ask the job actor for its placement group", exc_info=True)
    ray.kill(handle, no_restart=True)
    remove_placement_group(group)


def remove_placement_group(group: str | None) -> None:
    """Free a run's placement group (hex id), whose owner was killed; gone already is fine.

    Ray Train's own cleaner needs Ray's state API (the ``ray[default]`` extra and its dashboard)
    to see that the controller died; without it the group keeps its resources, and the next run
    waits for them forever.
    """
    if not group:
        return
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup
    from ray.util.placement_group import remove_placement_group as remove

    try:
        remove(PlacementGroup(PlacementGroupID.from_hex(group)))
    except Exception:  # removed already, when Ray Train's own cleanup came first
        logger.debug("placement group %s already gone", group, exc_info=True)
