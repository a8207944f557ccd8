"""Local engine speed: training against trl's SFTTrainer, batched chat against one stream.

Three measurements on SmolLM2-135M-Instruct (the local backend's default base model), CPU:

a. Training throughput. The engine's ``train()`` and trl's ``SFTTrainer`` (what a user would
   reach for) fine-tune the same LoRA adapter (r=16, alpha=32, every projection, dropout 0) on
   the same chat examples (the project's element limericks, loss on the answers only), with the
   same batch size, epochs and learning rate, from the same float32 weights; each side with its
   own choice of precision and threads (trl: torch's, every core; the engine: its defaults).
   Each side's tokens per second is the number of tokens in its training sequences (padding
   excluded, times epochs; the two counts are printed and must match) over the time of its
   training loop (model loading excluded for both). trl runs with its defaults (which turn
   gradient checkpointing on) and once more without gradient checkpointing. trl is not a
   dependency of finetune_kit: it is installed into ``bench/.venv-trl``, a virtual environment
   layered on ``.venv`` (created on first use; ``--trl-python`` points elsewhere).
b. Generation throughput: 8 concurrent chat requests through one ``Generator`` against one
   request at a time, in tokens per second.
c. The full fine-tune of the quickstart: 10 limerick examples, auto hyperparameters, in a fresh
   process: wall time from start to finished adapter, model loading included; then the tuned
   model's answer about an element not in the data.

Every side runs in this one invocation, one after the other, so ratios are measured under the
same machine load (printed with the figures); the training sides alternate over ``--rounds``
rounds and each side's best round counts, which filters out bursts of other work on a shared
machine. Targets: (a) at least 2x trl's default tokens per second, (b) at least 3x, (c) under
180 s.

Run:  .venv/bin/python bench/train.py [--only a|b|c] [--batch-size 4] [--epochs 2] [--rounds 2]
      [--json bench/out/train.json]
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
LIMERICKS = ROOT / "finetune_kit" / "_quickstart" / "element_limericks.csv"
TRL_VENV = ROOT / "bench" / ".venv-trl"
SYSTEM = "You answer questions about chemical elements with a limerick."
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LEARNING_RATE = 1e-3


def machine_load() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {"loadavg_1m": one, "loadavg_5m": five, "loadavg_15m": fifteen, "cpus": os.cpu_count()}


def limerick_rows(n: int | None = None) -> list[dict[str, Any]]:
    with open(LIMERICKS, encoding="utf-8") as stream:
        records = list(csv.DictReader(stream))
    rows = [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Tell me about {record['element']}"},
                {"role": "assistant", "content": record["limerick"]},
            ]
        }
        for record in records
    ]
    return rows[:n] if n else rows


def write_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# -- (a) training throughput -----------------------------------------------------------------


def engine_training(train_file: Path, batch_size: int, epochs: int, out: Path) -> dict[str, Any]:
    from finetune_kit.local.engine.registry import ModelRegistry
    from finetune_kit.local.engine.training import train
    from finetune_kit.local.engine.types import (
        BASE_LEARNING_RATE,
        Hyperparameters,
        NoCallbacks,
        StepMetrics,
        TrainingRequest,
    )

    class Clock(NoCallbacks):
        def __init__(self) -> None:
            self.started = self.ended = 0.0
            self.losses: list[float] = []

        def on_start(self, hyperparameters: Hyperparameters, total_steps: int) -> None:
            self.started = time.perf_counter()

        def on_step(self, metrics: StepMetrics) -> None:
            self.ended = time.perf_counter()
            self.losses.append(metrics.train_loss)

    clock = Clock()
    result = train(
        TrainingRequest(
            base_model="smollm2-135m-instruct",
            training_file=train_file,
            output_dir=out,
            n_epochs=epochs,
            batch_size=batch_size,
            learning_rate_multiplier=LEARNING_RATE / BASE_LEARNING_RATE,
        ),
        clock,
        registry=ModelRegistry(),
    )
    seconds = clock.ended - clock.started
    return {
        "tokens": result.trained_tokens,
        "seconds": seconds,
        "tokens_per_second": result.trained_tokens / seconds,
        "first_loss": clock.losses[0],
        "last_loss": clock.losses[-1],
    }


def trl_python(explicit: str | None) -> str:
    if explicit:
        return explicit
    python = TRL_VENV / "bin" / "python"
    if not python.exists():
        print("creating bench/.venv-trl (once): a venv on top of .venv, plus trl", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(TRL_VENV)], check=True)
        # `--system-site-packages` would expose the interpreter's packages, not .venv's: a .pth
        # file puts .venv's site-packages on the path instead, so trl uses the same torch,
        # transformers and peft as the engine.
        import sysconfig

        site = Path(sysconfig.get_paths()["purelib"])
        child_site = Path(
            subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        (child_site / "_finetune_kit_parent.pth").write_text(f"{site}\n", encoding="utf-8")
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "trl"], check=True)
    return str(python)


def trl_training(
    python: str,
    model_dir: Path,
    train_file: Path,
    batch_size: int,
    epochs: int,
    *,
    checkpointing: bool,
    bfloat16: bool,
) -> dict[str, Any]:
    settings = {
        "model_dir": str(model_dir),
        "train_file": str(train_file),
        "batch_size": batch_size,
        "epochs": epochs,
        "checkpointing": checkpointing,
        "bfloat16": bfloat16,
    }
    completed = subprocess.run(
        [python, __file__, "--trl-worker", json.dumps(settings)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def trl_worker(settings: dict[str, Any]) -> None:
    """Runs inside bench/.venv-trl: one SFTTrainer run, figures printed as JSON."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    rows = [json.loads(line) for line in Path(settings["train_file"]).read_text().splitlines()]
    # Prompt-completion form: trl then trains on the answers only, as the engine does.
    data = Dataset.from_list(
        [{"prompt": row["messages"][:-1], "completion": row["messages"][-1:]} for row in rows]
    )
    model = AutoModelForCausalLM.from_pretrained(settings["model_dir"], dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(settings["model_dir"])

    class Clock(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.started = self.ended = 0.0
            self.losses: list[float] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.ended = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    config = SFTConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=settings["batch_size"],
        num_train_epochs=settings["epochs"],
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="linear",
        gradient_checkpointing=settings["checkpointing"],
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=settings["bfloat16"],
        disable_tqdm=True,
        seed=0,
    )
    clock = Clock()
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=LoraConfig(target_modules=TARGETS, task_type="CAUSAL_LM", **LORA),
        callbacks=[clock],
    )
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * settings["epochs"]
    trainer.train()
    seconds = clock.ended - clock.started
    print(
        json.dumps(
            {
                "tokens": tokens,
                "seconds": seconds,
                "tokens_per_second": tokens / seconds,
                "first_loss": clock.losses[0] if clock.losses else None,
                "last_loss": clock.losses[-1] if clock.losses else None,
                "gradient_checkpointing": settings["checkpointing"],
                "bfloat16_autocast": settings["bfloat16"],
                "threads": torch.get_num_threads(),
            }
        )
    )


