"""Azure OpenAI's training tier (``trainingType``) and its fine-tuned model and checkpoint ids.

**The training tier.** Azure OpenAI trains a job on one of three tiers, chosen by a field of the
create-job body that OpenAI's API does not have, ``trainingType``; openai-python sends it with
``extra_body``, as Microsoft's v1 examples do::

    client.fine_tuning.jobs.create(..., extra_body={"trainingType": "GlobalStandard"})

- ``Standard``: trains in the resource's region (data residency).
- ``GlobalStandard``: cheaper, on capacity outside the region (data and weights are copied out).
- ``Developer`` (preview): idle capacity, much cheaper, no SLA: a job may be paused by the
  system and resumed later, and there is no data residency.

Microsoft's documentation spells the Developer tier two ways: ``Developer`` in a comment listing
the options, ``developerTier`` in its only code example (and the REST page writes the global
tier ``globalstandard``, in lower case). :data:`TRAINING_TYPE_WIRE_VALUES` sends the spellings
shown in code; ``training_type_wire=`` sends any other, should Azure refuse one.

**Model ids.** A fine-tuned model on Azure is ``{base}.ft-{32 hex}``
(``gpt-4.1-mini-2025-04-14.ft-0123456789abcdef0123456789abcdef``), a checkpoint ``ftchkpt-{32
hex}``; a checkpoint's ``fine_tuned_model_checkpoint`` is a ``.ft-`` id shared by the job's
checkpoints, so a checkpoint is deployed by its own ``id``. :func:`deployable_model` finds the id
to deploy in a name, a job or a checkpoint.

Examples:
    >>> training_type_body("Developer")
    {'trainingType': 'developerTier'}
    >>> training_type_body("Developer", wire="Developer")
    {'trainingType': 'Developer'}
    >>> is_azure_checkpoint("ftchkpt-e559c011ecc04fc68eaa339d8227d02d")
    True
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, get_args

from ..errors import ConfigurationError

__all__ = [
    "TRAINING_TYPES",
    "TRAINING_TYPE_WIRE_VALUES",
    "TrainingType",
    "deployable_model",
    "is_azure_checkpoint",
    "is_azure_fine_tuned_model",
    "training_type_body",
]

TrainingType: TypeAlias = Literal["GlobalStandard", "Standard", "Developer"]
"""Azure OpenAI's training tiers."""

TRAINING_TYPES: tuple[str, ...] = get_args(TrainingType)

TRAINING_TYPE_WIRE_VALUES: Mapping[str, str] = MappingProxyType(
    {"GlobalStandard": "GlobalStandard", "Standard": "Standard", "Developer": "developerTier"}
)
"""The ``trainingType`` value sent for each tier: the spellings Microsoft's code examples use."""

_FINE_TUNED = re.compile(r"^.+\.ft-[0-9a-f]{8,}(?:[-_][A-Za-z0-9_-]*)?$", re.IGNORECASE)
_CHECKPOINT = re.compile(r"^ftchkpt-[0-9a-f]{8,}$", re.IGNORECASE)


def training_type_body(training_type: str, *, wire: str | None = None) -> dict[str, str]:
    """The create-job body's ``trainingType`` for a tier (``extra_body`` of ``jobs.create``).

    Args:
        training_type: ``"GlobalStandard"``, ``"Standard"`` or ``"Developer"``.
        wire: The value to send instead of the documented one (Microsoft's spelling of a tier
            varies between pages).

    Returns:
        ``{"trainingType": value}``.

    Raises:
        ConfigurationError: Not a tier (``param="training_type"``), or an empty ``wire``
            (``param="training_type_wire"``).
    """
    if training_type not in TRAINING_TYPES:
        close = difflib.get_close_matches(str(training_type), TRAINING_TYPES, n=1, cutoff=0.5)
        lower = {t.lower(): t for t in TRAINING_TYPES}.get(str(training_type).lower())
        guess = lower or (close[0] if close else None)
        hint = f" (did you mean {guess!r}?)" if guess else ""
        raise ConfigurationError(
            f"training_type={training_type!r} is not one of Azure OpenAI's training tiers"
            f"{hint}: {', '.join(TRAINING_TYPES)}. To send another spelling of a tier, pass "
            "the tier and training_type_wire='<the spelling>'",
            param="training_type",
        )
    if wire is not None and (not isinstance(wire, str) or not wire.strip() or wire != wire.strip()):
        raise ConfigurationError(
            f"training_type_wire={wire!r} is not a value to send: give the spelling of the "
            "tier Azure takes, such as 'developerTier'",
            param="training_type_wire",
        )
    return {"trainingType": wire if wire is not None else TRAINING_TYPE_WIRE_VALUES[training_type]}


def is_azure_fine_tuned_model(name: str) -> bool:
    """Whether ``name`` has the form of an Azure fine-tuned model id (``{base}.ft-{hex}``)."""
    return bool(_FINE_TUNED.match(name))


def is_azure_checkpoint(name: str) -> bool:
    """Whether ``name`` has the form of an Azure checkpoint id (``ftchkpt-{hex}``)."""
    return bool(_CHECKPOINT.match(name))


def deployable_model(model: Any) -> str:
    """The id Azure deploys for a model: a fine-tuned model's or a checkpoint's.

    Args:
        model: An id (``{base}.ft-{hex}`` or ``ftchkpt-{hex}``); a fine-tuning job (its
            ``fine_tuned_model``); a job checkpoint or a session's ``CheckpointRecord`` (its
            ``ftchkpt-`` id: Azure's ``fine_tuned_model_checkpoint`` is the job's ``.ft-`` id,
            the same for each of its checkpoints).

    Returns:
        The id.

    Raises:
        ConfigurationError: No id can be found, or it is OpenAI's (``ft:...``), which Azure
            does not know.
    """
    name: Any = model
    if not isinstance(model, str):
        checkpoint_id = getattr(model, "id", None)
        if isinstance(checkpoint_id, str) and is_azure_checkpoint(checkpoint_id):
            name = checkpoint_id
        elif hasattr(model, "fine_tuned_model"):
            name = model.fine_tuned_model
            if not name:
                raise ConfigurationError(
                    f"job {getattr(model, 'id', '?')} has no fine-tuned model yet (status "
                    f"{getattr(model, 'status', '?')}); wait for it to succeed",
                    param="model",
                )
        else:
            name = getattr(model, "fine_tuned_model_checkpoint", None) or getattr(
                model, "model", None
            )
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ConfigurationError(
            f"model={model!r} is not a model id; pass the job's fine_tuned_model, such as "
            "'gpt-4.1-mini-2025-04-14.ft-<32 hex>', or a checkpoint id 'ftchkpt-<32 hex>'",
            param="model",
        )
    if name.startswith("ft:") or ":ckpt-step-" in name:
        raise ConfigurationError(
            f"model={name!r} is an OpenAI model id, which Azure OpenAI does not know: on Azure a "
            "fine-tuned model is '<base>.ft-<32 hex>' and a checkpoint 'ftchkpt-<32 hex>' (the "
            "Azure job's fine_tuned_model, its checkpoints' id)",
            param="model",
        )
    return name
