"""The bridge: a worker process that runs its jobs on a Ray cluster instead of training them.

``RayJobRunner`` takes the place of ``JobRunner`` in ``python -m finetune_kit.local.worker`` when
the server runs with ``executor="ray"``. It claims a job from SQLite as any worker does, then:

1. connects to the cluster (a TCP check first: an unreachable cluster fails the job with a
   message saying so, instead of a hang);
2. finds the job's actor (``ftk-job-<id>``) still running there, after a backend restart, or
   launches it: the inputs go with it (see ``storage``), and the actor runs Ray Train;
3. follows it: every ``POLL_SECONDS`` it reads the actor's new events and writes them into SQLite
   through the same callbacks the local runner uses (``step-N`` keys: a step run again after a
   worker restart is stored once), copies each checkpoint into the data folder, and passes a
   cancel or pause on to the run;
4. when the run ends, copies the final adapter (or the pause checkpoint) back and records the
   outcome in the same transaction as the local runner (``_finish``); the run's folder in the
   storage is removed unless the job is paused.

When the server stops, the bridge just leaves: the run goes on on the cluster, the job waits in
``queued``, and the next server's bridge finds the actor again and follows it from its first
event. Ray ends a driver whose cluster went away; the pool then starts a new bridge, which
finds the cluster unreachable and fails the job with that message.

Example:
    >>> describe_workers([{"rank": 0, "hostname": "a", "node_ip": "10.0.0.1"},
    ...                   {"rank": 1, "hostname": "a", "node_ip": "10.0.0.1"}])
    'Training on 2 Ray workers (data-parallel) on 1 node: a (10.0.0.1) x2'
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...engine.device import DeviceInfo
from ...engine.types import (
    CheckpointInfo,
    Hyperparameters,
    StepMetrics,
    TrainingRequest,
    TrainingResult,
)
from ...settings import ServerSettings
from ...store import FileRecord, JobRecord, Store
from ..runner import JobRunner, _JobCallbacks
from .cluster import ClusterUnreachableError, check_reachable, connect, resolve_address
from .job_actor import find, hard_stop, launch, remove_placement_group
from .storage import (
    copy_back,
    list_folders,
    pack_folder,
    remove_tree,
    stage_file,
    storage_join,
)

__all__ = ["MAX_WORKER_FAILURES", "POLL_SECONDS", "RayJobRunner", "describe_workers"]

logger = logging.getLogger("finetune_kit.local.worker")

POLL_SECONDS = 0.2
"""How often the bridge reads new events and the job's status."""

MAX_WORKER_FAILURES = 2
"""Ray restarts a job's workers from the last checkpoint this many times before failing it."""

CANCEL_GRACE_SECONDS = 30.0
"""A run that has not stopped this long after a cancel is killed (its actor, its workers)."""

PAUSE_GRACE_SECONDS = 120.0
"""Likewise for a pause: killed, it resumes from its last epoch checkpoint instead."""

SWEEP_SECONDS = 30.0
"""How often an idle, connected bridge stops the Ray runs of jobs that ended without it."""

WAITING_WARNING_SECONDS = 120.0
"""A run whose workers have not reported in this long gets a ``warn`` event saying why."""

ENDED_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

_MAX_RELAUNCHES = 2
_DRAIN_TIMEOUT = 30.0


def describe_workers(workers: Sequence[Mapping[str, Any]]) -> str:
    """The event text saying how many workers train, and where."""
    nodes = Counter(f"{w['hostname']} ({w['node_ip']})" for w in workers)
    where = ", ".join(f"{node} x{count}" for node, count in sorted(nodes.items()))
    noun = "node" if len(nodes) == 1 else "nodes"
    kind = " (data-parallel)" if len(workers) > 1 else ""
    plural = "s" if len(workers) != 1 else ""
    return f"Training on {len(workers)} Ray worker{plural}{kind} on {len(nodes)} {noun}: {where}"


@dataclass
class _Following:
    """What the bridge learned of one run while following it."""

    request: TrainingRequest
    started: float = field(default_factory=time.monotonic)
    workers_seen: bool = False
    placement_group: str | None = None
    waiting_told: bool = False
    end: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    done: dict[str, Any] | None = None


