"""string_check and text_similarity, compiled."""

from __future__ import annotations

from typing import Any

from ..errors import GraderValidationError
from ._metrics import METRICS, Metric, check_installed, load_metric
from .base import CompiledGrader, GradeContext, Outcome
from .specs import StringCheckGrader, TextSimilarityGrader
from .templates import Template, TemplateVariableError

__all__ = ["StringCheck", "TextSimilarity"]


def _check(input_text: str, reference: str, operation: str) -> bool:
    if operation == "eq":
        return input_text == reference
    if operation == "ne":
        return input_text != reference
    if operation == "like":
        return reference in input_text
    # ilike: casefold, not lower, so "STRASSE" contains "straße" as a person reads it.
    return reference.casefold() in input_text.casefold()


class StringCheck(CompiledGrader):
    """``eq`` / ``ne`` compare; ``like`` / ``ilike`` test that the input contains the reference."""

    spec: StringCheckGrader

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self._input = Template.parse(spec.input, grader=spec.name, field="input")
        self._reference = Template.parse(spec.reference, grader=spec.name, field="reference")

    def grade(self, context: GradeContext) -> Outcome:
        try:
            input_text = context.render(self._input)
            reference = context.render(self._reference)
        except TemplateVariableError as exc:
            return Outcome.missing_variable(exc)
        return Outcome(1.0 if _check(input_text, reference, self.spec.operation) else 0.0)


class TextSimilarity(CompiledGrader):
    """A metric from its library (see ``_metrics.py``), between 0 and 1."""

    spec: TextSimilarityGrader

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        metric = spec.evaluation_metric
        if metric not in METRICS:
            raise GraderValidationError(
                f"grader {spec.name!r} (text_similarity), field 'evaluation_metric': {metric!r} "
                "needs an embeddings model (OpenAI computes it with text-embedding-3-large, for "
                f"evals only), which local graders do not run; use one of {', '.join(METRICS)}.",
                grader=spec.name,
                field="evaluation_metric",
            )
        check_installed(metric)
        self._input = Template.parse(spec.input, grader=spec.name, field="input")
        self._reference = Template.parse(spec.reference, grader=spec.name, field="reference")
        self._metric: Metric | None = None

    def grade(self, context: GradeContext) -> Outcome:
        try:
            input_text = context.render(self._input)
            reference = context.render(self._reference)
        except TemplateVariableError as exc:
            return Outcome.missing_variable(exc)
        if self._metric is None:
            self._metric = load_metric(self.spec.evaluation_metric)
        score = self._metric(input_text, reference)
        return Outcome(
            score.value, scores={self.spec.evaluation_metric: score.value, **score.details}
        )
