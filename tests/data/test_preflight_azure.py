"""preflight(..., profile="azure"): the file rules Azure OpenAI states and OpenAI does not."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from finetune_kit.data import azure_profile
from finetune_kit.data.dataset import Dataset
from finetune_kit.data.issues import RULES
from finetune_kit.data.validation import preflight
from finetune_kit.errors import ConfigurationError

AS_OF = date(2026, 1, 1)
AZURE_MINI = "gpt-4.1-mini-2025-04-14"


def chat(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "You are a chemistry tutor."},
            {"role": "user", "content": f"What is special about element {i}?"},
            {"role": "assistant", "content": f"Element {i} has {i} protons."},
        ]
    }


def jsonl(rows: list[Any], *, bom: bool = False) -> bytes:
    text = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    return (b"\xef\xbb\xbf" if bom else b"") + text


def codes(report: Any) -> set[str]:
    return {issue.code for issue in report.issues}


def test_the_openai_profile_is_the_default_and_says_nothing_of_azure() -> None:
    report = preflight(jsonl([chat(i) for i in range(12)]), model=AZURE_MINI, as_of=AS_OF)
    assert not {code for code in codes(report) if code.startswith("azure_")}


def test_a_bom_is_what_azure_asks_for_and_its_absence_an_info() -> None:
    rows = [chat(i) for i in range(12)]
    with_bom = preflight(jsonl(rows, bom=True), model=AZURE_MINI, profile="azure", as_of=AS_OF)
    assert "byte_order_mark" not in codes(with_bom)  # a warning under OpenAI's rules
    assert "azure_byte_order_mark_missing" not in codes(with_bom)
    assert with_bom.ok
    without = preflight(jsonl(rows), model=AZURE_MINI, profile="azure", as_of=AS_OF)
    [missing] = [i for i in without.issues if i.code == "azure_byte_order_mark_missing"]
    assert (missing.severity, missing.file) == ("info", "training")
    assert without.ok
    # Records have no encoding of their own: the upload writes them.
    records = preflight(Dataset.from_dicts(rows), model=AZURE_MINI, profile="azure", as_of=AS_OF)
    assert "azure_byte_order_mark_missing" not in codes(records)
    # The resource's limits are said once, as an info.
    assert [i.code for i in records.infos].count("azure_resource_file_limits") == 1


def test_a_file_over_512_mb_is_an_error_on_azure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = jsonl([chat(i) for i in range(12)], bom=True)
    path = tmp_path / "train.jsonl"
    path.write_bytes(data)
    monkeypatch.setattr(azure_profile, "AZURE_MAX_FILE_BYTES", len(data) - 1)
    report = preflight(path, validation=path, model=AZURE_MINI, profile="azure", as_of=AS_OF)
    too_large = [(i.file, i.severity) for i in report.issues if i.code == "azure_file_too_large"]
    assert too_large == [("training", "error"), ("validation", "error")]
    assert not report.ok
    # OpenAI's Uploads API takes such a file: no error there.
    assert "azure_file_too_large" not in codes(preflight(path, model=AZURE_MINI, as_of=AS_OF))


def test_reinforcement_on_azure_needs_a_validation_file_and_keeps_to_its_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = {"messages": [{"role": "user", "content": "2+2?"}], "reference_answer": "4"}
    alone = preflight(jsonl([row] * 12), model="o4-mini", profile="azure", as_of=AS_OF)
    assert "azure_validation_file_required" in {i.code for i in alone.errors}
    assert "validation_file_required" not in codes(alone)  # the common warning, replaced
    monkeypatch.setattr(azure_profile, "AZURE_RFT_MAX_TRAINING_EXAMPLES", 11)
    monkeypatch.setattr(azure_profile, "AZURE_RFT_MAX_VALIDATION_EXAMPLES", 1)
    over = preflight(
        jsonl([row] * 12),
        validation=jsonl([row] * 2),
        model="o4-mini",
        profile="azure",
        as_of=AS_OF,
    )
    found = [(i.file, i.message) for i in over.issues if i.code == "azure_rft_too_many_examples"]
    assert [file for file, _ in found] == ["training", "validation"]
    assert "12 training examples" in found[0][1]
    assert "azure_validation_file_required" not in codes(over)


def test_every_azure_rule_is_in_the_catalogue_with_its_severity() -> None:
    report = preflight(jsonl([chat(i) for i in range(12)]), profile="azure", as_of=AS_OF)
    assert all(i.severity == RULES[i.code].severity for i in report.issues)
    with pytest.raises(ConfigurationError) as caught:
        preflight(jsonl([chat(1)]), profile="azure-ish")
    assert caught.value.param == "profile"
