"""The exceptions finetune_kit raises, as one tree.

Errors that come from the API itself are the ``openai`` client's own exceptions
(``openai.RateLimitError``, ``openai.NotFoundError``...) and are never re-wrapped; when one of
ours is caused by one of theirs it is chained with ``raise ... from exc``.

```
FinetuneKitError
├── ConfigurationError          a parameter has a value we cannot use (also a ValueError)
│   └── GraderValidationError   a grader definition is invalid (grader, field, param)
├── DataError                   training data cannot be read or used
│   ├── JSONLDecodeError        a JSONL file cannot be decoded (line, byte offset)
│   ├── ExampleValidationError  a record does not match its schema (line, field)
│   ├── PreflightFailedError    preflight found errors; carries the report
│   └── TrainingDataError       the local trainer cannot use a file (param, line, field)
├── BuilderError                a dataset builder is missing or misbehaves
├── UploadError                 a file cannot be uploaded (missing, empty, too large, a part
│                               failed, processing)
├── JobError                    a fine-tuning job did not end as hoped (job id)
│   ├── JobFailedError          the job failed (code, message, param, offending line)
│   ├── JobCancelledError       the job was cancelled
│   └── JobTimeoutError         waiting gave up (last status seen)
├── FineTuningUnavailableError  the provider creates no jobs for this organisation (OpenAI's
│                               wind-down): how to move to Azure or the local backend
├── SessionError                a session state file cannot be used
├── TokenizerFileError          a shipped tokenizer file is missing or corrupt
├── MissingDependencyError      an optional extra is not installed (also an ImportError)
├── DeploymentError             an Azure deployment failed (state, ARM error, status)
│   └── DeploymentTimeoutError  waiting gave up (last state seen)
└── LocalBackendError           the local backend cannot start or serve

FinetuneKitWarning (UserWarning)
└── ModelShutdownWarning        a base model's shutdown date is near or past
```
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BuilderError",
    "ConfigurationError",
    "DataError",
    "DeploymentError",
    "DeploymentTimeoutError",
    "ExampleValidationError",
    "FineTuningUnavailableError",
    "FinetuneKitError",
    "FinetuneKitWarning",
    "GraderValidationError",
    "JSONLDecodeError",
    "JobCancelledError",
    "JobError",
    "JobFailedError",
    "JobTimeoutError",
    "LocalBackendError",
    "MissingDependencyError",
    "ModelShutdownWarning",
    "PreflightFailedError",
    "SessionError",
    "TokenizerFileError",
    "TrainingDataError",
    "UploadError",
]


class FinetuneKitError(Exception):
    """Base class of every exception raised by finetune_kit itself."""


class ConfigurationError(FinetuneKitError, ValueError):
    """A parameter has a value finetune_kit cannot use.

    Attributes:
        param: The name of the offending parameter, when there is one.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class GraderValidationError(ConfigurationError):
    """A grader definition is invalid: an unknown key, a bad template, formula or value.

    Raised by ``finetune_kit.graders.validate_grader`` and whenever a grader is compiled (an
    evaluation given a grader, the local backend's ``graders/validate`` and ``graders/run``
    routes, where it is a 400 naming ``param``). The message names the grader, the field and
    how to fix it, such as ``grader 'accuracy' (string_check), field 'refrence': unknown key;
    did you mean 'reference'?``. A problem found while *running* a valid grader (a missing
    template variable, a model's unreadable answer, an exception in a python grader) is not
    raised: it sets a flag in the result's ``metadata.errors``.

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


class DataError(FinetuneKitError):
    """Training data cannot be read or used."""


class JSONLDecodeError(DataError):
    """A JSONL file cannot be decoded.

    Attributes:
        line: 1-based line number, when known.
        offset: Byte offset in the file where the problem starts, when known.
        path: The file, when it came from one.
    """

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        offset: int | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.line = line
        self.offset = offset
        self.path = path


class ExampleValidationError(DataError, ValueError):
    """A training record does not match its schema.

    Attributes:
        line: 1-based line number of the record, when it came from a file.
        field: Dotted path of the offending field, such as ``messages[2].weight``.
    """

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.field = field


class PreflightFailedError(DataError):
    """Preflight found errors, so the data was refused.

    Attributes:
        report: The full preflight report (a ``PreflightReport``).
    """

    def __init__(self, message: str, *, report: Any) -> None:
        super().__init__(message)
        self.report = report


class TrainingDataError(DataError, ValueError):
    """The local training engine cannot use a training or validation file.

    The message names the line (``training_file line 7: ...``) and says how to fix it.

    Attributes:
        param: ``"training_file"`` or ``"validation_file"``.
        line: 1-based line number of the offending record, when one is at fault.
        field: Path of the offending field, such as ``messages[2].weight``, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        param: str = "training_file",
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.param = param
        self.line = line
        self.field = field


