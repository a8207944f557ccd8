"""Reports are pure: built here from results, then checked for flips, figures and rendering."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from finetune_kit.errors import ConfigurationError
from finetune_kit.inference.evaluation import (
    EvalCase,
    EvaluationReport,
    ExampleResult,
    PairedEvaluationReport,
    bootstrap_mean_ci,
)
from finetune_kit.inference.replies import ChatReply

EVIL = "<script>alert('x')</script>"


def reply(text: str) -> ChatReply:
    return ChatReply(
        text=text,
        model="served-model",
        finish_reason="stop",
        prompt_tokens=10,
        completion_tokens=4,
        latency=0.2,
    )


def case(i: int) -> EvalCase:
    return EvalCase(messages=({"role": "user", "content": f"question {i} {EVIL}"},), reference="ok")


def report(
    model: str, scores: list[float | None], *, error_at: int | None = None
) -> EvaluationReport:
    results = []
    for i, score in enumerate(scores):
        if i == error_at:
            results.append(ExampleResult(i, case(i), error="RateLimitError: slow down"))
        else:
            results.append(
                ExampleResult(i, case(i), reply(f"answer {i} {EVIL}"), scores={"em": score})
            )
    return EvaluationReport(model, tuple(results), thresholds={"em": 1.0}, elapsed=1.5)


BASE = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
TUNED = [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]


def test_single_report_figures_and_errors() -> None:
    r = report("base", [1.0, 0.0, None, 1.0], error_at=2)
    assert len(r) == 4
    assert [x.index for x in r] == [0, 1, 2, 3]
    assert r.scores("em") == [1.0, 0.0, None, 1.0]
    assert r.mean("em") == pytest.approx(2 / 3)
    assert r.pass_rate("em") == pytest.approx(2 / 3)
    assert [e.index for e in r.errors] == [2]
    assert r.summary()["em"] == {
        "mean": pytest.approx(2 / 3),
        "pass_rate": pytest.approx(2 / 3),
        "scored": 3,
        "unscored": 1,
    }
    with pytest.raises(ConfigurationError, match="no scorer named 'nope'"):
        r.scores("nope")


def test_paired_report_flips_and_difference() -> None:
    paired = PairedEvaluationReport(report("base", BASE), report("tuned", TUNED), seed=5)
    d = paired.differences["em"]
    assert d.n == 6
    assert d.improved == (0, 2, 5)
    assert d.regressed == (3,)
    assert d.base_mean == pytest.approx(2 / 6)
    assert d.tuned_mean == pytest.approx(4 / 6)
    assert d.mean_difference == pytest.approx(2 / 6)
    diffs = [t - b for b, t in zip(BASE, TUNED, strict=True)]
    assert (d.ci_low, d.ci_high) == bootstrap_mean_ci(diffs, seed=5)
    assert paired.flips() == {"improved": [0, 2, 5], "regressed": [3]}


def test_examples_missing_on_either_side_are_left_out_of_the_figures() -> None:
    paired = PairedEvaluationReport(
        report("base", [0.0, 0.0, 1.0], error_at=1), report("tuned", [1.0, 1.0, None])
    )
    d = paired.differences["em"]
    assert d.n == 1
    assert d.improved == (0,)
    assert d.mean_difference == 1.0


def test_paired_report_refuses_mismatched_reports() -> None:
    with pytest.raises(ConfigurationError, match="same examples"):
        PairedEvaluationReport(report("base", [1.0]), report("tuned", [1.0, 0.0]))
    other = EvaluationReport("tuned", report("t", [1.0]).results, thresholds={"other": 1.0})
    with pytest.raises(ConfigurationError, match="different scorers"):
        PairedEvaluationReport(report("base", [1.0]), other)


def test_html_is_escaped_everywhere() -> None:
    single = report("base <b>", BASE, error_at=1)
    paired = PairedEvaluationReport(single, report("tuned", TUNED))
    for rendered in (single._repr_html_(), paired._repr_html_()):
        assert "<script>" not in rendered
        assert "&lt;script&gt;" in rendered
        assert "<b>" not in rendered
    assert "Flips" in paired._repr_html_()


def test_dataframes_have_one_row_per_example_in_order() -> None:
    single = report("base", BASE, error_at=1).to_dataframe()
    assert isinstance(single, pd.DataFrame)
    assert list(single.index) == list(range(6))
    assert single.loc[1, "error"] == "RateLimitError: slow down"
    assert single.loc[0, "em"] == 0.0
    paired = PairedEvaluationReport(report("base", BASE), report("tuned", TUNED))
    frame = paired.to_dataframe()
    assert list(frame.index) == list(range(6))
    assert list(frame["flip_em"]) == ["improved", "", "improved", "regressed", "", "improved"]
    assert frame.loc[0, "tuned_answer"].startswith("answer 0")
    summary = paired.summary_dataframe()
    assert summary.loc["em", "improved"] == 3
    assert summary.loc["em", "regressed"] == 1


def test_text_and_dict_renderings() -> None:
    paired = PairedEvaluationReport(report("base", BASE), report("tuned", TUNED))
    text = str(paired)
    assert "base base vs tuned tuned on 6 examples" in text
    assert "+0.333" in text
    assert "improved" in text
    data = json.loads(json.dumps(paired.to_dict()))
    assert data["differences"]["em"]["improved"] == [0, 2, 5]
    assert len(data["base"]["results"]) == 6
    single_text = str(report("base", BASE, error_at=1))
    assert "1 request errors" in single_text
    assert "examples[1]: RateLimitError" in single_text


def test_html_shows_at_most_the_row_limit() -> None:
    from finetune_kit.inference.evaluation import HTML_ROW_LIMIT

    n = HTML_ROW_LIMIT + 5
    big = report("base", [0.0] * n)
    html = big._repr_html_()
    assert f"First {HTML_ROW_LIMIT} of {n} examples" in html
    assert html.count("<tr>") == 1 + 1 + HTML_ROW_LIMIT + 1  # summary head + row, examples
    paired = PairedEvaluationReport(big, report("tuned", [1.0] * n))
    assert f"First {HTML_ROW_LIMIT} of {n} flips" in paired._repr_html_()
    assert len(paired.to_dataframe()) == n
