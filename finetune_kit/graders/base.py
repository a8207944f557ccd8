"""The base of every compiled grader, and what one grades with: :class:`CompiledGrader`.

A compiled grader (``_basic``, ``_model_graders``, ``_multi``, ``_python``) subclasses
:class:`CompiledGrader` and implements ``grade(context) -> Outcome``: a :class:`GradeContext`
is the sample, the item and the judge model; an :class:`Outcome` is the reward and what went
wrong, before timing and naming are added. ``compiled`` picks the implementation for a spec;
the implementations import only this module, so nothing imports back.

Examples:
    >>> outcome = Outcome.failed(other_error=True, other_error_details="why")
    >>> outcome.reward, outcome.errors.other_error
    (0.0, True)
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError
from .model import GraderModel
from .result import NO_ERRORS, GraderErrors, GraderRunMetadata, GraderRunResult, TokenUsage
from .sample import Sample
from .specs import GraderSpec
from .templates import Template, TemplateVariableError

__all__ = ["CompiledGrader", "GradeContext", "Outcome"]


@dataclass
class GradeContext:
    """One sample to grade, as the compiled graders receive it."""

    sample: Sample
    item: Any
    model: GraderModel | None
    _namespaces: dict[str, Any] | None = None

    @property
    def namespaces(self) -> dict[str, Any]:
        """The template context ``{"sample": ..., "item": ...}``, built once."""
        if self._namespaces is None:
            self._namespaces = {"sample": self.sample.namespace(), "item": self.item}
        return self._namespaces

    def render(self, template: Template) -> str:
        """Render a template for this sample (raises ``TemplateVariableError``)."""
        return template.render(self.namespaces)


@dataclass
class Outcome:
    """What a compiled grader found for one sample, before timing and naming are added."""

    reward: float
    errors: GraderErrors = NO_ERRORS
    scores: dict[str, Any] = field(default_factory=dict)
    sub_rewards: dict[str, float] = field(default_factory=dict)
    usage: dict[str, TokenUsage] = field(default_factory=dict)
    sampled_model_name: str | None = None

    @classmethod
    def failed(cls, **flags: Any) -> Outcome:
        """Reward 0 with these error flags (and details) set."""
        return cls(0.0, GraderErrors(**flags))

    @classmethod
    def missing_variable(cls, exc: TemplateVariableError) -> Outcome:
        """Reward 0 for a template variable the sample or item lacks."""
        if exc.sample_parse:
            return cls.failed(sample_parse_error=True, sample_parse_error_details=str(exc))
        return cls.failed(invalid_variable_error=True, invalid_variable_error_details=str(exc))


class CompiledGrader(abc.ABC):
    """A validated grader, ready to grade samples; build one with :func:`compile_grader`.

    Attributes:
        spec: The grader's definition.
    """

    def __init__(self, spec: GraderSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        """The grader's name."""
        return self.spec.name

    @property
    def type(self) -> str:
        """The grader's type (``string_check``...)."""
        return self.spec.type

    @property
    def needs_model(self) -> bool:
        """True when grading calls a model (score_model, label_model, a multi grader with one)."""
        return False

    def run(
        self,
        sample: Sample | str,
        item: Any = None,
        *,
        model: GraderModel | None = None,
    ) -> GraderRunResult:
        """Grade one sample.

        Args:
            sample: The model's answer: its text (``graders/run``'s ``model_sample``) or a
                :class:`Sample` with tool calls and choices.
            item: The dataset row, the ``item`` namespace (``{}`` when None).
            model: The judge for model graders.

        Returns:
            The reward and metadata, in OpenAI's ``GraderRunResponse`` shape.

        Raises:
            ConfigurationError: A model grader was run without ``model``.
        """
        if self.needs_model and model is None:
            raise ConfigurationError(
                f"grader {self.name!r} ({self.type}) asks a model: pass model=, such as "
                "finetune_kit.graders.OpenAIGraderModel(client)",
                param="model",
            )
        started = time.perf_counter()
        context = GradeContext(
            Sample.from_text(sample) if isinstance(sample, str) else sample,
            {} if item is None else item,
            model,
        )
        outcome = self.grade(context)
        return self._result(outcome, time.perf_counter() - started)

    @abc.abstractmethod
    def grade(self, context: GradeContext) -> Outcome:
        """Grade one sample (without timing); errors become flags, never exceptions."""

    def close(self) -> None:  # noqa: B027 - most graders hold nothing; those that do override it
        """Release what the grader holds (a python grader's worker process)."""

    def __enter__(self) -> CompiledGrader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _result(self, outcome: Outcome, elapsed: float) -> GraderRunResult:
        reward = 0.0 if outcome.errors.has_error and not outcome.sub_rewards else outcome.reward
        total = sum(u.total_tokens for u in outcome.usage.values()) if outcome.usage else None
        return GraderRunResult(
            reward=reward,
            sub_rewards=outcome.sub_rewards,
            metadata=GraderRunMetadata(
                name=self.name,
                type=self.type,
                errors=outcome.errors,
                execution_time=elapsed,
                scores=outcome.scores,
                token_usage=total,
                sampled_model_name=outcome.sampled_model_name,
            ),
            model_grader_token_usage_per_model=outcome.usage,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({self.type})>"
