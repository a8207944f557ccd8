"""The local backend's engine: LoRA training (in a worker process) and chat (in the server).

Owns the models and what is done with them. Its modules:

- base models: ``registry`` (names, OpenAI aliases, loading: the shipped SmolLM2, Hugging Face
  folders, GGUF files), ``families`` (what differs per architecture: LoRA targets, end-of-turn
  tokens, context length), ``tiny_model`` (``tiny-random``, the test model);
- the data: ``chat_format`` (messages to the token ids a model trains on or answers, one layout
  for both), ``training_data`` (a JSONL file to token ids: supervised, DPO, reinforcement);
- training: ``training`` (the loop), ``objectives`` (supervised and DPO losses over packed
  examples), ``packed_attention``, ``rft`` (reinforcement fine-tuning: on-policy answers,
  graded, GRPO's loss), ``distributed`` (data-parallel objectives: N processes that train like
  one, for the Ray executor), ``types`` (what goes in and out);
- where it computes: ``device`` (device choice, GPU placement, memory planning), ``placement``
  (dtype, QLoRA and memory plan of a training run), ``precision`` (bfloat16 or float32);
- chat: ``serving`` (the ``ChatEngine`` protocol and the ``EngineRouter`` that picks an engine
  per model), ``generation`` (``Generator``, the built-in torch engine, serving every model),
  ``batch_decoding`` (its continuous batching), ``llama_cpp`` (llama.cpp's server as an engine;
  ``_llama_child``, the process it runs on the ``xllamacpp`` wheel), ``vllm`` (a vLLM server as
  an engine, adapters loaded at runtime), ``tool_parsing`` (tool calls read back from an
  answer);
- weights for other tools: ``gguf`` (GGUF files written with the ``gguf`` package: LoRA
  adapters, bases made from Llama folders, merged models, Ollama Modelfiles), ``export`` (a
  tuned model's weights as a peft folder, a merged Hugging Face folder or GGUF files);
- library quirks: ``transformers_compat``, ``_quiet``.

This package gathers the public names.

May import: ``finetune_kit.errors``, ``finetune_kit.data`` and ``finetune_kit.graders`` (``rft``
grades answers with a job's grader); nothing else of the local backend (no server, worker,
store or faults: the engine knows files and folders, not jobs or HTTP). A new training method
is an objective in ``objectives`` (or a loop beside it, as ``rft``) picked by ``training``;
another chat engine is a ``serving.ChatEngine`` here, placed in the router by the server;
another accelerator, a case of ``device`` and ``placement``.

Training, called by the worker process::

    result = train(
        TrainingRequest(
            base_model="gpt-3.5-turbo",  # an alias, a built-in name or a path
            training_file=Path("train.jsonl"),
            output_dir=Path("jobs/ftjob-1"),
            n_epochs="auto",
            seed=42,
        ),
        callbacks,  # on_start / on_step / on_checkpoint / should_stop
    )
    result.status, result.adapter_path, result.trained_tokens

Chat, called by the server process::

    generator = Generator(ModelRegistry())
    answer = generator.chat(ModelRef("smollm2-135m-instruct", adapter_path), messages,
                            max_tokens=100, temperature=0)

Example:
    >>> sorted(__all__)[:3]
    ['BASE_LEARNING_RATE', 'ChatChoice', 'ChatDelta']
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from .generation import ChatChoice, ChatDelta, ChatResult, ChatStream, Generator, ModelRef
from .registry import DEFAULT_BASE_MODEL, OPENAI_MODEL_NAMES, ModelRegistry
from .tiny_model import TINY_MODEL_NAME
from .training import STATE_FILE, resolve_hyperparameters, train
from .types import (
    BASE_LEARNING_RATE,
    DEFAULT_DPO_BETA,
    CheckpointInfo,
    EngineMethod,
    Hyperparameters,
    LoraSettings,
    NoCallbacks,
    StepMetrics,
    StopSignal,
    TrainingCallbacks,
    TrainingRequest,
    TrainingResult,
    TrainingStatus,
)

__all__ = [
    "BASE_LEARNING_RATE",
    "DEFAULT_BASE_MODEL",
    "DEFAULT_DPO_BETA",
    "OPENAI_MODEL_NAMES",
    "STATE_FILE",
    "TINY_MODEL_NAME",
    "ChatChoice",
    "ChatDelta",
    "ChatResult",
    "ChatStream",
    "CheckpointInfo",
    "EngineMethod",
    "Generator",
    "Hyperparameters",
    "LoraSettings",
    "ModelRef",
    "ModelRegistry",
    "NoCallbacks",
    "StepMetrics",
    "StopSignal",
    "TrainingCallbacks",
    "TrainingRequest",
    "TrainingResult",
    "TrainingStatus",
    "resolve_hyperparameters",
    "train",
]

if not TYPE_CHECKING:  # old names stay importable (with a warning) but unseen by type checkers

    def __getattr__(name: str) -> object:
        if name == "TrainingMethod":  # renamed: data's MethodName (OpenAI's) is another set
            warnings.warn(
                "finetune_kit.local.engine.TrainingMethod is now EngineMethod (the methods the "
                "local engine trains); the old name goes in the next release.",
                DeprecationWarning,
                stacklevel=2,
            )
            return EngineMethod
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
