"""finetune_kit: the whole fine-tuning workflow of OpenAI-style APIs.

Prepare and preflight training data, upload it, create and follow a fine-tuning job, then chat
with, compare and evaluate the tuned model; against OpenAI, Azure OpenAI, any server speaking the
same API, or the local backend shipped in this package.
"""

from ._version import __version__
from .errors import (
    BuilderError,
    ConfigurationError,
    DataError,
    DeploymentError,
    ExampleValidationError,
    FinetuneKitError,
    FinetuneKitWarning,
    JobCancelledError,
    JobError,
    JobFailedError,
    JobTimeoutError,
    JSONLDecodeError,
    LocalBackendError,
    ModelShutdownWarning,
    PreflightFailedError,
    SessionError,
    UploadError,
)

__all__ = [
    "BuilderError",
    "ConfigurationError",
    "DataError",
    "DeploymentError",
    "ExampleValidationError",
    "FinetuneKitError",
    "FinetuneKitWarning",
    "JSONLDecodeError",
    "JobCancelledError",
    "JobError",
    "JobFailedError",
    "JobTimeoutError",
    "LocalBackendError",
    "ModelShutdownWarning",
    "PreflightFailedError",
    "SessionError",
    "UploadError",
    "__version__",
]

# Tracebacks and reprs read `finetune_kit.JobFailedError`, not the private module path.
for _name in __all__:
    if not _name.startswith("__"):
        _obj = globals()[_name]
        if getattr(_obj, "__module__", "").startswith("finetune_kit."):
            _obj.__module__ = "finetune_kit"
del _name, _obj
