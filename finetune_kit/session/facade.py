"""``FineTuneSession``: the whole workflow in one object, resumable after a restart.

A session composes the parts (``.files`` a :class:`~finetune_kit.files.FileUploader`, ``.jobs`` a
:class:`~finetune_kit.jobs.JobManager`, ``.inference`` an
:class:`~finetune_kit.inference.InferenceClient`) over one ``openai`` client, and remembers what
it created remotely in a state file (:class:`~finetune_kit.session.state.SessionState`), written
atomically after every step that creates something. ``FineTuneSession.resume(path)`` carries on
after a crash or a kernel restart without uploading or training twice.

``FineTuneSession`` and ``AsyncFineTuneSession`` decide nothing on their own: every step is a
generator of ``_SessionCore`` that yields calls of the twin's own parts (``self.jobs.create``...),
driven by ``run_steps`` (plain calls) or ``arun_steps`` (awaited), as the services' twins are.

Examples:
    ```python
    from finetune_kit import FineTuneSession, build_dataset

    data = build_dataset("qa", [("Tell me about Neon", "Neon glows red...")] * 10)
    with FineTuneSession("local", model="gpt-4o-mini", state_path="run.json") as session:
        session.upload(data)
        session.train()                     # creates the job and follows it
        print(session.compare(["Tell me about Argon"]))
    ```
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import uuid
from collections.abc import (
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar
from urllib.parse import urlsplit

import openai

from .._interface import command, say
from .._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from .._served import ServedBackend, default_data_dir, find_served
from .._steps import arun_steps, run_steps
from .._urls import comparable_url, public_url
from ..azure.training import deployable_model, is_azure_checkpoint, is_azure_fine_tuned_model
from ..backends import backend_kind, make_client
from ..errors import (
    ConfigurationError,
    FineTuningUnavailableError,
    PreflightFailedError,
    SessionError,
)
from ..files.uploader import AsyncFileUploader, FileUploader
from ..inference.client import AsyncInferenceClient, InferenceClient
from ..jobs.following import FollowOptions
from ..jobs.lifecycle import (
    acheck_shutdown,
    aexport_job,
    check_new_jobs_allowed,
    check_shutdown,
    export_job,
)
from ..jobs.manager import IDEMPOTENCY_METADATA_KEY, AsyncJobManager, JobManager
from ..jobs.methods import make_method
from ..jobs.metrics import MetricSeries
from ..jobs.options import detect_provider
from ..jobs.views import TERMINAL_STATUSES
from ..jobs.weights import check_weights_request
from .state import CheckpointRecord, SessionState

if TYPE_CHECKING:
    from openai.types.fine_tuning import FineTuningJob

    from ..azure.deployer import AsyncAzureDeployer, AzureDeployer
    from ..azure.deployments import AzureDeployment
    from ..azure.training import TrainingType
    from ..data.report import PreflightReport
    from ..files.views import UploadedFile
    from ..inference.comparison import Comparison
    from ..inference.evaluation import PairedEvaluationReport
    from ..inference.replies import ChatReply
    from ..jobs.views import JobUpdate
    from ..local import LocalBackend

__all__ = ["AsyncFineTuneSession", "FineTuneSession"]

logger = logging.getLogger("finetune_kit.session")

_LOCAL_KEY_ENV = "FINETUNE_KIT_LOCAL_API_KEY"

DEFAULT_STATE_PATH = "finetune_kit_session.json"
"""Where a session keeps its state unless told otherwise (in the current folder)."""

ClientT = TypeVar("ClientT", openai.OpenAI, openai.AsyncOpenAI)
R = TypeVar("R")


@dataclass(frozen=True)
class _Call:
    """The action of the session's steps: a call of one of the twin's own parts.

    The step generator names the bound method (``self.jobs.retrieve``), so the sync twin's
    parts are called and the async twin's awaited; what the call returns is sent back into the
    generator, an exception it raises is thrown in.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @classmethod
    def of(cls, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> _Call:
        """The call ``fn(*args, **kwargs)``, to be made by the twin."""
        return cls(fn, args, kwargs)


_Steps: TypeAlias = Generator[_Call, Any, R]
"""A step generator of the session, returning an ``R``."""


def _call(action: _Call) -> Any:
    """Carry one action out with a plain call (the driver of ``FineTuneSession``)."""
    return action.fn(*action.args, **action.kwargs)


async def _acall(action: _Call) -> Any:
    """Carry one action out, awaiting what the call returns (``AsyncFineTuneSession``'s)."""
    result = action.fn(*action.args, **action.kwargs)
    return await result if inspect.isawaitable(result) else result


class _SessionCore(Generic[ClientT]):
    """What the sync and async sessions share: state, backend, and every decision without I/O.

    Each twin names its parts (``_uploader_class``...), its shutdown check and its export, and
    drives the step generators below with plain calls or awaited.
    """

    _async = False
    _uploader_class: Any
    _manager_class: Any
    _inference_class: Any
    _check_model_shutdown: Callable[..., Any]
    _export_job: Callable[..., Any]
    files: Any
    jobs: Any
    inference: Any

    def __init__(
        self,
        backend: str | ClientT = "openai",
        *,
        model: str | None = None,
        state_path: str | os.PathLike[str] | None = DEFAULT_STATE_PATH,
        api_key: str | None = None,
        base_url: str | None = None,
        azure_endpoint: str | None = None,
        api_version: str | None = None,
        azure_ad_token: str | None = None,
        azure_ad_token_provider: Callable[[], Any] | None = None,
        local_data_dir: str | os.PathLike[str] | None = None,
        local_model: str | None = None,
        policy: RetryPolicy | None = None,
        progress: bool | None = None,
        follow_options: FollowOptions | None = None,
        _state: SessionState | None = None,
    ) -> None:
        self.policy = policy if policy is not None else DEFAULT_RETRY_POLICY
        self.progress = progress
        self.follow_options = follow_options
        self.state_path = Path(state_path) if state_path is not None else None
        self.local_backend: LocalBackend | None = None
        self._local_folder: Path | None = None  # the local backend's data folder, when known
        self._shutdown_checked: set[str] = set()
        saved: SessionState | None = None
        if _state is None and self.state_path is not None and self.state_path.exists():
            # Re-running the constructor (a kernel restart, a script run twice) must carry on
            # the saved session: overwriting the file would lose its job and train a second one.
            saved = SessionState.load(self.state_path)
        state = _state if _state is not None else saved if saved is not None else SessionState()
        if _state is not None:
            # Resuming: the saved models are the session's; naming others changes nothing.
            self._check_same_models(_state, model, local_model)

        self._owns_client = not isinstance(backend, (openai.OpenAI, openai.AsyncOpenAI))
        if isinstance(backend, (openai.OpenAI, openai.AsyncOpenAI)):
            self._check_client_kind(backend)
            client: Any = backend
            kind: Any = _state_backend(detect_provider(backend))
        else:
            kind = backend_kind(backend)
            if kind == "local" and base_url is None:
                folder = local_data_dir or state.local_data_dir
                if saved is not None:
                    # Checked before the backend starts, so a conflict starts nothing.
                    self._check_carries_on(
                        saved,
                        {"backend": kind, "local_data_dir": _local_dir(folder)},
                        model,
                        local_model,
                    )
                # The saved local model, not the backend's default of the day: a later run
                # (a CLI command without --local-model) trains the model the session began with.
                chosen_local = local_model or state.local_model
                self._local_folder = Path(folder) if folder is not None else default_data_dir()
                served = find_served(self._local_folder)
                if served is not None:
                    # `finetune-kit local serve` runs for this folder: use it, with its model
                    # already loaded, instead of a second backend in this process.
                    state.local_model = self._check_served(served, chosen_local, api_key)
                    base_url = served.url
                else:
                    self.local_backend, state.local_model = self._start_local(
                        self._local_folder, chosen_local
                    )
                    base_url = self.local_backend.base_url
                    api_key = self.local_backend.api_key
            client = make_client(
                backend,
                api_key=api_key,
                base_url=base_url,
                async_=self._async,
                azure_endpoint=azure_endpoint,
                api_version=api_version,
                azure_ad_token=azure_ad_token,
                azure_ad_token_provider=azure_ad_token_provider,
            )
        where = self._where(kind, client, base_url, azure_endpoint, api_version)
        if saved is not None and self._local_folder is None:
            try:
                self._check_carries_on(saved, where, model, local_model)
            except SessionError:
                # An async client has opened nothing yet, and cannot be closed here unawaited.
                if self._owns_client and isinstance(client, openai.OpenAI):
                    client.close()
                raise
        for name, value in where.items():
            setattr(state, name, value)
        if model is not None and state.base_model is None:
            state.base_model = model
        if saved is not None:
            logger.info(
                "carrying on the session saved in %s (job %s, training file %s)",
                self.state_path,
                saved.job_id,
                saved.training_file_id,
            )
        self.state = state
        self.client: ClientT = client
        self._make_parts()
        if self.state.job_id is not None or self.state.training_file_id is not None:
            self.save()

    def _provider(self) -> Any:
        """The provider the jobs are created on: the session's backend, else the client's URL.

        A session on ``"openai"`` is OpenAI (with its rules and its wind-down) whatever base
        URL reaches it, a proxy's included.
        """
        if self.state.backend in ("openai", "azure", "local"):
            return self.state.backend
        return None  # a URL: guessed from it

    def _upload_backend_id(self) -> str | None:
        """What names the backend in the upload cache when its URL is not stable.

        The local backend started in-process listens on a new port each run; its data folder
        is what stays, so a rerun in a new process finds the file it uploaded.
        """
        if self.state.backend == "local" and self.state.local_data_dir:
            return Path(_local_dir(self.state.local_data_dir)).as_uri()
        return None

    def _remember_uploads(self, uploader: FileUploader | AsyncFileUploader) -> None:
        """Tell the uploader which files the state names, so a rerun reuses them.

        The upload cache may be gone (cleaned, another user, another machine): the state's
        sha256 and file id are enough. The uploader checks the file still exists before
        reusing it.
        """
        state = self.state
        for sha256, file_id in (
            (state.dataset_sha256, state.training_file_id),
            (state.validation_sha256, state.validation_file_id),
        ):
            if sha256 and file_id:
                uploader.remember(file_id, sha256)

    # ------------------------------------------------------------------ construction helpers

    def _check_client_kind(self, client: Any) -> None:
        wanted = openai.AsyncOpenAI if self._async else openai.OpenAI
        if not isinstance(client, wanted):
            raise ConfigurationError(
                f"{type(self).__name__} needs an {wanted.__name__} client, got "
                f"{type(client).__name__}",
                param="backend",
            )

    def _where(
        self,
        kind: str,
        client: Any,
        base_url: str | None,
        azure_endpoint: str | None,
        api_version: str | None,
    ) -> dict[str, Any]:
        """The state's fields that say where the session's backend is: only what was used."""
        where: dict[str, Any] = {
            "backend": kind,
            "base_url": None,
            "azure_endpoint": None,
            "azure_api_version": None,
            "local_data_dir": None,
        }
        if self._local_folder is not None:
            where["local_data_dir"] = str(self._local_folder)
            where["base_url"] = public_url(str(client.base_url))
        elif not self._owns_client:
            where["base_url"] = public_url(str(client.base_url))
        elif kind == "azure":
            classic = isinstance(client, (openai.AzureOpenAI, openai.AsyncAzureOpenAI))
            if classic:
                # The classic client's api-version, given or from the environment, is needed
                # again on resume; the v1 API needs none, so only one given explicitly is kept.
                used = api_version or os.environ.get("OPENAI_API_VERSION")
                where["azure_api_version"] = used or None
            else:
                where["azure_api_version"] = api_version
            if classic and base_url is None:
                where["azure_endpoint"] = (
                    azure_endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT") or None
                )
            else:
                where["base_url"] = public_url(str(client.base_url))
        elif kind in ("local", "custom") or base_url is not None:
            where["base_url"] = public_url(str(client.base_url))
        return where

    def _check_same_models(
        self, state: SessionState, model: str | None, local_model: str | None
    ) -> None:
        """Refuse a model other than the one a resumed session saved (base or local)."""
        conflict: tuple[str, str, str, str] | None = None
        if model is not None and state.base_model and not _same_model(model, state.base_model):
            conflict = ("model", state.base_model, model, say("model", "--model"))
        elif (
            local_model is not None
            and state.backend == "local"
            and state.local_model
            and local_model != state.local_model
        ):
            conflict = (
                "local model",
                state.local_model,
                local_model,
                say("local_model", "--local-model"),
            )
        if conflict is None:
            return
        what, old, new, param = conflict
        job = f" (job {state.job_id})" if state.job_id else ""
        raise SessionError(
            f"{self.state_path} is a session on the {what} {old!r}{job}; a later command "
            f"does not change it to {new!r}. Leave {param} out to carry the session on, or "
            + say("pass another state_path", "pass another --state")
            + f" for a new session on {new!r} (or delete the file to start over)",
            path=str(self.state_path),
        )

    def _check_carries_on(
        self,
        saved: SessionState,
        where: Mapping[str, Any],
        model: str | None,
        local_model: str | None = None,
    ) -> None:
        """Refuse to carry on a saved session that is not this one (another backend or model)."""
        ours = _identity(where)
        theirs = _identity(saved.model_dump())
        conflict: tuple[str, Any, Any] | None = None
        if where["backend"] != saved.backend:
            conflict = ("backend", saved.backend, where["backend"])
        elif ours != theirs:
            field = theirs[0] if theirs[0] == ours[0] else f"{theirs[0]} / {ours[0]}"
            conflict = (field, theirs[1], ours[1])
        elif (
            model is not None
            and saved.base_model is not None
            and not _same_model(model, saved.base_model)
        ):
            conflict = ("model", saved.base_model, model)
        elif (
            local_model is not None
            and saved.local_model is not None
            and local_model != saved.local_model
        ):
            conflict = ("local model", saved.local_model, local_model)
        if conflict is None:
            return
        field, old, new = conflict
        job = f" (job {saved.job_id})" if saved.job_id else ""
        how = say(
            f"Carry that session on with {type(self).__name__}.resume({str(self.state_path)!r}), "
            "pass another state_path for a new session",
            "Carry that session on with the same options, pass another --state for a new session",
        )
        raise SessionError(
            f"{self.state_path} holds another session{job}: its {field} is {old!r}, this "
            f"session's is {new!r}. {how}, or delete the file to start over",
            path=str(self.state_path),
        )

    def _check_served(self, served: ServedBackend, model: str | None, api_key: str | None) -> str:
        """Check a running server can carry this session; return its base model's name.

        Raises:
            SessionError: It maps OpenAI names to another model than the session's.
            ConfigurationError: It wants a key and none is given.
        """
        if model is not None and model != served.default_model:
            flag = say("local_model", "--local-model")
            raise SessionError(
                f"finetune-kit local serve runs for {served.data_dir} at {served.url} "
                f"(pid {served.pid}) with the local model {served.default_model!r}; this "
                f"session's local model is {model!r}. Stop that server and serve "
                f"--model {model} instead, or leave {flag} out for a new session on "
                f"{served.default_model!r}",
                path=str(self.state_path) if self.state_path else None,
            )
        if served.api_key_required and not (api_key or os.environ.get(_LOCAL_KEY_ENV)):
            raise ConfigurationError(
                f"the local backend serving {served.data_dir} at {served.url} wants a key: set "
                f"{_LOCAL_KEY_ENV} to it"
                + say(" (or pass api_key=)", " (or name its variable with --api-key-env)"),
                param=say("api_key", "--api-key-env"),
            )
        return served.default_model

    @staticmethod
    def _start_local(folder: Path, model: str | None) -> tuple[LocalBackend, str]:
        """Start the local backend in this process; return it and its base model's name."""
        try:
            from ..local import LocalBackend
            from ..local.engine.registry import DEFAULT_BASE_MODEL
        except ImportError as exc:
            raise ConfigurationError(
                "the local backend needs the 'local' extra: pip install 'finetune-kit[local]' "
                "(on a CPU-only machine, pip install torch==2.13.0 first); or start "
                "'finetune-kit local serve' where it is installed and pass its --base-url",
                param="backend",
            ) from exc
        # The registry's own choice when none is given (the environment's, else SmolLM2),
        # named so the state keeps it.
        chosen = model or os.environ.get("FINETUNE_KIT_LOCAL_MODEL") or DEFAULT_BASE_MODEL
        return LocalBackend(folder, default_model=chosen).start(), chosen

    @staticmethod
    def _resume_options(state: SessionState, overrides: Mapping[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {"backend": state.backend}
        if state.backend == "custom":
            options["backend"] = state.base_url
        elif state.backend == "local":
            if state.local_data_dir is not None:
                options["local_data_dir"] = state.local_data_dir
            else:
                options["base_url"] = state.base_url
        elif state.backend == "azure":
            # The base URL when one was used (v1, or a gateway), else the classic endpoint.
            # Older files may hold both for a v1 session (the environment's endpoint was saved
            # too): the base URL is the one its client used.
            if state.base_url is not None:
                options["base_url"] = state.base_url
            else:
                options["azure_endpoint"] = state.azure_endpoint
            if state.azure_api_version is not None:
                options["api_version"] = state.azure_api_version
        elif state.base_url is not None:
            options["base_url"] = state.base_url
        options.update(overrides)
        return options

    @classmethod
    def _resume_arguments(
        cls, path: str | os.PathLike[str], overrides: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The constructor's arguments that carry on the session saved at ``path``."""
        state = SessionState.load(path)
        return {"state_path": path, "_state": state, **cls._resume_options(state, overrides)}

    def _stop_local_backend(self) -> None:
        if self.local_backend is not None:
            self.local_backend.stop()
            self.local_backend = None

    # ------------------------------------------------------------------ state

    @property
    def model(self) -> str:
        """The base model to fine-tune, as named by the user.

        Raises:
            ConfigurationError: No model was given.
        """
        if self.state.base_model is None:
            raise ConfigurationError(
                "no base model: "
                + say(
                    "pass model='gpt-4.1-mini-2025-04-14' (or another) to the session",
                    "pass --model gpt-4.1-mini-2025-04-14 (or another) to upload or train",
                ),
                param=say("model", "--model"),
            )
        return self.state.base_model

    @property
    def is_local(self) -> bool:
        """Whether the session talks to the local backend."""
        return self.state.backend == "local"

    def save(self) -> None:
        """Write the state file now (it is also written after every remote step)."""
        if self.state_path is not None:
            self.state.save(self.state_path)

    def _require(self, field: str, how: str) -> str:
        value = getattr(self.state, field)
        if not value:
            raise SessionError(
                f"this session has no {field.replace('_', ' ')} yet: {how}",
                path=str(self.state_path) if self.state_path else None,
            )
        return str(value)

    def _job_id(self, job_id: str | None) -> str:
        return job_id or self._require(
            "job_id",
            say(
                "call train() or attach(job_id) first",
                f"run '{command('train')}' or '{command('attach JOB_ID')}' first",
            ),
        )

    def _tuned_model(self) -> str:
        if self.state.deployment and self.state.backend == "azure":
            return self.state.deployment
        return self._require("fine_tuned_model", say(*_TRAINED_FIRST))

    def _base_for_inference(self) -> str:
        # The job reports the model the backend really trained (an alias resolved, a snapshot
        # pinned), which is the one to compare with; before a job exists, the user's name.
        return self.state.trained_base_model or self.model

    def _preflight_model(self) -> str | None:
        # The local backend maps OpenAI names to its own models: OpenAI's token limits and
        # prices would be wrong there. Without a model, the data is checked alone (and the
        # report says so): never against a model the user did not choose.
        return None if self.is_local else self.state.base_model

    def _preflight(self, data: Any, validation: Any, options: dict[str, Any]) -> PreflightReport:
        from ..data.validation import preflight

        options.setdefault("model", self._preflight_model())
        # The model table's shutdown dates are OpenAI's; another server retires models on its
        # own schedule, so they must not refuse an upload there (the API's date is checked
        # before training instead).
        options.setdefault("shutdown_dates", self._uses_openai_dates)
        # Azure states file rules of its own (512 MB, its BOM statement, RFT's limits).
        options.setdefault("profile", "azure" if self.state.backend == "azure" else "openai")
        if not self.is_local or "tokenizer" in options:
            return preflight(data, validation=validation, **options)
        # The local backend trains its own base model: tokens are counted by its tokenizer, as
        # its trainer counts them (o200k said 39 per example where training billed 137).
        from .backend_tokenizer import BackendTokenizer

        with BackendTokenizer(self.client, self.state.base_model, policy=self.policy) as counter:
            return preflight(data, validation=validation, tokenizer=counter, **options)

    def _shutdown_options(self, model: str) -> dict[str, Any] | None:
        """How to check ``model``'s shutdown date here, or ``None`` when there is nothing to do.

        The local backend maps OpenAI names to its own models, so no OpenAI date applies there.
        Elsewhere the API's date is read; the model table's (OpenAI's) only on OpenAI itself
        (see ``_uses_openai_dates``). Each model is checked once per session, so a chat
        loop does not pay a models request per call.
        """
        if self.is_local or model in self._shutdown_checked:
            return None
        return {"client": self.client, "use_table": self._uses_openai_dates, "policy": self.policy}

    @property
    def _uses_openai_dates(self) -> bool:
        """Whether the model table's shutdown dates, which are OpenAI's, apply to this backend.

        See :attr:`SessionState.uses_openai_dates`.
        """
        return self.state.uses_openai_dates

    def _record_upload(self, training: UploadedFile, validation: UploadedFile | None) -> None:
        self.state.training_file_id = training.id
        self.state.dataset_sha256 = training.sha256
        self.state.validation_file_id = validation.id if validation else None
        self.state.validation_sha256 = validation.sha256 if validation else None
        self.save()

    def _record_job(self, job: FineTuningJob) -> None:
        self.state.job_id = job.id
        self.state.job_status = job.status
        self.state.trained_base_model = job.model
        if job.fine_tuned_model:
            self.state.fine_tuned_model = job.fine_tuned_model
        self.save()

    def _record_checkpoints(self, checkpoints: Sequence[Any]) -> None:
        self.state.checkpoints = [
            CheckpointRecord(
                id=c.id,
                model=c.fine_tuned_model_checkpoint,
                step=c.step_number,
                metrics=c.metrics.model_dump(exclude_none=True) if c.metrics else {},
            )
            for c in checkpoints
        ]
        self.save()

    def _forget_job(self) -> None:
        """Drop what belongs to the session's job, which another is about to replace."""
        self.state.job_key = None
        self.state.job_parameters = None
        self.state.job_id = None
        self.state.job_status = None
        self.state.trained_base_model = None
        self.state.fine_tuned_model = None
        self.state.checkpoints = []
        self.state.deployment = None
        self.state.deployed_model = None

    def _trained_on_uploaded_data(self, job: FineTuningJob) -> bool:
        """Whether ``job`` trained on the files uploaded last (else the new data needs a job)."""
        if self.state.training_file_id is None:
            return True
        uploaded = (self.state.training_file_id, self.state.validation_file_id or None)
        trained = (job.training_file, job.validation_file or None)
        if uploaded == trained:
            return True
        running = "" if job.status in TERMINAL_STATUSES else f" ({job.status}, not cancelled)"
        logger.warning(
            "job %s trained on %s, but %s was uploaded since: creating a new job for the new "
            "data; the previous job%s stays on the backend, and the session follows the new one",
            job.id,
            "/".join(f for f in trained if f),
            "/".join(f for f in uploaded if f),
            running,
        )
        return False

    def _existing_job_decision(self, restart: bool) -> str | None:
        """The job to carry on with instead of creating one, or ``None`` to create."""
        if restart or self.state.job_id is None:
            return None
        if self.state.job_status in ("failed", "cancelled"):
            return None
        logger.info(
            "session already has job %s; following it instead of creating another",
            self.state.job_id,
        )
        return self.state.job_id

    def _prepare_new_job(self, fresh: bool) -> str:
        """Check what a new job needs and give it a fresh key, saved before the create.

        Args:
            fresh: Replace the session's job even though it did not end (``restart=True``,
                or new data was uploaded since it was created).
        """
        training = self._require(
            "training_file_id",
            say(
                "call upload(data) first",
                f"run '{command('upload FILE')}' (or train --file FILE) first",
            ),
        )
        check_new_jobs_allowed(self.state.base_url or str(self.client.base_url))
        if fresh or self.state.job_key is None or self.state.job_status in TERMINAL_STATUSES:
            # Saved before the create: a crash between the two finds the job by its key
            # instead of creating a second one.
            self._forget_job()
            self.state.job_key = uuid.uuid4().hex
            self.save()
        return training

    @contextlib.contextmanager
    def _previous_job_kept_on_refusal(self) -> Iterator[None]:
        """Put the previous job back when a new one is refused for certain.

        ``_prepare_new_job`` forgets the previous job and saves the new key before the create
        (a crash in between must find the job by its key). When the create is refused before
        any request (a parameter out of range) or by a 4xx answer, no job exists: the previous
        one, its tuned model and checkpoints, stay the session's. After an ambiguous failure
        (the connection lost after the retries) the job may exist, so the new key is kept.
        """
        snapshot = self.state.model_copy(deep=True)
        try:
            yield
        except _REFUSALS:
            for name in type(snapshot).model_fields:
                setattr(self.state, name, getattr(snapshot, name))
            self.save()
            raise

    def _record_created(self, job: FineTuningJob, method: Any, asked: Mapping[str, Any]) -> None:
        if isinstance(method, str):
            self.state.method = method
        # What this job was asked for, so a later train() asking otherwise is refused, not
        # silently given the old job.
        kind = getattr(job.method, "type", None) or self.state.method or "supervised"
        self.state.job_parameters = {**asked, "method": kind}
        self._record_job(job)

    def _asked(
        self,
        method: Any,
        hyperparameters: Mapping[str, Any] | None,
        n_epochs: int | str | None,
        batch_size: int | str | None,
        learning_rate_multiplier: float | str | None,
        suffix: str | None,
        seed: int | None,
    ) -> dict[str, Any]:
        """What a ``train()`` call names of the job, flat (``n_epochs``, ``method``, ``suffix``)."""
        _, merged = self._method(
            None, hyperparameters, n_epochs, batch_size, learning_rate_multiplier
        )
        asked: dict[str, Any] = {}
        if method is not None:
            body = make_method(method, **(merged or {})).to_param()
            kind = body["type"]
            asked["method"] = kind
            settings = dict(body.get(kind) or {})
            asked.update(settings.pop("hyperparameters", None) or {})
            asked.update(settings)  # a reinforcement grader
        else:
            asked.update(merged or {})
        if suffix is not None:
            asked["suffix"] = suffix
        if seed is not None:
            asked["seed"] = seed
        return asked

    def _check_carry_on(self, job: FineTuningJob, asked: Mapping[str, Any]) -> None:
        """Refuse to hand back ``job`` for a call that asks it other parameters.

        The parameters the job was created with are in the state; for a job made elsewhere
        (attached), those it reports, where ``"auto"`` asks for nothing in particular.

        Raises:
            ConfigurationError: A parameter differs; ``param`` names the first one.
        """
        saved = self.state.job_parameters
        differing: list[tuple[str, Any, Any]] = []
        for name, value in asked.items():
            if saved is not None:
                before = saved.get(name, _UNSET_PARAMETER.get(name, "auto"))
            else:
                before = _reported(job, name)
                if before is None or value == "auto":
                    continue
            if before != value:
                differing.append((name, before, value))
        if not differing:
            return
        listed = "; ".join(
            f"{_flag(name)}: the job has {before!r}, this call asks {value!r}"
            for name, before, value in differing
        )
        names = ", ".join(_flag(name) for name, _, _ in differing)
        running = job.status not in TERMINAL_STATUSES
        cancel = say("session.cancel()", command("cancel"))
        stays = f"; it is still {job.status}: cancel it with {cancel} first" if running else ""
        restart = say("pass restart=True", "pass --restart")
        first = differing[0][0]
        raise ConfigurationError(
            f"the session's job {job.id} ({job.status}) was created otherwise: {listed}. "
            f"Training again carries on with that job and changes nothing of it: leave {names} "
            f"out to carry on with it, or {restart} to create a new job with these "
            f"(job {job.id} stays on the backend{stays})",
            param=first if first in _UNSET_PARAMETER else f"hyperparameters.{first}",
        )

    def _adopt(self, job: FineTuningJob) -> None:
        if job.id != self.state.job_id:
            # Nothing of the previous job may linger: its tuned model, checkpoints or
            # deployment would answer chat() in the new job's name.
            self._forget_job()
            if job.training_file != self.state.training_file_id:
                self.state.dataset_sha256 = None
            if (job.validation_file or None) != self.state.validation_file_id:
                self.state.validation_sha256 = None
        self.state.job_key = (job.metadata or {}).get(IDEMPOTENCY_METADATA_KEY)
        self.state.training_file_id = job.training_file
        self.state.validation_file_id = job.validation_file or None
        method = getattr(job.method, "type", None)
        if isinstance(method, str):
            self.state.method = method
        if self.state.base_model is None:
            self.state.base_model = job.model
        self._record_job(job)

    def _to_deploy(self, checkpoint: int | str | None) -> str:
        if self.state.backend != "azure":
            raise ConfigurationError(
                "deploy() is Azure's step: OpenAI and the local backend serve a tuned model as "
                "soon as its job succeeds",
                param="backend",
            )
        if checkpoint is None:
            return self._require("fine_tuned_model", say(*_TRAINED_FIRST))
        return self._pick_model(checkpoint=checkpoint, base=False)

    def _record_deployment(self, name: str, model: str) -> None:
        self.state.deployment = name
        self.state.deployed_model = model
        self.save()

    def _addressed(self, model: str) -> str:
        """The name to send for ``model``: on Azure, a fine-tuned model's deployment.

        On Azure a fine-tuned model or checkpoint answers only through a deployment, called by
        its name: the session's own deployment stands for the model it holds, and any other
        ``.ft-`` or ``ftchkpt-`` id is refused before a request is sent (Azure would answer
        404). Other names, and every name elsewhere, go as they are.

        Raises:
            ConfigurationError: An Azure model id that no deployment of the session holds.
        """
        if self.state.backend != "azure" or model == self.state.deployment:
            return model
        if not (is_azure_fine_tuned_model(model) or is_azure_checkpoint(model)):
            return model
        held, deployment = self.state.deployed_model, self.state.deployment
        if deployment is not None and held in (model, None):
            # The deployment of a state saved before it recorded its model: presumed to hold it.
            return deployment
        holds = f"; the session's deployment {deployment!r} holds {held!r}" if deployment else ""
        raise ConfigurationError(
            f"on Azure OpenAI a fine-tuned model answers only through a deployment, and "
            f"{model!r} has none in this session{holds}: deploy it first "
            "(session.deploy(deployer, NAME) for the tuned model, checkpoint=STEP for a "
            "checkpoint), or pass a deployment's name as model",
            param="model",
        )

    def _pair_for_inference(self, base_model: str | None) -> tuple[str, str]:
        base = base_model or self._base_for_inference()
        return self._addressed(base), self._addressed(self._tuned_model())

    def _pick_model(self, *, checkpoint: int | str | None, base: bool) -> str:
        if base:
            return self._base_for_inference()
        if checkpoint is None:
            return self._tuned_model()
        if isinstance(checkpoint, str):
            return checkpoint
        records = self.state.checkpoints
        for record in records:
            if record.step == checkpoint:
                # Azure's checkpoints share the job's .ft- model name: one is its ftchkpt- id.
                return deployable_model(record) if self.state.backend == "azure" else record.model
        steps = ", ".join(str(r.step) for r in records) or "none"
        raise ConfigurationError(
            f"no checkpoint at step {checkpoint}; the job's checkpoints are at steps: {steps}",
            param="checkpoint",
        )

    def _method(
        self,
        method: Any,
        hyperparameters: Mapping[str, Any] | None,
        n_epochs: int | str | None,
        batch_size: int | str | None,
        learning_rate_multiplier: float | str | None,
    ) -> tuple[Any, dict[str, Any] | None]:
        merged = dict(hyperparameters or {})
        for name, value in (
            ("n_epochs", n_epochs),
            ("batch_size", batch_size),
            ("learning_rate_multiplier", learning_rate_multiplier),
        ):
            if value is not None:
                merged[name] = value
        return method or self.state.method or "supervised", merged or None

    def _repr_html_(self) -> str:
        return self.state._repr_html_()

    def __repr__(self) -> str:
        where = self.state.base_url or self.state.backend
        return (
            f"{type(self).__name__}(backend={self.state.backend!r}, url={where!r}, "
            f"model={self.state.base_model!r}, job={self.state.job_id!r})"
        )

    # ------------------------------------------------------------------ decisions, as steps
    #
    # Every public method of the twins is one of these step generators, driven by run_steps
    # (FineTuneSession) or arun_steps (AsyncFineTuneSession): the generator decides, and yields
    # a _Call of one of the twin's own parts (``self.jobs.retrieve``...), which the sync twin
    # calls and the async twin awaits.

    def _make_parts(self) -> None:
        self.files = self._uploader_class(
            self.client,
            policy=self.policy,
            progress=self.progress,
            backend_id=self._upload_backend_id(),
        )
        self._remember_uploads(self.files)
        self.jobs = self._manager_class(
            self.client,
            policy=self.policy,
            provider=self._provider(),
            progress=self.progress,
            follow_options=self.follow_options,
        )
        self.inference = self._inference_class(self.client, policy=self.policy)

    def _upload_steps(self, data: Any, validation: Any, force: bool) -> _Steps[UploadedFile]:
        # Both files in one preflight: the validation file is held to its own rules (no
        # minimum count) and checked for overlap with the training file.
        report = self._preflight(data, validation, {})
        if not report.ok:
            if not force:
                raise PreflightFailedError(_refusal(report), report=report)
            logger.warning(
                "uploading despite %d preflight error(s): force=True", len(report.errors)
            )
        training: UploadedFile = yield _Call.of(self.files.upload, data, preflight=False)
        checked: UploadedFile | None = None
        if validation is not None:
            checked = yield _Call.of(self.files.upload, validation, preflight=False)
        self._record_upload(training, checked)
        return training

    def _train_steps(
        self,
        *,
        method: Any,
        hyperparameters: Mapping[str, Any] | None,
        n_epochs: int | str | None,
        batch_size: int | str | None,
        learning_rate_multiplier: float | str | None,
        suffix: str | None,
        seed: int | None,
        metadata: Mapping[str, str] | None,
        wandb: Any,
        follow: bool,
        timeout: float | None,
        on_update: Callable[[JobUpdate], Any] | None,
        restart: bool,
        training_type: TrainingType | None = None,
        training_type_wire: str | None = None,
    ) -> _Steps[FineTuningJob]:
        asked = self._asked(
            method, hyperparameters, n_epochs, batch_size, learning_rate_multiplier, suffix, seed
        )
        if training_type is not None:
            asked["training_type"] = training_type
        existing = self._existing_job_decision(restart)
        current: FineTuningJob | None = None
        if existing is not None:
            current = yield _Call.of(self.jobs.retrieve, existing)
        if current is not None and self._trained_on_uploaded_data(current):
            self._check_carry_on(current, asked)
            job: FineTuningJob = current
            self._record_job(job)
        else:
            with self._previous_job_kept_on_refusal():
                training = self._prepare_new_job(restart or current is not None)
                yield from self._shutdown_steps(self.model)
                chosen, params = self._method(
                    method, hyperparameters, n_epochs, batch_size, learning_rate_multiplier
                )
                job = yield _Call.of(
                    self.jobs.create,
                    model=self.model,
                    training_file=training,
                    validation_file=self.state.validation_file_id,
                    method=chosen,
                    hyperparameters=params,
                    suffix=suffix,
                    seed=seed,
                    metadata=metadata,
                    wandb=wandb,
                    idempotency_key=self.state.job_key,
                    training_type=training_type,
                    training_type_wire=training_type_wire,
                )
            self._record_created(job, chosen, asked)
        if follow and job.status not in TERMINAL_STATUSES:
            return (yield from self._wait_steps(timeout, on_update))
        return job

    def _attach_steps(self, job_id: str) -> _Steps[FineTuningJob]:
        job: FineTuningJob = yield _Call.of(self.jobs.retrieve, job_id)
        self._adopt(job)
        if job.status == "succeeded":
            yield from self._checkpoints_steps()
        return job

    def _job_steps(self, action: Callable[[str], Any]) -> _Steps[FineTuningJob]:
        """Retrieve, cancel, pause or resume the session's job, and save its status."""
        job: FineTuningJob = yield _Call.of(action, self._job_id(None))
        self._record_job(job)
        return job

    def _wait_steps(
        self, timeout: float | None, on_update: Callable[[JobUpdate], Any] | None
    ) -> _Steps[FineTuningJob]:
        job_id = self._job_id(None)
        try:
            job: FineTuningJob = yield _Call.of(
                self.jobs.wait, job_id, timeout=timeout, on_update=on_update
            )
        finally:
            # Also after a failure, a timeout or Ctrl-C: the state keeps the job's last status.
            yield from self._refresh_steps(job_id)
        return job

    def _refresh_steps(self, job_id: str) -> _Steps[None]:
        try:
            job: FineTuningJob = yield _Call.of(self.jobs.retrieve, job_id)
        except openai.OpenAIError as exc:
            logger.debug("could not refresh job %s after following it: %s", job_id, exc)
            return
        self._record_job(job)
        if job.status == "succeeded":
            yield from self._checkpoints_steps()

    def _checkpoints_steps(self) -> _Steps[list[Any]]:
        checkpoints: list[Any] = yield _Call.of(self.jobs.checkpoints, self._job_id(None))
        self._record_checkpoints(checkpoints)
        return checkpoints

    def _metrics_steps(self) -> _Steps[MetricSeries]:
        job: FineTuningJob = yield _Call.of(self.jobs.retrieve, self._job_id(None))
        if job.result_files:
            results: MetricSeries = yield _Call.of(self.jobs.results, job)
            return results
        events: list[Any] = yield _Call.of(self.jobs.events, job.id)
        return MetricSeries.from_events(events)

    def _shutdown_steps(self, model: str) -> _Steps[None]:
        options = self._shutdown_options(model)
        if options is not None:
            yield _Call.of(self._check_model_shutdown, model, **options)
            # Only once it ran: a warning turned into an error must not skip the next check.
            self._shutdown_checked.add(model)

    def _known_checkpoints_steps(self, checkpoint: int | str | None) -> _Steps[None]:
        """Read the job's checkpoints first when one is named by step and none is saved yet."""
        if isinstance(checkpoint, int) and not self.state.checkpoints:
            yield from self._checkpoints_steps()

    def _chat_steps(
        self,
        messages: Any,
        *,
        model: str | None,
        checkpoint: int | str | None,
        base: bool,
        system: str | None,
        params: Mapping[str, Any],
    ) -> _Steps[ChatReply]:
        if model is None:
            yield from self._known_checkpoints_steps(checkpoint)
        chosen = self._addressed(model or self._pick_model(checkpoint=checkpoint, base=base))
        yield from self._shutdown_steps(chosen)
        reply: ChatReply = yield _Call.of(
            self.inference.chat, chosen, messages, system=system, **params
        )
        return reply

    def _compare_steps(
        self,
        prompts: Any,
        *,
        system: str | None,
        base_model: str | None,
        params: Mapping[str, Any],
    ) -> _Steps[Comparison]:
        base, tuned = self._pair_for_inference(base_model)
        yield from self._shutdown_steps(base)
        comparison: Comparison = yield _Call.of(
            self.inference.compare, base, tuned, prompts, system=system, **params
        )
        return comparison

    def _evaluate_steps(
        self,
        examples: Iterable[Any],
        scorers: Any,
        *,
        base_model: str | None,
        options: Mapping[str, Any],
    ) -> _Steps[PairedEvaluationReport]:
        base, tuned = self._pair_for_inference(base_model)
        yield from self._shutdown_steps(base)
        report: PairedEvaluationReport = yield _Call.of(
            self.inference.evaluate_pair, base, tuned, examples, scorers, **options
        )
        return report

    def _deploy_steps(
        self,
        deployer: Any,
        deployment_name: str,
        *,
        checkpoint: int | str | None,
        sku: str,
        capacity: int,
    ) -> _Steps[AzureDeployment]:
        yield from self._known_checkpoints_steps(checkpoint)
        model = self._to_deploy(checkpoint)
        deployment: AzureDeployment = yield _Call.of(
            deployer.deploy,
            model,
            deployment_name,
            sku=sku,
            capacity=capacity,
        )
        self._record_deployment(deployment_name, model)
        return deployment

    def _export_steps(
        self, folder: str | os.PathLike[str], weights: Sequence[str] = ()
    ) -> _Steps[Path]:
        if weights:
            # Refused before anything is downloaded: OpenAI and Azure keep the weights.
            check_weights_request(str(self.client.base_url), weights)
            self._require("fine_tuned_model", say(*_TRAINED_FIRST))
        out: Path = yield _Call.of(
            self._export_job,
            self.client,
            self._job_id(None),
            folder,
            policy=self.policy,
            weights=weights,
        )
        # The state holds no secret: it goes with the job's files.
        self.state.save(out / "session.json")
        return out


def _local_dir(folder: str | os.PathLike[str] | None) -> str:
    if folder is None:
        folder = default_data_dir()
    return str(Path(folder).expanduser().resolve())


_REFUSALS = (
    ConfigurationError,
    FineTuningUnavailableError,
    openai.BadRequestError,
    openai.AuthenticationError,
    openai.PermissionDeniedError,
    openai.NotFoundError,
    openai.UnprocessableEntityError,
)
"""Errors after which no job was created for certain (ambiguous failures are not here)."""

OPENAI_BASE_URL = "https://api.openai.com/v1"


def _identity(fields: Mapping[str, Any]) -> tuple[str, str | None]:
    """The field that says where a session's data lives, and its value as compared."""
    if fields.get("backend") == "local" and fields.get("local_data_dir"):
        return "local_data_dir", _local_dir(fields["local_data_dir"])
    if fields.get("backend") == "azure":
        # One Azure resource, whether reached by its classic endpoint, its v1 base URL or a
        # client passed in (whose base URL adds /openai/...): its host names it.
        url = fields.get("base_url") or fields.get("azure_endpoint")
        return "Azure resource", urlsplit(url).hostname if url else None
    base_url = fields.get("base_url")
    if fields.get("backend") == "openai" and not base_url:
        base_url = OPENAI_BASE_URL  # a client the session made saves no URL for OpenAI
    return "base_url", comparable_url(base_url) if base_url else None


_UNSET_PARAMETER: dict[str, Any] = {
    "suffix": None,
    "seed": None,
    "grader": None,
    "training_type": None,
}
"""What a job has for a parameter its create did not name (a hyperparameter: ``auto``)."""

_FLAGS = {
    "n_epochs": "--epochs",
    "batch_size": "--batch-size",
    "learning_rate_multiplier": "--learning-rate-multiplier",
    "beta": "--beta",
    "method": "--method",
    "suffix": "--suffix",
    "seed": "--seed",
    "training_type": "--training-type",
}


def _flag(name: str) -> str:
    """A job parameter as the reader knows it: ``n_epochs``, or ``--epochs`` at the CLI."""
    return say(name, _FLAGS.get(name, name))


def _reported(job: Any, name: str) -> Any:
    """A job's own value of a parameter (``None`` when it does not report it)."""
    method = getattr(job, "method", None)
    kind = getattr(method, "type", None) or "supervised"
    if name == "method":
        return kind
    if name == "seed":
        return getattr(job, "seed", None)
    settings = getattr(method, kind, None) if method is not None else None
    if name == "grader":
        return getattr(settings, "grader", None)
    for holder in (
        getattr(settings, "hyperparameters", None),
        getattr(job, "hyperparameters", None),
    ):
        value = getattr(holder, name, None)
        if value is not None:
            return value
    return None


def _same_model(a: str, b: str) -> bool:
    from ..data.base_models import get_model_info

    if a.strip() == b.strip():
        return True
    info_a, info_b = get_model_info(a), get_model_info(b)
    return info_a is not None and info_b is not None and info_a.name == info_b.name


def _refusal(report: PreflightReport) -> str:
    errors = list(report.errors)
    first = next((e for e in errors if e.line is not None), errors[0])
    where = f"{first.file} line {first.line}: " if first.line is not None else ""
    how = say(
        "Fix the data (report.errors lists every one; autofix() mends the safe ones), or pass "
        "force=True",
        f"Fix the data ('{command('preflight FILE')}' lists every error; its --fix OUT writes "
        "a copy with the safe ones mended), or pass --force",
    )
    return f"preflight found {len(errors)} error(s); first: {where}{first.message}. {how}"


_TRAINED_FIRST = (
    "train() must finish successfully first",
    "the job must succeed first (finetune-kit train --follow, or events --follow)",
)


def _state_backend(provider: str) -> Any:
    return provider if provider in ("openai", "azure", "local", "custom") else "custom"


class FineTuneSession(_SessionCore[openai.OpenAI]):
    """The whole fine-tuning workflow in one object; each step is also a class of its own.

    Args:
        backend: ``"openai"``, ``"azure"``, ``"local"`` (the local backend, started in this
            process unless ``base_url`` points at a running one), a base URL, or an existing
            ``openai.OpenAI`` client (used with its own retries off).
        model: The base model to fine-tune. On the local backend, OpenAI names map to its
            default local model.
        state_path: The state file (``None``: keep the state in memory only). An existing file
            is carried on when it is this session's (same backend kind, base URL, endpoint or
            local data folder, and model), so re-running the constructor after a restart does
            not train twice; another session's file raises :class:`SessionError`.
        api_key: The API key (never saved, logged or shown); defaults to the backend's variable.
        base_url: Overrides the backend's URL.
        azure_endpoint: Azure resource endpoint (``backend="azure"``).
        api_version: Azure API version (``backend="azure"``, classic endpoint).
        azure_ad_token: Entra ID token (``backend="azure"``).
        azure_ad_token_provider: Callable returning an Entra ID token (``backend="azure"``).
        local_data_dir: The local backend's data folder (default: the user's data folder, so
            files, jobs and models survive restarts).
        local_model: The local backend's default base model (what OpenAI names map to), such as
            ``"smollm2-135m-instruct"`` or ``"tiny-random"``.
        policy: The retry policy for every call (default: the shared one).
        progress: Progress bars (``None``: only on a terminal or in a notebook).
        follow_options: How often a followed job is polled (default: every 5 s, backing off to
            60 s while nothing happens).

    Attributes:
        client: The ``openai`` client every part uses.
        files: The :class:`~finetune_kit.files.FileUploader`.
        jobs: The :class:`~finetune_kit.jobs.JobManager`.
        inference: The :class:`~finetune_kit.inference.InferenceClient`.
        state: The :class:`~finetune_kit.session.state.SessionState`.
        local_backend: The :class:`~finetune_kit.local.LocalBackend` this session started, if any.

    Examples:
        ```python
        session = FineTuneSession("openai", model="gpt-4.1-mini-2025-04-14", state_path="run.json")
        session.upload("train.jsonl", validation="valid.jsonl")
        job = session.train(n_epochs=3, suffix="support")
        print(session.chat("How do I reset my password?").text)
        ```
    """

    _uploader_class = FileUploader
    _manager_class = JobManager
    _inference_class = InferenceClient
    _check_model_shutdown = staticmethod(check_shutdown)
    _export_job = staticmethod(export_job)

    files: FileUploader
    jobs: JobManager
    inference: InferenceClient

    # ------------------------------------------------------------------ lifecycle of the object

    @classmethod
    def resume(cls, path: str | os.PathLike[str], **options: Any) -> FineTuneSession:
        """Carry on a session from its state file, after a crash or a kernel restart.

        Nothing is redone: the uploaded files and the job are those the file names. Keys are not
        in the file: pass ``api_key=`` or set the backend's environment variable.

        Args:
            path: The state file.
            **options: Constructor arguments (``api_key``, ``follow_options``...) overriding
                what the file says.

        Returns:
            The session.
        """
        return cls(**cls._resume_arguments(path, options))

    def close(self) -> None:
        """Close the client this session made and stop the local backend it started.

        A client passed in as ``backend`` is left open: it is the caller's. The local backend's
        data folder stays.
        """
        if self._owns_client:
            self.client.close()
        self._stop_local_backend()

    def __enter__(self) -> FineTuneSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ data

    def preflight(self, data: Any, *, validation: Any = None, **options: Any) -> PreflightReport:
        """Check training data offline: line-accurate errors, token counts, epochs and cost.

        On the local backend the tokens are counted by its base model's own tokenizer (one
        request to its ``/v1/tokenize`` per block of examples), as its trainer counts them.

        Args:
            data: A ``Dataset``, a JSONL path or its bytes.
            validation: Validation data, likewise (checked too, and for overlap).
            **options: More :func:`~finetune_kit.data.validation.preflight` options.

        Returns:
            The report.
        """
        return self._preflight(data, validation, options)

    def upload(self, data: Any, *, validation: Any = None, force: bool = False) -> UploadedFile:
        """Preflight and upload training (and validation) data, once per content.

        Args:
            data: A ``Dataset``, a JSONL path or its bytes.
            validation: Validation data, likewise.
            force: Upload even when preflight finds errors.

        Returns:
            The training file (its ``.id`` is saved in the state).
        """
        return run_steps(self._upload_steps(data, validation, force), _call)

    # ------------------------------------------------------------------ training

    def train(
        self,
        *,
        method: Any = None,
        hyperparameters: Mapping[str, Any] | None = None,
        n_epochs: int | str | None = None,
        batch_size: int | str | None = None,
        learning_rate_multiplier: float | str | None = None,
        suffix: str | None = None,
        seed: int | None = None,
        metadata: Mapping[str, str] | None = None,
        wandb: Any = None,
        follow: bool = True,
        timeout: float | None = None,
        on_update: Callable[[JobUpdate], Any] | None = None,
        restart: bool = False,
        training_type: TrainingType | None = None,
        training_type_wire: str | None = None,
    ) -> FineTuningJob:
        """Create the fine-tuning job (once) and, by default, follow it to the end.

        Calling it again carries on with the session's job instead of creating another, unless
        that job failed or was cancelled, or ``restart=True``.

        Args:
            method: ``"supervised"`` (default), ``"dpo"``, ``"reinforcement"`` or a method model.
            hyperparameters: Hyperparameters for the method.
            n_epochs: Shorthand for ``hyperparameters["n_epochs"]``.
            batch_size: Shorthand for ``hyperparameters["batch_size"]``.
            learning_rate_multiplier: Shorthand for ``hyperparameters[...]``.
            suffix: Put into the tuned model's name.
            seed: Training seed.
            metadata: Job metadata (one pair is used by the idempotency key).
            wandb: A wandb integration (a project name, dict or model).
            follow: Follow the job until it ends (progress bar, events, metrics).
            timeout: Stop following after this many seconds (the job goes on).
            on_update: Called with every event, metric point and status change.
            restart: Create a new job even though the session has one.
            training_type: Azure OpenAI's training tier (``"GlobalStandard"``,
                ``"Standard"``, ``"Developer"``), sent as ``trainingType``; see
                :meth:`JobManager.create <finetune_kit.jobs.manager.JobManager.create>`.
            training_type_wire: Send this spelling of the tier instead of the documented one.

        Returns:
            The job (succeeded when followed).
        """
        steps = self._train_steps(
            method=method,
            hyperparameters=hyperparameters,
            n_epochs=n_epochs,
            batch_size=batch_size,
            learning_rate_multiplier=learning_rate_multiplier,
            suffix=suffix,
            seed=seed,
            metadata=metadata,
            wandb=wandb,
            follow=follow,
            timeout=timeout,
            on_update=on_update,
            restart=restart,
            training_type=training_type,
            training_type_wire=training_type_wire,
        )
        return run_steps(steps, _call)

    def attach(self, job_id: str) -> FineTuningJob:
        """Make an existing job this session's job (started elsewhere, or before a restart).

        What belonged to the previous job (its tuned model, checkpoints, deployment, the
        uploaded data's checksum when the files differ) is dropped; the new job's files, status,
        tuned model and, once it succeeded, checkpoints take their place.

        Args:
            job_id: The job.

        Returns:
            The job.
        """
        return run_steps(self._attach_steps(job_id), _call)

    def status(self) -> FineTuningJob:
        """Retrieve the session's job and save its status."""
        return run_steps(self._job_steps(self.jobs.retrieve), _call)

    def wait(
        self,
        *,
        timeout: float | None = None,
        on_update: Callable[[JobUpdate], Any] | None = None,
    ) -> FineTuningJob:
        """Follow the session's job until it ends; save the tuned model and its checkpoints.

        Raises:
            JobFailedError: The job failed (with the offending training line when it names one).
            JobCancelledError: The job was cancelled.
            JobTimeoutError: ``timeout`` elapsed first; the job goes on.
        """
        return run_steps(self._wait_steps(timeout, on_update), _call)

    def follow(self, *, timeout: float | None = None) -> Iterator[JobUpdate]:
        """Yield the session's job updates (events, metrics, status changes) until it ends."""
        job_id = self._job_id(None)
        try:
            yield from self.jobs.follow(job_id, timeout=timeout)
        finally:
            run_steps(self._refresh_steps(job_id), _call)

    def cancel(self) -> FineTuningJob:
        """Cancel the session's job."""
        return run_steps(self._job_steps(self.jobs.cancel), _call)

    def pause(self) -> FineTuningJob:
        """Pause the session's job (where the backend supports it)."""
        return run_steps(self._job_steps(self.jobs.pause), _call)

    def resume_job(self) -> FineTuningJob:
        """Resume the session's paused job."""
        return run_steps(self._job_steps(self.jobs.resume), _call)

    def checkpoints(self) -> list[Any]:
        """The job's checkpoints, newest first (also saved in the state)."""
        return run_steps(self._checkpoints_steps(), _call)

    def metrics(self) -> MetricSeries:
        """The job's per-step metrics: from its result file once it has one, else its events."""
        return run_steps(self._metrics_steps(), _call)

    # ------------------------------------------------------------------ using the model

    def chat(
        self,
        messages: Any,
        *,
        model: str | None = None,
        checkpoint: int | str | None = None,
        base: bool = False,
        system: str | None = None,
        **params: Any,
    ) -> ChatReply:
        """Chat with the tuned model (default), one of its checkpoints, or the base model.

        Args:
            messages: The user's text, or a list of message dicts.
            model: Any model name (overrides the choice below).
            checkpoint: A checkpoint's step number or model name.
            base: Ask the base model instead.
            system: A system message to put first.
            **params: Chat parameters (``max_tokens``, ``temperature``...).

        Returns:
            The reply (text, tokens, latency).
        """
        steps = self._chat_steps(
            messages, model=model, checkpoint=checkpoint, base=base, system=system, params=params
        )
        return run_steps(steps, _call)

    def compare(
        self,
        prompts: Any,
        *,
        system: str | None = None,
        base_model: str | None = None,
        **params: Any,
    ) -> Comparison:
        """Ask the base and the tuned model the same prompts, side by side.

        Args:
            prompts: A prompt, or prompts (strings or message lists).
            system: A system message to put first.
            base_model: The model to compare with (default: the base the job trained; on Azure,
                pass the base model's deployment name).
            **params: Chat parameters.

        Returns:
            The comparison (prints as a table; HTML in notebooks).
        """
        steps = self._compare_steps(prompts, system=system, base_model=base_model, params=params)
        return run_steps(steps, _call)

    def evaluate(
        self,
        examples: Iterable[Any],
        scorers: Any = None,
        *,
        base_model: str | None = None,
        **options: Any,
    ) -> PairedEvaluationReport:
        """Score base and tuned model on held-out examples: flips and a bootstrap interval.

        Args:
            examples: A ``Dataset``, chat examples, or ``(prompt, reference)`` pairs.
            scorers: Scorers (default: exact match).
            base_model: The model to compare with (as in :meth:`compare`).
            **options: More :meth:`~finetune_kit.inference.InferenceClient.evaluate_pair` options.

        Returns:
            The paired report.
        """
        steps = self._evaluate_steps(examples, scorers, base_model=base_model, options=options)
        return run_steps(steps, _call)

    def deploy(
        self,
        deployer: AzureDeployer,
        deployment_name: str,
        *,
        checkpoint: int | str | None = None,
        sku: str = "standard",
        capacity: int = 1,
    ) -> AzureDeployment:
        """Deploy the tuned model (or a checkpoint) on Azure; chat and compare then use it.

        On Azure a fine-tuned model answers only once deployed. The deployment's name is saved
        in the state, and the session's inference calls address it from then on.

        Args:
            deployer: An :class:`~finetune_kit.azure.deployer.AzureDeployer` for the resource
                (subscription, resource group, account and ARM credentials).
            deployment_name: The deployment's name.
            checkpoint: Deploy this checkpoint (step number or name) instead of the final model.
            sku: ``"standard"``, ``"globalstandard"``, ``"developertier"``... (see
                docs/azure.md for the hosting fees and the Developer tier's 24-hour expiry).
            capacity: The deployment's capacity.

        Returns:
            The deployment, provisioned.
        """
        steps = self._deploy_steps(
            deployer, deployment_name, checkpoint=checkpoint, sku=sku, capacity=capacity
        )
        return run_steps(steps, _call)

    def export(self, folder: str | os.PathLike[str], *, weights: Sequence[str] = ()) -> Path:
        """Download the job's files, results, events, checkpoints and metadata into ``folder``.

        Also writes ``session.json`` (the state, which holds no secret).

        Args:
            folder: Where to write (created when missing).
            weights: Also the tuned model's weights, in any of ``adapter`` (a peft folder),
                ``hf`` (a merged Hugging Face folder) and ``gguf`` (llama.cpp and Ollama
                files), each into ``folder/weights/<format>/``. Only the local backend offers
                weights; OpenAI and Azure OpenAI are refused before anything is downloaded.

        Raises:
            ConfigurationError: Weights asked of a backend that keeps them, or an unknown form.
        """
        return run_steps(self._export_steps(folder, weights), _call)


class AsyncFineTuneSession(_SessionCore[openai.AsyncOpenAI]):
    """The async twin of :class:`FineTuneSession`: the same steps, awaited.

    Takes the same arguments (``backend`` may be an ``openai.AsyncOpenAI`` client); its parts
    are :class:`~finetune_kit.files.AsyncFileUploader`, :class:`~finetune_kit.jobs.AsyncJobManager`
    and :class:`~finetune_kit.inference.AsyncInferenceClient`.

    Examples:
        ```python
        async with AsyncFineTuneSession("local", model="gpt-4o-mini") as session:
            await session.upload("train.jsonl")
            job = await session.train()
            print(await session.compare(["Tell me about Argon"]))
        ```
    """

    _async = True
    _uploader_class = AsyncFileUploader
    _manager_class = AsyncJobManager
    _inference_class = AsyncInferenceClient
    _check_model_shutdown = staticmethod(acheck_shutdown)
    _export_job = staticmethod(aexport_job)

    files: AsyncFileUploader
    jobs: AsyncJobManager
    inference: AsyncInferenceClient

    @classmethod
    def resume(cls, path: str | os.PathLike[str], **options: Any) -> AsyncFineTuneSession:
        """Carry on a session from its state file (see :meth:`FineTuneSession.resume`)."""
        return cls(**cls._resume_arguments(path, options))

    async def aclose(self) -> None:
        """Close the client this session made and stop the local backend it started.

        A client passed in as ``backend`` is left open, as :meth:`FineTuneSession.close` does.
        """
        if self._owns_client:
            await self.client.close()
        self._stop_local_backend()

    async def __aenter__(self) -> AsyncFineTuneSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def preflight(self, data: Any, *, validation: Any = None, **options: Any) -> PreflightReport:
        """Check training data, not awaited; see the sync twin.

        On the local backend its token counts are blocking requests to the server.
        """
        return self._preflight(data, validation, options)

    async def upload(
        self, data: Any, *, validation: Any = None, force: bool = False
    ) -> UploadedFile:
        """Preflight and upload training (and validation) data, once per content."""
        return await arun_steps(self._upload_steps(data, validation, force), _acall)

    async def train(
        self,
        *,
        method: Any = None,
        hyperparameters: Mapping[str, Any] | None = None,
        n_epochs: int | str | None = None,
        batch_size: int | str | None = None,
        learning_rate_multiplier: float | str | None = None,
        suffix: str | None = None,
        seed: int | None = None,
        metadata: Mapping[str, str] | None = None,
        wandb: Any = None,
        follow: bool = True,
        timeout: float | None = None,
        on_update: Callable[[JobUpdate], Any] | None = None,
        restart: bool = False,
        training_type: TrainingType | None = None,
        training_type_wire: str | None = None,
    ) -> FineTuningJob:
        """Create the fine-tuning job (once) and, by default, follow it to the end."""
        steps = self._train_steps(
            method=method,
            hyperparameters=hyperparameters,
            n_epochs=n_epochs,
            batch_size=batch_size,
            learning_rate_multiplier=learning_rate_multiplier,
            suffix=suffix,
            seed=seed,
            metadata=metadata,
            wandb=wandb,
            follow=follow,
            timeout=timeout,
            on_update=on_update,
            restart=restart,
            training_type=training_type,
            training_type_wire=training_type_wire,
        )
        return await arun_steps(steps, _acall)

    async def attach(self, job_id: str) -> FineTuningJob:
        """Make an existing job this session's job (see :meth:`FineTuneSession.attach`)."""
        return await arun_steps(self._attach_steps(job_id), _acall)

    async def status(self) -> FineTuningJob:
        """Retrieve the session's job and save its status."""
        return await arun_steps(self._job_steps(self.jobs.retrieve), _acall)

    async def wait(
        self,
        *,
        timeout: float | None = None,
        on_update: Callable[[JobUpdate], Any] | None = None,
    ) -> FineTuningJob:
        """Follow the session's job until it ends; save the tuned model and its checkpoints."""
        return await arun_steps(self._wait_steps(timeout, on_update), _acall)

    async def follow(self, *, timeout: float | None = None) -> AsyncIterator[JobUpdate]:
        """Yield the session's job updates until it ends."""
        job_id = self._job_id(None)
        try:
            async for update in self.jobs.follow(job_id, timeout=timeout):
                yield update
        finally:
            await arun_steps(self._refresh_steps(job_id), _acall)

    async def cancel(self) -> FineTuningJob:
        """Cancel the session's job."""
        return await arun_steps(self._job_steps(self.jobs.cancel), _acall)

    async def pause(self) -> FineTuningJob:
        """Pause the session's job."""
        return await arun_steps(self._job_steps(self.jobs.pause), _acall)

    async def resume_job(self) -> FineTuningJob:
        """Resume the session's paused job."""
        return await arun_steps(self._job_steps(self.jobs.resume), _acall)

    async def checkpoints(self) -> list[Any]:
        """The job's checkpoints, newest first (also saved in the state)."""
        return await arun_steps(self._checkpoints_steps(), _acall)

    async def metrics(self) -> MetricSeries:
        """The job's per-step metrics: from its result file once it has one, else its events."""
        return await arun_steps(self._metrics_steps(), _acall)

    async def chat(
        self,
        messages: Any,
        *,
        model: str | None = None,
        checkpoint: int | str | None = None,
        base: bool = False,
        system: str | None = None,
        **params: Any,
    ) -> ChatReply:
        """Chat with the tuned model (default), one of its checkpoints, or the base model."""
        steps = self._chat_steps(
            messages, model=model, checkpoint=checkpoint, base=base, system=system, params=params
        )
        return await arun_steps(steps, _acall)

    async def compare(
        self,
        prompts: Any,
        *,
        system: str | None = None,
        base_model: str | None = None,
        **params: Any,
    ) -> Comparison:
        """Ask the base and the tuned model the same prompts, side by side."""
        steps = self._compare_steps(prompts, system=system, base_model=base_model, params=params)
        return await arun_steps(steps, _acall)

    async def evaluate(
        self,
        examples: Iterable[Any],
        scorers: Any = None,
        *,
        base_model: str | None = None,
        **options: Any,
    ) -> PairedEvaluationReport:
        """Score base and tuned model on held-out examples: flips and a bootstrap interval."""
        steps = self._evaluate_steps(examples, scorers, base_model=base_model, options=options)
        return await arun_steps(steps, _acall)

    async def deploy(
        self,
        deployer: AsyncAzureDeployer,
        deployment_name: str,
        *,
        checkpoint: int | str | None = None,
        sku: str = "standard",
        capacity: int = 1,
    ) -> AzureDeployment:
        """Deploy the tuned model or a checkpoint on Azure (see :meth:`FineTuneSession.deploy`)."""
        steps = self._deploy_steps(
            deployer, deployment_name, checkpoint=checkpoint, sku=sku, capacity=capacity
        )
        return await arun_steps(steps, _acall)

    async def export(self, folder: str | os.PathLike[str], *, weights: Sequence[str] = ()) -> Path:
        """Download the job's artifacts into ``folder`` (see :meth:`FineTuneSession.export`)."""
        return await arun_steps(self._export_steps(folder, weights), _acall)
