"""finetune-kit quickstart on the tiny model: under --json, stdout is the JSON document alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune_kit.cli import EXIT_CODES, main
from finetune_kit.quickstart import HELD_OUT_ELEMENTS, limerick_dataset


def test_quickstart_json_prints_one_document_and_the_table_on_stderr(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_dir = tmp_path / "qs"
    code = main(["--json", "quickstart", "--model", "tiny-random", "--output", str(out_dir)])
    captured = capsys.readouterr()
    assert code == EXIT_CODES["ok"], captured.err
    result = json.loads(captured.out)  # nothing else on stdout
    assert result["job_id"].startswith("ftjob-")
    assert Path(result["loss_curve"]).is_file()
    prompts = [row["prompt"] for row in result["comparison"]["rows"]]
    assert prompts == [f"Tell me about {element}" for element in HELD_OUT_ELEMENTS]
    # The table people read still shows, on stderr, next to the progress notes.
    assert prompts[0] in captured.err
    assert (out_dir / "comparison.txt").read_text().strip() in captured.err


def test_the_data_never_names_a_held_out_element() -> None:
    # The comparison asks about elements the data leaves out, to see whether the style carries
    # over; a limerick that mentions one would leak its facts into training.
    text = limerick_dataset().to_jsonl_bytes().decode("utf-8").lower()
    named = [element for element in HELD_OUT_ELEMENTS if element.lower() in text]
    assert named == []
