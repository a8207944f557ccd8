"""finetune_kit: the whole fine-tuning workflow of OpenAI-style APIs.

Prepare and preflight training data, upload it, create and follow a fine-tuning job, then chat
with, compare and evaluate the tuned model; against OpenAI, Azure OpenAI, any server speaking the
same API, or the local backend shipped in this package (``LocalBackend``, extra ``local``).

Every public name is importable from here. Apart from the exceptions, they are imported on first
use (see ``finetune_kit._lazy``), so importing the package, or any of its modules, stays cheap.
"""

import typing as _typing

from ._lazy import lazy_exports as _lazy_exports
from ._version import __version__
from .errors import (
    BuilderError,
    ConfigurationError,
    DataError,
    DeploymentError,
    DeploymentTimeoutError,
    ExampleValidationError,
    FinetuneKitError,
    FinetuneKitWarning,
    FineTuningUnavailableError,
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

if _typing.TYPE_CHECKING:  # what type checkers and IDEs see; the table below is what runs
    from ._retry import RetryPolicy as RetryPolicy
    from ._watch import FollowOptions as FollowOptions
    from .azure import azure_openai_client as azure_openai_client
    from .azure_deploy import (
        AsyncAzureDeployer as AsyncAzureDeployer,
    )
    from .azure_deploy import (
        AzureDeployer as AzureDeployer,
    )
    from .azure_deployment import AzureDeployment as AzureDeployment
    from .backends import make_client as make_client
    from .data.builders import (
        BuilderOptions as BuilderOptions,
    )
    from .data.builders import (
        DatasetBuilder as DatasetBuilder,
    )
    from .data.builders import (
        available_builders as available_builders,
    )
    from .data.builders import (
        build_dataset as build_dataset,
    )
    from .data.builders import (
        get_builder as get_builder,
    )
    from .data.builders import (
        register_builder as register_builder,
    )
    from .data.builders import (
        unregister_builder as unregister_builder,
    )
    from .data.dataset import (
        Dataset as Dataset,
    )
    from .data.dataset import (
        concat as concat,
    )
    from .data.fixes import (
        FixResult as FixResult,
    )
    from .data.fixes import (
        autofix as autofix,
    )
    from .data.issues import Issue as Issue
    from .data.models import (
        ModelInfo as ModelInfo,
    )
    from .data.models import (
        get_model_info as get_model_info,
    )
    from .data.records import (
        AssistantMessage as AssistantMessage,
    )
    from .data.records import (
        ChatExample as ChatExample,
    )
    from .data.records import (
        DeveloperMessage as DeveloperMessage,
    )
    from .data.records import (
        FunctionCall as FunctionCall,
    )
    from .data.records import (
        FunctionDefinition as FunctionDefinition,
    )
    from .data.records import (
        ImagePart as ImagePart,
    )
    from .data.records import (
        ImageURL as ImageURL,
    )
    from .data.records import (
        PreferenceExample as PreferenceExample,
    )
    from .data.records import (
        ReinforcementExample as ReinforcementExample,
    )
    from .data.records import (
        SystemMessage as SystemMessage,
    )
    from .data.records import (
        TextPart as TextPart,
    )
    from .data.records import (
        Tool as Tool,
    )
    from .data.records import (
        ToolCall as ToolCall,
    )
    from .data.records import (
        ToolMessage as ToolMessage,
    )
    from .data.records import (
        TrainingExample as TrainingExample,
    )
    from .data.records import (
        UserMessage as UserMessage,
    )
    from .data.records import (
        parse_example as parse_example,
    )
    from .data.report import (
        CostEstimate as CostEstimate,
    )
    from .data.report import (
        PreflightReport as PreflightReport,
    )
    from .data.tokens import (
        TokenCounter as TokenCounter,
    )
    from .data.tokens import (
        count_example_tokens as count_example_tokens,
    )
    from .data.tokens import (
        count_tokens as count_tokens,
    )
    from .data.tokens import (
        encoding_for_model as encoding_for_model,
    )
    from .data.tokens import (
        get_encoding as get_encoding,
    )
    from .data.validation import preflight as preflight
    from .evaluation import (
        EvaluationReport as EvaluationReport,
    )
    from .evaluation import (
        PairedEvaluationReport as PairedEvaluationReport,
    )
    from .files import (
        AsyncFileUploader as AsyncFileUploader,
    )
    from .files import (
        FileUploader as FileUploader,
    )
    from .inference import (
        AsyncInferenceClient as AsyncInferenceClient,
    )
    from .inference import (
        Comparison as Comparison,
    )
    from .inference import (
        InferenceClient as InferenceClient,
    )
    from .job_options import WandbIntegration as WandbIntegration
    from .jobs import (
        AsyncJobManager as AsyncJobManager,
    )
    from .jobs import (
        JobManager as JobManager,
    )
    from .lifecycle import (
        acheck_shutdown as acheck_shutdown,
    )
    from .lifecycle import (
        aexport_job as aexport_job,
    )
    from .lifecycle import (
        check_shutdown as check_shutdown,
    )
    from .lifecycle import (
        export_job as export_job,
    )
    from .local import LocalBackend as LocalBackend
    from .methods import (
        DpoHyperparameters as DpoHyperparameters,
    )
    from .methods import (
        DpoMethod as DpoMethod,
    )
    from .methods import (
        ReinforcementHyperparameters as ReinforcementHyperparameters,
    )
    from .methods import (
        ReinforcementMethod as ReinforcementMethod,
    )
    from .methods import (
        SupervisedHyperparameters as SupervisedHyperparameters,
    )
    from .methods import (
        SupervisedMethod as SupervisedMethod,
    )
    from .metrics import (
        MetricPoint as MetricPoint,
    )
    from .metrics import (
        MetricSeries as MetricSeries,
    )
    from .replies import ChatReply as ChatReply
    from .scorers import (
        CallableScorer as CallableScorer,
    )
    from .scorers import (
        Contains as Contains,
    )
    from .scorers import (
        ExactMatch as ExactMatch,
    )
    from .scorers import (
        ModelJudge as ModelJudge,
    )
    from .scorers import (
        RegexMatch as RegexMatch,
    )
    from .scorers import (
        Scorer as Scorer,
    )
    from .scorers import (
        ToolCallMatch as ToolCallMatch,
    )
    from .scorers import (
        ValidJSON as ValidJSON,
    )
    from .session import (
        AsyncFineTuneSession as AsyncFineTuneSession,
    )
    from .session import (
        FineTuneSession as FineTuneSession,
    )
    from .state import SessionState as SessionState
    from .views import (
        JobEvent as JobEvent,
    )
    from .views import (
        JobUpdate as JobUpdate,
    )
    from .views import (
        StatusChange as StatusChange,
    )
    from .views import (
        UploadedFile as UploadedFile,
    )
    from .watcher import (
        AsyncJobWatcher as AsyncJobWatcher,
    )
    from .watcher import (
        JobWatcher as JobWatcher,
    )

_EXPORTS = {
    "RetryPolicy": "finetune_kit._retry",
    "FollowOptions": "finetune_kit._watch",
    "azure_openai_client": "finetune_kit.azure",
    "AsyncAzureDeployer": "finetune_kit.azure_deploy",
    "AzureDeployer": "finetune_kit.azure_deploy",
    "AzureDeployment": "finetune_kit.azure_deployment",
    "make_client": "finetune_kit.backends",
    "BuilderOptions": "finetune_kit.data.builders",
    "DatasetBuilder": "finetune_kit.data.builders",
    "available_builders": "finetune_kit.data.builders",
    "build_dataset": "finetune_kit.data.builders",
    "get_builder": "finetune_kit.data.builders",
    "register_builder": "finetune_kit.data.builders",
    "unregister_builder": "finetune_kit.data.builders",
    "Dataset": "finetune_kit.data.dataset",
    "concat": "finetune_kit.data.dataset",
    "FixResult": "finetune_kit.data.fixes",
    "autofix": "finetune_kit.data.fixes",
    "Issue": "finetune_kit.data.issues",
    "ModelInfo": "finetune_kit.data.models",
    "get_model_info": "finetune_kit.data.models",
    "AssistantMessage": "finetune_kit.data.records",
    "ChatExample": "finetune_kit.data.records",
    "DeveloperMessage": "finetune_kit.data.records",
    "FunctionCall": "finetune_kit.data.records",
    "FunctionDefinition": "finetune_kit.data.records",
    "ImagePart": "finetune_kit.data.records",
    "ImageURL": "finetune_kit.data.records",
    "PreferenceExample": "finetune_kit.data.records",
    "ReinforcementExample": "finetune_kit.data.records",
    "SystemMessage": "finetune_kit.data.records",
    "TextPart": "finetune_kit.data.records",
    "Tool": "finetune_kit.data.records",
    "ToolCall": "finetune_kit.data.records",
    "ToolMessage": "finetune_kit.data.records",
    "TrainingExample": "finetune_kit.data.records",
    "UserMessage": "finetune_kit.data.records",
    "parse_example": "finetune_kit.data.records",
    "CostEstimate": "finetune_kit.data.report",
    "PreflightReport": "finetune_kit.data.report",
    "TokenCounter": "finetune_kit.data.tokens",
    "count_example_tokens": "finetune_kit.data.tokens",
    "count_tokens": "finetune_kit.data.tokens",
    "encoding_for_model": "finetune_kit.data.tokens",
    "get_encoding": "finetune_kit.data.tokens",
    "preflight": "finetune_kit.data.validation",
    "EvaluationReport": "finetune_kit.evaluation",
    "PairedEvaluationReport": "finetune_kit.evaluation",
    "AsyncFileUploader": "finetune_kit.files",
    "FileUploader": "finetune_kit.files",
    "AsyncInferenceClient": "finetune_kit.inference",
    "Comparison": "finetune_kit.inference",
    "InferenceClient": "finetune_kit.inference",
    "WandbIntegration": "finetune_kit.job_options",
    "AsyncJobManager": "finetune_kit.jobs",
    "JobManager": "finetune_kit.jobs",
    "acheck_shutdown": "finetune_kit.lifecycle",
    "aexport_job": "finetune_kit.lifecycle",
    "check_shutdown": "finetune_kit.lifecycle",
    "export_job": "finetune_kit.lifecycle",
    "LocalBackend": "finetune_kit.local",
    "DpoHyperparameters": "finetune_kit.methods",
    "DpoMethod": "finetune_kit.methods",
    "ReinforcementHyperparameters": "finetune_kit.methods",
    "ReinforcementMethod": "finetune_kit.methods",
    "SupervisedHyperparameters": "finetune_kit.methods",
    "SupervisedMethod": "finetune_kit.methods",
    "MetricPoint": "finetune_kit.metrics",
    "MetricSeries": "finetune_kit.metrics",
    "ChatReply": "finetune_kit.replies",
    "CallableScorer": "finetune_kit.scorers",
    "Contains": "finetune_kit.scorers",
    "ExactMatch": "finetune_kit.scorers",
    "ModelJudge": "finetune_kit.scorers",
    "RegexMatch": "finetune_kit.scorers",
    "Scorer": "finetune_kit.scorers",
    "ToolCallMatch": "finetune_kit.scorers",
    "ValidJSON": "finetune_kit.scorers",
    "AsyncFineTuneSession": "finetune_kit.session",
    "FineTuneSession": "finetune_kit.session",
    "SessionState": "finetune_kit.state",
    "JobEvent": "finetune_kit.views",
    "JobUpdate": "finetune_kit.views",
    "StatusChange": "finetune_kit.views",
    "UploadedFile": "finetune_kit.views",
    "AsyncJobWatcher": "finetune_kit.watcher",
    "JobWatcher": "finetune_kit.watcher",
}

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
    "CostEstimate",
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
    "FineTuningUnavailableError",
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
    "TokenCounter",
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
    "acheck_shutdown",
    "aexport_job",
    "autofix",
    "available_builders",
    "azure_openai_client",
    "build_dataset",
    "check_shutdown",
    "concat",
    "count_example_tokens",
    "count_tokens",
    "encoding_for_model",
    "export_job",
    "get_builder",
    "get_encoding",
    "get_model_info",
    "make_client",
    "parse_example",
    "preflight",
    "register_builder",
    "unregister_builder",
]

__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, globals())

# The exceptions are imported eagerly (they are light and raised everywhere): give them the
# package's name at once, so tracebacks read `finetune_kit.JobFailedError`.
for _exception in (
    BuilderError,
    ConfigurationError,
    DataError,
    DeploymentError,
    DeploymentTimeoutError,
    ExampleValidationError,
    FineTuningUnavailableError,
    FinetuneKitError,
    FinetuneKitWarning,
    JSONLDecodeError,
    JobCancelledError,
    JobError,
    JobFailedError,
    JobTimeoutError,
    LocalBackendError,
    MissingDependencyError,
    ModelShutdownWarning,
    PreflightFailedError,
    SessionError,
    TokenizerFileError,
    TrainingDataError,
    UploadError,
):
    _exception.__module__ = __name__
del _exception
