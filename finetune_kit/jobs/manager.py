"""Fine-tuning jobs: create once, follow, wait, cancel, pause, resume, and read the results.

:class:`JobManager` (and its async twin :class:`AsyncJobManager`) wraps
``client.fine_tuning.jobs``:

- **create** checks the method, hyperparameters, suffix, seed, metadata and integrations on your
  machine first, then creates the job *once*: a client-made key goes into the job's metadata, and
  after an ambiguous failure (the connection dropped during the POST) the job is looked up by
  that key before any second create;
- **follow** / **wait** poll with backoff, emit every event once in time order, turn metrics into
  :class:`~finetune_kit.jobs.metrics.MetricPoint` objects, and end on a terminal status: ``failed``
  raises :class:`~finetune_kit.errors.JobFailedError` (with the offending training record when
  the error names a line), ``cancelled`` raises :class:`~finetune_kit.errors.JobCancelledError`;
- **results** downloads the result file (base64 or not) and parses it into a metric series.

Every request goes through the shared retry policy. ``create`` and the outcome of a finished job
are decided by step generators shared by both managers; each twin only carries their actions
out (see ``_steps.py``), as the watchers do for following.
"""

from __future__ import annotations

import builtins
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import openai
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from .._interface import say
from .._retry import (
    DEFAULT_RETRY_POLICY,
    HTTP_ERRORS,
    RetryPolicy,
    aiter_items,
    iter_items,
    without_client_retries,
)
from .._steps import arun_steps, run_steps
from ..azure.training import TrainingType, training_type_body
from ..errors import (
    ConfigurationError,
    FineTuningUnavailableError,
    JobCancelledError,
    JobError,
    JobFailedError,
)
from ..files.views import UploadedFile
from .following import FollowOptions
from .methods import DpoMethod, MethodName, ReinforcementMethod, SupervisedMethod, make_method
from .metrics import MetricSeries, parse_result_csv
from .options import (
    Provider,
    WandbIntegration,
    check_metadata,
    check_seed,
    check_suffix,
    detect_provider,
)
from .views import FileRef, JobUpdate
from .watcher import AsyncJobWatcher, JobWatcher

__all__ = ["IDEMPOTENCY_METADATA_KEY", "AsyncJobManager", "JobManager"]

logger = logging.getLogger("finetune_kit.jobs")

IDEMPOTENCY_METADATA_KEY = "finetune_kit_key"
"""The metadata key holding the client-made key that makes ``create`` idempotent."""

_LINE = re.compile(r"\bline\s+(\d+)\b", re.IGNORECASE)
_RECORD_PREVIEW = 2000
# Showing the failing record is best-effort: no failure to read it may hide the job's own error.
# A streamed download raises the HTTP package's errors unwrapped when the body is cut short.
_RECORD_ERRORS: tuple[type[BaseException], ...] = (openai.OpenAIError, OSError, *HTTP_ERRORS)

MethodInput = SupervisedMethod | DpoMethod | ReinforcementMethod | Mapping[str, Any] | MethodName


def _file_id(ref: FileRef | None, param: str) -> str | None:
    if ref is None:
        return None
    file_id = ref if isinstance(ref, str) else ref.id
    if not file_id:
        raise ConfigurationError(f"{param} is empty: pass an uploaded file's id", param=param)
    return file_id


def _line_of(message: str | None) -> int | None:
    match = _LINE.search(message or "")
    return int(match.group(1)) if match else None


def _read_local_line(path: Path, line: int) -> str | None:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == line:
                return raw.decode("utf-8-sig" if number == 1 else "utf-8", errors="replace").rstrip(
                    "\r\n"
                )
    return None


# The actions of the managers' step generators (``_JobManagerBase._create_steps`` and
# ``_outcome_steps``): the sync and async managers only carry them out.


@dataclass(frozen=True)
class _FindByKey:
    """Look for the job created under an idempotency key; the job or ``None`` is sent back."""

    key: str


@dataclass(frozen=True)
class _CreateJob:
    """``jobs.create`` once: after an ambiguous failure the job is looked up by its key."""

    params: dict[str, Any]
    key: str


@dataclass(frozen=True)
class _ReadLocalLine:
    """Read one line of a local copy of a file."""

    path: Path
    line: int


@dataclass(frozen=True)
class _DownloadLine:
    """Stream a remote file until one line."""

    file_id: str
    line: int


