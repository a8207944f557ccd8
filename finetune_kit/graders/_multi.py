"""The multi grader, compiled: its sub-graders compiled once, its formula parsed once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import GraderValidationError
from .base import CompiledGrader, GradeContext, Outcome
from .formula import Formula, FormulaError
from .result import GraderErrors, TokenUsage
from .specs import MultiGrader, SubGraderSpec

__all__ = ["Multi"]


class Multi(CompiledGrader):
    """Grades with every sub-grader, then computes ``calculate_output`` over their rewards.

    A sub-grader that fails counts as 0 in the formula; its error flags are set on the multi
    grader's result too. A formula that cannot be computed for these rewards (a division by
    zero, the log of 0) gives reward 0 with ``other_error``.
    """

    spec: MultiGrader

    def __init__(self, spec: Any, *, compile_sub: Callable[[SubGraderSpec], CompiledGrader]):
        super().__init__(spec)
        self._formula = Formula.parse(
            spec.calculate_output, names=list(spec.graders), grader=spec.name
        )
        self._graders: dict[str, CompiledGrader] = {}
        try:
            for key, sub in spec.graders.items():
                self._graders[key] = compile_sub(sub)
        except GraderValidationError as exc:
            self.close()
            # The sub-grader names its own fields; the request names them from the top.
            path = f"graders.{key}.{exc.field}" if exc.field else f"graders.{key}"
            raise GraderValidationError(str(exc), grader=exc.grader, field=path) from exc
        except BaseException:
            self.close()
            raise

    @property
    def needs_model(self) -> bool:
        return any(grader.needs_model for grader in self._graders.values())

    @property
    def graders(self) -> dict[str, CompiledGrader]:
        """The compiled sub-graders, by key."""
        return dict(self._graders)

    def grade(self, context: GradeContext) -> Outcome:
        errors = GraderErrors()
        rewards: dict[str, float] = {}
        usage: dict[str, TokenUsage] = {}
        sampled: str | None = None
        for key, grader in self._graders.items():
            outcome = grader.grade(context)
            failed = outcome.errors.has_error
            rewards[key] = 0.0 if failed else outcome.reward
            errors = errors.merged(outcome.errors)
            for model, tokens in outcome.usage.items():
                usage[model] = usage[model] + tokens if model in usage else tokens
            sampled = sampled or outcome.sampled_model_name
        result = Outcome(
            0.0,
            errors=errors,
            scores=dict(rewards),
            sub_rewards=rewards,
            usage=usage,
            sampled_model_name=sampled,
        )
        try:
            result.reward = self._formula.evaluate(rewards)
        except FormulaError as exc:
            result.errors = errors.merged(
                GraderErrors(other_error=True, other_error_details=str(exc))
            )
        return result

    def close(self) -> None:
        for grader in self._graders.values():
            grader.close()
