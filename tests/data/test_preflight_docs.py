"""docs/preflight.md documents every rule (code and severity) and the model table as coded."""

from __future__ import annotations

import re
from pathlib import Path

from finetune_kit.data.base_models import MODEL_TABLE
from finetune_kit.data.issues import RULES
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


_METHODS = {"supervised": "SFT", "dpo": "DPO", "reinforcement": "RFT"}


def docs_model_table() -> dict[str, list[str]]:
    """The rows of the model table in docs/preflight.md: model name to its other cells."""
    text = (DOCS / "preflight.md").read_text()
    section = text.split("\n## The model table\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\| `([^`]+)` \|(.*)\|", line)
        if match:
            assert match.group(1) not in rows, f"two rows for {match.group(1)}"
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def tagged(cell: str) -> tuple[str, str | None]:
    """Split a cell into its value and its confidence tag: "$3.00 [3p]" -> ("$3.00", "3p")."""
    match = re.fullmatch(r"(.*?)(?: \[(official|3p|recall)\])?", cell)
    assert match, cell
    return match.group(1), match.group(2)


def money(text: str) -> float | None:
    return None if text == "-" else float(text.removeprefix("$"))


def test_the_docs_model_table_has_the_codes_limits_prices_and_dates() -> None:
    rows = docs_model_table()
    assert set(rows) == {info.name for info in MODEL_TABLE}
    for info in MODEL_TABLE:
        encoding, limit, methods, training, inference, shutdown = rows[info.name]
        where = f"docs/preflight.md, the row of {info.name}"
        assert f"{encoding}_base" == info.encoding, where
        expected_limit = f"{info.max_example_tokens:,}" if info.max_example_tokens else "-"
        assert tagged(limit)[0] == expected_limit, where
        assert set(re.findall(r"\b(?:SFT|DPO|RFT)\b", methods)) == {
            _METHODS[method] for method in info.methods
        }, where
        assert ("vision" in methods) == info.supports_images, where
        for images in (info.max_images_per_example, info.azure_max_images_per_example):
            assert images is None or re.search(rf"\b{images}\b", methods), where
        assert ("prompt/completion" in methods) == (info.data_format == "completion"), where
        price, confidence = tagged(training)
        if info.training_price_per_hour is not None:
            assert price == f"${info.training_price_per_hour:g} per hour", where
        else:
            assert money(price) == info.training_price_per_1m, where
        assert confidence == info.training_price_confidence, where
        prices, confidence = tagged(inference)
        expected_prices = (
            info.input_price_per_1m,
            info.cached_input_price_per_1m,
            info.output_price_per_1m,
        )
        if prices == "-":
            assert expected_prices == (None, None, None), where
        else:
            assert tuple(money(p) for p in prices.split(" / ")) == expected_prices, where
        assert confidence == info.inference_price_confidence, where
        # A shutdown date is shown with its confidence and the date of its own source.
        match = re.fullmatch(r"(\S+)(?: \[(official|3p|recall), as of (\S+)\])?", shutdown)
        assert match, where
        day, confidence, as_of = match.groups()
        assert day == (info.shutdown_date.isoformat() if info.shutdown_date else "-"), where
        assert confidence == info.shutdown_confidence, where
        assert as_of == (info.shutdown_as_of.isoformat() if info.shutdown_as_of else None), where


def test_token_rules_are_documented_with_their_numbers() -> None:
    text = (DOCS / "tokens.md").read_text()
    assert f"{IMAGE_TOKENS_LOW} tokens" in text
    assert str(IMAGE_TOKENS_HIGH) in text
