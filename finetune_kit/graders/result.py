"""What running a grader returns: OpenAI's ``GraderRunResponse``, field for field.

``GraderRunResult.to_dict()`` is the JSON ``POST /v1/fine_tuning/alpha/graders/run`` answers,
and it parses with openai-python's own ``GraderRunResponse``. Every one of OpenAI's error flags
is always present. The ``*_details`` keys OpenAI does not define (``invalid_variable_error_details``
and the like) are local additions that say *why* a flag is set; openai-python keeps them as
extra fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["GraderErrors", "GraderRunMetadata", "GraderRunResult", "TokenUsage"]


class _Output(BaseModel):
    # Output: lenient, like openai-python's models of server objects.
    model_config = ConfigDict(extra="allow", frozen=True)


class GraderErrors(_Output):
    """The error flags of one grading (``metadata.errors``); all False when it went well.

    Any flag set means the reward is 0, except inside a multi grader, where a failed
    sub-grader counts as 0 in the formula and its flags are set on the multi grader too.
    """

    formula_parse_error: bool = False
    invalid_variable_error: bool = False
    model_grader_parse_error: bool = False
    model_grader_refusal_error: bool = False
    model_grader_server_error: bool = False
    model_grader_server_error_details: str | None = None
    other_error: bool = False
    python_grader_runtime_error: bool = False
    python_grader_runtime_error_details: str | None = None
    python_grader_server_error: bool = False
    python_grader_server_error_type: str | None = None
    sample_parse_error: bool = False
    truncated_observation_error: bool = False
    unresponsive_reward_error: bool = False
    # Local additions: why a flag without a details field of OpenAI's own is set.
    invalid_variable_error_details: str | None = None
    model_grader_parse_error_details: str | None = None
    model_grader_refusal_error_details: str | None = None
    other_error_details: str | None = None
    python_grader_server_error_details: str | None = None
    sample_parse_error_details: str | None = None

    @property
    def has_error(self) -> bool:
        """True when any flag is set."""
        if self is NO_ERRORS:  # the common case, without reading twelve attributes
            return False
        return any(getattr(self, name) for name in _FLAGS)

    def merged(self, other: GraderErrors) -> GraderErrors:
        """These flags or-ed with ``other``'s; details kept from whichever has them first."""
        mine = self.model_dump()
        for name, value in other.model_dump().items():
            if isinstance(value, bool):
                mine[name] = bool(mine.get(name)) or value
            elif mine.get(name) is None:
                mine[name] = value
        return GraderErrors(**mine)


_FLAGS = tuple(name for name in GraderErrors.model_fields if name.endswith("_error"))
NO_ERRORS = GraderErrors()
"""The flags of a grading that went well (shared: the model is frozen)."""


class TokenUsage(_Output):
    """Tokens a model grader's judge used, in OpenAI's usage shape."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )


class GraderRunMetadata(_Output):
    """``metadata`` of a grading: who graded, how long it took, what went wrong.

    Attributes:
        name: The grader's name.
        type: The grader's type (``string_check``...).
        errors: The error flags.
        execution_time: Seconds the grading took.
        scores: Details of the score: the metric's value (and precision and recall for ROUGE,
            whether WordNet was used for METEOR), the judge's raw answer for model graders, the
            sub-graders' rewards for a multi grader. Empty for string_check and python.
        token_usage: Total tokens the judge models used (model graders), else None.
        sampled_model_name: The model that answered, for model graders.
    """

    name: str
    type: str
    errors: GraderErrors
    execution_time: float
    scores: dict[str, Any]
    token_usage: int | None = None
    sampled_model_name: str | None = None


class GraderRunResult(_Output):
    """The result of running a grader on one sample (OpenAI's ``GraderRunResponse``).

    Attributes:
        reward: The reward; 0 when any error flag is set.
        sub_rewards: Each sub-grader's reward, for a multi grader; else empty.
        metadata: Name, type, error flags, timing, scores, token usage.
        model_grader_token_usage_per_model: Tokens per judge model
            (``{"gpt-4o-2024-08-06": {"prompt_tokens": ..., ...}}``).
    """

    reward: float
    sub_rewards: dict[str, float]
    metadata: GraderRunMetadata
    model_grader_token_usage_per_model: dict[str, TokenUsage]

    @property
    def errors(self) -> GraderErrors:
        """Shortcut for ``metadata.errors``."""
        return self.metadata.errors

    def to_dict(self) -> dict[str, Any]:
        """The result as the JSON ``graders/run`` answers."""
        return self.model_dump(mode="json")
