r"""Checking a job's training and validation files before it is queued, as OpenAI does.

The rules are the library's preflight rules (``finetune_kit.data.validation.preflight``, with no
per-model token limit), so a file the library's preflight accepts is accepted here too. A file
with errors fails the job with ``error.code`` set to ``invalid_training_file`` (or
``invalid_validation_file``), ``error.param`` to the file's parameter, and a message naming the
first offending line::

    Training file has 2 errors; first: line 3, messages[1].weight: weight must be 0 or 1

Example:
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = pathlib.Path(d) / "t.jsonl"
    ...     _ = path.write_text('{"messages": []}\n')
    ...     problem = check_job_files(path, None, method="supervised")
    >>> problem.code, problem.param, "line 1" in problem.message
    ('invalid_training_file', 'training_file', True)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.validation import preflight

__all__ = ["FileIssue", "FileProblem", "check_job_files"]

logger = logging.getLogger("finetune_kit.local.validation")

MIN_EXAMPLES = 10
"""OpenAI's minimum number of training examples."""


@dataclass(frozen=True)
class FileIssue:
    """One error found in a file.

    Attributes:
        file: ``"training"`` or ``"validation"``.
        line: 1-based line number, when the error is about one line.
        field: The offending field's path, such as ``messages[1].weight``.
        message: What is wrong.
    """

    file: str
    line: int | None
    field: str | None
    message: str


@dataclass(frozen=True)
class FileProblem:
    """Why a job's files were refused: the job's ``error`` object.

    Attributes:
        code: ``invalid_training_file`` or ``invalid_validation_file``.
        param: ``training_file`` or ``validation_file``.
        message: ``"<File> has N errors; first: line L, <field>: <message>"``.
        line: The first offending line, when there is one.
    """

    code: str
    param: str
    message: str
    line: int | None = None

    def to_error(self) -> dict[str, Any]:
        """Return the job's ``error`` object."""
        return {"code": self.code, "message": self.message, "param": self.param}


def summarize(issues: list[FileIssue], file: str) -> FileProblem | None:
    """Turn one file's errors into the job's error, or ``None`` when there are none.

    Example:
        >>> summarize([FileIssue("training", 3, "messages[1].weight", "must be 0 or 1")],
        ...           "training").message
        'Training file has 1 error; first: line 3, messages[1].weight: must be 0 or 1'
    """
    mine = [i for i in issues if i.file == file]
    if not mine:
        return None
    first = min(mine, key=lambda i: (i.line is None, i.line or 0))
    where = ", ".join(
        part
        for part in (f"line {first.line}" if first.line is not None else None, first.field)
        if part
    )
    count = f"{len(mine)} error{'s' if len(mine) != 1 else ''}"
    detail = f"{where}: {first.message}" if where else first.message
    return FileProblem(
        code=f"invalid_{file}_file",
        param=f"{file}_file",
        message=f"{file.capitalize()} file has {count}; first: {detail}",
        line=first.line,
    )


def check_job_files(training: Path, validation: Path | None, *, method: str) -> FileProblem | None:
    """Check a job's files; return the job's error, or ``None`` when they are usable.

    Args:
        training: The training file's contents on disk.
        validation: The validation file's, when the job has one.
        method: ``supervised`` or ``dpo``.

    Returns:
        The problem with the training file if it has one, else with the validation file,
        else ``None``.
    """
    issues = _issues(training, validation, method)
    return summarize(issues, "training") or summarize(issues, "validation")


def _issues(training: Path, validation: Path | None, method: str) -> list[FileIssue]:
    # Scanned in this process (workers=1): validation runs in a server thread, and a pool of
    # processes started from there would compete with training for the cores.
    report = preflight(
        training,
        model=None,
        validation=validation,
        method="dpo" if method == "dpo" else "supervised",
        # The local models are chat models: legacy prompt/completion lines are refused, as
        # OpenAI refuses them for a chat model (preflight on the session says the same).
        data_format="chat",
        min_examples=MIN_EXAMPLES,
        workers=1,
    )
    return [
        FileIssue(file=issue.file, line=issue.line, field=issue.field, message=issue.message)
        for issue in report.errors
    ]
