r"""Checking a job's training and validation files before it is queued, as OpenAI does.

The rules are the library's preflight rules (``finetune_kit.data.validation.preflight``, with no
per-model token limit). A file with errors fails the job with ``error.code`` set to
``invalid_training_file`` (or ``invalid_validation_file``), ``error.param`` to the file's
parameter, and a message naming the first offending line::

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

import importlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    try:
        # Imported by name until the preflight module lands in finetune_kit.data.
        preflight = importlib.import_module("finetune_kit.data.validation").preflight
    except ImportError:
        logger.debug("preflight is not available; using the minimal format check")
        found = list(_minimal_issues(training, "training", method, MIN_EXAMPLES))
        if validation is not None:
            found.extend(_minimal_issues(validation, "validation", method, 1))
        return found
    report = preflight(training, model=None, validation=validation, method=method)
    return [
        FileIssue(
            file=str(getattr(issue, "file", "training") or "training"),
            line=getattr(issue, "line", None),
            field=getattr(issue, "field", None),
            message=str(getattr(issue, "message", issue)),
        )
        for issue in report.errors
    ]


_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _minimal_issues(path: Path, file: str, method: str, minimum: int) -> Iterable[FileIssue]:
    """A small format check, used only when the preflight rules are not installed."""
    from ..data.jsonl import iter_lines

    count = 0
    for line in iter_lines(str(path)):
        if line.problem == "blank_line":
            continue
        if line.problem is not None:
            yield FileIssue(file, line.number, None, line.detail or line.problem)
            continue
        count += 1
        value = line.value
        if not isinstance(value, dict):
            yield FileIssue(file, line.number, None, "each line must be a JSON object")
            continue
        if method == "dpo":
            yield from _dpo_issues(value, file, line.number)
        else:
            yield from _chat_issues(value, file, line.number)
    if count < minimum:
        yield FileIssue(
            file,
            None,
            None,
            f"the file has {count} example{'s' if count != 1 else ''}; at least {minimum} "
            "are required",
        )


def _chat_issues(value: dict[str, Any], file: str, number: int) -> Iterable[FileIssue]:
    messages = value.get("messages")
    if not isinstance(messages, list) or not messages:
        yield FileIssue(file, number, "messages", "messages must be a non-empty list")
        return
    has_assistant = False
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            yield FileIssue(file, number, where, "each message must be an object")
            continue
        role = message.get("role")
        if role not in _ROLES:
            yield FileIssue(file, number, f"{where}.role", f"unknown role {json.dumps(role)}")
            continue
        has_assistant = has_assistant or role == "assistant"
        if "weight" in message:
            if role != "assistant":
                yield FileIssue(
                    file, number, f"{where}.weight", "weight is allowed only on assistant messages"
                )
            elif message["weight"] not in (0, 1) or isinstance(message["weight"], bool):
                yield FileIssue(file, number, f"{where}.weight", "weight must be 0 or 1")
        content = message.get("content")
        if content is None and not (role == "assistant" and message.get("tool_calls")):
            yield FileIssue(file, number, f"{where}.content", "content is missing")
        elif content is not None and not isinstance(content, (str, list)):
            yield FileIssue(file, number, f"{where}.content", "content must be a string")
    if not has_assistant:
        yield FileIssue(file, number, "messages", "the example has no assistant message")


def _dpo_issues(value: dict[str, Any], file: str, number: int) -> Iterable[FileIssue]:
    source = value.get("input")
    if not isinstance(source, dict) or not isinstance(source.get("messages"), list):
        yield FileIssue(file, number, "input.messages", "input.messages must be a list")
    for key in ("preferred_output", "non_preferred_output"):
        output = value.get(key)
        if not isinstance(output, list) or not output:
            yield FileIssue(file, number, key, f"{key} must be a list with one assistant message")
