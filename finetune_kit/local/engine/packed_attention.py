"""Attention over packed examples, each within its own span: no work on masked-out pairs.

The training loop packs a batch's examples into one sequence (see ``objectives``).
Masked attention over the whole pack computes every token pair and discards most; this
attention function instead attends within each example's own span (plus the pack's shared
prefix, when one was computed first), so a pack of four 60-token examples costs four 60x60
attentions, not one 240x240. Examples of similar length run as one batched product, padded to
the longest; long or uneven ones run PyTorch's fused causal kernel one example at a time.

It is registered with ``transformers`` as the attention implementation ``"finetune_kit_packed"``
and reads the examples' boundaries from the ``cu_seq_lens_q`` keyword (cumulative lengths, as
flash-attention's variable-length kernels take them), which the model forwards to every attention
layer. Without it, it is plain SDPA attention.

On a CUDA GPU with the ``flash-attn`` package installed, a pack without a shared prefix runs
flash-attention's variable-length kernel over the whole pack in one call (no padding, no mask,
memory linear in the pack's length); without it, the two paths above run on the GPU (PyTorch's
SDPA picks its flash or memory-efficient kernel for each example). Sliding-window layers
(Gemma 3, Mistral) and soft-capped scores (Gemma 2) are honoured on every path.

Example:
    >>> import torch
    >>> q = torch.randn(1, 2, 5, 4)
    >>> out, _ = packed_causal_attention(None, q, q, q, None, cu_seq_lens_q=torch.tensor([0, 2, 5]))
    >>> out.shape
    torch.Size([1, 5, 2, 4])
"""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass
from typing import Any

__all__ = ["PACKED_ATTENTION", "packed_causal_attention", "use_packed_attention"]

PACKED_ATTENTION = "finetune_kit_packed"

MAX_PADDED_LENGTH = 512
"""Longest example attended in one padded batch; longer ones use the fused kernel per example."""


def packed_causal_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: Any = None,
    sliding_window: int | None = None,
    softcap: float | None = None,
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
        sliding_window: A token attends only to the last this many positions (itself included).
        softcap: Scores are capped as ``softcap * tanh(score / softcap)``.
        **kwargs: Passed to ``transformers``' SDPA attention when there are no spans.

    Returns:
        ``(output [1, tokens, heads, dim], None)``.
    """
    if cu_seq_lens_q is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        if sliding_window is not None:
            kwargs["sliding_window"] = sliding_window
        if softcap is not None:
            kwargs["softcap"] = softcap
        output: tuple[Any, None] = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
        return output
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    prefix = key.shape[2] - query.shape[2]
    if prefix == 0 and softcap is None and _flash_varlen_usable(query):
        return _flash_varlen(query, key, value, cu_seq_lens_q, dropout, scaling, sliding_window)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    bounds = [int(b) for b in cu_seq_lens_q]
    lengths = [end - start for start, end in itertools.pairwise(bounds)]
    # A window wider than every example (with the prefix) changes nothing: plain causal.
    window = sliding_window if sliding_window and prefix + max(lengths) > sliding_window else None
    shape = _Shape(prefix, scaling, window, softcap)
    if dropout == 0.0 and _padding_is_cheap(lengths, prefix):
        attended = _padded_attention(query, key, value, bounds, lengths, shape)
    else:
        attended = _attention_per_example(query, key, value, bounds, dropout, shape)
    return attended.transpose(1, 2).contiguous(), None


@dataclass(frozen=True)
class _Shape:
    """What every example's attention shares: prefix length, scaling, window, score cap."""

    prefix: int
    scaling: float
    window: int | None = None
    softcap: float | None = None

    def mask(self, length: int, device: Any) -> Any:
        """``[length, prefix + length]``: which keys (prefix, then the example) a row may see."""
        import torch

        rows = torch.arange(length, device=device)[:, None] + self.prefix
        keys = torch.arange(self.prefix + length, device=device)[None, :]
        allowed = keys <= rows
        if self.window is not None:
            allowed &= rows - keys < self.window
        return allowed


def _flash_varlen_usable(query: Any) -> bool:
    import torch

    return (
        query.is_cuda
        and query.dtype in (torch.float16, torch.bfloat16)
        and importlib.util.find_spec("flash_attn") is not None
    )


def _flash_varlen(
    query: Any,
    key: Any,
    value: Any,
    cu_seq_lens: Any,
    dropout: float,
    scaling: float,
    sliding_window: int | None,
) -> tuple[Any, None]:
    """The whole pack in one call of flash-attention's variable-length kernel (CUDA only).

    Grouped-query attention needs no repeated keys there: the kernel maps query heads to
    key/value heads itself.
    """
    import torch
    from flash_attn import flash_attn_varlen_func

    bounds = cu_seq_lens.to(device=query.device, dtype=torch.int32)
    longest = int((cu_seq_lens[1:] - cu_seq_lens[:-1]).max())
    window = (sliding_window - 1, 0) if sliding_window else (-1, -1)
    out = flash_attn_varlen_func(
        query[0].transpose(0, 1),  # [tokens, heads, dim]
        key[0].transpose(0, 1),
        value[0].transpose(0, 1),
        bounds,
        bounds,
        longest,
        longest,
        dropout_p=dropout,
        softmax_scale=scaling,
        causal=True,
        window_size=window,
    )
    return out.unsqueeze(0), None


