r"""Checking a job's files before it is queued, as OpenAI does: the rules, and the thread.

``check_job_files`` applies the library's preflight rules
(``finetune_kit.data.validation.preflight``, with no per-model token limit), so a file the
library's preflight accepts is accepted here too. A file with errors fails the job with
``error.code`` set to ``invalid_training_file`` (or ``invalid_validation_file``), ``error.param``
to the file's parameter, and a message naming the first offending line::

    Training file has 2 errors; first: line 3, messages[1].weight: weight must be 0 or 1

A reinforcement job's grader is checked first (``check_grader``: the definition, and that the
local backend can grade with it), failing the job with ``error.code`` ``invalid_grader`` and
``error.param`` naming the grader's field (``method.reinforcement.grader.reference``); its files
are checked as reinforcement examples (messages ending with the user's turn).

``FileValidator`` is the server thread that runs the check on each new job and moves it to
``queued`` or ``failed``. It runs in the server process, beside the HTTP threads, so a job is
queued (or failed with a message naming the line) while another job trains in a worker.

Example:
    >>> import tempfile, pathlib
    >>> from finetune_kit.local.store import Store
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = pathlib.Path(d) / "t.jsonl"
    ...     _ = path.write_text('{"messages": []}\n')
    ...     problem = check_job_files(path, None, method="supervised")
    ...     store = Store(pathlib.Path(d) / "data")
    ...     validator = FileValidator(store)
    ...     validator.start(); validator.stop(); store.close()
    >>> problem.code, problem.param, "line 1" in problem.message
    ('invalid_training_file', 'training_file', True)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...data.validation import preflight
from ...errors import ConfigurationError, MissingDependencyError
from ...graders import compile_grader
from ..store import JobRecord, Store

__all__ = ["FileIssue", "FileProblem", "FileValidator", "check_grader", "check_job_files"]

GRADER_PARAM = "method.reinforcement.grader"
"""Where a reinforcement job's grader sits in the create request."""

logger = logging.getLogger("finetune_kit.local.validator")

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


def check_grader(grader: Any) -> dict[str, Any]:
    """Check a reinforcement job's grader; return the definition to store.

    The definition is validated completely (``finetune_kit.graders``), and must be one the
    local backend grades training answers with: string_check, text_similarity, python, or a
    multi grader of those. A training run has no judge model for score_model and label_model.

    Args:
        grader: The ``method.reinforcement.grader`` of the create request.

    Returns:
        The grader's definition as ``graders/validate`` echoes it.

    Raises:
        ConfigurationError: It cannot be used; the message and ``param`` name the field, such
            as ``method.reinforcement.grader.reference``.

    Example:
        >>> try:
        ...     check_grader({"type": "string_check", "name": "x", "input": "a", "reference": "b",
        ...                   "operation": "is"})
        ... except ConfigurationError as exc:
        ...     print(exc.param)
        method.reinforcement.grader.operation
    """
    if not isinstance(grader, dict):
        raise ConfigurationError(
            f"{GRADER_PARAM} must be a grader object such as {{'type': 'string_check', ...}}",
            param=GRADER_PARAM,
        )
    try:
        with compile_grader(grader) as compiled:
            spec = compiled.spec.to_dict()
            needs_model = compiled.needs_model
            kind = compiled.type
    except ConfigurationError as exc:
        where = f"method.reinforcement.{exc.param}" if exc.param else GRADER_PARAM
        raise ConfigurationError(f"Invalid {where}: {exc}", param=where) from exc
    except MissingDependencyError as exc:
        raise ConfigurationError(
            f"{GRADER_PARAM} cannot be run by this server: {exc}", param=GRADER_PARAM
        ) from exc
    if needs_model:
        raise ConfigurationError(
            f"{GRADER_PARAM} is a {kind} grader (or holds one), which asks a judge model; "
            "the local backend grades reinforcement jobs without a judge: use string_check, "
            "text_similarity, python, or a multi grader of those",
            param=f"{GRADER_PARAM}.type",
        )
    return spec


