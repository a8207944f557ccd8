"""Continuous batched decoding for ``Generator`` (one base model, many sequences at once).

A ``BatchDecoder`` holds the sequences being generated on one base model and their shared
key/value cache. ``add`` prefills new requests (left-padded among themselves) and merges them
into the running batch, padding the shorter cache on the left; ``step`` feeds every sequence's
last token through the model at once and samples the next. A sequence leaves the batch when it
ends (end of turn, a stop string, its token limit, or its caller hung up), and its rows are cut
from the cache, so the batch only ever computes live sequences. Rows may use different adapters
of the same base: peft applies each row's own adapter (``adapter_names``).

Each sequence samples from its own random generator, seeded from the request, so a seeded
request gives the same text whatever it is batched with.

Example:
    >>> safe_prefix("Hello wor", ("world",))
    6
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .chat_format import ChatRenderer
from .transformers_compat import cache_argument

__all__ = [
    "BASE_ADAPTER",
    "BaseSlot",
    "BatchDecoder",
    "DecodeParams",
    "DecodeRequest",
    "FinishReason",
    "safe_prefix",
]

FinishReason = Literal["stop", "length"]
BASE_ADAPTER = "__base__"
"""peft's name for "no adapter" in a batch that mixes adapters."""


@dataclass(frozen=True)
class DecodeParams:
    """Validated sampling parameters of one request."""

    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int
    n: int


@dataclass
class DecodeRequest:
    """One chat request on its way through the decoder.

    ``events`` receives ``(index, text, finish_reason, completion_tokens)`` tuples (the last two
    set when the choice ends) or an exception.
    """

    base: str
    adapter: Path | None
    prompt_ids: list[int]
    params: DecodeParams
    events: queue.Queue[Any] = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    created: float = field(default_factory=time.monotonic)


@dataclass
class BaseSlot:
    """A loaded base model, its tokenizer, and the PEFT wrapper once an adapter is loaded."""

    name: str
    model: Any
    tokenizer: Any
    renderer: ChatRenderer
    eos_ids: frozenset[int]
    context: int
    peft: Any = None


@dataclass
class _Sequence:
    request: DecodeRequest
    index: int
    adapter: str
    sampler: Any
    ids: list[int] = field(default_factory=list)
    text: str = ""
    emitted: int = 0


def safe_prefix(text: str, stops: tuple[str, ...]) -> int:
    """Length of the text that can be sent: no partial character, no start of a stop string."""
    end = len(text)
    if text.endswith("\ufffd"):  # an incomplete UTF-8 character, completed by a later token
        end -= 1
    held = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, end), 0, -1):
            if text[end - size : end] == stop[:size]:
                held = max(held, size)
                break
    return end - held