_JobAction = _FindByKey | _CreateJob | _ReadLocalLine | _DownloadLine
_ClientT = TypeVar("_ClientT", openai.OpenAI, openai.AsyncOpenAI)


class _JobManagerBase(Generic[_ClientT]):
    """Settings and the pure steps shared by the sync and async managers."""

    def __init__(
        self,
        client: _ClientT,
        *,
        policy: RetryPolicy | None = None,
        provider: Provider | None = None,
        follow_options: FollowOptions | None = None,
        progress: bool | None = None,
        local_files: Mapping[str, str | Path] | None = None,
    ) -> None:
        self._client: _ClientT = without_client_retries(client)
        self.policy = policy if policy is not None else DEFAULT_RETRY_POLICY
        self.provider: Provider = provider if provider is not None else detect_provider(client)
        self.follow_options = follow_options if follow_options is not None else FollowOptions()
        self.progress = progress
        self._local_files: dict[str, Path] = {k: Path(v) for k, v in (local_files or {}).items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider!r})"

    def remember_local_file(self, file_id: str, path: str | Path) -> None:
        """Say where a remote file's content lives locally (to show a failing line, no download).

        Args:
            file_id: The remote file.
            path: Its local copy.
        """
        self._local_files[file_id] = Path(path)

    def _remember(self, ref: FileRef | None) -> None:
        if isinstance(ref, UploadedFile) and ref.path is not None:
            self._local_files[ref.id] = ref.path

    def _create_params(
        self,
        *,
        model: str,
        training_file: FileRef,
        validation_file: FileRef | None,
        method: MethodInput | None,
        hyperparameters: Mapping[str, Any] | None,
        suffix: str | None,
        seed: int | None,
        metadata: Mapping[str, str] | None,
        integrations: Sequence[WandbIntegration | Mapping[str, Any] | str] | None,
        wandb: WandbIntegration | Mapping[str, Any] | str | None,
        max_suffix_length: int | None,
        key: str,
        training_type: TrainingType | None = None,
        training_type_wire: str | None = None,
    ) -> dict[str, Any]:
        """Check every argument and build the ``jobs.create`` keyword arguments."""
        if not isinstance(model, str) or not model.strip():
            raise ConfigurationError(
                "model is required, such as 'gpt-4o-mini-2024-07-18'", param="model"
            )
        params: dict[str, Any] = {
            "model": model,
            "training_file": _file_id(training_file, "training_file"),
        }
        validation_id = _file_id(validation_file, "validation_file")
        if validation_id is not None:
            if validation_id == params["training_file"]:
                raise ConfigurationError(
                    "validation_file is the training file; the same examples must not be on both "
                    "sides: split the data (Dataset.split)",
                    param="validation_file",
                )
            params["validation_file"] = validation_id
        extra_hp = dict(hyperparameters or {})
        if method is not None or extra_hp:
            try:
                built = make_method(method if method is not None else "supervised", **extra_hp)
            except ConfigurationError as exc:
                if method is None and exc.param and exc.param.startswith("method."):
                    param = "hyperparameters." + exc.param.rsplit(".", 1)[-1]
                    raise ConfigurationError(
                        str(exc).replace(exc.param, param, 1), param=param
                    ) from exc
                raise
            params["method"] = built.to_param()
        if suffix is not None:
            params["suffix"] = check_suffix(
                suffix, provider=self.provider, max_length=max_suffix_length
            )
        if seed is not None:
            params["seed"] = check_seed(seed)
        user_metadata = dict(metadata or {})
        if IDEMPOTENCY_METADATA_KEY in user_metadata:
            raise ConfigurationError(
                f"metadata key {IDEMPOTENCY_METADATA_KEY!r} is reserved; "
                "pass idempotency_key= instead",
                param=f"metadata.{IDEMPOTENCY_METADATA_KEY}",
            )
        checked = check_metadata(user_metadata, reserved=1)
        checked[IDEMPOTENCY_METADATA_KEY] = key
        params["metadata"] = checked
        entries = [WandbIntegration.coerce(item) for item in integrations or ()]
        if wandb is not None:
            entries.append(WandbIntegration.coerce(wandb))
        if entries:
            params["integrations"] = [entry.to_param() for entry in entries]
        if training_type is not None or training_type_wire is not None:
            params["extra_body"] = self._training_type(training_type, training_type_wire)
        return params

    def _training_type(self, tier: str | None, wire: str | None) -> dict[str, str]:
        """Azure's ``trainingType``, refused where the API has no such field."""
        if tier is None:
            raise ConfigurationError(
                "training_type_wire was given without training_type: name the tier it spells "
                "(GlobalStandard, Standard or Developer)",
                param="training_type",
            )
        if self.provider in ("openai", "local"):
            where = "OpenAI" if self.provider == "openai" else "the local backend"
            raise ConfigurationError(
                f"training_type is Azure OpenAI's training tier; {where} has no such option "
                "(its create-job body would refuse it): leave it out here",
                param="training_type",
            )
        body = training_type_body(tier, wire=wire)
        logger.debug("training tier %s, sent as trainingType=%r", tier, body["trainingType"])
        return body

    @staticmethod
    def _new_key(idempotency_key: str | None) -> str:
        if idempotency_key is None:
            return uuid.uuid4().hex
        if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 512:
            raise ConfigurationError(
                "idempotency_key must be a string of 1-512 characters", param="idempotency_key"
            )
        return idempotency_key

    @staticmethod
    def _is_keyed(job: Any, key: str) -> bool:
        metadata = getattr(job, "metadata", None) or {}
        return bool(metadata.get(IDEMPOTENCY_METADATA_KEY) == key)

    def _failure_file(self, job: FineTuningJob) -> str | None:
        param = job.error.param if job.error is not None else None
        if param == "validation_file":
            return job.validation_file
        return job.training_file

    @staticmethod
    def _failed_error(job: FineTuningJob, line: int | None, record: str | None) -> JobFailedError:
        error = job.error
        code = error.code if error is not None else None
        message = error.message if error is not None else None
        param = error.param if error is not None else None
        text = f"fine-tuning job {job.id} failed"
        text += f" [{code}]" if code else ""
        text += f": {message}" if message else " (the backend gave no reason)"
        if record is not None:
            shown = record if len(record) <= _RECORD_PREVIEW else record[:_RECORD_PREVIEW] + "..."
            text += f"\n  {param or 'training_file'} line {line}: {shown}"
        if param in ("training_file", "validation_file"):
            text += "\n  Fix the data (run preflight on it), upload it again and create a new job."
        return JobFailedError(
            text,
            job_id=job.id,
            code=code,
            error_message=message,
            param=param,
            line=line,
            record=record,
        )

    @staticmethod
    def _cancelled_error(job: FineTuningJob) -> JobCancelledError:
        return JobCancelledError(
            f"fine-tuning job {job.id} was cancelled; create a new job to train again",
            job_id=job.id,
        )

    @staticmethod
    def _result_file_id(job: FineTuningJob) -> str:
        if not job.result_files:
            raise JobError(
                f"job {job.id} has no result file yet (status {job.status!r}); results are written "
                "when the job succeeds",
                job_id=job.id,
                status=job.status,
            )
        return job.result_files[0]

    @staticmethod
    def _require(resource: Any, name: str) -> Callable[..., Any]:
        method = getattr(resource, name, None)
        if method is None:
            raise ConfigurationError(
                f"this client has no fine_tuning.jobs.{name}: pass an openai client "
                "(finetune_kit needs openai >= 3.1, which has it)",
                param=name,
            )
        return cast("Callable[..., Any]", method)

    # ---------------------------------------------------------------- the decisions

    def _create_steps(
        self,
        *,
        idempotency_key: str | None,
        training_file: FileRef,
        validation_file: FileRef | None,
        **arguments: Any,
    ) -> Generator[_JobAction, Any, FineTuningJob]:
        """Everything ``create()`` decides, as actions for the sync or async driver."""
        key = self._new_key(idempotency_key)
        params = self._create_params(
            training_file=training_file, validation_file=validation_file, key=key, **arguments
        )
        self._remember(training_file)
        self._remember(validation_file)
        if idempotency_key is not None:
            existing: FineTuningJob | None = yield _FindByKey(key)
            if existing is not None:
                logger.info(
                    "job %s already exists for key %s; not creating another", existing.id, key
                )
                return existing
        try:
            job: FineTuningJob = yield _CreateJob(params, key)
        except openai.PermissionDeniedError as exc:
            closed = self._wind_down_error(exc)
            if closed is None:
                raise
            raise closed from exc
        logger.info("created fine-tuning job %s (%s)", job.id, job.status)
        return job

    def _wind_down_error(
        self, exc: openai.PermissionDeniedError
    ) -> FineTuningUnavailableError | None:
        """OpenAI's refusal to create jobs for this organisation, as the error that says why.

        A 403 from OpenAI on ``jobs.create`` is its wind-down of self-serve fine-tuning, unless
        its message names a missing scope (then the key lacks the permission, and the API's
        own error says so better).
        """
        body = exc.body
        said = body.get("message") if isinstance(body, dict) else None
        message = str(said or exc.message or "")
        if self.provider != "openai" or "scope" in message.lower():
            return None
        move = say(
            'change one line: FineTuneSession("azure", ...) for Azure OpenAI, or '
            'FineTuneSession("local", ...) for the local backend (with a new state_path)',
            "run the same commands with --backend azure (Azure OpenAI) or --backend local "
            "(the local backend) and a new --state",
        )
        keep = say("export_job(client, job_id, folder)", "finetune-kit export FOLDER JOB_ID")
        return FineTuningUnavailableError(
            f"OpenAI refused to create the fine-tuning job (HTTP {exc.status_code}: {message}). "
            "OpenAI is winding self-serve fine-tuning down: since 2026-05-07 it creates jobs only "
            "for organisations that fine-tuned before, since 2026-07-02 only for those that used "
            "a fine-tuned model in the last 60 days, and from 2027-01-06 for no one. Your "
            f"fine-tuned models keep answering until their base model retires. To train, {move}; "
            "docs/migrating.md says what differs on each. Before the base models retire, keep "
            f"each earlier job's files, results and checkpoints list with {keep}",
            provider="openai",
            status_code=exc.status_code,
            request_id=exc.request_id,
            api_message=message or None,
        )

    def _outcome_steps(self, job: FineTuningJob) -> Generator[_JobAction, Any, None]:
        """Raise for a job that did not succeed, with the failing record when it can be read."""
        if job.status == "cancelled":
            raise self._cancelled_error(job)
        if job.status != "failed":
            return
        line = _line_of(job.error.message if job.error is not None else None)
        file_id = self._failure_file(job) if line is not None else None
        record: str | None = None
        if line is not None and file_id is not None:
            local = self._local_files.get(file_id)
            try:
                if local is not None and local.is_file():
                    record = yield _ReadLocalLine(local, line)
                else:
                    record = yield _DownloadLine(file_id, line)
            except _RECORD_ERRORS as exc:
                logger.debug("could not read line %d of %s: %s", line, file_id, type(exc).__name__)
        raise self._failed_error(job, line, record)


