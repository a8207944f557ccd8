"""The documentation says what the code does: help texts are current, examples run as written."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_cli_help_texts_in_the_docs_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cli-help"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, "docs/cli.md is stale: run scripts/cli-help"


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL)


def test_quickstart_page_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The page's code, unchanged, on the tiny model (the page itself uses SmolLM2).
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_MODEL", "tiny-random")
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks(ROOT / "docs" / "quickstart.md")
    assert len(blocks) == 1
    script = tmp_path / "quickstart_page.py"
    script.write_text(blocks[0], encoding="utf-8")
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert "ft:tiny-random:local:limericks:" in printed
    assert (tmp_path / "loss.png").exists()
    assert (tmp_path / "quickstart.json").exists()


def test_readme_example_runs_as_written_and_matches_the_home_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = _python_blocks(ROOT / "README.md")
    home = _python_blocks(ROOT / "docs" / "index.md")
    assert readme
    assert readme[0] == home[0]
    assert len(readme[0].splitlines()) <= 20
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_MODEL", "tiny-random")
    # As a new user runs it: from an empty folder, with nothing but the package installed.
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    script = tmp_path / "readme_example.py"
    script.write_text(readme[0], encoding="utf-8")
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert "preflight: ready" in printed
    assert "Tell me about Copper" in printed
