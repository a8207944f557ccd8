"""Preflight against the cookbook's approach, on a generated file of chat examples.

What is compared, in one run, each in a fresh process:

- ``cookbook``: what OpenAI's chat data-prep notebook does: load the whole file into a list
  with ``json.loads``, run its format checks, then count tokens with ``tiktoken`` one value at
  a time (``encoding.encode``), extended to today's messages by the same counting rule
  preflight uses (tool calls, tools, weights; see docs/tokens.md), so both must give the
  same totals, and the bench asserts they do.
- ``preflight``: ``finetune_kit.data.validation.preflight`` on the same file, exact token
  counts, every rule, with its worker processes (``workers=None``: one per CPU).

Time is the wall time of the work inside each process (imports excluded, loading the
encoding included). Memory is sampled every 50 ms over the whole process tree (the process
and its workers) and reported two ways: the peak of the summed PSS (proportional set size:
a page shared by three processes counts a third in each, so the sum is the real footprint)
and the sum of each process's own peak RSS (VmHWM; shared pages counted in every process, an
upper bound). The memory target is judged on PSS.

The data: a deterministic generator (``--seed``) writes single-turn examples, multi-turn
examples with weights, and tool-call examples; a shared system prompt (one of 12) opens
every example, as in most real fine-tuning sets, and all other text is drawn fresh from a
Zipf-weighted vocabulary (tokens of o200k_base), so repeated-string caching helps with the
system prompts and the tool definitions only.

Run:
    .venv/bin/python bench/preflight.py                 # 200k examples + 100k/400k memory
    .venv/bin/python bench/preflight.py --examples 20000 --no-scaling   # a quick look

Linux only (it reads /proc). Results go to bench/out/preflight.json; the exit status is 1
when a target is missed (at most 1/3 of the cookbook's time; peak PSS at most 150 MB, and
flat from 100k to 400k examples).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import itertools
import json
import os
import platform
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
ENCODINGS = ROOT / "finetune_kit" / "data" / "_encodings"
MODEL = "gpt-4o-mini-2024-07-18"
SAMPLE_SECONDS = 0.05

# ----------------------------------------------------------------------------- data generator


class TextGenerator:
    """Realistic-looking varied text: Zipf-distributed words, numbers, punctuation, accents."""

    EXTRA = ("café", "naïve", "Zürich", "東京", "データ", "привет", "αβγ", "→", "½", "señor")

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        raw = gzip.decompress((ENCODINGS / "o200k_base.tiktoken.gz").read_bytes())
        words: list[str] = []
        for line in raw.splitlines():
            token = base64.b64decode(line.split()[0])
            if re.fullmatch(rb" [a-z]{2,12}", token):
                words.append(token[1:].decode())
                if len(words) == 20_000:
                    break
        self.words = words
        self.cumulative = list(
            itertools.accumulate(1.0 / (rank + 20) for rank in range(len(words)))
        )

    def words_n(self, n: int) -> list[str]:
        rng = self.rng
        out = rng.choices(self.words, cum_weights=self.cumulative, k=n)
        for i in range(n):
            x = rng.random()
            if x < 0.12:
                if x < 0.03:
                    out[i] = str(rng.randint(0, 99_999))
                elif x < 0.04:
                    out[i] = rng.choice(self.EXTRA)
                elif x < 0.07:
                    out[i] += rng.choice(self.words)
                else:
                    out[i] = out[i].capitalize()
        return out

    def paragraph(self, low: int, high: int) -> str:
        rng = self.rng
        target = rng.randint(low, high)
        words = self.words_n(max(3, target // 6))
        sentences: list[str] = []
        start = 0
        while start < len(words):
            end = min(len(words), start + rng.randint(5, 20))
            sentence = " ".join(words[start:end])
            sentences.append(sentence[0].upper() + sentence[1:] + rng.choice(".....?!:"))
            start = end
        text = " ".join(sentences)
        if rng.random() < 0.15:
            text = text.replace(". ", ".\n\n", 1)
        return text


def generate(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    text = TextGenerator(rng)
    prompts = [
        "You are " + text.paragraph(250, 950) + "\nAnswer in the user's language."
        for _ in range(12)
    ]
    toolsets = []
    for _ in range(4):
        tools = []
        for _ in range(3):
            name = "_".join(w.lower() for w in text.words_n(2))
            props = {
                f"arg_{j}": {
                    "type": rng.choice(["string", "integer", "boolean"]),
                    "description": text.paragraph(20, 60),
                }
                for j in range(rng.randint(1, 4))
            }
            function = {
                "name": name,
                "description": text.paragraph(40, 140),
                "parameters": {"type": "object", "properties": props, "required": list(props)[:1]},
            }
            tools.append({"type": "function", "function": function})
        toolsets.append(tools)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for _ in range(n):
            messages: list[dict[str, Any]] = [{"role": "system", "content": rng.choice(prompts)}]
            example: dict[str, Any] = {"messages": messages}
            kind = rng.random()
            if kind < 0.5:
                messages.append({"role": "user", "content": text.paragraph(40, 300)})
                messages.append({"role": "assistant", "content": text.paragraph(120, 900)})
            elif kind < 0.8:
                for _turn in range(rng.randint(2, 3)):
                    messages.append({"role": "user", "content": text.paragraph(20, 160)})
                    messages.append(
                        {
                            "role": "assistant",
                            "content": text.paragraph(60, 360),
                            "weight": rng.choice([0, 1]),
                        }
                    )
                messages[-1]["weight"] = 1
            else:
                tools = rng.choice(toolsets)
                function = rng.choice(tools)["function"]
                call_id = f"call_{rng.getrandbits(64):016x}"
                arguments = {
                    key: text.words_n(1)[0]
                    if spec["type"] == "string"
                    else rng.randint(0, 1000)
                    if spec["type"] == "integer"
                    else rng.random() < 0.5
                    for key, spec in function["parameters"]["properties"].items()
                }
                messages.append({"role": "user", "content": text.paragraph(40, 200)})
                call = {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": function["name"], "arguments": json.dumps(arguments)},
                }
                messages.append({"role": "assistant", "tool_calls": [call]})
                result = json.dumps({"result": text.paragraph(30, 200)}, ensure_ascii=False)
                messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
                messages.append({"role": "assistant", "content": text.paragraph(60, 400)})
                example["tools"] = tools
            out.write(json.dumps(example, ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
    tmp.replace(path)


def dataset_path(n: int, seed: int) -> Path:
    path = OUT / f"chat-{n}-seed{seed}.jsonl"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        print(f"generating {path.name} ...", flush=True)
        generate(path, n, seed)
        size = path.stat().st_size / 1e6
        print(f"  {size:,.0f} MB in {time.perf_counter() - started:,.0f} s", flush=True)
    return path


# ----------------------------------------------------------------------------- the two approaches


def run_cookbook(path: str) -> dict[str, Any]:
    """The notebook's approach, its counting rule extended to tool calls, tools and weights."""
    os.environ["TIKTOKEN_CACHE_DIR"] = str(tiktoken_cache())
    import tiktoken

    started = time.perf_counter()
    encoding = tiktoken.get_encoding("o200k_base")
    with open(path, encoding="utf-8") as f:
        dataset = [json.loads(line) for line in f]

    # The notebook's format checks.
    format_errors: dict[str, int] = {}
    for ex in dataset:
        if not isinstance(ex, dict):
            format_errors["data_type"] = format_errors.get("data_type", 0) + 1
            continue
        messages = ex.get("messages", None)
        if not messages:
            format_errors["missing_messages_list"] = (
                format_errors.get("missing_messages_list", 0) + 1
            )
            continue
        for message in messages:
            if "role" not in message or ("content" not in message and "tool_calls" not in message):
                format_errors["message_missing_key"] = (
                    format_errors.get("message_missing_key", 0) + 1
                )
            if message.get("role", None) not in ("system", "user", "assistant", "tool"):
                format_errors["unrecognized_role"] = format_errors.get("unrecognized_role", 0) + 1
        if not any(message.get("role", None) == "assistant" for message in messages):
            key = "example_missing_assistant_message"
            format_errors[key] = format_errors.get(key, 0) + 1

    def num_tokens(example: dict[str, Any]) -> tuple[int, int]:
        total = assistant = 0
        for message in example["messages"]:
            total += 3
            total += len(encoding.encode(message["role"]))
            written = 0
            if isinstance(message.get("content"), str):
                written += len(encoding.encode(message["content"]))
            if "name" in message:
                total += len(encoding.encode(message["name"])) + 1
            for call in message.get("tool_calls", []):
                written += len(encoding.encode(call["function"]["name"]))
                written += len(encoding.encode(call["function"]["arguments"]))
            total += written
            if message["role"] == "assistant" and message.get("weight", 1) != 0:
                assistant += written
        if "tools" in example:
            tools = json.dumps(example["tools"], ensure_ascii=False, separators=(",", ":"))
            total += len(encoding.encode(tools))
        return total + 3, assistant

    n_missing_system = n_missing_user = 0
    convo_lens: list[int] = []
    assistant_lens: list[int] = []
    n_messages: list[int] = []
    for ex in dataset:
        messages = ex["messages"]
        n_missing_system += not any(m["role"] == "system" for m in messages)
        n_missing_user += not any(m["role"] == "user" for m in messages)
        n_messages.append(len(messages))
        total, assistant = num_tokens(ex)
        convo_lens.append(total)
        assistant_lens.append(assistant)
    billing = sum(min(65_536, length) for length in convo_lens)
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "examples": len(dataset),
        "total_tokens": sum(convo_lens),
        "assistant_tokens": sum(assistant_lens),
        "billing_tokens": billing,
        "format_errors": format_errors,
    }


