"""OpenAI's graders, locally: string_check, text_similarity, python, score/label model, multi.

One implementation, used by the local backend's ``/v1/fine_tuning/alpha/graders`` routes and
reinforcement fine-tuning, and by the library's evaluations. It talks to no network itself:
model graders ask the :class:`GraderModel` they are given (:class:`OpenAIGraderModel` wraps any
``openai`` client), and python graders run in a sandboxed process.

Owns ``specs`` (the strict definitions, ``parse_grader``), ``templates`` and ``formula`` (what a
definition's strings mean), ``sample`` and ``result`` (what a grader reads and returns),
``base`` (``CompiledGrader``, the base of the implementations ``_basic``, ``_model_graders``,
``_multi``, ``_python``), ``compiled`` (``compile_grader``, ``run_grader``, ``validate_grader``:
it picks an implementation, which imports only ``base``), ``model`` and ``openai_model`` (the
judge of model graders) and ``sandbox`` (the python graders' worker processes; ``_sandbox`` and
``_landlock`` run inside them).

May import: ``finetune_kit.data``, ``finetune_kit.errors`` (``GraderValidationError`` is defined
there, in the one exception tree) and ``finetune_kit._lazy``; never the services, the session,
the local backend or the CLI, which all use graders.

Examples:
    >>> from finetune_kit.graders import run_grader
    >>> result = run_grader({"type": "string_check", "name": "has_paris", "operation": "ilike",
    ...                      "input": "{{sample.output_text}}", "reference": "paris"},
    ...                     "It is Paris.")
    >>> result.reward, result.metadata.type
    (1.0, 'string_check')
"""

import typing as _typing

from .. import _lazy

if _typing.TYPE_CHECKING:  # the export table: read at import for __all__ and the lazy loader
    from ..errors import GraderValidationError as GraderValidationError
    from .base import CompiledGrader as CompiledGrader
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

_EXPORTS = _lazy.export_table(__name__)
__all__ = sorted(_EXPORTS)
_lazy.serve_lazily(__name__, _EXPORTS)