SIDES = {
    "engine": "engine",
    "trl_defaults": "trl (defaults)",
    "trl_no_gradient_checkpointing": "trl (no ckpt)",
    "trl_no_gradient_checkpointing_bf16": "trl (no ckpt, bf16)",
}


def bench_training(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from finetune_kit.local.engine.registry import ModelRegistry

    registry = ModelRegistry()
    model_dir = registry.dequantized_folder(
        ModelRegistry.default_gguf_path(), "smollm2-135m-instruct"
    )
    train_file = write_rows(limerick_rows(), work / "limericks.jsonl")
    python = trl_python(args.trl_python)
    print(
        f"(a) training: {len(limerick_rows())} examples, batch {args.batch_size}, "
        f"{args.epochs} epoch(s), {args.rounds} round(s), sides alternating",
        flush=True,
    )
    load_before = machine_load()
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for round_number in range(1, args.rounds + 1):
        for side, label in SIDES.items():
            if side == "engine":
                figures = engine_training(
                    train_file, args.batch_size, args.epochs, work / f"engine-{round_number}"
                )
            else:
                figures = trl_training(
                    python,
                    model_dir,
                    train_file,
                    args.batch_size,
                    args.epochs,
                    checkpointing=side == "trl_defaults",
                    bfloat16=side.endswith("bf16"),
                )
            figures["load"] = machine_load()["loadavg_1m"]
            runs[side].append(figures)
            print(
                f"    round {round_number} {label:22s} {figures['tokens_per_second']:7.1f} "
                f"tokens/s ({figures['tokens']} tokens, {figures['seconds']:.1f} s, load "
                f"{figures['load']:.1f})",
                flush=True,
            )
    # The best round of each side: the one least disturbed by other work on the machine.
    best = {side: max(r["tokens_per_second"] for r in results) for side, results in runs.items()}
    ratios = {side: best["engine"] / best[side] for side in SIDES if side != "engine"}
    print(
        "    best rounds: "
        + ", ".join(f"{SIDES[side]} {value:.1f}" for side, value in best.items())
        + "\n    ratio: "
        + ", ".join(f"{value:.2f}x {SIDES[side]}" for side, value in ratios.items()),
        flush=True,
    )
    tokens = {r["tokens"] for results in runs.values() for r in results}
    return {
        "examples": len(limerick_rows()),
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "runs": runs,
        "best_tokens_per_second": best,
        "ratios": ratios,
        "same_token_count": len(tokens) == 1,
        "load_before": load_before,
        "load_after": machine_load(),
        "target_met": ratios["trl_defaults"] >= 2.0 and len(tokens) == 1,
    }


# -- (b) generation throughput ---------------------------------------------------------------


def bench_generation(args: argparse.Namespace) -> dict[str, Any]:
    from finetune_kit.local.engine.generation import Generator, ModelRef
    from finetune_kit.local.engine.registry import ModelRegistry

    generator = Generator(ModelRegistry(), max_batch_size=8)
    ref = ModelRef("smollm2-135m-instruct")
    elements = ["Strontium", "Potassium", "Copper", "Titanium", "Cobalt", "Selenium"]
    elements += ["Rubidium", "Cadmium"]
    requests = [
        [{"role": "user", "content": f"Explain in detail what {e} is and how it is used."}]
        for e in elements
    ]
    options = {"max_tokens": args.max_tokens, "temperature": 0.7, "seed": 1}
    generator.chat(ref, requests[0], max_tokens=4)  # loads the model
    load_before = machine_load()
    print(
        f"(b) generation: {len(requests)} requests, up to {args.max_tokens} tokens each", flush=True
    )
    single_tokens = 0
    started = time.perf_counter()
    for messages in requests[:2]:
        single_tokens += generator.chat(ref, messages, **options).completion_tokens  # type: ignore[arg-type]
    single_seconds = time.perf_counter() - started
    single = single_tokens / single_seconds
    print(f"    one stream     {single:6.1f} tokens/s ({single_tokens} tokens)", flush=True)

    counts: list[int] = []

    def one(messages: list[dict[str, str]]) -> None:
        counts.append(generator.chat(ref, messages, **options).completion_tokens)  # type: ignore[arg-type]

    threads = [threading.Thread(target=one, args=(m,)) for m in requests]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    concurrent_seconds = time.perf_counter() - started
    concurrent = sum(counts) / concurrent_seconds
    generator.close()
    ratio = concurrent / single
    print(
        f"    8 concurrent   {concurrent:6.1f} tokens/s ({sum(counts)} tokens, largest batch "
        f"{generator.largest_batch}); ratio {ratio:.2f}x",
        flush=True,
    )
    return {
        "single_stream_tokens_per_second": single,
        "concurrent_8_tokens_per_second": concurrent,
        "ratio": ratio,
        "largest_batch": generator.largest_batch,
        "load_before": load_before,
        "load_after": machine_load(),
        "target_met": ratio >= 3.0,
    }


# -- (c) the full fine-tune --------------------------------------------------------------------

_FULL_RUN = """
import json, sys, time
started = time.perf_counter()
from pathlib import Path
from finetune_kit.local.engine.generation import Generator, ModelRef
from finetune_kit.local.engine.registry import ModelRegistry
from finetune_kit.local.engine.training import train
from finetune_kit.local.engine.types import TrainingRequest
registry = ModelRegistry()
result = train(TrainingRequest(base_model="gpt-4o-mini", training_file=Path(sys.argv[1]),
                               output_dir=Path(sys.argv[2])), registry=registry)
trained = time.perf_counter() - started
answer = Generator(registry).chat(
    ModelRef("gpt-4o-mini", result.adapter_path),
    [{"role": "system", "content": sys.argv[3]},
     {"role": "user", "content": "Tell me about Strontium"}], max_tokens=80, temperature=0)
print(json.dumps({"seconds": trained, "hyperparameters": result.hyperparameters.to_dict(),
                  "steps": result.total_steps, "trained_tokens": result.trained_tokens,
                  "answer": answer.choices[0].text}))
"""


def bench_full_finetune(work: Path) -> dict[str, Any]:
    train_file = write_rows(limerick_rows(10), work / "ten.jsonl")
    print("(c) full fine-tune: 10 examples, auto hyperparameters, fresh process", flush=True)
    load_before = machine_load()
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", _FULL_RUN, str(train_file), str(work / "full"), SYSTEM],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    figures = dict(json.loads(completed.stdout.strip().splitlines()[-1]))
    print(
        f"    {figures['seconds']:.1f} s to the adapter (process wall {wall:.1f} s with the "
        f"answer), {figures['hyperparameters']}",
        flush=True,
    )
    print(f"    answer: {figures['answer']!r}", flush=True)
    return {
        **figures,
        "process_wall_seconds": wall,
        "load_before": load_before,
        "load_after": machine_load(),
        "target_met": figures["seconds"] < 180,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["a", "b", "c"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--trl-python", help="a Python with trl installed")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "train.json")
    parser.add_argument("--trl-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trl_worker:
        trl_worker(json.loads(args.trl_worker))
        return 0
    figures: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        if args.only in (None, "a"):
            figures["training"] = bench_training(args, work)
        if args.only in (None, "b"):
            figures["generation"] = bench_generation(args)
        if args.only in (None, "c"):
            figures["full_finetune"] = bench_full_finetune(work)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print(f"figures written to {args.json}")
    missed = [name for name, part in figures.items() if part.get("target_met") is False]
    if missed:
        print(f"target missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
