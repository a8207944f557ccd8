"""Reinforcement fine-tuning on the local backend: time per step, generation's share, reward.

SmolLM2-135M-Instruct (the local backend's default base model) learns to name capital cities:
each prompt asks "What is the capital of <country>?" and a deterministic ``string_check``
grader (``ilike``: the answer contains the capital, any case) gives 1 or 0. 24 countries
train, 16 others are held out (the job's validation file). The whole run goes through the
local backend over HTTP with the ``openai`` client, as a user's would:

1. the held-out mean reward before: ``--held-out-samples`` answers per held-out prompt from the
   base model (chat completions, temperature 1, seeded, the job's answer budget), graded by the
   same grader through ``graders/run``; on a CPU the backend serves chat with llama.cpp (the
   Q4_1 GGUF file whose weights training dequantizes, and the job's GGUF adapter after);
2. the reinforcement job (its wall time from ``running`` to ``succeeded``, model loading
   included), with its per-step figures from the metrics events: seconds per step, the share
   of the step spent generating answers (``generation_seconds / step_seconds``; a step's time
   is its sampling, grading and backward pass, without the evaluations on the validation file);
3. the held-out mean reward after, the same way, from the fine-tuned model.

Targets: the held-out mean reward rises by at least 0.2, and the job takes at most 10 minutes.
The machine's load (``uptime``) is printed with the figures: on a shared machine they move.

Run:  flock /tmp/finetune_kit-bench.lock .venv/bin/python bench/rft.py [--epochs 2]
      [--batch-size 4] [--compute-multiplier 1] [--learning-rate-multiplier 1]
      [--eval-samples 4] [--held-out-samples 8] [--json bench/out/rft.json]
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent

CAPITALS = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Italy", "Rome"),
    ("Germany", "Berlin"),
    ("Egypt", "Cairo"),
    ("Spain", "Madrid"),
    ("the United Kingdom", "London"),
    ("Russia", "Moscow"),
    ("China", "Beijing"),
    ("Greece", "Athens"),
    ("Portugal", "Lisbon"),
    ("Austria", "Vienna"),
    ("Ireland", "Dublin"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
    ("Poland", "Warsaw"),
    ("Hungary", "Budapest"),
    ("the Czech Republic", "Prague"),
    ("Belgium", "Brussels"),
    ("the Netherlands", "Amsterdam"),
    ("Thailand", "Bangkok"),
    ("South Korea", "Seoul"),
    ("India", "Delhi"),
    ("Mexico", "Mexico City"),
    ("Argentina", "Buenos Aires"),
    ("Peru", "Lima"),
    ("Chile", "Santiago"),
    ("Cuba", "Havana"),
    ("Kenya", "Nairobi"),
    ("Turkey", "Ankara"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Iran", "Tehran"),
    ("Iraq", "Baghdad"),
    ("Vietnam", "Hanoi"),
    ("Indonesia", "Jakarta"),
    ("the Philippines", "Manila"),
    ("Venezuela", "Caracas"),
]
HELD_OUT_EVERY = 5  # 2 of each 5 countries are held out: 24 train, 16 held out

GRADER = {
    "type": "string_check",
    "name": "names_the_capital",
    "operation": "ilike",
    "input": "{{sample.output_text}}",
    "reference": "{{item.capital}}",
}


def split() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The training and held-out reinforcement examples."""
    train: list[dict[str, Any]] = []
    held_out: list[dict[str, Any]] = []
    for index, (country, capital) in enumerate(CAPITALS):
        row = {
            "messages": [{"role": "user", "content": f"What is the capital of {country}?"}],
            "capital": capital,
        }
        (held_out if index % HELD_OUT_EVERY in (1, 3) else train).append(row)
    return train, held_out


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        one, five, fifteen = os.getloadavg()
        return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


