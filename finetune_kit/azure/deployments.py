"""Views of Azure OpenAI model deployments as the ARM management API returns them.

A deployment is an ARM resource,
``/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/accounts/
{resource}/deployments/{name}``, whose ``properties.provisioningState`` moves from ``Accepted`` /
``Creating`` (or ``Updating``) to ``Succeeded``, ``Failed`` or ``Canceled``. The views are
lenient, like every view of a server object in finetune_kit: unknown fields are kept, missing
ones are ``None``, and a state never seen before is reported, not refused.

Examples:
    >>> dep = AzureDeployment.from_arm(
    ...     {
    ...         "name": "support-bot",
    ...         "sku": {"name": "standard", "capacity": 1},
    ...         "properties": {
    ...             "provisioningState": "Succeeded",
    ...             "model": {"format": "OpenAI", "name": "gpt-4.1-mini-2025-04-14.ft-abc"},
    ...         },
    ...     }
    ... )
    >>> dep.state, dep.model_name, dep.succeeded
    ('Succeeded', 'gpt-4.1-mini-2025-04-14.ft-abc', True)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic.alias_generators import to_camel

__all__ = [
    "DEVELOPER_TIER_SKU",
    "FAILED_STATES",
    "SUCCEEDED_STATE",
    "AzureDeployment",
    "DeploymentModel",
    "DeploymentProperties",
    "DeploymentSku",
    "cost_notes",
]

logger = logging.getLogger("finetune_kit.azure")

SUCCEEDED_STATE = "Succeeded"
"""The ``provisioningState`` of a deployment ready to answer."""

FAILED_STATES = frozenset({"Failed", "Canceled", "Disabled"})
"""``provisioningState`` values that end a wait with an error: waiting longer cannot help."""

DEVELOPER_TIER_SKU = "developertier"
"""The SKU of a Developer-tier deployment."""


def cost_notes(sku: str | None) -> tuple[str, ...]:
    """What a deployment of this SKU costs and how long it lives, from Microsoft's docs.

    Args:
        sku: The deployment's SKU name (``standard``, ``globalstandard``, ``developertier``...).

    Returns:
        The notes, one sentence each: what to know before paying for the deployment.

    Examples:
        >>> "24 hours" in cost_notes("developertier")[1], "15 days" in cost_notes("standard")[1]
        (True, True)
    """
    if sku is not None and sku.lower() == DEVELOPER_TIER_SKU:
        return (
            "Developer tier: no hosting fee (tokens are billed), no SLA",
            "Azure removes a Developer-tier deployment 24 hours after it is created, whatever "
            "its traffic",
        )
    return (
        "Azure bills an hourly hosting fee for a deployed fine-tuned model until the deployment "
        "is deleted, whether or not it is called (Standard and Global Standard: $1.70 an hour "
        "in Microsoft's example; the pricing page has today's figure)",
        "Azure deletes a fine-tuned deployment that gets no chat completions or responses calls "
        "for 15 days (the model is kept and can be deployed again)",
    )


class _ArmView(BaseModel):
    # Server objects: unknown fields are kept (a new ARM field never breaks parsing), and the
    # camelCase JSON names map to snake_case attributes.
    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)


class DeploymentSku(_ArmView):
    """The deployment's SKU: its type and capacity.

    Attributes:
        name: ``standard``, ``globalstandard``, ``developertier``, ``ProvisionedManaged``...
        capacity: Capacity units (thousands of tokens per minute for Standard).
    """

    name: str | None = None
    capacity: int | None = None


class DeploymentModel(_ArmView):
    """The model a deployment serves.

    Attributes:
        format: ``OpenAI`` for Azure OpenAI models.
        name: The model's id, for a fine-tuned model ``{base}.ft-{32 hex}`` or a checkpoint's
            ``ftchkpt-{32 hex}``.
        version: The model's version (``1`` for a fine-tuned model).
        source: The ARM id of the resource the model comes from, for a cross-resource deployment.
    """

    format: str | None = None
    name: str | None = None
    version: str | None = None
    source: str | None = None


class DeploymentProperties(_ArmView):
    """The deployment's ``properties``.

    Attributes:
        provisioning_state: ``Accepted``, ``Creating``, ``Updating``, ``Succeeded``, ``Failed``,
            ``Canceled``, ``Deleting``... (an open string).
        model: The model served.
        error: An error object, when Azure attached one to a failed deployment.
    """

    provisioning_state: str | None = None
    model: DeploymentModel | None = None
    error: Any = None


class AzureDeployment(_ArmView):
    """A model deployment on an Azure OpenAI resource (a lenient view of the ARM resource).

    Call the deployed model through the data-plane client with the deployment's name:
    ``client.chat.completions.create(model=deployment.name, ...)``.

    Attributes:
        id: The ARM resource id.
        name: The deployment's name: the ``model`` to pass to inference calls.
        type: ``Microsoft.CognitiveServices/accounts/deployments``.
        sku: Its SKU, when reported.
        properties: Its properties.

    Examples:
        >>> AzureDeployment.from_arm({"name": "bot", "properties": {"provisioningState": "New"}})
        AzureDeployment(name='bot', state='New', model=None)
    """

    id: str | None = None
    name: str | None = None
    type: str | None = None
    sku: DeploymentSku | None = None
    properties: DeploymentProperties = Field(default_factory=DeploymentProperties)
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_arm(cls, body: Mapping[str, Any]) -> AzureDeployment:
        """Build the view from an ARM response body, never failing on its shape.

        Args:
            body: The JSON object ARM returned for the deployment.

        Returns:
            The view. A body whose known fields have unexpected types still gives a view with the
            name and state (read defensively), and the whole body in :attr:`raw`.
        """
        raw = dict(body)
        try:
            view = cls.model_validate(raw)
        except ValidationError as exc:
            logger.debug("deployment body has unexpected field types (%s); kept raw", exc)
            view = cls(
                name=_str_or_none(raw.get("name")),
                id=_str_or_none(raw.get("id")),
                properties=DeploymentProperties(provisioning_state=provisioning_state_of(raw)),
            )
        view._raw = raw
        return view

    @property
    def raw(self) -> dict[str, Any]:
        """The ARM response body this view was built from."""
        return self._raw

    @property
    def state(self) -> str | None:
        """The ``provisioningState``, such as ``Creating`` or ``Succeeded``."""
        return self.properties.provisioning_state

    @property
    def model_name(self) -> str | None:
        """The id of the model the deployment serves."""
        return self.properties.model.name if self.properties.model is not None else None

    @property
    def cost_notes(self) -> tuple[str, ...]:
        """What this deployment costs and how long Azure keeps it (see :func:`cost_notes`)."""
        return cost_notes(self.sku.name if self.sku is not None else None)

    @property
    def succeeded(self) -> bool:
        """Whether the deployment is provisioned and can answer."""
        return _same_state(self.state, SUCCEEDED_STATE)

    @property
    def failed(self) -> bool:
        """Whether the deployment ended in a state that waiting cannot change (``Failed``...)."""
        return any(_same_state(self.state, state) for state in FAILED_STATES)

    def __repr__(self) -> str:
        return (
            f"AzureDeployment(name={self.name!r}, state={self.state!r}, model={self.model_name!r})"
        )


def _same_state(state: str | None, expected: str) -> bool:
    # ARM documents PascalCase states; compare leniently in case a service sends another case.
    return state is not None and state.lower() == expected.lower()


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def provisioning_state_of(body: Mapping[str, Any]) -> str | None:
    """Read ``properties.provisioningState`` from an ARM body of any shape.

    Args:
        body: An ARM resource body.

    Returns:
        The state, or ``None`` when there is no string state where it should be.

    Examples:
        >>> provisioning_state_of({"properties": {"provisioningState": "Creating"}})
        'Creating'
        >>> provisioning_state_of({"properties": None}) is None
        True
    """
    properties = body.get("properties")
    if not isinstance(properties, Mapping):
        return None
    return _str_or_none(properties.get("provisioningState"))
