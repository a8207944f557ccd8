"""Count the requests made while following a fine-tuning job, against the budget and a naive loop.

Two identical jobs run one after the other on the local backend (tiny model). The first is
followed by ``JobManager.wait``; the second by the loop a user would write instead: every
``interval`` seconds, ``jobs.retrieve`` plus ``jobs.list_events(limit=page)``, printing the
events not seen before. The backend's request log counts the requests each made. Reported:

- requests of each, and the budget ``duration / interval + events / page``;
- whether each saw every event exactly once (the naive loop misses events when more than a page
  arrives between two polls).

    .venv/bin/python bench/follow.py
    .venv/bin/python bench/follow.py --interval 0.5 --page 10 --epochs 4

Figures go to bench/out/follow.json; the exit status is 1 when a target is missed (more
requests than the budget, or an event not seen exactly once).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TERMINAL = {"succeeded", "failed", "cancelled"}


def training_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"Tell me about element {i}."},
                {"role": "assistant", "content": f"Element {i} is number {i}."},
            ]
        }
        for i in range(n)
    ]


def naive_follow(client: Any, job_id: str, interval: float, page: int) -> list[str]:
    """What a user writes without the library: poll both endpoints on a fixed interval."""
    seen: list[str] = []
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        events = client.fine_tuning.jobs.list_events(job_id, limit=page).data
        for event in reversed(events):
            if event.id not in seen:
                seen.append(event.id)
        if job.status in TERMINAL:
            return seen
        time.sleep(interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.5, help="poll interval (s)")
    parser.add_argument("--page", type=int, default=20, help="events per request")
    parser.add_argument("--examples", type=int, default=24, help="training examples")
    parser.add_argument("--epochs", type=int, default=3, help="n_epochs")
    parser.add_argument("--step-delay", type=float, default=0.1, help="backend seconds per step")
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(__file__).resolve().parent / "out" / "follow.json",
        help="figures file",
    )
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from finetune_kit.files import FileUploader
    from finetune_kit.jobs import JobManager
    from finetune_kit.jobs.following import FollowOptions
    from finetune_kit.jobs.views import JobEvent
    from finetune_kit.local import LocalBackend

    work = Path(tempfile.mkdtemp(prefix="bench-follow-"))
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in training_rows(args.examples)))
    options = FollowOptions(
        initial_interval=args.interval,
        max_interval=max(args.interval * 8, 5.0),
        events_page_size=args.page,
    )
    backend = LocalBackend(
        work / "backend",
        default_model="tiny-random",
        faults=True,
        training_step_delay=args.step_delay,
    )
    results: dict[str, Any] = {}
    with backend, backend.client() as client:
        uploaded = FileUploader(client, progress=False, cache=False).upload(data)
        jobs = JobManager(client, follow_options=options, progress=False)
        # A first job starts the training worker, so both measured jobs find it warm.
        warm = jobs.create(
            model="gpt-4o-mini", training_file=uploaded, hyperparameters={"n_epochs": 1}
        )
        jobs.wait(warm.id)
        for name in ("finetune_kit", "naive"):
            job = jobs.create(
                model="gpt-4o-mini",
                training_file=uploaded,
                hyperparameters={"n_epochs": args.epochs, "batch_size": 1},
            )
            backend.faults.clear_log()
            start = time.monotonic()
            if name == "finetune_kit":
                emitted: list[str] = []

                def collect(update: Any, into: list[str] = emitted) -> None:
                    if isinstance(update, JobEvent):
                        into.append(update.id)

                jobs.wait(job.id, on_update=collect)
            else:
                emitted = naive_follow(client, job.id, args.interval, args.page)
            duration = time.monotonic() - start
            requests = backend.faults.count(
                None, f"/v1/fine_tuning/jobs/{job.id}/**"
            ) + backend.faults.count(None, f"/v1/fine_tuning/jobs/{job.id}")
            every = [
                e.id for e in reversed(list(client.fine_tuning.jobs.list_events(job.id, limit=100)))
            ]
            budget = duration / args.interval + len(every) / args.page
            results[name] = {
                "duration_s": round(duration, 2),
                "events": len(every),
                "requests": requests,
                "budget": round(budget, 1),
                "requests_over_budget": round(requests / budget, 3),
                "every_event_once_in_order": emitted == every,
                "events_missed": len(set(every) - set(emitted)),
            }
            print(f"{name:13s} {json.dumps(results[name])}", flush=True)

    ours, naive = results["finetune_kit"], results["naive"]
    figures = {
        "interval_s": args.interval,
        "page": args.page,
        "load_average_1m": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        **results,
        "requests_ratio_vs_naive": round(ours["requests"] / naive["requests"], 3),
    }
    print(
        f"\nfinetune_kit: {ours['requests']} requests for {ours['duration_s']} s and "
        f"{ours['events']} events (budget {ours['budget']}, ratio {ours['requests_over_budget']}); "
        f"naive loop: {naive['requests']} requests (ratio {naive['requests_over_budget']}), "
        f"missed {naive['events_missed']} events. Load average {figures['load_average_1m']:.2f} "
        f"on {figures['cpus']} CPUs."
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    met = ours["requests_over_budget"] <= 1.0 and ours["every_event_once_in_order"]
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
