"""Data-parallel training objectives: N processes that train like one.

The training loop (``training._Run``) runs unchanged in every process of a ``torch.distributed``
group: each builds the same model and adapter from the same seed, reads the same file and walks
the same epoch order, so each is handed the same *global* batch at every step. Only the
objective changes. ``data_parallel`` wraps the loop's objective so that each rank scores its
share of the batch (``batch[rank::world]``) and the synced gradient is exactly the one a single
process computes over the whole batch:

- supervised: the batch's trained-token count is summed over the ranks first (an all-reduce), and
  each rank's loss is ``sum(nll on its share) * world / global_tokens``. DDP averages gradients
  over the ranks (divides by ``world``), which the ``* world`` undoes, so the update is
  ``grad(sum of every rank's nll / global_tokens)``: the one-process loss, normalised over the
  global batch's trainable tokens, not each rank's own;
- DPO: the loss is a mean over the batch's pairs, whose number every rank knows, so each rank's
  loss is ``sum(its pair losses) * world / len(batch)``;
- a rank whose share is empty (a batch with fewer examples than ranks) runs one forward pass
  weighted 0, so every rank joins the same collectives;
- reported metrics (loss, token accuracy, DPO's reward figures) and validation are summed over
  the ranks, so every rank reports the global values and the loop's clipping and optimizer step
  see identical gradients everywhere.

With 2 processes against 1 on the same job, per-step losses agree to about 1e-7 (the order of
floating-point sums differs), far inside the 1 % the tests require.

Example:
    >>> import torch.distributed  # doctest: +SKIP
    >>> # in every process of a group, after torch.distributed.init_process_group("gloo"):
    >>> result = train(request, callbacks, parallel=data_parallel)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from .objectives import DpoObjective, PackedScorer, StepResult, SupervisedObjective
from .training_data import PreferencePair, SupervisedExample

__all__ = [
    "Collective",
    "DataParallelDpo",
    "DataParallelSupervised",
    "data_parallel",
]


class Collective:
    """This process's place in the default ``torch.distributed`` group, and its few collectives.

    Tensors are made on ``device``: NCCL (GPUs) reduces CUDA tensors only, gloo CPU ones.

    Args:
        device: Where the collectives' tensors live (the model's device).

    Example:
        >>> import torch.distributed as dist  # doctest: +SKIP
        >>> Collective().all_sum([1.0, 2.0])  # doctest: +SKIP
        [2.0, 4.0]
    """

    def __init__(self, device: Any = None) -> None:
        import torch
        import torch.distributed as dist

        self._torch = torch
        self._dist = dist
        self.rank: int = dist.get_rank()
        self.world: int = dist.get_world_size()
        self.device = device if device is not None else torch.device("cpu")

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Sum each value over every rank (in float64, so token counts stay exact)."""
        tensor = self._torch.tensor(list(values), dtype=self._torch.float64, device=self.device)
        self._dist.all_reduce(tensor, op=self._dist.ReduceOp.SUM)
        return [float(v) for v in tensor.tolist()]

    def broadcast_int(self, value: int) -> int:
        """Rank 0's ``value``, on every rank."""
        tensor = self._torch.tensor([value], dtype=self._torch.int64, device=self.device)
        self._dist.broadcast(tensor, src=0)
        return int(tensor.item())

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
        found: list[Any] = [None] * self.world
        self._dist.all_gather_object(found, value)
        return found


class _ThroughDdp:
    """A ``PackedScorer`` stand-in whose forward pass goes through DDP (which syncs gradients).

    DDP reduces gradients only for passes made through its own ``forward``; the objectives call
    ``scorer.token_nll``, so this routes that one call through the wrapped module.
    """

    def __init__(self, scorer: PackedScorer, ddp: Any) -> None:
        self.torch = scorer.torch
        self.device = scorer.device
        self.packs = scorer.packs
        self._ddp = ddp
        self._scorer = scorer

    def token_nll(self, examples: Sequence[SupervisedExample]) -> tuple[Any, Any, Any]:
        if not self.torch.is_grad_enabled():
            # Validation: no gradient to sync, so no reason to pay DDP's bookkeeping.
            return self._scorer.token_nll(examples)
        result: tuple[Any, Any, Any] = self._ddp(list(examples))
        return result


