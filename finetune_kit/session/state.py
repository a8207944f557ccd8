"""The saved state of a fine-tuning session: what was created remotely, so nothing is redone.

The state file is JSON, written atomically (a temporary file, fsync, then rename) after every
step that creates something remote, so a crash or a kernel restart between two steps leaves the
last complete state on disk. It never holds a secret: there is no field for one, and a base URL
carrying credentials (``https://user:pass@host``) is refused.

Examples:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.json"
    >>> state = SessionState(backend="local", base_model="gpt-4o-mini")
    >>> state.training_file_id = "file-abc"
    >>> state.save(path)
    >>> SessionState.load(path).training_file_id
    'file-abc'
"""

from __future__ import annotations

import html
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import SessionError
from ..jobs.views import CheckpointRecord

__all__ = ["STATE_VERSION", "CheckpointRecord", "SessionState"]

STATE_VERSION = 1
"""Version of the state file's layout; a file from a newer version is refused."""

BackendName = Literal["openai", "azure", "local", "custom"]


class SessionState(BaseModel):
    """Everything a session needs to carry on after a restart, and nothing secret.

    Attributes:
        backend: Which kind of backend the session talks to.
        base_url: The API base URL, for ``custom`` and ``local`` backends (never with credentials).
        azure_endpoint: The Azure resource endpoint, for the ``azure`` backend.
        azure_api_version: The Azure API version, for the ``azure`` backend.
        local_data_dir: Where the local backend keeps its files and jobs, for ``local``.
        local_model: The local backend's base model (what OpenAI names map to), for ``local``:
            a later session trains the same one, never the backend's default of the day.
        base_model: The model to fine-tune, as the user named it.
        method: ``supervised``, ``dpo`` or ``reinforcement``.
        dataset_sha256: sha256 of the training JSONL bytes last uploaded.
        validation_sha256: sha256 of the validation JSONL bytes last uploaded.
        training_file_id: The uploaded training file.
        validation_file_id: The uploaded validation file.
        job_key: The idempotency key sent in the job's metadata.
        job_parameters: What the job was asked for (method, hyperparameters, suffix, seed), so
            training again with other parameters is refused instead of ignored.
        job_id: The fine-tuning job.
        job_status: The job's last status seen.
        trained_base_model: The base model the job reports it really trained (an alias
            resolved, a snapshot pinned): the one to compare the tuned model with.
        fine_tuned_model: The tuned model's name once the job succeeded.
        checkpoints: The job's checkpoints, newest first.
        deployment: The Azure deployment name, once deployed.
        deployed_model: The model that deployment holds (a ``.ft-`` or ``ftchkpt-`` id): chat
            addresses the deployment when asked for it.
        created_at: When the state was first saved (unix seconds).
        updated_at: When it was last saved (unix seconds).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    version: int = STATE_VERSION
    backend: BackendName = "openai"
    base_url: str | None = None
    azure_endpoint: str | None = None
    azure_api_version: str | None = None
    local_data_dir: str | None = None
    local_model: str | None = None
    base_model: str | None = None
    method: str | None = None
    dataset_sha256: str | None = None
    validation_sha256: str | None = None
    training_file_id: str | None = None
    validation_file_id: str | None = None
    job_key: str | None = None
    job_parameters: dict[str, Any] | None = None
    job_id: str | None = None
    job_status: str | None = None
    trained_base_model: str | None = None
    fine_tuned_model: str | None = None
    checkpoints: list[CheckpointRecord] = Field(default_factory=list)
    deployment: str | None = None
    deployed_model: str | None = None
    created_at: float | None = None
    updated_at: float | None = None

    @property
    def uses_openai_dates(self) -> bool:
        """Whether the model table's shutdown dates, which are OpenAI's, apply to this backend.

        On Azure, the local backend or any other server speaking the API, a model retires on
        that server's schedule (a vLLM server keeps serving "gpt-4o-mini" as long as it likes):
        only the API's ``shutdown_date`` tells, so the code that only changed its base URL
        keeps working after OpenAI's dates.

        Examples:
            >>> SessionState(backend="openai").uses_openai_dates
            True
            >>> SessionState(backend="custom", base_url="http://127.0.0.1:8000/v1").uses_openai_dates
            False
        """
        if self.backend == "openai":
            return True
        return self.backend == "custom" and urlsplit(self.base_url or "").hostname == (
            "api.openai.com"
        )

    @field_validator("base_url", "azure_endpoint")
    @classmethod
    def _no_credentials_in_urls(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.username or parts.password:
                raise ValueError(
                    "a URL with credentials in it cannot be saved; pass the key separately"
                )
        return value

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > STATE_VERSION:
            raise ValueError(
                f"state version {value} is newer than this finetune_kit understands "
                f"({STATE_VERSION}); upgrade finetune_kit"
            )
        return value

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SessionState:
        """Read a state file.

        Raises:
            SessionError: The file is missing, is not JSON, or does not match the layout.
        """
        where = os.fspath(path)
        try:
            raw = Path(where).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise SessionError(
                f"no session state at {where}; start a new session with FineTuneSession(...)",
                path=where,
            ) from exc
        try:
            return cls.model_validate(json.loads(raw))
        except json.JSONDecodeError as exc:
            problem = f"not JSON: {exc.msg} at line {exc.lineno}"
        except ValidationError as exc:
            # Name the fields only: pydantic's own text quotes the input, which could be a secret
            # someone pasted into the file by hand.
            problem = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
                for err in exc.errors()
            )
        raise SessionError(
            f"{where} is not a valid session state file ({problem}); "
            "fix or delete it, or pass another path",
            path=where,
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state atomically: readers see the old file or the new one, never half.

        Raises:
            SessionError: The file cannot be written.
        """
        target = Path(path)
        now = time.time()
        if self.created_at is None:
            self.created_at = now
        self.updated_at = now
        payload = self.model_dump_json(indent=2, exclude_none=True) + "\n"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(payload)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise SessionError(
                f"cannot write session state to {target}: {exc}", path=str(target)
            ) from exc

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(key)}</th>"
            f"<td style='text-align:left'><code>{html.escape(str(value))}</code></td></tr>"
            for key, value in self.model_dump(exclude_none=True).items()
            if key not in {"version", "created_at", "updated_at"} and value not in ([], {})
        )
        return f"<table><caption>finetune_kit session</caption>{rows}</table>"
