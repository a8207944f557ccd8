"""Checks of a job's other create options: suffix, seed, metadata and the wandb integration.

The API's limits, checked on your machine so a bad value fails at once with the parameter named:

| option | rule |
|---|---|
| ``suffix`` | 1-64 characters (Azure OpenAI: 18); letters, digits, ``-`` and ``_`` |
| ``seed`` | integer 0-2147483647 |
| ``metadata`` | at most 16 pairs; keys up to 64 characters, values up to 512, both strings |
| ``integrations`` | only ``wandb``, with a ``project`` |

Examples:
    >>> check_suffix("support-bot", provider="azure")
    'support-bot'
    >>> sanitize_suffix("My Support Bot!", max_length=18)
    'my-support-bot'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..azure.client import AZURE_SUFFIX_MAX_LENGTH
from ..errors import ConfigurationError

__all__ = [
    "MAX_SEED",
    "METADATA_MAX_PAIRS",
    "OPENAI_SUFFIX_MAX_LENGTH",
    "Provider",
    "WandbIntegration",
    "check_metadata",
    "check_seed",
    "check_suffix",
    "detect_provider",
    "sanitize_suffix",
    "suffix_max_length",
]

Provider = Literal["openai", "azure", "local", "custom"]

OPENAI_SUFFIX_MAX_LENGTH = 64
MAX_SEED = 2_147_483_647
METADATA_MAX_PAIRS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512

_SUFFIX_OK = re.compile(r"^[A-Za-z0-9_-]+$")
_AZURE_HOST_SUFFIXES = (
    ".openai.azure.com",
    ".cognitiveservices.azure.com",
    ".services.ai.azure.com",
)


def detect_provider(client: Any) -> Provider:
    """Guess which kind of backend a client talks to, from its class and base URL.

    Args:
        client: An ``openai`` client (sync or async, OpenAI or Azure).

    Returns:
        ``azure`` for Azure OpenAI, ``openai`` for api.openai.com, ``local`` for a loopback
        address, else ``custom``.
    """
    base_url = str(getattr(client, "base_url", "") or "")
    host = (urlsplit(base_url).hostname or "").lower()
    if "Azure" in type(client).__name__ or host.endswith(_AZURE_HOST_SUFFIXES):
        return "azure"
    if host == "api.openai.com":
        return "openai"
    if host in ("127.0.0.1", "localhost", "::1"):
        return "local"
    return "custom"


def suffix_max_length(provider: Provider | None) -> int:
    """The longest suffix a provider accepts.

    Args:
        provider: The provider, or ``None`` for OpenAI's rule.

    Returns:
        18 for Azure, else 64.
    """
    return AZURE_SUFFIX_MAX_LENGTH if provider == "azure" else OPENAI_SUFFIX_MAX_LENGTH


def sanitize_suffix(text: str, *, max_length: int = OPENAI_SUFFIX_MAX_LENGTH) -> str:
    """Turn any text into a suffix every provider accepts: lowercase, ``[a-z0-9_-]``, truncated.

    Args:
        text: A name, such as a project or dataset name.
        max_length: The provider's limit.

    Returns:
        The suffix (``"ft"`` when nothing usable is left).
    """
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    return cleaned[:max_length].rstrip("-_") or "ft"


def check_suffix(
    suffix: str, *, provider: Provider | None = None, max_length: int | None = None
) -> str:
    """Check a suffix against the provider's length limit and the safe character set.

    Args:
        suffix: The suffix to put into the fine-tuned model's name.
        provider: The provider (``azure`` allows 18 characters, the others 64).
        max_length: An explicit limit, overriding the provider's.

    Returns:
        The suffix, unchanged.

    Raises:
        ConfigurationError: Empty, too long, or with other characters than letters, digits,
            ``-`` and ``_`` (``param="suffix"``; the message suggests a fixed value).
    """
    limit = max_length if max_length is not None else suffix_max_length(provider)
    where = "Azure OpenAI" if max_length is None and provider == "azure" else "the API"
    if not isinstance(suffix, str) or not suffix:
        raise ConfigurationError(
            "suffix must be a non-empty string; pass None for no suffix", param="suffix"
        )
    if len(suffix) > limit:
        raise ConfigurationError(
            f"suffix {suffix!r} is {len(suffix)} characters long; {where} accepts at most "
            f"{limit}: try {sanitize_suffix(suffix, max_length=limit)!r}",
            param="suffix",
        )
    if not _SUFFIX_OK.match(suffix):
        raise ConfigurationError(
            f"suffix {suffix!r} has characters other than letters, digits, '-' and '_', which "
            f"the API may refuse: try {sanitize_suffix(suffix, max_length=limit)!r}",
            param="suffix",
        )
    return suffix


def check_seed(seed: int) -> int:
    """Check a training seed.

    Args:
        seed: The seed.

    Returns:
        The seed.

    Raises:
        ConfigurationError: Not an integer in 0..2147483647 (``param="seed"``).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigurationError(
            f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}", param="seed"
        )
    return seed


