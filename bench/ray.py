"""The cost of running the local backend's jobs on Ray, against the local executor, in one run.

The same tiny-model job (chat examples of uneven lengths, batch 4, a fixed seed) is created
through the API on three servers, one after the other, on this machine:

- ``local``: the default executor (a worker process trains it);
- ``ray-1`` and ``ray-2``: ``--executor ray`` with 1 and 2 Ray Train workers on a 2-CPU Ray
  cluster started here (in this process, as the tests do).

Measured from the client's side, polling the job's newest events every 50 ms:

- start-up: from ``jobs.create`` to the first step's event;
- per step: from the first step's event to the last one's, over the steps between (epoch
  checkpoints included: Ray persists each and the bridge copies it back); for the Ray runs also
  rank 0's own clock (the time each step's event left the worker, read from the job actor), which
  the bridge's 0.2 s polling does not blur;
- the whole job: ``jobs.create`` to ``succeeded``;
- the loss curves: every step's loss on Ray against the local executor's (max relative difference)
  and the trained tokens.

Also the cluster's start and stop. The load average is printed with the figures: on a shared
machine they move by tens of percent from run to run.

    .venv/bin/python bench/ray.py
    .venv/bin/python bench/ray.py --epochs 10 --examples 24
    # several GPUs: a cluster with them, the workers per job to compare, a real model
    .venv/bin/python bench/ray.py --address HEAD:6379 --workers 1,2,4,8 \\
        --resources-per-worker '{"GPU": 1}' --model smollm2-135m-instruct

Figures go to bench/out/ray.json; the exit status is 1 when a Ray run's losses differ from the
local executor's by 1 % or more at any step, or its trained tokens differ.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# This file is bench/ray.py: run as a script, its folder comes first on sys.path and
# `import ray` would import it instead of Ray.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

TERMINAL = {"succeeded", "failed", "cancelled"}

# As tests/fixtures/ray_cluster.py: quiet, one process fewer per job, token auth without a file.
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_TRAIN_V2_ENABLED": "1",
    "RAY_DISABLE_IMPORT_WARNING": "1",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "RAY_TRAIN_ENABLE_CONTROLLER_STRUCTURED_LOGGING": "0",
    "RAY_TRAIN_ENABLE_WORKER_STRUCTURED_LOGGING": "0",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_AUTH_MODE": "token",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def training_rows(n: int) -> list[dict[str, Any]]:
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
    rows = []
    for i in range(n):
        question = " ".join(rng.choice(words) for _ in range(rng.randint(2, 12)))
        answer = " ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "You answer in Greek letters."},
                    {"role": "user", "content": f"{i}: {question}"},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    return rows


def run_job(backend: Any, path: Path, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Create the job, watch its newest events, and return the timings and the losses."""
    import ray

    from finetune_kit.local.worker.ray_executor.job_actor import find

    with backend.client() as client:
        with path.open("rb") as stream:
            uploaded = client.files.create(file=stream, purpose="fine-tune")
        started = time.perf_counter()
        job = client.fine_tuning.jobs.create(
            training_file=uploaded.id,
            model=backend.settings.default_model,
            seed=7,
            method={
                "type": "supervised",
                "supervised": {
                    "hyperparameters": {k: v for k, v in hyperparameters.items() if k != "examples"}
                },
            },
        )
        seen: dict[int, float] = {}
        worker_times: dict[int, float] = {}
        drained = 0
        actor = None
        while True:
            now = time.perf_counter() - started
            for event in client.fine_tuning.jobs.list_events(job.id, limit=8).data:
                if event.type == "metrics" and event.data:
                    seen.setdefault(int(event.data["step"]), now)
            if ray.is_initialized() and backend.settings.executor == "ray":
                actor = actor or find(job.id)
                if actor is not None:
                    try:
                        new = ray.get(actor.drain.remote(drained), timeout=5)
                    except Exception:  # the actor is killed once the job ended
                        new = []
                    drained += len(new)
                    for item in new:
                        if item["type"] == "step":
                            worker_times.setdefault(int(item["metrics"]["step"]), item["time"])
            status = client.fine_tuning.jobs.retrieve(job.id).status
            if status in TERMINAL:
                total = time.perf_counter() - started
                break
            time.sleep(0.05)
        done = client.fine_tuning.jobs.retrieve(job.id)
        events = list(client.fine_tuning.jobs.list_events(job.id, limit=10_000))
    losses = {
        int(e.data["step"]): float(e.data["train_loss"])
        for e in events
        if e.type == "metrics" and e.data
    }
    steps = sorted(seen)
    per_step = (seen[steps[-1]] - seen[steps[0]]) / (steps[-1] - steps[0])
    result: dict[str, Any] = {
        "status": done.status,
        "steps": len(losses),
        "startup_s": round(seen[steps[0]], 2),
        "per_step_ms": round(per_step * 1000, 1),
        "total_s": round(total, 2),
        "trained_tokens": done.trained_tokens,
        # Training throughput once started: tokens over the steps' time.
        "tokens_per_s": round((done.trained_tokens or 0) / (per_step * len(losses)), 1),
        "losses": [losses[k] for k in sorted(losses)],
        "steps_seen": sorted(losses),
    }
    if len(worker_times) > 1:
        ranks0 = sorted(worker_times)
        span = worker_times[ranks0[-1]] - worker_times[ranks0[0]]
        result["per_step_worker_ms"] = round(span / (ranks0[-1] - ranks0[0]) * 1000, 1)
        # Steps within an epoch, and the gaps across an epoch's end (its checkpoint persisted).
        per_epoch = -(-hyperparameters["examples"] // hyperparameters["batch_size"])
        within, across = [], []
        for step in ranks0[1:]:
            if step - 1 not in worker_times:
                continue
            gap = worker_times[step] - worker_times[step - 1]
            (across if (step - 1) % per_epoch == 0 else within).append(gap)
        result["step_within_epoch_ms"] = round(statistics.median(within) * 1000, 1)
        if across:
            extra = statistics.mean(across) - statistics.median(within)
            result["epoch_checkpoint_extra_ms"] = round(extra * 1000, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=24, help="training examples (24)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs (20: 120 steps)")
    parser.add_argument("--batch-size", type=int, default=4, help="batch size (4)")
    parser.add_argument(
        "--workers", default="1,2", help="Ray Train workers per job, one run each (1,2)"
    )
    parser.add_argument(
        "--address", help="an existing cluster (HEAD:6379) instead of a 2-CPU one started here"
    )
    parser.add_argument(
        "--resources-per-worker", default='{"CPU": 1}', help="JSON, e.g. '{\"GPU\": 1}'"
    )
    parser.add_argument("--model", default="tiny-random", help="base model (tiny-random)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "ray.json"))
    args = parser.parse_args()
    workers = [int(n) for n in args.workers.split(",")]
    resources = json.loads(args.resources_per_worker)

    os.environ.update(RAY_ENV)
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    import ray

    from finetune_kit.local import LocalBackend

    load_start = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="ftk-bench-ray-"))
    path = folder / "train.jsonl"
    path.write_text(
        "".join(json.dumps(row) + "\n" for row in training_rows(args.examples)), encoding="utf-8"
    )
    hyperparameters = {
        "examples": args.examples,
        "n_epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate_multiplier": 2.0,
    }

    began = time.perf_counter()
    if args.address:
        ray.init(address=args.address, namespace="finetune_kit", log_to_driver=False)
        address = args.address
    else:
        context = ray.init(
            num_cpus=2,
            num_gpus=0,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="WARNING",
            namespace="finetune_kit",
            _temp_dir=f"/tmp/ray-b{os.getpid()}",
            object_store_memory=200 * 2**20,
        )
        address = str(context.address_info["gcs_address"])
    cluster_start = time.perf_counter() - began

    runs: dict[str, dict[str, Any]] = {}
    configs: list[tuple[str, dict[str, Any]]] = [("local", {})]
    configs += [(f"ray-{n}", {"executor": "ray", "workers_per_job": n}) for n in workers]
    for name, options in configs:
        if options:
            options = {
                **options,
                "ray_address": address,
                "ray_storage": str(folder / "storage"),
                "resources_per_worker": resources,
            }
        backend = LocalBackend(folder / name, default_model=args.model, **options)
        with backend:
            runs[name] = run_job(backend, path, hyperparameters)
        print(
            f"{name:6} {runs[name]['status']:9} start-up {runs[name]['startup_s']:6.1f} s  "
            f"per step {runs[name]['per_step_ms']:6.1f} ms"
            + (
                f" (worker clock {runs[name]['per_step_worker_ms']:.1f} ms: "
                f"{runs[name]['step_within_epoch_ms']:.1f} ms within an epoch, "
                f"+{runs[name].get('epoch_checkpoint_extra_ms', 0):.0f} ms per epoch checkpoint)"
                if "per_step_worker_ms" in runs[name]
                else ""
            )
            + f"  whole job {runs[name]['total_s']:6.1f} s",
            flush=True,
        )

    began = time.perf_counter()
    ray.shutdown()
    cluster_stop = time.perf_counter() - began

    local = runs["local"]
    ok = True
    for name in [name for name, _ in configs[1:]]:
        run = runs[name]
        if len(run["losses"]) != len(local["losses"]):
            print(f"{name}: {run['steps_seen']} steps against local's {local['steps_seen']}")
            ok = False
            continue
        diffs = [abs(a - b) / abs(b) for a, b in zip(run["losses"], local["losses"], strict=True)]
        run["max_relative_loss_difference"] = max(diffs)
        run["same_trained_tokens"] = run["trained_tokens"] == local["trained_tokens"]
        run["startup_overhead_s"] = round(run["startup_s"] - local["startup_s"], 2)
        run["per_step_ratio"] = round(run["per_step_ms"] / local["per_step_ms"], 2)
        ok = ok and max(diffs) < 0.01 and run["same_trained_tokens"]
        print(
            f"{name}: start-up +{run['startup_overhead_s']:.1f} s over local, per step "
            f"x{run['per_step_ratio']:.2f}, losses max rel. diff {max(diffs):.1e}, trained tokens "
            f"{'equal' if run['same_trained_tokens'] else 'DIFFER'}"
        )
    load_end = os.getloadavg()
    print(
        f"cluster start {cluster_start:.1f} s, stop {cluster_stop:.1f} s; load average "
        f"{load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end ({os.cpu_count()} cores)"
    )
    for run in runs.values():
        run["losses"] = [round(v, 6) for v in run["losses"]]
        del run["steps_seen"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "ray": ray.__version__,
                    "load_average_start": load_start,
                    "load_average_end": load_end,
                },
                "job": {**hyperparameters, "model": args.model},
                "resources_per_worker": resources,
                "cluster_start_s": round(cluster_start, 2),
                "cluster_stop_s": round(cluster_stop, 2),
                "runs": runs,
            },
            indent=1,
        )
    )
    print(f"figures in {out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
