"""Compile a grader once, run it many times: :func:`compile_grader`, :func:`run_grader`.

Compiling validates everything the shapes cannot (templates, formulas, python source, metric
names) and prepares what can be prepared: templates are parsed, a multi grader's formula is
parsed and its sub-graders compiled. Metric libraries are imported on the first sample that
needs them (once per process), and a python grader's sandboxed worker starts on the first
sample and is reused for later ones (see ``sandbox.py``). A compiled grader is thread-safe.

Examples:
    >>> grader = compile_grader({"type": "string_check", "name": "exact", "operation": "eq",
    ...                          "input": "{{sample.output_text}}", "reference": "{{item.answer}}"})
    >>> grader.run("Paris", {"answer": "Paris"}).reward
    1.0
    >>> result = grader.run("Paris", {"solution": "Paris"})
    >>> result.reward, result.metadata.errors.invalid_variable_error
    (0.0, True)
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError
from ._exceptions import GraderValidationError
from .model import GraderModel
from .result import NO_ERRORS, GraderErrors, GraderRunMetadata, GraderRunResult, TokenUsage
from .sample import Sample
from .sandbox import SandboxLimits
from .specs import GraderSpec, parse_grader
from .templates import Template, TemplateVariableError

__all__ = [
    "CompiledGrader",
    "GradeContext",
    "Outcome",
    "compile_grader",
    "run_grader",
    "validate_grader",
]


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


def compile_grader(
    grader: GraderSpec | Mapping[str, Any] | Any, *, sandbox: SandboxLimits | None = None
) -> CompiledGrader:
    """Validate a grader and prepare it for grading many samples.

    Args:
        grader: The definition: a dict, a spec model, or an openai-python grader object.
        sandbox: Limits for python graders' worker processes (OpenAI's by default).

    Returns:
        The compiled grader. Close it (or use ``with``) when done, so a python grader's worker
        stops.

    Raises:
        GraderValidationError: The definition is invalid; the message names the grader and
            the field.
    """
    spec = parse_grader(grader)
    return _compile(spec, sandbox=sandbox)


def _compile(spec: GraderSpec, *, sandbox: SandboxLimits | None) -> CompiledGrader:
    # Imported here: the implementations import this module for their base class.
    from ._basic import StringCheck, TextSimilarity
    from ._model_graders import LabelModel, ScoreModel
    from ._multi import Multi
    from ._python import PythonCode

    if spec.type == "string_check":
        return StringCheck(spec)
    if spec.type == "text_similarity":
        return TextSimilarity(spec)
    if spec.type == "python":
        return PythonCode(spec, limits=sandbox)
    if spec.type == "score_model":
        return ScoreModel(spec)
    if spec.type == "label_model":
        return LabelModel(spec)
    if spec.type == "multi":
        return Multi(spec, compile_sub=lambda sub: _compile(sub, sandbox=sandbox))
    raise GraderValidationError(f"unknown grader type {spec.type!r}", field="type")


def validate_grader(grader: GraderSpec | Mapping[str, Any] | Any) -> GraderSpec:
    """Check a grader definition completely, without running it.

    Checks the shape (unknown keys, types, ranges) and what compiling checks: templates, a
    multi grader's formula and sub-graders, a python grader's source (syntax, a ``grade``
    function, 256 kB at most), the metric (``cosine`` is refused: it needs embeddings). Starts
    no process and calls no model.

    Args:
        grader: The definition: a dict, a spec model, or an openai-python grader object.

    Returns:
        The grader's spec; ``spec.to_dict()`` echoes it as ``graders/validate`` does.

    Raises:
        GraderValidationError: It is invalid; the message names the grader and the field.
    """
    compiled = compile_grader(grader)
    compiled.close()
    return compiled.spec


def run_grader(
    grader: GraderSpec | Mapping[str, Any] | CompiledGrader | Any,
    model_sample: Sample | str,
    item: Any = None,
    *,
    model: GraderModel | None = None,
    sandbox: SandboxLimits | None = None,
) -> GraderRunResult:
    """Grade one sample with a grader: what ``POST /v1/fine_tuning/alpha/graders/run`` does.

    For many samples, compile the grader once with :func:`compile_grader` and call its
    ``run``: a python grader then reuses its worker process.

    Args:
        grader: The definition (dict, spec, openai-python object) or a compiled grader.
        model_sample: The model's answer; ``sample.output_json`` is set when it is valid JSON.
        item: The dataset row (the ``item`` namespace).
        model: The judge for score_model and label_model graders.
        sandbox: Limits for a python grader's worker process.

    Returns:
        The reward and metadata, in OpenAI's ``GraderRunResponse`` shape.

    Raises:
        GraderValidationError: The grader is invalid.
        ConfigurationError: A model grader was run without ``model``.
    """
    if isinstance(grader, CompiledGrader):
        return grader.run(model_sample, item, model=model)
    with compile_grader(grader, sandbox=sandbox) as compiled:
        return compiled.run(model_sample, item, model=model)