def check_metadata(metadata: Mapping[str, str], *, reserved: int = 0) -> dict[str, str]:
    """Check a job's metadata against the API's limits.

    Args:
        metadata: The user's key/value pairs.
        reserved: Pairs the library adds itself (its idempotency key), counted in the limit.

    Returns:
        A plain dict copy.

    Raises:
        ConfigurationError: Too many pairs, a key or value too long or not a string
            (``param="metadata"`` or ``metadata.<key>``).
    """
    if not isinstance(metadata, Mapping):
        raise ConfigurationError(
            f"metadata must be a dict of strings, got {type(metadata).__name__}", param="metadata"
        )
    room = METADATA_MAX_PAIRS - reserved
    if len(metadata) > room:
        extra = f" ({reserved} used by finetune_kit's idempotency key)" if reserved else ""
        raise ConfigurationError(
            f"metadata has {len(metadata)} pairs; at most {room} are allowed{extra}",
            param="metadata",
        )
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or len(key) > METADATA_KEY_MAX:
            raise ConfigurationError(
                f"metadata key {key!r} must be a string of 1-{METADATA_KEY_MAX} characters",
                param="metadata",
            )
        if not isinstance(value, str) or len(value) > METADATA_VALUE_MAX:
            shown = value if not isinstance(value, str) else f"{len(value)} characters"
            raise ConfigurationError(
                f"metadata[{key!r}] must be a string of at most {METADATA_VALUE_MAX} characters, "
                f"got {shown!r}",
                param=f"metadata.{key}",
            )
    return dict(metadata)


class WandbIntegration(BaseModel):
    """Send the job's metrics to Weights & Biases (the API's only integration).

    OpenAI adds the tags ``openai/finetune``, ``openai/<base-model>`` and ``openai/<job-id>``;
    the run name defaults to the job id.

    Attributes:
        project: The wandb project (required).
        name: The run's display name.
        entity: The wandb team or user.
        tags: Extra tags for the run.

    Examples:
        >>> WandbIntegration(project="ft", tags=["v1"]).to_param()
        {'type': 'wandb', 'wandb': {'project': 'ft', 'tags': ['v1']}}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str
    name: str | None = None
    entity: str | None = None
    tags: list[str] | None = Field(default=None)

    @field_validator("project")
    @classmethod
    def _check_project(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("project must not be empty")
        return value

    def to_param(self) -> dict[str, Any]:
        """The entry of ``jobs.create(integrations=[...])``.

        Returns:
            ``{"type": "wandb", "wandb": {...}}`` with unset fields left out.
        """
        return {"type": "wandb", "wandb": self.model_dump(exclude_none=True)}

    @classmethod
    def coerce(cls, value: WandbIntegration | Mapping[str, Any] | str) -> WandbIntegration:
        """Accept a model, the API's dict, its inner ``wandb`` dict, or a project name.

        Args:
            value: The integration in any of those forms.

        Returns:
            The checked model.

        Raises:
            ConfigurationError: Not a wandb integration, or a field is wrong
                (``param="integrations"``).
        """
        if isinstance(value, WandbIntegration):
            return value
        if isinstance(value, str):
            value = {"project": value}
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                "integrations: an integration must be a WandbIntegration or a dict, "
                f"got {type(value).__name__}",
                param="integrations",
            )
        if "type" in value:
            if value["type"] != "wandb":
                raise ConfigurationError(
                    f"integrations: type {value['type']!r} is not supported; only 'wandb' exists",
                    param="integrations",
                )
            value = value.get("wandb") or {}
        try:
            return cls.model_validate(dict(value))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigurationError(
                f"integrations: wandb.{where}: {first['msg']}", param="integrations"
            ) from exc
