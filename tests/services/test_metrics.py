"""Metric points from events and result files; DataFrames and loss-curve PNGs."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest
from openai.types.fine_tuning import FineTuningJobEvent

from finetune_kit.errors import DataError, MissingDependencyError
from finetune_kit.jobs.metrics import (
    MetricPoint,
    MetricSeries,
    decode_result_file,
    parse_result_csv,
)
from finetune_kit.jobs.metrics import point_from_event as event_point

AZURE_CSV = (
    "step,train_loss,train_mean_token_accuracy,valid_loss,validation_mean_token_accuracy,"
    "full_valid_loss,full_valid_mean_token_accuracy\n"
    "1,2.5,0.40,,,,\n"
    "2,2.1,0.45,2.3,0.42,,\n"
    "3,1.7,0.55,,,1.9,0.5\n"
)
OLD_OPENAI_CSV = (
    "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n1,1.5,0.5,,\n"
)


def test_point_maps_aliases_and_keeps_unknown_keys() -> None:
    point = MetricPoint.from_data(
        {
            "step": 7.0,
            "train_loss": "0.25",
            "train_accuracy": 0.9,
            "validation_loss": 0.3,
            "reward_margin": 1.5,
            "note": "x",
            "total_steps": 30,
        },
        created_at=123,
    )
    assert point.step == 7
    assert point.train_loss == 0.25
    assert point.train_mean_token_accuracy == 0.9
    assert point.valid_loss == 0.3
    assert point.total_steps == 30
    assert point.created_at == 123
    assert point.extra == {"reward_margin": 1.5, "note": "x"}
    assert point.get("train_accuracy") == 0.9
    assert point.get("reward_margin") == 1.5
    assert point.get("missing") is None


def test_point_needs_a_step() -> None:
    with pytest.raises(DataError, match="step"):
        MetricPoint.from_data({"train_loss": 1.0})


def test_azure_result_csv() -> None:
    series = parse_result_csv(AZURE_CSV)
    assert series.steps == [1, 2, 3]
    assert series.train_loss == [2.5, 2.1, 1.7]
    assert series.valid_loss == [None, 2.3, None]
    assert series.column("valid_mean_token_accuracy") == [None, 0.42, None]
    assert series[2].full_valid_loss == 1.9
    assert series.last is not None
    assert series.last.full_valid_mean_token_accuracy == 0.5


def test_old_openai_column_names() -> None:
    series = parse_result_csv(OLD_OPENAI_CSV)
    assert series[0].train_mean_token_accuracy == 0.5


def test_base64_result_file_is_decoded_even_when_wrapped_in_lines() -> None:
    encoded = base64.encodebytes(AZURE_CSV.encode())  # wrapped at 76 characters
    assert b"\n" in encoded.strip()
    assert decode_result_file(encoded) == AZURE_CSV
    assert parse_result_csv(encoded).train_loss == [2.5, 2.1, 1.7]
    assert parse_result_csv(base64.b64encode(AZURE_CSV.encode()).decode()).steps == [1, 2, 3]


def test_bom_and_blank_rows() -> None:
    series = parse_result_csv(("\ufeff" + AZURE_CSV + ",,,,,,\n").encode())
    assert len(series) == 3


@pytest.mark.parametrize(
    "content",
    [b"<html>oops</html>", base64.b64encode(b"not,a,metrics,file\n1,2,3,4\n"), b""],
)
def test_not_a_result_file(content: bytes) -> None:
    with pytest.raises(DataError):
        parse_result_csv(content)


def test_bad_step_names_the_line() -> None:
    with pytest.raises(DataError, match="line 3"):
        parse_result_csv("step,train_loss\n1,0.5\nabc,0.4\n")


def test_points_of_one_step_are_merged() -> None:
    series = MetricSeries(
        [
            MetricPoint(step=2, train_loss=1.0, extra={"a": 1}),
            MetricPoint(step=1, train_loss=2.0),
            MetricPoint(step=2, valid_loss=1.5, extra={"b": 2}),
        ]
    )
    assert series.steps == [1, 2]
    merged = series[1]
    assert (merged.train_loss, merged.valid_loss, merged.extra) == (1.0, 1.5, {"a": 1, "b": 2})


def test_points_from_openai_event_objects() -> None:
    events = [
        FineTuningJobEvent(
            id="ftevent-2",
            created_at=20,
            level="info",
            message="Step 2/3: training loss=1.1",
            object="fine_tuning.job.event",
            type="metrics",
            data={"step": 2, "train_loss": 1.1, "total_steps": 3},
        ),
        FineTuningJobEvent(
            id="ftevent-1",
            created_at=10,
            level="info",
            message="Fine-tuning job started",
            object="fine_tuning.job.event",
            type="message",
            data={},
        ),
        {"type": "metrics", "data": {"step": 1, "train_loss": 1.4}, "created_at": 15},
        {"type": "metrics", "data": {"no_step": True}},
    ]
    series = MetricSeries.from_events(events)
    assert series.steps == [1, 2]
    assert series[1].total_steps == 3
    assert series[1].created_at == 20
    assert event_point(events[1]) is None


def test_dataframe() -> None:
    frame = parse_result_csv(AZURE_CSV).to_dataframe()
    assert list(frame.index) == [1, 2, 3]
    assert frame.index.name == "step"
    assert frame.loc[2, "valid_loss"] == 2.3
    assert "total_steps" not in frame.columns  # empty everywhere
    assert MetricSeries().to_dataframe().empty


def test_loss_curve_png(tmp_path: Path) -> None:
    path = tmp_path / "loss.png"
    figure = parse_result_csv(AZURE_CSV).plot_loss(path, title="job")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 5_000
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels == ["training loss", "validation loss", "full validation loss"]


def test_plot_without_losses_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="no loss"):
        MetricSeries([MetricPoint(step=1, extra={"reward": 1})]).plot_loss()


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependencyError) as info:
        parse_result_csv(AZURE_CSV).plot_loss()
    assert info.value.extra == "plot"
    assert "finetune-kit[plot]" in str(info.value)


def test_missing_pandas_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"finetune-kit\[pandas\]"):
        parse_result_csv(AZURE_CSV).to_dataframe()
