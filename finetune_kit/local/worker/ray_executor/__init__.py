"""The Ray executor: the local backend's jobs trained on a Ray cluster (``executor="ray"``).

The API server and its SQLite stay where they are (the control plane) and never talk to Ray. Each
worker process becomes a *bridge* (``runner``: ``RayJobRunner``): it claims a job from the store,
launches or finds again the job's detached actor on the cluster (``job_actor``), which runs Ray
Train's ``TorchTrainer`` with ``workers_per_job`` data-parallel workers (``train_worker``: the
engine's own loop with ``engine.distributed``'s objective), and copies the run's events,
checkpoints and final adapter back into the store and the data folder (``storage``). Reaching the
cluster, and failing a job clearly when it cannot, is ``cluster``.

Needs the ``ray`` extra (``pip install 'finetune-kit[ray]'``) here and on every node of the
cluster, with this package installed there too (the workers import it). See docs/scale-out.md.

May import: what ``worker`` may (the store, the engine, the shared leaves), and Ray, lazily, so
this package imports without it.

Example:
    >>> from finetune_kit.local.worker.ray_executor import describe_workers
    >>> describe_workers([{"rank": 0, "hostname": "gpu-1", "node_ip": "10.0.0.7"}])
    'Training on 1 Ray worker on 1 node: gpu-1 (10.0.0.7) x1'
"""

from __future__ import annotations

from .runner import RayJobRunner, describe_workers

__all__ = ["RayJobRunner", "describe_workers"]
