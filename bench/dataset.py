"""Dataset speed and memory: typed records against the plain dicts a user would handle instead.

On a generated file of chat examples (single-turn, multi-turn with weights, tool calls), in one
process, one after the other:

1. read: ``[json.loads(line) for line in file]`` against ``Dataset.from_jsonl`` (which also
   validates every record strictly);
2. write: ``json.dumps`` per dict against ``Dataset.to_jsonl``;
3. dedupe: a set of ``json.dumps`` keys against ``Dataset.dedupe()`` and ``dedupe(normalize=True)``;
4. split: ``random.shuffle`` and a slice against ``Dataset.split`` (duplicate-safe, order-free);
5. memory: tracemalloc peak of holding the list of dicts against holding the ``Dataset``.

Figures are ratios (ours / baseline) measured in the same run; the load average is recorded.
Run:  .venv/bin/python bench/dataset.py [--n 50000] [--json PATH]
(figures go to bench/out/dataset.json by default).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finetune_kit.data.dataset import Dataset

SYSTEM = "Elle is a factual chatbot that answers questions about elements with a limerick."
ELEMENTS = ["Hydrogen", "Helium", "Lithium", "Beryllium", "Boron", "Carbon", "Nitrogen", "Oxygen"]


def example(i: int) -> dict[str, Any]:
    element = ELEMENTS[i % len(ELEMENTS)]
    shape = i % 3
    if shape == 0:
        return {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Tell me about {element} (#{i})"},
                {"role": "assistant", "content": f"{element}, a limerick number {i} - " * 4},
            ]
        }
    if shape == 1:
        return {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Tell me about {element}"},
                {"role": "assistant", "content": f"A first draft {i}", "weight": 0},
                {"role": "user", "content": "Make it rhyme better."},
                {"role": "assistant", "content": f"{element} rhymes at last {i}", "weight": 1},
            ]
        }
    args = json.dumps({"element": element, "index": i})
    return {
        "messages": [
            {"role": "user", "content": f"Atomic number of {element}?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": args},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"call_{i}", "content": str(i % 118 + 1)},
            {"role": "assistant", "content": f"It is {i % 118 + 1}."},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
        "parallel_tool_calls": False,
    }


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def peak_bytes(fn: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    kept = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    return peak


def read_dicts(path: Path) -> list[Any]:
    """The baseline reader: one json.loads per line, no validation."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def measure(path: Path, workdir: Path) -> dict[str, tuple[float, float]]:
    """Time each operation both ways on the file at ``path``; return the raw figures."""

    base_read, dicts = timed(lambda: read_dicts(path))
    ours_read, dataset = timed(lambda: Dataset.from_jsonl(path))

    def write_dicts() -> None:
        with open(workdir / "a.jsonl", "w", encoding="utf-8") as out:
            for obj in dicts:
                out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")

    def dedupe_dicts() -> list[Any]:
        seen: set[str] = set()
        kept = []
        for obj in dicts:
            key = json.dumps(obj, sort_keys=True)
            if key not in seen:
                seen.add(key)
                kept.append(obj)
        return kept

    def split_dicts() -> tuple[list[Any], list[Any]]:
        items = list(dicts)
        random.Random(0).shuffle(items)
        cut = len(items) // 5
        return items[cut:], items[:cut]

    figures: dict[str, tuple[float, float]] = {
        "read": (base_read, ours_read),
        "write": (timed(write_dicts)[0], timed(lambda: dataset.to_jsonl(workdir / "b.jsonl"))[0]),
        "dedupe": (timed(dedupe_dicts)[0], timed(dataset.dedupe)[0]),
        "dedupe_normalize": (
            timed(dedupe_dicts)[0],
            timed(lambda: dataset.dedupe(normalize=True))[0],
        ),
        "split": (timed(split_dicts)[0], timed(lambda: dataset.split(0.2, seed=0))[0]),
    }
    return figures


BASELINES = {
    "read": ("json.loads per line", "Dataset.from_jsonl"),
    "write": ("json.dumps per dict", "Dataset.to_jsonl"),
    "dedupe": ("set of json.dumps", "Dataset.dedupe()"),
    "dedupe_normalize": ("set of json.dumps", "Dataset.dedupe(normalize=True)"),
    "split": ("shuffle and slice", "Dataset.split(0.2)"),
    "peak_mb": ("list of dicts", "Dataset"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=50_000, help="examples in the generated file")
    parser.add_argument("--json", type=Path, default=Path("bench/out/dataset.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        with open(path, "w", encoding="utf-8") as out:
            for i in range(args.n):
                out.write(json.dumps(example(i)) + "\n")
        size = path.stat().st_size
        raw = measure(path, Path(tmp))
        # Measured after the timings' objects are gone, one holder at a time.
        raw["peak_mb"] = (
            peak_bytes(lambda: read_dicts(path)) / 1e6,
            peak_bytes(lambda: Dataset.from_jsonl(path)) / 1e6,
        )

    one, five, _ = os.getloadavg()
    print(f"{args.n} chat examples, {size / 1e6:.1f} MB, load average {one:.1f} / {five:.1f}")
    results: dict[str, Any] = {}
    for name, (base, ours) in raw.items():
        base_label, ours_label = BASELINES[name]
        unit = "MB" if name == "peak_mb" else "s"
        results[name] = {base_label: base, ours_label: ours, "ratio": ours / base}
        print(
            f"{name:17} {base_label:20} {base:7.2f} {unit} | {ours_label:31} {ours:7.2f} {unit}"
            f" | x{ours / base:.2f}"
        )
    figures = {
        "n_examples": args.n,
        "file_mb": round(size / 1e6, 1),
        "results": results,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "cpus": os.cpu_count(),
        "load": {"loadavg_1m": one, "loadavg_5m": five},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
