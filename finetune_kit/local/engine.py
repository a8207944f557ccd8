"""The local backend's engine in one import: training (worker process) and chat (server).

This module gathers the engine's public names; the code lives in ``training``,
``training_types``, ``training_data``, ``generation``, ``chat_format`` and ``registry``.

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

from .generation import ChatChoice, ChatDelta, ChatResult, ChatStream, Generator, ModelRef
from .registry import DEFAULT_BASE_MODEL, OPENAI_MODEL_NAMES, ModelRegistry
from .tiny_model import TINY_MODEL_NAME
from .training import STATE_FILE, resolve_hyperparameters, train
from .training_types import (
    BASE_LEARNING_RATE,
    DEFAULT_DPO_BETA,
    CheckpointInfo,
    Hyperparameters,
    LoraSettings,
    NoCallbacks,
    StepMetrics,
    StopSignal,
    TrainingCallbacks,
    TrainingMethod,
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
    "Generator",
    "Hyperparameters",
    "LoraSettings",
    "ModelRef",
    "ModelRegistry",
    "NoCallbacks",
    "StepMetrics",
    "StopSignal",
    "TrainingCallbacks",
    "TrainingMethod",
    "TrainingRequest",
    "TrainingResult",
    "TrainingStatus",
    "resolve_hyperparameters",
    "train",
]
