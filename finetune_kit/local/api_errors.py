"""Errors the local backend answers with, in OpenAI's shape.

Every error response has the body ``{"error": {"message", "type", "param", "code"}}`` so the
``openai`` client raises the same exception class (``BadRequestError``, ``NotFoundError``...) with
the same ``.param`` and ``.code`` as it would against OpenAI. This module imports nothing from
the web framework, so the store can raise these errors too.

Example:
    >>> err = InvalidRequestError("limit must be at least 1", param="limit")
    >>> err.status_code, err.body()["error"]["param"]
    (400, 'limit')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ApiError",
    "InvalidRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "UnauthorizedError",
    "error_body",
]


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",  # OpenAI's field is called "type"
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """Build OpenAI's error body.

    Args:
        message: What went wrong and how to fix it.
        type: OpenAI's error type, such as ``invalid_request_error``.
        param: The request parameter the error is about.
        code: A machine-readable code, such as ``model_not_found``.

    Returns:
        ``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}``.
    """
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class ApiError(Exception):
    """An error to answer with a given HTTP status and OpenAI's error body.

    Attributes:
        status_code: The HTTP status.
        message: What went wrong and how to fix it.
        type: OpenAI's error type.
        param: The request parameter the error is about, when there is one.
        code: A machine-readable code, when there is one.
        headers: Extra response headers.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # OpenAI's field is called "type"
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """Return the JSON body of this error."""
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


class InvalidRequestError(ApiError):
    """A 400 ``invalid_request_error`` naming the offending parameter."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(400, message, param=param, code=code)


class NotFoundError(ApiError):
    """A 404 for an id or model that does not exist."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(404, message, param=param, code=code)


class UnauthorizedError(ApiError):
    """A 401 for a missing or wrong API key (the key itself is never repeated)."""

    def __init__(self, message: str) -> None:
        super().__init__(401, message, code="invalid_api_key")


class PayloadTooLargeError(ApiError):
    """A 413 for a request body over the configured limit."""

    def __init__(self, limit: int, what: str = "Request body") -> None:
        super().__init__(
            413,
            f"{what} is larger than this server's limit of {limit} bytes. Send a smaller "
            "request, use the Uploads API for large files, or raise the limit with "
            "LocalBackend(limits=RequestLimits(...)).",
            code="request_too_large",
        )
        self.limit = limit
