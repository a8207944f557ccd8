"""``LocalBackend``: the local server running in-process, with a configured ``openai`` client.

Example:
    >>> from finetune_kit.local import LocalBackend
    >>> with LocalBackend(default_model="tiny-random") as backend:  # doctest: +SKIP
    ...     client = backend.client()
    ...     print([m.id for m in client.models.list()][:2])
    ['smollm2-135m-instruct', 'tiny-random']
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, LocalBackendError
from .engine.device import check_device, default_workers, parse_gpus
from .engine.vllm import vllm_setting
from .faults import FaultInjector
from .server.app import LocalApp
from .server.exposure import exposure_refusal, exposure_warning
from .settings import (
    RequestLimits,
    ServerSettings,
    chat_engine_setting,
    executor_options,
    tuned_weights_setting,
)

if TYPE_CHECKING:
    import openai

__all__ = ["LocalBackend"]

logger = logging.getLogger("finetune_kit.local.server")

_PLACEHOLDER_KEY = "local"  # the openai client insists on some key; the server ignores it


def _degraded(response: Any) -> bool:
    """Whether a ``/health`` answer is the server's own ``degraded`` report."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("status") == "degraded"


class LocalBackend:
    """Runs the local backend in this process, on a free port, until stopped.

    Args:
        data_dir: Folder for the database, files and models; ``None`` uses a temporary folder
            removed on exit. Reuse a folder to keep files, jobs and models across runs.
        host: Interface to listen on.
        port: TCP port; ``0`` picks a free one.
        api_key: Require ``Authorization: Bearer <api_key>``; the clients made by
            ``client()`` send it.
        default_model: Base model OpenAI names map to (``"tiny-random"`` for tests).
        aliases: Extra model aliases, ``{"gpt-4o-mini": "tiny-random"}``.
        faults: Enable fault injection (see ``faults``), off by default.
        max_concurrent_jobs: Jobs training at once; ``0`` keeps jobs queued; ``None``: one per
            GPU the jobs are placed on (``gpus``), else 1.
        limits: Request size limits (default: OpenAI's).
        model_cache_dir: Where converted base models are cached (default: the registry's).
        training_step_delay: Seconds between training steps, to make tiny test jobs last.
        default_max_tokens: Chat completion length when a request sets none.
        startup_timeout: Seconds to wait for the server to answer ``/health``.
        log_level: Level of uvicorn's and the backend's loggers.
        model_dirs: Folders inside which clients may name a base model by its absolute path,
            besides the data folder's ``models/``; ``None`` reads
            ``$FINETUNE_KIT_LOCAL_MODEL_DIRS``.
        allow_no_key: Listen on a non-loopback ``host`` without an ``api_key``; refused
            otherwise, since every machine that can reach this one could use the server.
        device: Where jobs train and chat runs: ``"auto"`` (CUDA when present), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``, ``"mps"``; ``None`` reads ``$FINETUNE_KIT_LOCAL_DEVICE``.
        gpus: GPU ids to place jobs on, one per worker in turn (``"0,1"``, or a count such as
            ``4``); ``None`` reads ``$FINETUNE_KIT_LOCAL_GPUS``, else the machine's GPUs.
        qlora: Train on the base model quantized to 4 bits (CUDA and the ``qlora`` extra).
        vllm: Chat through vLLM for ``vllm_model``: ``"start"`` (``vllm serve`` here, the
            ``vllm`` extra) or a vLLM server's URL; ``None`` reads ``$FINETUNE_KIT_LOCAL_VLLM``.
        vllm_model: The base model vLLM serves (default: ``default_model``).
        chat_engine: What serves chat: ``"auto"`` (llama.cpp for every model it can load, when
            chat runs on the CPU; the torch generator for the rest), ``"llama.cpp"`` or
            ``"torch"``; ``None`` reads ``$FINETUNE_KIT_LOCAL_CHAT_ENGINE`` (docs/local-models.md).
        tuned_weights: How llama.cpp serves fine-tuned models and checkpoints: ``"adapter"``
            (their LoRA adapters applied per request to the shared base) or ``"merged"`` (each
            merged with its base once into a model of its own: as fast as the base, a process
            per tuned model in use); ``None`` reads ``$FINETUNE_KIT_LOCAL_TUNED_WEIGHTS``, else
            ``"adapter"`` (docs/local-models.md).
        executor: ``"local"`` trains jobs in worker processes here; ``"ray"`` runs them on a
            Ray cluster (docs/scale-out.md); ``None`` reads ``$FINETUNE_KIT_LOCAL_EXECUTOR``.
        ray_address: The Ray cluster (``host:port``, ``ray://host:10001``, ``auto``);
            ``None`` reads ``$FINETUNE_KIT_LOCAL_RAY_ADDRESS``, then ``$RAY_ADDRESS``.
        workers_per_job: Ray Train workers (data-parallel ranks) per job.
        resources_per_worker: Ray resources per worker, ``{"CPU": 2}`` or ``{"GPU": 1}``.
        ray_storage: Where Ray persists checkpoints and large inputs: a folder every node
            reaches or a URI (``s3://...``); default ``data_dir/ray``.

    Raises:
        ConfigurationError: ``host`` is not a loopback address, and there is no ``api_key``
            and no ``allow_no_key=True``; or ``device`` names a device torch does not see, or
            ``gpus`` is neither ids nor a count.

    Example:
        >>> backend = LocalBackend(default_model="tiny-random", faults=True)
        >>> with backend:  # doctest: +SKIP
        ...     backend.faults.script("POST", "/v1/files", ["429"])
        ...     client = backend.client()
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        default_model: str | None = None,
        aliases: Mapping[str, str] | None = None,
        faults: bool = False,
        max_concurrent_jobs: int | None = None,
        limits: RequestLimits | None = None,
        model_cache_dir: str | os.PathLike[str] | None = None,
        training_step_delay: float = 0.0,
        default_max_tokens: int = 512,
        startup_timeout: float = 60.0,
        log_level: str = "warning",
        model_dirs: Sequence[str | os.PathLike[str]] | None = None,
        allow_no_key: bool = False,
        device: str | None = None,
        gpus: str | int | Sequence[str | int] | None = None,
        qlora: bool = False,
        vllm: str | None = None,
        vllm_model: str | None = None,
        chat_engine: str | None = None,
        tuned_weights: str | None = None,
        executor: str | None = None,
        ray_address: str | None = None,
        workers_per_job: int | None = None,
        resources_per_worker: Mapping[str, float] | None = None,
        ray_storage: str | os.PathLike[str] | None = None,
    ) -> None:
        refusal = exposure_refusal(host, api_key, allow_no_key=allow_no_key)
        if refusal is not None:
            raise ConfigurationError(refusal, param="allow_no_key")
        # A device that is not there fails here, not in the first job.
        device = check_device(device)
        placed = parse_gpus(gpus)
        if max_concurrent_jobs is None:
            max_concurrent_jobs = default_workers(device, placed)
        vllm = vllm_setting(vllm)
        self._temp_dir: str | None = None
        if data_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="finetune_kit-local-")
            data_dir = self._temp_dir
        self.settings = ServerSettings(
            data_dir=Path(data_dir),
            api_key=api_key,
            default_model=default_model,
            aliases=aliases,
            max_concurrent_jobs=max_concurrent_jobs,
            limits=limits or RequestLimits(),
            faults=faults,
            model_cache_dir=Path(model_cache_dir) if model_cache_dir is not None else None,
            training_step_delay=training_step_delay,
            default_max_tokens=default_max_tokens,
            log_level=log_level,
            model_dirs=tuple(Path(d) for d in model_dirs) if model_dirs is not None else None,
            device=device,
            gpus=placed,
            qlora=qlora,
            vllm=vllm,
            vllm_model=vllm_model,
            chat_engine=chat_engine_setting(chat_engine),
            tuned_weights=tuned_weights_setting(tuned_weights),
            **executor_options(
                executor=executor,
                ray_address=ray_address,
                workers_per_job=workers_per_job,
                resources_per_worker=resources_per_worker,
                ray_storage=os.fspath(ray_storage) if ray_storage is not None else None,
            ),
        )
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._injector = FaultInjector() if faults else None
        self._app: LocalApp | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "running" if self._thread is not None else "stopped"
        key = "***" if self.settings.api_key else "None"
        return (
            f"LocalBackend({str(self.settings.data_dir)!r}, port={self.port}, api_key={key}, "
            f"{state})"
        )

    @property
    def data_dir(self) -> Path:
        """The data folder."""
        return self.settings.data_dir

    @property
    def api_key(self) -> str:
        """The key clients must send (a placeholder when the server requires none)."""
        return self.settings.api_key or _PLACEHOLDER_KEY

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of the server, ending in ``/v1``."""
        if self._thread is None:
            raise LocalBackendError("The local backend is not running; call start() first.")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def faults(self) -> FaultInjector:
        """The fault injection control: ``script``, ``set_probability``, ``latency``, ``clear``...

        Raises:
            LocalBackendError: Fault injection is off (start with ``faults=True``).
        """
        if self._injector is None:
            raise LocalBackendError(
                "Fault injection is off; create the backend with LocalBackend(faults=True)."
            )
        return self._injector

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes that train jobs (empty when stopped)."""
        return self._app.context.worker_pids if self._app is not None else []

    @property
    def engine_pids(self) -> list[int]:
        """Process ids of the running llama.cpp engine processes (one per base model in use)."""
        return self._app.context.engine_pids if self._app is not None else []

    def client(self, **kwargs: Any) -> openai.OpenAI:
        """Return an ``openai.OpenAI`` client for this server, with ``max_retries=0``.

        Args:
            **kwargs: More ``openai.OpenAI`` arguments (``timeout``...); they override ours.
        """
        import openai

        options: dict[str, Any] = {
            "base_url": self.base_url,
            "api_key": self.api_key,
            "max_retries": 0,
        }
        options.update(kwargs)
        return openai.OpenAI(**options)

    def async_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        """Return an ``openai.AsyncOpenAI`` client for this server, with ``max_retries=0``."""
        import openai

        options: dict[str, Any] = {
            "base_url": self.base_url,
            "api_key": self.api_key,
            "max_retries": 0,
        }
        options.update(kwargs)
        return openai.AsyncOpenAI(**options)

    def start(self) -> LocalBackend:
        """Start the server and wait until it answers ``/health``.

        Returns:
            ``self``.

        Raises:
            LocalBackendError: The server did not start (the data folder is in use, the port
                is taken, or it did not answer in time).
        """
        if self._thread is not None:
            return self
        import uvicorn

        # IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only
        # on connections whose socket says TCP, and with it on every answer waited ~40 ms for
        # the client's delayed ACK between its headers and its body.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise LocalBackendError(f"Cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = sock.getsockname()[1]
        warning = exposure_warning(self.host, self.settings.api_key)
        if warning is not None:
            logger.warning("%s", warning)
        self._app = LocalApp(self.settings, self._injector)
        config = uvicorn.Config(
            self._app,
            log_level=self.settings.log_level,
            proxy_headers=False,
            server_header=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        self._server = server
        startup_error: list[BaseException] = []

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # reported by start()
                startup_error.append(exc)

        self._thread = threading.Thread(target=run, name="finetune_kit-local-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._thread.join(5)
                self._thread = None
                sock.close()
                self._cleanup()
                reason = self._startup_failure(startup_error)
                raise LocalBackendError(f"The local backend did not start: {reason}")
            time.sleep(0.01)
        # uvicorn's flag says the socket listens; a request answered says the app serves.
        problem = self._await_health(deadline)
        if problem is not None:
            self.stop()
            raise LocalBackendError(
                f"The local backend started but /health did not answer within "
                f"{self.startup_timeout:g} s ({problem}); raise startup_timeout on a busy machine"
            )
        logger.debug("local backend on %s (data in %s)", self.base_url, self.data_dir)
        return self

    def _await_health(self, deadline: float) -> str | None:
        """Poll ``/health`` until it answers 200; return why it did not by ``deadline``."""
        import httpx

        url = self.base_url.removesuffix("/v1") + "/health"
        problem = "no answer"
        # trust_env=False: a proxy from the environment must not stand between us and loopback.
        with httpx.Client(trust_env=False) as http:
            while True:
                try:
                    # Never waiting past the deadline for one answer.
                    response = http.get(
                        url, timeout=max(0.1, min(5.0, deadline - time.monotonic()))
                    )
                    if response.status_code == 200:
                        return None
                    if response.status_code == 503 and _degraded(response):
                        # It serves: the workers or the validator are what fails, and /health
                        # says which; the server is up for the routes that do not need them.
                        logger.warning(
                            "the local backend started degraded: %s",
                            "; ".join(response.json().get("problems") or []),
                        )
                        return None
                    problem = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                if self._thread is None or not self._thread.is_alive():
                    return f"{problem}; the server thread has stopped"
                if time.monotonic() > deadline:
                    return problem
                time.sleep(0.01)

    def _startup_failure(self, errors: list[BaseException]) -> str:
        if errors and not isinstance(errors[0], SystemExit):
            return f"{type(errors[0]).__name__}: {errors[0]}"
        # uvicorn reports a failed lifespan startup by exiting; the lock error says why.
        from .store.lock import DataDirLock

        probe = DataDirLock(self.data_dir)
        try:
            probe.acquire()
        except LocalBackendError as exc:
            return str(exc)
        probe.release()
        return "see the log above (uvicorn exited during startup)"

    def stop(self) -> None:
        """Stop the server and its workers; a running job returns to the queue.

        A temporary data folder is removed.
        """
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(60)
            self._thread = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> LocalBackend:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
