"""Small training files and a recording callbacks object for the engine tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finetune_kit.local.engine.types import (
    CheckpointInfo,
    Hyperparameters,
    StepMetrics,
    StopSignal,
)

ELEMENTS = (
    ("Gallium", "Gallium melts in a hand"),
    ("Neon", "Neon glows red in a sign"),
    ("Argon", "Argon fills the old bulb"),
    ("Iron", "Iron rusts in the rain"),
    ("Copper", "Copper wires carry the charge"),
    ("Zinc", "Zinc coats the steel nail"),
    ("Tin", "Tin lines the old can"),
    ("Gold", "Gold shines in a ring"),
    ("Lead", "Lead is heavy and grey"),
    ("Mercury", "Mercury rolls on a plate"),
)


def chat_rows(n: int = 10) -> list[dict[str, Any]]:
    rows = []
    for index in range(n):
        element, fact = ELEMENTS[index % len(ELEMENTS)]
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "Answer in one line."},
                    {"role": "user", "content": f"Tell me about {element}"},
                    {"role": "assistant", "content": fact},
                ]
            }
        )
    return rows


def preference_rows(n: int = 6) -> list[dict[str, Any]]:
    rows = []
    for index in range(n):
        element, fact = ELEMENTS[index % len(ELEMENTS)]
        rows.append(
            {
                "input": {"messages": [{"role": "user", "content": f"Tell me about {element}"}]},
                "preferred_output": [{"role": "assistant", "content": fact}],
                "non_preferred_output": [{"role": "assistant", "content": "I do not know."}],
            }
        )
    return rows


def write_jsonl(path: Path, rows: Sequence[Any]) -> Path:
    path.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )
    return path


class Recorder:
    """Records what the training loop reports; stops when told to."""

    def __init__(self, stop_at: dict[int, StopSignal] | None = None) -> None:
        self.stop_at = dict(stop_at or {})
        self.started: list[tuple[Hyperparameters, int]] = []
        self.steps: list[StepMetrics] = []
        self.checkpoints: list[CheckpointInfo] = []
        self.polls = 0

    def on_start(self, hyperparameters: Hyperparameters, total_steps: int) -> None:
        self.started.append((hyperparameters, total_steps))

    def on_step(self, metrics: StepMetrics) -> None:
        self.steps.append(metrics)

    def on_checkpoint(self, checkpoint: CheckpointInfo) -> None:
        self.checkpoints.append(checkpoint)

    def should_stop(self) -> StopSignal | None:
        self.polls += 1
        done = self.steps[-1].step if self.steps else 0
        return self.stop_at.pop(done, None)

    @property
    def losses(self) -> list[float]:
        return [m.train_loss for m in self.steps]
