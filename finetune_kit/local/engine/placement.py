"""Putting a model on its device for training: dtype, QLoRA, memory plan, out-of-memory errors.

``TrainingPlacement.choose`` decides, before the model is loaded, where and how it trains:
the device (``device.resolve_device``), the dtype (bfloat16 where the device multiplies it
natively, see ``precision``) and whether the base is quantized to 4 bits (QLoRA, the ``qlora``
extra: bitsandbytes; CUDA only). ``load_options`` is what ``ModelRegistry.load`` passes to
``from_pretrained`` so a large model is read straight onto the GPU in its final dtype, never
as a float32 copy in host memory first. Once the adapter is attached, ``plan`` sizes the
packed forward passes from the free GPU memory and turns gradient checkpointing on when the
longest example would not fit otherwise (``device.plan_memory``).

Example:
    >>> placement = TrainingPlacement.choose(device="cpu", dtype="float32", qlora=False,
    ...                                      tiny=True)
    >>> placement.device.kind, placement.dtype, placement.qlora
    ('cpu', 'float32', False)
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigurationError
from .device import DeviceInfo, MemoryPlan, plan_memory, resolve_device
from .precision import resolve_dtype

__all__ = ["TrainingPlacement", "flash_attention_available", "release_memory"]

logger = logging.getLogger("finetune_kit.local.training")


def flash_attention_available() -> bool:
    """Whether the ``flash-attn`` package (variable-length CUDA kernels) is installed."""
    return importlib.util.find_spec("flash_attn") is not None


def release_memory(device: DeviceInfo | None) -> None:
    """Return a finished (or failed) run's cached GPU memory, so the next job finds it free."""
    gc.collect()
    if device is not None and device.kind == "cuda":
        import torch

        with contextlib.suppress(RuntimeError):  # a broken context has nothing to release
            torch.cuda.empty_cache()


@dataclass(frozen=True)
class TrainingPlacement:
    """Where and how a run trains.

    Attributes:
        device: The device.
        dtype: ``"float32"`` or ``"bfloat16"`` (the frozen base weights and the products).
        qlora: The base model is quantized to 4 bits (NF4) and the adapter kept in bfloat16.
    """

    device: DeviceInfo
    dtype: str
    qlora: bool = False

    @classmethod
    def choose(
        cls, *, device: str | None, dtype: str | None, qlora: bool, tiny: bool
    ) -> TrainingPlacement:
        """Resolve the device and dtype of a run, and check QLoRA can run there.

        Args:
            device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``None`` (see
                ``device.resolve_device``).
            dtype: ``auto``, ``float32``, ``bfloat16`` or ``None`` (see ``precision``).
            qlora: Quantize the base model to 4 bits.
            tiny: The model is ``tiny-random`` (computes in float32 under ``auto``).

        Raises:
            ConfigurationError: The device does not exist, or QLoRA was asked for off CUDA, on
                ``tiny-random`` or without bitsandbytes (``param`` names the setting).
        """
        info = resolve_device(device)
        chosen = resolve_dtype(dtype, tiny=tiny, device=info)
        if qlora:
            if info.kind != "cuda":
                raise ConfigurationError(
                    f"qlora needs a CUDA GPU (bitsandbytes' 4-bit kernels), but this job trains "
                    f"on {info.summary()}; train without qlora, or on a GPU (--device cuda)",
                    param="qlora",
                )
            if tiny:
                raise ConfigurationError(
                    "qlora quantizes a base model read from a folder or .gguf file; tiny-random "
                    "is built in memory, so train it without qlora",
                    param="qlora",
                )
            if importlib.util.find_spec("bitsandbytes") is None:
                raise ConfigurationError(
                    "qlora needs bitsandbytes: pip install 'finetune-kit[qlora]'", param="qlora"
                )
            # The 4-bit products dequantize to bfloat16 (or float16 on older cards).
            chosen = "bfloat16" if info.bfloat16 else "float32"
        return cls(info, chosen, qlora)

    def torch_dtype(self) -> Any:
        """The ``torch.dtype`` of the frozen weights."""
        import torch

        return torch.bfloat16 if self.dtype == "bfloat16" else torch.float32

    def load_options(self) -> dict[str, Any]:
        """Keyword arguments for ``ModelRegistry.load``: dtype, device and quantization."""
        options: dict[str, Any] = {"dtype": self.torch_dtype(), "device": self.device.name}
        if self.qlora:
            import torch
            from transformers import BitsAndBytesConfig

            compute = torch.bfloat16 if self.device.bfloat16 else torch.float16
            config_class: Any = BitsAndBytesConfig  # untyped in transformers
            options["quantization_config"] = config_class(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=compute,
            )
        return options

    def place(self, model: Any) -> Any:
        """Move a loaded model to the device and dtype (a no-op where the loader did it)."""
        if self.qlora:
            from peft import prepare_model_for_kbit_training

            prepare: Any = prepare_model_for_kbit_training  # untyped in peft
            # Norms and embeddings in float32 for stable 4-bit training; checkpointing is
            # decided by the memory plan, later.
            return prepare(model, use_gradient_checkpointing=False)
        model.to(device=self.device.name, dtype=self.torch_dtype())
        return model

    def adapter_to_bfloat16(self, peft_model: Any) -> None:
        """QLoRA's adapter in bfloat16, as the base's products (peft makes it float32)."""
        if not self.qlora or not self.device.bfloat16:
            return
        import torch

        for name, parameter in peft_model.named_parameters():
            if parameter.requires_grad and "lora_" in name:
                parameter.data = parameter.data.to(torch.bfloat16)

    def free_bytes(self) -> int | None:
        """Free memory on the device now (``None`` off CUDA: the CPU's is not planned)."""
        if self.device.kind != "cuda":
            return None
        import torch

        free, _ = torch.cuda.mem_get_info(self.device.name)
        return int(free)

    def plan(
        self,
        peft_model: Any,
        *,
        longest_example: int,
        default_pack: int,
        checkpointing: bool | None,
    ) -> MemoryPlan:
        """Size the packed passes and turn on gradient checkpointing where needed.

        Args:
            peft_model: The model with its adapter, on the device.
            longest_example: Tokens of the longest example (or preference pair).
            default_pack: Tokens per pass on a CPU.
            checkpointing: ``True`` or ``False`` to force gradient checkpointing; ``None``
                decides from the memory.
        """
        plan = plan_memory(
            peft_model.config,
            free_bytes=self.free_bytes(),
            longest_example=longest_example,
            default_pack=default_pack,
        )
        if checkpointing is not None and checkpointing != plan.gradient_checkpointing:
            plan = MemoryPlan(
                plan.pack_tokens, checkpointing, plan.free_bytes, plan.bytes_per_token
            )
        if plan.gradient_checkpointing:
            base = peft_model.get_base_model()
            # Non-reentrant checkpointing needs no inputs that require gradients (the
            # embeddings are frozen), and works with the packed attention's keyword arguments.
            base.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        logger.debug("memory plan on %s: %s", self.device.name, plan)
        return plan
