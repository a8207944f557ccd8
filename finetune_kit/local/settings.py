"""Settings of a local backend server: where it keeps data, which models, which limits.

Example:
    >>> from pathlib import Path
    >>> s = ServerSettings(data_dir=Path("/tmp/ftk"), api_key="sk-local-secret")
    >>> "sk-local-secret" in repr(s)
    False
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["MODEL_DIRS_ENV", "RequestLimits", "ServerSettings"]

_MB = 1024 * 1024

MODEL_DIRS_ENV = "FINETUNE_KIT_LOCAL_MODEL_DIRS"
"""Folders (separated by ``os.pathsep``) inside which clients may name base models by path."""


@dataclass(frozen=True)
class RequestLimits:
    """Request size limits; a request over one is answered with a 413 naming the limit.

    The defaults are OpenAI's published limits.

    Attributes:
        max_file_bytes: Largest file accepted by ``POST /v1/files``.
        max_part_bytes: Largest part accepted by ``POST /v1/uploads/{id}/parts``.
        max_upload_bytes: Largest total size declared by ``POST /v1/uploads``.
        max_json_bytes: Largest JSON request body (jobs, chat completions...).

    Example:
        >>> RequestLimits(max_file_bytes=1024).max_file_bytes
        1024
    """

    max_file_bytes: int = 512 * _MB
    max_part_bytes: int = 64 * _MB
    max_upload_bytes: int = 8 * 1024 * _MB
    max_json_bytes: int = 16 * _MB


@dataclass(frozen=True)
class ServerSettings:
    """Everything a local backend server needs to start.

    Attributes:
        data_dir: Folder holding the SQLite database, file blobs, job outputs and logs.
        api_key: When set, every request must carry ``Authorization: Bearer <api_key>``.
        default_model: The base model that OpenAI model names (``gpt-4o-mini``...) map to;
            ``None`` lets the model registry choose (``$FINETUNE_KIT_LOCAL_MODEL`` or
            ``smollm2-135m-instruct``).
        aliases: Extra or replacement aliases, ``{"gpt-4o-mini": "tiny-random"}``; ``None``
            keeps the registry's table (every alias pointing at ``default_model``).
        max_concurrent_jobs: How many jobs train at once (each in its own worker process);
            ``0`` queues jobs without running them.
        limits: Request size limits.
        faults: Enable fault injection (and its private ``/_faults`` admin routes).
        model_cache_dir: Where converted base models are cached; ``None`` uses the registry's
            default cache folder.
        training_step_delay: Seconds to wait between training steps; a testing aid that makes
            a tiny job last long enough to pause, cancel or interrupt it.
        default_max_tokens: Tokens a chat completion may generate when the request sets no
            ``max_tokens`` / ``max_completion_tokens``.
        log_level: Level of the ``finetune_kit.local`` loggers and uvicorn's.
        model_dirs: Folders inside which a client may name a base model by its absolute path,
            besides the data folder's ``models/`` (always allowed); ``None`` reads
            ``$FINETUNE_KIT_LOCAL_MODEL_DIRS`` (folders separated by ``os.pathsep``). Any other
            path is refused like an unknown name, so a client cannot probe the disk.
        device: Where jobs train and chat runs: ``auto`` (CUDA when present), ``cpu``,
            ``cuda``, ``cuda:N`` or ``mps``; ``None`` reads ``$FINETUNE_KIT_LOCAL_DEVICE``
            (see ``finetune_kit.local.engine.device``).
        gpus: The GPU ids the workers are spread over, one per worker in turn
            (``CUDA_VISIBLE_DEVICES``); ``None`` reads ``$FINETUNE_KIT_LOCAL_GPUS``, else the
            GPUs the machine shows.
        qlora: Train every job on the base model quantized to 4 bits (CUDA, the ``qlora``
            extra).

    Example:
        >>> ServerSettings(data_dir=Path("data"), default_model="tiny-random").default_model
        'tiny-random'
    """

    data_dir: Path
    api_key: str | None = field(default=None, repr=False)
    default_model: str | None = None
    aliases: Mapping[str, str] | None = None
    max_concurrent_jobs: int = 1
    limits: RequestLimits = field(default_factory=RequestLimits)
    faults: bool = False
    model_cache_dir: Path | None = None
    training_step_delay: float = 0.0
    default_max_tokens: int = 512
    log_level: str = "warning"
    model_dirs: Sequence[Path] | None = None
    device: str | None = None
    gpus: Sequence[str] | None = None
    qlora: bool = False

    def __repr__(self) -> str:
        key = "'***'" if self.api_key else "None"
        return (
            f"ServerSettings(data_dir={str(self.data_dir)!r}, api_key={key}, "
            f"default_model={self.default_model!r}, aliases={dict(self.aliases or {})!r}, "
            f"max_concurrent_jobs={self.max_concurrent_jobs}, faults={self.faults})"
        )

    @property
    def allowed_model_dirs(self) -> tuple[Path, ...]:
        """Folders a client may name a base model in by path (see ``model_dirs``)."""
        if self.model_dirs is not None:
            extra = [Path(d) for d in self.model_dirs]
        else:
            raw = os.environ.get(MODEL_DIRS_ENV, "")
            extra = [Path(d).expanduser() for d in raw.split(os.pathsep) if d.strip()]
        return (self.data_dir / "models", *extra)

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.data_dir / "local.sqlite3"

    def worker_json(self) -> str:
        """Serialise what a worker process needs, without the API key.

        Returns:
            A JSON string for ``ServerSettings.from_worker_json``.
        """
        payload: dict[str, Any] = {
            "data_dir": str(self.data_dir),
            "default_model": self.default_model,
            "aliases": dict(self.aliases) if self.aliases is not None else None,
            "max_concurrent_jobs": self.max_concurrent_jobs,
            "model_cache_dir": str(self.model_cache_dir) if self.model_cache_dir else None,
            "training_step_delay": self.training_step_delay,
            "log_level": self.log_level,
            "device": self.device,
            "qlora": self.qlora,
        }
        return json.dumps(payload)

    @classmethod
    def from_worker_json(cls, text: str) -> ServerSettings:
        """Rebuild settings in a worker process from ``worker_json()``.

        Args:
            text: The JSON written by ``worker_json()``.

        Returns:
            Settings without an API key (workers never need it).
        """
        raw = json.loads(text)
        return cls(
            data_dir=Path(raw["data_dir"]),
            default_model=raw["default_model"],
            aliases=raw["aliases"],
            max_concurrent_jobs=int(raw["max_concurrent_jobs"]),
            model_cache_dir=Path(raw["model_cache_dir"]) if raw["model_cache_dir"] else None,
            training_step_delay=float(raw["training_step_delay"]),
            log_level=str(raw["log_level"]),
            device=raw.get("device"),
            qlora=bool(raw.get("qlora", False)),
        )

    def with_changes(self, **changes: Any) -> ServerSettings:
        """Return a copy with some fields replaced."""
        return replace(self, **changes)
