"""The seeds' notebook, call for call, against the local backend.

The lesson this project grew from uploads a 10-example limerick file, fine-tunes
``gpt-3.5-turbo``, lists jobs and events, and chats with the tuned model. These calls run here
exactly as the notebook wrote them; every response is also checked against openai-python's own
types from its raw JSON (the client itself is lenient).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import openai
import pytest
from openai.types import FileObject
from openai.types.chat import ChatCompletion
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

import finetune_kit
from finetune_kit.local import LocalBackend

SEED_FILE = Path(__file__).resolve().parents[3] / "shared" / "data" / "seed-training-data.jsonl"
LIMERICKS = Path(finetune_kit.__file__).parent / "_quickstart" / "element_limericks.csv"

SYSTEM = (
    "Elle is a factual chatbot that answers questions about elements in the periodic table with "
    "a limerick"
)

pytestmark = [
    # The notebook opens the file without closing it; that is part of running it as written.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.fixture(scope="module")
def training_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lesson's own file; where it is not on the machine, ten examples in its format."""
    if SEED_FILE.exists():
        return SEED_FILE
    with LIMERICKS.open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))[:10]
    path = tmp_path_factory.mktemp("seed") / "training-data.jsonl"
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Tell me about {row['element']}"},
                    {"role": "assistant", "content": row["limerick"]},
                ]
            }
        )
        for row in rows
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_notebook(client: openai.OpenAI, timeout: float, training_path: Path) -> None:
    path = str(training_path)

    training_file = client.files.create(file=open(path, "rb"), purpose="fine-tune")  # noqa: SIM115  # as written
    job = client.fine_tuning.jobs.create(training_file=training_file.id, model="gpt-3.5-turbo")
    print(client.fine_tuning.jobs.list(limit=10))

    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job.id)
        if job.status in ("succeeded", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, f"still {job.status} after {timeout} s"
        time.sleep(0.2)
    assert job.status == "succeeded", job.error

    recent = client.fine_tuning.jobs.list_events(fine_tuning_job_id=job.id, limit=10)
    assert len(recent.data) == 10
    events = client.fine_tuning.jobs.list_events(job.id)
    messages = [event.message for event in reversed(events.data)]
    assert messages[-1] == "The job has successfully completed"
    assert messages[-2] == f"New fine-tuned model created: {job.fine_tuned_model}"

    fine_tuned_model = job.fine_tuned_model
    assert fine_tuned_model is not None
    completion = client.chat.completions.create(
        model=fine_tuned_model,
        messages=[
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Tell me about Strontium"},
        ],
    )
    print(completion.choices[0].message)
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.total_tokens > completion.usage.prompt_tokens > 0

    # The same responses, parsed strictly from their raw JSON.
    raw = client.files.with_raw_response.retrieve(training_file.id)
    assert FileObject.model_validate(json.loads(raw.text)).bytes == training_path.stat().st_size
    raw = client.fine_tuning.jobs.with_raw_response.list(limit=10)
    listed = [FineTuningJob.model_validate(j) for j in json.loads(raw.text)["data"]]
    assert job.id in [j.id for j in listed]
    raw = client.fine_tuning.jobs.with_raw_response.retrieve(job.id)
    strict_job = FineTuningJob.model_validate(json.loads(raw.text))
    assert strict_job.fine_tuned_model == fine_tuned_model
    assert (strict_job.trained_tokens or 0) > 0
    raw = client.fine_tuning.jobs.with_raw_response.list_events(job.id, limit=10)
    for item in json.loads(raw.text)["data"]:
        FineTuningJobEvent.model_validate(item)
    raw = client.chat.completions.with_raw_response.create(
        model=fine_tuned_model,
        messages=[{"role": "user", "content": "Tell me about Strontium"}],
        max_tokens=5,
    )
    assert ChatCompletion.model_validate(json.loads(raw.text)).usage is not None


def test_seed_notebook_on_the_tiny_model(client: openai.OpenAI, training_path: Path) -> None:
    run_notebook(client, timeout=120, training_path=training_path)


@pytest.mark.slow
def test_seed_notebook_on_smollm2(tmp_path: Path, training_path: Path) -> None:
    # The real default model: gpt-3.5-turbo is an alias of smollm2-135m-instruct.
    with LocalBackend(tmp_path, default_max_tokens=64) as backend, backend.client() as client:
        run_notebook(client, timeout=600, training_path=training_path)
