"""The quickstart: the whole workflow, offline, on the local backend.

It builds a dataset of periodic-table limericks (the project's own, shipped with the package)
with the ``template`` builder, preflights it, uploads it, fine-tunes SmolLM2 on it with LoRA on
this machine, follows the job with a progress bar, then asks the base and the tuned model about
elements that are not in the data, prints both answers side by side, and writes the loss curve
as a PNG. Run it with ``finetune-kit quickstart`` (or ``scripts/quickstart`` on a fresh machine).

An entry point, like the CLI: it uses the facade and the packages' public names only. Its data
ships in ``_quickstart/element_limericks.csv``.

Examples:
    ```python
    from finetune_kit.quickstart import run_quickstart

    result = run_quickstart(model="tiny-random", output_dir="out")  # seconds, random answers
    print(result.comparison)
    ```
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from .data import ChatExample, Dataset, TemplateBuilder
from .inference import Comparison
from .jobs import FollowOptions
from .session import FineTuneSession

__all__ = [
    "HELD_OUT_ELEMENTS",
    "SYSTEM_PROMPT",
    "QuickstartResult",
    "limerick_dataset",
    "run_quickstart",
    "write_limericks_csv",
]

SYSTEM_PROMPT = (
    "You are Elle, a factual chatbot that answers every question about an element of the "
    "periodic table with a limerick."
)
"""The persona the limericks teach."""

HELD_OUT_ELEMENTS = ("Strontium", "Neon", "Copper", "Sulfur")
"""Elements the data leaves out, asked after training to see whether the style carries over."""

_DATA_FILE = "element_limericks.csv"


@dataclass
class QuickstartResult:
    """What the quickstart produced.

    Attributes:
        job_id: The fine-tuning job.
        fine_tuned_model: The tuned model's name on the local backend.
        base_model: The base model the job really trained.
        comparison: Base and tuned answers side by side.
        loss_curve: The PNG of the training loss.
        output_dir: Where everything was written (state, backend data, PNG, comparison).
        seconds: Wall time of the whole run.
        train_loss: The training loss at each step.
    """

    job_id: str
    fine_tuned_model: str
    base_model: str
    comparison: Comparison
    loss_curve: Path
    output_dir: Path
    seconds: float
    train_loss: list[float | None] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "job_id": self.job_id,
            "fine_tuned_model": self.fine_tuned_model,
            "base_model": self.base_model,
            "comparison": self.comparison.to_dict(),
            "loss_curve": str(self.loss_curve),
            "output_dir": str(self.output_dir),
            "seconds": round(self.seconds, 1),
        }


def write_limericks_csv(path: str | os.PathLike[str] = _DATA_FILE) -> Path:
    """Write the project's limericks (CSV, columns ``element`` and ``limerick``) to ``path``.

    The README's example builds its dataset from this file, so it runs from an empty folder.

    Args:
        path: Where to write the CSV (default ``element_limericks.csv`` in the current folder).

    Returns:
        The path written.

    Examples:
        >>> import tempfile, pathlib
        >>> path = write_limericks_csv(pathlib.Path(tempfile.mkdtemp()) / "limericks.csv")
        >>> path.read_text(encoding="utf-8").splitlines()[0]
        'element,limerick'
    """
    target = Path(path)
    source = resources.files("finetune_kit") / "_quickstart" / _DATA_FILE
    target.write_bytes(source.read_bytes())
    return target


def limerick_dataset() -> Dataset[ChatExample]:
    """The project's own limericks as chat examples: "Tell me about X" -> a limerick.

    Returns:
        One example per element in the shipped CSV (26 of them).
    """
    source = resources.files("finetune_kit") / "_quickstart" / _DATA_FILE
    with resources.as_file(source) as path:
        return TemplateBuilder().build(
            Path(path),
            system=SYSTEM_PROMPT,
            user="Tell me about {element}",
            assistant="{limerick}",
        )


def _say(message: str, enabled: bool) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


def run_quickstart(
    *,
    model: str = "smollm2-135m-instruct",
    output_dir: str | os.PathLike[str] = "quickstart-output",
    progress: bool = True,
    max_tokens: int = 80,
    stream: TextIO | None = None,
) -> QuickstartResult:
    """Run the whole workflow offline on the local backend and print the comparison.

    Args:
        model: The local base model (``tiny-random`` runs in seconds but answers noise).
        output_dir: Folder for the session state, the backend's data, the PNG and the
            comparison text.
        progress: Print steps and a progress bar on stderr.
        max_tokens: Longest answer in the comparison.
        stream: Where the comparison table is printed (default: standard output). The CLI's
            ``--json`` passes standard error, so that standard output holds the JSON alone.

    Returns:
        What was produced.
    """
    started = time.monotonic()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "session.json"
    # Each run trains anew (that is the point of a quickstart); the backend's data folder is
    # kept, so the upload is recognised and reused.
    state_path.unlink(missing_ok=True)

    dataset = limerick_dataset()
    _say(f"1/6 built {len(dataset)} limerick examples with the 'template' builder", progress)
    with FineTuneSession(
        "local",
        model="gpt-4o-mini",  # an OpenAI name: the local backend maps it to `model`
        local_model=model,
        local_data_dir=out / "local-backend",
        state_path=state_path,
        progress=progress,
        follow_options=FollowOptions(initial_interval=1.0, max_interval=2.0),
    ) as session:
        report = session.preflight(dataset)
        _say("2/6 preflight:\n" + _indent(report.summary()), progress)
        report.raise_for_errors()

        uploaded = session.upload(dataset)
        _say(f"3/6 uploaded {uploaded.id} ({uploaded.bytes} bytes)", progress)

        _say(f"4/6 fine-tuning {model} with LoRA (auto hyperparameters)...", progress)
        job = session.train(suffix="limericks")
        _say(f"    {job.fine_tuned_model}: {job.trained_tokens} tokens trained", progress)

        prompts = [f"Tell me about {element}" for element in HELD_OUT_ELEMENTS]
        comparison = session.compare(
            prompts, system=SYSTEM_PROMPT, temperature=0, max_tokens=max_tokens
        )
        _say("5/6 base and tuned model on elements the data does not have:", progress)
        print(comparison, file=stream or sys.stdout, flush=True)
        (out / "comparison.txt").write_text(str(comparison) + "\n", encoding="utf-8")

        metrics = session.metrics()
        loss_curve = out / "loss.png"
        metrics.plot_loss(loss_curve, title=f"{job.fine_tuned_model}")
        _say(f"6/6 wrote the loss curve to {loss_curve}", progress)

        result = QuickstartResult(
            job_id=job.id,
            fine_tuned_model=str(job.fine_tuned_model),
            base_model=job.model,
            comparison=comparison,
            loss_curve=loss_curve,
            output_dir=out,
            seconds=time.monotonic() - started,
            train_loss=metrics.train_loss,
        )
    _say(f"done in {result.seconds:.0f} s; session state in {state_path}", progress)
    return result


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())
