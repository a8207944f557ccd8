"""preflight(): the report's numbers, its inputs, its model checks, and that it never crashes."""

from __future__ import annotations

import json
import statistics
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune_kit.data import validation as validation_module
from finetune_kit.data._fingerprints import FingerprintIndex
from finetune_kit.data.base_models import get_model_info
from finetune_kit.data.dataset import Dataset
from finetune_kit.data.issues import RULES
from finetune_kit.data.jsonl import write_jsonl
from finetune_kit.data.report import Distribution
from finetune_kit.data.tokens import count_example_tokens
from finetune_kit.data.validation import auto_epochs, preflight
from finetune_kit.errors import ConfigurationError, PreflightFailedError

AS_OF = date(2026, 1, 1)
# preflight has no default model: the tests of model checks name theirs.
MINI = "gpt-4o-mini-2024-07-18"


def chat(i: int, answer: str | None = None) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "You are a chemistry tutor."},
            {"role": "user", "content": f"What is special about element {i}?"},
            {
                "role": "assistant",
                "content": answer or f"Element {i} has {i} protons. " * (i % 7 + 1),
            },
        ]
    }


def jsonl(rows: list[Any]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


def test_a_good_file_is_ready_with_counts_tokens_epochs_and_cost() -> None:
    rows = [chat(i) for i in range(1, 41)]
    report = preflight(jsonl(rows), model=MINI, as_of=AS_OF)
    assert report.ok, report.issues
    assert report.n_examples == 40
    assert report.training.kinds == {"chat": 40}
    totals = [count_example_tokens(r, "gpt-4o-mini").total for r in rows]
    assert report.total_tokens is not None
    assert report.total_tokens.total == sum(totals) == report.billing_tokens
    assert (report.total_tokens.min, report.total_tokens.max) == (min(totals), max(totals))
    assert report.messages_per_example == Distribution.from_histogram({3: 40})
    assert report.epochs == auto_epochs(40) == 3
    cost = report.cost
    assert cost is not None
    assert cost.trained_tokens == 3 * report.billing_tokens
    assert cost.expected_usd == pytest.approx(3 * report.billing_tokens / 1e6 * 3.00)
    assert cost.low_usd < cost.expected_usd < cost.high_usd
    assert (cost.epochs_low, cost.epochs_high) == (2, 4)
    assert {i.code for i in report.issues} == {"below_recommended_examples"}
    assert json.loads(report.to_json())["cost"]["expected_usd"] == round(cost.expected_usd, 4)


def test_given_epochs_and_an_official_price_give_a_narrower_range() -> None:
    report = preflight(jsonl([chat(i) for i in range(1, 60)]), model=MINI, n_epochs=2, as_of=AS_OF)
    assert report.cost is not None
    assert (report.epochs, report.cost.epochs_low, report.cost.epochs_high) == (2, 2, 2)
    assert report.cost.low_usd == pytest.approx(report.cost.expected_usd * 0.9)  # a [3p] price


@pytest.mark.parametrize(("n", "epochs"), [(1, 25), (10, 10), (34, 3), (8333, 3), (8334, 2)])
def test_auto_epochs_follows_the_cookbook(n: int, epochs: int) -> None:
    assert auto_epochs(n) == epochs


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(min_value=0, max_value=5000), min_size=2, max_size=60))
def test_distribution_percentiles_match_statistics_module(values: list[int]) -> None:
    histogram: dict[int, int] = {}
    for value in values:
        histogram[value] = histogram.get(value, 0) + 1
    dist = Distribution.from_histogram(histogram)
    assert dist is not None
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    assert dist.p10 == pytest.approx(deciles[0])
    assert dist.p50 == pytest.approx(deciles[4])
    assert dist.p90 == pytest.approx(deciles[8])
    assert dist.mean == pytest.approx(statistics.fmean(values))
    assert (dist.min, dist.max, dist.total, dist.count) == (
        min(values),
        max(values),
        sum(values),
        len(values),
    )


