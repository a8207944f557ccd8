"""The ``finetune-kit`` command: the whole workflow from a terminal or a script.

Every command works on a session state file (``--state``, default
``finetune_kit_session.json``), so ``upload``, ``train``, ``status`` and ``chat`` run as separate
processes carry on from each other. ``--json`` prints one JSON document for scripts. Exit codes:

| code | meaning |
|---|---|
| 0 | success |
| 1 | an error finetune_kit could not classify further |
| 2 | bad usage (unknown option, bad parameter value, a step before its prerequisite) |
| 3 | the data has errors (preflight, JSONL decoding, record validation) |
| 4 | the job failed |
| 5 | the job was cancelled |
| 6 | waiting timed out (the job goes on) |
| 7 | the API refused a request (authentication, not found, bad request...) |
| 130 | interrupted (Ctrl-C); a job being followed keeps running |
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ._interface import command, running_command
from ._version import __version__
from .errors import (
    ConfigurationError,
    DataError,
    FinetuneKitError,
    FineTuningUnavailableError,
    JobCancelledError,
    JobFailedError,
    JobTimeoutError,
    SessionError,
)

__all__ = ["EXIT_CODES", "build_parser", "help_commands", "help_text", "main"]

EXIT_CODES = {
    "ok": 0,
    "error": 1,
    "usage": 2,
    "data": 3,
    "job_failed": 4,
    "job_cancelled": 5,
    "timeout": 6,
    "api": 7,
    "interrupted": 130,
}

_DEFAULT_STATE = "finetune_kit_session.json"
_BACKEND_ENV = "FINETUNE_KIT_BACKEND"

Handler = Callable[[argparse.Namespace], Any]


class _Output:
    """Prints for people, or one JSON document for scripts."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def result(self, value: Any, text: str | None = None) -> None:
        if self.as_json:
            print(json.dumps(_jsonable(value), indent=2, ensure_ascii=False, default=str))
        elif text is not None:
            print(text)

    def note(self, message: str) -> None:
        # Progress notes go to stderr, so stdout stays the result (and valid JSON with --json).
        print(message, file=sys.stderr)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------- sessions


def _session(args: argparse.Namespace, *, model: str | None = None) -> Any:
    """Open the session the state file names, or a new one for ``--backend``."""
    from .session import FineTuneSession

    path = Path(args.state)
    # A bar only on a terminal (None): a piped stderr would get a line per redraw.
    options: dict[str, Any] = {"progress": False if args.json or args.quiet else None}
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise ConfigurationError(
                f"--api-key-env names {args.api_key_env}, which is not set", param="--api-key-env"
            )
        options["api_key"] = key
    if args.local_model:
        options["local_model"] = args.local_model
    if args.local_data_dir:
        options["local_data_dir"] = args.local_data_dir
    if path.exists():
        from .session import SessionState

        state = SessionState.load(path)
        if args.backend and not _same_backend(args.backend, state):
            raise ConfigurationError(
                f"{path} belongs to a session on the {state.backend!r} backend; pass another "
                "--state file for a new session",
                param="--backend",
            )
        if args.base_url:
            options["base_url"] = args.base_url
        # The model goes through the session's own check: a saved session keeps its model.
        return FineTuneSession.resume(path, model=model, **options)
    backend = args.backend or os.environ.get(_BACKEND_ENV) or "openai"
    return FineTuneSession(backend, base_url=args.base_url, model=model, state_path=path, **options)


def _same_backend(backend: str, state: Any) -> bool:
    """Whether ``--backend`` names the state's backend: its kind, or its URL."""
    from ._urls import comparable_url
    from .backends import backend_kind

    if backend == state.backend:
        return True
    # The state keeps the client's URL, which has the trailing slash the client adds.
    return bool(
        backend_kind(backend) == "custom"
        and state.base_url
        and comparable_url(backend) == comparable_url(state.base_url)
    )


