"""The real thing: reinforcement fine-tuning makes SmolLM2 name capitals it was not trained on.

A user's whole path over HTTP with the ``openai`` client against the local backend on its
default base model (SmolLM2-135M-Instruct): held-out prompts answered by the base model and
scored with ``graders/run``, a reinforcement job with a deterministic ``string_check`` grader
on other prompts, then the same held-out prompts answered by the fine-tuned model. The task is
bench/rft.py's (one epoch here, at twice the learning rate): "What is the capital of
<country>?", reward 1 when the answer names the capital. Sampled at temperature 1, the base model
names it in about half its answers; the reward raises that, on countries it never trained on.
How long a step takes is bench/rft.py's business, not asserted here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from finetune_kit.local import LocalBackend
from tests.fixtures.local_backend import wait_for_job, write_jsonl

pytestmark = pytest.mark.slow

GRADER = {
    "type": "string_check",
    "name": "names_the_capital",
    "operation": "ilike",
    "input": "{{sample.output_text}}",
    "reference": "{{item.capital}}",
}
TRAIN = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Egypt", "Cairo"),
    ("Spain", "Madrid"),
    ("Russia", "Moscow"),
    ("China", "Beijing"),
    ("Portugal", "Lisbon"),
    ("Ireland", "Dublin"),
    ("Norway", "Oslo"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
    ("Hungary", "Budapest"),
    ("Belgium", "Brussels"),
    ("Thailand", "Bangkok"),
    ("South Korea", "Seoul"),
    ("Mexico", "Mexico City"),
    ("Peru", "Lima"),
    ("Cuba", "Havana"),
    ("Kenya", "Nairobi"),
    ("Canada", "Ottawa"),
    ("Iraq", "Baghdad"),
    ("Indonesia", "Jakarta"),
    ("Venezuela", "Caracas"),
    ("Austria", "Vienna"),
]
HELD_OUT = [
    ("Japan", "Tokyo"),
    ("Italy", "Rome"),
    ("the United Kingdom", "London"),
    ("Greece", "Athens"),
    ("Sweden", "Stockholm"),
    ("Poland", "Warsaw"),
    ("the Czech Republic", "Prague"),
    ("the Netherlands", "Amsterdam"),
    ("India", "Delhi"),
    ("Argentina", "Buenos Aires"),
    ("Chile", "Santiago"),
    ("Turkey", "Ankara"),
    ("Australia", "Canberra"),
    ("Iran", "Tehran"),
    ("Vietnam", "Hanoi"),
    ("the Philippines", "Manila"),
]
ANSWER_TOKENS = 64  # reasoning_effort "low": the job's answer budget
SAMPLES = 4  # answers per held-out prompt
HYPERPARAMETERS: dict[str, Any] = {
    "n_epochs": 1,
    "batch_size": 4,
    "learning_rate_multiplier": 2.0,
    "compute_multiplier": 1.0,
    "reasoning_effort": "low",
}
MIN_RISE = 0.1
"""The least rise of the held-out mean reward that passes.

Measured on 2 cores: this test's job (1 epoch of 6 steps at learning_rate_multiplier 2) took
the held-out mean from 0.500 to 0.719 and, in a second run, from 0.469 to 0.688 (+0.22 both
times: the same training rewards, llama.cpp's answers not bit-for-bit the same across server
starts); bench/rft.py's 1 epoch at multiplier 1 rose
0.17, its 2 epochs 0.28. A mean over 64 answers moves by about 0.06 from sampling alone, so the
threshold leaves room for another machine's numbers and is still far above no learning.
"""


def _row(country: str, capital: str) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": f"What is the capital of {country}?"}],
        "capital": capital,
    }


def _held_out_reward(client: openai.OpenAI, model: str) -> float:
    """Mean reward of ``SAMPLES`` seeded answers (temperature 1) per held-out prompt."""
    rewards: list[float] = []
    for index, (country, capital) in enumerate(HELD_OUT):
        row = _row(country, capital)
        answer = client.chat.completions.create(
            model=model,
            messages=row["messages"],
            n=SAMPLES,
            temperature=1.0,
            max_tokens=ANSWER_TOKENS,
            seed=1000 + index,
        )
        assert len(answer.choices) == SAMPLES
        for choice in answer.choices:
            graded = client.fine_tuning.alpha.graders.run(
                grader=GRADER,  # type: ignore[arg-type]
                model_sample=choice.message.content or "",
                item={"capital": capital},
            )
            assert not graded.metadata.errors.invalid_variable_error
            rewards.append(graded.reward)
    return sum(rewards) / len(rewards)


@pytest.fixture(scope="module")
def smollm2_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    # The backend's own default base model: SmolLM2-135M-Instruct.
    with (
        LocalBackend(tmp_path_factory.mktemp("rft-smollm2"), startup_timeout=300) as backend,
        backend.client(timeout=600) as client,
    ):
        yield client


def test_reinforcement_raises_the_held_out_reward(
    smollm2_client: openai.OpenAI, tmp_path: Path
) -> None:
    client = smollm2_client
    assert not {c for c, _ in TRAIN} & {c for c, _ in HELD_OUT}
    before = _held_out_reward(client, "smollm2-135m-instruct")

    rows = [_row(country, capital) for country, capital in TRAIN]
    training_file = client.files.create(
        file=write_jsonl(tmp_path / "capitals.jsonl", rows), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(
        model="smollm2-135m-instruct",
        training_file=training_file.id,
        seed=7,
        method={  # type: ignore[arg-type]
            "type": "reinforcement",
            "reinforcement": {"grader": GRADER, "hyperparameters": HYPERPARAMETERS},
        },
    )
    done = wait_for_job(client, job.id, timeout=1800)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model is not None
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    metrics: list[dict[str, Any]] = []
    for event in reversed(events):
        if event.type == "metrics":
            assert isinstance(event.data, dict)
            metrics.append(event.data)
    assert len(metrics) == len(TRAIN) // HYPERPARAMETERS["batch_size"]
    assert all(m["train_grader_errors"] == 0 for m in metrics)

    after = _held_out_reward(client, done.fine_tuned_model)
    rewards = [m["train_reward_mean"] for m in metrics]
    print(f"held-out mean reward {before:.3f} -> {after:.3f}; train reward means {rewards}")
    assert after - before >= MIN_RISE, (before, after, rewards)