def run_preflight(path: str, workers: int | None) -> dict[str, Any]:
    from finetune_kit.data.validation import preflight

    started = time.perf_counter()
    report = preflight(path, model=MODEL, workers=workers)
    elapsed = time.perf_counter() - started
    assert report.total_tokens is not None
    assert report.assistant_tokens is not None
    return {
        "seconds": elapsed,
        "examples": report.n_examples,
        "total_tokens": report.total_tokens.total,
        "assistant_tokens": report.assistant_tokens.total,
        "billing_tokens": report.billing_tokens,
        "errors": len(report.errors),
        "issue_counts": report.issue_counts,
    }


def tiktoken_cache() -> Path:
    """A tiktoken cache holding o200k_base, as a user without network would prepare one."""
    cache = OUT / "tiktoken-cache"
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    target = cache / hashlib.sha1(url.encode()).hexdigest()
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.decompress((ENCODINGS / "o200k_base.tiktoken.gz").read_bytes()))
    return cache


# ----------------------------------------------------------------------------- measuring


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return found


def _tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue.extend(_children(current))
    return pids


def _read_kb(path: str, key: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class TreeMemory(threading.Thread):
    """Samples the PSS of a process tree, and each process's peak RSS, until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.stop = threading.Event()
        self.peak_pss_kb = 0
        self.peak_rss_kb: dict[int, int] = {}
        self.peak_pss_by_pid_kb: dict[int, int] = {}
        self.samples = 0

    def run(self) -> None:
        while not self.stop.is_set():
            total = 0
            for pid in _tree(self.pid):
                pss = _read_kb(f"/proc/{pid}/smaps_rollup", "Pss:")
                hwm = _read_kb(f"/proc/{pid}/status", "VmHWM:")
                if pss is not None:
                    total += pss
                    self.peak_pss_by_pid_kb[pid] = max(self.peak_pss_by_pid_kb.get(pid, 0), pss)
                if hwm is not None:
                    self.peak_rss_kb[pid] = max(self.peak_rss_kb.get(pid, 0), hwm)
            self.peak_pss_kb = max(self.peak_pss_kb, total)
            self.samples += 1
            self.stop.wait(SAMPLE_SECONDS)


def measure(args: list[str]) -> dict[str, Any]:
    """Run this script as a child doing one approach; return its result and its memory."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, env=env, cwd=ROOT
    )
    monitor = TreeMemory(child.pid)
    monitor.start()
    out, _ = child.communicate()
    monitor.stop.set()
    monitor.join()
    if child.returncode != 0:
        raise SystemExit(f"the {args[0]} run failed ({child.returncode})")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    result["peak_pss_mb"] = monitor.peak_pss_kb / 1024
    result["sum_peak_rss_mb"] = sum(monitor.peak_rss_kb.values()) / 1024
    result["processes"] = len(monitor.peak_rss_kb)
    # The parent first, then its workers: each process's own peak PSS.
    result["peak_pss_by_process_mb"] = [
        round(kb / 1024, 1) for _, kb in sorted(monitor.peak_pss_by_pid_kb.items())
    ]
    return result


