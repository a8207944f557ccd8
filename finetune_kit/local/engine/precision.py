"""Which floating-point type the local engine computes in.

``bfloat16`` halves the memory traffic of every weight and, on CPUs with native bfloat16
instructions (``avx512_bf16`` or AMX: recent AMD EPYC/Ryzen and Intel Xeon), multiplies matrices
2 to 3 times faster than ``float32``; so do NVIDIA GPUs from Ampere (A100, RTX 30xx) on. The
engine then keeps the frozen base weights in bfloat16, trains the LoRA adapter in float32 (its
master weights and optimizer state) and runs the forward pass under autocast. Elsewhere, and for
the ``tiny-random`` test model (whose runs must be bit-for-bit repeatable across machines), it
computes in float32.

``FINETUNE_KIT_LOCAL_DTYPE`` (``auto``, ``float32`` or ``bfloat16``) overrides the choice.

Example:
    >>> resolve_dtype("float32", tiny=False)
    'float32'
    >>> resolve_dtype("auto", tiny=True)
    'float32'
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Literal

from ...errors import ConfigurationError

if TYPE_CHECKING:
    from .device import DeviceInfo

__all__ = ["DtypeName", "cpu_bfloat16", "native_bfloat16", "resolve_dtype"]

DtypeName = Literal["auto", "float32", "bfloat16"]
_CHOICES = ("auto", "float32", "bfloat16")


@functools.lru_cache(maxsize=1)
def native_bfloat16() -> bool:
    """Whether this machine multiplies bfloat16 matrices natively (CUDA, or CPU flags on Linux)."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    return cpu_bfloat16()


@functools.lru_cache(maxsize=1)
def cpu_bfloat16() -> bool:
    """Whether this machine's CPU multiplies bfloat16 matrices natively (flags, on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_dtype(
    requested: str | None, *, tiny: bool, device: DeviceInfo | None = None
) -> Literal["float32", "bfloat16"]:
    """Turn a requested dtype (or ``None``/``"auto"``) into the one to compute in.

    Args:
        requested: ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``None`` (the environment's
            ``FINETUNE_KIT_LOCAL_DTYPE``, else ``"auto"``).
        tiny: The model is the tiny test model: ``"auto"`` then means float32.
        device: The device the model computes on (``device.resolve_device``); ``None``: CUDA
            when present, else the CPU.

    Raises:
        ConfigurationError: The value is none of the choices.
    """
    value = requested or os.environ.get("FINETUNE_KIT_LOCAL_DTYPE") or "auto"
    if value not in _CHOICES:
        raise ConfigurationError(
            f"dtype is {value!r}; use one of {', '.join(_CHOICES)}", param="dtype"
        )
    if value == "auto":
        native = device.bfloat16 if device is not None else native_bfloat16()
        return "bfloat16" if not tiny and native else "float32"
    return "bfloat16" if value == "bfloat16" else "float32"
