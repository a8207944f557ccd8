"""multi graders: calculate_output parsed by a whitelist, never evaluated as Python."""

from __future__ import annotations

from typing import Any

import pytest

from finetune_kit.graders import GraderValidationError, compile_grader, run_grader


def eq(reference: str) -> dict[str, Any]:
    return {
        "type": "string_check",
        "name": f"is_{reference}",
        "input": "{{sample.output_text}}",
        "reference": reference,
        "operation": "eq",
    }


def contains(reference: str) -> dict[str, Any]:
    return {**eq(reference), "name": f"has_{reference}", "operation": "like"}


def multi(formula: str, **graders: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "multi",
        "name": "combined",
        "calculate_output": formula,
        "graders": graders or {"a": contains("a"), "b": contains("b")},
    }


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("a + b", 1.0),
        ("(a + b) / 2", 0.5),
        ("0.5 * a + 0.5 * b", 0.5),
        ("a - b", 1.0),
        ("-a + 2", 1.0),
        ("2 ^ 3 ^ 2", 512.0),  # right-associative, as in mathematics
        ("a + 2 ^ 2", 5.0),  # ^ binds tighter than +
        ("-2 ^ 2", -4.0),
        ("2 ** 3", 8.0),
        ("min(a, b)", 0.0),
        ("max(a, b, 0.25)", 1.0),
        ("abs(b - a)", 1.0),
        ("floor(1.7) + ceil(0.2)", 2.0),
        ("exp(b)", 1.0),
        ("sqrt(4 * a)", 2.0),
        ("log(exp(a))", 1.0),
        ("1e-3 * a", 0.001),
    ],
)
def test_formulas(formula: str, expected: float) -> None:
    result = run_grader(multi(formula), "a only", {})
    assert result.reward == pytest.approx(expected)
    assert result.sub_rewards == {"a": 1.0, "b": 0.0}
    assert result.metadata.scores == {"a": 1.0, "b": 0.0}
    assert result.metadata.type == "multi"
    assert not result.metadata.errors.has_error


@pytest.mark.parametrize(
    ("formula", "words"),
    [
        ("a + c", "uses 'c', which is not one of the graders' names (a, b)"),
        ("a + aa", "uses 'aa' (did you mean 'a'?)"),
        ("round(a)", "the function 'round'"),
        ("__import__('os').system('true')", "the function \"__import__('os').system\""),
        ("__import__('os')", "the function '__import__'"),
        ("a.__class__", "'a.__class__'"),
        ("a // b", "the operator '//'"),
        ("a % b", "the operator '%'"),
        ("a if b else 1", "'a if b else 1'"),
        ("a < b", "'a < b'"),
        ("[a, b]", "'[a, b]'"),
        ("'a'", "the constant 'a'"),
        ("True", "the constant True"),
        ("min()", "min takes one or more arguments"),
        ("abs(a, b)", "abs takes 1 argument"),
        ("max", "call it: max(...)"),
        ("max(*a)", "*arguments"),
        ("min(a, key=b)", "keyword arguments"),
        ("a +", "is not a formula"),
        ("", "is empty"),
        ("lambda: 1", "'lambda: 1'"),
    ],
)
def test_a_bad_formula_is_refused_naming_what_is_wrong(formula: str, words: str) -> None:
    with pytest.raises(GraderValidationError) as info:
        compile_grader(multi(formula))
    assert info.value.field == "calculate_output"
    assert info.value.grader == "combined"
    assert words in str(info.value)


@pytest.mark.parametrize("formula", ["a / b", "log(b)", "sqrt(b - 1)", "exp(1000 * a)", "10 ^ 400"])
def test_a_formula_that_cannot_be_computed_gives_0_with_other_error(formula: str) -> None:
    result = run_grader(multi(formula), "a only", {})
    assert result.reward == 0.0
    assert result.metadata.errors.other_error
    assert formula in (result.metadata.errors.other_error_details or "")
    assert result.sub_rewards == {"a": 1.0, "b": 0.0}


def test_a_failing_sub_grader_counts_0_and_its_flags_reach_the_multi_grader() -> None:
    grader = multi(
        "ok + missing",
        ok=contains("a"),
        missing={**eq("x"), "reference": "{{item.nothing}}", "operation": "ne"},
    )
    result = run_grader(grader, "a", {})
    assert result.sub_rewards == {"ok": 1.0, "missing": 0.0}
    assert result.reward == 1.0
    assert result.metadata.errors.invalid_variable_error


def test_the_formula_is_evaluated_with_floats_only() -> None:
    # An integer power this large would hang an int evaluator; floats overflow at once.
    result = run_grader(multi("9 ^ 9 ^ 9"), "x", {})
    assert result.metadata.errors.other_error
    assert result.reward == 0.0
