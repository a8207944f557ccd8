"""Object ids in OpenAI's forms: ``file-…``, ``ftjob-…``, ``upload_…`` and the like.

Ids are random (``secrets``), so they cannot be guessed from one another, and carry the same
prefixes as OpenAI's so code that checks a prefix keeps working.

Example:
    >>> new_id("file").startswith("file-")
    True
    >>> len(new_id("ftjob")) == len("ftjob-") + 24
    True
"""

from __future__ import annotations

import secrets
import string
from typing import Literal

__all__ = [
    "IdKind",
    "display_base_name",
    "fine_tuned_model_name",
    "new_id",
    "new_model_token",
]

_ALPHABET = string.ascii_letters + string.digits

IdKind = Literal["file", "ftjob", "ftevent", "ftckpt", "upload", "part", "chatcmpl"]

_PREFIXES: dict[str, str] = {
    "file": "file-",
    "ftjob": "ftjob-",
    "ftevent": "ftevent-",
    "ftckpt": "ftckpt-",
    "upload": "upload_",
    "part": "part_",
    "chatcmpl": "chatcmpl-",
}


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new_id(kind: IdKind) -> str:
    """Return a new random id of the given kind.

    Args:
        kind: Which object the id is for.

    Returns:
        The prefix followed by 24 random letters and digits.
    """
    return _PREFIXES[kind] + _random(24)


def new_model_token() -> str:
    """Return the 8-character token that ends a fine-tuned model name."""
    return _random(8)


def fine_tuned_model_name(base_model: str, suffix: str | None, token: str) -> str:
    """Return a fine-tuned model name in OpenAI's form, with ``local`` as the organisation.

    Args:
        base_model: The base model really used.
        suffix: The job's suffix, if any.
        token: The job's model token (``new_model_token()``).

    Returns:
        ``ft:<base>:local:<suffix>:<token>``; an empty suffix gives ``ft:<base>:local::<token>``.

    Example:
        >>> fine_tuned_model_name("tiny-random", "bot", "AbCd1234")
        'ft:tiny-random:local:bot:AbCd1234'
    """
    return f"ft:{base_model}:local:{suffix or ''}:{token}"


def display_base_name(base_model: str) -> str:
    """Return the base model's name as it appears inside a fine-tuned model name.

    A base model given by path is shown by its last component, so a model name never holds a
    path separator or an extra colon.

    Example:
        >>> display_base_name("/models/my-llama")
        'my-llama'
        >>> display_base_name("tiny-random")
        'tiny-random'
    """
    name = base_model
    if "/" in name or "\\" in name:
        name = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return name.replace(":", "-") or "local-model"
