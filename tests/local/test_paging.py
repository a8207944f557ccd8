"""List cursors: an ``after`` naming nothing in the list is a 400, never the first page again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from finetune_kit.local import LocalBackend
from tests.fixtures.local_backend import chat_examples, write_jsonl


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    # Its own backend: the file counts must not depend on other tests; no job trains.
    folder = tmp_path_factory.mktemp("paging")
    with LocalBackend(folder, default_model="tiny-random", max_concurrent_jobs=0) as started:
        yield started


def _upload(client: openai.OpenAI, n: int) -> list[str]:
    return [client.files.create(file=(f"f{i}.txt", b"x"), purpose="user_data").id for i in range(n)]


def test_paging_while_files_are_deleted_never_repeats_one(backend: LocalBackend) -> None:
    with backend.client() as client:
        ids = _upload(client, 6)
        seen: list[str] = []

        def read_every_page() -> None:
            after: str | None = None
            while True:
                page = client.files.list(purpose="user_data", limit=2, order="asc", after=after)
                seen.extend(f.id for f in page.data)
                if not page.has_more:
                    return
                after = page.data[-1].id
                # Another client deletes the file that ends the page: the cursor.
                client.files.delete(after)

        with pytest.raises(openai.BadRequestError) as info:
            read_every_page()
        # The first page, once: the next one is refused, never the first again (it was, with
        # ids[0] a second time; an SDK loop saw 10 items for 6 files).
        assert seen == ids[:2]
        assert info.value.param == "after"
        assert ids[1] in info.value.message
        assert "without 'after'" in info.value.message
        # The way to carry on: list again from the start.
        rest = client.files.list(purpose="user_data", order="asc")
        assert [f.id for f in rest.data] == [ids[0], *ids[2:]]
        for file in rest.data:
            client.files.delete(file.id)


def test_an_unknown_cursor_is_a_400_on_every_list(backend: LocalBackend, tmp_path: Path) -> None:
    with backend.client() as client:
        training = write_jsonl(tmp_path / "train.jsonl", chat_examples(3))
        file = client.files.create(file=training, purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="tiny-random", training_file=file.id)
        events = client.fine_tuning.jobs.list_events(job.id)
        assert events.data
        for call in (
            lambda: client.files.list(after="file-nope"),
            lambda: client.fine_tuning.jobs.list(after="ftjob-nope"),
            lambda: client.fine_tuning.jobs.list_events(job.id, after="ftevent-nope"),
            # An event of another list is no cursor of this one.
            lambda: client.fine_tuning.jobs.list(after=events.data[0].id),
            lambda: client.fine_tuning.jobs.checkpoints.list(job.id, after="ftckpt-nope"),
        ):
            with pytest.raises(openai.BadRequestError) as info:
                call()
            assert info.value.param == "after"
        # A cursor that exists still pages.
        first = client.fine_tuning.jobs.list(limit=1)
        assert client.fine_tuning.jobs.list(after=first.data[0].id).data is not None
        assert client.files.list(after=file.id).data is not None
