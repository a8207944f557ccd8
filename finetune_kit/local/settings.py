"""Settings of a local backend server: where it keeps data, which models, which limits.

Example:
    >>> from pathlib import Path
    >>> s = ServerSettings(data_dir=Path("/tmp/ftk"), api_key="sk-local-secret")
    >>> "sk-local-secret" in repr(s)
    False
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError

__all__ = [
    "CHAT_ENGINES",
    "CHAT_ENGINE_ENV",
    "EXECUTORS",
    "EXECUTOR_ENV",
    "MODEL_DIRS_ENV",
    "RAY_ADDRESS_ENV",
    "RAY_STORAGE_ENV",
    "RESOURCES_PER_WORKER_ENV",
    "TUNED_WEIGHTS",
    "TUNED_WEIGHTS_ENV",
    "WORKERS_PER_JOB_ENV",
    "RequestLimits",
    "ServerSettings",
    "chat_engine_setting",
    "executor_options",
    "parse_resources",
    "tuned_weights_setting",
]

_MB = 1024 * 1024

MODEL_DIRS_ENV = "FINETUNE_KIT_LOCAL_MODEL_DIRS"
"""Folders (separated by ``os.pathsep``) inside which clients may name base models by path."""

EXECUTORS = ("local", "ray")
"""Where jobs train: this machine's worker processes, or a Ray cluster (docs/scale-out.md)."""

EXECUTOR_ENV = "FINETUNE_KIT_LOCAL_EXECUTOR"
"""``local`` or ``ray``, read when no executor is given."""

RAY_ADDRESS_ENV = "FINETUNE_KIT_LOCAL_RAY_ADDRESS"
"""The Ray cluster's address, read when none is given (then Ray's own ``$RAY_ADDRESS``)."""

WORKERS_PER_JOB_ENV = "FINETUNE_KIT_LOCAL_WORKERS_PER_JOB"
"""Ray Train workers per job, read when no number is given."""

RESOURCES_PER_WORKER_ENV = "FINETUNE_KIT_LOCAL_RESOURCES_PER_WORKER"
"""Ray resources per worker as JSON (``{"GPU": 1}``), read when none are given."""

RAY_STORAGE_ENV = "FINETUNE_KIT_LOCAL_RAY_STORAGE"
"""Where Ray runs persist (a shared folder or a URI), read when none is given."""


CHAT_ENGINES = ("auto", "llama.cpp", "torch")
"""What serves chat (docs/local-models.md): ``auto`` is llama.cpp for every model it can load
when it is installed and chat runs on the CPU, the torch generator for the rest; ``llama.cpp``
insists on it being there; ``torch`` serves everything with the built-in decoder."""

CHAT_ENGINE_ENV = "FINETUNE_KIT_LOCAL_CHAT_ENGINE"
"""``auto``, ``llama.cpp`` or ``torch``, read when no chat engine is given."""


TUNED_WEIGHTS = ("adapter", "merged")
"""How llama.cpp serves a tuned model: its GGUF LoRA adapter applied per request to the shared
base, or base and adapter merged into a model of its own (``LlamaCppEngine``'s
``tuned_weights``)."""

TUNED_WEIGHTS_ENV = "FINETUNE_KIT_LOCAL_TUNED_WEIGHTS"
"""``adapter`` or ``merged``, read when no ``tuned_weights`` is given."""


def tuned_weights_setting(value: str | None) -> str:
    """How llama.cpp serves tuned models: ``value``, else the variable, else ``adapter``.

    The variable is ``$FINETUNE_KIT_LOCAL_TUNED_WEIGHTS``; the choices are ``TUNED_WEIGHTS``.

    Raises:
        ConfigurationError: Neither ``adapter`` nor ``merged`` (``param="tuned_weights"``).

    Example:
        >>> tuned_weights_setting("Merged")
        'merged'
    """
    raw = value if value is not None else os.environ.get(TUNED_WEIGHTS_ENV)
    text = (raw or "adapter").strip().lower()
    if text not in TUNED_WEIGHTS:
        raise ConfigurationError(
            f"tuned weights is {raw!r}; use adapter (one process shares the base, the adapter "
            "applied per request) or merged (a process per tuned model, as fast as its base): "
            f"local serve --tuned-weights, LocalBackend(tuned_weights=...) or ${TUNED_WEIGHTS_ENV}",
            param="tuned_weights",
        )
    return text