class BuilderError(FinetuneKitError):
    """A dataset builder is not registered, or failed while building."""


class UploadError(FinetuneKitError):
    """A file cannot be uploaded, or the backend could not process it.

    Attributes:
        file_id: The id of the remote file, when one was created.
    """

    def __init__(self, message: str, *, file_id: str | None = None) -> None:
        super().__init__(message)
        self.file_id = file_id


class JobError(FinetuneKitError):
    """A fine-tuning job did not end as hoped.

    Attributes:
        job_id: The job's id.
        status: The last status seen.
    """

    def __init__(self, message: str, *, job_id: str, status: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status


class JobFailedError(JobError):
    """The job ended in ``failed``.

    Attributes:
        code: The API's error code, such as ``invalid_training_file``.
        error_message: The API's error message.
        param: The parameter the error is about, such as ``training_file``.
        line: The training-file line the error names, when it names one.
        record: That line's text, when the file could be read.
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str,
        code: str | None = None,
        error_message: str | None = None,
        param: str | None = None,
        line: int | None = None,
        record: str | None = None,
    ) -> None:
        super().__init__(message, job_id=job_id, status="failed")
        self.code = code
        self.error_message = error_message
        self.param = param
        self.line = line
        self.record = record


class JobCancelledError(JobError):
    """The job ended in ``cancelled``."""

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message, job_id=job_id, status="cancelled")


class JobTimeoutError(JobError):
    """Waiting for the job gave up before it reached a terminal status; the job goes on."""


class FineTuningUnavailableError(FinetuneKitError):
    """The provider refuses to create fine-tuning jobs for this organisation.

    OpenAI is winding self-serve fine-tuning down: since 2026-05-07 it creates jobs only for
    organisations that fine-tuned before, since 2026-07-02 only for those that used a
    fine-tuned model in the last 60 days, and from 2027-01-06 for no one. Its refusal (a 403 on
    ``jobs.create``) becomes this error, chained to the ``openai.PermissionDeniedError``; the
    message says how to move with a one-line change (Azure OpenAI or the local backend, see
    docs/migrating.md). Existing fine-tuned models keep answering until their base model
    retires.

    Attributes:
        provider: Who refused (``"openai"``).
        status_code: The HTTP status (403).
        request_id: The provider's request id, for a support ticket.
        api_message: The provider's own message.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        request_id: str | None = None,
        api_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code
        self.request_id = request_id
        self.api_message = api_message


class TokenizerFileError(FinetuneKitError):
    """A tokenizer file shipped with finetune_kit is missing or does not match its sha256.

    This means the installation is damaged; reinstalling the package fixes it.

    Attributes:
        path: The file that failed.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class SessionError(FinetuneKitError):
    """A session state file cannot be read, written or used.

    Attributes:
        path: The state file.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class MissingDependencyError(FinetuneKitError, ImportError):
    """An optional dependency is needed for this feature and is not installed.

    Attributes:
        package: The missing import name, such as ``matplotlib``.
        extra: The finetune-kit extra that installs it, such as ``plot``.
    """

    def __init__(self, message: str, *, package: str, extra: str | None = None) -> None:
        super().__init__(message, name=package)
        self.package = package
        self.extra = extra


class DeploymentError(FinetuneKitError):
    """An Azure deployment could not be created, or ended in a failed state.

    Attributes:
        deployment: The deployment's name.
        state: The last ``provisioningState`` seen.
        error: The Azure management API's error object (``code``, ``message``, ``details``...),
            or the deployment's body when it failed without one.
        status_code: The HTTP status of the refused request, when a request was refused.
        request_id: Azure's ``x-ms-request-id`` of that request, for a support ticket.
    """

    def __init__(
        self,
        message: str,
        *,
        deployment: str,
        state: str | None = None,
        error: dict[str, Any] | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.deployment = deployment
        self.state = state
        self.error = error
        self.status_code = status_code
        self.request_id = request_id


class DeploymentTimeoutError(DeploymentError):
    """Waiting for a deployment gave up before it reached a final state; Azure carries on."""


class LocalBackendError(FinetuneKitError):
    """The local backend cannot start, or cannot serve a request."""


class FinetuneKitWarning(UserWarning):
    """Base class of finetune_kit's warnings."""


class ModelShutdownWarning(FinetuneKitWarning):
    """A base model's shutdown date is near or already past."""