def _job_view(job: Any) -> str:
    lines = [f"job {job.id}: {job.status}", f"  model: {job.model}"]
    if job.fine_tuned_model:
        lines.append(f"  fine-tuned model: {job.fine_tuned_model}")
    if job.trained_tokens:
        lines.append(f"  trained tokens: {job.trained_tokens}")
    if job.error is not None and job.error.message:
        lines.append(f"  error: {job.error.code}: {job.error.message}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- commands


def _cmd_preflight(args: argparse.Namespace, out: _Output) -> int:
    from .data import autofix, preflight

    data: Any = Path(args.file)
    if args.fix:
        # The fixed rows are written as they are (a row autofix cannot fix must not stop the
        # others from being written), and the report is of them, named by the lines of the file.
        data = autofix(data, system_prompt=args.system_prompt)
        data.to_jsonl(args.fix)
        out.note(
            f"wrote {args.fix} ({len(data.changes)} change(s)); the report is of the fixed "
            f"data, its line numbers those of {args.file}"
        )
    from .backends import backend_kind

    validation = Path(args.validation) if args.validation else None
    state = _saved_state(args)
    backend = None if state is not None else args.backend or os.environ.get(_BACKEND_ENV)
    if state is not None:
        local = state.backend == "local"
    else:
        local = backend is not None and backend_kind(backend) == "local"
    if args.model is None and local:
        # The session's local backend counts tokens with its base model's own tokenizer, as
        # its trainer does; a `local serve` running for the folder answers at once.
        session = _session(args)
        try:
            report = session.preflight(data, validation=validation, as_of=args.as_of)
        finally:
            session.close()
    else:
        # The model named, else the session's; never one the user did not choose (a default
        # model would refuse every file from its shutdown day). None: the data alone.
        model = args.model if args.model is not None else state.base_model if state else None
        report = preflight(
            data,
            validation=validation,
            model=None if model == "none" else model,
            as_of=args.as_of,
            shutdown_dates=_uses_openai_dates(state, backend),
        )
    out.result(report.to_dict(), report.summary())
    return EXIT_CODES["ok"] if report.ok else EXIT_CODES["data"]


def _saved_state(args: argparse.Namespace) -> Any:
    """The session state ``--state`` names, if the file exists (read only: nothing starts)."""
    from .session import SessionState

    path = Path(args.state)
    return SessionState.load(path) if path.exists() else None


def _uses_openai_dates(state: Any, backend: str | None) -> bool:
    """Whether the model table's (OpenAI's) shutdown dates apply to the session's backend."""
    if state is not None:
        return bool(state.uses_openai_dates)
    if backend is None:
        return True  # no backend named: a model named alone is OpenAI's
    from ._urls import comparable_url
    from .backends import backend_kind

    kind = backend_kind(backend)
    return kind == "openai" or (
        kind == "custom" and comparable_url(backend).startswith("https://api.openai.com")
    )


def _cmd_build(args: argparse.Namespace, out: _Output) -> int:
    from .data import build_dataset

    options: dict[str, Any] = {"user": args.user, "assistant": args.assistant}
    if args.system:
        options["system"] = args.system
    dataset = build_dataset("template", Path(args.source), **options)
    written = {"training": str(args.output), "examples": len(dataset)}
    if args.validation_split:
        training, validation = dataset.split(validation=args.validation_split, seed=args.seed)
        training.to_jsonl(args.output)
        target = args.validation_output or str(Path(args.output).with_suffix(".validation.jsonl"))
        validation.to_jsonl(target)
        written.update(
            examples=len(training), validation=target, validation_examples=len(validation)
        )
    else:
        dataset.to_jsonl(args.output)
    text = f"wrote {written['examples']} example(s) to {args.output}"
    if "validation" in written:
        text += f" and {written['validation_examples']} to {written['validation']}"
    out.result(written, text)
    return EXIT_CODES["ok"]


def _cmd_upload(args: argparse.Namespace, out: _Output) -> int:
    session = _session(args, model=args.model)
    try:
        uploaded = session.upload(
            Path(args.file),
            validation=Path(args.validation) if args.validation else None,
            force=args.force,
        )
        state = session.state
        out.result(
            {
                "training_file": uploaded.id,
                "validation_file": state.validation_file_id,
                "reused": uploaded.reused,
            },
            f"training file: {uploaded.id}{' (already uploaded)' if uploaded.reused else ''}"
            + (
                f"\nvalidation file: {state.validation_file_id}" if state.validation_file_id else ""
            ),
        )
    finally:
        session.close()
    return EXIT_CODES["ok"]


def _cmd_train(args: argparse.Namespace, out: _Output) -> int:
    from .jobs import TERMINAL_STATUSES, interruption_noted

    session = _session(args, model=args.model)
    try:
        if args.file:
            session.upload(
                Path(args.file),
                validation=Path(args.validation) if args.validation else None,
                force=args.force,
            )
        hyperparameters = _hyperparameters(args)
        follow = args.follow
        with interruption_noted(lambda: session.state.job_id):
            job = session.train(
                method=args.method,
                hyperparameters=hyperparameters or None,
                suffix=args.suffix,
                seed=args.seed,
                follow=follow,
                timeout=args.timeout,
                # -q: no progress at all, event lines included (thousands of steps, in a log).
                on_update=None if args.json or args.quiet else _printer(out),
                restart=args.restart,
                training_type=args.training_type,
                training_type_wire=args.training_type_wire,
            )
        if session.local_backend is not None and job.status not in TERMINAL_STATUSES:
            # Only a job that exists and has not ended waits; a refused call created nothing.
            out.note(
                f"note: the local backend runs inside this command; without --follow job {job.id} "
                "waits until a later command (status, events --follow...) starts it again. Run "
                f"'finetune-kit local serve --data-dir {session.local_backend.data_dir}' and "
                "every command on that folder uses it, with the job training meanwhile"
            )
        out.result(job, _job_view(job))
    finally:
        session.close()
    return EXIT_CODES["ok"]


_HYPERPARAMETER_FLAGS = {
    "n_epochs": "epochs",
    "batch_size": "batch_size",
    "learning_rate_multiplier": "learning_rate_multiplier",
    "beta": "beta",
}


def _hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    """The hyperparameter flags given, as numbers or ``"auto"``."""
    parsed: dict[str, Any] = {}
    for name, attribute in _HYPERPARAMETER_FLAGS.items():
        raw = getattr(args, attribute)
        if raw is None:
            continue
        if raw == "auto":
            parsed[name] = raw
            continue
        try:
            parsed[name] = int(raw) if name in ("n_epochs", "batch_size") else float(raw)
        except ValueError as exc:
            flag = "--" + attribute.replace("_", "-")
            raise ConfigurationError(
                f"{flag} must be a number or 'auto', got {raw!r}", param=flag
            ) from exc
    return parsed


def _printer(out: _Output) -> Callable[[Any], None]:
    from .jobs import JobEvent, MetricPoint

    def show(update: Any) -> None:
        # Metric points duplicate their "Step N/M" event: print the event only.
        if isinstance(update, JobEvent):
            out.note(f"  {update.message}")
        elif not isinstance(update, MetricPoint):
            out.note(f"  status: {getattr(update, 'status', update)}")

    return show


def _with_job(
    args: argparse.Namespace,
    own: Callable[[Any], Any],
    other: Callable[[Any, str], Any],
) -> Any:
    """Run ``own(session)`` on the session's job, or ``other(session, job_id)`` on another.

    A job id given on the command line is looked up, not adopted: the state file keeps its
    job (``finetune-kit attach JOB_ID`` makes another job the session's).

    Raises:
        SessionError: No job id was given and the session has none.
    """
    session = _session(args)
    try:
        job_id = getattr(args, "job_id", None)
        if job_id and job_id != session.state.job_id:
            return other(session, job_id)
        if session.state.job_id is None:
            raise SessionError(
                f"this session has no job yet: run '{command('train')}' or "
                f"'{command('attach JOB_ID')}' first, or pass a job id",
                path=str(args.state),
            )
        return own(session)
    finally:
        session.close()


def _cmd_attach(args: argparse.Namespace, out: _Output) -> int:
    session = _session(args)
    try:
        job = session.attach(args.job_id)
    finally:
        session.close()
    out.result(job, _job_view(job))
    return EXIT_CODES["ok"]


def _cmd_status(args: argparse.Namespace, out: _Output) -> int:
    job = _with_job(args, lambda s: s.status(), lambda s, job_id: s.jobs.retrieve(job_id))
    out.result(job, _job_view(job))
    return EXIT_CODES["ok"]


def _cmd_events(args: argparse.Namespace, out: _Output) -> int:
    from .jobs import JobEvent, interruption_noted

    def read(session: Any, job_id: str, follow: Callable[[], Any]) -> list[Any]:
        if not args.follow:
            return [JobEvent.of(e) for e in session.jobs.events(job_id)]
        seen: list[Any] = []
        with interruption_noted(lambda: job_id):
            for update in follow():
                if isinstance(update, JobEvent):
                    seen.append(update)
                    if not out.as_json:
                        print(_event_line(update), flush=True)
        return seen

    events = _with_job(
        args,
        # The session's own job is followed through the session, which records its status.
        lambda s: read(s, s.state.job_id, lambda: s.follow(timeout=args.timeout)),
        lambda s, job_id: read(s, job_id, lambda: s.jobs.follow(job_id, timeout=args.timeout)),
    )
    if args.follow and not out.as_json:
        return EXIT_CODES["ok"]
    out.result(events, "\n".join(_event_line(e) for e in events))
    return EXIT_CODES["ok"]


def _event_line(event: Any) -> str:
    import datetime as dt

    when = dt.datetime.fromtimestamp(event.created_at, dt.timezone.utc).strftime("%H:%M:%S")
    return f"{when}  {event.level:<5}  {event.message}"


def _job_action(name: str, jobs_name: str) -> Callable[[argparse.Namespace, _Output], int]:
    def command(args: argparse.Namespace, out: _Output) -> int:
        job = _with_job(
            args,
            lambda s: getattr(s, name)(),
            lambda s, job_id: getattr(s.jobs, jobs_name)(job_id),
        )
        out.result(job, _job_view(job))
        return EXIT_CODES["ok"]

    return command


def _cmd_checkpoints(args: argparse.Namespace, out: _Output) -> int:
    checkpoints = _with_job(
        args, lambda s: s.checkpoints(), lambda s, job_id: s.jobs.checkpoints(job_id)
    )
    rows = [
        f"step {c.step_number:>6}  {c.fine_tuned_model_checkpoint}"
        + (f"  train_loss={c.metrics.train_loss:.4f}" if c.metrics.train_loss is not None else "")
        for c in checkpoints
    ]
    out.result(checkpoints, "\n".join(rows) or "no checkpoints yet")
    return EXIT_CODES["ok"]


def _cmd_chat(args: argparse.Namespace, out: _Output) -> int:
    session = _session(args)
    try:
        checkpoint: int | str | None = args.checkpoint
        if isinstance(checkpoint, str) and checkpoint.isdigit():
            checkpoint = int(checkpoint)
        reply = session.chat(
            args.prompt,
            model=args.model,
            checkpoint=checkpoint,
            base=args.base,
            system=args.system,
            **_sampling(args),
        )
    finally:
        session.close()
    out.result(reply, reply.text)
    return EXIT_CODES["ok"]


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        params["temperature"] = args.temperature
    return params


def _cmd_compare(args: argparse.Namespace, out: _Output) -> int:
    prompts = list(args.prompts)
    if args.prompts_file:
        lines = Path(args.prompts_file).read_text(encoding="utf-8").splitlines()
        prompts.extend(line for line in lines if line.strip())
    if not prompts:
        raise ConfigurationError(
            "give prompts as arguments or with --prompts-file", param="prompts"
        )
    session = _session(args)
    try:
        comparison = session.compare(
            prompts, system=args.system, base_model=args.base_model, **_sampling(args)
        )
    finally:
        session.close()
    out.result(comparison, str(comparison))
    return EXIT_CODES["ok"]


def _cmd_eval(args: argparse.Namespace, out: _Output) -> int:
    from .data import Dataset

    examples = Dataset.from_jsonl(Path(args.file))
    scorers = _scorers(args.scorer, graders=_graders(args.grader))
    session = _session(args)
    try:
        report = session.evaluate(
            examples,
            scorers,
            base_model=args.base_model,
            concurrency=args.concurrency,
            **_sampling(args),
        )
    finally:
        session.close()
    out.result(report, str(report))
    return EXIT_CODES["ok"]


def _graders(paths: Sequence[str] | None) -> list[Any]:
    """The graders of ``--grader FILE.json``: one grader, a list, or an eval's testing_criteria.

    Each file holds a grader definition (OpenAI's JSON, ``pass_threshold`` allowed), a JSON list
    of them, or an eval as OpenAI's Evals API created or returned it (its ``testing_criteria``
    are the graders). Each is validated here, before any request; an error names the file.
    """
    from .errors import GraderValidationError
    from .inference import GraderScorer

    scorers: list[Any] = []
    for path in paths or ():
        try:
            loaded = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        except OSError as exc:
            raise ConfigurationError(
                f"--grader {path}: cannot read it ({exc.strerror or exc})", param="--grader"
            ) from exc
        except ValueError as exc:
            raise ConfigurationError(
                f"--grader {path}: not JSON ({exc}); the file holds one grader object, a list of "
                "them, or an eval with testing_criteria",
                param="--grader",
            ) from exc
        if isinstance(loaded, dict) and "testing_criteria" in loaded:
            loaded = loaded["testing_criteria"]
        for index, definition in enumerate(loaded if isinstance(loaded, list) else [loaded]):
            try:
                scorers.append(GraderScorer(definition))
            except GraderValidationError as exc:
                where = f"{path}[{index}]" if isinstance(loaded, list) else path
                raise GraderValidationError(
                    f"--grader {where}: {exc}", grader=exc.grader, field=exc.field
                ) from exc
    return scorers


def _scorers(specs: Sequence[str] | None, *, graders: Sequence[Any] = ()) -> list[Any]:
    from .inference import Contains, ExactMatch, RegexMatch, ValidJSON

    chosen: list[Any] = list(graders)
    for spec in specs or ([] if graders else ["exact"]):
        name, _, argument = spec.partition(":")
        if name == "exact":
            chosen.append(ExactMatch())
        elif name == "contains":
            chosen.append(Contains())
        elif name == "regex" and argument:
            chosen.append(RegexMatch(argument))
        elif name == "json":
            chosen.append(ValidJSON())
        else:
            raise ConfigurationError(
                f"unknown scorer {spec!r}: use exact, contains, regex:PATTERN or json",
                param="--scorer",
            )
    return chosen


def _cmd_export(args: argparse.Namespace, out: _Output) -> int:
    from .jobs import export_job

    weights = [w.strip() for w in (args.weights or "").split(",") if w.strip()]
    folder = _with_job(
        args,
        lambda s: s.export(args.folder, weights=weights),
        lambda s, job_id: export_job(
            s.client, job_id, args.folder, policy=s.policy, weights=weights
        ),
    )
    files = sorted(p.name for p in Path(folder).iterdir())
    out.result(
        {"folder": str(folder), "files": files}, f"exported to {folder}: " + ", ".join(files)
    )
    return EXIT_CODES["ok"]


def _cmd_local_serve(args: argparse.Namespace, out: _Output) -> int:
    try:
        from .local import serve
        from .local.server.exposure import exposure_refusal
    except ImportError as exc:
        raise ConfigurationError(
            "the local backend needs the 'local' extra: pip install 'finetune-kit[local]' "
            "(on a CPU-only machine, pip install torch==2.13.0 first)",
            param="local serve",
        ) from exc
    aliases = {}
    for pair in args.alias or []:
        name, sep, target = pair.partition("=")
        if not sep or not name or not target:
            raise ConfigurationError(f"--alias takes NAME=MODEL, got {pair!r}", param="--alias")
        aliases[name] = target
    # The flag is visible to other users of the machine (process list, shell history); the
    # environment variable is the safer way, and the one `--backend local` clients read.
    api_key = args.api_key or os.environ.get("FINETUNE_KIT_LOCAL_API_KEY") or None
    if args.api_key is not None and args.api_key.strip().lower() == "none":
        # As the help says: no key, even over $FINETUNE_KIT_LOCAL_API_KEY (never the word).
        api_key = None
    refusal = exposure_refusal(
        args.host,
        api_key,
        allow_no_key=args.allow_no_key,
        key_hint="--api-key or $FINETUNE_KIT_LOCAL_API_KEY",
        allow_hint="--allow-no-key",
    )
    if refusal is not None:
        raise ConfigurationError(refusal, param="--allow-no-key")
    resources = None
    if args.resources_per_worker is not None:
        from .local.settings import parse_resources

        resources = parse_resources(args.resources_per_worker)
    serve(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        api_key=api_key,
        default_model=args.model,
        aliases=aliases or None,
        model_dirs=args.model_dir,
        faults=args.faults,
        allow_no_key=args.allow_no_key,
        device=args.device,
        chat_engine=args.chat_engine,
        tuned_weights=args.tuned_weights,
        gpus=args.gpus,
        qlora=args.qlora,
        max_concurrent_jobs=args.max_concurrent_jobs,
        vllm=args.vllm,
        vllm_model=args.vllm_model,
        executor=args.executor,
        ray_address=args.ray_address,
        workers_per_job=args.workers_per_job,
        resources_per_worker=resources,
        ray_storage=args.ray_storage,
    )
    return EXIT_CODES["ok"]


def _cmd_quickstart(args: argparse.Namespace, out: _Output) -> int:
    from .quickstart import run_quickstart

    # Under --json stdout holds the one JSON document: the table goes to stderr with the notes.
    result = run_quickstart(
        model=args.model,
        output_dir=Path(args.output),
        progress=not args.quiet,
        stream=sys.stderr if args.json else None,
    )
    out.result(result.to_dict(), None)
    return EXIT_CODES["ok"]


# ---------------------------------------------------------------------- parser


def _add_job_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "job_id",
        nargs="?",
        help="the job (default: the session's job from --state; another job is looked up, "
        "not made the session's)",
    )


