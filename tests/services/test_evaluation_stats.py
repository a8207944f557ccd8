"""The bootstrap interval: a pure function, checked against distributions whose answer is known."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from finetune_kit.errors import ConfigurationError
from finetune_kit.inference.evaluation import bootstrap_mean_ci


def test_same_seed_same_interval_and_other_seed_differs() -> None:
    rng = random.Random(7)
    values = [rng.gauss(0.2, 1.0) for _ in range(60)]
    first = bootstrap_mean_ci(values, seed=3, n_resamples=2000)
    assert bootstrap_mean_ci(values, seed=3, n_resamples=2000) == first
    assert bootstrap_mean_ci(values, seed=4, n_resamples=2000) != first


def test_interval_matches_the_normal_approximation_for_a_large_sample() -> None:
    # For n = 2000 draws the bootstrap distribution of the mean is close to normal with standard
    # error s / sqrt(n) (s with the 1/n formula, as resampling uses the sample as the population).
    rng = random.Random(11)
    values = [rng.gauss(0.5, 2.0) for _ in range(2000)]
    mean = statistics.fmean(values)
    se = statistics.pstdev(values) / math.sqrt(len(values))
    low, high = bootstrap_mean_ci(values, confidence=0.95, n_resamples=4000, seed=0)
    assert low < mean < high
    assert low == pytest.approx(mean - 1.96 * se, abs=0.1 * se * 1.96)
    assert high == pytest.approx(mean + 1.96 * se, abs=0.1 * se * 1.96)


def test_coverage_of_a_known_mean_is_close_to_the_confidence() -> None:
    # Paired differences of two Bernoulli scorers (base right 40%, tuned right 60%): the true
    # mean difference is 0.2. Over 200 samples the 90% interval should hold it about 90% of the
    # time; with 200 trials the standard error of that share is about 2 points.
    true_difference = 0.2
    hits = 0
    trials = 200
    for trial in range(trials):
        rng = random.Random(1000 + trial)
        diffs = [
            float(rng.random() < 0.6) - float(rng.random() < 0.4)  # tuned minus base
            for _ in range(80)
        ]
        low, high = bootstrap_mean_ci(diffs, confidence=0.90, n_resamples=1000, seed=trial)
        hits += low <= true_difference <= high
    assert 0.84 <= hits / trials <= 0.96


def test_higher_confidence_gives_a_wider_interval() -> None:
    values = [float(i % 3) for i in range(50)]
    low90, high90 = bootstrap_mean_ci(values, confidence=0.90, n_resamples=2000)
    low99, high99 = bootstrap_mean_ci(values, confidence=0.99, n_resamples=2000)
    assert low99 < low90 < high90 < high99


def test_constant_values_give_a_point_interval() -> None:
    assert bootstrap_mean_ci([1.0] * 10) == (1.0, 1.0)
    assert bootstrap_mean_ci([0.25]) == (0.25, 0.25)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"values": []}, "values"),
        ({"values": [1.0, 0.0], "confidence": 1.0}, "confidence"),
        ({"values": [1.0, 0.0], "confidence": 0.0}, "confidence"),
        ({"values": [1.0, 0.0], "n_resamples": 10}, "n_resamples"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict[str, object], param: str) -> None:
    values = kwargs.pop("values")
    with pytest.raises(ConfigurationError) as info:
        bootstrap_mean_ci(values, **kwargs)  # type: ignore[arg-type]
    assert info.value.param == param
