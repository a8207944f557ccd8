"""The finetune-kit command, run in-process against the local backend."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from finetune_kit.cli import EXIT_CODES, main
from tests.fixtures.cli import run, run_json
from tests.fixtures.local_backend import chat_examples, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import LocalBackend


# Preflight compares the model's shutdown date with --as-of: a fixed day keeps these tests
# independent of today's (gpt-4o-mini's OpenAI shutdown is 2027-01-14).
BEFORE_SHUTDOWN = "2026-01-01"


def test_preflight_exit_codes_and_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", chat_examples(12))
    code, report = run_json(
        capsys, "preflight", str(good), "--model", "gpt-4o-mini", "--as-of", BEFORE_SHUTDOWN
    )
    assert code == EXIT_CODES["ok"]
    assert report["ok"] is True
    assert report["as_of"] == BEFORE_SHUTDOWN

    code, report = run_json(
        capsys, "preflight", str(good), "--model", "gpt-4o-mini", "--as-of", "2027-02-01"
    )
    assert code == EXIT_CODES["data"]
    assert "model_shut_down" in {issue["code"] for issue in report["issues"]}
    with pytest.raises(SystemExit) as info:
        main(["preflight", str(good), "--as-of", "soon"])
    assert info.value.code == EXIT_CODES["usage"]
    assert "'soon' is not a date: use YYYY-MM-DD" in capsys.readouterr().err

    rows: list[Any] = chat_examples(12)
    rows[4] = '{"messages": [{"role": "user", "content": "hi", "weight": 2}]}'
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    code, report = run_json(capsys, "preflight", str(bad), "--as-of", BEFORE_SHUTDOWN)
    assert code == EXIT_CODES["data"]
    lines = {(issue["code"], issue["line"]) for issue in report["issues"]}
    assert ("example_missing_assistant_message", 5) in lines

    code, out, _ = run(capsys, "preflight", str(bad), "--as-of", BEFORE_SHUTDOWN)
    assert code == EXIT_CODES["data"]
    assert "line 5" in out


def test_preflight_fix_writes_a_clean_copy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rows: list[Any] = chat_examples(12)
    rows.insert(3, "")
    rows.append(rows[0])
    messy = write_jsonl(tmp_path / "messy.jsonl", rows)
    fixed = tmp_path / "fixed.jsonl"
    code, _, err = run(
        capsys, "preflight", str(messy), "--as-of", BEFORE_SHUTDOWN, "--fix", str(fixed)
    )
    assert code == EXIT_CODES["ok"]  # blank lines and duplicates are warnings, not errors
    assert "change(s)" in err
    assert len(fixed.read_text().splitlines()) == 12


def test_build_from_csv_with_a_split(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["element", "fact"])
        for i in range(20):
            writer.writerow([f"E{i}", f"fact {i}"])
    out = tmp_path / "train.jsonl"
    code, written = run_json(
        capsys,
        "build",
        str(source),
        "--user",
        "Tell me about {element}",
        "--assistant",
        "{fact}",
        "--system",
        "Be brief.",
        "-o",
        str(out),
        "--validation-split",
        "0.25",
    )
    assert code == EXIT_CODES["ok"]
    assert written["examples"] + written["validation_examples"] == 20
    training = [json.loads(line) for line in out.read_text().splitlines()]
    validation = [json.loads(line) for line in Path(written["validation"]).read_text().splitlines()]
    assert len(training) == written["examples"]
    assert training[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert {json.dumps(r) for r in training}.isdisjoint(json.dumps(r) for r in validation)


def test_build_names_a_missing_column(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("element,fact\nNeon,glows\n")
    code, _, err = run(
        capsys,
        "build",
        str(source),
        "--user",
        "{elemnt}",
        "--assistant",
        "{fact}",
        "-o",
        str(tmp_path / "o.jsonl"),
    )
    assert code == EXIT_CODES["data"]
    assert "elemnt" in err


def test_whole_workflow_through_the_command(
    local_backend: LocalBackend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "session.json"
    common = ["--backend", "local", "--base-url", local_backend.base_url, "--state", str(state)]
    data = write_jsonl(tmp_path / "train.jsonl", chat_examples(12, topic="cli"))

    code, uploaded = run_json(capsys, *common, "upload", str(data), "--model", "gpt-4o-mini")
    assert code == EXIT_CODES["ok"]
    assert uploaded["training_file"].startswith("file-")

    code, job = run_json(capsys, *common, "train", "--epochs", "2", "--follow")
    assert code == EXIT_CODES["ok"]
    assert job["status"] == "succeeded"
    assert job["hyperparameters"]["n_epochs"] == 2

    # A second train carries on with the same job instead of creating another.
    code, again = run_json(capsys, *common, "train")
    assert again["id"] == job["id"]

    code, status = run_json(capsys, *common, "status")
    assert status["fine_tuned_model"] == job["fine_tuned_model"]

    code, events = run_json(capsys, *common, "events")
    assert events[-1]["message"] == "The job has successfully completed"
    assert len({e["id"] for e in events}) == len(events)

    code, checkpoints = run_json(capsys, *common, "checkpoints")
    assert checkpoints
    assert checkpoints[0]["fine_tuned_model_checkpoint"].startswith(job["fine_tuned_model"])

    code, reply = run_json(capsys, *common, "chat", "Tell me about Neon", "--max-tokens", "3")
    assert reply["model"] == job["fine_tuned_model"]
    step = str(checkpoints[-1]["step_number"])
    code, reply = run_json(capsys, *common, "chat", "hi", "--checkpoint", step, "--max-tokens", "2")
    assert reply["model"].endswith(f":ckpt-step-{step}")

    code, comparison = run_json(
        capsys, *common, "compare", "Tell me about Argon", "Tell me about Neon", "--max-tokens", "3"
    )
    assert [row["prompt"] for row in comparison["rows"]] == [
        "Tell me about Argon",
        "Tell me about Neon",
    ]

    held_out = write_jsonl(tmp_path / "held.jsonl", chat_examples(4, topic="held"))
    code, report = run_json(
        capsys, *common, "eval", str(held_out), "--scorer", "contains", "--max-tokens", "3"
    )
    assert code == EXIT_CODES["ok"]
    assert len(report["base"]["results"]) == 4

    code, exported = run_json(capsys, *common, "export", str(tmp_path / "export"))
    assert "results.csv" in exported["files"]

    code, out, _ = run(capsys, *common, "status")
    assert f"job {job['id']}: succeeded" in out


def test_a_failed_job_exits_4_and_shows_the_line(
    local_backend: LocalBackend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rows: list[Any] = chat_examples(12, topic="cli-broken")
    rows[2]["messages"][1]["weight"] = 1
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    common = [
        "--backend",
        "local",
        "--base-url",
        local_backend.base_url,
        "--state",
        str(tmp_path / "s.json"),
    ]
    code, _, err = run(capsys, *common, "upload", str(data), "--model", "gpt-4o-mini")
    assert code == EXIT_CODES["data"]
    assert "line 3" in err
    code, _, _ = run(capsys, *common, "upload", str(data), "--force", "--model", "gpt-4o-mini")
    assert code == EXIT_CODES["ok"]
    code, _, err = run(capsys, *common, "-q", "train", "--follow")
    assert code == EXIT_CODES["job_failed"]
    assert "line 3" in err
    assert '"weight": 1' in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--method", "magic"])
    assert info.value.code == EXIT_CODES["usage"]
    common = ["--state", str(tmp_path / "s.json"), "--backend", "local"]
    common += ["--base-url", "http://127.0.0.1:9/v1"]
    code, _, err = run(capsys, *common, "train", "--epochs", "many", "--model", "m")
    assert code == EXIT_CODES["usage"]
    assert "--epochs must be a number or 'auto', got 'many'" in err
    code, _, err = run(capsys, *common, "train", "--model", "m")
    assert code == EXIT_CODES["usage"]
    assert "upload FILE' (or train --file FILE) first" in err


def test_unknown_job_is_an_api_error(
    local_backend: LocalBackend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    common = ["--backend", "local", "--base-url", local_backend.base_url]
    code, _, err = run(capsys, *common, "--state", str(tmp_path / "s.json"), "status", "ftjob-nope")
    assert code == EXIT_CODES["api"]
    assert "ftjob-nope" in err
