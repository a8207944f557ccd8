"""Where the local engine computes: device choice, GPU placement and memory planning.

``--device`` (``finetune-kit local serve``), ``LocalBackend(device=...)``, ``serve(device=...)`` or
``$FINETUNE_KIT_LOCAL_DEVICE`` take ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. ``auto``
(the default) takes the first CUDA GPU torch sees, else the CPU. Asking for CUDA (or MPS) where
torch sees none fails when the server starts, with a message naming the setting and what is
missing, instead of a job failing later.

Several GPUs on one machine: each worker process (one job at a time) is given one GPU through
``CUDA_VISIBLE_DEVICES``, round-robin over the GPUs, and by default there are as many workers as
GPUs: one job per GPU. The GPUs are ``--gpus`` / ``$FINETUNE_KIT_LOCAL_GPUS`` (ids such as
``0,1,3``, or a count such as ``4`` for ``0,1,2,3``), else those the machine shows (from
``CUDA_VISIBLE_DEVICES`` or torch, which is only imported when an NVIDIA driver is present).

Memory: ``plan_memory`` chooses how many tokens one packed forward pass takes from the free GPU
memory and the model's shape, and turns gradient checkpointing on when even the longest example
would not fit otherwise. ``out_of_memory_message`` says what to try when a GPU runs out anyway.

Example:
    >>> requested_device("cuda:1")
    'cuda:1'
    >>> parse_gpus("3")
    ('0', '1', '2')
    >>> placement_gpus("auto", ("0", "1")), worker_gpu(3, ("0", "1"))
    (('0', '1'), '1')
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigurationError

__all__ = [
    "DEVICE_CHOICES",
    "DEVICE_ENV",
    "GPUS_ENV",
    "DeviceInfo",
    "MemoryPlan",
    "check_device",
    "default_workers",
    "detect_gpus",
    "is_out_of_memory",
    "out_of_memory_message",
    "parse_gpus",
    "placement_gpus",
    "plan_memory",
    "requested_device",
    "resolve_device",
    "worker_gpu",
]

DEVICE_ENV = "FINETUNE_KIT_LOCAL_DEVICE"
"""Environment variable read when no device is given: ``auto``, ``cpu``, ``cuda``, ``cuda:N``,
``mps``."""

GPUS_ENV = "FINETUNE_KIT_LOCAL_GPUS"
"""Environment variable read when no GPUs are given: ids (``0,1,3``) or a count (``4``)."""

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")

_DEVICE_PATTERN = re.compile(r"(auto|cpu|mps|cuda(?::\d+)?)")
_WHERE = "--device, LocalBackend(device=...) or $" + DEVICE_ENV
_GIB = 1024**3


def requested_device(value: str | None) -> str:
    """The device asked for: ``value``, else ``$FINETUNE_KIT_LOCAL_DEVICE``, else ``auto``.

    Args:
        value: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``None``.

    Raises:
        ConfigurationError: The value is none of these (``param="device"``).
    """
    raw = value if value is not None else os.environ.get(DEVICE_ENV) or "auto"
    text = raw.strip().lower()
    if not _DEVICE_PATTERN.fullmatch(text):
        raise ConfigurationError(
            f"device is {raw!r}; use one of {', '.join(DEVICE_CHOICES)} ({_WHERE})",
            param="device",
        )
    return text


@dataclass(frozen=True)
class DeviceInfo:
    """The device a model was placed on, as a job reports it.

    Attributes:
        name: ``cpu``, ``cuda:N`` (as the process sees it) or ``mps``.
        kind: ``cpu``, ``cuda`` or ``mps``.
        description: The card's name (``NVIDIA H100 80GB HBM3``), or ``N CPU cores``.
        total_memory: The card's memory in bytes (``None`` on CPU and MPS).
        bfloat16: Whether it multiplies bfloat16 natively.
        visible_devices: ``CUDA_VISIBLE_DEVICES`` of the process (which physical GPU
            ``cuda:0`` is), when set.
    """

    name: str
    kind: str
    description: str
    total_memory: int | None = None
    bfloat16: bool = False
    visible_devices: str | None = None

    def summary(self) -> str:
        """One line: ``cuda:0 (NVIDIA H100 80GB HBM3, 79 GiB, GPU 2)``."""
        parts = [self.description]
        if self.total_memory:
            parts.append(f"{self.total_memory / _GIB:.0f} GiB")
        if self.kind == "cuda" and self.visible_devices:
            parts.append(f"CUDA_VISIBLE_DEVICES={self.visible_devices}")
        return f"{self.name} ({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON object (an event's ``data``)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def _cpu_info() -> DeviceInfo:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    from .precision import cpu_bfloat16

    return DeviceInfo("cpu", "cpu", f"{cores} CPU cores", bfloat16=cpu_bfloat16())


def _no_cuda_reason(torch: Any) -> str:
    if getattr(torch.version, "cuda", None) is None:
        return (
            f"the installed torch {torch.__version__} is a CPU-only build; install a CUDA build "
            "of torch (see docs/gpu.md)"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    return "no NVIDIA GPU or driver was found (nvidia-smi shows what the driver sees)"


def resolve_device(requested: str | None = None) -> DeviceInfo:
    """Turn a requested device into the one to compute on (imports torch).

    Args:
        requested: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``, or ``None`` for
            ``$FINETUNE_KIT_LOCAL_DEVICE`` (default ``auto``: CUDA when torch sees a GPU).

    Returns:
        The device, with its name, memory and bfloat16 support.

    Raises:
        ConfigurationError: The value is not a device, or names one torch does not see; the
            message names the setting and what is missing (``param="device"``).

    Example:
        >>> resolve_device("cpu").kind
        'cpu'
    """
    import torch

    value = requested_device(requested)
    if value == "cpu":
        return _cpu_info()
    if value == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigurationError(
                f"device is 'mps', but torch sees no Apple GPU (MPS); use --device cpu ({_WHERE})",
                param="device",
            )
        return DeviceInfo("mps", "mps", "Apple GPU (MPS)", bfloat16=True)
    if value == "auto" and not torch.cuda.is_available():
        return _cpu_info()
    if not torch.cuda.is_available():
        raise ConfigurationError(
            f"device is {value!r}, but torch sees no CUDA GPU: {_no_cuda_reason(torch)}; or "
            f"train on the CPU with --device cpu ({_WHERE})",
            param="device",
        )
    index = int(value.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigurationError(
            f"device is {value!r}, but torch sees {count} CUDA GPU(s) (cuda:0 to "
            f"cuda:{count - 1}); pick one of those ({_WHERE})",
            param="device",
        )
    properties = torch.cuda.get_device_properties(index)
    return DeviceInfo(
        name=f"cuda:{index}",
        kind="cuda",
        description=str(properties.name),
        total_memory=int(properties.total_memory),
        bfloat16=bool(torch.cuda.is_bf16_supported()),
        visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
    )


def check_device(requested: str | None) -> str:
    """Check, when a server starts, that the requested device exists; return the request.

    ``auto`` and ``cpu`` always exist and are checked without importing torch (the server
    imports it only to chat); ``cuda``, ``cuda:N`` and ``mps`` are looked up.

    Raises:
        ConfigurationError: As ``resolve_device``.
    """
    value = requested_device(requested)
    if value not in ("auto", "cpu"):
        resolve_device(value)
    return value


def parse_gpus(value: str | int | Sequence[str | int] | None) -> tuple[str, ...] | None:
    """Read a GPU setting: ids (``"0,1,3"``, ``[0, 1]``) or a count (``"4"``, ``4``).

    Args:
        value: The setting; ``None`` reads ``$FINETUNE_KIT_LOCAL_GPUS`` (``None`` when unset).

    Returns:
        The GPU ids, or ``None`` when nothing is configured.

    Raises:
        ConfigurationError: Neither ids nor a count (``param="gpus"``).
    """
    raw: Any = value if value is not None else os.environ.get(GPUS_ENV)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raw = str(raw)
    if isinstance(raw, int):
        raw = str(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if text.isdigit() and "," not in text:
            return tuple(str(i) for i in range(int(text)))
        items = [part.strip() for part in text.split(",")]
    else:
        items = [str(part).strip() for part in raw]
    if not items or not all(item.isdigit() for item in items) or len(set(items)) != len(items):
        raise ConfigurationError(
            f"gpus is {raw!r}; give GPU ids such as '0,1,3' or a count such as '4' (--gpus, "
            f"LocalBackend(gpus=...) or ${GPUS_ENV})",
            param="gpus",
        )
    return tuple(items)


def _nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia/gpus").is_dir() or Path("/dev/nvidiactl").exists()


def detect_gpus() -> tuple[str, ...]:
    """The GPU ids this machine shows the server, without importing torch where none can be.

    ``CUDA_VISIBLE_DEVICES`` when set (its entries, as CUDA numbers them); else, when an NVIDIA
    driver is present, one id per GPU torch counts; else none.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [e.strip() for e in visible.split(",") if e.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU.
        kept: list[str] = []
        for entry in entries:
            if entry.startswith("-"):
                break
            kept.append(entry)
        return tuple(kept)
    if not _nvidia_driver_present():
        return ()
    import torch

    return tuple(str(i) for i in range(torch.cuda.device_count()))


def placement_gpus(device: str, configured: Sequence[str] | None) -> tuple[str, ...]:
    """The GPUs the worker pool spreads jobs over, one per worker (none: no placement).

    ``cpu`` and ``mps`` place nothing; ``cuda:N`` pins every job to that GPU (the workers keep
    the server's ``CUDA_VISIBLE_DEVICES``); ``auto`` and ``cuda`` use the configured GPUs, else
    those detected.

    Args:
        device: The requested device (``requested_device``'s value).
        configured: ``parse_gpus``' value.
    """
    if device in ("cpu", "mps") or device.startswith("cuda:"):
        return ()
    if configured is not None:
        return tuple(configured)
    return detect_gpus()


def worker_gpu(index: int, gpus: Sequence[str]) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` for worker ``index``: the GPUs in turn, ``None`` without any."""
    if not gpus:
        return None
    return gpus[index % len(gpus)]


# -- memory ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryPlan:
    """How a training run uses a GPU's memory.

    Attributes:
        pack_tokens: Tokens per packed forward pass (examples beyond it go to the next pass,
            gradients accumulating).
        gradient_checkpointing: Recompute each layer's activations in the backward pass (less
            memory, about a third more compute).
        free_bytes: Free memory when the plan was made (after the weights were placed).
        bytes_per_token: The estimated activation memory of one token.
    """

    pack_tokens: int
    gradient_checkpointing: bool
    free_bytes: int | None = None
    bytes_per_token: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON object."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def _text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config


def activation_bytes_per_token(config: Any, *, checkpointing: bool, dtype_bytes: int = 2) -> int:
    """Estimated memory one token's activations take through a LoRA training step.

    Without checkpointing every layer keeps its inputs to the attention and MLP products, their
    intermediate outputs and the adapters' inputs (about ``16 h + 5 i`` values per layer, with
    ``h`` the hidden size and ``i`` the MLP width); with it, each layer keeps only its input and
    one layer's worth is live during recomputation. The output layer's logits (kept in float32
    with their gradient) are counted for every token, as if all were trained.

    Example:
        >>> from types import SimpleNamespace
        >>> c = SimpleNamespace(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        ...                     vocab_size=151936)
        >>> activation_bytes_per_token(c, checkpointing=False) // 1024
        3295
    """
    text = _text_config(config)
    hidden = int(text.hidden_size)
    inner = int(getattr(text, "intermediate_size", 4 * hidden))
    layers = int(text.num_hidden_layers)
    vocab = int(getattr(text, "vocab_size", 32000))
    per_layer = (16 * hidden + 5 * inner) * dtype_bytes
    body = (layers * hidden * dtype_bytes + per_layer) if checkpointing else layers * per_layer
    logits = vocab * (dtype_bytes + 4 + 4)
    return body + logits


def plan_memory(
    config: Any,
    *,
    free_bytes: int | None,
    longest_example: int,
    default_pack: int,
    headroom: float = 0.6,
    max_pack: int = 65536,
) -> MemoryPlan:
    """Choose the tokens per packed forward pass, and checkpointing, from the free memory.

    Args:
        config: The model's config (hidden size, MLP width, layers, vocabulary).
        free_bytes: Free device memory once the weights are placed; ``None`` (a CPU) keeps
            ``default_pack`` without checkpointing.
        longest_example: Tokens of the longest example (a pack holds at least one).
        default_pack: The pack size used on a CPU.
        headroom: Share of the free memory the activations may use (the rest: the allocator's
            fragmentation, the optimizer's temporaries, the CUDA context).
        max_pack: The most tokens per pass, however much memory is free.

    Returns:
        The plan. When even one example does not fit with checkpointing, it keeps
        checkpointing and the example's length: the step may then run out of memory, which
        fails the job with ``out_of_memory_message``.

    Example:
        >>> from types import SimpleNamespace
        >>> c = SimpleNamespace(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        ...                     vocab_size=151936)
        >>> plan_memory(c, free_bytes=70 * 1024**3, longest_example=1000, default_pack=2048)
        ... # doctest: +ELLIPSIS
        MemoryPlan(pack_tokens=13312, gradient_checkpointing=False, ...)
        >>> plan_memory(c, free_bytes=2 * 1024**3, longest_example=1000, default_pack=2048)
        ... # doctest: +ELLIPSIS
        MemoryPlan(pack_tokens=1000, gradient_checkpointing=True, ...)
    """
    if free_bytes is None:
        return MemoryPlan(max(default_pack, longest_example), False)
    budget = free_bytes * headroom
    for checkpointing in (False, True):
        per_token = activation_bytes_per_token(config, checkpointing=checkpointing)
        fits = int(budget // per_token)
        if fits >= longest_example:
            # Multiples of 256 tokens keep the products' shapes friendly to the GPU's tiles.
            tokens = min(max_pack, max(longest_example, fits // 256 * 256))
            return MemoryPlan(tokens, checkpointing, free_bytes, per_token)
    per_token = activation_bytes_per_token(config, checkpointing=True)
    return MemoryPlan(longest_example, True, free_bytes, per_token)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception is a device (or host) running out of memory."""
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text.lower() or "can't allocate memory" in text
    )


def out_of_memory_message(
    device: DeviceInfo,
    *,
    batch_size: int,
    pack_tokens: int,
    longest_example: int,
    checkpointing: bool,
) -> str:
    """What a job that ran out of memory says: where, with what, and what to try instead.

    Example:
        >>> out_of_memory_message(DeviceInfo("cuda:0", "cuda", "NVIDIA L4", 24 * 1024**3),
        ...     batch_size=8, pack_tokens=4096, longest_example=4000, checkpointing=True)
        ... # doctest: +ELLIPSIS
        'Out of memory on cuda:0 (NVIDIA L4, 24 GiB) ... try batch_size=4 and max_seq_len=2000...'
    """
    smaller_batch = max(1, batch_size // 2)
    tries = [f"batch_size={smaller_batch}"] if batch_size > 1 else []
    if longest_example > 256:
        tries.append(f"max_seq_len={max(256, longest_example // 2)}")
    advice = " and ".join(tries) if tries else "a smaller model"
    return (
        f"Out of memory on {device.summary()} while training (batch_size={batch_size}, "
        f"{pack_tokens} tokens per forward pass, longest example {longest_example} tokens, "
        f"gradient checkpointing {'on' if checkpointing else 'off'}); try {advice}, QLoRA "
        "(qlora=true: the base model in 4-bit), or a GPU with more free memory "
        "(nvidia-smi shows what else uses it)."
    )


def summary_for_event(device: DeviceInfo, details: Mapping[str, Any]) -> str:
    """The message of a job's device event: where, in which dtype, how many tokens per pass.

    Example:
        >>> summary_for_event(DeviceInfo("cpu", "cpu", "2 CPU cores"),
        ...     {"dtype": "float32", "pack_tokens": 2048, "gradient_checkpointing": False})
        'Training on cpu (2 CPU cores) in float32, 2048 tokens per forward pass'
    """
    parts = [f"Training on {device.summary()}"]
    if details.get("qlora"):
        parts.append(" with QLoRA (the base model in 4-bit)")
    if details.get("dtype"):
        parts.append(f" in {details['dtype']}")
    if details.get("pack_tokens"):
        parts.append(f", {details['pack_tokens']} tokens per forward pass")
    if details.get("gradient_checkpointing"):
        parts.append(", gradient checkpointing on")
    return "".join(parts)


def gib(value: int | None) -> str:
    """Bytes as GiB, for messages (``"n/a"`` for ``None``)."""
    return "n/a" if value is None else f"{value / _GIB:.1f} GiB"


def default_workers(device: str | None, gpus: str | int | Sequence[str | int] | None) -> int:
    """Worker processes (jobs at once) when none is configured: one per placed GPU, else 1.

    Example:
        >>> default_workers("auto", "0,1,2"), default_workers("cpu", "4")
        (3, 1)
    """
    placed = placement_gpus(requested_device(device), parse_gpus(gpus))
    return max(1, len(placed))
