"""How llama.cpp's OpenMP threads wait: why the engine's processes run with GOMP_SPINCOUNT=300.

llama.cpp's CPU threads meet at an OpenMP barrier after each operation of the graph, hundreds
per token. How a thread waits there is libgomp's setting, read when a process starts:

- libgomp's default: spin for a long while (about 300,000 rounds) before sleeping;
- ``OMP_WAIT_POLICY=PASSIVE``: sleep at once (what the backend sets for torch, whose few large
  operations hardly notice; the engine's processes inherited it before);
- ``GOMP_SPINCOUNT=300``, ``3000``, ``30000``: spin briefly, then sleep (the engine's setting
  is one of them, ``ENGINE_SPINCOUNT``).

For each, in one run: llama.cpp's server from the ``xllamacpp`` wheel (as the engine runs it:
8 slots, a KV cache per slot, every core) on the default SmolLM2-135M-Instruct Q4_1 GGUF, greedy,
64 new tokens per request, three prompts one after the other:

- base: the model alone, single stream;
- adapter: the same with a LoRA adapter applied per request (rank 16 on the 7 projections of
  every block, the backend's default shape; random weights, which cost what trained ones do);
- two models at once: two such processes, each given its own stream at the same time (two base
  models, or a process being replaced while it finishes its requests), aggregate tokens/s;
- beside training: the base, one stream after another, while a training job's kind of work
  (torch matrix products on every core, its threads sleeping as the backend sets them) runs in
  a process of its own for 8 s; and that work's steps/s (a user chatting while a job trains).

Each setting is measured in turn, round after round; the best round of each is the figure and
the median is printed beside it. ``uptime`` is printed before and after. Each setting's worst
case is its lowest ratio to the best setting over the five figures; target: the engine's
setting has the best worst case (no setting serves all three better). Exits with status 1 when
it has not.

    .venv/bin/python bench/llama_threads.py [--rounds 3]

(figures go to bench/out/llama_threads.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve import MAX_TOKENS, PROMPTS, Direct, default_gguf, threads, uptime

from finetune_kit.local.engine.gguf import BaseLayout, write_adapter_gguf
from finetune_kit.local.engine.llama_cpp import ENGINE_SPINCOUNT
from finetune_kit.local.engine.registry import DEFAULT_BASE_MODEL, ModelRegistry
from finetune_kit.local.engine.types import LoraSettings

ENGINE = f"GOMP_SPINCOUNT={ENGINE_SPINCOUNT} (the engine's)"
SETTINGS: dict[str, dict[str, str]] = {
    "libgomp default": {},  # 300,000 spins
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    # Short spins between none and libgomp's 300,000, the engine's among them.
    **{
        ENGINE if spins == ENGINE_SPINCOUNT else f"GOMP_SPINCOUNT={spins}": {
            "GOMP_SPINCOUNT": str(spins)
        }
        for spins in sorted({300, 3_000, 30_000, ENGINE_SPINCOUNT})
    },
}


# A training job's kind of work, in a process of its own as the backend's worker runs it:
# torch matrix products of a 135M model's shapes on every core, its threads sleeping at their
# barriers (OMP_WAIT_POLICY=PASSIVE, the backend's setting for torch). It prints "ready" once
# torch is loaded, then its steps per second after the given seconds.
_TRAINING = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
x, w = torch.randn(256, 576), torch.randn(576, 1536)
print("ready", flush=True)
steps, end = 0, time.perf_counter() + float(sys.argv[1])
while time.perf_counter() < end:
    (x @ w).relu_().sum()
    steps += 1
print(steps / float(sys.argv[1]))
"""
TRAINING_SECONDS = 8.0


def random_adapter(gguf: Path, folder: Path) -> Path:
    """A GGUF LoRA adapter of the backend's default shape, with random weights."""
    import torch
    from peft import LoraConfig, get_peft_model

    registry = ModelRegistry()
    model, _ = registry.load(DEFAULT_BASE_MODEL, shared=False)  # read from `gguf`
    settings = LoraSettings()
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        target_modules=list(settings.target_modules),
        init_lora_weights=False,  # B not zero: the adapter changes the answers
    )
    torch.manual_seed(0)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(str(folder))
    return write_adapter_gguf(folder, BaseLayout.from_gguf(gguf))