def test_billing_tokens_are_capped_at_the_model_limit() -> None:
    rows = [chat(i) for i in range(1, 12)] + [chat(99, "word " * 6000)]
    report = preflight(jsonl(rows), model="gpt-3.5-turbo-0613", as_of=AS_OF)
    totals = [count_example_tokens(r, "gpt-3.5-turbo-0613").total for r in rows]
    assert max(totals) > 4096
    assert report.billing_tokens == sum(min(t, 4096) for t in totals)
    assert report.training.n_too_long == 1
    assert [(i.code, i.line) for i in report.warnings] == [("example_too_long", 12)]
    assert report.encoding == "cl100k_base"


def test_model_none_checks_the_data_alone() -> None:
    rows = [chat(i, "word " * 70_000 if i == 3 else None) for i in range(1, 12)]
    report = preflight(jsonl(rows), model=None)
    assert report.ok
    assert report.cost is None
    assert report.encoding == "o200k_base"
    assert report.base_model is None
    assert [i.code for i in report.issues if RULES[i.code].scope == "model"] == ["no_model"]
    assert report.training.n_too_long == 0


def test_unknown_model_falls_back_to_o200k_with_a_warning() -> None:
    report = preflight(jsonl([chat(i) for i in range(1, 12)]), model="my-local-llama")
    assert report.ok
    assert report.encoding == "o200k_base"
    assert report.cost is None
    assert [i.code for i in report.warnings] == ["unknown_model"]


def test_shutdown_dates() -> None:
    data = jsonl([chat(i) for i in range(1, 12)])
    soon = preflight(data, model=MINI, as_of=date(2026, 11, 21))
    assert "model_shutdown_soon" in {i.code for i in soon.warnings}
    gone = preflight(data, model=MINI, as_of=date(2027, 1, 14))
    assert [i.code for i in gone.errors] == ["model_shut_down"]
    # A backend with its own schedule: the dates are not OpenAI's to apply, the limits are.
    own = preflight(data, model=MINI, as_of=date(2027, 1, 14), shutdown_dates=False)
    assert own.ok
    assert not {"model_shut_down", "model_shutdown_soon"} & set(own.issue_counts)
    assert (own.base_model, own.cost) == (gone.base_model, gone.cost)
    far = preflight(data, model=MINI, as_of=date(2026, 1, 1))
    assert not {"model_shut_down", "model_shutdown_soon"} & {i.code for i in far.issues}
    # The message dates the shutdown date by its own source, not by the rest of the table.
    nano = get_model_info("gpt-4.1-nano")
    assert nano is not None
    assert nano.shutdown_date is not None
    assert nano.shutdown_as_of is not None
    (issue,) = preflight(data, model=nano.name, as_of=nano.shutdown_date).errors
    assert issue.code == "model_shut_down"
    assert f"third-party pages as of {nano.shutdown_as_of.isoformat()}," in issue.message


def test_method_detection_and_model_methods() -> None:
    pair = {
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello!"}],
        "non_preferred_output": [{"role": "assistant", "content": "Go away."}],
    }
    dpo = preflight(jsonl([pair] * 3), model=MINI, as_of=AS_OF)
    assert (dpo.method, dpo.kind) == ("dpo", "preference")
    assert dpo.training.kinds == {"preference": 3}
    rft_row = {"messages": [{"role": "user", "content": "2+2?"}], "reference_answer": "4"}
    rft = preflight(jsonl([rft_row] * 3), model=MINI, as_of=AS_OF)
    assert rft.method == "reinforcement"
    assert {"method_not_supported", "validation_file_required"} <= {i.code for i in rft.issues}
    o4 = preflight(jsonl([rft_row] * 3), model="o4-mini", validation=jsonl([rft_row]), as_of=AS_OF)
    assert o4.method == "reinforcement"
    assert o4.cost is None
    assert "cost_not_estimated" in {i.code for i in o4.infos}
    forced = preflight(jsonl([chat(1)] * 3), model=MINI, method="dpo", as_of=AS_OF)
    assert "wrong_example_format" in {i.code for i in forced.errors}


