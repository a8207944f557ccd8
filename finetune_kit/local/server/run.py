"""Run the local backend in the foreground: ``serve()``, behind ``finetune-kit local serve``.

Example:
    >>> import inspect
    >>> list(inspect.signature(serve).parameters)[:5]
    ['host', 'port', 'data_dir', 'api_key', 'default_model']
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..._served import default_data_dir, find_served, publish, withdraw
from ...errors import ConfigurationError, LocalBackendError
from ..engine.device import check_device, default_workers, parse_gpus
from ..engine.vllm import vllm_setting
from ..settings import (
    RequestLimits,
    ServerSettings,
    chat_engine_setting,
    executor_options,
    tuned_weights_setting,
)
from .app import LocalApp
from .exposure import exposure_refusal, exposure_warning

__all__ = ["default_data_dir", "serve"]

logger = logging.getLogger("finetune_kit.local.server")


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: str | os.PathLike[str] | None = None,
    api_key: str | None = None,
    default_model: str | None = None,
    aliases: Mapping[str, str] | None = None,
    *,
    max_concurrent_jobs: int | None = None,
    faults: bool = False,
    limits: RequestLimits | None = None,
    model_cache_dir: str | os.PathLike[str] | None = None,
    log_level: str = "info",
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
    ray_storage: str | None = None,
) -> None:
    """Run the local backend until interrupted (Ctrl-C); blocks.

    Jobs interrupted by the stop resume from their last checkpoint at the next start on the
    same ``data_dir``.

    Args:
        host: Interface to listen on; keep ``127.0.0.1`` unless the machine's network is
            trusted (then set an ``api_key``). Any other address is logged as a warning.
        port: TCP port.
        data_dir: Folder for the database, files and models; default ``default_data_dir()``.
        api_key: Require ``Authorization: Bearer <api_key>`` on every request.
        default_model: Base model OpenAI names map to (default: the registry's,
            ``smollm2-135m-instruct``).
        aliases: Extra model aliases, ``{"gpt-4o-mini": "tiny-random"}``.
        max_concurrent_jobs: Jobs training at once, each in its own worker process; ``None``:
            one per GPU the jobs are placed on (``gpus``), else 1.
        faults: Enable fault injection and its ``/_faults`` admin routes (for tests).
        limits: Request size limits (default: OpenAI's).
        model_cache_dir: Where converted base models are cached.
        log_level: ``debug``, ``info``, ``warning``...
        model_dirs: Folders inside which clients may name a base model by its absolute path,
            besides the data folder's ``models/``; ``None`` reads
            ``$FINETUNE_KIT_LOCAL_MODEL_DIRS``.
        allow_no_key: Listen on a non-loopback ``host`` without an ``api_key``; refused
            otherwise, since every machine that can reach this one could use the server.
        device: Where jobs train and chat runs: ``auto`` (CUDA when present), ``cpu``,
            ``cuda``, ``cuda:N`` or ``mps``; ``None`` reads ``$FINETUNE_KIT_LOCAL_DEVICE``.
        gpus: GPU ids to place jobs on, one per worker in turn (``"0,1"``, or a count);
            ``None`` reads ``$FINETUNE_KIT_LOCAL_GPUS``, else the machine's GPUs.
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
        executor: ``"local"`` (worker processes here) or ``"ray"`` (a Ray cluster, see
            docs/scale-out.md); ``None`` reads ``$FINETUNE_KIT_LOCAL_EXECUTOR``.
        ray_address: The Ray cluster; ``None`` reads ``$FINETUNE_KIT_LOCAL_RAY_ADDRESS``, then
            ``$RAY_ADDRESS``, else ``auto``.
        workers_per_job: Ray Train workers per job; ``None`` reads
            ``$FINETUNE_KIT_LOCAL_WORKERS_PER_JOB``, else 1.
        resources_per_worker: Ray resources per worker (``{"GPU": 1}``); ``None`` reads
            ``$FINETUNE_KIT_LOCAL_RESOURCES_PER_WORKER`` (JSON), else one CPU.
        ray_storage: Where Ray persists runs (a shared folder or URI); ``None`` reads
            ``$FINETUNE_KIT_LOCAL_RAY_STORAGE``, else ``data_dir/ray``.

    While it runs, ``data_dir/server.json`` says where (never the key): sessions and CLI
    commands on that folder use this server instead of starting one in their own process.

    Raises:
        ConfigurationError: ``host`` is not a loopback address, and there is no ``api_key``
            and no ``allow_no_key=True``; or ``device`` names a device torch does not see.
        LocalBackendError: A server already runs for ``data_dir``.

    Example:
        ``finetune-kit local serve --port 8000`` runs ``serve(port=8000)``; then::

            client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="local")
    """
    refusal = exposure_refusal(host, api_key, allow_no_key=allow_no_key)
    if refusal is not None:
        raise ConfigurationError(refusal, param="allow_no_key")
    # A device that is not there fails now, before the port opens, not in the first job.
    device = check_device(device)
    placed = parse_gpus(gpus)
    if max_concurrent_jobs is None:
        max_concurrent_jobs = default_workers(device, placed)
    vllm = vllm_setting(vllm)
    import uvicorn

    settings = ServerSettings(
        data_dir=Path(data_dir) if data_dir is not None else default_data_dir(),
        api_key=api_key,
        default_model=default_model,
        aliases=aliases,
        max_concurrent_jobs=max_concurrent_jobs,
        faults=faults,
        limits=limits or RequestLimits(),
        model_cache_dir=Path(model_cache_dir) if model_cache_dir is not None else None,
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
            ray_storage=ray_storage,
        ),
    )
    logging.getLogger("finetune_kit.local").setLevel(log_level.upper())
    running = find_served(settings.data_dir)
    if running is not None:
        # Checked before the record is rewritten, so the running server stays findable.
        raise LocalBackendError(
            f"finetune-kit local serve already runs for {settings.data_dir} at {running.url} "
            f"(pid {running.pid}); commands on this data folder use it. Stop it first, or "
            "serve another --data-dir"
        )
    app = LocalApp(settings)
    logger.info("serving on http://%s:%d/v1 with data in %s", host, port, settings.data_dir)
    warning = exposure_warning(host, api_key)
    if warning is not None:
        logger.warning("%s", warning)
    if port:
        # Sessions and CLI commands on this data folder find the server by this record and
        # use it instead of loading the model in their own process (see finetune_kit/_served).
        publish(
            settings.data_dir,
            host=host,
            port=port,
            default_model=app.context.registry.default_model,
            api_key_required=bool(api_key),
        )
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        withdraw(settings.data_dir)
