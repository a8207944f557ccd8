"""Dataset: strict reading, exact writing, and combinators that never change the original."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune_kit.data.dataset import Dataset, concat, example_key
from finetune_kit.data.records import (
    ChatExample,
    PreferenceExample,
    ReinforcementExample,
    TrainingExample,
)
from finetune_kit.errors import ConfigurationError, ExampleValidationError, JSONLDecodeError

SEED_FILE = Path(__file__).resolve().parents[3] / "shared" / "data" / "seed-training-data.jsonl"


def chat(user: str, assistant: str = "answer") -> ChatExample:
    return ChatExample.single_turn(user, assistant)


def lines_of(dataset: Dataset[Any]) -> list[str]:
    return [example.to_json_line() for example in dataset]


def line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


CHAT = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
RFT = {"messages": [{"role": "user", "content": "q"}], "answer": 4}


@pytest.mark.skipif(not SEED_FILE.exists(), reason=f"{SEED_FILE} is not on this machine")
def test_the_seed_file_reads_and_writes_back_as_compact_lines() -> None:
    dataset = Dataset.from_jsonl(SEED_FILE)
    assert len(dataset) == 10
    assert dataset.kind == "chat"
    assert dataset.method == "supervised"
    originals = SEED_FILE.read_text(encoding="utf-8").splitlines()
    expected = "".join(
        json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":")) + "\n"
        for text in originals
    ).encode("utf-8")
    assert dataset.to_jsonl_bytes() == expected
    assert dataset.sha256 == hashlib.sha256(expected).hexdigest()


def test_reading_accepts_a_bom_crlf_and_blank_lines() -> None:
    data = b"\xef\xbb\xbf" + json.dumps(CHAT).encode() + b"\r\n\r\n" + line(CHAT)
    dataset = Dataset.from_jsonl(data)
    assert len(dataset) == 2
    assert b"\r" not in dataset.to_jsonl_bytes()


def test_reading_names_the_line_of_broken_json() -> None:
    with pytest.raises(JSONLDecodeError) as info:
        Dataset.from_jsonl(line(CHAT) + b'{"messages": [\n')
    assert info.value.line == 2


def test_reading_names_the_line_and_field_of_a_bad_record(tmp_path: Path) -> None:
    bad = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "weight": 3},
        ]
    }
    path = tmp_path / "train.jsonl"
    path.write_bytes(line(CHAT) + line(CHAT) + line(bad))
    with pytest.raises(ExampleValidationError) as info:
        Dataset.from_jsonl(path)
    assert (info.value.line, info.value.field) == (3, "messages[1].weight")
    assert str(info.value).startswith("line 3: messages[1].weight: weight must be 0 or 1")


def test_lines_of_different_kinds_are_refused_with_the_line_and_a_hint() -> None:
    with pytest.raises(ExampleValidationError) as info:
        Dataset.from_jsonl(line(CHAT) + line(CHAT) + line(RFT))
    assert info.value.line == 3
    message = str(info.value)
    assert "line 3: this is a reinforcement example" in message
    assert "line 1 is a chat example" in message
    assert "add the assistant's answer" in message


def test_a_kind_reads_every_line_as_that_kind() -> None:
    unanswered = {
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    }
    dataset = Dataset.from_jsonl(line(CHAT) + line(unanswered), kind="chat")
    assert [len(ex.messages) for ex in dataset] == [2, 2]


def test_from_dicts_detects_the_kind() -> None:
    assert Dataset.from_dicts([RFT, RFT]).method == "reinforcement"
    preference = PreferenceExample.single_turn("q", "good", "bad").to_dict()
    assert Dataset.from_dicts([preference]).method == "dpo"
    with pytest.raises(ExampleValidationError) as info:
        Dataset.from_dicts([CHAT, {"messages": [{"role": "bot", "content": "x"}]}])
    assert info.value.line == 2


def test_writing_gives_one_compact_utf8_record_per_line(tmp_path: Path) -> None:
    dataset = Dataset([chat("Ça va ?", "Très bien 🙂"), chat("q2")])
    path = tmp_path / "out.jsonl"
    assert dataset.to_jsonl(path) == 2
    raw = path.read_bytes()
    assert raw == dataset.to_jsonl_bytes()
    assert raw.endswith(b"\n")
    assert raw.count(b"\n") == 2
    assert "Très bien 🙂".encode() in raw
    assert b", " not in raw
    assert b": " not in raw
    assert Dataset.from_jsonl(path) == dataset


def test_writing_into_a_binary_file_object(tmp_path: Path) -> None:
    dataset = Dataset([chat("q")])
    with open(tmp_path / "x.jsonl", "wb") as out:
        dataset.to_jsonl(out)
    assert (tmp_path / "x.jsonl").read_bytes() == dataset.to_jsonl_bytes()


def test_iter_dicts_gives_the_api_objects() -> None:
    assert list(Dataset([chat("q", "a")]).iter_dicts()) == [CHAT]


def test_the_sha256_changes_with_the_content() -> None:
    assert Dataset([chat("q")]).sha256 == Dataset([chat("q")]).sha256
    assert Dataset([chat("q")]).sha256 != Dataset([chat("q2")]).sha256


def test_a_lone_surrogate_is_reported_with_the_example_number() -> None:
    dataset = Dataset([chat("fine"), chat("bad \ud800 text")])
    with pytest.raises(ExampleValidationError, match="example 2") as info:
        dataset.to_jsonl_bytes()
    assert info.value.line == 2


def test_only_records_of_one_kind_go_in() -> None:
    with pytest.raises(TypeError, match=r"Dataset\.from_dicts"):
        Dataset([CHAT])  # type: ignore[type-var]
    mixed: list[TrainingExample] = [chat("q"), ReinforcementExample.single_turn("q")]
    with pytest.raises(ExampleValidationError, match="line 2: this is a reinforcement example"):
        Dataset(mixed)
    assert Dataset().kind == "chat"
    assert Dataset([], kind="preference").method == "dpo"


def test_a_dataset_is_an_immutable_sequence() -> None:
    dataset = Dataset([chat(str(i)) for i in range(5)])
    assert isinstance(dataset.examples, tuple)
    assert dataset[0] == chat("0")
    assert dataset[-1] == chat("4")
    head = dataset[:2]
    assert isinstance(head, Dataset)
    assert lines_of(head) == lines_of(dataset)[:2]
    assert chat("3") in dataset
    with pytest.raises(TypeError):
        dataset[0] = chat("x")  # type: ignore[index]


def test_filter_keeps_order_and_leaves_the_original_alone() -> None:
    dataset = Dataset([chat(q) for q in ("a", "bbb", "cc", "dddd")])
    kept = dataset.filter(lambda ex: len(str(ex.messages[0].content)) >= 3)
    assert [ex.messages[0].content for ex in kept] == ["bbb", "dddd"]
    assert len(dataset) == 4


def test_sample_is_seeded_and_keeps_the_original_order() -> None:
    dataset = Dataset([chat(str(i)) for i in range(50)])
    first = dataset.sample(10, seed=7)
    assert first == dataset.sample(10, seed=7)
    assert first != dataset.sample(10, seed=8)
    positions = [lines_of(dataset).index(text) for text in lines_of(first)]
    assert positions == sorted(positions)
    assert len(set(positions)) == 10
    with pytest.raises(ConfigurationError) as info:
        dataset.sample(51)
    assert info.value.param == "n"


def test_shuffle_is_seeded_and_keeps_every_example() -> None:
    dataset = Dataset([chat(str(i)) for i in range(20)])
    shuffled = dataset.shuffle(seed=3)
    assert shuffled == dataset.shuffle(seed=3)
    assert shuffled != dataset
    assert sorted(lines_of(shuffled)) == sorted(lines_of(dataset))


def test_dedupe_exact_and_normalised() -> None:
    dataset = Dataset(
        [chat("Hello  world"), chat("Hello  world"), chat("hello world "), chat("other")]
    )
    exact = dataset.dedupe()
    assert [ex.messages[0].content for ex in exact] == ["Hello  world", "hello world ", "other"]
    loose = dataset.dedupe(normalize=True)
    assert [ex.messages[0].content for ex in loose] == ["Hello  world", "other"]


def test_example_key_accepts_api_objects() -> None:
    assert example_key(CHAT) == chat("q", "a").to_json_line()
    assert example_key(
        {"messages": [{"content": "Q", "role": "user"}]}, normalize=True
    ) == example_key({"messages": [{"role": "user", "content": " q"}]}, normalize=True)


def test_split_of_distinct_examples_has_the_requested_size() -> None:
    dataset = Dataset([chat(f"question {i}") for i in range(1000)])
    train, valid = dataset.split(validation=0.2, seed=0)
    assert (len(train), len(valid)) == (800, 200)
    train, valid = dataset.split(validation=50, seed=0)
    assert len(valid) == 50


def test_split_of_a_small_dataset_keeps_both_sides() -> None:
    dataset = Dataset([chat(str(i)) for i in range(4)])
    train, valid = dataset.split(validation=0.1)
    assert (len(train), len(valid)) == (3, 1)


def test_split_rejects_a_bad_share() -> None:
    dataset = Dataset([chat(str(i)) for i in range(4)])
    for bad in (0.0, 1.0, 1.5, 4, -1):
        with pytest.raises(ConfigurationError) as info:
            dataset.split(validation=bad)
        assert info.value.param == "validation"


questions = st.lists(
    st.sampled_from(["alpha", "Alpha ", " ALPHA", "beta", "beta\n", "gamma", "delta", "Delta"])
    | st.text(max_size=4),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(questions, st.floats(min_value=0.05, max_value=0.95), st.integers(0, 2**31), st.data())
def test_split_never_puts_an_example_on_both_sides_and_ignores_order(
    texts: list[str], share: float, seed: int, data: st.DataObject
) -> None:
    dataset = Dataset([chat(text) for text in texts])
    train, valid = dataset.split(validation=share, seed=seed)

    def keys(ds: Dataset[ChatExample]) -> set[str]:
        return {example_key(ex, normalize=True) for ex in ds}

    # Nothing the model trains on, not even a re-spaced or re-cased copy, is in validation.
    assert not keys(train) & keys(valid)
    # Every example is on exactly one side, and each side keeps the original order.
    assert Counter(lines_of(train)) + Counter(lines_of(valid)) == Counter(lines_of(dataset))
    for side in (train, valid):
        it = iter(lines_of(dataset))
        assert all(text in it for text in lines_of(side))
    # With two or more distinct examples, both sides get some.
    if len(keys(dataset)) >= 2:
        assert len(train)
        assert len(valid)
    # The same examples in another order split into the same two multisets.
    reordered = Dataset(data.draw(st.permutations(list(dataset))))
    train2, valid2 = reordered.split(validation=share, seed=seed)
    assert Counter(lines_of(train2)) == Counter(lines_of(train))
    assert Counter(lines_of(valid2)) == Counter(lines_of(valid))


def test_concat_joins_datasets_of_one_kind() -> None:
    a = Dataset([chat("1"), chat("2")])
    b = Dataset([chat("3")])
    assert lines_of(concat(a, b)) == lines_of(a) + lines_of(b)
    assert a + b == concat(a, b)
    assert concat(Dataset([], kind="preference"), a).kind == "chat"
    with pytest.raises(ConfigurationError, match="different kinds"):
        concat(a, Dataset([ReinforcementExample.single_turn("q")]))  # type: ignore[misc]
    with pytest.raises(ConfigurationError):
        concat()


def test_html_preview_shows_count_kind_and_escaped_examples() -> None:
    dataset = Dataset([chat(f"<b>question {i}</b>", f"answer {i}") for i in range(7)])
    page = dataset._repr_html_()
    assert "7 chat examples" in page
    assert "method: supervised" in page
    assert "&lt;b&gt;question 0&lt;/b&gt;" in page
    assert "<b>question" not in page
    assert "answer 4" in page
    assert "answer 5" not in page
    assert "… and 2 more" in page


def test_html_preview_of_preference_and_reinforcement_examples() -> None:
    pref = Dataset([PreferenceExample.single_turn("Which?", "this one", "that one")])._repr_html_()
    assert "1 preference example " in pref
    assert "this one" in pref
    assert "that one" in pref
    rft = Dataset([ReinforcementExample.single_turn("Count", reference_answer=5)])._repr_html_()
    assert "reference_answer" in rft
    assert "Count" in rft


def test_preflight_checks_the_dataset_as_its_method() -> None:
    report = Dataset([chat(f"question {i}") for i in range(12)]).preflight(model=None)
    assert report.ok
    assert report.method == "supervised"
    assert report.training.n_examples == 12


def test_preflight_reports_what_records_cannot_see() -> None:
    # Records check one example's shape; preflight checks the file: here, too few examples.
    report = Dataset([chat("q")]).preflight(model=None)
    assert not report.ok
    assert "too_few_examples" in {issue.code for issue in report.errors}


def test_preflight_of_a_preference_dataset_checks_dpo() -> None:
    dataset = Dataset([PreferenceExample.single_turn(f"q{i}", "good", "bad") for i in range(10)])
    report = dataset.preflight(model=None)
    assert report.method == "dpo"
    assert report.ok, report.errors
