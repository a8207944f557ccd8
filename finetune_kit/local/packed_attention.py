"""Attention over packed examples, one example at a time: no work on masked-out pairs.

The training loop packs a batch's examples into one sequence (see ``training_objectives``).
Masked attention over the whole pack computes every token pair and discards most; this
attention function instead runs PyTorch's fused causal attention on each example's own span
(plus the pack's shared prefix, when one was computed first), so a pack of four 60-token
examples costs four 60x60 attentions, not one 240x240.

It is registered with ``transformers`` as the attention implementation ``"finetune_kit_packed"``
and reads the examples' boundaries from the ``cu_seq_lens_q`` keyword (cumulative lengths, as
flash-attention's variable-length kernels take them), which the model forwards to every attention
layer. Without it, it is plain SDPA attention.

Example:
    >>> import torch
    >>> q = torch.randn(1, 2, 5, 4)
    >>> out, _ = packed_causal_attention(None, q, q, q, None, cu_seq_lens_q=torch.tensor([0, 2, 5]))
    >>> out.shape
    torch.Size([1, 5, 2, 4])
"""

from __future__ import annotations

import itertools
from typing import Any

__all__ = ["PACKED_ATTENTION", "packed_causal_attention", "use_packed_attention"]

PACKED_ATTENTION = "finetune_kit_packed"


def packed_causal_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: Any = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """Causal attention within each packed example (and over a shared prefix).

    Args:
        module: The attention layer (for its number of key/value groups).
        query: ``[1, heads, tokens, dim]``.
        key: ``[1, kv_heads, prefix + tokens, dim]``: a shared prefix's keys come first.
        value: Like ``key``.
        attention_mask: Ignored when ``cu_seq_lens_q`` is given (the spans define the mask).
        dropout: Attention dropout (0 for the models the engine trains).
        scaling: Score scaling (default ``1/sqrt(dim)``).
        cu_seq_lens_q: Cumulative example lengths ``[0, l1, l1 + l2, ...]`` over the tokens.
        **kwargs: Passed to ``transformers``' SDPA attention when there are no spans.

    Returns:
        ``(output [1, tokens, heads, dim], None)``.
    """
    import torch

    if cu_seq_lens_q is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        output: tuple[Any, None] = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
        return output
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    prefix = key.shape[2] - query.shape[2]
    bounds = [int(b) for b in cu_seq_lens_q]
    parts = []
    for start, end in itertools.pairwise(bounds):
        q = query[:, :, start:end]
        k = key[:, :, prefix + start : prefix + end]
        v = value[:, :, prefix + start : prefix + end]
        if prefix:
            k = torch.cat([key[:, :, :prefix], k], dim=2)
            v = torch.cat([value[:, :, :prefix], v], dim=2)
            length = end - start
            # Every token sees the whole prefix and the tokens of its own example up to itself.
            mask = torch.ones(length, prefix + length, dtype=torch.bool, device=q.device)
            mask[:, prefix:] = torch.tril(mask[:, prefix:])
            parts.append(
                torch.nn.functional.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling
                )
            )
        else:
            parts.append(
                torch.nn.functional.scaled_dot_product_attention(
                    q, k, v, is_causal=True, dropout_p=dropout, scale=scaling
                )
            )
    attended = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
    return attended.transpose(1, 2).contiguous(), None


def use_packed_attention(model: Any) -> None:
    """Switch a ``transformers`` model to ``packed_causal_attention`` (registered once)."""
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED_ATTENTION, packed_causal_attention)
    model.set_attn_implementation(PACKED_ATTENTION)