def test_validation_file_overlap_and_duplicates(tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    write_jsonl([chat(i) for i in range(1, 12)], train)
    valid = [chat(100), chat(5), chat(100)]
    report = preflight(train, validation=valid, as_of=AS_OF)
    assert report.validation is not None
    assert report.validation.n_examples == 3
    found = [(i.file, i.code, i.line, i.message) for i in report.issues if i.file == "validation"]
    assert found == [
        ("validation", "validation_overlap", 2, "identical to training line 5"),
        ("validation", "duplicate_example", 3, "identical to line 1"),
    ]


def test_dataset_records_dicts_and_bytes_give_the_same_report() -> None:
    rows = [chat(i) for i in range(1, 15)]
    dataset = Dataset.from_dicts(rows)
    from_bytes = preflight(dataset.to_jsonl_bytes(), as_of=AS_OF).to_dict()
    assert preflight(dataset, as_of=AS_OF).to_dict() == from_bytes
    assert dataset.preflight(as_of=AS_OF).to_dict() == from_bytes
    assert preflight(rows, as_of=AS_OF).to_dict() == from_bytes
    assert preflight(list(dataset), as_of=AS_OF).to_dict() == from_bytes


def test_dicts_are_reported_by_position() -> None:
    rows: list[Any] = [chat(i) for i in range(1, 12)]
    rows[4] = {"messages": [{"role": "user", "content": "Hi", "weight": 1}]}
    report = preflight(iter(rows), model=None)
    assert [(i.code, i.line) for i in report.errors] == [
        ("weight_on_non_assistant", 5),
        ("example_missing_assistant_message", 5),
    ]


def test_raise_for_errors_carries_the_report() -> None:
    report = preflight(b'{"messages": [{"role": "bot", "content": "x"}]}\n', model=None)
    with pytest.raises(PreflightFailedError) as caught:
        report.raise_for_errors()
    assert caught.value.report is report
    assert "line 1" in str(caught.value)
    assert "unrecognized_role" in str(caught.value)
    preflight(jsonl([chat(i) for i in range(1, 12)]), model=None).raise_for_errors()


def test_html_and_text_escape_what_the_data_says() -> None:
    evil = "<script>alert(1)</script>"
    report = preflight(jsonl([{"messages": [{"role": evil, "content": "x"}]}]), model=None)
    html = report._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "unrecognized_role" in html
    assert "unrecognized_role" in str(report)


def test_issues_are_capped_per_code_but_all_counted() -> None:
    data = b"\n" * 30 + jsonl([chat(i) for i in range(1, 12)])
    report = preflight(data, max_issues_per_code=5, as_of=AS_OF)
    assert report.issue_counts["blank_line"] == 30
    assert [i.line for i in report.issues if i.code == "blank_line"] == [1, 2, 3, 4, 5]
    assert report.truncated
    assert json.loads(report.to_json())["issue_counts"]["blank_line"] == 30


def test_file_size_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    data = jsonl([chat(i) for i in range(1, 12)])
    monkeypatch.setattr(validation_module, "FILES_API_LIMIT_BYTES", len(data) - 1)
    assert "file_too_large_for_files_api" in {i.code for i in preflight(data, as_of=AS_OF).warnings}
    monkeypatch.setattr(validation_module, "UPLOADS_API_LIMIT_BYTES", len(data) - 1)
    assert "file_too_large" in {i.code for i in preflight(data, as_of=AS_OF).errors}


def test_bad_arguments_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="path"):
        preflight('{"messages": []}\n')
    with pytest.raises(ConfigurationError, match="single example"):
        preflight(chat(1))
    with pytest.raises(ConfigurationError) as caught:
        preflight(b"", n_epochs=0)
    assert caught.value.param == "n_epochs"
    with pytest.raises(ConfigurationError):
        preflight(12)


