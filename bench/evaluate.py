"""Evaluation speed: InferenceClient.evaluate at concurrency 16 against a sequential loop.

Against the local backend (tiny model) with 100 ms of latency injected on every chat request:

1. baseline: what a user writes, ``for prompt in prompts: client.chat.completions.create(...)``;
2. ``InferenceClient(client, concurrency=16).evaluate(...)`` on the same prompts;
3. its async twin, ``AsyncInferenceClient.evaluate``;
4. the sync evaluation again with 5% of chat requests answered 429 (with Retry-After): every
   result must come back, none as an error.

Both sides run in this one process, one after the other, so the ratio is measured under the same
load. Targets: at least 8x faster than the loop; 200 results and zero errors with the 429s.

Run:  .venv/bin/python bench/evaluate.py [--n 200] [--concurrency 16] [--json PATH]
(figures go to bench/out/evaluate.json by default).
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from finetune_kit._retry import RetryPolicy
from finetune_kit.inference import AsyncInferenceClient, InferenceClient
from finetune_kit.local import LocalBackend

CHAT_ROUTE = "/v1/chat/completions"
SYSTEM = "Elle is a factual chatbot that answers questions about elements with a limerick."
ELEMENTS = ["Hydrogen", "Helium", "Lithium", "Beryllium", "Boron", "Carbon", "Nitrogen"]
ELEMENTS += ["Oxygen", "Fluorine", "Neon", "Sodium", "Magnesium", "Aluminium", "Silicon"]


def load() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {"loadavg_1m": one, "loadavg_5m": five, "loadavg_15m": fifteen}


def prompts(n: int) -> list[tuple[str, str]]:
    names = [ELEMENTS[i % len(ELEMENTS)] for i in range(n)]
    return [(f"Tell me about {name} (#{i})", name) for i, name in enumerate(names)]


def sequential_loop(
    client: Any, model: str, pairs: list[tuple[str, str]], max_tokens: int
) -> float:
    started = time.perf_counter()
    answers = []
    for prompt, _ in pairs:
        completion = client.chat.completions.create(
            model=model,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0,
        )
        answers.append(completion.choices[0].message.content)
    elapsed = time.perf_counter() - started
    assert len(answers) == len(pairs)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=200, help="prompts to evaluate")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.1, help="injected seconds per request")
    parser.add_argument(
        "--rate-429", type=float, default=0.05, help="share of requests answered 429"
    )
    parser.add_argument("--retry-after", type=float, default=0.2, help="Retry-After of those 429s")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--json", type=Path, default=Path("bench/out/evaluate.json"))
    args = parser.parse_args()

    pairs = prompts(args.n)
    figures: dict[str, Any] = {
        "n": args.n,
        "concurrency": args.concurrency,
        "injected_latency_s": args.latency,
        "max_tokens": args.max_tokens,
        "model": args.model,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_before": load(),
    }
    with (
        tempfile.TemporaryDirectory() as data_dir,
        LocalBackend(data_dir, default_model=args.model, faults=True) as backend,
    ):
        client = backend.client()
        inference = InferenceClient(client, concurrency=args.concurrency)
        # Warm up: load the model and its tokenizer before anything is timed.
        for _ in range(3):
            inference.chat(args.model, "Warm up", max_tokens=args.max_tokens)

        backend.faults.latency("POST", CHAT_ROUTE, args.latency)
        params = {"max_tokens": args.max_tokens, "temperature": 0}

        baseline = sequential_loop(client, args.model, pairs, args.max_tokens)
        report = inference.evaluate(args.model, pairs, "contains", system=SYSTEM, **params)
        assert len(report) == args.n, report
        assert not report.errors, report

        async def run_async() -> Any:
            async_inference = AsyncInferenceClient(
                backend.async_client(), concurrency=args.concurrency
            )
            return await async_inference.evaluate(
                args.model, pairs, "contains", system=SYSTEM, **params
            )

        async_report = asyncio.run(run_async())
        assert len(async_report) == args.n, async_report
        assert not async_report.errors, async_report

        # Rate limits on top of the latency: 5% of chat requests answered 429 with Retry-After.
        backend.faults.clear_log()
        backend.faults.set_probability(
            "POST", CHAT_ROUTE, "429", args.rate_429, retry_after=args.retry_after
        )
        limited = InferenceClient(client, concurrency=args.concurrency, policy=RetryPolicy())
        limited_report = limited.evaluate(args.model, pairs, "contains", system=SYSTEM, **params)
        log = backend.faults.requests("POST", CHAT_ROUTE)
        injected_429 = sum(1 for r in log if r.fault == "429")

    figures.update(
        {
            "sequential_loop_s": baseline,
            "evaluate_s": report.elapsed,
            "async_evaluate_s": async_report.elapsed,
            "speedup": baseline / report.elapsed,
            "async_speedup": baseline / async_report.elapsed,
            "with_429": {
                "results": len(limited_report),
                "errors": len(limited_report.errors),
                "injected_429": injected_429,
                "requests_seen": len(log),
                "elapsed_s": limited_report.elapsed,
            },
            "load_after": load(),
        }
    )
    figures["meets_speed_target"] = figures["speedup"] >= 8.0
    figures["meets_no_loss_target"] = len(limited_report) == args.n and not limited_report.errors

    print(f"{args.n} prompts, {args.latency * 1000:.0f} ms injected latency, tiny model")
    print(f"  sequential loop            {baseline:7.2f} s")
    print(
        f"  evaluate, concurrency {args.concurrency:<3}  {report.elapsed:7.2f} s   "
        f"{figures['speedup']:.1f}x faster (target >= 8x)"
    )
    print(
        f"  async evaluate             {async_report.elapsed:7.2f} s   "
        f"{figures['async_speedup']:.1f}x faster"
    )
    w = figures["with_429"]
    print(
        f"  with {args.rate_429:.0%} 429s: {w['results']} results, {w['errors']} errors, "
        f"{w['injected_429']} 429s retried, {w['elapsed_s']:.2f} s"
    )
    print(
        f"  load average before {figures['load_before']['loadavg_1m']:.2f}, "
        f"after {figures['load_after']['loadavg_1m']:.2f} on {os.cpu_count()} CPUs"
    )

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"  wrote {args.json}")
    return 0 if figures["meets_speed_target"] and figures["meets_no_loss_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
