"""``tiny-random``: a tiny randomly initialised SmolLM2-like model built from code, for tests.

Same architecture as SmolLM2 (``LlamaForCausalLM``, tied embeddings, grouped-query attention),
same special tokens at the same ids (``<|endoftext|>`` 0, ``<|im_start|>`` 1, ``<|im_end|>`` 2) and
the same ChatML chat template, so every code path a real model takes is taken; but a few
thousand parameters, so a whole fine-tuning job takes well under a second. The tokenizer is
byte-level without merges (one token per UTF-8 byte), built offline: nothing is read from disk or
a hub. Weights are drawn from a fixed seed, so every build is identical.

Example:
    >>> model, tokenizer = build_tiny_model()
    >>> tokenizer.convert_ids_to_tokens([1, 2])
    ['<|im_start|>', '<|im_end|>']
    >>> model.config.num_hidden_layers
    2
"""

from __future__ import annotations

from typing import Any

from .chat_format import CHATML_TEMPLATE

__all__ = ["TINY_MODEL_NAME", "TINY_SEED", "build_tiny_model", "build_tiny_tokenizer"]

TINY_MODEL_NAME = "tiny-random"
TINY_SEED = 20240718
"""The seed the tiny model's weights are drawn from."""

_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def _byte_alphabet() -> list[str]:
    """The 256 characters byte-level BPE writes bytes as (GPT-2's table), in byte order."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def build_tiny_tokenizer() -> Any:
    """Build the byte-level ChatML tokenizer of ``tiny-random`` (a ``PreTrainedTokenizerFast``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(_SPECIAL_TOKENS)}
    # ByteLevel.alphabet() comes out of a hash set in no fixed order: ids would change from one
    # build to the next. Byte b gets id 3 + b instead.
    for byte_char in _byte_alphabet():
        vocab[byte_char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tokenizer_class: Any = PreTrainedTokenizerFast  # its stubs leave __init__ untyped
    tokenizer = tokenizer_class(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
        additional_special_tokens=list(_SPECIAL_TOKENS[1:]),
        model_max_length=2048,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_model(seed: int = TINY_SEED) -> tuple[Any, Any]:
    """Build ``tiny-random``: a 2-layer ``LlamaForCausalLM`` and its tokenizer.

    Args:
        seed: Seed of the weights; the default gives the canonical ``tiny-random``.

    Returns:
        ``(model, tokenizer)``, the model in eval mode, float32, on the CPU.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        # Wider than SmolLM2's 0.02 so the random logits are well separated: greedy decoding
        # then does not hinge on rounding noise.
        initializer_range=0.3,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        # Not 2 as in SmolLM2's config: the padding row of a freshly initialised embedding is
        # zero, and with tied weights <|im_end|> could then never be predicted.
        pad_token_id=0,
        dtype="float32",
    )
    # The global RNG is forked so building the model neither depends on nor disturbs it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: Any = LlamaForCausalLM(config)
    model.eval()
    return model, tokenizer
