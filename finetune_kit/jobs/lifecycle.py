"""Model lifecycle: warn before a base model shuts down, and export a job before it is too late.

A fine-tuned model works only as long as its base snapshot (reference §0): when the base shuts
down, every fine-tune built on it stops the same day. :func:`check_shutdown` looks the date up in
the model table (:mod:`finetune_kit.data.base_models`) and, when the API returns one, in
``Model.shutdown_date``, and warns with :class:`~finetune_kit.errors.ModelShutdownWarning` when
the date is near or past. :func:`check_new_jobs_allowed` warns about OpenAI's end of new
fine-tuning jobs. :func:`export_job` copies everything a job produced into a folder, so nothing
is lost when a platform closes.

Examples:
    >>> import datetime, warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     day = check_shutdown("gpt-4.1-nano", today=datetime.date(2026, 9, 1))
    >>> day, caught[0].category.__name__
    (datetime.date(2026, 10, 23), 'ModelShutdownWarning')
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._retry import (
    DEFAULT_RETRY_POLICY,
    RetryPolicy,
    aiter_items,
    iter_items,
    without_client_retries,
)
from ..data.base_models import get_model_info, resolve_model_name
from ..errors import ConfigurationError, ModelShutdownWarning
from .metrics import decode_result_file
from .weights import adownload_weights, check_weights_request, download_weights

__all__ = [
    "OPENAI_NEW_JOBS_END",
    "SHUTDOWN_WARNING_DAYS",
    "acheck_shutdown",
    "aexport_job",
    "check_new_jobs_allowed",
    "check_shutdown",
    "export_job",
]

logger = logging.getLogger("finetune_kit.lifecycle")

SHUTDOWN_WARNING_DAYS = 90
"""Warn this many days ahead of a shutdown date."""

OPENAI_NEW_JOBS_END = dt.date(2027, 1, 6)
"""OpenAI takes no new fine-tuning jobs from this day (reference §0)."""


def _parse_shutdown_date(remote: Any, model: str) -> dt.date | None:
    raw = getattr(remote, "shutdown_date", None)
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(str(raw)[:10])
    except ValueError:
        logger.debug("unparsable shutdown_date %r for %s", raw, model)
        return None


def _lookup_failed(model: str, exc: Exception) -> None:
    # A lifecycle check must never stop the work it guards: fall back to the table.
    logger.debug("models.retrieve(%s) failed, using the model table only: %s", model, exc)


def _api_shutdown_date(client: Any, model: str, policy: RetryPolicy) -> dt.date | None:
    """``Model.shutdown_date`` from the API, or ``None`` when it gives none or cannot say."""
    try:
        remote = policy.call(lambda: without_client_retries(client).models.retrieve(model))
    except Exception as exc:
        _lookup_failed(model, exc)
        return None
    return _parse_shutdown_date(remote, model)


async def _aapi_shutdown_date(client: Any, model: str, policy: RetryPolicy) -> dt.date | None:
    """The async twin of :func:`_api_shutdown_date` (an ``openai.AsyncOpenAI`` client)."""
    try:
        remote = await policy.acall(without_client_retries(client).models.retrieve, model)
    except Exception as exc:
        _lookup_failed(model, exc)
        return None
    return _parse_shutdown_date(remote, model)


def _table_date(model: str, use_table: bool) -> dt.date | None:
    info = get_model_info(model) if use_table else None
    return info.shutdown_date if info is not None else None


def _warn_about(
    model: str, dates: list[dt.date | None], today: dt.date | None, within_days: int
) -> dt.date | None:
    known = [day for day in dates if day is not None]
    if not known:
        return None
    day = min(known)
    now = today or dt.datetime.now(dt.timezone.utc).date()
    base = resolve_model_name(model)
    # stacklevel 3: the warning points at the caller of check_shutdown, not at this helper.
    if day <= now:
        warnings.warn(
            f"{base} was shut down on {day.isoformat()}: it and every fine-tune built on it "
            "no longer work; pick a current base model (and export what you need with "
            "finetune_kit.export_job)",
            ModelShutdownWarning,
            stacklevel=3,
        )
    elif (day - now).days <= within_days:
        warnings.warn(
            f"{base} shuts down on {day.isoformat()} ({(day - now).days} days from now); "
            "fine-tunes built on it stop working that day",
            ModelShutdownWarning,
            stacklevel=3,
        )
    return day


def check_shutdown(
    model: str,
    *,
    client: Any = None,
    use_table: bool = True,
    policy: RetryPolicy | None = None,
    today: dt.date | None = None,
    within_days: int = SHUTDOWN_WARNING_DAYS,
) -> dt.date | None:
    """Warn when ``model``'s base snapshot shuts down within ``within_days`` or already has.

    Args:
        model: A base model, a fine-tuned model (``ft:...``) or a checkpoint name.
        client: An ``openai`` client; when given, the API's ``shutdown_date`` is read too and the
            earlier of the two dates wins. A failed lookup is logged at DEBUG and ignored.
        use_table: Consult finetune_kit's model table. Turn it off for backends whose models
            share OpenAI's names but not their lifecycle (the local backend maps OpenAI names to
            its own models; Azure OpenAI retires models on its own schedule).
        policy: The retry policy for the API call.
        today: The date to compare with (default: today, UTC).
        within_days: How far ahead to warn.

    Returns:
        The shutdown date, or ``None`` when none is known.
    """
    dates = [_table_date(model, use_table)]
    if client is not None:
        dates.append(_api_shutdown_date(client, model, policy or DEFAULT_RETRY_POLICY))
    return _warn_about(model, dates, today, within_days)


async def acheck_shutdown(
    model: str,
    *,
    client: Any = None,
    use_table: bool = True,
    policy: RetryPolicy | None = None,
    today: dt.date | None = None,
    within_days: int = SHUTDOWN_WARNING_DAYS,
) -> dt.date | None:
    """Warn when ``model``'s base snapshot shuts down soon: :func:`check_shutdown`, awaited.

    Args:
        model: A base model, a fine-tuned model (``ft:...``) or a checkpoint name.
        client: An ``openai.AsyncOpenAI`` client; when given, the API's ``shutdown_date`` is
            read too and the earlier date wins. A failed lookup is logged at DEBUG and ignored.
        use_table: Consult finetune_kit's model table (OpenAI's dates).
        policy: The retry policy for the API call.
        today: The date to compare with (default: today, UTC).
        within_days: How far ahead to warn.

    Returns:
        The shutdown date, or ``None`` when none is known.

    Examples:
        >>> import asyncio, datetime as dt
        >>> asyncio.run(acheck_shutdown("my-own-model", today=dt.date(2026, 12, 1))) is None
        True
    """
    dates = [_table_date(model, use_table)]
    if client is not None:
        dates.append(await _aapi_shutdown_date(client, model, policy or DEFAULT_RETRY_POLICY))
    return _warn_about(model, dates, today, within_days)


def check_new_jobs_allowed(
    base_url: str | None, *, today: dt.date | None = None, within_days: int = SHUTDOWN_WARNING_DAYS
) -> None:
    """Warn when a job is about to be created on OpenAI near or after its end of new jobs.

    Only ``api.openai.com`` is concerned: Azure OpenAI, the local backend and other servers
    carry on.

    Args:
        base_url: The client's base URL.
        today: The date to compare with (default: today, UTC).
        within_days: How far ahead to warn.
    """
    if not base_url or "api.openai.com" not in base_url:
        return
    now = today or dt.datetime.now(dt.timezone.utc).date()
    left = (OPENAI_NEW_JOBS_END - now).days
    if left <= within_days:
        when = "since" if left <= 0 else "from"
        warnings.warn(
            f"OpenAI takes no new fine-tuning jobs {when} {OPENAI_NEW_JOBS_END.isoformat()}; "
            "the same code runs on Azure OpenAI or the local backend by changing the backend",
            ModelShutdownWarning,
            stacklevel=2,
        )


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _files_of(job: Any) -> dict[str, str]:
    """The job's files worth keeping, by the name they get in the export."""
    wanted = {
        "training.jsonl": job.training_file,
        "validation.jsonl": job.validation_file,
        "results.csv": (job.result_files or [None])[0],
    }
    return {name: file_id for name, file_id in wanted.items() if file_id}


