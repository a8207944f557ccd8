"""Base and tuned answers to the same prompts, side by side: what ``compare`` returns.

:class:`Comparison` prints as a text table, shows as HTML in a notebook (every answer escaped),
and gives a DataFrame or plain data; :class:`ComparisonRow` is one prompt answered by both
models. The clients that fill them in are in ``client``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._render import dataframe, format_float, html_table, shorten, text_table
from .evaluation import EvalCase
from .replies import ChatReply

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Comparison", "ComparisonRow"]


@dataclass(frozen=True)
class ComparisonRow:
    """One prompt answered by both models.

    Attributes:
        case: The prompt (and its reference, when it came from an example).
        base: The base model's reply, or ``None`` when its request failed.
        tuned: The tuned model's reply, or ``None`` when its request failed.
        base_error: Why the base request failed, after its retries.
        tuned_error: Why the tuned request failed, after its retries.
    """

    case: EvalCase
    base: ChatReply | None
    tuned: ChatReply | None
    base_error: str | None = None
    tuned_error: str | None = None

    @property
    def prompt(self) -> str:
        """The prompt's last user message."""
        return self.case.prompt_text

    def to_dict(self) -> dict[str, Any]:
        """Return the row as JSON-ready data."""
        return {
            "prompt": self.prompt,
            "messages": [dict(m) for m in self.case.messages],
            "reference": self.case.reference,
            "base": self.base.to_dict() if self.base is not None else None,
            "tuned": self.tuned.to_dict() if self.tuned is not None else None,
            "base_error": self.base_error,
            "tuned_error": self.tuned_error,
        }


def _answer_cell(reply: ChatReply | None, error: str | None, width: int) -> str:
    if reply is None:
        return f"[error] {shorten(error or '', width)}"
    text = reply.text.strip()
    if reply.tool_calls:
        calls = ", ".join(f"{c.name}({c.arguments})" for c in reply.tool_calls)
        text = f"{text}\n[tool calls] {calls}".strip()
    tokens = f"{reply.prompt_tokens if reply.prompt_tokens is not None else '?'} prompt + "
    tokens += f"{reply.completion_tokens if reply.completion_tokens is not None else '?'} "
    return f"{text}\n[{tokens}completion tokens, {reply.latency:.2f} s]"


def _mean(values: Iterable[float | int | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


class Comparison:
    """Base and tuned answers to the same prompts, side by side, as the playground shows them.

    Print it for a text table (``str(comparison)`` or :meth:`to_text`), show it in a notebook
    (HTML, every answer escaped), or get a DataFrame or plain data.

    Attributes:
        base_model: The base model's name.
        tuned_model: The tuned model's name.
        rows: One row per prompt, in the order given.
        elapsed: Wall-clock seconds the comparison took.

    Examples:
        >>> case = EvalCase(messages=({"role": "user", "content": "Tell me about Neon"},))
        >>> def reply(text):
        ...     return ChatReply(text=text, model="m", finish_reason="stop", prompt_tokens=9,
        ...                      completion_tokens=5, latency=0.2)
        >>> comparison = Comparison("base", "tuned", [
        ...     ComparisonRow(case, reply("Neon is a gas."), reply("Neon, so bright..."))])
        >>> comparison.summary()["tuned"]["mean_completion_tokens"]
        5.0
    """

    def __init__(
        self,
        base_model: str,
        tuned_model: str,
        rows: Sequence[ComparisonRow],
        *,
        elapsed: float = 0.0,
    ) -> None:
        self.base_model = base_model
        self.tuned_model = tuned_model
        self.rows = tuple(rows)
        self.elapsed = elapsed

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Any:
        return iter(self.rows)

    def __getitem__(self, index: int) -> ComparisonRow:
        return self.rows[index]

    def __repr__(self) -> str:
        return (
            f"Comparison(base_model={self.base_model!r}, tuned_model={self.tuned_model!r}, "
            f"rows={len(self.rows)})"
        )

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        """Per side (``base``, ``tuned``): mean tokens (prompt, completion), latency, errors."""
        out: dict[str, dict[str, float | int | None]] = {}
        for side in ("base", "tuned"):
            replies = [getattr(r, side) for r in self.rows]
            present = [r for r in replies if r is not None]
            out[side] = {
                "mean_prompt_tokens": _mean(r.prompt_tokens for r in present),
                "mean_completion_tokens": _mean(r.completion_tokens for r in present),
                "mean_latency": _mean(r.latency for r in present),
                "errors": len(replies) - len(present),
            }
        return out

    def to_text(self, *, width: int = 100) -> str:
        """The comparison as a text table, long answers wrapped.

        Args:
            width: The widest the table may be, in characters.
        """
        headers = ["#", "prompt", f"base: {self.base_model}", f"tuned: {self.tuned_model}"]
        rows = [
            [
                str(i),
                row.prompt,
                _answer_cell(row.base, row.base_error, 200),
                _answer_cell(row.tuned, row.tuned_error, 200),
            ]
            for i, row in enumerate(self.rows)
        ]
        summary = self.summary()

        def side(name: str) -> str:
            s = summary[name]
            return (
                f"mean {format_float(s['mean_prompt_tokens'], 1)} prompt + "
                f"{format_float(s['mean_completion_tokens'], 1)} completion tokens, "
                f"{format_float(s['mean_latency'], 2)} s; {s['errors']} errors"
            )

        rows.append(["", "all prompts", side("base"), side("tuned")])
        return text_table(headers, rows, width=width)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        headers = [
            "#",
            "prompt",
            f"base: {self.base_model}",
            "tokens (prompt + completion)",
            "latency (s)",
            f"tuned: {self.tuned_model}",
            "tokens (prompt + completion)",
            "latency (s)",
        ]

        def cells(reply: ChatReply | None, error: str | None) -> list[str]:
            if reply is None:
                return [f"error: {error}", "", ""]
            return [
                _answer_cell(reply, None, 200).rsplit("\n[", 1)[0],
                f"{reply.prompt_tokens} + {reply.completion_tokens}",
                f"{reply.latency:.2f}",
            ]

        rows = [
            [
                str(i),
                row.prompt,
                *cells(row.base, row.base_error),
                *cells(row.tuned, row.tuned_error),
            ]
            for i, row in enumerate(self.rows)
        ]
        caption = f"{self.base_model} vs {self.tuned_model}: {len(self.rows)} prompts"
        return html_table(headers, rows, caption=caption)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per prompt: both answers, tokens, latencies and errors.

        Raises:
            MissingDependencyError: pandas is not installed.
        """
        records = []
        for i, row in enumerate(self.rows):
            record: dict[str, Any] = {"index": i, "prompt": row.prompt}
            for side, reply, error in (
                ("base", row.base, row.base_error),
                ("tuned", row.tuned, row.tuned_error),
            ):
                record[f"{side}_answer"] = reply.text if reply else None
                record[f"{side}_prompt_tokens"] = reply.prompt_tokens if reply else None
                record[f"{side}_completion_tokens"] = reply.completion_tokens if reply else None
                record[f"{side}_latency"] = reply.latency if reply else None
                record[f"{side}_error"] = error
            records.append(record)
        return dataframe(records, "index")

    def to_dict(self) -> dict[str, Any]:
        """Return the comparison as JSON-ready data."""
        return {
            "base_model": self.base_model,
            "tuned_model": self.tuned_model,
            "elapsed": self.elapsed,
            "summary": self.summary(),
            "rows": [row.to_dict() for row in self.rows],
        }
