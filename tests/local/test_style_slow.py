"""The real thing: SmolLM2 fine-tuned on 10 limericks answers an unseen element in limerick form.

The engine runs directly, and the tuned model is asked through both chat engines: the torch
generator and llama.cpp (``LlamaCppEngine``, as the backend serves chat on a CPU: the Q4_1 GGUF
base with the adapter converted to a GGUF LoRA adapter). Over HTTP, tests/test_examples.py runs
the quickstart (a session on the local backend; the style on held-out elements) and
tests/local/test_fidelity.py the seeds' notebook on SmolLM2 (its calls and response types, not
the style). Auto hyperparameters, as a user who sets none gets: 10 epochs of 10 steps. How long
it takes (the target: under 3 minutes on 2 cores) is measured by bench/train.py, not asserted
here: a shared machine's load would make a timed test fail for reasons that are not the code's.
The style check is structural, so it can fail: a limerick is four to seven short lines (or
" - "-separated parts, the lesson's own layout), where the base model writes prose.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import finetune_kit
from finetune_kit.local.engine.generation import Generator, ModelRef
from finetune_kit.local.engine.llama_cpp import LlamaCppEngine
from finetune_kit.local.engine.registry import ModelRegistry
from finetune_kit.local.engine.training import train
from finetune_kit.local.engine.types import TrainingRequest

from .engine_helpers import Recorder, write_jsonl

pytestmark = pytest.mark.slow

SYSTEM = "You answer questions about chemical elements with a limerick."
LIMERICKS = Path(finetune_kit.__file__).parent / "_quickstart" / "element_limericks.csv"
UNSEEN = ("Strontium", "Potassium")


def limerick_parts(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"\n| - ", text) if part.strip()]


def looks_like_a_limerick(text: str) -> bool:
    parts = limerick_parts(text)
    return 4 <= len(parts) <= 7 and all(len(part.split()) <= 14 for part in parts)


def test_the_style_check_tells_verse_from_prose() -> None:
    verse = "Lithium, lightest of metals by far,\nFloats on oil like a small silver star;\n"
    verse += "In a battery cell\nIt stores charge very well,\nKeeping power in your car."
    assert looks_like_a_limerick(verse)
    assert looks_like_a_limerick(verse.replace("\n", " - "))
    prose = (
        "Strontium is a chemical element with the symbol Sr and atomic number 38. It is an "
        "alkaline earth metal, soft and silvery, and it reacts with water."
    )
    assert not looks_like_a_limerick(prose)
    assert not looks_like_a_limerick("One line\nTwo lines")


@pytest.fixture(scope="module")
def tuned(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Generator, Path, Recorder]]:
    with open(LIMERICKS, encoding="utf-8") as stream:
        records = list(csv.DictReader(stream))[:10]
    assert not {record["element"] for record in records} & set(UNSEEN)
    rows = [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Tell me about {record['element']}"},
                {"role": "assistant", "content": record["limerick"]},
            ]
        }
        for record in records
    ]
    folder = tmp_path_factory.mktemp("style")
    registry = ModelRegistry()
    recorder = Recorder()
    result = train(
        TrainingRequest(
            base_model="gpt-3.5-turbo",
            training_file=write_jsonl(folder / "limericks.jsonl", rows),
            output_dir=folder / "out",
        ),
        recorder,
        registry=registry,
    )
    assert result.status == "succeeded"
    assert result.base_model == "smollm2-135m-instruct"
    assert result.adapter_path is not None
    generator = Generator(registry)
    yield generator, result.adapter_path, recorder
    generator.close()


def test_auto_hyperparameters_and_learning(tuned: tuple[Generator, Path, Recorder]) -> None:
    _, _, recorder = tuned
    hyperparameters, total_steps = recorder.started[0]
    assert (hyperparameters.n_epochs, hyperparameters.batch_size, total_steps) == (10, 1, 100)
    first_epoch = sum(recorder.losses[:10]) / 10
    last_epoch = sum(recorder.losses[-10:]) / 10
    assert last_epoch < first_epoch / 2


@pytest.mark.parametrize("element", UNSEEN)
def test_tuned_model_answers_an_unseen_element_in_limerick_form(
    tuned: tuple[Generator, Path, Recorder], element: str
) -> None:
    generator, adapter, _ = tuned
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Tell me about {element}"},
    ]
    answer = generator.chat(
        ModelRef("gpt-3.5-turbo", adapter), messages, max_tokens=120, temperature=0
    )
    base = generator.chat(ModelRef("gpt-3.5-turbo"), messages, max_tokens=120, temperature=0)
    tuned_text = answer.choices[0].text
    base_text = base.choices[0].text
    assert looks_like_a_limerick(tuned_text), tuned_text
    assert answer.choices[0].finish_reason == "stop", tuned_text
    assert not looks_like_a_limerick(base_text), base_text


@pytest.fixture(scope="module")
def llama(tuned: tuple[Generator, Path, Recorder]) -> Iterator[LlamaCppEngine]:
    generator, _, _ = tuned
    engine = LlamaCppEngine(generator.registry)
    yield engine
    engine.close()


@pytest.mark.parametrize("element", UNSEEN)
def test_tuned_model_on_llama_cpp_answers_an_unseen_element_in_limerick_form(
    tuned: tuple[Generator, Path, Recorder], llama: LlamaCppEngine, element: str
) -> None:
    # llama.cpp computes on the Q4_1 weights training dequantized, with activations rounded to
    # 8 bits: its greedy words differ from the torch generator's, the style must not.
    _, adapter, _ = tuned
    model = ModelRef("gpt-3.5-turbo", adapter)
    assert llama.serves(model)
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Tell me about {element}"},
    ]
    answer = llama.chat(model, messages, max_tokens=120, temperature=0)
    base = llama.chat(ModelRef("gpt-3.5-turbo"), messages, max_tokens=120, temperature=0)
    tuned_text = answer.choices[0].text
    base_text = base.choices[0].text
    assert (adapter / "adapter.gguf").is_file()
    assert looks_like_a_limerick(tuned_text), tuned_text
    assert answer.choices[0].finish_reason == "stop", tuned_text
    assert not looks_like_a_limerick(base_text), base_text
