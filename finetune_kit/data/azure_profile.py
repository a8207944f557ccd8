"""Preflight's Azure profile: the file rules Azure OpenAI states that OpenAI does not.

``preflight(..., profile="azure")`` checks these on top of the common rules (a session on
Azure asks for it). From Microsoft's Azure OpenAI documentation (docs/azure.md cites the pages):

- training and validation files "must be encoded in UTF-8 and include a byte-order mark
  (BOM)", and "each file must be less than 512 MB" (the quotas page: "max file size 512 MB");
- a resource holds at most 50 fine-tuning files, 1 GB in all (the quotas page);
- reinforcement fine-tuning needs a validation file, and takes at most 50,000 training and
  1,000 validation examples.

So under this profile a file over 512 MB is an error (``azure_file_too_large``; OpenAI's
Uploads API would take it), a BOM is no longer worth a warning (``byte_order_mark`` is left
out) while a file without one gets an info (``azure_byte_order_mark_missing``: files without
one are what OpenAI's format is, and the BOM statement is Azure's alone), an RFT job without a
validation file is an error (``azure_validation_file_required``, instead of the common
warning), and the resource's limits are said once (``azure_resource_file_limits``).

Examples:
    >>> [issue.code for issue in azure_dataset_issues("supervised", has_validation=False,
    ...                                               n_training=20, n_validation=0)]
    ['azure_resource_file_limits']
"""

from __future__ import annotations

from typing import Literal

from ._scanner import ChunkStats
from .issues import FileRole, Issue, make_issue

__all__ = [
    "AZURE_MAX_FILES_PER_RESOURCE",
    "AZURE_MAX_FILE_BYTES",
    "AZURE_MAX_RESOURCE_BYTES",
    "AZURE_RFT_MAX_TRAINING_EXAMPLES",
    "AZURE_RFT_MAX_VALIDATION_EXAMPLES",
    "Profile",
    "azure_dataset_issues",
    "azure_file_issues",
]

Profile = Literal["openai", "azure"]
"""Which provider's file rules preflight adds to the common ones."""

AZURE_MAX_FILE_BYTES = 512 * 1024 * 1024
"""Azure OpenAI: each training or validation file is under 512 MB."""

AZURE_MAX_FILES_PER_RESOURCE = 50
"""Azure OpenAI: fine-tuning files one resource holds at most."""

AZURE_MAX_RESOURCE_BYTES = 1024 * 1024 * 1024
"""Azure OpenAI: the total size of a resource's fine-tuning files, at most."""

AZURE_RFT_MAX_TRAINING_EXAMPLES = 50_000
"""Azure OpenAI: training examples of a reinforcement fine-tuning job, at most."""

AZURE_RFT_MAX_VALIDATION_EXAMPLES = 1_000
"""Azure OpenAI: validation examples of a reinforcement fine-tuning job, at most."""


def azure_file_issues(stats: ChunkStats, file: FileRole, *, from_bytes: bool) -> list[Issue]:
    """The Azure profile's issues with one file.

    Args:
        stats: The file's statistics.
        file: ``"training"`` or ``"validation"``.
        from_bytes: The data came as a file or bytes (it has an encoding of its own), not as
            records that an upload will serialise.

    Returns:
        The issues.
    """
    issues = []
    if stats.n_bytes >= AZURE_MAX_FILE_BYTES:
        issues.append(
            make_issue(
                "azure_file_too_large",
                None,
                None,
                f"{stats.n_bytes / 1024 / 1024:,.0f} MB; Azure OpenAI takes files under 512 MB",
                file=file,
            )
        )
    if from_bytes and not stats.bom and stats.n_examples:
        issues.append(
            make_issue(
                "azure_byte_order_mark_missing",
                None,
                None,
                "the file has no UTF-8 byte-order mark, which Azure OpenAI's documentation asks "
                "training files to include",
                file=file,
            )
        )
    return issues


def azure_dataset_issues(
    method: str, *, has_validation: bool, n_training: int, n_validation: int
) -> list[Issue]:
    """The Azure profile's issues with the data as a whole.

    Args:
        method: The training method checked (``supervised``, ``dpo``, ``reinforcement``).
        has_validation: A validation file was given.
        n_training: Training examples.
        n_validation: Validation examples.

    Returns:
        The issues.
    """
    issues = [
        make_issue(
            "azure_resource_file_limits",
            None,
            None,
            f"an Azure OpenAI resource holds at most {AZURE_MAX_FILES_PER_RESOURCE} fine-tuning "
            "files, 1 GB in all; an upload beyond that is refused",
        )
    ]
    if method != "reinforcement":
        return issues
    if not has_validation:
        issues.append(
            make_issue(
                "azure_validation_file_required",
                None,
                None,
                "Azure OpenAI's reinforcement fine-tuning needs a validation file",
            )
        )
    if n_training > AZURE_RFT_MAX_TRAINING_EXAMPLES:
        issues.append(
            make_issue(
                "azure_rft_too_many_examples",
                None,
                None,
                f"{n_training:,} training examples; Azure OpenAI's reinforcement fine-tuning "
                f"takes at most {AZURE_RFT_MAX_TRAINING_EXAMPLES:,}",
            )
        )
    if n_validation > AZURE_RFT_MAX_VALIDATION_EXAMPLES:
        issues.append(
            make_issue(
                "azure_rft_too_many_examples",
                None,
                None,
                f"{n_validation:,} validation examples; Azure OpenAI's reinforcement "
                f"fine-tuning takes at most {AZURE_RFT_MAX_VALIDATION_EXAMPLES:,}",
                file="validation",
            )
        )
    return issues
