"""A tuned model's weights, in the forms other tools load.

``export_weights`` writes one of ``WEIGHT_FORMATS`` for a fine-tuned model or checkpoint (a
base model and a peft adapter folder):

- ``adapter``: the peft folder alone (``adapter_config.json``, ``adapter_model.safetensors``),
  for ``PeftModel.from_pretrained`` on the base.
- ``hf``: a merged Hugging Face folder (``model.safetensors``, ``config.json``, the tokenizer and
  its chat template), for ``AutoModelForCausalLM.from_pretrained`` alone: the adapter's update
  added into the float32 base weights training used (``merge_and_unload``).
- ``gguf``: llama.cpp's files: ``base.gguf`` (the very base the local backend serves) with
  ``adapter.gguf`` (the GGUF LoRA adapter), which together compute exactly what the server
  computes; ``merged.gguf`` (one file: a float base keeps its precision, a quantized one's
  adapted tensors are Q8_0, so answers may drift from the server's after a few tokens); and
  Ollama's ``Modelfile`` (merged) and ``Modelfile.adapter`` (base + ``ADAPTER``).

Each form is written into a staging folder and renamed, so a folder that exists is whole.

Example:
    >>> WEIGHT_FORMATS
    ('adapter', 'hf', 'gguf')
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from ...errors import ConfigurationError, LocalBackendError
from ._quiet import quiet_loading
from .gguf import (
    UnsupportedModelError,
    merge_adapter_gguf,
    ollama_modelfile,
    write_adapter_gguf,
)
from .llama_cpp import base_layout, served_base_gguf
from .registry import ModelRegistry

__all__ = ["WEIGHT_FORMATS", "describe_format", "export_weights"]

logger = logging.getLogger("finetune_kit.local.export")

WEIGHT_FORMATS = ("adapter", "hf", "gguf")
"""The forms a tuned model's weights are exported in (see the module docstring)."""

_DESCRIPTIONS = {
    "adapter": "the LoRA adapter alone, a peft folder (load it on the base model with peft)",
    "hf": "a merged Hugging Face folder: safetensors, config, tokenizer and chat template",
    "gguf": "GGUF for llama.cpp and Ollama: base.gguf + adapter.gguf (the server's exact "
    "computation), merged.gguf, and a Modelfile for each",
}
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "README.md")
_MARKER = "finetune_kit-export.json"


def describe_format(name: str) -> str:
    """One line saying what an export format holds."""
    return _DESCRIPTIONS[name]


def _check_format(name: str) -> None:
    if name not in WEIGHT_FORMATS:
        raise ConfigurationError(
            f"weights format {name!r}; use one of {', '.join(WEIGHT_FORMATS)}", param="format"
        )


def _copy(source: Path, target: Path) -> None:
    """Hard-link when the file system allows (a base model is large), else copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _write_adapter(adapter: Path, out: Path) -> None:
    for name in _ADAPTER_FILES:
        if (adapter / name).is_file():
            shutil.copy2(adapter / name, out / name)


def _write_hf(registry: ModelRegistry, base: str, adapter: Path, out: Path) -> None:
    import torch
    from peft import PeftModel

    model, tokenizer = registry.load(base, shared=False, dtype=torch.float32)
    with quiet_loading():
        tuned: Any = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
        merged = tuned.merge_and_unload()
    if hasattr(merged.config, "quantization_config"):
        del merged.config.quantization_config
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _write_gguf(registry: ModelRegistry, base: str, adapter: Path, out: Path, name: str) -> None:
    layout = base_layout(registry, base)  # refuses a base with no GGUF form, saying why
    base_file = served_base_gguf(registry, base)
    _copy(base_file, out / "base.gguf")
    write_adapter_gguf(adapter, layout, out / "adapter.gguf", force=True)
    merge_adapter_gguf(adapter, base_file, out / "merged.gguf", name=name)
    template = getattr(registry.tokenizer(base), "chat_template", None)
    template = template if isinstance(template, str) else None
    (out / "Modelfile").write_text(
        ollama_modelfile("./merged.gguf", chat_template=template), encoding="utf-8"
    )
    (out / "Modelfile.adapter").write_text(
        ollama_modelfile("./base.gguf", adapter_file="./adapter.gguf", chat_template=template),
        encoding="utf-8",
    )


def export_weights(
    registry: ModelRegistry,
    base: str,
    adapter: Path,
    out: Path,
    format_name: str,
    *,
    name: str = "",
) -> Path:
    """Write a tuned model's weights in one form into the folder ``out``.

    An ``out`` written before for the same adapter weights is kept as it is.

    Args:
        registry: Resolves and loads the base model.
        base: The base model the adapter was trained on.
        adapter: The peft adapter folder.
        out: The folder to write (replaced when older than the adapter).
        format_name: One of ``WEIGHT_FORMATS``.
        name: The model's name, written into ``merged.gguf``.

    Returns:
        ``out``.

    Raises:
        ConfigurationError: An unknown format, or a model with no form in it (a base or adapter
            llama.cpp cannot take, for ``gguf``).
        LocalBackendError: The files cannot be read or written.
    """
    _check_format(format_name)
    adapter = Path(adapter)
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise LocalBackendError(f"no adapter weights in {adapter}")
    marker = out / _MARKER
    if marker.is_file() and marker.stat().st_mtime >= weights.stat().st_mtime:
        return out
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        if format_name == "adapter":
            _write_adapter(adapter, staging)
        elif format_name == "hf":
            _write_hf(registry, base, adapter, staging)
        else:
            _write_gguf(registry, base, adapter, staging, name or adapter.name)
        (staging / _MARKER).write_text(
            json.dumps({"format": format_name, "base_model": base, "name": name}),
            encoding="utf-8",
        )
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    except UnsupportedModelError as exc:
        raise ConfigurationError(
            f"{name or adapter} has no {format_name} export: {exc}", param="format"
        ) from exc
    except OSError as exc:
        raise LocalBackendError(f"cannot write the {format_name} export into {out}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported %s as %s into %s", name or adapter, format_name, out)
    return out