def _add_base_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-model",
        help="the model to compare with (default: the base the job trained; on Azure, the base "
        "model's deployment)",
    )


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-tokens", type=int, help="longest answer, in tokens")
    parser.add_argument("--temperature", type=float, help="sampling temperature (0: greedy)")
    parser.add_argument("--system", help="a system message to put first")


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD") from None


def _add_global_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, defaults: bool = True
) -> None:
    """The options every command takes, before it or after it."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--backend",
        default=default(None),
        help="openai, azure, local, or a base URL (default: the state file's, else "
        f"${_BACKEND_ENV}, else openai)",
    )
    parser.add_argument(
        "--base-url",
        default=default(None),
        help="the API base URL (for local: a running server)",
    )
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        default=default(None),
        help="read the API key from this environment variable (no command takes a backend's key "
        "as a flag)",
    )
    parser.add_argument(
        "--state",
        default=default(_DEFAULT_STATE),
        help=f"the session state file (default: {_DEFAULT_STATE})",
    )
    parser.add_argument(
        "--local-model",
        default=default(None),
        help="the local backend's base model for OpenAI names",
    )
    parser.add_argument(
        "--local-data-dir", default=default(None), help="the local backend's data folder"
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print one JSON document"
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="no progress output (no bar, no event lines)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default(0),
        help="log more (-vv: debug)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``finetune-kit`` (its help texts are the CLI's documentation)."""
    parser = argparse.ArgumentParser(
        prog="finetune-kit",
        description="Prepare, preflight, upload, train, follow and use fine-tuned models on "
        "OpenAI, Azure OpenAI, any compatible server, or the local backend.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser)
    # The same options after the command (`finetune-kit upload f --json`), where users type
    # them. Their defaults there are suppressed: one given before the command is kept unless
    # given again after it.
    after = argparse.ArgumentParser(add_help=False)
    _add_global_options(
        after.add_argument_group("global options (before or after the command)"),
        defaults=False,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace, _Output], int], text: str) -> Any:
        sub = commands.add_parser(name, help=text, description=text, parents=[after])
        sub.set_defaults(handler=handler)
        return sub

    p = add("preflight", _cmd_preflight, "check a JSONL training file offline")
    p.add_argument("file", help="the training file")
    p.add_argument("--validation", help="a validation file (checked for overlap too)")
    p.add_argument(
        "--model",
        help="the base model, for token limits, shutdown date and cost (default: the session's "
        "from --state, the local backend's own tokenizer there; else none: the data alone, as "
        "the report says; 'none': no model)",
    )
    p.add_argument(
        "--as-of",
        type=_day,
        metavar="YYYY-MM-DD",
        help="compare the model's shutdown date with this day (default today)",
    )
    p.add_argument("--fix", metavar="OUT", help="write a safely fixed copy to OUT")
    p.add_argument("--system-prompt", help="with --fix: add this system prompt where missing")

    p = add("build", _cmd_build, "build chat examples from CSV or JSONL rows through templates")
    p.add_argument("source", help="a .csv, .tsv or .jsonl file of rows")
    p.add_argument("--user", required=True, help="user template, e.g. 'Tell me about {element}'")
    p.add_argument("--assistant", required=True, help="assistant template, e.g. '{limerick}'")
    p.add_argument("--system", help="a system prompt for every example")
    p.add_argument("-o", "--output", required=True, help="the training JSONL to write")
    p.add_argument("--validation-split", type=float, help="hold out this fraction, e.g. 0.1")
    p.add_argument("--validation-output", help="where the held-out examples go")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")

    p = add("upload", _cmd_upload, "preflight and upload training data (once per content)")
    p.add_argument("file", help="the training file")
    p.add_argument("--validation", help="a validation file")
    p.add_argument("--model", help="the base model (recorded in the session)")
    p.add_argument("--force", action="store_true", help="upload despite preflight errors")

    p = add("train", _cmd_train, "create the fine-tuning job (once) and optionally follow it")
    p.add_argument("--model", help="the base model (default: the session's)")
    p.add_argument("--file", help="upload this training file first")
    p.add_argument("--validation", help="with --file: a validation file")
    p.add_argument("--force", action="store_true", help="with --file: upload despite errors")
    p.add_argument(
        "--method", choices=["supervised", "dpo", "reinforcement"], help="default supervised"
    )
    p.add_argument("--epochs", help="n_epochs (a number or auto)")
    p.add_argument("--batch-size", help="batch_size (a number or auto)")
    p.add_argument("--learning-rate-multiplier", help="learning_rate_multiplier (or auto)")
    p.add_argument("--beta", help="DPO beta (or auto)")
    p.add_argument("--suffix", help="put into the fine-tuned model's name")
    p.add_argument("--seed", type=int, help="training seed")
    p.add_argument("--follow", action="store_true", help="follow the job until it ends")
    p.add_argument("--timeout", type=float, help="with --follow: stop following after seconds")
    p.add_argument(
        "--restart",
        action="store_true",
        help="create a new job even though the session has one (other parameters are refused "
        "without it)",
    )
    p.add_argument(
        "--training-type",
        choices=["GlobalStandard", "Standard", "Developer"],
        help="Azure OpenAI's training tier, sent as trainingType (Developer as developerTier)",
    )
    p.add_argument(
        "--training-type-wire",
        metavar="VALUE",
        help="with --training-type: send this spelling of the tier instead (e.g. Developer)",
    )

    p = add("attach", _cmd_attach, "make an existing job the session's job (saved in --state)")
    p.add_argument("job_id", help="the job, e.g. ftjob-abc123")
    p = add("status", _cmd_status, "show the job's status")
    _add_job_id(p)
    p = add("events", _cmd_events, "show the job's events, oldest first")
    _add_job_id(p)
    p.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    p.add_argument("--timeout", type=float, help="with --follow: stop after seconds")
    for name, method, jobs_method, text in (
        ("cancel", "cancel", "cancel", "cancel the job"),
        ("pause", "pause", "pause", "pause the job"),
        ("resume", "resume_job", "resume", "resume the paused job"),
    ):
        _add_job_id(add(name, _job_action(method, jobs_method), text))
    p = add("checkpoints", _cmd_checkpoints, "list the job's checkpoints, newest first")
    _add_job_id(p)

    p = add("chat", _cmd_chat, "ask the tuned model (or a checkpoint, or the base model)")
    p.add_argument("prompt", help="what to ask")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help="any model name")
    which.add_argument("--checkpoint", help="a checkpoint's step number or model name")
    which.add_argument("--base", action="store_true", help="ask the base model")
    _add_sampling(p)

    p = add("compare", _cmd_compare, "ask the base and the tuned model, side by side")
    p.add_argument("prompts", nargs="*", help="the prompts")
    p.add_argument("--prompts-file", help="more prompts, one per line")
    _add_base_model(p)
    _add_sampling(p)

    p = add("eval", _cmd_eval, "score base and tuned model on held-out chat examples")
    p.add_argument(
        "file", help="held-out chat examples (JSONL); the last assistant turn is the reference"
    )
    p.add_argument(
        "--scorer",
        action="append",
        help="exact, contains, regex:PATTERN or json (repeatable; default exact, unless "
        "--grader is given)",
    )
    p.add_argument(
        "--grader",
        action="append",
        metavar="FILE.json",
        help="an OpenAI grader (string_check, text_similarity, python, score_model, "
        "label_model, multi) as JSON, a list of them, or an eval with testing_criteria; run "
        "locally on each answer (repeatable)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="requests at once (default 8)")
    _add_base_model(p)
    _add_sampling(p)

    p = add("export", _cmd_export, "download the job's files, results, events and checkpoints")
    p.add_argument("folder", help="where to write them")
    p.add_argument(
        "--weights",
        metavar="FORMATS",
        help="also the tuned model's weights (local backend only), comma-separated: adapter "
        "(peft folder), hf (merged Hugging Face folder), gguf (llama.cpp and Ollama files); "
        "into FOLDER/weights/<format>/",
    )
    _add_job_id(p)

    local = add("local", _no_subcommand, "the local backend")
    local_commands = local.add_subparsers(dest="local_command", metavar="COMMAND", required=True)
    p = local_commands.add_parser(
        "serve",
        help="run the local OpenAI-compatible server",
        description="run the local OpenAI-compatible server that really fine-tunes (LoRA)",
    )
    p.set_defaults(handler=_cmd_local_serve)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface (default 127.0.0.1: this machine only; any other address is reachable "
        "from the network, over plain HTTP)",
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--data-dir", help="data folder (default: the user's data folder)")
    p.add_argument(
        "--api-key",
        help="require this key (default: $FINETUNE_KIT_LOCAL_API_KEY, which keeps it out of the "
        "process list; the word none: no key, whatever the variable says)",
    )
    p.add_argument(
        "--allow-no-key",
        action="store_true",
        help="serve without a key on a --host other than loopback (refused otherwise: anyone "
        "on the network could use the server)",
    )
    p.add_argument("--model", help="base model OpenAI names map to (default smollm2-135m-instruct)")
    p.add_argument("--alias", action="append", metavar="NAME=MODEL", help="add a model alias")
    p.add_argument(
        "--model-dir",
        action="append",
        metavar="DIR",
        help="a folder inside which clients may name base models by path (repeatable; default "
        "$FINETUNE_KIT_LOCAL_MODEL_DIRS, and always the data folder's models/)",
    )
    p.add_argument(
        "--device",
        help="where jobs train and chat runs: auto (default: a CUDA GPU when torch sees one, "
        "else the CPU), cpu, cuda, cuda:N or mps (default $FINETUNE_KIT_LOCAL_DEVICE)",
    )
    p.add_argument(
        "--chat-engine",
        help="what serves chat: auto (default: llama.cpp for every model it can load when chat "
        "runs on the CPU, else vLLM or the torch generator), llama.cpp or torch (default "
        "$FINETUNE_KIT_LOCAL_CHAT_ENGINE)",
    )
    p.add_argument(
        "--tuned-weights",
        choices=("adapter", "merged"),
        help="how llama.cpp serves a fine-tuned model: adapter (default: its LoRA adapter "
        "applied per request to the shared base, the trained weights exactly) or merged (base "
        "and adapter merged once into a model of its own, served as fast as the base by a "
        "process of its own) (default $FINETUNE_KIT_LOCAL_TUNED_WEIGHTS)",
    )
    p.add_argument(
        "--gpus",
        metavar="IDS",
        help="GPUs to place jobs on, one per worker in turn: ids such as 0,1,3 or a count such "
        "as 4 (default $FINETUNE_KIT_LOCAL_GPUS, else every GPU the machine shows)",
    )
    p.add_argument(
        "--max-concurrent-jobs",
        type=int,
        metavar="N",
        help="jobs training at once, each in its own worker process (default: one per GPU "
        "the jobs are placed on, else 1)",
    )
    p.add_argument(
        "--qlora",
        action="store_true",
        help="train on the base model quantized to 4 bits (needs a CUDA GPU and the qlora "
        "extra: pip install 'finetune-kit[qlora]')",
    )
    p.add_argument(
        "--vllm",
        metavar="start|URL",
        help="chat through vLLM: start (run vllm serve here; the vllm extra) or a vLLM "
        "server's URL; fine-tuned adapters are loaded into it as their jobs succeed (default "
        "$FINETUNE_KIT_LOCAL_VLLM; unset: the built-in decoder)",
    )
    p.add_argument(
        "--vllm-model", metavar="MODEL", help="the base model vLLM serves (default: --model)"
    )
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        help="where jobs train: local (worker processes here, the default) or ray (a Ray "
        "cluster; the ray extra; see docs/scale-out.md) (default $FINETUNE_KIT_LOCAL_EXECUTOR)",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --executor ray: the cluster, HOST:PORT of its head (default "
        "$FINETUNE_KIT_LOCAL_RAY_ADDRESS, then $RAY_ADDRESS, else a cluster started on this "
        "machine with ray start)",
    )
    p.add_argument(
        "--workers-per-job",
        type=int,
        metavar="N",
        help="with --executor ray: data-parallel Ray Train workers per job (default "
        "$FINETUNE_KIT_LOCAL_WORKERS_PER_JOB, else 1)",
    )
    p.add_argument(
        "--resources-per-worker",
        metavar="JSON",
        help="with --executor ray: what each worker asks Ray for, e.g. '{\"CPU\": 2}' or "
        "'{\"GPU\": 1}' (GPU workers train with NCCL) (default "
        "$FINETUNE_KIT_LOCAL_RESOURCES_PER_WORKER, else one CPU)",
    )
    p.add_argument(
        "--ray-storage",
        metavar="PATH|URI",
        help="with --executor ray: where runs persist checkpoints and large inputs, a folder "
        "every node reaches or a URI such as s3://bucket/prefix (default "
        "$FINETUNE_KIT_LOCAL_RAY_STORAGE, else the data folder's ray/)",
    )
    p.add_argument("--faults", action="store_true", help="enable fault injection (for tests)")

    p = add("quickstart", _cmd_quickstart, "the whole workflow, offline, on the local backend")
    p.add_argument(
        "--model",
        default="smollm2-135m-instruct",
        help="local base model (default smollm2-135m-instruct; tiny-random for a fast check)",
    )
    p.add_argument(
        "--output",
        default="quickstart-output",
        help="folder for the outputs (default quickstart-output)",
    )
    return parser


def help_text(*command: str, width: int = 100) -> str:
    """The ``--help`` text of ``finetune-kit [command...]``, at a fixed width.

    The documentation shows these texts; a test checks they are current
    (``scripts/cli-help`` rewrites them).

    Args:
        *command: The subcommand path, e.g. ``("local", "serve")``; none for the top level.
        width: Line width (fixed, so the text does not depend on the terminal).
    """
    parser: argparse.ArgumentParser = build_parser()
    for name in command:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = actions[0].choices[name]
    # argparse reads the width from $COLUMNS; pin it so the text is the same everywhere.
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        return parser.format_help()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def help_commands() -> list[tuple[str, ...]]:
    """Every command path of ``finetune-kit``, the top level first."""
    paths: list[tuple[str, ...]] = [()]

    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    paths.append((*prefix, name))
                    walk(sub, (*prefix, name))

    walk(build_parser(), ())
    return paths


_SESSION_OPTIONS = (
    ("backend", "--backend"),
    ("base_url", "--base-url"),
    ("api_key_env", "--api-key-env"),
    ("local_model", "--local-model"),
    ("local_data_dir", "--local-data-dir"),
)


def _command_prefix(args: argparse.Namespace) -> str:
    """``finetune-kit`` with the global options that reach this command's session.

    A command suggested in a message (follow the job again, cancel it...) must reach the same
    backend and state file, so it carries them; output options (``--json``, ``-q``) are left out.
    """
    words = ["finetune-kit"]
    for attribute, flag in _SESSION_OPTIONS:
        value = getattr(args, attribute, None)
        if value:
            words += [flag, str(value)]
    if getattr(args, "state", _DEFAULT_STATE) != _DEFAULT_STATE:
        words += ["--state", str(args.state)]
    return shlex.join(words)


def _no_subcommand(args: argparse.Namespace, out: _Output) -> NoReturn:
    raise ConfigurationError("give a subcommand", param="command")  # argparse requires one


def _exit_code(exc: BaseException) -> int:
    import openai

    if isinstance(exc, KeyboardInterrupt):
        return EXIT_CODES["interrupted"]
    if isinstance(exc, JobFailedError):
        return EXIT_CODES["job_failed"]
    if isinstance(exc, JobCancelledError):
        return EXIT_CODES["job_cancelled"]
    if isinstance(exc, JobTimeoutError):
        return EXIT_CODES["timeout"]
    if isinstance(exc, DataError):
        return EXIT_CODES["data"]
    if isinstance(exc, (ConfigurationError, SessionError)):
        return EXIT_CODES["usage"]
    if isinstance(exc, (openai.APIError, FineTuningUnavailableError)):
        return EXIT_CODES["api"]
    return EXIT_CODES["error"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``finetune-kit``; returns the exit code (see the module docstring).

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
    )
    out = _Output(args.json)
    handler: Callable[[argparse.Namespace, _Output], int] = args.handler
    try:
        # Messages built while the command runs name its flags and commands, not Python's.
        with running_command(_command_prefix(args)):
            return handler(args, out)
    except KeyboardInterrupt:
        out.note("interrupted")
        return EXIT_CODES["interrupted"]
    except (FinetuneKitError, Exception) as exc:  # every error becomes a message and a code
        code = _exit_code(exc)
        if code == EXIT_CODES["error"] and args.verbose:
            raise
        out.note(f"error: {exc}")
        record = getattr(exc, "record", None)
        if record:
            out.note(f"  the line: {record}")
        if args.json:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc), "exit_code": code}))
        return code


if __name__ == "__main__":
    raise SystemExit(main())
