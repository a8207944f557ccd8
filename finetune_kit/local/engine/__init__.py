"""The local backend's engine: LoRA training (in a worker process) and chat (in the server).

Owns the models and what is done with them: base models and where they come from
(``registry``: the shipped SmolLM2, Hugging Face folders, GGUF files; ``tiny_model``: the test
model), the chat template and the data it renders (``chat_format``, ``training_data``),
training (``training``: the loop; ``objectives``: supervised and DPO losses;
``packed_attention``; ``types``: what goes in and out), generation (``generation``: the
``Generator`` the server chats with; ``batch_decoding``; ``tool_parsing``: tool calls read back
from an answer), and the numerics and library quirks (``precision``, ``transformers_compat``,
``_quiet``). This package gathers the public names.

May import: ``finetune_kit.errors`` and ``finetune_kit.data``; nothing else of the local backend
(no server, worker, store or faults: the engine knows files and folders, not jobs or HTTP). A
new training method is an objective in ``objectives`` picked by ``training``; another engine
(vLLM, llama.cpp, an accelerator) is a module here behind ``Generator``'s or ``train``'s
signature.

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