class JobManager(_JobManagerBase[openai.OpenAI]):
    """Creates, follows and inspects fine-tuning jobs over the sync ``openai`` client.

    Args:
        client: An ``openai.OpenAI`` (or ``AzureOpenAI``) client, used with its own retries off.
        policy: The retry policy; its ``sleep`` and ``clock`` also pace polling.
        provider: ``openai``, ``azure``, ``local`` or ``custom`` (default: guessed from the
            client), for the suffix limit.
        follow_options: Default polling settings of :meth:`follow` and :meth:`wait`.
        progress: Show a progress bar while following (``None``: only on a terminal).
        local_files: Local copies of remote files (file id -> path), to show a failing line.

    Examples:
        >>> jobs = JobManager(client)                                   # doctest: +SKIP
        >>> job = jobs.create(
        ...     model="gpt-4o-mini-2024-07-18", training_file=uploaded,
        ...     method="supervised", hyperparameters={"n_epochs": 3},
        ... )                                                           # doctest: +SKIP
        >>> job = jobs.wait(job.id)                                     # doctest: +SKIP
        >>> jobs.results(job).to_dataframe()                            # doctest: +SKIP
    """

    # ---------------------------------------------------------------- create and look up

    def create(
        self,
        *,
        model: str,
        training_file: FileRef,
        validation_file: FileRef | None = None,
        method: MethodInput | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        suffix: str | None = None,
        seed: int | None = None,
        metadata: Mapping[str, str] | None = None,
        integrations: Sequence[WandbIntegration | Mapping[str, Any] | str] | None = None,
        wandb: WandbIntegration | Mapping[str, Any] | str | None = None,
        idempotency_key: str | None = None,
        max_suffix_length: int | None = None,
        training_type: TrainingType | None = None,
        training_type_wire: str | None = None,
    ) -> FineTuningJob:
        """Create a fine-tuning job exactly once.

        Args:
            model: The base model (or an ``ft:`` model to continue from).
            training_file: The training file: an id, an ``UploadedFile`` or a ``FileObject``.
            validation_file: The validation file, likewise.
            method: ``"supervised"``, ``"dpo"``, ``"reinforcement"``, a method model, or the
                API's dict; default supervised.
            hyperparameters: Hyperparameters merged into the method (checked against its ranges).
            suffix: Put into the fine-tuned model's name (64 characters; 18 on Azure).
            seed: Training seed, 0..2147483647.
            metadata: Up to 15 key/value pairs (one more is used by the idempotency key).
            integrations: wandb integrations (models, dicts or project names).
            wandb: One wandb integration, a shorthand for ``integrations=[...]``.
            idempotency_key: The key to create under; pass the same key again (after a crash)
                and the existing job is returned instead of a second one.
            max_suffix_length: Override the provider's suffix limit.
            training_type: Azure OpenAI's training tier: ``"GlobalStandard"``,
                ``"Standard"`` or ``"Developer"``, sent as ``trainingType`` in the body (see
                :mod:`finetune_kit.azure.training`); refused on OpenAI and the local backend.
            training_type_wire: Send this spelling of the tier instead of the documented one
                (``"developerTier"`` for Developer), should Azure refuse it.

        Returns:
            The job.

        Raises:
            ConfigurationError: An argument is out of range; ``param`` names it.
        """
        steps = self._create_steps(
            idempotency_key=idempotency_key,
            model=model,
            training_file=training_file,
            validation_file=validation_file,
            method=method,
            hyperparameters=hyperparameters,
            suffix=suffix,
            seed=seed,
            metadata=metadata,
            integrations=integrations,
            wandb=wandb,
            max_suffix_length=max_suffix_length,
            training_type=training_type,
            training_type_wire=training_type_wire,
        )
        return run_steps(steps, self._act)

    def _act(self, action: _JobAction) -> Any:
        """Carry out one action of the manager's steps."""
        if isinstance(action, _FindByKey):
            return self.find_by_key(action.key)
        if isinstance(action, _CreateJob):
            jobs, params, key = self._client.fine_tuning.jobs, action.params, action.key
            return self.policy.call_idempotent(
                lambda: jobs.create(**params), lambda: self.find_by_key(key)
            )
        if isinstance(action, _ReadLocalLine):
            return _read_local_line(action.path, action.line)
        return self.policy.call(self._download_line, action.file_id, action.line)

    def find_by_key(self, key: str) -> FineTuningJob | None:
        """The job created under an idempotency key, if any.

        Args:
            key: The key given to (or made by) :meth:`create`.

        Returns:
            The job, or ``None``.
        """
        jobs = self._client.fine_tuning.jobs
        for job in iter_items(
            self.policy, lambda: jobs.list(metadata={IDEMPOTENCY_METADATA_KEY: key})
        ):
            if self._is_keyed(job, key):
                found: FineTuningJob = job
                return found
        return None

    def retrieve(self, job_id: str) -> FineTuningJob:
        """The job as it is now.

        Args:
            job_id: The job.

        Returns:
            The job.
        """
        return self.policy.call(self._client.fine_tuning.jobs.retrieve, job_id)

    def list(
        self, *, metadata: Mapping[str, str] | None = None, page_size: int = 20
    ) -> Iterator[FineTuningJob]:
        """Every job, newest first, fetching pages as needed.

        Args:
            metadata: Only jobs with these metadata pairs.
            page_size: Jobs per request.

        Yields:
            The jobs.
        """
        jobs = self._client.fine_tuning.jobs
        kwargs: dict[str, Any] = {"limit": page_size}
        if metadata is not None:
            kwargs["metadata"] = dict(metadata)
        yield from iter_items(self.policy, lambda: jobs.list(**kwargs))

    def cancel(self, job_id: str) -> FineTuningJob:
        """Cancel the job.

        Args:
            job_id: The job.

        Returns:
            The job (``cancelled``).
        """
        return self.policy.call(self._client.fine_tuning.jobs.cancel, job_id)

    def pause(self, job_id: str) -> FineTuningJob:
        """Pause the job (where the backend supports pausing it).

        Args:
            job_id: The job.

        Returns:
            The job (``paused``).

        Raises:
            ConfigurationError: The client has no ``jobs.pause`` (not an ``openai`` client).
        """
        job: FineTuningJob = self.policy.call(
            self._require(self._client.fine_tuning.jobs, "pause"), job_id
        )
        return job

    def resume(self, job_id: str) -> FineTuningJob:
        """Resume a paused job.

        Args:
            job_id: The job.

        Returns:
            The job (usually ``queued``).

        Raises:
            ConfigurationError: The client has no ``jobs.resume`` (not an ``openai`` client).
        """
        job: FineTuningJob = self.policy.call(
            self._require(self._client.fine_tuning.jobs, "resume"), job_id
        )
        return job

    def checkpoints(self, job_id: str) -> builtins.list[FineTuningJobCheckpoint]:
        """The job's checkpoints, newest step first.

        Args:
            job_id: The job.

        Returns:
            The checkpoints (``fine_tuned_model_checkpoint`` is usable as a model).
        """
        resource = self._client.fine_tuning.jobs.checkpoints
        return list(iter_items(self.policy, lambda: resource.list(job_id, limit=100)))

    def events(self, job_id: str) -> builtins.list[FineTuningJobEvent]:
        """Every event of the job so far, oldest first.

        Args:
            job_id: The job.

        Returns:
            The events in time order.
        """
        jobs = self._client.fine_tuning.jobs
        newest_first = list(iter_items(self.policy, lambda: jobs.list_events(job_id, limit=100)))
        return list(reversed(newest_first))

    # ---------------------------------------------------------------- results

    def download_results(self, job: str | FineTuningJob) -> str:
        """The job's result file as CSV text (base64-decoded when the backend encoded it).

        Args:
            job: The job or its id.

        Returns:
            The CSV text.

        Raises:
            JobError: The job has no result file yet.
        """
        from .metrics import decode_result_file

        job = self.retrieve(job) if isinstance(job, str) else job
        file_id = self._result_file_id(job)
        content = self.policy.call(lambda: self._client.files.content(file_id).read())
        return decode_result_file(content)

    def results(self, job: str | FineTuningJob) -> MetricSeries:
        """The job's per-step metrics from its result file.

        Args:
            job: The job or its id.

        Returns:
            The metric series (``.to_dataframe()``, ``.plot_loss(path)``).
        """
        return parse_result_csv(self.download_results(job))

    # ---------------------------------------------------------------- following

    def watcher(
        self, *, options: FollowOptions | None = None, progress: bool | None = None
    ) -> JobWatcher:
        """A watcher with this manager's client, policy and settings.

        Args:
            options: Polling settings (default: the manager's).
            progress: Progress bar (default: the manager's).

        Returns:
            The watcher.
        """
        return JobWatcher(
            self._client,
            policy=self.policy,
            options=options or self.follow_options,
            progress=self.progress if progress is None else progress,
        )

    def follow(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        options: FollowOptions | None = None,
        progress: bool | None = None,
    ) -> Iterator[JobUpdate]:
        """Yield the job's updates until it ends; raise if it did not succeed.

        Args:
            job_id: The job.
            timeout: Give up after this many seconds (the job keeps running).
            options: Polling settings.
            progress: Progress bar.

        Yields:
            Each event once, oldest first; a ``MetricPoint`` after each metrics event; a
            ``StatusChange`` when the status changes.

        Raises:
            JobFailedError: The job failed (code, message, param, offending line and record).
            JobCancelledError: The job was cancelled.
            JobTimeoutError: ``timeout`` elapsed first.
        """
        job = yield from self.watcher(options=options, progress=progress).follow(
            job_id, timeout=timeout
        )
        self._raise_for_outcome(job)

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_update: Callable[[JobUpdate], Any] | None = None,
        options: FollowOptions | None = None,
        progress: bool | None = None,
    ) -> FineTuningJob:
        """Follow the job until it ends and return it; raise if it did not succeed.

        Args:
            job_id: The job.
            timeout: Give up after this many seconds (the job keeps running).
            on_update: Called with every update (events, metric points, status changes).
            options: Polling settings.
            progress: Progress bar.

        Returns:
            The succeeded job.

        Raises:
            JobFailedError: The job failed.
            JobCancelledError: The job was cancelled.
            JobTimeoutError: ``timeout`` elapsed first.
        """
        updates = self.watcher(options=options, progress=progress).follow(job_id, timeout=timeout)
        while True:
            try:
                update = next(updates)
            except StopIteration as stop:
                job: FineTuningJob = stop.value
                break
            if on_update is not None:
                on_update(update)
        self._raise_for_outcome(job)
        return job

    def _raise_for_outcome(self, job: FineTuningJob) -> None:
        run_steps(self._outcome_steps(job), self._act)

    def _download_line(self, file_id: str, line: int) -> str | None:
        with self._client.files.with_streaming_response.content(file_id) as response:
            for number, text in enumerate(response.iter_lines(), start=1):
                if number == line:
                    return text.lstrip("\ufeff") if number == 1 else text
        return None


