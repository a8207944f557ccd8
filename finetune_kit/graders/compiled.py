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

from collections.abc import Mapping
from typing import Any

from ..errors import GraderValidationError
from ._basic import StringCheck, TextSimilarity
from ._model_graders import LabelModel, ScoreModel
from ._multi import Multi
from ._python import PythonCode
from .base import CompiledGrader
from .model import GraderModel
from .result import GraderRunResult
from .sample import Sample
from .sandbox import SandboxLimits
from .specs import GraderSpec, parse_grader

__all__ = ["CompiledGrader", "compile_grader", "run_grader", "validate_grader"]


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
