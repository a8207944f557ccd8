"""finetune_kit: the whole fine-tuning workflow of OpenAI-style APIs.

Prepare and preflight training data, upload it, create and follow a fine-tuning job, then chat
with, compare and evaluate the tuned model; against OpenAI, Azure OpenAI, any server speaking the
same API, or the local backend shipped in this package (``LocalBackend``, extra ``local``).
"""

import importlib as _importlib
from typing import Any as _Any

from ._retry import RetryPolicy
from ._version import __version__
from ._watch import FollowOptions
from .azure import azure_openai_client
from .azure_deploy import AsyncAzureDeployer, AzureDeployer
from .azure_deployment import AzureDeployment
from .backends import make_client
from .data.builders import (
    BuilderOptions,
    DatasetBuilder,
    available_builders,
    build_dataset,
    get_builder,
    register_builder,
    unregister_builder,
)
from .data.dataset import Dataset, concat
from .data.fixes import FixResult, autofix
from .data.issues import Issue
from .data.models import ModelInfo, get_model_info
from .data.records import (
    AssistantMessage,
    ChatExample,
    DeveloperMessage,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageURL,
    PreferenceExample,
    ReinforcementExample,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolMessage,
    TrainingExample,
    UserMessage,
    parse_example,
)
from .data.report import PreflightReport
from .data.tokens import count_example_tokens, count_tokens
from .data.validation import preflight
from .errors import (
    BuilderError,
    ConfigurationError,
    DataError,
    DeploymentError,
    DeploymentTimeoutError,
    ExampleValidationError,
    FinetuneKitError,
    FinetuneKitWarning,
    JobCancelledError,
    JobError,
    JobFailedError,
    JobTimeoutError,
    JSONLDecodeError,
    LocalBackendError,
    MissingDependencyError,
    ModelShutdownWarning,
    PreflightFailedError,
    SessionError,
    TokenizerFileError,
    TrainingDataError,
    UploadError,
)
from .evaluation import EvaluationReport, PairedEvaluationReport
from .files import AsyncFileUploader, FileUploader
from .inference import AsyncInferenceClient, Comparison, InferenceClient
from .job_options import WandbIntegration
from .jobs import AsyncJobManager, JobManager
from .lifecycle import check_shutdown, export_job
from .methods import (
    DpoHyperparameters,
    DpoMethod,
    ReinforcementHyperparameters,
    ReinforcementMethod,
    SupervisedHyperparameters,
    SupervisedMethod,
)
from .metrics import MetricPoint, MetricSeries
from .replies import ChatReply
from .scorers import (
    CallableScorer,
    Contains,
    ExactMatch,
    ModelJudge,
    RegexMatch,
    Scorer,
    ToolCallMatch,
    ValidJSON,
)
from .session import AsyncFineTuneSession, FineTuneSession
from .state import SessionState
from .views import JobEvent, JobUpdate, StatusChange, UploadedFile
from .watcher import AsyncJobWatcher, JobWatcher

__all__ = [
    "AssistantMessage",
    "AsyncAzureDeployer",
    "AsyncFileUploader",
    "AsyncFineTuneSession",
    "AsyncInferenceClient",
    "AsyncJobManager",
    "AsyncJobWatcher",
    "AzureDeployer",
    "AzureDeployment",
    "BuilderError",
    "BuilderOptions",
    "CallableScorer",
    "ChatExample",
    "ChatReply",
    "Comparison",
    "ConfigurationError",
    "Contains",
    "DataError",
    "Dataset",
    "DatasetBuilder",
    "DeploymentError",
    "DeploymentTimeoutError",
    "DeveloperMessage",
    "DpoHyperparameters",
    "DpoMethod",
    "EvaluationReport",
    "ExactMatch",
    "ExampleValidationError",
    "FileUploader",
    "FineTuneSession",
    "FinetuneKitError",
    "FinetuneKitWarning",
    "FixResult",
    "FollowOptions",
    "FunctionCall",
    "FunctionDefinition",
    "ImagePart",
    "ImageURL",
    "InferenceClient",
    "Issue",
    "JSONLDecodeError",
    "JobCancelledError",
    "JobError",
    "JobEvent",
    "JobFailedError",
    "JobManager",
    "JobTimeoutError",
    "JobUpdate",
    "JobWatcher",
    "LocalBackend",
    "LocalBackendError",
    "MetricPoint",
    "MetricSeries",
    "MissingDependencyError",
    "ModelInfo",
    "ModelJudge",
    "ModelShutdownWarning",
    "PairedEvaluationReport",
    "PreferenceExample",
    "PreflightFailedError",
    "PreflightReport",
    "RegexMatch",
    "ReinforcementExample",
    "ReinforcementHyperparameters",
    "ReinforcementMethod",
    "RetryPolicy",
    "Scorer",
    "SessionError",
    "SessionState",
    "StatusChange",
    "SupervisedHyperparameters",
    "SupervisedMethod",
    "SystemMessage",
    "TextPart",
    "TokenizerFileError",
    "Tool",
    "ToolCall",
    "ToolCallMatch",
    "ToolMessage",
    "TrainingDataError",
    "TrainingExample",
    "UploadError",
    "UploadedFile",
    "UserMessage",
    "ValidJSON",
    "WandbIntegration",
    "__version__",
    "autofix",
    "available_builders",
    "azure_openai_client",
    "build_dataset",
    "check_shutdown",
    "concat",
    "count_example_tokens",
    "count_tokens",
    "export_job",
    "get_builder",
    "get_model_info",
    "make_client",
    "parse_example",
    "preflight",
    "register_builder",
    "unregister_builder",
]

_LAZY = {
    # The local backend needs the `local` extra (torch, transformers, FastAPI) and takes a moment
    # to import: loaded on first use, so `import finetune_kit` stays light everywhere.
    "LocalBackend": "finetune_kit.local",
}


def __getattr__(name: str) -> _Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'finetune_kit' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module_name), name)
    value.__module__ = "finetune_kit"
    globals()[name] = value
    return value


# Tracebacks and reprs read `finetune_kit.JobFailedError`, not the private module path.
for _name in __all__:
    if _name in _LAZY or _name.startswith("__"):
        continue
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("finetune_kit."):
        _obj.__module__ = "finetune_kit"
del _name, _obj
