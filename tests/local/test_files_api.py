"""/v1/files against the real server, parsed with openai-python's own types."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai.types import FileDeleted, FileObject

from finetune_kit.local import LocalBackend
from tests.fixtures.local_backend import chat_examples, write_jsonl


def test_upload_retrieve_list_content_delete_round_trip(
    client: openai.OpenAI, chat_training_file: Path
) -> None:
    with open(chat_training_file, "rb") as handle:
        raw = client.files.with_raw_response.create(file=handle, purpose="fine-tune")
    created = FileObject.model_validate(json.loads(raw.text))
    assert created.id.startswith("file-")
    assert created.filename == "train.jsonl"
    assert created.bytes == chat_training_file.stat().st_size
    assert created.purpose == "fine-tune"
    assert created.status == "processed"

    fetched = client.files.retrieve(created.id)
    assert FileObject.model_validate(fetched.model_dump()) == created
    listed = client.files.list(purpose="fine-tune")
    assert created.id in [f.id for f in listed.data]
    assert client.files.content(created.id).read() == chat_training_file.read_bytes()

    raw_deleted = client.files.with_raw_response.delete(created.id)
    deleted = FileDeleted.model_validate(json.loads(raw_deleted.text))
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "file")
    with pytest.raises(openai.NotFoundError) as info:
        client.files.retrieve(created.id)
    assert info.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)


def test_list_orders_filters_and_pages(local_backend: LocalBackend, tmp_path: Path) -> None:
    # A backend of its own: the count of files must not depend on other tests.
    with LocalBackend(tmp_path / "data", default_model="tiny-random", max_concurrent_jobs=0) as b:
        client = b.client()
        path = write_jsonl(tmp_path / "a.jsonl", chat_examples(2))
        ids = [client.files.create(file=path, purpose="fine-tune").id for _ in range(3)]
        other = client.files.create(file=("notes.txt", b"hello"), purpose="user_data").id

        newest_first = client.files.list()
        assert [f.id for f in newest_first.data] == [other, *reversed(ids)]
        assert [f.id for f in client.files.list(order="asc").data] == [*ids, other]
        assert [f.id for f in client.files.list(purpose="user_data").data] == [other]

        page = client.files.list(purpose="fine-tune", limit=2)
        assert [f.id for f in page.data] == [ids[2], ids[1]]
        assert page.has_more is True
        following = client.files.list(purpose="fine-tune", limit=2, after=page.data[-1].id)
        assert [f.id for f in following.data] == [ids[0]]
        assert following.has_more is False
        # The SDK's own pagination walks every page.
        assert [f.id for f in client.files.list(purpose="fine-tune", limit=1)] == ids[::-1]


def test_unknown_file_is_a_404_in_openais_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.files.retrieve("file-doesnotexist")
    body = info.value.body
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}
    assert body["type"] == "invalid_request_error"
    assert "file-doesnotexist" in body["message"]


def test_bad_purpose_names_the_parameter(client: openai.OpenAI, chat_training_file: Path) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=chat_training_file, purpose="fine-tuning")  # type: ignore[arg-type]
    assert info.value.param == "purpose"
    assert "fine-tune" in info.value.message


def test_fine_tune_files_must_be_jsonl(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("train.csv", b"a,b\n"), purpose="fine-tune")
    assert info.value.param == "file"
    assert ".jsonl" in info.value.message


def test_filenames_are_sanitised(local_backend: LocalBackend, client: openai.OpenAI) -> None:
    body = b'{"messages": []}\n'
    created = client.files.create(file=("../../escape.jsonl", body), purpose="fine-tune")
    assert created.filename == "escape.jsonl"
    blob = local_backend.data_dir / "files" / created.id
    assert blob.read_bytes() == body
    assert not (local_backend.data_dir.parent / "escape.jsonl").exists()
    windows = client.files.create(file=("..\\..\\win.jsonl", body), purpose="fine-tune")
    assert windows.filename == "win.jsonl"
    odd = client.files.create(file=("a:b*c?.jsonl", body), purpose="fine-tune")
    assert odd.filename == "a_b_c_.jsonl"


def test_expires_after_sets_expires_at(client: openai.OpenAI, chat_training_file: Path) -> None:
    before = int(time.time())
    created = client.files.create(
        file=chat_training_file,
        purpose="fine-tune",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert created.expires_at is not None
    assert before + 3600 <= created.expires_at <= int(time.time()) + 3600
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(
            file=chat_training_file,
            purpose="fine-tune",
            expires_after={"anchor": "created_at", "seconds": 60},
        )
    assert info.value.param == "expires_after.seconds"


def test_bad_query_parameters_name_the_parameter(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.files.list(limit=0)
    assert info.value.param == "limit"
    with pytest.raises(openai.BadRequestError) as info:
        client.files.list(order="sideways")  # type: ignore[arg-type]
    assert info.value.param == "order"


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/files?limit=", "limit"),
        ("/files?order=", "order"),
        ("/files?purpose=", "purpose"),
        ("/fine_tuning/jobs?limit=", "limit"),
        ("/fine_tuning/jobs/ftjob-x/events?limit=", "limit"),
        ("/fine_tuning/jobs/ftjob-x/checkpoints?limit=", "limit"),
    ],
)
def test_an_empty_query_parameter_is_a_400_not_the_default(
    local_backend: LocalBackend, path: str, param: str
) -> None:
    response = httpx.get(local_backend.base_url + path)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
