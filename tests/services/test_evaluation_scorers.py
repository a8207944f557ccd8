"""Scorers are pure functions of (reply, case); the judge's parse is tested on its own here."""

from __future__ import annotations

import re
from typing import Any

import pytest

from finetune_kit.errors import ConfigurationError
from finetune_kit.inference.evaluation import EvalCase
from finetune_kit.inference.judge import DEFAULT_JUDGE_PROMPT, ModelJudge, parse_judge_score
from finetune_kit.inference.replies import ChatReply, ReplyToolCall
from finetune_kit.inference.scorers import (
    CallableScorer,
    Contains,
    ExactMatch,
    RegexMatch,
    ToolCallMatch,
    ValidJSON,
    check_references,
    resolve_scorers,
    score_reply,
)


def reply(text: str = "", tool_calls: tuple[ReplyToolCall, ...] = ()) -> ChatReply:
    return ChatReply(
        text=text,
        model="m",
        finish_reason="stop",
        prompt_tokens=3,
        completion_tokens=2,
        latency=0.01,
        tool_calls=tool_calls,
    )


def case(reference: str | None = "Paris", calls: tuple[ReplyToolCall, ...] = ()) -> EvalCase:
    return EvalCase(
        messages=({"role": "user", "content": "Capital of France?"},),
        reference=reference,
        reference_tool_calls=calls,
    )


@pytest.mark.parametrize(
    ("scorer", "text", "expected"),
    [
        (ExactMatch(), "Paris", 1.0),
        (ExactMatch(), "  Paris \n", 1.0),
        (ExactMatch(), "paris", 0.0),
        (ExactMatch(ignore_case=True), "PARIS", 1.0),
        (ExactMatch(), "Paris.", 0.0),
        (Contains(), "It is Paris, of course", 1.0),
        (Contains(), "It is paris", 0.0),
        (Contains(ignore_case=True), "It is paris", 1.0),
        (Contains("France"), "France's capital", 1.0),
        (Contains("France"), "Paris", 0.0),
        (RegexMatch(r"\bPar\w+"), "I think Paris", 1.0),
        (RegexMatch(r"Par\w+", full=True), "I think Paris", 0.0),
        (RegexMatch(r"par", flags=re.IGNORECASE), "PARIS", 1.0),
        (ValidJSON(), '{"city": "Paris"}', 1.0),
        (ValidJSON(), "[1, 2", 0.0),
        (ValidJSON(), '```json\n{"city": "Paris"}\n```', 0.0),
        (ValidJSON(allow_code_fence=True), '```json\n{"city": "Paris"}\n```', 1.0),
        (ValidJSON(allow_code_fence=True), "```\nnot json\n```", 0.0),
    ],
)
def test_text_scorers(scorer: Any, text: str, expected: float) -> None:
    assert scorer.score(reply(text), case()) == expected


def call(name: str, arguments: str) -> ReplyToolCall:
    return ReplyToolCall(name=name, arguments=arguments, id="call_1")


def test_tool_call_match_compares_names_and_parsed_arguments() -> None:
    expected = (call("get_weather", '{"city": "Paris", "unit": "c"}'),)
    scorer = ToolCallMatch()
    same_args_other_spacing = (call("get_weather", '{"unit":"c","city":"Paris"}'),)
    assert scorer.score(reply(tool_calls=same_args_other_spacing), case(None, expected)) == 1.0
    other_args = (call("get_weather", '{"city": "Lyon", "unit": "c"}'),)
    assert scorer.score(reply(tool_calls=other_args), case(None, expected)) == 0.0
    other_name = (call("get_time", '{"city": "Paris", "unit": "c"}'),)
    assert scorer.score(reply(tool_calls=other_name), case(None, expected)) == 0.0
    assert scorer.score(reply("It is sunny"), case(None, expected)) == 0.0
    assert (
        ToolCallMatch(check_arguments=False).score(
            reply(tool_calls=other_args), case(None, expected)
        )
        == 1.0
    )


