"""The custom builder in docs/datasets.md runs as written, and does what the page says."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finetune_kit.data.builders import build_dataset, unregister_builder
from finetune_kit.data.records import ChatExample
from finetune_kit.errors import ConfigurationError

PAGE = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"
MARKER = "<!-- tested by tests/data/test_builders_docs.py -->"


def documented_builder() -> str:
    text = PAGE.read_text(encoding="utf-8")
    after = text.split(MARKER, 1)[1]
    match = re.match(r"\s*```python\n(.*?)\n```", after, re.DOTALL)
    assert match, f"no python block right after the marker in {PAGE}"
    return match.group(1)


@pytest.fixture
def glossary() -> Iterator[dict[str, Any]]:
    namespace: dict[str, Any] = {"__name__": "docs_datasets"}
    exec(compile(documented_builder(), str(PAGE), "exec"), namespace)
    yield namespace
    unregister_builder("glossary")


def test_the_documented_builder_is_about_ten_lines() -> None:
    code = documented_builder()
    body = code.split("class GlossaryBuilder", 1)[1].split("register_builder(", 1)[0]
    statements = [line for line in body.splitlines() if line.strip() and '"""' not in line]
    assert len(statements) <= 12


def test_the_documented_builder_registers_and_builds(glossary: dict[str, Any]) -> None:
    dataset = build_dataset(
        "glossary",
        {"isotope": "An atom of an element with a different number of neutrons."},
        question="Define {term}.",
    )
    example = dataset[0]
    assert isinstance(example, ChatExample)
    assert example.to_dict() == {
        "messages": [
            {"role": "system", "content": "You define chemistry terms in one sentence."},
            {"role": "user", "content": "Define isotope."},
            {
                "role": "assistant",
                "content": "An atom of an element with a different number of neutrons.",
            },
        ]
    }
    assert type(glossary["GlossaryBuilder"]().build({"ion": "A charged atom."})[0]) is ChatExample


def test_the_documented_builder_has_strict_options(glossary: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'question'") as info:
        build_dataset("glossary", {}, questoin="...")
    assert info.value.param == "questoin"