def chat_engine_setting(value: str | None) -> str:
    """The chat engine setting: ``value``, else ``$FINETUNE_KIT_LOCAL_CHAT_ENGINE``, else ``auto``.

    Raises:
        ConfigurationError: Not one of ``CHAT_ENGINES`` (``param="chat_engine"``).

    Example:
        >>> chat_engine_setting("TORCH")
        'torch'
    """
    raw = value if value is not None else os.environ.get(CHAT_ENGINE_ENV)
    text = (raw or "auto").strip().lower()
    if text in ("llamacpp", "llama-cpp", "llama_cpp"):
        text = "llama.cpp"
    if text not in CHAT_ENGINES:
        raise ConfigurationError(
            f"chat engine is {raw!r}; use {', '.join(CHAT_ENGINES)} (local serve --chat-engine, "
            f"LocalBackend(chat_engine=...) or ${CHAT_ENGINE_ENV})",
            param="chat_engine",
        )
    return text


def parse_resources(text: str, *, where: str = "--resources-per-worker") -> dict[str, float]:
    """Read Ray resources given as JSON, naming ``where`` they came from when they are wrong.

    Example:
        >>> parse_resources('{"CPU": 2, "GPU": 1}')
        {'CPU': 2, 'GPU': 1}
    """
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(
            f"{where} is not JSON ({exc}); give an object such as '{{\"CPU\": 2}}' or "
            "'{\"GPU\": 1}'",
            param="resources_per_worker",
        ) from exc
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"{where} is {text!r}; give a JSON object such as '{{\"CPU\": 2}}'",
            param="resources_per_worker",
        )
    return value


