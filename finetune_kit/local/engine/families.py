"""What differs between model architectures: LoRA targets, end-of-turn tokens, context length.

The engine trains and serves any causal language model ``transformers`` loads, with its own chat
template (``chat_format`` renders with the tokenizer's). What it must know per architecture is
gathered here, keyed by the config's ``model_type``:

- the linear layers that get a LoRA adapter: every projection of the attention and the MLP
  (peft's own table, ``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``, lists only the query
  and value projections; this one adds the rest, and for an architecture neither knows, every
  linear layer but the output one, found in the model);
- the tokens that end an assistant turn (``<|im_end|>``, ``<|eot_id|>``, ``<end_of_turn>``,
  ``</s>``), so generation stops there even when a config lists only the end-of-text token;
- the context length (``max_position_embeddings``, of the text model for multimodal configs).

Example:
    >>> from transformers import Qwen2Config
    >>> family_for(Qwen2Config()).name
    'Qwen2 / Qwen2.5'
    >>> family_for(Qwen2Config()).lora_targets
    ('q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigurationError

__all__ = [
    "FAMILIES",
    "ModelFamily",
    "context_length",
    "end_of_turn_ids",
    "family_for",
    "lora_target_modules",
]

_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelFamily:
    """Facts about one architecture the engine needs beyond what ``transformers`` gives.

    Attributes:
        name: Its name in messages.
        model_types: The configs' ``model_type`` values it covers.
        lora_targets: The linear layers (by attribute name) that get an adapter.
        end_of_turn: Tokens that end an assistant turn in its chat template.
    """

    name: str
    model_types: tuple[str, ...]
    lora_targets: tuple[str, ...]
    end_of_turn: tuple[str, ...]


FAMILIES: tuple[ModelFamily, ...] = (
    # Llama 3.x and SmolLM2 share the architecture; their templates differ (<|eot_id|> for
    # Llama 3, ChatML's <|im_end|> for SmolLM2): whichever the tokenizer has is used.
    ModelFamily(
        "Llama / SmolLM2", ("llama",), _ATTENTION + _MLP, ("<|eot_id|>", "<|eom_id|>", "<|im_end|>")
    ),
    ModelFamily("Mistral", ("mistral", "ministral"), _ATTENTION + _MLP, ("</s>",)),
    ModelFamily("Qwen2 / Qwen2.5", ("qwen2",), _ATTENTION + _MLP, ("<|im_end|>", "<|endoftext|>")),
    ModelFamily("Qwen3", ("qwen3",), _ATTENTION + _MLP, ("<|im_end|>", "<|endoftext|>")),
    ModelFamily(
        "Gemma",
        ("gemma", "gemma2", "gemma3", "gemma3_text"),
        _ATTENTION + _MLP,
        ("<end_of_turn>", "<eos>"),
    ),
    ModelFamily("SmolLM3", ("smollm3",), _ATTENTION + _MLP, ("<|im_end|>",)),
    ModelFamily(
        "Phi-3", ("phi3",), ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"), ("<|end|>",)
    ),
)
"""The architectures the engine knows by name; others train with every linear layer adapted."""


def _text_config(config: Any) -> Any:
    # Multimodal configs (Gemma 3's) keep the language model's settings in text_config.
    return getattr(config, "text_config", None) or config


def family_for(config: Any) -> ModelFamily | None:
    """The family of a model config (``None`` for an architecture not in ``FAMILIES``)."""
    model_type = str(getattr(_text_config(config), "model_type", ""))
    outer = str(getattr(config, "model_type", ""))
    for family in FAMILIES:
        if model_type in family.model_types or outer in family.model_types:
            return family
    return None


def _linear_names(model: Any) -> list[str]:
    """Attribute names of the model's linear layers, the output layer and vision parts left out."""
    import torch

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names: dict[str, None] = {}
    for path, module in model.named_modules():
        if module is output or not isinstance(module, torch.nn.Linear):
            continue
        if any(part in path for part in ("vision", "visual", "multi_modal_projector")):
            continue
        names[path.rsplit(".", 1)[-1]] = None
    return list(names)


def lora_target_modules(model: Any, requested: Sequence[str], default: Sequence[str]) -> list[str]:
    """The layer names a LoRA adapter goes on for this model.

    Args:
        model: The base model.
        requested: The names asked for (``LoraSettings.target_modules``).
        default: ``LoraSettings``' default names: when ``requested`` is it and the model has
            other names, the model's own are used instead.

    Returns:
        Names every one of which the model has.

    Raises:
        ConfigurationError: Names that were asked for on purpose are not in the model
            (``param="lora.target_modules"``), listing those it has.
    """
    present = _linear_names(model)
    wanted = list(requested)
    if all(name in present for name in wanted):
        return wanted
    if list(requested) != list(default):
        missing = [name for name in wanted if name not in present]
        raise ConfigurationError(
            f"lora target_modules {missing} are not layers of this model; it has {sorted(present)}",
            param="lora.target_modules",
        )
    family = family_for(model.config)
    if family is not None and all(name in present for name in family.lora_targets):
        return list(family.lora_targets)
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model_type = str(getattr(_text_config(model.config), "model_type", ""))
    listed = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type) or ()
    known = [n for n in listed if n in present]
    # peft's table lists attention layers only; every other linear layer is an MLP or
    # attention projection of an architecture we do not know by name: adapt them all.
    return known + [name for name in present if name not in known]


def end_of_turn_ids(tokenizer: Any, config: Any, extra: Iterable[int] = ()) -> list[int]:
    """Token ids that end an assistant's answer: EOS, the config's, the family's end of turn.

    Args:
        tokenizer: The model's tokenizer.
        config: The model's config (or its generation config).
        extra: Ids known already (``generation_config.eos_token_id``).

    Returns:
        Sorted ids, each a token the tokenizer has.
    """
    ids: set[int] = {int(i) for i in extra}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    family = family_for(config)
    vocabulary = tokenizer.get_vocab()
    for token in family.end_of_turn if family is not None else ():
        if token in vocabulary:
            ids.add(int(vocabulary[token]))
    return sorted(ids)


def context_length(config: Any, default: int = 2048) -> int:
    """The tokens a model attends over (``max_position_embeddings`` of its text model)."""
    value = getattr(_text_config(config), "max_position_embeddings", None)
    return int(value) if value else default
