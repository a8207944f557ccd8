"""What one optimizer step computes: packed forward passes, supervised and DPO losses.

The examples of a batch are packed into one row, up to a token budget per forward pass, with
positions restarting at each example. Packing wastes nothing on padding and runs the batch's
matrix products once over all its tokens instead of once per example, while attention runs
within each example only (``packed_attention``), so no example sees another. A prefix all the
pack's examples share (a common system prompt, the prompt of a DPO pair) runs once, the examples
attending to its keys and values. The output layer runs at trained positions only.

Example:
    >>> pack_sizes([300, 500, 1000, 200, 40], budget=1024)
    [2, 1, 2]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .packed_attention import use_packed_attention
from .training_data import PreferencePair, SupervisedExample
from .transformers_compat import cache_argument

__all__ = [
    "DpoObjective",
    "PackedScorer",
    "StepResult",
    "SupervisedObjective",
    "pack_sizes",
    "shared_prefix",
]

PACK_TOKENS = 2048
"""Tokens per packed forward pass: beyond it, the batch is split and gradients accumulate."""

MIN_SHARED_PREFIX = 8
"""A prefix shared by a pack's examples (a common system prompt, a DPO pair's prompt) is
computed once when it is at least this long."""


def pack_sizes(lengths: Sequence[int], budget: int = PACK_TOKENS) -> list[int]:
    """Split consecutive sequences into packs of at most ``budget`` tokens (one at least each)."""
    sizes: list[int] = []
    count = 0
    used = 0
    for length in lengths:
        if count and used + length > budget:
            sizes.append(count)
            count = used = 0
        count += 1
        used += length
    if count:
        sizes.append(count)
    return sizes


def shared_prefix(examples: Sequence[SupervisedExample]) -> int:
    """Length of the token prefix all examples share, if worth computing once (else 0).

    It stops before the first position whose output is trained in any example, and counts only
    from ``MIN_SHARED_PREFIX`` tokens on.
    """
    if len(examples) < 2:
        return 0
    first = examples[0].input_ids
    limit = min(min(e.targets) for e in examples)
    length = 0
    while length < limit and all(e.input_ids[length] == first[length] for e in examples):
        length += 1
    return length if length >= MIN_SHARED_PREFIX else 0


@dataclass(frozen=True)
class StepResult:
    """Metrics of one batch: mean loss, token accuracy, method-specific extras."""

    loss: float
    accuracy: float
    extra: dict[str, float]


class PackedScorer:
    """Per-token log-likelihoods of packed examples under a PEFT model.

    Args:
        peft_model: The model with its adapter (switched to packed attention).
        bfloat16: Run the forward pass under bfloat16 autocast (base weights stored in bfloat16).
        pack_tokens: Tokens per packed forward pass (a GPU's is sized from its free memory,
            ``device.plan_memory``).
        share_prefix: Compute a prefix the pack's examples share once (off under gradient
            checkpointing, whose layers keep no cache).

    Example:
        >>> from peft import LoraConfig, get_peft_model
        >>> from finetune_kit.local.engine.tiny_model import build_tiny_model
        >>> model, _ = build_tiny_model()
        >>> scorer = PackedScorer(
        ...     get_peft_model(model, LoraConfig(target_modules=["q_proj"])), bfloat16=False)
        >>> example = SupervisedExample(line=1, input_ids=[1, 5, 6, 7], targets=[1, 2], n_tokens=4)
        >>> nll, correct, segment = scorer.token_nll([example, example])
        >>> nll.shape, segment.tolist()
        (torch.Size([4]), [0, 0, 1, 1])
        >>> loss, accuracy = SupervisedObjective(scorer).evaluate([example])
    """

    def __init__(
        self,
        peft_model: Any,
        *,
        bfloat16: bool,
        pack_tokens: int = PACK_TOKENS,
        share_prefix: bool = True,
    ) -> None:
        import torch

        self.torch = torch
        base = peft_model.get_base_model()
        use_packed_attention(base)
        self.body = base.get_decoder()
        self.head = base.get_output_embeddings()
        self.device = next(peft_model.parameters()).device
        self.bfloat16 = bfloat16
        self.pack_tokens = pack_tokens
        config = base.config
        windowed = bool(getattr(config, "sliding_window", None)) and bool(
            getattr(config, "use_sliding_window", True)
        )
        # A sliding-window layer's cache keeps only the window's last tokens (Gemma 3,
        # Mistral): a long shared prefix would lose its start there.
        self.share_prefix = share_prefix and not windowed
        # Gemma 2 caps its logits (tanh); the head is called directly here, so the cap too.
        self.logit_cap = getattr(base.config, "final_logit_softcapping", None)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.bfloat16:
            return contextlib.nullcontext()
        return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16)

    def token_nll(self, examples: Sequence[SupervisedExample]) -> tuple[Any, Any, Any]:
        """Negative log-likelihood of every trained token, packed in one forward pass.

        Returns:
            ``(nll, correct, segment)``: one float per trained token (in example order), whether
            the model's top prediction was that token, and the index of its example.
        """
        torch = self.torch
        prefix = shared_prefix(examples) if self.share_prefix else 0
        ids: list[int] = []
        positions: list[int] = []
        gather: list[int] = []
        targets: list[int] = []
        segments: list[int] = []
        for index, example in enumerate(examples):
            offset = len(ids) - prefix
            ids.extend(example.input_ids[prefix:])
            positions.extend(range(prefix, len(example.input_ids)))
            gather.extend(offset + p for p in example.targets)
            targets.extend(example.input_ids[p + 1] for p in example.targets)
            segments.extend([index] * len(example.targets))
        device = self.device
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        position_ids = torch.tensor([positions], dtype=torch.long, device=device)
        where = torch.tensor(gather, dtype=torch.long, device=device)
        bounds = [0]
        for example in examples:
            bounds.append(bounds[-1] + len(example.input_ids) - prefix)
        spans = torch.tensor(bounds, dtype=torch.int32)
        with self._autocast():
            if prefix:
                hidden = self._after_prefix(
                    examples[0].input_ids[:prefix], input_ids, position_ids, spans
                )
            else:
                hidden = self.body(
                    input_ids=input_ids,
                    position_ids=position_ids,
                    use_cache=False,
                    cu_seq_lens_q=spans,
                ).last_hidden_state[0]
            logits = self.head(hidden.index_select(0, where))
        logits = logits.float()
        if self.logit_cap:
            logits = torch.tanh(logits / self.logit_cap) * self.logit_cap
        expected = torch.tensor(targets, dtype=torch.long, device=device)
        nll = torch.nn.functional.cross_entropy(logits, expected, reduction="none")
        correct = logits.detach().argmax(-1) == expected
        return nll, correct, torch.tensor(segments, dtype=torch.long, device=device)

    def _after_prefix(
        self, prefix: Sequence[int], input_ids: Any, position_ids: Any, spans: Any
    ) -> Any:
        """Hidden states of packed examples that all continue one shared prefix.

        The prefix runs once; its keys and values (still part of the autograd graph, so its
        tokens' adapter weights get their gradient from every example) are attended to by every
        token after it, which also sees the earlier tokens of its own example.
        """
        torch = self.torch
        from transformers import DynamicCache

        device = self.device
        cache = DynamicCache(config=self.body.config)
        with_cache = {cache_argument(self.body): cache}
        self.body(
            input_ids=torch.tensor([list(prefix)], dtype=torch.long, device=device),
            position_ids=torch.arange(len(prefix), device=device).unsqueeze(0),
            use_cache=True,
            **with_cache,
        )
        return self.body(
            input_ids=input_ids,
            position_ids=position_ids,
            use_cache=True,
            **with_cache,
            cu_seq_lens_q=spans,
        ).last_hidden_state[0]

    def packs(self, examples: Sequence[SupervisedExample]) -> Iterator[list[SupervisedExample]]:
        """The examples in consecutive packs within the token budget."""
        start = 0
        for size in pack_sizes([len(e.input_ids) for e in examples], self.pack_tokens):
            yield list(examples[start : start + size])
            start += size


class SupervisedObjective:
    """Mean cross-entropy over the batch's trained tokens (see ``PackedScorer`` for an example)."""

    def __init__(self, scorer: PackedScorer) -> None:
        self.scorer = scorer

    @staticmethod
    def tokens(item: SupervisedExample) -> int:
        """Tokens billed for one example."""
        return item.n_tokens

    def train_batch(self, items: Sequence[SupervisedExample]) -> StepResult:
        """Forward and backward over a batch (gradients accumulate over its packs)."""
        total = sum(item.n_trained for item in items)
        loss_sum = 0.0
        correct = 0
        for pack in self.scorer.packs(items):
            nll, hits, _ = self.scorer.token_nll(pack)
            loss = nll.sum()
            (loss / total).backward()
            loss_sum += float(loss.detach())
            correct += int(hits.sum())
        return StepResult(loss_sum / total, correct / total, {})

    def evaluate(self, items: Sequence[SupervisedExample]) -> tuple[float, float]:
        """Mean loss and token accuracy, without gradients."""
        loss_sum = 0.0
        correct = 0
        total = 0
        with self.scorer.torch.no_grad():
            for pack in self.scorer.packs(items):
                nll, hits, _ = self.scorer.token_nll(pack)
                loss_sum += float(nll.sum())
                correct += int(hits.sum())
                total += int(nll.numel())
        return loss_sum / total, correct / total


class DpoObjective:
    """Direct preference optimization against the base model (the adapter switched off).

    The reference log-probabilities never change, so they are computed once, up front.

    Example:
        >>> from peft import LoraConfig, get_peft_model
        >>> from finetune_kit.local.engine.tiny_model import build_tiny_model
        >>> model, _ = build_tiny_model()
        >>> peft_model = get_peft_model(model, LoraConfig(target_modules=["q_proj"]))
        >>> good = SupervisedExample(line=1, input_ids=[1, 5, 6, 7], targets=[2], n_tokens=4)
        >>> bad = SupervisedExample(line=1, input_ids=[1, 5, 6, 9], targets=[2], n_tokens=4)
        >>> pair = PreferencePair(1, good, bad)
        >>> scorer = PackedScorer(peft_model, bfloat16=False)
        >>> objective = DpoObjective(scorer, peft_model, 0.1, [pair])
        >>> round(objective.evaluate([pair])[0], 4)  # a fresh adapter: the policy is the reference
        0.6931
    """

    def __init__(
        self,
        scorer: PackedScorer,
        peft_model: Any,
        beta: float,
        pairs: Sequence[PreferencePair],
    ) -> None:
        self.scorer = scorer
        self.beta = beta
        self.reference: dict[int, tuple[float, float]] = {}
        with scorer.torch.no_grad(), peft_model.disable_adapter():
            for pack in self._pack_pairs(pairs):
                chosen, rejected, _, _ = self._logps(pack)
                for pair, good, bad in zip(pack, chosen.tolist(), rejected.tolist(), strict=True):
                    self.reference[id(pair)] = (good, bad)

    @staticmethod
    def tokens(item: PreferencePair) -> int:
        """Tokens billed for one pair (both answers, each with its prompt)."""
        return item.n_tokens

    def _logps(self, pairs: Sequence[PreferencePair]) -> tuple[Any, Any, int, int]:
        """Summed log-probabilities of the chosen and rejected answers of each pair."""
        torch = self.scorer.torch
        sequences = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        nll, correct, segment = self.scorer.token_nll(sequences)
        sums = torch.zeros(len(sequences), device=nll.device).index_add(0, segment, -nll)
        chosen_tokens = segment < len(pairs)
        hits = int(correct[chosen_tokens].sum())
        return sums[: len(pairs)], sums[len(pairs) :], hits, int(chosen_tokens.sum())

    def _pack_pairs(self, items: Sequence[PreferencePair]) -> Iterator[list[PreferencePair]]:
        lengths = [len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in items]
        start = 0
        for size in pack_sizes(lengths, self.scorer.pack_tokens):
            yield list(items[start : start + size])
            start += size

    def _losses(self, pairs: Sequence[PreferencePair]) -> tuple[Any, Any, int, int]:
        torch = self.scorer.torch
        chosen, rejected, hits, count = self._logps(pairs)
        reference = torch.tensor([self.reference[id(p)] for p in pairs], device=chosen.device)
        margins = self.beta * ((chosen - reference[:, 0]) - (rejected - reference[:, 1]))
        return -torch.nn.functional.logsigmoid(margins), margins.detach(), hits, count

    def train_batch(self, items: Sequence[PreferencePair]) -> StepResult:
        """Forward and backward over a batch of pairs."""
        loss_sum = 0.0
        correct = 0
        tokens = 0
        wins = 0
        margin_sum = 0.0
        for pack in self._pack_pairs(items):
            losses, margins, hits, count = self._losses(pack)
            (losses.sum() / len(items)).backward()
            loss_sum += float(losses.detach().sum())
            correct += hits
            tokens += count
            wins += int((margins > 0).sum())
            margin_sum += float(margins.sum())
        extra = {"reward_accuracy": wins / len(items), "reward_margin": margin_sum / len(items)}
        return StepResult(loss_sum / len(items), correct / tokens, extra)

    def evaluate(self, items: Sequence[PreferencePair]) -> tuple[float, float]:
        """Mean pair loss and token accuracy on the preferred answers, without gradients."""
        loss_sum = 0.0
        correct = 0
        tokens = 0
        with self.scorer.torch.no_grad():
            for pack in self._pack_pairs(items):
                losses, _, hits, count = self._losses(pack)
                loss_sum += float(losses.sum())
                correct += hits
                tokens += count
        return loss_sum / len(items), correct / tokens
