"""OpenAI's graders, locally: string_check, text_similarity, python, score/label model, multi.

One implementation, used by the local backend's ``/v1/fine_tuning/alpha/graders`` routes and
reinforcement fine-tuning, and by the library's evaluations. It talks to no network itself:
model graders ask the :class:`GraderModel` they are given (:class:`OpenAIGraderModel` wraps any
``openai`` client), and python graders run in a sandboxed process.

Examples:
    >>> from finetune_kit.graders import run_grader
    >>> result = run_grader({"type": "string_check", "name": "has_paris", "operation": "ilike",
    ...                      "input": "{{sample.output_text}}", "reference": "paris"},
    ...                     "It is Paris.")
    >>> result.reward, result.metadata.type
    (1.0, 'string_check')
"""

import typing as _typing

from .._lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:  # what type checkers and IDEs see; the table below is what runs
    from ._exceptions import GraderValidationError as GraderValidationError
    from .compiled import CompiledGrader as CompiledGrader
    from .compiled import compile_grader as compile_grader
    from .compiled import run_grader as run_grader
    from .compiled import validate_grader as validate_grader
    from .model import GraderModel as GraderModel
    from .model import GraderModelReply as GraderModelReply
    from .model import GraderModelRequest as GraderModelRequest
    from .openai_model import OpenAIGraderModel as OpenAIGraderModel
    from .result import GraderErrors as GraderErrors
    from .result import GraderRunMetadata as GraderRunMetadata
    from .result import GraderRunResult as GraderRunResult
    from .result import TokenUsage as TokenUsage
    from .sample import Sample as Sample
    from .sandbox import SandboxLayers as SandboxLayers
    from .sandbox import SandboxLimits as SandboxLimits
    from .sandbox import sandbox_layers as sandbox_layers
    from .specs import GraderMessage as GraderMessage
    from .specs import GraderSpec as GraderSpec
    from .specs import LabelModelGrader as LabelModelGrader
    from .specs import MultiGrader as MultiGrader
    from .specs import PythonGrader as PythonGrader
    from .specs import SamplingParams as SamplingParams
    from .specs import ScoreModelGrader as ScoreModelGrader
    from .specs import StringCheckGrader as StringCheckGrader
    from .specs import TextSimilarityGrader as TextSimilarityGrader
    from .specs import parse_grader as parse_grader

_EXPORTS = {
    "CompiledGrader": "compiled",
    "GraderErrors": "result",
    "GraderMessage": "specs",
    "GraderModel": "model",
    "GraderModelReply": "model",
    "GraderModelRequest": "model",
    "GraderRunMetadata": "result",
    "GraderRunResult": "result",
    "GraderSpec": "specs",
    "GraderValidationError": "_exceptions",
    "LabelModelGrader": "specs",
    "MultiGrader": "specs",
    "OpenAIGraderModel": "openai_model",
    "PythonGrader": "specs",
    "Sample": "sample",
    "SamplingParams": "specs",
    "SandboxLayers": "sandbox",
    "SandboxLimits": "sandbox",
    "ScoreModelGrader": "specs",
    "StringCheckGrader": "specs",
    "TextSimilarityGrader": "specs",
    "TokenUsage": "result",
    "compile_grader": "compiled",
    "parse_grader": "specs",
    "run_grader": "compiled",
    "sandbox_layers": "sandbox",
    "validate_grader": "compiled",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {name: f"{__name__}.{module}" for name, module in _EXPORTS.items()},
    globals(),
    rename=False,
)
