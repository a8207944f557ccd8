"""The examples run as written: the notebook (on the tiny model) and the quickstart."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune_kit.cli import main
from finetune_kit.quickstart import HELD_OUT_ELEMENTS, run_quickstart

ROOT = Path(__file__).resolve().parent.parent


def _is_limerick(text: str) -> bool:
    # A limerick: four or more short verse lines, not one paragraph of prose.
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) >= 4 and max(len(line) for line in lines) < 80


def test_notebook_runs_as_written(tmp_path: Path) -> None:
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    notebook = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("Strontium" in page for page in html)  # the comparison rendered as HTML
    # Shown inline, not only written to a file: the loss curve as an image, and the job's
    # progress as a widget bar (tqdm's notebook bar, which needs ipywidgets).
    kinds = {kind for o in outputs for kind in o.get("data", {})}
    assert "image/png" in kinds
    assert "application/vnd.jupyter.widget-view+json" in kinds
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "IProgress not found" not in stderr


def test_quickstart_command_on_the_tiny_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["quickstart", "--model", "tiny-random", "--output", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    for element in HELD_OUT_ELEMENTS:
        assert f"Tell me about {element}" in printed
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "comparison.txt").read_text().strip() in printed


@pytest.mark.slow
def test_quickstart_teaches_smollm2_the_style(tmp_path: Path) -> None:
    result = run_quickstart(output_dir=tmp_path, progress=False)
    rows = result.comparison.rows
    tuned = [row.tuned.text for row in rows if row.tuned is not None]
    base = [row.base.text for row in rows if row.base is not None]
    assert len(tuned) == len(base) == len(HELD_OUT_ELEMENTS)
    # The tuned model answers unseen elements in verse; the base model mostly in prose.
    assert sum(_is_limerick(text) for text in tuned) >= 3, tuned
    assert sum(_is_limerick(text) for text in base) <= 1, base
    assert result.base_model == "smollm2-135m-instruct"
    losses = [loss for loss in result.train_loss if loss is not None]
    assert sum(losses[-5:]) < sum(losses[:5])