def executor_options(
    *,
    executor: str | None = None,
    ray_address: str | None = None,
    workers_per_job: int | None = None,
    resources_per_worker: Mapping[str, float] | None = None,
    ray_storage: str | None = None,
) -> dict[str, Any]:
    """The executor settings: each value given, else its environment variable, else default.

    Returns:
        Keyword arguments for ``ServerSettings`` (checked there).

    Example:
        >>> executor_options(executor="ray", workers_per_job=2)["workers_per_job"]
        2
    """
    environ = os.environ
    if workers_per_job is None and environ.get(WORKERS_PER_JOB_ENV):
        raw = environ[WORKERS_PER_JOB_ENV]
        try:
            workers_per_job = int(raw)
        except ValueError as exc:
            raise ConfigurationError(
                f"${WORKERS_PER_JOB_ENV} is {raw!r}; give a whole number of at least 1",
                param="workers_per_job",
            ) from exc
    if resources_per_worker is None and environ.get(RESOURCES_PER_WORKER_ENV):
        resources_per_worker = parse_resources(
            environ[RESOURCES_PER_WORKER_ENV], where=f"${RESOURCES_PER_WORKER_ENV}"
        )
    return {
        "executor": executor or environ.get(EXECUTOR_ENV) or "local",
        "ray_address": ray_address or environ.get(RAY_ADDRESS_ENV) or None,
        "workers_per_job": workers_per_job if workers_per_job is not None else 1,
        "resources_per_worker": resources_per_worker,
        "ray_storage": ray_storage or environ.get(RAY_STORAGE_ENV) or None,
    }


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
        vllm: Serve chat for ``vllm_model`` through vLLM: ``start`` (``vllm serve`` on this
            machine) or a vLLM server's URL; ``None`` reads ``$FINETUNE_KIT_LOCAL_VLLM`` (unset:
            the built-in decoder serves every model; see ``engine.vllm``).
        vllm_model: The base model vLLM serves (default: ``default_model``).
        chat_engine: What serves chat: ``auto``, ``llama.cpp`` or ``torch`` (see
            ``CHAT_ENGINES``).
        tuned_weights: How llama.cpp serves tuned models: ``adapter`` or ``merged`` (see
            ``TUNED_WEIGHTS``).
        executor: ``"local"`` trains each job in a worker process on this machine; ``"ray"``
            runs it on a Ray cluster (a worker process here only follows it).
        ray_address: The Ray cluster (``host:port`` of its head, ``ray://host:10001`` or
            ``auto``); ``None`` reads ``$RAY_ADDRESS``, else ``auto`` (a cluster started on
            this machine with ``ray start``).
        workers_per_job: Ray Train workers per job (data-parallel ranks).
        resources_per_worker: Ray resources each worker asks for, ``{"CPU": 2}`` or
            ``{"GPU": 1}`` (a GPU trains with NCCL); ``None`` asks for one CPU.
        ray_storage: Where Ray persists checkpoints and large inputs: a folder every node
            reaches, or a URI (``s3://bucket/prefix``); ``None`` uses ``data_dir/ray`` (right
            for a cluster on this one machine).

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
    vllm: str | None = None
    vllm_model: str | None = None
    chat_engine: str = "auto"
    tuned_weights: str = "adapter"
    executor: str = "local"
    ray_address: str | None = None
    workers_per_job: int = 1
    resources_per_worker: Mapping[str, float] | None = None
    ray_storage: str | None = None

    def __post_init__(self) -> None:
        if self.chat_engine not in CHAT_ENGINES:
            chat_engine_setting(self.chat_engine)  # raises, naming the choices
        if self.tuned_weights not in TUNED_WEIGHTS:
            tuned_weights_setting(self.tuned_weights)  # raises, naming the choices
        if self.executor not in EXECUTORS:
            raise ConfigurationError(
                f"executor is {self.executor!r}; use 'local' (this machine) or 'ray' (a Ray "
                "cluster)",
                param="executor",
            )
        if isinstance(self.workers_per_job, bool) or not (
            isinstance(self.workers_per_job, int) and self.workers_per_job >= 1
        ):
            raise ConfigurationError(
                f"workers_per_job is {self.workers_per_job!r}; use a whole number of at least 1",
                param="workers_per_job",
            )
        for name, amount in (self.resources_per_worker or {}).items():
            if (
                not isinstance(name, str)
                or isinstance(amount, bool)
                or not isinstance(amount, (int, float))
                or amount < 0
            ):
                raise ConfigurationError(
                    f"resources_per_worker has {name!r}: {amount!r}; give each resource a "
                    'number of at least 0, e.g. {"CPU": 2} or {"GPU": 1}',
                    param="resources_per_worker",
                )
        if self.executor == "ray" and importlib.util.find_spec("ray") is None:
            # Said when the server starts, not when its first job fails in a worker.
            raise ConfigurationError(
                "executor 'ray' needs Ray: pip install 'finetune-kit[ray]' (here and on every "
                "node of the cluster)",
                param="executor",
            )

    def __repr__(self) -> str:
        key = "'***'" if self.api_key else "None"
        return (
            f"ServerSettings(data_dir={str(self.data_dir)!r}, api_key={key}, "
            f"default_model={self.default_model!r}, aliases={dict(self.aliases or {})!r}, "
            f"max_concurrent_jobs={self.max_concurrent_jobs}, faults={self.faults}, "
            f"executor={self.executor!r})"
        )

    @property
    def ray_storage_location(self) -> str:
        """Where the Ray executor's runs persist (``ray_storage``, else ``data_dir/ray``)."""
        if self.ray_storage:
            return self.ray_storage
        return str(self.data_dir.resolve() / "ray")

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
            "chat_engine": self.chat_engine,
            "tuned_weights": self.tuned_weights,
            "executor": self.executor,
            "ray_address": self.ray_address,
            "workers_per_job": self.workers_per_job,
            "resources_per_worker": (
                dict(self.resources_per_worker) if self.resources_per_worker is not None else None
            ),
            "ray_storage": self.ray_storage,
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
            chat_engine=str(raw.get("chat_engine", "auto")),
            tuned_weights=str(raw.get("tuned_weights", "adapter")),
            executor=str(raw.get("executor", "local")),
            ray_address=raw.get("ray_address"),
            workers_per_job=int(raw.get("workers_per_job", 1)),
            resources_per_worker=raw.get("resources_per_worker"),
            ray_storage=raw.get("ray_storage"),
        )

    def with_changes(self, **changes: Any) -> ServerSettings:
        """Return a copy with some fields replaced."""
        return replace(self, **changes)
