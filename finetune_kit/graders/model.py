"""How model graders reach a model: the :class:`GraderModel` protocol.

``score_model`` and ``label_model`` graders ask a judge model and read its answer. The graders
package talks to no network itself: whoever runs the grader passes a ``GraderModel``. The local
backend passes its own engine; a library user passes :class:`OpenAIGraderModel`, which wraps any
``openai`` client (OpenAI, Azure, the local backend, any compatible server). Write your own in a
few lines:

Examples:
    >>> class AlwaysGood:
    ...     def complete(self, request: GraderModelRequest) -> GraderModelReply:
    ...         return GraderModelReply(text='{"steps": [], "result": 1.0}', model="always-good")
    >>> isinstance(AlwaysGood(), GraderModel)
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .result import TokenUsage
from .specs import SamplingParams

__all__ = ["GraderModel", "GraderModelReply", "GraderModelRequest"]


@dataclass(frozen=True)
class GraderModelRequest:
    """What a model grader asks its judge.

    Attributes:
        model: The grader's ``model``.
        messages: Chat-completions messages, templates already rendered (``content`` is a
            string or a list of ``text`` / ``image_url`` / ``input_audio`` parts).
        sampling_params: The grader's ``sampling_params``, when it has them.
        json_schema: The answer's shape as a chat-completions ``json_schema`` response format
            (``{"name", "schema", "strict"}``): send it as ``response_format`` where the model
            supports structured outputs. The messages do not describe it: a model that cannot
            take it needs the shape in its prompt (``OpenAIGraderModel`` adds one).
    """

    model: str
    messages: Sequence[Mapping[str, Any]]
    sampling_params: SamplingParams | None = None
    json_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class GraderModelReply:
    """The judge's answer.

    Attributes:
        text: The answer's text (the JSON the grader parses).
        model: The model that answered, as it names itself (``metadata.sampled_model_name``).
        usage: The tokens it used, when known.
        refusal: The refusal message, when the model refused (``model_grader_refusal_error``).
    """

    text: str
    model: str | None = None
    usage: TokenUsage | None = None
    refusal: str | None = None


@runtime_checkable
class GraderModel(Protocol):
    """A judge model for ``score_model`` and ``label_model`` graders.

    ``complete`` may raise any exception when the model cannot answer (an HTTP error, a
    timeout): the grading then gets reward 0 with ``model_grader_server_error`` set and the
    exception's message as details. It is called from one thread per grading; an
    implementation shared by concurrent gradings must be thread-safe.
    """

    def complete(self, request: GraderModelRequest) -> GraderModelReply:
        """Ask the model; return its answer."""
        ...