def _wrap(scorer: PackedScorer, model: Any, params: Sequence[Any]) -> Any:
    """Wrap the scorer's forward pass in ``DistributedDataParallel``; align the adapters."""
    import torch
    import torch.distributed as dist

    class PackForward(torch.nn.Module):
        """The module DDP wraps: the PEFT model (its trainable parameters) and one forward."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self._scorer = [scorer]  # in a list: not a submodule, nothing more to register

        def forward(self, examples: list[SupervisedExample]) -> tuple[Any, Any, Any]:
            return self._scorer[0].token_nll(examples)

    # Every rank built the same model from the same seed. DDP's start-up sync would broadcast
    # every parameter, frozen base weights included (540 MB for SmolLM2-135M): skipped, and
    # only the trainable adapter is broadcast below. No buffer sync before each forward either
    # (the rotary tables are equal everywhere). device_ids=None: the module sits on one device
    # and the scorer makes its tensors there, so DDP need not move the (non-tensor) inputs.
    ddp = torch.nn.parallel.DistributedDataParallel(
        PackForward(), device_ids=None, init_sync=False, forward_sync_buffers=False
    )
    with torch.no_grad():
        for param in params:
            dist.broadcast(param.data, src=0)
    return ddp


class DataParallelSupervised(SupervisedObjective):
    """``SupervisedObjective`` over a data-parallel group: the same step as one process.

    Args:
        objective: The loop's own objective (its scorer is reused).
        model: The PEFT model.
        params: Its trainable parameters.
        group: This process's rank and the collectives.
    """

    def __init__(
        self,
        objective: SupervisedObjective,
        model: Any,
        params: Sequence[Any],
        group: Collective,
    ) -> None:
        super().__init__(objective.scorer)
        self.group = group
        self.ddp = _wrap(objective.scorer, model, params)
        self._through = _ThroughDdp(objective.scorer, self.ddp)

    def train_batch(self, items: Sequence[SupervisedExample]) -> StepResult:
        """Forward and backward over this rank's share; metrics of the whole batch."""
        group = self.group
        shard = list(items[group.rank :: group.world])
        (total,) = group.all_sum([sum(item.n_trained for item in shard)])
        weight = 1.0
        if not shard:
            shard, weight = [items[0]], 0.0
        packs = list(self.scorer.packs(shard))
        loss_sum = 0.0
        correct = 0
        for index, pack in enumerate(packs):
            # One gradient all-reduce per step: DDP syncs on the last pack's backward only.
            sync = index == len(packs) - 1
            with contextlib.nullcontext() if sync else self.ddp.no_sync():
                nll, hits, _ = self._through.token_nll(pack)
                loss = nll.sum() * weight
                (loss * group.world / total).backward()
            loss_sum += float(loss.detach())
            correct += int(hits.sum()) if weight else 0
        loss_all, correct_all = group.all_sum([loss_sum, correct])
        return StepResult(loss_all / total, correct_all / total, {})

    def evaluate(self, items: Sequence[SupervisedExample]) -> tuple[float, float]:
        """Mean loss and token accuracy over all ranks' shares, without gradients."""
        shard = list(items[self.group.rank :: self.group.world])
        loss_sum = correct = total = 0.0
        with self.scorer.torch.no_grad():
            for pack in self.scorer.packs(shard):
                nll, hits, _ = self.scorer.token_nll(pack)
                loss_sum += float(nll.sum())
                correct += int(hits.sum())
                total += int(nll.numel())
        loss_sum, correct, total = self.group.all_sum([loss_sum, correct, total])
        return loss_sum / total, correct / total


class DataParallelDpo(DpoObjective):
    """``DpoObjective`` over a data-parallel group: the same step as one process.

    The reference log-probabilities were computed by the loop's objective for every pair on
    every rank; they are reused, not computed again.

    Args:
        objective: The loop's own objective.
        model: The PEFT model.
        params: Its trainable parameters.
        group: This process's rank and the collectives.
    """

    def __init__(
        self,
        objective: DpoObjective,
        model: Any,
        params: Sequence[Any],
        group: Collective,
    ) -> None:
        # Not DpoObjective.__init__: it would score every pair against the base model again.
        self.beta = objective.beta
        self.reference = objective.reference
        self.group = group
        self.ddp = _wrap(objective.scorer, model, params)
        self._plain = objective.scorer
        self.scorer = objective.scorer

    def train_batch(self, items: Sequence[PreferencePair]) -> StepResult:
        """Forward and backward over this rank's pairs; metrics of the whole batch."""
        group = self.group
        shard = list(items[group.rank :: group.world])
        weight = 1.0
        if not shard:
            shard, weight = [items[0]], 0.0
        packs = list(self._pack_pairs(shard))
        # DpoObjective._logps calls self.scorer.token_nll: through DDP while training.
        self.scorer = _ThroughDdp(self._plain, self.ddp)  # type: ignore[assignment]
        sums = [0.0, 0.0, 0.0, 0.0, 0.0]  # loss, correct tokens, tokens, wins, margins
        try:
            for index, pack in enumerate(packs):
                sync = index == len(packs) - 1
                with contextlib.nullcontext() if sync else self.ddp.no_sync():
                    losses, margins, hits, count = self._losses(pack)
                    (losses.sum() * weight * group.world / len(items)).backward()
                if weight:
                    sums[0] += float(losses.detach().sum())
                    sums[1] += hits
                    sums[2] += count
                    sums[3] += int((margins > 0).sum())
                    sums[4] += float(margins.sum())
        finally:
            self.scorer = self._plain
        loss, correct, tokens, wins, margin = group.all_sum(sums)
        n = len(items)
        extra = {"reward_accuracy": wins / n, "reward_margin": margin / n}
        return StepResult(loss / n, correct / tokens, extra)

    def evaluate(self, items: Sequence[PreferencePair]) -> tuple[float, float]:
        """Mean pair loss and token accuracy over all ranks' shares, without gradients."""
        shard = list(items[self.group.rank :: self.group.world])
        sums = [0.0, 0.0, 0.0]
        with self.scorer.torch.no_grad():
            for pack in self._pack_pairs(shard):
                losses, _, hits, count = self._losses(pack)
                sums[0] += float(losses.sum())
                sums[1] += hits
                sums[2] += count
        loss, correct, tokens = self.group.all_sum(sums)
        return loss / len(items), correct / tokens


def data_parallel(
    objective: SupervisedObjective | DpoObjective, model: Any, params: Sequence[Any]
) -> SupervisedObjective | DpoObjective:
    """Wrap a training loop's objective for the default ``torch.distributed`` group.

    Pass it as ``train(..., parallel=data_parallel)`` in every process of an initialised group;
    a group of one process keeps the objective as it is (the same arithmetic, bit for bit).

    Args:
        objective: The loop's objective.
        model: The PEFT model.
        params: Its trainable parameters.

    Returns:
        The objective to train with.
    """
    group = Collective(next(iter(params)).device)
    if group.world == 1:
        return objective
    if isinstance(objective, DpoObjective):
        return DataParallelDpo(objective, model, params, group)
    return DataParallelSupervised(objective, model, params, group)
