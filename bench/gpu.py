"""The local engine on one GPU: LoRA training against trl's SFTTrainer, chat against vLLM.

Models of real size with random weights (speed does not depend on the weights, and the GPU
machine reaches no hub): Qwen2.5-0.5B's and Llama-3.2-1B's configs, built offline from the
``transformers`` config classes, saved as model folders with a byte-level tokenizer carrying
ChatML and its special tokens. The data: chat examples (system prompt, question, a long answer)
of 200 to ``--seq`` tokens, the same file for both trainers.

a. Training throughput, per model: the engine's ``train()`` (what a job runs: packed passes,
   bfloat16, the memory plan) and trl's ``SFTTrainer`` (prompt-completion data so both train on
   the answers only, ``packing=True`` with trl's padding-free packing, bfloat16, the same LoRA
   adapter: r=16, alpha=32, every projection, dropout 0, the same learning rate), one after the
   other in this run. Tokens per second: each side's tokens (its training sequences, padding
   excluded) over its training loop's time (model loading excluded). Target: the engine at
   least 1.5x trl.
b. Chat throughput, first model, with the adapter (a) trained: ``--concurrency`` requests at a
   time (1, 8, 32), each generating up to ``--max-tokens`` tokens, through the built-in
   ``Generator`` on the GPU and through vLLM (``VllmEngine`` on ``vllm serve --enable-lora``,
   the path ``local serve --vllm start`` takes) when vLLM is installed. Generated tokens per
   second. Target: vLLM at least 10x the built-in path at 32.

The card's name and the library versions are printed first. ``--smoke`` runs the same code on
the CPU with tiny configs in seconds (a test runs it); its figures mean nothing.

Run (GPU):  bash bench/gpu-run.sh          (wheels carried in .whl/, see bench/gpu-wheels.sh)
       or:  python3 bench/gpu.py [--models qwen2.5-0.5b,llama-3.2-1b] [--steps 24]
            [--batch-size 16] [--seq 1024] [--concurrency 1,8,32] [--max-tokens 128]
            [--json bench/out/gpu.json] [--no-vllm]
     (CPU): .venv/bin/python bench/gpu.py --smoke
Exit status 1 when a target is missed (never in --smoke).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
SYSTEM = "You are a careful assistant. Answer the question in full."
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LEARNING_RATE = 2e-4
TRAIN_TARGET = 1.5
VLLM_TARGET = 10.0
WORDS = [
    *[
        "the",
        "model",
        "learns",
        "from",
        "each",
        "answer",
        "a",
        "little",
        "more",
        "about",
        "the",
        "shape",
        "of",
        "the",
        "words",
    ],
    *[
        "that",
        "follow",
        "and",
        "the",
        "engine",
        "packs",
        "many",
        "of",
        "them",
        "into",
        "one",
        "pass",
        "over",
        "every",
        "layer",
    ],
]


def config_for(name: str, vocab: int, smoke: bool) -> Any:
    """The config of a model of real size (or a tiny one of the same family for --smoke)."""
    from transformers import LlamaConfig, Qwen2Config

    small = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }
    ids = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    if name == "qwen2.5-0.5b":
        real = {
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
        }
        return Qwen2Config(
            **(small if smoke else real),
            **ids,
            vocab_size=vocab if smoke else 151936,
            max_position_embeddings=32768,
            rope_theta=1e6,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
        )
    if name == "llama-3.2-1b":
        real = {
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_hidden_layers": 16,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 64,
        }
        return LlamaConfig(
            **(small if smoke else real),
            **ids,
            vocab_size=vocab if smoke else 128256,
            max_position_embeddings=131072,
            rope_theta=500000.0,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 32.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
        )
    raise SystemExit(f"unknown model {name!r}; use qwen2.5-0.5b or llama-3.2-1b")


def build_tokenizer() -> Any:
    """A byte-level tokenizer with ChatML's special tokens and template, built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from finetune_kit.local.engine.chat_format import CHATML_TEMPLATE

    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = iter(range(256, 512))
    alphabet = [chr(b) if b in printable else chr(next(extra)) for b in range(256)]
    vocab = {token: i for i, token in enumerate(SPECIALS)}
    for char in alphabet:
        vocab[char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIALS[1:]),
        model_max_length=32768,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_model(name: str, folder: Path, device: str, smoke: bool) -> Path:
    """Save a randomly initialised model of ``name``'s config, in bfloat16, and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    tokenizer = build_tokenizer()
    config = config_for(name, len(tokenizer), smoke)
    torch.manual_seed(0)
    # Initialised on the device: a billion random weights take a minute on a CPU.
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    release()
    print(f"  {name}: {parameters / 1e6:.0f} M parameters, saved in {folder}", flush=True)
    return folder


def write_data(path: Path, n: int, seq: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` chat examples whose rendered length runs from 200 tokens (bytes) to ``seq``."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        target = rng.randint(min(200, seq // 2), seq) - 120
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < target:
            words.append(rng.choice(WORDS))
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Question {i}: what happens next?"},
                    {"role": "assistant", "content": " ".join(words)},
                ]
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


def release() -> None:
    """Give the GPU's cached memory back between sides."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- a. training -----------------------------------------------------------------------------


