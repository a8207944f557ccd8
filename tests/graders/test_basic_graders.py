"""string_check as OpenAI's guide defines it; text_similarity from the metric libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from finetune_kit.graders import compile_grader, run_grader


def check(operation: str) -> dict[str, Any]:
    return {
        "type": "string_check",
        "name": "check",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference}}",
        "operation": operation,
    }


@pytest.mark.parametrize(
    ("operation", "sample", "reference", "reward"),
    [
        ("eq", "Paris", "Paris", 1.0),
        ("eq", "paris", "Paris", 0.0),
        ("eq", "Paris ", "Paris", 0.0),
        ("ne", "Paris", "Paris", 0.0),
        ("ne", "paris", "Paris", 1.0),
        ("like", "The answer is Paris.", "Paris", 1.0),
        ("like", "The answer is paris.", "Paris", 0.0),
        ("like", "Paris", "Par%", 0.0),
        ("ilike", "The answer is PARIS.", "paris", 1.0),
        ("ilike", "Die STRASSE", "straße", 1.0),
        ("ilike", "Lyon", "paris", 0.0),
        ("like", "anything", "", 1.0),
    ],
)
def test_string_check(operation: str, sample: str, reference: str, reward: float) -> None:
    result = run_grader(check(operation), sample, {"reference": reference})
    assert result.reward == reward
    assert not result.metadata.errors.has_error
    assert result.metadata.scores == {}


def similarity(metric: str) -> dict[str, Any]:
    return {
        "type": "text_similarity",
        "name": "sim",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference}}",
        "evaluation_metric": metric,
    }


HYPOTHESIS = "A quick brown fox jumped over the lazy dog sleeping by the river bank."
REFERENCE = "The quick brown fox jumps over the lazy dog sleeping by the river."


def direct(metric: str, hypothesis: str, reference: str) -> float:
    """The score as a user calling the library directly computes it."""
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz, utils

        return fuzz.WRatio(hypothesis, reference, processor=utils.default_process) / 100
    if metric == "bleu":
        import sacrebleu

        return min(1.0, sacrebleu.sentence_bleu(hypothesis, [reference]).score / 100)
    from nltk.tokenize import NLTKWordTokenizer

    words = NLTKWordTokenizer().tokenize
    if metric == "gleu":
        from nltk.translate.gleu_score import sentence_gleu

        return float(sentence_gleu([words(reference)], words(hypothesis)))
    from rouge_score import rouge_scorer

    kind = "rougeL" if metric == "rouge_l" else f"rouge{metric[-1]}"
    return rouge_scorer.RougeScorer([kind]).score(reference, hypothesis)[kind].fmeasure


@pytest.mark.parametrize(
    "metric", ["fuzzy_match", "bleu", "gleu", "rouge_1", "rouge_2", "rouge_3", "rouge_5", "rouge_l"]
)
def test_text_similarity_is_the_librarys_score(metric: str) -> None:
    result = run_grader(similarity(metric), HYPOTHESIS, {"reference": REFERENCE})
    assert result.reward == pytest.approx(direct(metric, HYPOTHESIS, REFERENCE))
    assert 0.0 < result.reward < 1.0
    assert result.metadata.scores[metric] == result.reward
    assert not result.metadata.errors.has_error


@pytest.mark.parametrize("metric", ["fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_l"])
def test_identical_text_scores_1_or_close_and_empty_text_0(metric: str) -> None:
    same = run_grader(similarity(metric), REFERENCE, {"reference": REFERENCE}).reward
    assert same == pytest.approx(1.0, abs=0.002)  # METEOR's fragmentation penalty: 0.9985
    assert run_grader(similarity(metric), "", {"reference": REFERENCE}).reward == 0.0


def test_rouge_counts_words_of_every_script() -> None:
    # rouge-score's own tokenizer keeps only a-z and 0-9: identical Japanese text scored 0.
    text = "東京は日本の首都です 東京 です"
    result = run_grader(similarity("rouge_l"), text, {"reference": text})
    assert result.reward == 1.0
    assert result.metadata.scores["precision"] == 1.0


def test_a_compiled_grader_grades_many_samples_alike() -> None:
    with compile_grader(similarity("bleu")) as grader:
        rewards = [grader.run(HYPOTHESIS, {"reference": REFERENCE}).reward for _ in range(3)]
    assert len(set(rewards)) == 1


METEOR_SCRIPT = """
import json, sys
from finetune_kit.graders import run_grader
grader = {"type": "text_similarity", "name": "m", "input": "{{sample.output_text}}",
          "reference": "{{item.reference}}", "evaluation_metric": "meteor"}
result = run_grader(grader, "the auto is fast", {"reference": "the car is fast"})
print(json.dumps({"reward": result.reward, "scores": result.metadata.scores}))
"""


def _meteor_in(nltk_data: Path) -> dict[str, Any]:
    # In a fresh process: nltk reads NLTK_DATA when imported, and WordNet is looked up once.
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", METEOR_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        env={"NLTK_DATA": str(nltk_data), "HOME": str(nltk_data), "PATH": ""},
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_meteor_without_wordnet_matches_words_and_stems_and_says_so(tmp_path: Path) -> None:
    from nltk.translate.meteor_score import meteor_score

    class NoSynonyms:
        def synsets(self, *_args: Any, **_kwargs: Any) -> list[Any]:
            return []

    found = _meteor_in(tmp_path)
    assert found["scores"]["wordnet"] is False
    expected = meteor_score(
        [["the", "car", "is", "fast"]], ["the", "auto", "is", "fast"], wordnet=NoSynonyms()
    )
    assert found["reward"] == pytest.approx(expected)


def _nltk_data_with_wordnet() -> Path | None:
    """The nltk data folder holding WordNet on this machine, if nltk finds one."""
    import nltk

    try:
        found = Path(nltk.data.find("corpora/wordnet"))
    except LookupError:
        return None
    return found.parent.parent


WORDNET = _nltk_data_with_wordnet()


@pytest.mark.skipif(
    WORDNET is None,
    reason="nltk finds no WordNet here (set NLTK_DATA to a folder with corpora/wordnet)",
)
def test_meteor_uses_wordnet_when_nltk_finds_it() -> None:
    assert WORDNET is not None
    found = _meteor_in(WORDNET)
    assert found["scores"]["wordnet"] is True
    assert found["reward"] > 0.95  # "auto" matches "car" as a synonym