class RayJobRunner(JobRunner):
    """Runs claimed jobs on a Ray cluster and records them like ``JobRunner`` (the bridge).

    Args:
        store: The shared store.
        settings: The server's settings (``ray_address``, ``workers_per_job``...).
        token: This worker's identity, as stored in a job's ``held_by``.
        stop_event: Set when the server stops: the bridge stops following, the run goes on.
    """

    crash_subject = "The worker process following this job on the Ray cluster"

    def __init__(
        self, store: Store, settings: ServerSettings, token: str, stop_event: threading.Event
    ) -> None:
        # The step delay (a testing aid) belongs to the Ray workers' steps; the bridge records
        # steps as they come and must not wait between them as the local runner's callbacks do.
        super().__init__(store, settings.with_changes(training_step_delay=0.0), token, stop_event)
        self.server_settings = settings
        self.address = resolve_address(settings.ray_address)
        self.storage = settings.ray_storage_location
        self._cluster_lost = False
        self._next_sweep = 0.0  # the first idle moment looks for runs left behind
        self._asked_to_stop: dict[str, float] = {}

    def run_next(self) -> bool:
        """Claim the oldest queued job and run it on the cluster; return whether there was one."""
        found = super().run_next()
        if found and self._cluster_lost:
            # Ray will end this process soon anyway (its cluster is gone); leaving now lets the
            # pool start a fresh bridge that connects anew for the next job.
            logger.warning("the Ray cluster at %s is gone; this bridge stops", self.address)
            self.stop_event.set()
        elif not found and time.monotonic() >= self._next_sweep:
            self._sweep()
        return found

    def _sweep(self) -> None:
        """Stop the runs of this store's jobs that ended while no bridge followed them.

        A run goes on through a server restart, and its job waits in ``queued`` until a bridge
        is free to follow it; cancelled meanwhile, nothing else would tell the run to stop. The
        run storage says which runs were left: a folder per job, removed when its job ends. For
        each such job this store knows as ended and no bridge holds, the run is asked to stop
        (then killed if it has not within ``CANCEL_GRACE_SECONDS``) and its folder removed.
        Other servers may share the cluster and the storage: their jobs are not this store's.
        """
        self._next_sweep = time.monotonic() + SWEEP_SECONDS
        try:
            left = [
                record
                for record in map(self.store.jobs.get, list_folders(self.storage))
                if record is not None and record.held_by is None and record.status in ENDED_STATUSES
            ]
            if not left:
                return
            try:
                connect(self.address)
            except ClusterUnreachableError:
                # No cluster, no run: only the folders are left to remove.
                for record in left:
                    self._clean_up(record)
                return
            for record in left:
                if self._stop_left_run(record):
                    self._clean_up(record)
                else:
                    self._next_sweep = time.monotonic() + 2.0  # check again soon
        except Exception:  # a housekeeping pass: it must never stop the bridge
            logger.warning("could not look for Ray runs of ended jobs", exc_info=True)

    def _stop_left_run(self, record: JobRecord) -> bool:
        """Move an ended job's run towards its end; return whether it is over."""
        import ray

        handle = find(record.id)
        if handle is None:
            return True
        state = ray.get(handle.status.remote(), timeout=_DRAIN_TIMEOUT)["state"]
        if state in ("finished", "failed"):
            ray.kill(handle, no_restart=True)
            return True
        now = time.monotonic()
        if record.id not in self._asked_to_stop:
            logger.info("job %s %s; stopping its Ray run", record.id, record.status)
            self._asked_to_stop[record.id] = now
            handle.signal.remote("cancel")
            return False
        if now - self._asked_to_stop[record.id] > CANCEL_GRACE_SECONDS:
            hard_stop(handle)
            return True
        return False

    def run(self, job: JobRecord) -> None:
        """Run one claimed (``running``) job on the cluster to its end, pause or failure."""
        prepared = self._prepare(job)
        if prepared is None:
            return
        store = self.store
        request, resume_from = prepared.request, prepared.resume_from
        training, validation = prepared.training, prepared.validation
        try:
            connect(self.address)
            self._sweep()
            handle = find(job.id)
            if handle is not None:
                store.events.add(
                    job.id,
                    f"ray-reattached-{job.attempts}",
                    "Following the training run already on the Ray cluster",
                )
            else:
                store.events.add(job.id, "started", "Fine-tuning job started")
                if resume_from is not None:
                    store.events.add(
                        job.id,
                        f"resume-{job.attempts}",
                        f"Resuming training from the checkpoint at step {prepared.resume_step}",
                    )
                handle = self._launch(job, request, training, validation, resume_from)
            self._follow(job, handle, _Following(request))
        except ClusterUnreachableError as exc:
            self._cluster_lost = True
            self._fail(job, "cluster_unreachable", str(exc))

    # -- launching --------------------------------------------------------------------------

    def _spec(
        self,
        job: JobRecord,
        request: TrainingRequest,
        training: FileRecord,
        validation: FileRecord | None,
        resume_from: Path | None,
    ) -> dict[str, Any]:
        settings = self.server_settings
        resources = dict(settings.resources_per_worker or {"CPU": 1})
        use_gpu = resources.get("GPU", 0) > 0
        threads = None if use_gpu else max(1, int(resources.get("CPU", 1)))
        prefix = f"{job.id}-inputs"
        inputs: dict[str, Any] = {
            "training": stage_file(
                self.store.files.path(training.id), self.storage, f"{prefix}/training.jsonl"
            ),
            "validation": (
                stage_file(
                    self.store.files.path(validation.id),
                    self.storage,
                    f"{prefix}/validation.jsonl",
                )
                if validation is not None
                else None
            ),
            "init_adapter": pack_folder(request.init_adapter) if request.init_adapter else None,
            # Ray resumes from its own storage when the run's checkpoints are there; this copy
            # from the data folder is for a storage that lost them.
            "resume": pack_folder(resume_from) if resume_from is not None else None,
        }
        # The worker replaces every path with its own copy; the rest travels as it is.
        portable = replace(
            request,
            training_file=Path("training.jsonl"),
            validation_file=None,
            init_adapter=None,
            resume_from=None,
            output_dir=Path("out"),
            num_threads=request.num_threads or threads,
            # The workers' devices, not this machine's: Ray gives each GPU worker its GPU
            # (CUDA_VISIBLE_DEVICES), which it sees as cuda:0.
            device="cuda" if use_gpu else "cpu",
        )
        return {
            "workers": settings.workers_per_job,
            "resources_per_worker": resources,
            "use_gpu": use_gpu,
            "storage": self.storage,
            "max_failures": MAX_WORKER_FAILURES,
            "inputs": inputs,
            "config": {
                "request": portable,
                "step_delay": settings.training_step_delay,
                "use_gpu": use_gpu,
            },
        }

    def _launch(
        self,
        job: JobRecord,
        request: TrainingRequest,
        training: FileRecord,
        validation: FileRecord | None,
        resume_from: Path | None,
    ) -> Any:
        spec = self._spec(job, request, training, validation, resume_from)
        logger.debug("job %s: launching on the Ray cluster at %s", job.id, self.address)
        return launch(job.id, spec)

    # -- following --------------------------------------------------------------------------

    def _follow(self, job: JobRecord, handle: Any, run: _Following) -> None:
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        callbacks = _JobCallbacks(self, job)
        index = 0
        relaunches = 0
        sent: str | None = None
        sent_at = 0.0
        while True:
            try:
                events = ray.get(handle.drain.remote(index), timeout=_DRAIN_TIMEOUT)
            except GetTimeoutError:
                check_reachable(self.address)
                continue
            except RayError as exc:
                check_reachable(self.address)
                # The actor is gone but the cluster answers: its node died. Its run starts
                # again from the checkpoints in the storage.
                relaunches += 1
                if relaunches > _MAX_RELAUNCHES:
                    self._fail(
                        job,
                        "training_failed",
                        f"The job's actor on the Ray cluster was lost {relaunches} times "
                        f"({type(exc).__name__}: {exc}); create the job again.",
                    )
                    return
                self.store.events.add(
                    job.id,
                    f"ray-relaunch-{job.attempts}-{relaunches}",
                    f"The job's actor on the Ray cluster was lost ({type(exc).__name__}); "
                    "starting its run again from the last checkpoint",
                    level="warn",
                )
                # The lost run's workers are gone with it; their placement group is not.
                remove_placement_group(run.placement_group)
                handle, index, sent = self._relaunch(job, run), 0, None
                run.started, run.workers_seen = time.monotonic(), False
                run.placement_group = None
                continue
            index += len(events)
            for event in events:
                self._record(job, event, run, callbacks)
            if run.done is not None:
                self._conclude(job, handle, run)
                return
            if self.stop_event.is_set():
                # The server stops: the run goes on; the next server's bridge follows it.
                logger.debug("job %s: server stopping; the Ray run goes on", job.id)
                self.store.jobs.transition(job.id, "queued", expect=("running",))
                return
            wanted = self._wanted_signal(job)
            now = time.monotonic()
            waiting = now - run.started > WAITING_WARNING_SECONDS
            if waiting and not run.workers_seen and not run.waiting_told:
                run.waiting_told = True
                self._tell_waiting(job)
            if wanted is not None and wanted != sent:
                handle.signal.remote(wanted)
                sent, sent_at = wanted, now
            grace = CANCEL_GRACE_SECONDS if sent == "cancel" else PAUSE_GRACE_SECONDS
            if sent is not None and now - sent_at > grace:
                logger.warning(
                    "job %s: the Ray run did not stop in %.0f s; killing it", job.id, grace
                )
                hard_stop(handle, run.placement_group)
                self._stopped_hard(job, run, sent)
                return
            self.stop_event.wait(POLL_SECONDS)

    def _tell_waiting(self, job: JobRecord) -> None:
        import ray

        settings = self.server_settings
        asked = dict(settings.resources_per_worker or {"CPU": 1})
        try:
            # Untyped in Ray.
            total = ray.cluster_resources()  # type: ignore[no-untyped-call]
            free = ray.available_resources()  # type: ignore[no-untyped-call]
        except Exception:  # only a hint: the event is written without the figures
            total = free = {}
        shown = sorted(asked)
        self.store.events.add(
            job.id,
            f"ray-waiting-{job.attempts}",
            f"The Ray cluster has not started this job's workers after "
            f"{WAITING_WARNING_SECONDS:.0f} s. It asks for {settings.workers_per_job} worker(s) "
            f"with {asked} each; the cluster has "
            f"{ {k: total.get(k, 0) for k in shown} } in all, "
            f"{ {k: free.get(k, 0) for k in shown} } free. It starts once those are free "
            "(another job may hold them, or nodes are still joining).",
            level="warn",
        )

    def _relaunch(self, job: JobRecord, run: _Following) -> Any:
        training = self.store.files.get(job.training_file)
        validation = self.store.files.get(job.validation_file) if job.validation_file else None
        assert training is not None
        resume_from, _ = self._resume_point(job)
        return self._launch(job, run.request, training, validation, resume_from)

    def _wanted_signal(self, job: JobRecord) -> str | None:
        current = self.store.jobs.get(job.id)
        if current is None or current.status == "cancelled":
            return "cancel"
        if current.status != "running":
            # Paused, or resumed again already (queued): stop here, as the local runner does.
            return "pause"
        return None

    def _record(
        self, job: JobRecord, event: Mapping[str, Any], run: _Following, callbacks: _JobCallbacks
    ) -> None:
        kind = event.get("type")
        if kind == "workers":
            run.workers_seen = True
            # Known here too: when the actor is lost, the bridge frees its workers' group.
            run.placement_group = event.get("placement_group")
            workers = list(event["workers"])
            message = describe_workers(workers)
            resumed = event.get("resumed_step")
            if resumed is not None:
                message += f"; resumed from the checkpoint at step {resumed}"
            self.store.events.add(
                job.id,
                str(event["key"]),
                message,
                data={
                    "workers": len(workers),
                    "nodes": sorted({str(w["node_ip"]) for w in workers}),
                    "pids": [int(w["pid"]) for w in sorted(workers, key=lambda w: w["rank"])],
                    "resumed_step": resumed,
                },
            )
        elif kind == "device":
            callbacks.on_device(DeviceInfo(**event["device"]), dict(event["details"]))
        elif kind == "start":
            callbacks.on_start(Hyperparameters(**event["hyperparameters"]), event["total_steps"])
        elif kind == "step":
            callbacks.on_step(StepMetrics(**event["metrics"]))
        elif kind == "checkpoint":
            self._checkpoint(job, event, run, callbacks)
        elif kind == "warn":
            self.store.events.add(job.id, str(event["key"]), str(event["message"]), level="warn")
        elif kind == "registered":
            logger.debug("job %s: Ray registered %s", job.id, event.get("name"))
        elif kind == "error":
            run.error = dict(event)
        elif kind == "end":
            run.end = dict(event)
        elif kind == "done":
            run.done = dict(event)

    def _checkpoint(
        self, job: JobRecord, event: Mapping[str, Any], run: _Following, callbacks: _JobCallbacks
    ) -> None:
        step = int(event["step"])
        root = self.store.job_dir(job.id) / "checkpoints"
        local = root / f"step-{step}"
        if not local.is_dir():
            try:
                copy_back(storage_join(self.storage, job.id, str(event["name"])), local)
            except FileNotFoundError:
                logger.warning("job %s: checkpoint at step %d no longer in storage", job.id, step)
                return
        callbacks.on_checkpoint(
            CheckpointInfo(step, int(event["epoch"]), local, dict(event["metrics"]))
        )
        # The newest few stay, as the local engine keeps them.
        keep = run.request.keep_checkpoints
        steps = sorted(int(p.name.removeprefix("step-")) for p in root.glob("step-*"))
        for old in steps[:-keep]:
            shutil.rmtree(root / f"step-{old}", ignore_errors=True)

    # -- ending -----------------------------------------------------------------------------

    def _conclude(self, job: JobRecord, handle: Any, run: _Following) -> None:
        import ray

        done = run.done or {}
        end = run.end
        output = self.store.job_dir(job.id)
        if run.error is not None:
            param = run.error.get("param")
            self._fail(job, str(run.error["code"]), str(run.error["message"]), param=param)
        elif done.get("state") != "finished" or end is None:
            self._fail(
                job,
                "training_failed",
                f"Training on the Ray cluster failed: {done.get('error') or 'no result'}. "
                "The Ray logs of the job's workers say more (ray logs, or the dashboard).",
            )
        else:
            status = str(end["status"])
            adapter = resume = None
            source = storage_join(self.storage, job.id, str(end.get("name") or ""))
            if status == "succeeded":
                adapter = copy_back(source, output / "adapter")
            elif status == "paused":
                resume = copy_back(source, output / "paused" / f"step-{end['steps_done']}")
            result = TrainingResult(
                status=status,  # type: ignore[arg-type]  # one of the engine's statuses
                base_model=str(end["base_model"]),
                adapter_path=adapter,
                trained_tokens=int(end["trained_tokens"]),
                hyperparameters=Hyperparameters(**end["hyperparameters"]),
                total_steps=int(end["total_steps"]),
                steps_done=int(end["steps_done"]),
                checkpoints=[],
                resume_checkpoint=resume,
                metrics=end.get("metrics") or None,
            )
            self._finish(job, result, shutdown=False)
            if status == "paused":
                # Kept: resuming under the same run name restores its newest checkpoint.
                ray.kill(handle, no_restart=True)
                return
        self._clean_up(job)
        ray.kill(handle, no_restart=True)

    def _stopped_hard(self, job: JobRecord, run: _Following, signal: str) -> None:
        if signal == "cancel":
            self.store.jobs.transition(job.id, "cancelled", expect=("running",))
            self._clean_up(job)
            return
        # Paused without a pause checkpoint: it resumes from its last epoch checkpoint.
        self.store.jobs.update(job.id, estimated_finish=None)

    def _clean_up(self, job: JobRecord) -> None:
        for name in (job.id, f"{job.id}-inputs"):
            try:
                remove_tree(storage_join(self.storage, name))
            except OSError:
                logger.warning("job %s: could not remove %s from the Ray storage", job.id, name)
