"""The corpus of malformed files: each gives the right code at the right line; none crashes.

tests/data/bad_inputs/expectations.json maps each file to the model (and method, validation
file) to check it with and the issues it must raise, as ``[code, line]`` or
``[code, line, field]``. Unless ``exact_errors`` is false, the file's error-severity issues
must be exactly the expected ones: a rule that fires where it should not fails the test too.
"""

from __future__ import annotations

import ast
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from finetune_kit.data.fixes import autofix
from finetune_kit.data.issues import RULES
from finetune_kit.data.jsonl import iter_lines
from finetune_kit.data.report import PreflightReport
from finetune_kit.data.validation import preflight

CORPUS = Path(__file__).parent / "bad_inputs"
EXPECTATIONS: dict[str, dict[str, Any]] = json.loads((CORPUS / "expectations.json").read_text())
# Before any model in the table shuts down, so no shutdown issue mixes in.
AS_OF = date(2026, 1, 1)
# The codes no corpus file can raise (a file over 512 MB, the day's date, a missing validation
# file...), each with the test that asserts it instead.
TESTED_ELSEWHERE = {
    "file_too_large_for_files_api": "test_preflight.py::test_file_size_limits",
    "file_too_large": "test_preflight.py::test_file_size_limits",
    "below_recommended_examples": (
        "test_preflight.py::test_a_good_file_is_ready_with_counts_tokens_epochs_and_cost"
    ),
    "validation_file_required": "test_preflight.py::test_method_detection_and_model_methods",
    "cost_not_estimated": "test_preflight.py::test_method_detection_and_model_methods",
    "unknown_model": "test_preflight.py::test_unknown_model_falls_back_to_o200k_with_a_warning",
    "no_model": "test_preflight.py::test_no_model_by_default_checks_the_data_alone_and_says_so",
    "backend_rejects_example": (
        "test_preflight_local.py::test_an_example_the_local_model_cannot_read_is_an_error_of_preflight"
    ),
    "model_shut_down": "test_preflight.py::test_shutdown_dates",
    "model_shutdown_soon": "test_preflight.py::test_shutdown_dates",
    "azure_file_too_large": "test_preflight_azure.py::test_a_file_over_512_mb_is_an_error_on_azure",
    "azure_byte_order_mark_missing": (
        "test_preflight_azure.py::test_a_bom_is_what_azure_asks_for_and_its_absence_an_info"
    ),
    "azure_resource_file_limits": (
        "test_preflight_azure.py::test_a_bom_is_what_azure_asks_for_and_its_absence_an_info"
    ),
    "azure_validation_file_required": (
        "test_preflight_azure.py::"
        "test_reinforcement_on_azure_needs_a_validation_file_and_keeps_to_its_limits"
    ),
    "azure_rft_too_many_examples": (
        "test_preflight_azure.py::"
        "test_reinforcement_on_azure_needs_a_validation_file_and_keeps_to_its_limits"
    ),
}


def _run(name: str, **options: Any) -> PreflightReport:
    spec = EXPECTATIONS[name]
    validation = spec.get("validation")
    return preflight(
        CORPUS / name,
        model=spec["model"],
        method=spec.get("method"),
        validation=CORPUS / validation if validation else None,
        as_of=AS_OF,
        **options,
    )


def test_the_corpus_is_complete() -> None:
    companions = {spec["validation"] for spec in EXPECTATIONS.values() if "validation" in spec}
    files = {p.name for p in CORPUS.iterdir() if p.name != "expectations.json"}
    assert files == set(EXPECTATIONS) | companions
    assert len(EXPECTATIONS) >= 40
    for spec in EXPECTATIONS.values():
        assert spec["expect"], spec
        for code, *_ in spec["expect"]:
            assert code in RULES, code


def test_every_rule_is_tested() -> None:
    in_corpus = {code for spec in EXPECTATIONS.values() for code, *_ in spec["expect"]}
    untested = set(RULES) - in_corpus - set(TESTED_ELSEWHERE)
    assert not untested, (
        f"no corpus file or test for {sorted(untested)}: add a file to tests/data/bad_inputs "
        "and its expected code, line and field to expectations.json"
    )
    for code, where in TESTED_ELSEWHERE.items():
        assert code in RULES, code
        path, name = where.split("::")
        tree = ast.parse((Path(__file__).parent / path).read_text())
        functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        (test,) = [node for node in functions if node.name == name]
        strings = {node.value for node in ast.walk(test) if isinstance(node, ast.Constant)}
        assert code in strings, f"{where} does not assert {code}"


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_each_file_gives_its_codes_at_its_lines(name: str) -> None:
    spec = EXPECTATIONS[name]
    report = _run(name, workers=1)
    for code, line, *field in spec["expect"]:
        matches = [i for i in report.issues if i.code == code and i.line == line]
        assert matches, f"{name}: no {code} at line {line}; got {report.issues[:10]}"
        if field:
            assert field[0] in {i.field for i in matches}, f"{name}: {code} fields {matches}"
    if spec.get("exact_errors", True):
        expected = {
            (code, line) for code, line, *_ in spec["expect"] if RULES[code].severity == "error"
        }
        assert {(i.code, i.line) for i in report.errors} == expected, report.errors
    assert report.ok is not any(RULES[code].severity == "error" for code, *_ in spec["expect"])
    # Whatever the file, the report renders and the reader and autofix get through it.
    assert json.loads(report.to_json())["issue_counts"]
    assert "<script" not in report._repr_html_()
    assert str(report)
    data = (CORPUS / name).read_bytes()
    starts = [0] + [at + 1 for at in range(len(data)) if data[at : at + 1] == b"\n"]
    if not data or data.endswith(b"\n"):
        starts.pop()  # no line after the final newline
    lines = list(iter_lines(CORPUS / name))
    assert [(line.number, line.offset) for line in lines] == list(enumerate(starts, start=1))
    assert report.training.n_lines == len(starts)
    autofix(CORPUS / name)


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_the_worker_processes_report_the_same(name: str) -> None:
    assert _run(name, workers=2).to_dict() == _run(name, workers=1).to_dict()


def test_issues_name_where_and_how_to_fix() -> None:
    report = _run("weight_two.jsonl")
    issue = report.errors[0]
    assert (issue.file, issue.line, issue.field) == ("training", 3, "messages[1].weight")
    assert "2" in issue.message
    assert "0" in issue.fix
    assert "1" in issue.fix


def test_invalid_utf8_reports_the_byte_offset() -> None:
    data = (CORPUS / "invalid_utf8.jsonl").read_bytes()
    (issue,) = _run("invalid_utf8.jsonl").errors
    assert f"byte offset {data.index(b'caf') + 3}" in issue.message