def engine_training(
    folder: Path, data: Path, out: Path, batch_size: int, device: str
) -> dict[str, Any]:
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
            self.details: dict[str, Any] = {}

        def on_start(self, hyperparameters: Hyperparameters, total_steps: int) -> None:
            self.started = time.perf_counter()

        def on_device(self, info: Any, details: Any) -> None:
            self.details = {"device": info.summary(), **details}

        def on_step(self, metrics: StepMetrics) -> None:
            _synchronize()
            self.ended = time.perf_counter()

    clock = Clock()
    result = train(
        TrainingRequest(
            base_model=str(folder),
            training_file=data,
            output_dir=out,
            n_epochs=1,
            batch_size=batch_size,
            learning_rate_multiplier=LEARNING_RATE / BASE_LEARNING_RATE,
            device=device,
        ),
        clock,
        registry=ModelRegistry(default_model="tiny-random"),
    )
    seconds = clock.ended - clock.started
    return {
        "tokens": result.trained_tokens,
        "seconds": seconds,
        "tokens_per_second": result.trained_tokens / seconds,
        "steps": result.steps_done,
        "adapter": str(result.adapter_path),
        **clock.details,
    }


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def trl_training(
    folder: Path, rows: list[dict[str, Any]], batch_size: int, seq: int, device: str
) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class Clock(TrainerCallback):
        started = ended = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.started = time.perf_counter()

        def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            _synchronize()
            self.ended = time.perf_counter()

    cuda = device.startswith("cuda")
    attention = "flash_attention_2" if cuda and importlib.util.find_spec("flash_attn") else "sdpa"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.bfloat16 if cuda else torch.float32, attn_implementation=attention
    ).to(device)
    # Prompt-completion form: trl then trains on the answers only, as the engine does.
    data = Dataset.from_list(
        [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
    )
    mean = sum(len(json.dumps(r)) for r in rows) / len(rows)
    # Packed rows of `seq` tokens per step holding about the engine's batch of examples.
    rows_per_step = max(1, math.ceil(batch_size * mean / seq))
    config = SFTConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=rows_per_step,
        num_train_epochs=1,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="linear",
        packing=True,
        max_length=seq,
        bf16=cuda,
        use_cpu=not cuda,
        gradient_checkpointing=False,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
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
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    trainer.train()
    seconds = clock.ended - clock.started
    del trainer, model
    release()
    return {
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "attention": attention,
        "rows_per_step": rows_per_step,
    }


# -- b. chat ---------------------------------------------------------------------------------


def chat_throughput(
    chat: Callable[..., Any], levels: list[int], max_tokens: int
) -> dict[int, dict[str, float]]:
    """Generated tokens per second with ``level`` requests in flight, for each level."""
    question = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Question 7: what happens next?"},
    ]
    chat(question, max_tokens=4, temperature=0)  # warm-up: load, compile, first adapter
    results: dict[int, dict[str, float]] = {}
    for level in levels:
        tokens: list[int] = []
        lock = threading.Lock()

        def one(index: int, tokens: list[int] = tokens, lock: threading.Lock = lock) -> None:
            answer = chat(question, max_tokens=max_tokens, temperature=1.0, seed=index)
            with lock:
                tokens.append(answer.completion_tokens)

        # Each level sends two waves of `level` requests, all in flight at once per wave.
        started = time.perf_counter()
        for wave in range(2):
            threads = [threading.Thread(target=one, args=(wave * level + i,)) for i in range(level)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        seconds = time.perf_counter() - started
        results[level] = {
            "requests": 2 * level,
            "tokens": sum(tokens),
            "seconds": seconds,
            "tokens_per_second": sum(tokens) / seconds,
        }
        print(
            f"    {level:>3} at once: {sum(tokens)} tokens in {seconds:.1f} s = "
            f"{sum(tokens) / seconds:,.0f} tokens/s",
            flush=True,
        )
    return results


def builtin_chat(
    folder: Path, adapter: str, levels: list[int], max_tokens: int, device: str
) -> dict[int, dict[str, float]]:
    from finetune_kit.local.engine.generation import Generator, ModelRef
    from finetune_kit.local.engine.registry import ModelRegistry

    generator = Generator(
        ModelRegistry(default_model="tiny-random"), device=device, max_batch_size=64
    )
    ref = ModelRef(str(folder), Path(adapter))
    try:
        return chat_throughput(
            lambda messages, **options: generator.chat(ref, messages, **options),
            levels,
            max_tokens,
        )
    finally:
        generator.close()
        release()


def vllm_chat(
    folder: Path, adapter: str, levels: list[int], max_tokens: int, extra: list[str]
) -> dict[int, dict[str, float]]:
    from finetune_kit.local.engine.generation import ModelRef
    from finetune_kit.local.engine.registry import ModelRegistry
    from finetune_kit.local.engine.vllm import VllmClient, VllmEngine, VllmProcess

    registry = ModelRegistry(default_model="tiny-random")
    log = ROOT / "bench" / "out" / "vllm.log"
    process = VllmProcess(folder, "bench", log, extra_args=extra)
    client = VllmClient(process.url, served_model="bench", base_model=registry.resolve(str(folder)))
    try:
        started = time.perf_counter()
        process.wait_ready(client, timeout=420)
        print(f"    vllm serve ready in {time.perf_counter() - started:.0f} s", flush=True)
        engine = VllmEngine(registry, client)
        ref = ModelRef(str(folder), Path(adapter))
        return chat_throughput(
            lambda messages, **options: engine.chat(ref, messages, **options),
            levels,
            max_tokens,
        )
    finally:
        client.close()
        process.stop()


# -- the run ---------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    found = {}
    for name in ("torch", "transformers", "peft", "trl", "vllm", "flash_attn", "bitsandbytes"):
        if importlib.util.find_spec(name) is None:
            found[name] = "not installed"
            continue
        try:
            module = __import__(name)
            found[name] = str(getattr(module, "__version__", "?"))
        except Exception as exc:  # a broken install is reported, not fatal
            found[name] = f"unusable ({type(exc).__name__})"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny configs on the CPU, seconds")
    parser.add_argument("--models", default="qwen2.5-0.5b,llama-3.2-1b")
    parser.add_argument("--steps", type=int, default=24, help="optimizer steps per trainer")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq", type=int, default=1024, help="longest example, in tokens")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--chat-models", type=int, default=1, help="models whose chat is timed")
    parser.add_argument("--no-vllm", action="store_true")
    parser.add_argument(
        "--vllm-args",
        default="--gpu-memory-utilization 0.6 --max-model-len 4096",
        help="extra vllm serve arguments",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    import torch

    if args.smoke:
        args.steps, args.batch_size, args.seq = 2, 2, 160
        args.concurrency, args.max_tokens = "1,2", 4
        device = "cpu"
        card = "CPU (smoke run: figures mean nothing)"
    elif not torch.cuda.is_available():
        print("no CUDA GPU: run on a GPU machine, or --smoke for a CPU check of the code")
        return 2
    else:
        device = "cuda"
        card = torch.cuda.get_device_name(0)
    print(f"card: {card}")
    found = versions()
    print("versions: " + ", ".join(f"{k} {v}" for k, v in found.items()), flush=True)
    levels = [int(x) for x in args.concurrency.split(",")]
    report: dict[str, Any] = {"card": card, "versions": found, "models": {}}
    missed: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="ftk-gpu-bench-"))
    trl_ready = importlib.util.find_spec("trl") is not None
    vllm_ready = (
        not args.no_vllm and device == "cuda" and importlib.util.find_spec("vllm") is not None
    )
    for position, name in enumerate(args.models.split(",")):
        print(f"\n{name}", flush=True)
        folder = build_model(name, work / name, device, args.smoke)
        data = work / f"{name}.jsonl"
        rows = write_data(data, args.steps * args.batch_size, args.seq)
        figures: dict[str, Any] = {}
        engine = engine_training(folder, data, work / f"{name}-out", args.batch_size, device)
        release()
        figures["engine"] = engine
        print(
            f"  engine: {engine['tokens']} tokens in {engine['seconds']:.1f} s = "
            f"{engine['tokens_per_second']:,.0f} tokens/s ({engine.get('device')}, "
            f"{engine.get('pack_tokens')} tokens per pass)",
            flush=True,
        )
        if trl_ready:
            theirs = trl_training(folder, rows, args.batch_size, args.seq, device)
            figures["trl"] = theirs
            ratio = engine["tokens_per_second"] / theirs["tokens_per_second"]
            figures["train_ratio"] = ratio
            print(
                f"  trl SFTTrainer: {theirs['tokens']} tokens in {theirs['seconds']:.1f} s = "
                f"{theirs['tokens_per_second']:,.0f} tokens/s ({theirs['attention']}); "
                f"engine / trl = {ratio:.2f}x (target {TRAIN_TARGET}x)",
                flush=True,
            )
            if ratio < TRAIN_TARGET:
                missed.append(f"{name}: training {ratio:.2f}x < {TRAIN_TARGET}x")
        else:
            print("  trl not installed: training ratio not measured", flush=True)
        if position < args.chat_models:
            print("  chat, built-in decoder:", flush=True)
            builtin = builtin_chat(folder, engine["adapter"], levels, args.max_tokens, device)
            figures["chat_builtin"] = builtin
            if vllm_ready:
                print("  chat, vLLM:", flush=True)
                served = vllm_chat(
                    folder, engine["adapter"], levels, args.max_tokens, args.vllm_args.split()
                )
                figures["chat_vllm"] = served
                top = max(levels)
                ratio = served[top]["tokens_per_second"] / builtin[top]["tokens_per_second"]
                figures["chat_ratio"] = ratio
                print(f"  vLLM / built-in at {top}: {ratio:.1f}x (target {VLLM_TARGET}x)")
                if ratio < VLLM_TARGET:
                    missed.append(f"{name}: chat {ratio:.1f}x < {VLLM_TARGET}x at {top}")
            else:
                print("  vLLM not installed (or --no-vllm, or no GPU): not measured", flush=True)
        report["models"][name] = figures
    elapsed = time.perf_counter() - started
    report["seconds"] = elapsed
    report["missed"] = missed
    print(f"\ntotal {elapsed:.0f} s; card: {card}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    if args.smoke:
        return 0
    for line in missed:
        print("MISSED: " + line)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