def test_tool_call_match_order_and_count() -> None:
    a, b = call("a", '{"x": 1}'), call("b", "{}")
    assert ToolCallMatch().score(reply(tool_calls=(b, a)), case(None, (a, b))) == 1.0
    assert ToolCallMatch(ordered=True).score(reply(tool_calls=(b, a)), case(None, (a, b))) == 0.0
    assert ToolCallMatch().score(reply(tool_calls=(a,)), case(None, (a, b))) == 0.0
    # A reference without calls expects an answer without calls.
    assert ToolCallMatch().score(reply("Paris"), case("Paris")) == 1.0
    assert ToolCallMatch().score(reply(tool_calls=(a,)), case("Paris")) == 0.0
    # Invalid JSON arguments only match byte for byte.
    bad = call("a", "{x: 1")
    assert ToolCallMatch().score(reply(tool_calls=(bad,)), case(None, (bad,))) == 1.0
    assert ToolCallMatch().score(reply(tool_calls=(a,)), case(None, (bad,))) == 0.0


def test_callable_scorer_takes_bools_numbers_and_none() -> None:
    def mentions_paris(r: ChatReply, c: EvalCase) -> bool:
        return "paris" in r.text.lower()

    scorers = resolve_scorers([mentions_paris, CallableScorer(lambda r, c: 0.25, name="quarter")])
    scores, errors = score_reply(scorers, reply("Paris!"), case())
    assert scores == {"mentions_paris": 1.0, "quarter": 0.25}
    assert errors == {}
    none_scorer = resolve_scorers({"abstain": lambda r, c: None})
    scores, errors = score_reply(none_scorer, reply("x"), case())
    assert scores == {"abstain": None}
    assert "None" in errors["abstain"]


def test_a_failing_scorer_is_recorded_and_the_others_still_score() -> None:
    def broken(r: ChatReply, c: EvalCase) -> float:
        raise KeyError("oops")

    scorers = resolve_scorers([broken, "exact_match"])
    scorers += resolve_scorers({"nan": lambda r, c: float("nan"), "text": lambda r, c: "yes"})
    scores, errors = score_reply(scorers, reply("Paris"), case())
    assert scores == {"broken": None, "exact_match": 1.0, "nan": None, "text": None}
    assert errors["broken"].startswith("KeyError")
    assert "not a finite number" in errors["nan"]
    assert "return a number or a bool" in errors["text"]


def test_an_async_callable_is_refused_by_the_sync_path() -> None:
    async def later(r: ChatReply, c: EvalCase) -> float:
        return 1.0

    with pytest.raises(ConfigurationError, match="AsyncInferenceClient"):
        score_reply(resolve_scorers(later), reply("x"), case())


def test_resolve_scorers_names_defaults_and_duplicates() -> None:
    assert [s.name for s in resolve_scorers(None)] == ["exact_match"]
    names = [s.name for s in resolve_scorers(["exact_match", "contains", "valid_json"])]
    assert names == ["exact_match", "contains", "valid_json"]
    renamed = resolve_scorers({"strict": ExactMatch(), "loose": ExactMatch(ignore_case=True)})
    assert [s.name for s in renamed] == ["strict", "loose"]
    with pytest.raises(ConfigurationError, match="two scorers are named 'exact_match'"):
        resolve_scorers([ExactMatch(), "exact_match"])
    with pytest.raises(ConfigurationError, match="no built-in scorer named 'exactmatch'") as info:
        resolve_scorers(["exactmatch"])
    assert info.value.param == "scorers"
    with pytest.raises(ConfigurationError, match=r"scorers\[1\] is a int"):
        resolve_scorers(["exact_match", 3])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="empty"):
        resolve_scorers([])


