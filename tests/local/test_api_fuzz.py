"""A property-based fuzzer (schemathesis) against the local backend's own /openapi.json.

Every operation of the schema gets requests drawn from its declared parameters and bodies, valid
ones and invalid ones, over real HTTP; whatever they hold, the server answers no 5xx, and each
answer matches what the schema declares (status, media type, body). The draws are derandomized:
a run repeats the same requests, so a failure reproduces.

The budget stays small (a few hundred requests): no job trains (``max_concurrent_jobs=0``), and
the chat completions that reach the tiny model ask for a few tokens. ``FUZZ_EXAMPLES=200`` in the
environment draws more per operation and mode (10 by default), for a deeper run by hand.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from finetune_kit.local import LocalBackend
from tests.fixtures.local_backend import chat_examples, write_jsonl

# Requests per operation and generation mode; with ~25 operations, about 500 requests.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalBackend, dict[str, str]]]:
    """A backend of its own (the fuzzer deletes what it finds), and ids that exist in it."""
    folder = tmp_path_factory.mktemp("fuzz")
    with (
        LocalBackend(
            folder / "data",
            default_model="tiny-random",
            max_concurrent_jobs=0,
            default_max_tokens=4,
        ) as backend,
        backend.client() as client,
    ):
        training = write_jsonl(folder / "train.jsonl", chat_examples(3))
        file = client.files.create(file=training, purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="tiny-random", training_file=file.id)
        upload = client.uploads.create(
            bytes=10, filename="t.jsonl", mime_type="text/jsonl", purpose="fine-tune"
        )
        known = {
            "file_id": file.id,
            "job_id": job.id,
            "upload_id": upload.id,
            "model": "tiny-random",
        }
        yield backend, known


def _real_ids(case: Case, known: dict[str, str], use: bool) -> Case:
    """Point half the cases at objects that exist, so handlers go past their 404."""
    if not use:
        return case
    for name in list(case.path_parameters or {}):
        if name in known:
            case.path_parameters[name] = known[name]
    if isinstance(case.body, dict):
        for name in ("model", "training_file"):
            if name in case.body:
                case.body[name] = known["model" if name == "model" else "file_id"]
        # Keep real generations short: a few tokens, a couple of choices.
        for name in ("max_tokens", "max_completion_tokens"):
            if isinstance(case.body.get(name), int):
                case.body[name] = min(max(case.body[name], 1), 4)
        if isinstance(case.body.get("n"), int):
            case.body["n"] = min(max(case.body["n"], 1), 2)
    return case


def _fuzz(
    operation: APIOperation,
    mode: GenerationMode,
    root: str,
    known: dict[str, str],
    statuses: dict[str, list[int]],
    failures: list[str],
) -> None:
    """Send ``EXAMPLES`` drawn requests to one operation; record statuses and failures."""
    strategy = st.builds(
        _real_ids, operation.as_strategy(generation_mode=mode), st.just(known), st.booleans()
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        # Generation only: shrinking a failure could take minutes; the first failing request
        # is reported as drawn.
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case) -> None:
        response = case.call(base_url=root, timeout=120)
        statuses.setdefault(operation.label, []).append(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # every failure is collected, then shown
            failures.append(
                f"{operation.label} [{mode.value}] {response.request.url}\n"
                f"  body: {_short(case.body)}\n  -> {response.status_code} "
                f"{response.text[:300]}\n  {type(exc).__name__}: {str(exc)[:500]}"
            )

    try:
        run()
    except Unsatisfiable:
        # An operation without parameters or body has nothing to make invalid.
        assert mode is GenerationMode.NEGATIVE, operation.label


def test_the_api_answers_no_5xx_and_keeps_to_its_schema(
    fuzzed: tuple[LocalBackend, dict[str, str]],
) -> None:
    backend, known = fuzzed
    root = backend.base_url.removesuffix("/v1")
    schema = schemathesis.openapi.from_url(root + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 22
    failures: list[str] = []
    statuses: dict[str, list[int]] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, root, known, statuses, failures)
    assert not failures, f"{len(failures)} failing request(s):\n" + "\n".join(failures[:10])
    # The harness itself: with real ids, requests get past the 404s to the handlers' work.
    succeeded = {label for label, codes in statuses.items() if 200 in codes}
    assert {"POST /v1/chat/completions", "GET /v1/files/{file_id}"} <= succeeded, statuses


def _short(body: Any) -> str:
    try:
        text = json.dumps(body, default=repr)
    except (TypeError, ValueError):
        text = repr(body)
    return text[:300]