def stream(server: Direct, scale: float) -> int:
    """The prompts one after the other, the adapter at ``scale``; the tokens generated."""
    tokens = 0
    for prompt in PROMPTS:
        reply = httpx.post(
            server.url + "/completion",
            json={
                "prompt": f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n",
                "n_predict": MAX_TOKENS,
                "temperature": 0,
                "ignore_eos": True,
                "cache_prompt": False,
                "lora": [{"id": 0, "scale": scale}],
            },
            timeout=600,
            trust_env=False,
        )
        reply.raise_for_status()
        tokens += int(reply.json()["tokens_predicted"])
    return tokens


def rate(run: Any) -> float:
    started = time.perf_counter()
    tokens = run()
    return float(tokens) / (time.perf_counter() - started)


def both(first: Direct, second: Direct) -> int:
    counts = [0, 0]

    def run(index: int, server: Direct) -> None:
        counts[index] = stream(server, 0.0)

    workers = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate((first, second))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts)


def beside_training(server: Direct, env: dict[str, str]) -> tuple[float, float]:
    """Tokens/s of the server, one stream after another, while a training loop runs beside it;
    and the loop's steps/s."""
    loop = subprocess.Popen(
        [sys.executable, "-c", _TRAINING, str(TRAINING_SECONDS), str(threads())],
        stdout=subprocess.PIPE,
        text=True,
        env=env | {"OMP_WAIT_POLICY": "PASSIVE"},
    )
    assert loop.stdout is not None
    if loop.stdout.readline().strip() != "ready":
        raise SystemExit("the training loop did not start")
    tokens = 0
    started = time.perf_counter()
    while loop.poll() is None:
        tokens += stream(server, 0.0)
    elapsed = time.perf_counter() - started
    return tokens / elapsed, float(loop.stdout.read())


def measure(gguf: Path, adapter: Path, env: dict[str, str], logs: Path) -> dict[str, float]:
    first = Direct(gguf, threads(), logs / "first.log", adapters=[adapter], env=env)
    second = Direct(gguf, threads(), logs / "second.log", adapters=[adapter], env=env)
    try:
        figures = {
            "base": rate(lambda: stream(first, 0.0)),
            "adapter": rate(lambda: stream(first, 1.0)),
            "two models at once": rate(lambda: both(first, second)),
        }
        serving, steps = beside_training(first, env)
        return figures | {"beside training": serving, "training steps/s beside it": steps}
    finally:
        first.close()
        second.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    gguf = default_gguf()
    before = uptime()
    print(before, flush=True)
    base_env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    }
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as scratch:
        adapter = random_adapter(gguf, Path(scratch) / "adapter")
        for round_index in range(args.rounds):
            for name, extra in SETTINGS.items():
                measured = measure(gguf, adapter, base_env | extra, Path(scratch))
                rounds[name].append(measured)
                shown = ", ".join(f"{k} {v:.1f}" for k, v in measured.items())
                print(f"round {round_index + 1}, {name}: {shown} tokens/s", flush=True)
    after = uptime()
    print(after, flush=True)
    figures: dict[str, dict[str, dict[str, Any]]] = {
        name: {
            key: {
                "best": max(r[key] for r in runs),
                "median": statistics.median(r[key] for r in runs),
                "rounds": [r[key] for r in runs],
            }
            for key in runs[0]
        }
        for name, runs in rounds.items()
    }
    print("\nbest round (median of rounds), tokens/s:")
    for name, keys in figures.items():
        shown = ", ".join(f"{key} {v['best']:.1f} ({v['median']:.1f})" for key, v in keys.items())
        print(f"  {name}: {shown}")
    worst = {
        name: min(keys[key]["best"] / max(f[key]["best"] for f in figures.values()) for key in keys)
        for name, keys in figures.items()
    }
    for name, ratio in worst.items():
        print(f"  worst case of {name}: {ratio:.2f}x the best setting")
    met = worst[ENGINE] == max(worst.values())
    print(f"the engine's setting has the best worst case: {met}")
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "llama_threads.json").write_text(
        json.dumps(
            {
                "gguf": str(gguf),
                "threads": threads(),
                "uptime_before": before,
                "uptime_after": after,
                "max_tokens": MAX_TOKENS,
                "figures": figures,
                "worst_case": worst,
                "met": met,
            },
            indent=2,
        )
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
