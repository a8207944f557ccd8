"""The one exception graders raise for a grader that cannot be used as written."""

from __future__ import annotations

from ..errors import ConfigurationError

__all__ = ["GraderValidationError"]


class GraderValidationError(ConfigurationError):
    """A grader definition is invalid: an unknown key, a bad template, formula or value.

    Raised by :func:`validate_grader` and whenever a grader is compiled. The message names the
    grader, the field and how to fix it, such as ``grader 'accuracy' (string_check), field
    'refrence': unknown key; did you mean 'reference'?``. A problem found while *running* a
    valid grader (a missing template variable, a model's unreadable answer, an exception in a
    python grader) is not raised: it sets a flag in the result's ``metadata.errors``.

    Attributes:
        grader: The name of the grader at fault (the sub-grader's, inside a multi grader).
        field: The path of the offending field from the top of the grader definition, such as
            ``graders.accuracy.reference`` or ``input[0].content``; empty for the whole grader.
        param: ``"grader"`` followed by that path (``grader.graders.accuracy.reference``), the
            way an API error names a request parameter.
    """

    def __init__(self, message: str, *, grader: str | None = None, field: str = "") -> None:
        super().__init__(message, param=f"grader.{field}" if field else "grader")
        self.grader = grader
        self.field = field