def _big_file(tmp_path: Path) -> Path:
    rows: list[Any] = [
        chat(i, f"Answer {i}: " + "lorem ipsum dolor " * (i % 40)) for i in range(6000)
    ]
    rows[10] = {"messages": [{"role": "user", "content": "Hi", "weight": 2}]}
    rows[4000] = rows[17]  # a duplicate far from its original, in another block
    path = tmp_path / "big.jsonl"
    path.write_bytes(jsonl(rows).replace(b"\n", b"\n\n", 3) + b"{broken\n")
    return path


def test_worker_processes_give_the_serial_report(tmp_path: Path) -> None:
    path = _big_file(tmp_path)
    assert path.stat().st_size > 3_000_000  # several 1 MB blocks
    serial = preflight(path, workers=1, as_of=AS_OF).to_dict()
    assert preflight(path, workers=2, as_of=AS_OF).to_dict() == serial
    assert {(i["code"], i["line"]) for i in serial["issues"]} >= {
        ("weight_on_non_assistant", 14),
        ("duplicate_example", 4004),
        ("blank_line", 2),
        ("invalid_json", 6004),
    }


def test_workers_start_safely_when_other_threads_run(tmp_path: Path) -> None:
    path = _big_file(tmp_path)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        threaded = preflight(path, workers=2, as_of=AS_OF).to_dict()
    finally:
        stop.set()
        thread.join()
    assert threaded == preflight(path, workers=1, as_of=AS_OF).to_dict()


def test_fingerprint_index_spills_to_disk_with_the_same_answers() -> None:
    keys = [i % 37 for i in range(200)]
    lines = list(range(1, 201))
    small, memory = FingerprintIndex(spill_after=10), FingerprintIndex()
    try:
        for index in (small, memory):
            for start in range(0, 200, 25):
                index.add(keys[start : start + 25], lines[start : start + 25], tag=0)
            index.add([5, 1000], [1, 2], tag=1)
        assert small._db is not None
        assert memory._db is None
        repeats = memory.repeats()
        assert small.repeats() == repeats
        assert len(repeats) == 200 - 37 + 1
        assert repeats[0] == (0, 38, 0, 1)
        assert repeats[-1] == (1, 1, 0, 6)
    finally:
        small.close()
        memory.close()


json_lines = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "messages",
                    "role",
                    "content",
                    "weight",
                    "tool_calls",
                    "tool_call_id",
                    "id",
                    "function",
                    "name",
                    "arguments",
                    "tools",
                    "type",
                    "text",
                    "image_url",
                    "url",
                    "input",
                    "preferred_output",
                    "non_preferred_output",
                    "parallel_tool_calls",
                    "prompt",
                    "completion",
                    "user",
                    "assistant",
                    "tool",
                    "system",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(json_lines, max_size=12), model=st.sampled_from([None, "gpt-4o-2024-08-06"]))
def test_random_json_never_crashes_and_issues_are_catalogued(
    values: list[Any], model: str | None
) -> None:
    report = preflight(jsonl(values), model=model, as_of=AS_OF)
    assert all(issue.code in RULES for issue in report.issues)
    assert all(issue.severity == RULES[issue.code].severity for issue in report.issues)
    lines = [i.line for i in report.issues if i.line is not None]
    assert lines == sorted(lines)
    json.loads(report.to_json())
    report._repr_html_()


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    report = preflight(data, as_of=AS_OF)
    assert report.training.n_lines == data.count(b"\n") + (
        0 if data.endswith(b"\n") or not data else 1
    )
    str(report)


def test_an_example_may_end_on_the_assistants_tool_call() -> None:
    # OpenAI's function-calling examples end on the call: the model learns to make it.
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"},
    }
    ending_on_call = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [call]},
        ],
        "tools": tools,
    }
    moving_on = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "user", "content": "Well?"},
            {"role": "assistant", "content": "Sunny."},
        ],
        "tools": tools,
    }
    report = preflight([ending_on_call] * 10, model=None)
    assert not [i for i in report.issues if i.code == "unanswered_tool_call"]
    report = preflight([moving_on] * 10, model=None)
    assert [i.line for i in report.errors if i.code == "unanswered_tool_call"] == list(range(1, 11))