def held_out_reward(
    client: Any, model: str, rows: list[dict[str, Any]], samples: int, max_tokens: int
) -> float:
    """Mean reward of ``samples`` answers per held-out prompt (temperature 1, seeded).

    The answers come from chat completions and are graded by ``graders/run``, both over HTTP,
    as a user would score a model.
    """
    rewards: list[float] = []
    for index, row in enumerate(rows):
        answer = client.chat.completions.create(
            model=model,
            messages=row["messages"],
            n=samples,
            temperature=1.0,
            max_tokens=max_tokens,
            seed=1000 + index,
        )
        item = {k: v for k, v in row.items() if k != "messages"}
        for choice in answer.choices:
            graded = client.fine_tuning.alpha.graders.run(
                grader=GRADER, model_sample=choice.message.content or "", item=item
            )
            rewards.append(graded.reward)
    return sum(rewards) / len(rewards)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--compute-multiplier", type=float, default=1.0)
    parser.add_argument("--learning-rate-multiplier", type=float, default=1.0)
    parser.add_argument("--reasoning-effort", default="low")
    parser.add_argument("--eval-samples", type=int, default=4)
    parser.add_argument("--eval-interval", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="the job's seed (default: drawn)")
    parser.add_argument(
        "--held-out-samples",
        type=int,
        default=8,
        help="answers per held-out prompt for the before/after figures (chat completions)",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "rft.json")
    args = parser.parse_args()

    import openai

    from finetune_kit.local import LocalBackend
    from finetune_kit.local.engine.registry import DEFAULT_BASE_MODEL
    from finetune_kit.local.engine.rft import completion_budget

    budget = completion_budget(args.reasoning_effort)
    train_rows, held_rows = split()
    load_before = uptime()
    print(f"machine: {os.cpu_count()} CPUs; {load_before}", flush=True)
    figures: dict[str, Any] = {"uptime_before": load_before, "cpus": os.cpu_count()}
    with (
        tempfile.TemporaryDirectory() as folder,
        LocalBackend(Path(folder) / "data", startup_timeout=300) as backend,
    ):
        client = backend.client(timeout=900)
        base = DEFAULT_BASE_MODEL
        started = time.perf_counter()
        before = held_out_reward(client, base, held_rows, args.held_out_samples, budget)
        print(f"held-out mean reward before: {before:.3f} ({time.perf_counter() - started:.0f} s)")
        files = []
        for name, rows in (("train", train_rows), ("held_out", held_rows)):
            path = Path(folder) / f"{name}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            files.append(client.files.create(file=path, purpose="fine-tune").id)
        hyperparameters = {
            "n_epochs": args.epochs,
            "batch_size": args.batch_size,
            "compute_multiplier": args.compute_multiplier,
            "learning_rate_multiplier": args.learning_rate_multiplier,
            "reasoning_effort": args.reasoning_effort,
            "eval_samples": args.eval_samples,
            "eval_interval": args.eval_interval,
        }
        job = client.fine_tuning.jobs.create(
            model=base,
            seed=args.seed if args.seed is not None else openai.NOT_GIVEN,
            training_file=files[0],
            validation_file=files[1],
            method={  # type: ignore[arg-type]
                "type": "reinforcement",
                "reinforcement": {"grader": GRADER, "hyperparameters": hyperparameters},
            },
        )
        running_at: float | None = None
        seen = 0
        while True:
            job = client.fine_tuning.jobs.retrieve(job.id)
            if job.status == "running" and running_at is None:
                running_at = time.perf_counter()
            if job.status in ("succeeded", "failed", "cancelled"):
                break
            events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
            steps = [e for e in reversed(events) if e.type == "metrics"]
            for event in steps[seen:]:
                print(f"  {event.message}", flush=True)
            seen = len(steps)
            time.sleep(2)
        job_seconds = time.perf_counter() - (running_at or started)
        if job.status != "succeeded":
            print(f"job {job.status}: {job.error}")
            return 1
        assert job.fine_tuned_model is not None
        events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
        metrics = [e.data for e in reversed(events) if e.type == "metrics"]
        for event in [e for e in reversed(events) if e.type == "metrics"][seen:]:
            print(f"  {event.message}", flush=True)
        after = held_out_reward(
            client, job.fine_tuned_model, held_rows, args.held_out_samples, budget
        )
        client.close()
    load_after = uptime()
    step_seconds = [float(d["step_seconds"]) for d in metrics]  # type: ignore[index]
    generation = [float(d["generation_seconds"]) for d in metrics]  # type: ignore[index]
    grading = [float(d["grading_seconds"]) for d in metrics]  # type: ignore[index]
    share = sum(generation) / sum(step_seconds)
    grading_share = sum(grading) / sum(step_seconds)
    figures.update(
        {
            "uptime_after": load_after,
            "hyperparameters": hyperparameters,
            "seed": job.seed,
            "steps": len(metrics),
            "job_seconds": job_seconds,
            "step_seconds_median": statistics.median(step_seconds),
            "step_seconds_mean": statistics.fmean(step_seconds),
            "generation_share": share,
            "grading_share": grading_share,
            "held_out_reward_before": before,
            "held_out_reward_after": after,
            "rise": after - before,
            "valid_reward_mean": [d.get("valid_reward_mean") for d in metrics],  # type: ignore[union-attr]
            "train_reward_mean": [d["train_reward_mean"] for d in metrics],  # type: ignore[index]
        }
    )
    print(
        f"\n{len(metrics)} steps in {job_seconds:.0f} s (job wall time, model loading included);"
        f" {statistics.median(step_seconds):.1f} s per step (median), "
        f"{share:.0%} of it generating answers, {grading_share:.1%} grading them"
    )
    print(
        f"held-out mean reward: {before:.3f} -> {after:.3f} ({after - before:+.3f});"
        f" job seed {job.seed}"
    )
    print(f"machine after: {load_after}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    missed = []
    if after - before < 0.2:
        missed.append("a rise of at least 0.2")
    if job_seconds > 600:
        missed.append("at most 10 minutes")
    if missed:
        print("target missed: " + ", ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
