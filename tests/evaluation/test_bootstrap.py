"""Bootstrap confidence intervals and the paired bootstrap test, against scipy, a binomial check and ser_scores."""

import numpy as np
import pytest
import scipy.stats

from hf_ser.evaluation.bootstrap import (
    batched_scores,
    confidence_intervals,
    dimensional_interval_metrics,
    interval_metrics,
    paired_bootstrap_test,
)
from hf_ser.evaluation.metrics import concordance_correlation, ser_scores


def _classifier(n: int, accuracy: float, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """References and predictions of a model right on about `accuracy` of `n` clips."""
    rng = np.random.default_rng(seed)
    references = rng.integers(0, classes, n)
    wrong = (references + rng.integers(1, classes, n)) % classes
    return references, np.where(rng.random(n) < accuracy, references, wrong)


def test_seeded_intervals_are_deterministic_and_contain_the_point_estimate():
    references, predictions = _classifier(120, 0.6)
    first = confidence_intervals(references, predictions, 4, samples=500, seed=3)
    assert first == confidence_intervals(references, predictions, 4, samples=500, seed=3)
    assert first != confidence_intervals(references, predictions, 4, samples=500, seed=4)
    scores = ser_scores(predictions, references, num_labels=4)
    for metric, (low, high) in first.items():
        assert low < scores[metric] < high, metric
        assert 0.05 < high - low < 0.3, metric  # 120 clips: about ±9 points


def test_intervals_narrow_with_more_clips():
    widths = {}
    for n in (100, 1600):
        references, predictions = _classifier(n, 0.6, seed=n)
        low, high = confidence_intervals(references, predictions, 4, samples=400, seed=0)["ua"]
        widths[n] = high - low
    assert 0.15 < widths[1600] / widths[100] < 0.4  # 16x the clips: about 1/4 of the width


def test_intervals_equal_scipys_percentile_bootstrap_on_the_same_resamples():
    references, predictions = _classifier(80, 0.55, seed=5)
    ours = confidence_intervals(references, predictions, 4, samples=300, seed=11)
    for metric in ("wa", "ua", "macro_f1"):
        theirs = scipy.stats.bootstrap(
            (references, predictions),
            lambda r, p, axis, metric=metric: batched_scores(r, p, 4)[metric],
            paired=True,
            vectorized=True,
            n_resamples=300,
            method="percentile",
            rng=np.random.default_rng(11),
        ).confidence_interval
        assert ours[metric] == pytest.approx((theirs.low, theirs.high), abs=1e-12), metric


def test_wa_interval_matches_the_binomial_normal_approximation():
    references, predictions = _classifier(2000, 0.7, seed=2)
    accuracy = float((references == predictions).mean())
    low, high = confidence_intervals(references, predictions, 4, samples=2000, seed=0)["wa"]
    half_width = 1.96 * np.sqrt(accuracy * (1 - accuracy) / 2000)  # about 2 points
    assert low == pytest.approx(accuracy - half_width, abs=0.003)
    assert high == pytest.approx(accuracy + half_width, abs=0.003)


def test_resampled_scores_follow_ser_scores_also_when_a_class_drops_out():
    """The vectorised scores are ser_scores' rules: UA and macro-F1 over the classes present in the references."""
    rng = np.random.default_rng(0)
    references = np.array([0] * 10 + [1] * 6 + [2] * 2 + [3])  # class 3: one clip, often not resampled
    predictions = rng.integers(0, 4, len(references))
    index = rng.integers(0, len(references), (40, len(references)))
    batched = batched_scores(references[index], predictions[index], 4)
    assert not all(3 in row for row in references[index])  # some resamples lack class 3
    for row in range(40):
        expected = ser_scores(predictions[index[row]], references[index[row]], num_labels=4)
        for metric in ("wa", "ua", "macro_f1"):
            assert batched[metric][row] == pytest.approx(expected[metric], abs=1e-12), (row, metric)


def test_results_keys_and_no_intervals_when_switched_off():
    references, predictions = _classifier(50, 0.5)
    keys = interval_metrics("test", references, predictions, 4, samples=100, seed=1)
    assert keys["test_bootstrap_samples"] == 100 and keys["test_bootstrap_seed"] == 1
    assert keys["test_ua_ci_low"] < keys["test_ua_ci_high"] and {"test_wa_ci_low", "test_macro_f1_ci_high"} <= set(keys)
    assert interval_metrics("test", references, predictions, 4, samples=0, seed=1) == {}


def test_paired_test_finds_a_clearly_better_model_and_not_an_identical_one():
    references, weak = _classifier(200, 0.5, seed=1)
    _, strong = _classifier(200, 0.8, seed=1)  # the same references, right more often
    better = paired_bootstrap_test(references, weak, strong, 4, samples=1000, seed=0)
    for metric in ("wa", "ua", "macro_f1"):
        assert better[metric]["difference"] > 0.15 and better[metric]["ci_low"] > 0, metric
        assert better[metric]["p_value"] < 0.01, metric
    same = paired_bootstrap_test(references, weak, weak.copy(), 4, samples=1000, seed=0)
    assert all(same[m] == {"difference": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0} for m in same)


def test_ccc_intervals_are_percentiles_of_the_ccc_of_seeded_resamples_and_hold_the_estimate():
    rng = np.random.default_rng(3)
    references = rng.uniform(1, 5, (60, 2))
    predictions = 0.7 * references + rng.normal(0, 0.6, (60, 2))
    keys = dimensional_interval_metrics("test", references, predictions, ["arousal", "valence"], samples=300, seed=5)
    draws = np.random.default_rng(5).integers(0, 60, (300, 60))  # the draw of every hf-ser bootstrap
    resampled = np.array([concordance_correlation(predictions[i], references[i]) for i in draws])
    for column, name in enumerate(["arousal", "valence"]):
        low, high = np.percentile(resampled[:, column], [2.5, 97.5])
        assert (keys[f"test_ccc_{name}_ci_low"], keys[f"test_ccc_{name}_ci_high"]) == pytest.approx((low, high))
        estimate = concordance_correlation(predictions, references)[column]
        assert low < estimate < high
    assert (keys["test_ccc_ci_low"], keys["test_ccc_ci_high"]) == pytest.approx(
        tuple(np.percentile(resampled.mean(axis=1), [2.5, 97.5]))
    )
    assert keys["test_bootstrap_samples"] == 300
    assert dimensional_interval_metrics("test", references, predictions, ["arousal", "valence"], 0, 5) == {}