def test_no_model_by_default_checks_the_data_alone_and_says_so() -> None:
    data = jsonl([chat(i) for i in range(1, 12)])
    # Long after every OpenAI shutdown in the table: a default model with a shutdown date would
    # fail the data for a model the user never chose.
    report = preflight(data, as_of=date(2030, 1, 1))
    assert report.ok, report.errors
    assert (report.model, report.base_model, report.cost) == (None, None, None)
    assert not {"model_shut_down", "model_shutdown_soon"} & set(report.issue_counts)
    (note,) = [i for i in report.issues if i.code == "no_model"]
    assert note.severity == "info"
    assert "no model" in note.message
    assert "o200k_base" in note.message
    assert "model=" in (note.fix or "")
    assert "no_model" in report.summary()
    assert Dataset.from_dicts([chat(i) for i in range(1, 12)]).preflight().model is None
    # A model given is checked as before, and the note is not there.
    named = preflight(data, model="gpt-4o-mini", as_of=date(2030, 1, 1))
    assert "model_shut_down" in {i.code for i in named.errors}
    assert "no_model" not in named.issue_counts


def test_summaries_list_errors_before_warnings() -> None:
    rows: list[Any] = [chat(i) for i in range(1, 12)]
    rows[1] = rows[0]  # a warning at line 2: a duplicate
    rows[8] = {"messages": [{"role": "user", "content": "Hi", "weight": 1}]}  # errors at line 9
    report = preflight(jsonl(rows), model=None)
    severities = [i.severity for i in report.issues]
    assert severities.index("warning") < severities.index("error")  # issues: in line order
    text = report.summary().splitlines()
    shown = [line.split()[0] for line in text if line.startswith("  ") and "..." not in line]
    assert shown == sorted(shown, key=["error", "warning", "info"].index), text
    assert shown[0] == "error"
    html = report._repr_html_()
    cells = html.split("<th>fix</th></tr>", 1)[1]
    first_warning = cells.index(">warning<")
    assert cells.index(">error<") < first_warning
    assert ">info<" not in cells[:first_warning]


def test_a_lone_surrogate_is_an_error_in_records_too() -> None:
    rows = [chat(i) for i in range(1, 12)]
    rows[3]["messages"][1]["content"] = "Is \udfff special?"
    rows[4]["messages"][2]["content"] = "A pair \U0001f600 is fine."
    report = preflight(rows, model=None)
    assert [(i.code, i.line, i.field) for i in report.errors] == [
        ("lone_surrogate", 4, "messages[1].content")
    ]
    assert "\\udfff" in report.errors[0].message


def test_misspelt_keys_get_a_did_you_mean() -> None:
    rows: list[Any] = [chat(i) for i in range(1, 12)]
    rows[2]["messages"][2]["wieght"] = 0
    rows[4]["tool"] = []
    rows[6]["messages"][1]["contnet"] = "x"
    rows[8]["messages"][1]["colour"] = "blue"
    report = preflight(rows, model=None)
    found = {(i.line, i.field): i for i in report.errors}
    weight = found[(3, "messages[2].wieght")]
    assert weight.code == "message_unrecognized_key"
    assert "did you mean 'weight'?" in weight.message
    assert weight.fix == "rename it to 'weight'"
    tools = found[(5, "tool")]
    assert tools.code == "unrecognized_example_key"
    assert "did you mean 'tools'?" in tools.message
    assert "did you mean 'content'?" in found[(7, "messages[1].contnet")].message
    unknown = found[(9, "messages[1].colour")]
    assert "did you mean" not in unknown.message
    assert unknown.fix == RULES["message_unrecognized_key"].fix