def _write_export(
    out: Path,
    job: Any,
    events_newest_first: list[Any],
    checkpoints: list[Any],
    contents: dict[str, bytes | None],
) -> Path:
    """Write what was downloaded; ``None`` content means the backend no longer has the file."""
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "job.json", job.model_dump(mode="json"))
    with open(out / "events.jsonl", "w", encoding="utf-8") as handle:
        for event in reversed(events_newest_first):
            handle.write(json.dumps(event.model_dump(mode="json"), ensure_ascii=False) + "\n")
    _write_json(out / "checkpoints.json", [c.model_dump(mode="json") for c in checkpoints])
    files = _files_of(job)
    missing = {name: files[name] for name, content in contents.items() if content is None}
    for name, content in contents.items():
        if content is None:
            continue
        if name == "results.csv":
            content = decode_result_file(content).encode("utf-8")
        (out / name).write_bytes(content)
    if missing:
        _write_json(out / "missing.json", missing)
    logger.debug(
        "exported %s to %s (%d events, %d checkpoints)",
        job.id,
        out,
        len(events_newest_first),
        len(checkpoints),
    )
    return out


def _weights_of(job: Any, formats: Sequence[str]) -> str | None:
    """The model whose weights to download with the export, once the job is read."""
    if not formats:
        return None
    if not job.fine_tuned_model:
        raise ConfigurationError(
            f"job {job.id} has no fine-tuned model yet ({job.status}): its weights exist once "
            "it succeeds",
            param="weights",
        )
    return str(job.fine_tuned_model)