class AsyncJobManager(_JobManagerBase[openai.AsyncOpenAI]):
    """The async twin of :class:`JobManager` (same arguments, same behaviour).

    Examples:
        >>> jobs = AsyncJobManager(async_client)                                 # doctest: +SKIP
        >>> job = await jobs.create(model="gpt-4o-mini", training_file="file-abc")  # doctest: +SKIP
        >>> job = await jobs.wait(job.id)                                        # doctest: +SKIP
    """

    async def create(
        self,
        *,
        model: str,
        training_file: FileRef,
        validation_file: FileRef | None = None,
        method: MethodInput | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        suffix: str | None = None,
        seed: int | None = None,
        metadata: Mapping[str, str] | None = None,
        integrations: Sequence[WandbIntegration | Mapping[str, Any] | str] | None = None,
        wandb: WandbIntegration | Mapping[str, Any] | str | None = None,
        idempotency_key: str | None = None,
        max_suffix_length: int | None = None,
        training_type: TrainingType | None = None,
        training_type_wire: str | None = None,
    ) -> FineTuningJob:
        """Create a fine-tuning job exactly once (see :meth:`JobManager.create`).

        Args:
            model: The base model.
            training_file: The training file.
            validation_file: The validation file.
            method: The method.
            hyperparameters: Hyperparameters merged into the method.
            suffix: Put into the fine-tuned model's name.
            seed: Training seed.
            metadata: Up to 15 key/value pairs.
            integrations: wandb integrations.
            wandb: One wandb integration.
            idempotency_key: The key to create under.
            max_suffix_length: Override the provider's suffix limit.
            training_type: Azure OpenAI's training tier.
            training_type_wire: Send this spelling of the tier.

        Returns:
            The job.
        """
        steps = self._create_steps(
            idempotency_key=idempotency_key,
            model=model,
            training_file=training_file,
            validation_file=validation_file,
            method=method,
            hyperparameters=hyperparameters,
            suffix=suffix,
            seed=seed,
            metadata=metadata,
            integrations=integrations,
            wandb=wandb,
            max_suffix_length=max_suffix_length,
            training_type=training_type,
            training_type_wire=training_type_wire,
        )
        return await arun_steps(steps, self._act)

    async def _act(self, action: _JobAction) -> Any:
        """Carry out one action of the manager's steps."""
        if isinstance(action, _FindByKey):
            return await self.find_by_key(action.key)
        if isinstance(action, _CreateJob):
            jobs, params, key = self._client.fine_tuning.jobs, action.params, action.key
            return await self.policy.acall_idempotent(
                lambda: jobs.create(**params), lambda: self.find_by_key(key)
            )
        if isinstance(action, _ReadLocalLine):
            return _read_local_line(action.path, action.line)
        return await self.policy.acall(self._download_line, action.file_id, action.line)

    async def find_by_key(self, key: str) -> FineTuningJob | None:
        """The job created under an idempotency key, if any.

        Args:
            key: The key.

        Returns:
            The job, or ``None``.
        """
        jobs = self._client.fine_tuning.jobs
        async for job in aiter_items(
            self.policy, lambda: jobs.list(metadata={IDEMPOTENCY_METADATA_KEY: key})
        ):
            if self._is_keyed(job, key):
                found: FineTuningJob = job
                return found
        return None

    async def retrieve(self, job_id: str) -> FineTuningJob:
        """The job as it is now.

        Args:
            job_id: The job.

        Returns:
            The job.
        """
        return await self.policy.acall(self._client.fine_tuning.jobs.retrieve, job_id)

    async def list(
        self, *, metadata: Mapping[str, str] | None = None, page_size: int = 20
    ) -> AsyncIterator[FineTuningJob]:
        """Every job, newest first, fetching pages as needed.

        Args:
            metadata: Only jobs with these metadata pairs.
            page_size: Jobs per request.

        Yields:
            The jobs.
        """
        jobs = self._client.fine_tuning.jobs
        kwargs: dict[str, Any] = {"limit": page_size}
        if metadata is not None:
            kwargs["metadata"] = dict(metadata)
        async for job in aiter_items(self.policy, lambda: jobs.list(**kwargs)):
            yield job

    async def cancel(self, job_id: str) -> FineTuningJob:
        """Cancel the job.

        Args:
            job_id: The job.

        Returns:
            The job.
        """
        return await self.policy.acall(self._client.fine_tuning.jobs.cancel, job_id)

    async def pause(self, job_id: str) -> FineTuningJob:
        """Pause the job.

        Args:
            job_id: The job.

        Returns:
            The job.
        """
        job: FineTuningJob = await self.policy.acall(
            self._require(self._client.fine_tuning.jobs, "pause"), job_id
        )
        return job

    async def resume(self, job_id: str) -> FineTuningJob:
        """Resume a paused job.

        Args:
            job_id: The job.

        Returns:
            The job.
        """
        job: FineTuningJob = await self.policy.acall(
            self._require(self._client.fine_tuning.jobs, "resume"), job_id
        )
        return job

    async def checkpoints(self, job_id: str) -> builtins.list[FineTuningJobCheckpoint]:
        """The job's checkpoints, newest step first.

        Args:
            job_id: The job.

        Returns:
            The checkpoints.
        """
        resource = self._client.fine_tuning.jobs.checkpoints
        return [c async for c in aiter_items(self.policy, lambda: resource.list(job_id, limit=100))]

    async def events(self, job_id: str) -> builtins.list[FineTuningJobEvent]:
        """Every event of the job so far, oldest first.

        Args:
            job_id: The job.

        Returns:
            The events in time order.
        """
        jobs = self._client.fine_tuning.jobs
        newest_first = [
            e async for e in aiter_items(self.policy, lambda: jobs.list_events(job_id, limit=100))
        ]
        return list(reversed(newest_first))

    async def download_results(self, job: str | FineTuningJob) -> str:
        """The job's result file as CSV text (see :meth:`JobManager.download_results`).

        Args:
            job: The job or its id.

        Returns:
            The CSV text.
        """
        from .metrics import decode_result_file

        job = await self.retrieve(job) if isinstance(job, str) else job
        file_id = self._result_file_id(job)

        async def fetch() -> bytes:
            response = await self._client.files.content(file_id)
            return response.read()

        return decode_result_file(await self.policy.acall(fetch))

    async def results(self, job: str | FineTuningJob) -> MetricSeries:
        """The job's per-step metrics from its result file.

        Args:
            job: The job or its id.

        Returns:
            The metric series.
        """
        return parse_result_csv(await self.download_results(job))

    def watcher(
        self, *, options: FollowOptions | None = None, progress: bool | None = None
    ) -> AsyncJobWatcher:
        """A watcher with this manager's client, policy and settings.

        Args:
            options: Polling settings.
            progress: Progress bar.

        Returns:
            The watcher.
        """
        return AsyncJobWatcher(
            self._client,
            policy=self.policy,
            options=options or self.follow_options,
            progress=self.progress if progress is None else progress,
        )

    async def follow(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        options: FollowOptions | None = None,
        progress: bool | None = None,
    ) -> AsyncIterator[JobUpdate]:
        """Yield the job's updates until it ends; raise if it did not succeed.

        Args:
            job_id: The job.
            timeout: Give up after this many seconds.
            options: Polling settings.
            progress: Progress bar.

        Yields:
            Events, metric points and status changes, as :meth:`JobManager.follow`.
        """
        watcher = self.watcher(options=options, progress=progress)
        async for update in watcher.follow(job_id, timeout=timeout):
            yield update
        await self._raise_for_outcome(watcher.last_job)

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_update: Callable[[JobUpdate], Any] | None = None,
        options: FollowOptions | None = None,
        progress: bool | None = None,
    ) -> FineTuningJob:
        """Follow the job until it ends and return it (see :meth:`JobManager.wait`).

        Args:
            job_id: The job.
            timeout: Give up after this many seconds.
            on_update: Called with every update.
            options: Polling settings.
            progress: Progress bar.

        Returns:
            The succeeded job.
        """
        watcher = self.watcher(options=options, progress=progress)
        async for update in watcher.follow(job_id, timeout=timeout):
            if on_update is not None:
                on_update(update)
        job: FineTuningJob = watcher.last_job
        await self._raise_for_outcome(job)
        return job

    async def _raise_for_outcome(self, job: FineTuningJob) -> None:
        await arun_steps(self._outcome_steps(job), self._act)

    async def _download_line(self, file_id: str, line: int) -> str | None:
        async with self._client.files.with_streaming_response.content(file_id) as response:
            number = 0
            async for text in response.iter_lines():
                number += 1
                if number == line:
                    return text.lstrip("\ufeff") if number == 1 else text
        return None
