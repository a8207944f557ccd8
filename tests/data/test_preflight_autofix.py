"""autofix(): only safe fixes, a new dataset, and the list of every change."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from finetune_kit.cli import EXIT_CODES
from finetune_kit.data.dataset import Dataset
from finetune_kit.data.fixes import autofix
from finetune_kit.data.validation import preflight
from finetune_kit.errors import ConfigurationError, ExampleValidationError
from tests.fixtures.cli import run


def chat(user: str, answer: str) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    }


def test_fixes_a_messy_file_and_lists_each_change() -> None:
    lines = [
        json.dumps(chat("  Hi ", "Hello!\n")),
        "",
        json.dumps(chat("Q2", "A2")),
        json.dumps(chat("Hi", "Hello!")),  # a duplicate of line 1 once trimmed
        "{broken",
        "[1, 2]",
    ]
    data = b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"
    result = autofix(data)
    assert result.rows == (chat("Hi", "Hello!"), chat("Q2", "A2"))
    assert [(c.line, c.action, c.field) for c in result.changes] == [
        (None, "normalize_line_endings", None),
        (1, "remove_byte_order_mark", None),
        (1, "strip_whitespace", "messages[0].content"),
        (1, "strip_whitespace", "messages[1].content"),
        (2, "drop_blank_line", None),
        (4, "drop_duplicate", None),
        (5, "drop_unreadable_line", None),
        (6, "drop_unreadable_line", None),
    ]
    assert result.changes[5].detail == "same as line 1"
    assert [(u.line, u.problem) for u in result.unreadable] == [
        (5, "invalid_json"),
        (6, "data_type"),
    ]
    clean = preflight(result.to_jsonl_bytes(), model=None, min_examples=1)
    assert clean.ok
    assert not clean.warnings


def test_system_prompt_only_where_missing_and_in_the_right_place() -> None:
    pair = {
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello"}],
        "non_preferred_output": [{"role": "assistant", "content": "No"}],
    }
    has_system = {"messages": [{"role": "system", "content": "Old."}, *chat("a", "b")["messages"]]}
    result = autofix([chat("a", "b"), has_system, pair], system_prompt="Be kind.")
    assert result.rows[0]["messages"][0] == {"role": "system", "content": "Be kind."}
    assert result.rows[1] == has_system
    assert result.rows[2]["input"]["messages"][0] == {"role": "system", "content": "Be kind."}
    assert [(c.line, c.field) for c in result.changes] == [
        (1, "messages[0]"),
        (3, "input.messages[0]"),
    ]
    rft = autofix(
        [{"messages": [{"role": "user", "content": "2+2?"}], "answer": "4"}],
        system_prompt="Think.",
        system_role="developer",
    )
    assert rft.rows[0]["messages"][0]["role"] == "developer"


def test_input_records_are_never_modified() -> None:
    rows = [chat(" a ", " b "), chat(" a ", " b ")]
    before = copy.deepcopy(rows)
    result = autofix(rows, system_prompt="S")
    assert rows == before
    assert len(result) == 1


def test_fixes_can_be_switched_off() -> None:
    rows = [chat(" a ", "b"), chat(" a ", "b")]
    result = autofix(rows, strip_whitespace=False, drop_duplicates=False)
    assert list(result) == rows
    assert result.changes == ()


def test_whitespace_is_never_stripped_to_nothing() -> None:
    result = autofix([chat("   ", "b")])
    assert result.rows[0]["messages"][0]["content"] == "   "
    assert result.changes == ()


def test_the_result_is_a_dataset_and_writes_jsonl(tmp_path: Path) -> None:
    result = autofix([chat("Hi ", "Hello"), chat("Q", "A")])
    dataset = result.dataset
    assert isinstance(dataset, Dataset)
    assert dataset == Dataset.from_dicts(result.rows)
    path = tmp_path / "fixed.jsonl"
    assert result.to_jsonl(path) == 2
    assert path.read_bytes() == result.to_jsonl_bytes() == dataset.to_jsonl_bytes()
    assert preflight(result, model=None, min_examples=1).ok


def test_jsonl_text_is_not_mistaken_for_a_path() -> None:
    with pytest.raises(ConfigurationError, match="encode"):
        autofix('{"messages": []}\n')


def _weight_on_user_file(tmp_path: Path) -> Path:
    """Line 3 blank, line 5 a user turn with a weight, line 7 not JSON: 12 examples in all."""
    lines = [json.dumps(chat(f"Q{i}", f"A{i}")) for i in range(12)]
    lines.insert(2, "")
    bad = chat("Q weighted", "A")
    bad["messages"][0]["weight"] = 1
    lines.insert(4, json.dumps(bad))
    lines.insert(6, "{broken")
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fixed_data_keeps_the_original_line_numbers(tmp_path: Path) -> None:
    path = _weight_on_user_file(tmp_path)
    before = preflight(path, model=None)
    assert ("weight_on_non_assistant", 5) in {(i.code, i.line) for i in before.errors}

    result = autofix(path)
    assert result.lines[:5] == (1, 2, 4, 5, 6)
    # The row that still breaks the schema is named by its line in the user's file, not by
    # its position among the rows left after the blank line was dropped.
    with pytest.raises(ExampleValidationError) as info:
        _ = result.dataset
    assert info.value.line == 5
    assert "line 5" in str(info.value)
    after = preflight(result, model=None)
    assert {(i.code, i.line, i.field) for i in after.errors} == {
        ("weight_on_non_assistant", 5, "messages[0].weight")
    }


def test_lines_dropped_as_unreadable_are_counted_among_the_changes(tmp_path: Path) -> None:
    result = autofix(_weight_on_user_file(tmp_path))
    assert [(c.line, c.action) for c in result.changes] == [
        (3, "drop_blank_line"),
        (7, "drop_unreadable_line"),
    ]
    assert "invalid JSON" in result.changes[1].detail
    assert [(u.line, u.problem) for u in result.unreadable] == [(7, "invalid_json")]


def test_cli_fix_writes_the_file_and_reports_the_fixed_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _weight_on_user_file(tmp_path)
    fixed = tmp_path / "fixed.jsonl"
    code, out, err = run(capsys, "--json", "preflight", str(path), "--fix", str(fixed))
    # The weight on a user turn is not a safe fix: the report of the fixed data still has it,
    # at the line of the user's file, and the fixed file is written all the same.
    assert code == EXIT_CODES["data"], err
    report = json.loads(out)
    assert [(i["code"], i["line"]) for i in report["issues"] if i["severity"] == "error"] == [
        ("weight_on_non_assistant", 5)
    ]
    assert report["training"]["n_examples"] == 13
    assert report["training"]["n_blank_lines"] == 0
    assert len(fixed.read_text().splitlines()) == 13
    assert "2 change(s)" in err
    assert str(path) in err