def export_job(
    client: Any,
    job_id: str,
    folder: str | os.PathLike[str],
    *,
    policy: RetryPolicy | None = None,
    weights: Sequence[str] = (),
) -> Path:
    """Download everything a job produced into ``folder``.

    Writes ``job.json`` (the job object, metadata included), ``events.jsonl`` (in time order),
    ``checkpoints.json``, ``training.jsonl`` and ``validation.jsonl`` (when the files still exist)
    and ``results.csv`` (base64-decoded when needed). A file the backend no longer has is listed
    in ``missing.json`` instead of stopping the export.

    Args:
        client: An ``openai.OpenAI`` client.
        job_id: The job to export.
        folder: The folder to write (created when missing).
        policy: The retry policy for every request.
        weights: Also the tuned model's weights, into ``folder/weights/<format>/``
            (``download_weights``; the local backend alone offers them).

    Returns:
        The folder.

    Raises:
        ConfigurationError: Weights asked of a backend that keeps them, in an unknown form,
            or of a job without a fine-tuned model (before anything is written).
    """
    import openai

    formats = check_weights_request(str(client.base_url), weights) if weights else []
    policy = policy or DEFAULT_RETRY_POLICY
    client = without_client_retries(client)
    jobs = client.fine_tuning.jobs
    job = policy.call(jobs.retrieve, job_id)
    model = _weights_of(job, formats)
    events = list(iter_items(policy, lambda: jobs.list_events(job_id, limit=100)))
    checkpoints = list(iter_items(policy, lambda: jobs.checkpoints.list(job_id, limit=100)))
    contents: dict[str, bytes | None] = {}
    for name, file_id in _files_of(job).items():
        try:
            contents[name] = policy.call(lambda fid=file_id: client.files.content(fid).read())
        except openai.NotFoundError:
            contents[name] = None
    out = _write_export(Path(folder), job, events, checkpoints, contents)
    if model is not None:
        download_weights(client, model, out / "weights", formats=formats, policy=policy)
    return out


async def aexport_job(
    client: Any,
    job_id: str,
    folder: str | os.PathLike[str],
    *,
    policy: RetryPolicy | None = None,
    weights: Sequence[str] = (),
) -> Path:
    """The async twin of :func:`export_job` (an ``openai.AsyncOpenAI`` client)."""
    import openai

    formats = check_weights_request(str(client.base_url), weights) if weights else []
    policy = policy or DEFAULT_RETRY_POLICY
    client = without_client_retries(client)
    jobs = client.fine_tuning.jobs
    job = await policy.acall(jobs.retrieve, job_id)
    model = _weights_of(job, formats)
    events = [e async for e in aiter_items(policy, lambda: jobs.list_events(job_id, limit=100))]
    checkpoints = [
        c async for c in aiter_items(policy, lambda: jobs.checkpoints.list(job_id, limit=100))
    ]
    contents: dict[str, bytes | None] = {}
    for name, file_id in _files_of(job).items():
        try:
            response = await policy.acall(client.files.content, file_id)
            contents[name] = await response.aread()
        except openai.NotFoundError:
            contents[name] = None
    out = _write_export(Path(folder), job, events, checkpoints, contents)
    if model is not None:
        await adownload_weights(client, model, out / "weights", formats=formats, policy=policy)
    return out
