"""Azure OpenAI: the client for a resource, and deploying fine-tuned models on it.

Owns ``client`` (``azure_openai_client``: a data-plane ``openai`` client for a resource, by key
or Entra ID, classic endpoint or v1; Azure's suffix limit), ``deployer`` (``AzureDeployer`` and
its async twin: deploy, wait, get, list and delete deployments through the ARM management API,
every decision taken once by shared step generators), ``deployments`` (``AzureDeployment``:
what ARM says of a deployment, and ``cost_notes``: what a deployment costs and how long Azure
keeps it) and ``training`` (the training tier, ``trainingType``, and Azure's fine-tuned model
and checkpoint ids: ``deployable_model``).

May import: ``finetune_kit.errors`` and the shared infrastructure (``_retry``, ``_steps``,
``_version``); never the session, the local backend or the CLI. Azure's other differences
(the suffix limit, ``api-version``) are applied by the services that meet them, from here.
"""

import typing as _typing

from .. import _lazy

if _typing.TYPE_CHECKING:  # the export table: read at import for __all__ and the lazy loader
    from .client import AZURE_SUFFIX_MAX_LENGTH as AZURE_SUFFIX_MAX_LENGTH
    from .client import azure_openai_client as azure_openai_client
    from .deployer import ARM_MANAGEMENT_URL as ARM_MANAGEMENT_URL
    from .deployer import DEFAULT_ARM_API_VERSION as DEFAULT_ARM_API_VERSION
    from .deployer import DEVELOPER_TIER_API_VERSION as DEVELOPER_TIER_API_VERSION
    from .deployer import AsyncAzureDeployer as AsyncAzureDeployer
    from .deployer import AzureDeployer as AzureDeployer
    from .deployer import build_deployment_body as build_deployment_body
    from .deployments import AzureDeployment as AzureDeployment
    from .deployments import cost_notes as cost_notes
    from .training import TRAINING_TYPE_WIRE_VALUES as TRAINING_TYPE_WIRE_VALUES
    from .training import TRAINING_TYPES as TRAINING_TYPES
    from .training import TrainingType as TrainingType
    from .training import deployable_model as deployable_model
    from .training import is_azure_checkpoint as is_azure_checkpoint
    from .training import is_azure_fine_tuned_model as is_azure_fine_tuned_model
    from .training import training_type_body as training_type_body

_EXPORTS = _lazy.export_table(__name__)
__all__ = sorted(_EXPORTS)
_lazy.serve_lazily(__name__, _EXPORTS)