def test_bad_scorer_arguments_fail_at_construction() -> None:
    with pytest.raises(ConfigurationError) as info:
        RegexMatch("(unclosed")
    assert info.value.param == "pattern"
    with pytest.raises(ConfigurationError):
        Contains("")
    with pytest.raises(ConfigurationError) as info:
        ModelJudge("judge", scale=(5, 1))
    assert info.value.param == "scale"
    with pytest.raises(ConfigurationError) as info:
        ModelJudge("judge", prompt="Grade {question}")
    assert info.value.param == "prompt"


def test_check_references_names_the_example_and_scorer() -> None:
    cases = [case("Paris"), case(None)]
    check_references(resolve_scorers(["valid_json", Contains("x")]), cases)
    with pytest.raises(ConfigurationError, match=r"examples\[1\].*'exact_match'"):
        check_references(resolve_scorers("exact_match"), cases)
    # Tool-call match needs a reference turn, which tool calls alone provide.
    tool_case = case(None, (call("a", "{}"),))
    check_references(resolve_scorers("tool_call_match"), [tool_case])
    with pytest.raises(ConfigurationError, match="tool_call_match"):
        check_references(resolve_scorers("tool_call_match"), [case(None)])


@pytest.mark.parametrize(
    ("text", "scale", "expected"),
    [
        ("Score: 8", (1, 10), 8.0),
        ("score:8", (1, 10), 8.0),
        ("The answer is mostly right.\nScore: 7", (1, 10), 7.0),
        ("**Score:** 9", (1, 10), 9.0),
        ("**Rating**: 4/5", (1, 5), 4.0),
        ("Rating: 4/5", (1, 10), 1 + 0.8 * 9),
        ("Grade = 3", (1, 5), 3.0),
        ("I give it a score of 6.5 overall", (1, 10), 6.5),
        ("First thoughts: score 3. On reflection, Score: 5", (1, 10), 5.0),
        ("8/10", (1, 10), 8.0),
        ("It deserves 4 out of 5.", (1, 5), 4.0),
        ("7", (1, 10), 7.0),
        ("  **7**. ", (1, 10), 7.0),
        ("Score: 11", (1, 10), None),
        ("Score: 0", (1, 10), None),
        ("The answer lists 3 facts and 2 mistakes", (1, 10), None),
        ("", (1, 10), None),
        ("I cannot grade this.", (1, 10), None),
        ("12/0", (1, 10), None),
        ("version 3.2.1", (1, 10), None),
        ("underscore: 4", (1, 10), None),
    ],
)
def test_parse_judge_score(text: str, scale: tuple[float, float], expected: float | None) -> None:
    result = parse_judge_score(text, scale=scale)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_judge_prompt_rendering_keeps_other_braces_and_placeholders_in_answers() -> None:
    judge = ModelJudge("judge-model", scale=(1, 5))
    rendered = judge.render(reply('{"x": 1} and {reference}'), case("Paris"))
    assert "Capital of France?" in rendered
    assert "Reference answer:\nParis" in rendered
    assert '{"x": 1} and {reference}' in rendered
    assert "from 1 to 5" in rendered
    no_reference = judge.render(reply("Paris"), case(None))
    assert "none given" in no_reference
    assert "{question}" in DEFAULT_JUDGE_PROMPT


def test_judge_normalizes_its_scale_and_reports_unparsable_replies() -> None:
    judge = ModelJudge("judge-model", scale=(1, 5))
    assert judge.normalize(1) == 0.0
    assert judge.normalize(5) == 1.0
    assert judge._read("Score: 4") == 0.75
    with pytest.raises(ValueError, match="no score from 1 to 5"):
        judge._read("Looks good to me")
    custom = ModelJudge("judge-model", scale=(0, 1), parse=lambda t: 1.0 if "yes" in t else 0.0)
    assert custom._read("yes, correct") == 1.0


def test_judge_without_a_client_says_how_to_give_one() -> None:
    with pytest.raises(ConfigurationError, match="pass client="):
        ModelJudge("judge-model").score(reply("x"), case())
