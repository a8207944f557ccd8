"""finetune_kit: the whole fine-tuning workflow of OpenAI-style APIs.

Prepare and preflight training data, upload it, create and follow a fine-tuning job, then chat
with, compare and evaluate the tuned model; against OpenAI, Azure OpenAI, any server speaking the
same API, or the local backend shipped in this package (``LocalBackend``, extra ``local``).

Every public name is importable from here. The export table is the ``TYPE_CHECKING`` block below,
and only it: type checkers and IDEs read its imports, and at run time ``finetune_kit._lazy`` reads
the same block to build ``__all__`` and the lazy loader. A name is imported on first use, so
importing the package, or any of its modules, stays cheap; and every exported object's
``__module__`` is ``finetune_kit`` as soon as the module defining it has run, whatever the order
(tracebacks read ``finetune_kit.JobFailedError``). To export a name, add one import line to the
block, from the module that defines it.

Old module paths that moved keep importing for one release, with a ``DeprecationWarning``
naming the new path (``finetune_kit._lazy.MOVED_MODULES``).
"""

import typing as _typing

from . import _lazy
from ._version import __version__ as __version__

if _typing.TYPE_CHECKING:  # the export table (see the docstring): one line per public name
    from ._retry import RetryPolicy as RetryPolicy
    from .azure.client import azure_openai_client as azure_openai_client
    from .azure.deployer import AsyncAzureDeployer as AsyncAzureDeployer
    from .azure.deployer import AzureDeployer as AzureDeployer
    from .azure.deployments import AzureDeployment as AzureDeployment
    from .backends import make_client as make_client
    from .data.base_models import ModelInfo as ModelInfo
    from .data.base_models import get_model_info as get_model_info
    from .data.builders.base import BuilderOptions as BuilderOptions
    from .data.builders.base import DatasetBuilder as DatasetBuilder
    from .data.builders.base import available_builders as available_builders
    from .data.builders.base import build_dataset as build_dataset
    from .data.builders.base import get_builder as get_builder
    from .data.builders.base import register_builder as register_builder
    from .data.builders.base import unregister_builder as unregister_builder
    from .data.dataset import Dataset as Dataset
    from .data.dataset import concat as concat
    from .data.fixes import FixResult as FixResult
    from .data.fixes import autofix as autofix
    from .data.issues import Issue as Issue
    from .data.records import AssistantMessage as AssistantMessage
    from .data.records import ChatExample as ChatExample
    from .data.records import DeveloperMessage as DeveloperMessage
    from .data.records import FunctionCall as FunctionCall
    from .data.records import FunctionDefinition as FunctionDefinition
    from .data.records import ImagePart as ImagePart
    from .data.records import ImageURL as ImageURL
    from .data.records import PreferenceExample as PreferenceExample
    from .data.records import ReinforcementExample as ReinforcementExample
    from .data.records import SystemMessage as SystemMessage
    from .data.records import TextPart as TextPart
    from .data.records import Tool as Tool
    from .data.records import ToolCall as ToolCall
    from .data.records import ToolMessage as ToolMessage
    from .data.records import TrainingExample as TrainingExample
    from .data.records import UserMessage as UserMessage
    from .data.records import parse_example as parse_example
    from .data.report import CostEstimate as CostEstimate
    from .data.report import PreflightReport as PreflightReport
    from .data.tokens import TokenCounter as TokenCounter
    from .data.tokens import count_example_tokens as count_example_tokens
    from .data.tokens import count_tokens as count_tokens
    from .data.tokens import encoding_for_model as encoding_for_model
    from .data.tokens import get_encoding as get_encoding
    from .data.validation import preflight as preflight
    from .errors import BuilderError as BuilderError
    from .errors import ConfigurationError as ConfigurationError
    from .errors import DataError as DataError
    from .errors import DeploymentError as DeploymentError
    from .errors import DeploymentTimeoutError as DeploymentTimeoutError
    from .errors import ExampleValidationError as ExampleValidationError
    from .errors import FinetuneKitError as FinetuneKitError
    from .errors import FinetuneKitWarning as FinetuneKitWarning
    from .errors import FineTuningUnavailableError as FineTuningUnavailableError
    from .errors import GraderValidationError as GraderValidationError
    from .errors import JobCancelledError as JobCancelledError
    from .errors import JobError as JobError
    from .errors import JobFailedError as JobFailedError
    from .errors import JobTimeoutError as JobTimeoutError
    from .errors import JSONLDecodeError as JSONLDecodeError
    from .errors import LocalBackendError as LocalBackendError
    from .errors import MissingDependencyError as MissingDependencyError
    from .errors import ModelShutdownWarning as ModelShutdownWarning
    from .errors import PreflightFailedError as PreflightFailedError
    from .errors import SessionError as SessionError
    from .errors import TokenizerFileError as TokenizerFileError
    from .errors import TrainingDataError as TrainingDataError
    from .errors import UploadError as UploadError
    from .files.uploader import AsyncFileUploader as AsyncFileUploader
    from .files.uploader import FileUploader as FileUploader
    from .files.views import UploadedFile as UploadedFile
    from .graders.base import CompiledGrader as CompiledGrader
    from .graders.compiled import compile_grader as compile_grader
    from .graders.compiled import run_grader as run_grader
    from .graders.compiled import validate_grader as validate_grader
    from .graders.model import GraderModel as GraderModel
    from .graders.openai_model import OpenAIGraderModel as OpenAIGraderModel
    from .graders.result import GraderRunResult as GraderRunResult
    from .inference.client import AsyncInferenceClient as AsyncInferenceClient
    from .inference.client import InferenceClient as InferenceClient
    from .inference.comparison import Comparison as Comparison
    from .inference.evaluation import EvaluationReport as EvaluationReport
    from .inference.evaluation import PairedEvaluationReport as PairedEvaluationReport
    from .inference.judge import ModelJudge as ModelJudge
    from .inference.replies import ChatReply as ChatReply
    from .inference.scorers import CallableScorer as CallableScorer
    from .inference.scorers import Contains as Contains
    from .inference.scorers import ExactMatch as ExactMatch
    from .inference.scorers import GraderScorer as GraderScorer
    from .inference.scorers import RegexMatch as RegexMatch
    from .inference.scorers import Scorer as Scorer
    from .inference.scorers import ToolCallMatch as ToolCallMatch
    from .inference.scorers import ValidJSON as ValidJSON
    from .jobs.following import FollowOptions as FollowOptions
    from .jobs.lifecycle import acheck_shutdown as acheck_shutdown
    from .jobs.lifecycle import aexport_job as aexport_job
    from .jobs.lifecycle import check_shutdown as check_shutdown
    from .jobs.lifecycle import export_job as export_job
    from .jobs.manager import AsyncJobManager as AsyncJobManager
    from .jobs.manager import JobManager as JobManager
    from .jobs.methods import DpoHyperparameters as DpoHyperparameters
    from .jobs.methods import DpoMethod as DpoMethod
    from .jobs.methods import ReinforcementHyperparameters as ReinforcementHyperparameters
    from .jobs.methods import ReinforcementMethod as ReinforcementMethod
    from .jobs.methods import SupervisedHyperparameters as SupervisedHyperparameters
    from .jobs.methods import SupervisedMethod as SupervisedMethod
    from .jobs.metrics import MetricPoint as MetricPoint
    from .jobs.metrics import MetricSeries as MetricSeries
    from .jobs.options import WandbIntegration as WandbIntegration
    from .jobs.views import JobEvent as JobEvent
    from .jobs.views import JobUpdate as JobUpdate
    from .jobs.views import StatusChange as StatusChange
    from .jobs.watcher import AsyncJobWatcher as AsyncJobWatcher
    from .jobs.watcher import JobWatcher as JobWatcher
    from .local.backend import LocalBackend as LocalBackend
    from .session.facade import AsyncFineTuneSession as AsyncFineTuneSession
    from .session.facade import FineTuneSession as FineTuneSession
    from .session.state import SessionState as SessionState

_EXPORTS = _lazy.export_table(__name__)
__all__ = sorted([*_EXPORTS, "__version__"])

# Claimed before any module defining an export is imported: they take the package's name.
_lazy.claim_exports(__name__, _EXPORTS)
_lazy.serve_lazily(__name__, _EXPORTS)
_lazy.install_moved_modules()
