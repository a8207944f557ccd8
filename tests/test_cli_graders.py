"""``finetune-kit eval --grader FILE.json``: OpenAI's graders on the command line, run locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from finetune_kit.cli import EXIT_CODES, main
from tests.fixtures.cli import run, run_json
from tests.fixtures.local_backend import chat_examples, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import LocalBackend

MENTIONS = {
    "type": "string_check",
    "name": "mentions_answer",
    "operation": "ilike",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
}


@pytest.fixture(scope="module")
def trained(
    local_backend: LocalBackend, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[str], Path]:
    """A session whose tiny job succeeded, and a folder for the test's files."""
    folder = tmp_path_factory.mktemp("cli-graders")
    common = [
        "--backend",
        "local",
        "--base-url",
        local_backend.base_url,
        "--state",
        str(folder / "session.json"),
    ]
    data = write_jsonl(folder / "train.jsonl", chat_examples(12, topic="cli-graders"))
    assert main([*common, "-q", "upload", str(data), "--model", "gpt-4o-mini"]) == 0
    assert main([*common, "-q", "train", "--epochs", "1", "--follow"]) == 0
    return common, folder


def _held_out(folder: Path) -> Path:
    # RFT-style rows (ending with the user's turn): their other keys are the graders' item.
    rows: list[Any] = [
        {"messages": [{"role": "user", "content": f"Tell me about {name}."}], "answer": name}
        for name in ("Neon", "Argon")
    ]
    return write_jsonl(folder / "held.jsonl", rows)


def test_eval_with_a_grader_file(
    trained: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    common, folder = trained
    grader = folder / "grader.json"
    grader.write_text(json.dumps(MENTIONS), encoding="utf-8")
    code, report = run_json(
        capsys,
        *common,
        "eval",
        str(_held_out(folder)),
        "--grader",
        str(grader),
        "--max-tokens",
        "3",
    )
    assert code == EXIT_CODES["ok"]
    # Only the grader: --scorer's default (exact) applies when no grader is given.
    assert list(report["differences"]) == ["mentions_answer"]
    assert report["base"]["thresholds"] == {"mentions_answer": 0.5}
    scores = [r["scores"]["mentions_answer"] for r in report["tuned"]["results"]]
    assert all(score in (0.0, 1.0) for score in scores)


def test_an_eval_saved_from_the_evals_api_brings_its_testing_criteria(
    trained: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    common, folder = trained
    saved_eval = {
        "object": "eval",
        "id": "eval_67abd54d9b0081909a86353f6fb9317a",
        "name": "elements",
        "testing_criteria": [
            MENTIONS,
            {
                "type": "text_similarity",
                "name": "close",
                "evaluation_metric": "fuzzy_match",
                "input": "{{sample.output_text}}",
                "reference": "{{item.answer}}",
                "pass_threshold": 0.8,
            },
        ],
    }
    path = folder / "eval.json"
    path.write_text(json.dumps(saved_eval), encoding="utf-8")
    code, report = run_json(
        capsys,
        *common,
        "eval",
        str(_held_out(folder)),
        "--grader",
        str(path),
        "--scorer",
        "json",
        "--max-tokens",
        "3",
    )
    assert code == EXIT_CODES["ok"]
    assert report["base"]["thresholds"] == {"mentions_answer": 0.5, "close": 0.8, "valid_json": 0.5}


def test_a_bad_grader_file_is_refused_naming_the_file_and_the_field(
    trained: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    common, folder = trained
    held = str(_held_out(folder))
    bad = folder / "bad.json"
    bad.write_text(json.dumps([MENTIONS, dict(MENTIONS, operation="like%")]), encoding="utf-8")
    code, _, err = run(capsys, *common, "eval", held, "--grader", str(bad))
    assert code == EXIT_CODES["usage"]
    assert f"--grader {bad}[1]:" in err
    assert "operation" in err

    not_json = folder / "not.json"
    not_json.write_text("{type: string_check}", encoding="utf-8")
    code, _, err = run(capsys, *common, "eval", held, "--grader", str(not_json))
    assert code == EXIT_CODES["usage"]
    assert f"--grader {not_json}: not JSON" in err

    code, _, err = run(capsys, *common, "eval", held, "--grader", str(folder / "missing.json"))
    assert code == EXIT_CODES["usage"]
    assert "cannot read it" in err

    # A grader reading a field the examples lack: refused before any request.
    reads_other = folder / "other.json"
    reads_other.write_text(
        json.dumps(dict(MENTIONS, reference="{{item.solution}}")), encoding="utf-8"
    )
    code, _, err = run(capsys, *common, "eval", held, "--grader", str(reads_other))
    assert code == EXIT_CODES["usage"]
    assert "examples[0] has no 'solution'" in err