def check_job_files(training: Path, validation: Path | None, *, method: str) -> FileProblem | None:
    """Check a job's files; return the job's error, or ``None`` when they are usable.

    Args:
        training: The training file's contents on disk.
        validation: The validation file's, when the job has one.
        method: ``supervised``, ``dpo`` or ``reinforcement``.

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
        method="reinforcement"
        if method == "reinforcement"
        else ("dpo" if method == "dpo" else "supervised"),
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


class FileValidator:
    """Validates the files of jobs in ``validating_files``, one job at a time.

    Args:
        store: The server's store.
        on_queued: Called after a job moves to ``queued`` (wakes the workers).
        poll_interval: Seconds between scans when nobody calls ``notify()``.
    """

    def __init__(
        self,
        store: Store,
        *,
        on_queued: Callable[[], None] | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        self._store = store
        self._on_queued = on_queued
        self._poll_interval = poll_interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (it first picks up jobs left in ``validating_files``)."""
        self._thread = threading.Thread(
            target=self._run, name="finetune_kit-local-validator", daemon=True
        )
        self._thread.start()

    @property
    def is_alive(self) -> bool:
        """Whether the thread runs (``/health`` reports a dead one as degraded)."""
        return self._thread is not None and self._thread.is_alive()

    def notify(self) -> None:
        """Ask the thread to look for new jobs now."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after the job it is checking."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self._scan()
            except Exception:
                # The thread is the only way a job leaves validating_files: whatever one scan
                # meets (a busy database, a damaged row), the next scan must still happen.
                logger.exception("scanning the jobs in validating_files failed")
            self._wake.wait(self._poll_interval)

    def _scan(self) -> None:
        for job_id in self._store.jobs.ids_in_status("validating_files"):
            if self._stopping.is_set():
                return
            try:
                job = self._store.jobs.get(job_id)
                if job is None or job.status != "validating_files":
                    continue
                self.validate(job)
            except Exception as exc:
                logger.exception("validating the files of %s failed", job_id)
                self._fail(
                    job_id,
                    f"The server failed while validating the files ({type(exc).__name__}: "
                    f"{exc}); the traceback is in the server log. Upload the file again and "
                    "create a new job.",
                )

    def validate(self, job: JobRecord) -> None:
        """Check one job's files and move it to ``queued`` or ``failed``."""
        store = self._store
        if job.damaged:
            logger.warning("job %s: its stored record is damaged (%s)", job.id, job.damaged)
            self._fail(job.id, job.damage_message(str(store.db.path)))
            return
        store.events.add(job.id, "validating", f"Validating training file: {job.training_file}")
        if job.validation_file:
            store.events.add(
                job.id,
                "validating-validation",
                f"Validating validation file: {job.validation_file}",
            )
        training = store.files.get(job.training_file)
        validation = store.files.get(job.validation_file) if job.validation_file else None
        error = None
        if training is None:
            error = {
                "code": "invalid_training_file",
                "param": "training_file",
                "message": f"Training file {job.training_file} was deleted before the job "
                "could start; upload it again and create a new job.",
            }
        elif job.validation_file and validation is None:
            error = {
                "code": "invalid_validation_file",
                "param": "validation_file",
                "message": f"Validation file {job.validation_file} was deleted before the job "
                "could start; upload it again and create a new job.",
            }
        elif job.method_type == "reinforcement" and (grader := self._grader_error(job)):
            error = grader
        else:
            assert training is not None
            problem = check_job_files(
                store.files.path(training.id),
                store.files.path(validation.id) if validation is not None else None,
                method=job.method_type,
            )
            error = problem.to_error() if problem is not None else None
        if error is not None:
            logger.debug("job %s: files refused: %s", job.id, error["message"])
            self._fail(job.id, error["message"], code=error["code"], param=error["param"])
            return
        # One transaction: a worker that picks the queued job at once must find this event
        # already written, or its "started" event would come first.
        with store.db.transaction():
            queued = store.jobs.transition(job.id, "queued", expect=("validating_files",))
            if queued:
                store.events.add(job.id, "validated", "Files validated, moving job to queued state")
        if queued and self._on_queued is not None:
            self._on_queued()

    @staticmethod
    def _grader_error(job: JobRecord) -> dict[str, Any] | None:
        section = job.method.get("reinforcement") or {}
        try:
            check_grader(section.get("grader"))
        except ConfigurationError as exc:
            return {"code": "invalid_grader", "param": exc.param, "message": str(exc)}
        return None

    def _fail(
        self, job_id: str, message: str, *, code: str = "server_error", param: str | None = None
    ) -> None:
        """Fail a job still in ``validating_files`` and write its one ``error`` event."""
        store = self._store
        error = {"code": code, "message": message, "param": param}
        # One transaction: a job seen failed always has its error event.
        with store.db.transaction():
            if store.jobs.transition(job_id, "failed", expect=("validating_files",), error=error):
                store.events.add(job_id, "failed", message, level="error")