def _padding_is_cheap(lengths: list[int], prefix: int) -> bool:
    """Whether padding every example to the longest costs at most twice the exact scores.

    Also bounds the score matrix: past ``MAX_PADDED_LENGTH`` tokens, the fused kernel's memory
    (it never materializes the scores) matters more than its speed.
    """
    longest = max(lengths)
    padded = len(lengths) * longest * (prefix + longest)
    exact = sum(length * (prefix + length) for length in lengths)
    return longest <= MAX_PADDED_LENGTH and padded <= 2 * exact


def _padded_attention(
    query: Any,
    key: Any,
    value: Any,
    bounds: list[int],
    lengths: list[int],
    shape: _Shape,
) -> Any:
    """All examples in one batched product, each padded to the longest.

    On CPU, for the short examples chat fine-tuning has, this is 2-4x faster forward and
    backward than the fused kernel run once per example (measured on 40-160 token examples):
    the fused backward pass is slow for small blocks, and one batched call replaces one per
    example. A padded query row only ever sees its own example's keys and the prefix (causality
    hides the padding from real rows), and padded rows are dropped afterwards.
    """
    import torch

    heads, dim = query.shape[1], query.shape[3]
    longest = max(lengths)
    device = query.device
    steps = torch.arange(longest, device=device)
    starts = torch.tensor(bounds[:-1], device=device)
    limits = torch.tensor(bounds[1:], device=device) - 1
    # Token index of every (example, row); padding repeats an example's last token.
    index = torch.minimum(starts[:, None] + steps[None, :], limits[:, None]).reshape(-1)
    n = len(lengths)

    def rows(tensor: Any) -> Any:  # [1, heads, tokens, dim] -> [n, heads, longest, dim]
        return tensor[0].index_select(1, index).view(heads, n, longest, dim).transpose(0, 1)

    prefix = shape.prefix
    q = rows(query)
    k = rows(key[:, :, prefix:])
    v = rows(value[:, :, prefix:])
    if prefix:
        k = torch.cat([key[:, :, :prefix].expand(n, -1, -1, -1), k], dim=2)
        v = torch.cat([value[:, :, :prefix].expand(n, -1, -1, -1), v], dim=2)
    causal = shape.mask(longest, device)
    scores = torch.matmul(q, k.transpose(-1, -2)) * shape.scaling
    if shape.softcap:
        scores = torch.tanh(scores / shape.softcap) * shape.softcap
    scores = scores.masked_fill(~causal, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(v.dtype)
    out = torch.matmul(weights, v)  # [n, heads, longest, dim]
    real = torch.cat(
        [torch.arange(length, device=device) + i * longest for i, length in enumerate(lengths)]
    )
    return out.transpose(0, 1).reshape(heads, n * longest, dim).index_select(1, real)[None]


def _attention_per_example(
    query: Any,
    key: Any,
    value: Any,
    bounds: list[int],
    dropout: float,
    shape: _Shape,
) -> Any:
    """The fused kernel on each example's span (and the prefix): memory linear in length.

    Capped scores (Gemma 2) have no fused kernel: those examples compute their scores
    explicitly.
    """
    import torch

    functional = torch.nn.functional
    prefix = shape.prefix
    parts = []
    for start, end in itertools.pairwise(bounds):
        q = query[:, :, start:end]
        k = key[:, :, prefix + start : prefix + end]
        v = value[:, :, prefix + start : prefix + end]
        if prefix:
            k = torch.cat([key[:, :, :prefix], k], dim=2)
            v = torch.cat([value[:, :, :prefix], v], dim=2)
        if shape.softcap:
            scores = torch.matmul(q, k.transpose(-1, -2)) * shape.scaling
            scores = torch.tanh(scores / shape.softcap) * shape.softcap
            scores = scores.masked_fill(~shape.mask(end - start, q.device), float("-inf"))
            weights = functional.dropout(torch.softmax(scores.float(), dim=-1), p=dropout)
            parts.append(torch.matmul(weights.to(v.dtype), v))
        elif prefix or shape.window is not None:
            # Every token sees the prefix and its own example's tokens up to itself (within
            # the window).
            parts.append(
                functional.scaled_dot_product_attention(
                    q,
                    k,
                    v,
                    attn_mask=shape.mask(end - start, q.device),
                    dropout_p=dropout,
                    scale=shape.scaling,
                )
            )
        else:
            parts.append(
                functional.scaled_dot_product_attention(
                    q, k, v, is_causal=True, dropout_p=dropout, scale=shape.scaling
                )
            )
    return torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]


def use_packed_attention(model: Any) -> None:
    """Switch a ``transformers`` model to ``packed_causal_attention`` (registered once)."""
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED_ATTENTION, packed_causal_attention)
    model.set_attn_implementation(PACKED_ATTENTION)