class BatchDecoder:
    """The running batch of one base model (see the module docstring).

    Not thread-safe: one thread (the generator's) owns it.

    Example:
        >>> from finetune_kit.local.engine.tiny_model import build_tiny_model
        >>> model, tokenizer = build_tiny_model()
        >>> slot = BaseSlot("tiny-random", model, tokenizer, ChatRenderer(tokenizer),
        ...                 frozenset({2}), 2048)
        >>> request = DecodeRequest("tiny-random", None, [1, 75, 108],
        ...                         DecodeParams(3, 0.0, 1.0, (), 0, 1))
        >>> decoder = BatchDecoder(slot)
        >>> decoder.add([request], {id(request): BASE_ADAPTER})
        >>> while decoder.rows:
        ...     decoder.step()
        >>> events = [request.events.get() for _ in range(request.events.qsize())]
        >>> events[-1][2:]
        ('length', 3)
    """

    def __init__(self, slot: BaseSlot) -> None:
        import torch

        self.torch = torch
        self.slot = slot
        self.rows: list[_Sequence] = []
        self.cache: Any = None
        self.mask: Any = None
        self.positions: Any = None
        self.next_tokens: list[int] = []

    @property
    def adapters_in_use(self) -> set[str]:
        """Adapter names the running rows use."""
        return {row.adapter for row in self.rows}

    def requests(self) -> list[DecodeRequest]:
        """Requests with a row still running."""
        seen: dict[int, DecodeRequest] = {}
        for row in self.rows:
            seen.setdefault(id(row.request), row.request)
        return list(seen.values())

    def _inference(self) -> contextlib.AbstractContextManager[Any]:
        return self.torch.inference_mode()

    def _forward(self, adapters: Sequence[str], **inputs: Any) -> Any:
        slot = self.slot
        unique = set(adapters)
        if slot.peft is None:
            return slot.model(**inputs)
        if unique == {BASE_ADAPTER}:
            with slot.peft.disable_adapter():
                return slot.peft(**inputs)
        if len(unique) == 1:
            slot.peft.set_adapter(next(iter(unique)))
            return slot.peft(**inputs)
        return slot.peft(**inputs, adapter_names=list(adapters))

    def add(self, requests: Sequence[DecodeRequest], adapters: dict[int, str]) -> None:
        """Prefill requests, sample their first tokens and merge them into the batch.

        Args:
            requests: New requests (their ``n`` choices each become a row).
            adapters: Adapter name per ``id(request)`` (``BASE_ADAPTER`` for none).
        """
        torch = self.torch
        from transformers import DynamicCache

        rows = [
            _Sequence(
                request,
                index,
                adapters[id(request)],
                torch.Generator().manual_seed(request.params.seed * 131 + index),
            )
            for request in requests
            for index in range(request.params.n)
        ]
        prompts = [row.request.prompt_ids for row in rows]
        width = max(len(p) for p in prompts)
        pad = int(self.slot.tokenizer.pad_token_id or 0)
        device = self.slot.model.device
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.slot.model.config)
        with self._inference():
            out = self._forward(
                [row.adapter for row in rows],
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                logits_to_keep=1,
                **{cache_argument(self.slot.model): cache},
            )
            tokens = self._sample(out.logits[:, -1, :], rows)
            keep = self._advance(rows, tokens)
            if not keep:
                return
            index = torch.tensor(keep, device=device)
            if len(keep) < len(rows):
                cache.batch_select_indices(index)
            self._merge(
                cache,
                mask[index],
                positions[index, -1:],
                [rows[i] for i in keep],
                [tokens[i] for i in keep],
            )

    def _merge(
        self, cache: Any, mask: Any, positions: Any, rows: list[_Sequence], tokens: list[int]
    ) -> None:
        torch = self.torch
        if not self.rows:
            self.cache, self.mask, self.positions = cache, mask, positions
            self.rows, self.next_tokens = rows, tokens
            return
        old, new = self.mask.shape[1], mask.shape[1]
        width = max(old, new)

        def left_pad(tensor: Any, amount: int, dim: int) -> Any:
            if amount == 0:
                return tensor
            shape = list(tensor.shape)
            shape[dim] = amount
            return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)

        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat(
                [left_pad(mine.keys, width - old, -2), left_pad(theirs.keys, width - new, -2)]
            )
            mine.values = torch.cat(
                [left_pad(mine.values, width - old, -2), left_pad(theirs.values, width - new, -2)]
            )
        self.mask = torch.cat([left_pad(self.mask, width - old, 1), left_pad(mask, width - new, 1)])
        self.positions = torch.cat([self.positions, positions])
        self.rows = self.rows + rows
        self.next_tokens = self.next_tokens + tokens

    def step(self) -> None:
        """Generate one more token for every row."""
        torch = self.torch
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        self.positions = self.positions + 1
        with self._inference():
            out = self._forward(
                [row.adapter for row in self.rows],
                input_ids=torch.tensor(self.next_tokens, device=self.mask.device).unsqueeze(1),
                attention_mask=self.mask,
                position_ids=self.positions,
                use_cache=True,
                **{cache_argument(self.slot.model): self.cache},
            )
            tokens = self._sample(out.logits[:, -1, :], self.rows)
        keep = self._advance(self.rows, tokens)
        if len(keep) < len(self.rows):
            index = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
            if keep:
                self.cache.batch_select_indices(index)
                self.mask = self.mask[index]
                self.positions = self.positions[index]
            self.rows = [self.rows[i] for i in keep]
        self.next_tokens = [tokens[i] for i in keep]
        if not self.rows:
            self.cache = self.mask = self.positions = None

    def fail(self, error: BaseException) -> None:
        """Report an error to every running request and drop them all."""
        for request in self.requests():
            request.events.put(error)
        self.rows, self.next_tokens = [], []
        self.cache = self.mask = self.positions = None

    def _sample(self, logits: Any, rows: Sequence[_Sequence]) -> list[int]:
        torch = self.torch
        tokens: list[int] = []
        for row_index, row in enumerate(rows):
            params = row.request.params
            scores = logits[row_index].float()
            if params.temperature == 0:
                tokens.append(int(scores.argmax()))
                continue
            # Each choice samples with its own CPU generator: reproducible on any device.
            scores = scores.cpu()
            probs = torch.softmax(scores / params.temperature, dim=-1)
            if params.top_p < 1:
                sorted_probs, order = probs.sort(descending=True)
                cumulative = sorted_probs.cumsum(-1)
                cut = int((cumulative < params.top_p).sum()) + 1
                probs = torch.zeros_like(probs).scatter_(0, order[:cut], sorted_probs[:cut])
            tokens.append(int(torch.multinomial(probs, 1, generator=row.sampler)))
        return tokens

    def _advance(self, rows: Sequence[_Sequence], tokens: Sequence[int]) -> list[int]:
        """Append each row's token, report text, and return the indexes of rows that go on."""
        keep: list[int] = []
        tokenizer = self.slot.tokenizer
        for row_index, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            request = row.request
            if request.cancelled.is_set():
                continue
            params = request.params
            finish: FinishReason | None = None
            if token in self.slot.eos_ids:
                finish = "stop"
            else:
                row.ids.append(token)
                row.text = tokenizer.decode(row.ids, skip_special_tokens=True)
                for stop in params.stop:
                    cut = row.text.find(stop, max(0, row.emitted - len(stop)))
                    if cut >= 0:
                        row.text = row.text[:cut]
                        finish = "stop"
                        break
                if finish is None and len(row.ids) >= params.max_tokens:
                    finish = "length"
            if finish is None:
                ready = safe_prefix(row.text, params.stop)
                if ready > row.emitted:
                    request.events.put((row.index, row.text[row.emitted : ready], None, 0))
                    row.emitted = ready
                keep.append(row_index)
            else:
                request.events.put((row.index, row.text[row.emitted :], finish, len(row.ids)))
        return keep
