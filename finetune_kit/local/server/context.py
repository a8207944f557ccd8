"""Everything a running server shares between its routes: store, models, validator, workers.

Example:
    >>> import tempfile, pathlib
    >>> from finetune_kit.local.settings import ServerSettings
    >>> with tempfile.TemporaryDirectory() as d:
    ...     ctx = ServerContext(ServerSettings(data_dir=pathlib.Path(d), max_concurrent_jobs=0,
    ...                                        default_model="tiny-random"))
    ...     ctx.start()
    ...     n_jobs = len(ctx.store.jobs.list()[0])
    ...     ctx.stop()
    >>> n_jobs
    0
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError, LocalBackendError
from ..engine.registry import ModelRegistry
from ..faults import FaultInjector
from ..settings import ServerSettings
from ..store import Store
from ..store.lock import DataDirLock
from ..worker.pool import WorkerHealth, WorkerPool
from .catalog import ModelCatalog
from .validator import FileValidator

if TYPE_CHECKING:
    from ..engine.serving import ChatEngine, EngineRouter
    from ..engine.vllm import VllmService

__all__ = ["ServerContext"]

logger = logging.getLogger("finetune_kit.local.server")


class ServerContext:
    """The state of one running server.

    Args:
        settings: The server's settings.
        faults: The fault injector, when fault injection is on.
    """

    def __init__(self, settings: ServerSettings, faults: FaultInjector | None = None) -> None:
        self.settings = settings
        self.faults = faults
        self._lock = DataDirLock(settings.data_dir)
        self._store: Store | None = None
        self._catalog: ModelCatalog | None = None
        self._validator: FileValidator | None = None
        self._pool: WorkerPool | None = None
        self._generator: EngineRouter | None = None
        self._generator_lock = threading.Lock()
        self._vllm: VllmService | None = None
        self.registry = ModelRegistry(
            cache_dir=settings.model_cache_dir,
            default_model=settings.default_model,
            aliases=settings.aliases,
            model_dirs=settings.allowed_model_dirs,
        )

    @property
    def store(self) -> Store:
        """The store (once started)."""
        if self._store is None:
            raise LocalBackendError("The local backend server is not started.")
        return self._store

    @property
    def catalog(self) -> ModelCatalog:
        """Model names across the registry and the store (once started)."""
        if self._catalog is None:
            raise LocalBackendError("The local backend server is not started.")
        return self._catalog

    @property
    def validator(self) -> FileValidator:
        """The file validation thread (once started)."""
        if self._validator is None:
            raise LocalBackendError("The local backend server is not started.")
        return self._validator

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the live worker processes."""
        return [p.pid for p in self._pool.processes] if self._pool is not None else []

    @property
    def engine_pids(self) -> list[int]:
        """Process ids of the running chat engine processes (llama.cpp's)."""
        if self._generator is None:
            return []
        pids: list[int] = []
        for engine in self._generator.engines:
            processes = getattr(engine, "processes", None)
            if callable(processes):
                pids.extend(p.process.pid for p in processes())
        return pids

    def health(self) -> dict[str, Any]:
        """What ``/health`` answers: ``ok``, or ``degraded`` with the problems found.

        A problem names no path: ``/health`` needs no key, and the server's folders are no
        business of an unauthenticated caller.
        """
        problems: list[str] = []
        if self._pool is not None:
            workers = self._pool.health()
        else:
            workers = WorkerHealth(expected=0, alive=0, crash_looping=False)
        if workers.crash_looping:
            problems.append(
                "the worker processes keep dying, so queued jobs do not train; the cause is in "
                "the worker logs (logs/worker-N.log in the data folder)"
            )
        validator_alive = self._validator is not None and self._validator.is_alive
        if not validator_alive:
            problems.append(
                "the file validation thread has stopped, so new jobs stay in validating_files; "
                "see the server log and restart the server"
            )
        return {
            "status": "degraded" if problems else "ok",
            "workers": {
                "expected": workers.expected,
                "alive": workers.alive,
                "crash_looping": workers.crash_looping,
            },
            "validator": {"alive": validator_alive},
            "problems": problems,
        }

    def generator(self) -> EngineRouter:
        """The chat engines behind one router, made on first use (torch is imported then).

        vLLM, when it is on, serves its base model and that model's adapters; llama.cpp every
        other model it can load (``settings.chat_engine``); the torch ``Generator`` the rest.
        """
        with self._generator_lock:
            if self._generator is None:
                self._generator = self._engines()
            return self._generator

    def _engines(self) -> EngineRouter:
        from ..engine.generation import Generator
        from ..engine.serving import EngineRouter

        engines: list[ChatEngine] = []
        if self._vllm is not None:
            engines.append(self._vllm.engine)
        if self._uses_llama_cpp():
            from ..engine.llama_cpp import LlamaCppEngine

            engines.append(
                LlamaCppEngine(
                    self.registry,
                    default_max_tokens=self.settings.default_max_tokens,
                    log_dir=self.settings.data_dir / "logs",
                    tuned_weights=self.settings.tuned_weights,
                )
            )
        fallback = Generator(
            self.registry,
            default_max_tokens=self.settings.default_max_tokens,
            device=self.settings.device,
        )
        return EngineRouter(engines, fallback)

    def _uses_llama_cpp(self) -> bool:
        """Whether llama.cpp serves the models it can (``chat_engine``, vLLM, the device)."""
        choice = self.settings.chat_engine
        if choice == "torch":
            return False
        if choice == "llama.cpp":
            return True
        from ..engine.device import requested_device
        from ..engine.llama_cpp import llama_cpp_unavailable_reason

        if self._vllm is not None or llama_cpp_unavailable_reason() is not None:
            return False
        device = requested_device(self.settings.device)
        if device == "auto":
            import torch

            # A GPU serves the torch generator faster than llama.cpp's CPU build serves it.
            return not torch.cuda.is_available()
        return device == "cpu"

    def _check_chat_engine(self) -> None:
        """A chat engine asked for by name must be there: said at start, not at first chat."""
        if self.settings.chat_engine != "llama.cpp":
            return
        from ..engine.llama_cpp import llama_cpp_unavailable_reason

        reason = llama_cpp_unavailable_reason()
        if reason is not None:
            raise ConfigurationError(
                f"chat engine 'llama.cpp' cannot run: {reason}", param="chat_engine"
            )

    def _start_vllm(self, store: Store) -> None:
        """Start (or connect to) the vLLM engine, when the settings ask for one."""
        from ..engine.vllm import VllmService, vllm_setting

        setting = vllm_setting(self.settings.vllm)
        if setting is None:
            return
        base = self.registry.resolve(self.settings.vllm_model or self.registry.default_model)

        def adapters() -> list[Path]:
            models = [m.adapter_path for m in store.models.list_models() if m.base_model == base]
            checkpoints, _ = store.models.list_checkpoints()
            paths = models + [c.path for c in checkpoints if c.base_model == base]
            return [Path(p) for p in paths if (Path(p) / "adapter_config.json").is_file()]

        self._vllm = VllmService(
            setting,
            self.registry,
            base,
            adapters,
            log_dir=self.settings.data_dir / "logs",
            default_max_tokens=self.settings.default_max_tokens,
        )
        self._vllm.start()

    def start(self) -> None:
        """Lock the data folder, open the store, requeue interrupted jobs, start the workers."""
        self._check_chat_engine()
        self._lock.acquire()
        try:
            store = Store(self.settings.data_dir)
            requeued = store.jobs.requeue_held(None)
            if requeued:
                logger.info("requeued %d job(s) interrupted by the last shutdown", len(requeued))
            self._store = store
            self._catalog = ModelCatalog(store, self.registry)
            self._validator = FileValidator(store)
            self._validator.start()
            self._pool = WorkerPool(self.settings, store)
            self._pool.start()
            self._start_vllm(store)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the workers and threads, close the store and release the data folder."""
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
        if self._validator is not None:
            self._validator.stop()
            self._validator = None
        if self._vllm is not None:
            self._vllm.stop()
            self._vllm = None
        if self._generator is not None:
            self._generator.close()
            self._generator = None
        if self._store is not None:
            self._store.close()
            self._store = None
        self._lock.release()