def child_main(args: list[str]) -> None:
    method, path = args[0], args[1]
    if method == "cookbook":
        result = run_cookbook(path)
    else:
        workers = None if args[2] == "auto" else int(args[2])
        result = run_preflight(path, workers)
    # Give the sampler time to see the final state of the children's peaks.
    time.sleep(2 * SAMPLE_SECONDS)
    print(json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- main


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs of each approach")
    parser.add_argument("--workers", default="auto", help="preflight workers: auto or a number")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 100k/400k memory runs")
    parser.add_argument("--json", type=Path, default=OUT / "preflight.json")
    args = parser.parse_args()

    path = dataset_path(args.examples, args.seed)
    size_mb = path.stat().st_size / 1e6
    print(f"file: {path.name}, {size_mb:,.0f} MB, {args.examples:,} examples", flush=True)
    load_before = loadavg()
    runs: dict[str, list[dict[str, Any]]] = {"cookbook": [], "preflight": []}
    for i in range(args.repeat):
        order = ["cookbook", "preflight"] if i % 2 == 0 else ["preflight", "cookbook"]
        for method in order:
            extra = [] if method == "cookbook" else [args.workers]
            result = measure([method, str(path), *extra])
            result["load"] = loadavg()
            runs[method].append(result)
            print(
                f"  {method:9s} {result['seconds']:7.1f} s"
                f"  peak PSS {result['peak_pss_mb']:7.0f} MB"
                f"  sum of peak RSS {result['sum_peak_rss_mb']:7.0f} MB"
                f"  ({result['processes']} processes)",
                flush=True,
            )
    load_after = loadavg()
    cookbook = min(runs["cookbook"], key=lambda r: r["seconds"])
    ours = min(runs["preflight"], key=lambda r: r["seconds"])
    for key in ("total_tokens", "assistant_tokens", "billing_tokens", "examples"):
        assert cookbook[key] == ours[key], (key, cookbook[key], ours[key])
    assert ours["errors"] == 0, ours["issue_counts"]

    scaling: list[dict[str, Any]] = []
    if not args.no_scaling:
        for n in (args.examples // 2, args.examples * 2):
            scaled = dataset_path(n, args.seed)
            result = measure(["preflight", str(scaled), args.workers])
            result["examples"] = n
            result["megabytes"] = scaled.stat().st_size / 1e6
            scaling.append(result)
        scaling.insert(1, {**ours, "megabytes": size_mb})
        scaling.sort(key=lambda r: r["examples"])

    time_ratio = ours["seconds"] / cookbook["seconds"]
    # Each round ran both approaches back to back: its ratio saw the same load on both sides.
    round_ratios = [
        round(p["seconds"] / c["seconds"], 3)
        for p, c in zip(runs["preflight"], runs["cookbook"], strict=True)
    ]
    print()
    print(f"{'':28s}{'cookbook':>12s}{'preflight':>12s}{'ratio':>9s}")
    print(
        f"{'wall time (s)':28s}{cookbook['seconds']:12.1f}{ours['seconds']:12.1f}{time_ratio:9.2f}"
    )
    for key, label in (
        ("peak_pss_mb", "peak PSS, tree (MB)"),
        ("sum_peak_rss_mb", "sum of peak RSS (MB)"),
    ):
        ratio = ours[key] / cookbook[key]
        print(f"{label:28s}{cookbook[key]:12.0f}{ours[key]:12.0f}{ratio:9.2f}")
    print(f"{'tokens (equal)':28s}{cookbook['total_tokens']:12,d}{ours['total_tokens']:12,d}")
    print(f"time ratio of each round (same load on both sides): {round_ratios}")
    if scaling:
        print("\npreflight memory against file size:")
        for r in scaling:
            print(
                f"  {r['examples']:>8,d} examples {r['megabytes']:7,.0f} MB: "
                f"{r['seconds']:6.1f} s, peak PSS {r['peak_pss_mb']:5.0f} MB, "
                f"sum of peak RSS {r['sum_peak_rss_mb']:5.0f} MB"
            )
    print(f"\nload average before {load_before}, after {load_after}; {os.cpu_count()} CPUs")
    flat = (scaling[-1]["peak_pss_mb"] / scaling[0]["peak_pss_mb"]) if scaling else None
    targets = {
        "time at most 1/3 of the cookbook's": time_ratio <= 1 / 3,
        "peak PSS at most 150 MB": ours["peak_pss_mb"] <= 150,
        "memory flat (400k within 10% of 100k)": flat is None or flat <= 1.10,
    }
    for target, met in targets.items():
        print(f"target: {target}: {'met' if met else 'MISSED'}")

    import tiktoken

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "examples": args.examples,
                "seed": args.seed,
                "file_mb": size_mb,
                "cookbook": runs["cookbook"],
                "preflight": runs["preflight"],
                "time_ratio": time_ratio,
                "round_time_ratios": round_ratios,
                "peak_pss_ratio": ours["peak_pss_mb"] / cookbook["peak_pss_mb"],
                "targets": targets,
                "scaling": scaling,
                "load_before": load_before,
                "load_after": load_after,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "tiktoken": tiktoken.__version__,
                "memory_method": "peak of summed PSS sampled every 50 ms over the process tree; "
                "sum of per-process VmHWM",
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.json}")
    if not all(targets.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, str(ROOT))
        child_main(sys.argv[2:])
    else:
        main()
