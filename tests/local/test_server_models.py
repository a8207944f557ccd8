"""/v1/models: base models and aliases, retrieve, delete refusals, and /health."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types import FileObject, Model

from finetune_kit.local import LocalBackend
from tests.fixtures.local_backend import serve_cli

HELLO: list[Any] = [{"role": "user", "content": "Hi"}]


def test_models_list_base_models_and_aliases(client: openai.OpenAI) -> None:
    raw = client.models.with_raw_response.list()
    payload = json.loads(raw.text)
    assert payload["object"] == "list"
    models = [Model.model_validate(item) for item in payload["data"]]
    ids = [m.id for m in models]
    assert {"tiny-random", "smollm2-135m-instruct", "gpt-3.5-turbo", "gpt-4o-mini"} <= set(ids)
    assert len(ids) == len(set(ids))
    assert all(m.owned_by == "system" for m in models if not m.id.startswith("ft:"))


def test_retrieve_accepts_aliases_and_snapshots(client: openai.OpenAI) -> None:
    assert client.models.retrieve("gpt-4o-mini-2024-07-18").id == "gpt-4o-mini-2024-07-18"
    assert client.models.retrieve("tiny-random").object == "model"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-17")
    assert info.value.code == "model_not_found"


def test_only_fine_tuned_models_can_be_deleted(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.models.delete("gpt-4o-mini")
    assert "base model" in info.value.message
    with pytest.raises(openai.NotFoundError):
        client.models.delete("ft:tiny-random:local::gone")


def test_health_needs_nothing(local_backend: LocalBackend) -> None:
    response = httpx.get(local_backend.base_url.removesuffix("/v1") + "/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


# Names a hostile client sends: '~user' made Path.expanduser raise, a long name made stat raise.
_ODD_NAMES = ("~foo", "~nobody-here/model", "a" * 5000, "/" + "a" * 5000, "x/" * 2000, "\\\\x")


def _upload(client: openai.OpenAI, path: Path) -> FileObject:
    return client.files.create(file=(path.name, path.read_bytes()), purpose="fine-tune")


def _error(call: Callable[[], object]) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as info:
        call()
    return info.value


@pytest.mark.parametrize("name", _ODD_NAMES)
def test_odd_model_names_are_client_errors_naming_model(
    client: openai.OpenAI, chat_training_file: Path, name: str
) -> None:
    training = _upload(client, chat_training_file)
    job = _error(lambda: client.fine_tuning.jobs.create(model=name, training_file=training.id))
    assert (job.status_code, job.param) == (400, "model")
    assert job.code == "model_not_available"
    chat = _error(lambda: client.chat.completions.create(model=name, messages=HELLO))
    assert (chat.status_code, chat.param, chat.code) == (404, "model", "model_not_found")
    retrieve = _error(lambda: client.models.retrieve(name))
    assert (retrieve.status_code, retrieve.param) == (404, "model")
    delete = _error(lambda: client.models.delete(name))
    assert (delete.status_code, delete.param) == (404, "model")


def _answers(client: openai.OpenAI, name: str, training_file: str) -> list[tuple[Any, ...]]:
    calls: list[Callable[[], object]] = [
        lambda: client.fine_tuning.jobs.create(model=name, training_file=training_file),
        lambda: client.chat.completions.create(model=name, messages=HELLO),
        lambda: client.models.retrieve(name),
        lambda: client.models.delete(name),
    ]
    out = []
    for call in calls:
        error = _error(call)
        out.append((error.status_code, error.param, error.code, error.message.replace(name, "X")))
    return out


def test_model_paths_do_not_reveal_what_is_on_disk(
    client: openai.OpenAI, chat_training_file: Path, tmp_path: Path
) -> None:
    training = _upload(client, chat_training_file)
    # A real model folder outside the folders the server allows is refused like a missing one.
    outside = _save_tiny_model(tmp_path / "outside-model")
    missing = _answers(client, "/nonexistent", training.id)
    assert _answers(client, "/etc", training.id) == missing
    assert _answers(client, str(outside), training.id) == missing
    assert _answers(client, "/etc/../etc", training.id) == missing
    assert "model_dirs" in missing[0][3]  # the message says how a server allows a folder


def _save_tiny_model(folder: Path) -> Path:
    from finetune_kit.local.engine.tiny_model import build_tiny_model

    model, tokenizer = build_tiny_model()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_models_inside_allowed_folders_are_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chat_training_file: Path
) -> None:
    data_dir = tmp_path / "data"
    in_data = _save_tiny_model(data_dir / "models" / "tiny-copy")
    extra = tmp_path / "shared-models"
    in_extra = _save_tiny_model(extra / "tiny-extra")
    from_env = tmp_path / "env-models"
    in_env = _save_tiny_model(from_env / "tiny-env")
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_MODEL_DIRS", str(from_env))
    with (
        LocalBackend(
            data_dir, default_model="tiny-random", max_concurrent_jobs=0, model_dirs=[extra]
        ) as backend,
        backend.client() as client,
    ):
        training = _upload(client, chat_training_file)
        # The data folder's models/ and model_dirs are allowed; the environment's list is read
        # only when model_dirs is not given.
        for folder in (in_data, in_extra):
            assert client.models.retrieve(str(folder)).id == str(folder)
            job = client.fine_tuning.jobs.create(model=str(folder), training_file=training.id)
            assert job.model == str(folder.resolve())
        refused = _error(lambda: client.models.retrieve(str(in_env)))
        assert refused.status_code == 404
        # Inside an allowed folder, a path that is no model says why.
        wrong = _error(
            lambda: client.fine_tuning.jobs.create(
                model=str(data_dir / "models"), training_file=training.id
            )
        )
        assert wrong.param == "model"
        assert "config.json" in wrong.message
    with (
        LocalBackend(tmp_path / "other", default_model="tiny-random", max_concurrent_jobs=0) as b,
        b.client() as client,
    ):
        assert client.models.retrieve(str(in_env)).id == str(in_env)
        assert _error(lambda: client.models.retrieve(str(in_extra))).status_code == 404


def test_the_configured_model_path_is_accepted_by_name(tmp_path: Path) -> None:
    # A job reports the base model really used (its path); that name works in a request too.
    folder = _save_tiny_model(tmp_path / "configured")
    with (
        LocalBackend(tmp_path / "d", default_model=str(folder), max_concurrent_jobs=0) as b,
        b.client() as client,
    ):
        assert client.models.retrieve(str(folder.resolve())).object == "model"
        assert client.models.retrieve("gpt-4o-mini").object == "model"


def test_local_serve_takes_model_folders_on_the_command_line(tmp_path: Path) -> None:
    first = _save_tiny_model(tmp_path / "shared-a" / "tiny-a")
    second = _save_tiny_model(tmp_path / "shared-b" / "tiny-b")
    outside = _save_tiny_model(tmp_path / "elsewhere" / "tiny-c")
    argv = ["--model-dir", str(first.parent), "--model-dir", str(second.parent)]
    server, base = serve_cli(tmp_path, *argv, env=dict(os.environ))
    try:
        with openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0) as client:
            for folder in (first, second):
                assert client.models.retrieve(str(folder)).id == str(folder)
            assert _error(lambda: client.models.retrieve(str(outside))).status_code == 404
    finally:
        server.terminate()
        server.wait(30)
        if server.stderr is not None:
            server.stderr.close()


def test_local_serve_takes_the_chat_engine_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.fixtures.cli import run

    code, _, err = run(
        capsys, "local", "serve", "--chat-engine", "vulkan", "--data-dir", str(tmp_path / "x")
    )
    assert code != 0
    assert "chat engine is 'vulkan'; use auto, llama.cpp, torch" in err
    # The flag wins over the environment: a bad value there is never read.
    env = {**os.environ, "FINETUNE_KIT_LOCAL_CHAT_ENGINE": "vulkan"}
    server, base = serve_cli(tmp_path, "--chat-engine", "torch", env=env)
    try:
        with openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0) as client:
            answer = client.chat.completions.create(
                model="tiny-random", messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
            assert answer.choices[0].finish_reason in ("stop", "length")
    finally:
        server.terminate()
        server.wait(30)
        if server.stderr is not None:
            server.stderr.close()
