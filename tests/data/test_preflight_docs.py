"""docs/preflight.md documents every rule (code and severity) and every model of the table."""

from __future__ import annotations

import re
from pathlib import Path

from finetune_kit.data.issues import RULES
from finetune_kit.data.models import MODEL_TABLE
from finetune_kit.data.tokens import IMAGE_TOKENS_HIGH, IMAGE_TOKENS_LOW

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_rule_has_a_row_with_its_severity() -> None:
    text = (DOCS / "preflight.md").read_text()
    rows = dict(
        re.findall(r"^\| `([a-z_0-9]+)`(?: \(cookbook\))? \| (error|warning|info) \|", text, re.M)
    )
    assert rows == {code: rule.severity for code, rule in RULES.items()}
    cookbook = set(re.findall(r"^\| `([a-z_0-9]+)` \(cookbook\)", text, re.M))
    assert cookbook == {code for code, rule in RULES.items() if rule.origin == "cookbook"}
    assert len(cookbook) == 7


def test_every_model_is_in_the_docs_table() -> None:
    text = (DOCS / "preflight.md").read_text()
    for info in MODEL_TABLE:
        base = info.name.rsplit("-", 1)[0] if info.name.endswith(("-1106",)) else info.name
        assert f"`{base}" in text or f"`{info.name}`" in text, info.name


def test_token_rules_are_documented_with_their_numbers() -> None:
    text = (DOCS / "tokens.md").read_text()
    assert f"{IMAGE_TOKENS_LOW} tokens" in text
    assert str(IMAGE_TOKENS_HIGH) in text
