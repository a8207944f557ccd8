"""Render a ``PreflightReport`` as HTML (for notebooks) and as plain text (for terminals).

Every value that comes from the data (messages, field paths, model names) is escaped: a
training file can hold ``<script>`` as easily as any other text.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .issues import Issue
    from .report import Distribution, FileSummary, PreflightReport

__all__ = ["render_html", "render_text"]

_HTML_ISSUE_ROWS = 200
_TEXT_ISSUES = 10
_SEVERITY_COLOURS = {"error": "#b00020", "warning": "#9a6700", "info": "#0b5cad"}
_SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}


def _worst_first(issues: Sequence[Issue]) -> list[Issue]:
    """Errors, then warnings, then notes, each in file and line order.

    A summary shows only its first issues: in line order, warnings on early lines pushed the
    errors (what blocks an upload) out of sight.
    """
    return sorted(issues, key=lambda issue: _SEVERITY_RANK.get(issue.severity, 3))


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _dist_cells(dist: Distribution | None) -> str:
    if dist is None:
        return "<td colspan='6'>-</td>"
    cells = (dist.min, dist.mean, dist.p50, dist.p90, dist.max, dist.total)
    return "".join(f"<td style='text-align:right'>{_e(_number(c))}</td>" for c in cells)


def _file_rows(summary: FileSummary) -> str:
    rows = [
        ("examples", f"{summary.n_examples:,} ({summary.n_valid_examples:,} without errors)"),
        ("lines / blank", f"{summary.n_lines:,} / {summary.n_blank_lines:,}"),
        ("size", f"{summary.n_bytes:,} bytes"),
        ("formats", ", ".join(f"{k}: {v:,}" for k, v in sorted(summary.kinds.items())) or "-"),
        ("missing system / user", f"{summary.n_missing_system:,} / {summary.n_missing_user:,}"),
        ("with images", f"{summary.n_with_images:,}"),
        ("over the token limit", f"{summary.n_too_long:,}"),
        ("billing tokens per epoch", f"{summary.billing_tokens:,}"),
    ]
    return "".join(
        f"<tr><th style='text-align:left'>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows
    )


def _stats_table(summary: FileSummary) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("", "min", "mean", "p50", "p90", "max", "total"))
    rows = (
        ("messages per example", summary.messages_per_example),
        ("tokens per example", summary.total_tokens),
        ("assistant tokens per example", summary.assistant_tokens),
    )
    body = "".join(
        f"<tr><th style='text-align:left'>{_e(n)}</th>{_dist_cells(d)}</tr>" for n, d in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _issue_row(issue: Issue) -> str:
    colour = _SEVERITY_COLOURS.get(issue.severity, "inherit")
    cells = (
        f"<td style='color:{colour}'>{_e(issue.severity)}</td>",
        f"<td><code>{_e(issue.code)}</code></td>",
        f"<td>{_e(issue.file)}</td>",
        f"<td style='text-align:right'>{_e(issue.line if issue.line is not None else '')}</td>",
        f"<td><code>{_e(issue.field or '')}</code></td>",
        f"<td>{_e(issue.message)}</td>",
        f"<td>{_e(issue.fix)}</td>",
    )
    return "<tr>" + "".join(cells) + "</tr>"


def render_html(report: PreflightReport) -> str:
    """Render the report as one HTML fragment (escaped), as notebooks show it."""
    verdict = "ready" if report.ok else f"{len(report.errors)} error(s)"
    colour = "#1a7f37" if report.ok else "#b00020"
    base = report.base_model
    resolved = f" ({_e(base)})" if base and base != report.model else ""
    head = (
        f"<h4 style='margin:0'>Preflight: <span style='color:{colour}'>{_e(verdict)}</span>, "
        f"{len(report.warnings)} warning(s)</h4>"
        f"<p>model <code>{_e(report.model or 'none')}</code>"
        f"{resolved}"
        f", encoding <code>{_e(report.encoding)}</code>, method {_e(report.method)}, "
        f"format {_e(report.kind)}, epochs {_e(report.epochs if report.epochs else '-')}"
        f"{', cost ' + _e(report.cost) if report.cost else ''}</p>"
    )
    files = [report.training] + ([report.validation] if report.validation else [])
    sections = "".join(
        f"<h5>{_e(summary.file)}</h5><table>{_file_rows(summary)}</table>{_stats_table(summary)}"
        for summary in files
    )
    shown = _worst_first(report.issues)[:_HTML_ISSUE_ROWS]
    rows = "".join(_issue_row(issue) for issue in shown)
    hidden = sum(report.issue_counts.values()) - len(shown)
    more = (
        f"<p>{hidden:,} more issue(s) not shown; see <code>to_json()</code>.</p>" if hidden else ""
    )
    issues = (
        "<table><tr><th>severity</th><th>code</th><th>file</th><th>line</th><th>field</th>"
        f"<th>message</th><th>fix</th></tr>{rows}</table>{more}"
        if shown
        else "<p>No issues.</p>"
    )
    return f"<div class='finetune-kit-preflight'>{head}{sections}<h5>issues</h5>{issues}</div>"


def render_text(report: PreflightReport) -> str:
    """Render the report as a few lines of plain text."""
    lines = [
        f"preflight: {'ready' if report.ok else f'{len(report.errors)} error(s)'}, "
        f"{len(report.warnings)} warning(s); model {report.model or 'none'}, "
        f"{report.method} ({report.kind}), encoding {report.encoding}"
    ]
    for summary in [report.training] + ([report.validation] if report.validation else []):
        line = f"{summary.file}: {summary.n_examples:,} examples"
        if summary.total_tokens is not None:
            t = summary.total_tokens
            line += (
                f"; tokens per example min {t.min:,} / mean {t.mean:,.0f} / p50 {t.p50:,.0f} / "
                f"p90 {t.p90:,.0f} / max {t.max:,}; billing tokens {summary.billing_tokens:,}"
            )
        lines.append(line)
    if report.epochs:
        lines.append(f"epochs: {report.epochs}" + (f"; cost {report.cost}" if report.cost else ""))
    for issue in _worst_first(report.issues)[:_TEXT_ISSUES]:
        lines.append(f"  {issue}")
    hidden = sum(report.issue_counts.values()) - min(len(report.issues), _TEXT_ISSUES)
    if hidden > 0:
        lines.append(f"  ... and {hidden:,} more issue(s)")
    return "\n".join(lines)
