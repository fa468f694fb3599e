"""Uncertainty of WA, UA and macro-F1 (and of the CCC of dimensional models): percentile bootstrap confidence
intervals over utterances, and a paired bootstrap test between two models scored on the same clips.

Each resample draws the split's clips with replacement (seeded, `numpy.random.default_rng(seed).integers(0, n, (B,
n))`, the draw `scipy.stats.bootstrap` makes); the three scores are computed for all resamples at once from their
confusion matrices, with the rules of the `ser_metric` module (UA and macro-F1 average over the classes present in
the resample's references). The interval is the 2.5th to 97.5th percentile of the B resampled scores.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from hf_ser.evaluation.metrics import ccc_key, concordance_correlation

CONFIDENCE = 0.95
SCORES = ("wa", "ua", "macro_f1")
# Rows of resamples scored at once: bounds memory at about this many clip indices, whatever the split's size.
CHUNK_ITEMS = 4_000_000


def ci_keys(prefix: str, metric: str) -> tuple[str, str]:
    """`test_ua_ci_low`, `test_ua_ci_high`: where a results file keeps the interval of `test_ua`."""
    return f"{prefix}_{metric}_ci_low", f"{prefix}_{metric}_ci_high"


def read_interval(results: dict, prefix: str, metric: str) -> Optional[tuple[float, float]]:
    """The (low, high) interval of `prefix_metric` in a results file, or None when it has none (bootstrap off)."""
    low, high = ci_keys(prefix, metric)
    return (results[low], results[high]) if low in results and high in results else None


def batched_scores(references: np.ndarray, predictions: np.ndarray, num_labels: int) -> dict[str, np.ndarray]:
    """WA, UA and macro-F1 of each row of `references` / `predictions` (shape (B, n), class ids): arrays of B."""
    references, predictions = np.atleast_2d(references), np.atleast_2d(predictions)
    rows, n = references.shape
    cells = np.arange(rows)[:, None] * num_labels**2 + references * num_labels + predictions
    confusion = np.bincount(cells.ravel(), minlength=rows * num_labels**2).reshape(rows, num_labels, num_labels)
    true_positives = np.diagonal(confusion, axis1=1, axis2=2).astype(float)
    support, predicted = confusion.sum(axis=2), confusion.sum(axis=1)
    present = support > 0
    recall = np.divide(true_positives, support, out=np.zeros_like(true_positives), where=present)
    f1_denominator = support + predicted
    f1 = np.divide(2 * true_positives, f1_denominator, out=np.zeros_like(true_positives), where=f1_denominator > 0)
    classes = present.sum(axis=1)
    return {
        "wa": true_positives.sum(axis=1) / n,
        "ua": (recall * present).sum(axis=1) / classes,
        "macro_f1": (f1 * present).sum(axis=1) / classes,
    }


def resample_indices(n: int, samples: int, seed: int, chunk_items: int):
    """The B resamples of n clips, `samples` rows of indices drawn with replacement, in chunks of about `chunk_items`
    indices (the same draws whatever the chunking: one generator, rows in order)."""
    if n == 0:
        raise ValueError("cannot bootstrap an empty split")
    rng = np.random.default_rng(seed)
    chunk = max(1, chunk_items // n)
    for start in range(0, samples, chunk):
        yield rng.integers(0, n, (min(chunk, samples - start), n))


def _resampled_scores(arrays: Sequence[np.ndarray], num_labels: int, samples: int, seed: int) -> list[dict]:
    """The scores of every (references, predictions) pair in `arrays` on the same B resamples of their clips."""
    references, *predictions = (np.asarray(array, dtype=np.int64) for array in arrays)
    parts: list[list[dict]] = []
    for index in resample_indices(len(references), samples, seed, CHUNK_ITEMS):
        parts.append([batched_scores(references[index], run[index], num_labels) for run in predictions])
    return [
        {metric: np.concatenate([part[i][metric] for part in parts]) for metric in SCORES}
        for i in range(len(predictions))
    ]


def percentile_interval(distribution: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    alpha = 100 * (1 - confidence) / 2
    low, high = np.percentile(distribution, [alpha, 100 - alpha])
    return float(low), float(high)


def confidence_intervals(
    references: Sequence[int], predictions: Sequence[int], num_labels: int, samples: int, seed: int
) -> dict[str, tuple[float, float]]:
    """95 % percentile bootstrap intervals of WA, UA and macro-F1 over `samples` resamples of the clips."""
    (distribution,) = _resampled_scores([references, predictions], num_labels, samples, seed)
    return {metric: percentile_interval(distribution[metric]) for metric in SCORES}


def interval_metrics(
    prefix: str, references: Sequence[int], predictions: Sequence[int], num_labels: int, samples: int, seed: int
) -> dict:
    """The keys a results file gains: `{prefix}_{metric}_ci_low/high` and how they were drawn; none when
    `samples` is 0 (bootstrap off) or the split is empty."""
    if samples <= 0 or len(references) == 0:
        return {}
    intervals = confidence_intervals(references, predictions, num_labels, samples, seed)
    keys = {key: value for metric in SCORES for key, value in zip(ci_keys(prefix, metric), intervals[metric])}
    return {**keys, f"{prefix}_bootstrap_samples": samples, f"{prefix}_bootstrap_seed": seed}


def dimensional_interval_metrics(
    prefix: str, references, predictions, dimensions: Sequence[str], samples: int, seed: int
) -> dict:
    """The CCC intervals of a dimensional model's results file: `{prefix}_ccc_<dimension>_ci_low/high` per dimension
    and `{prefix}_ccc_ci_low/high` of their mean, over `samples` resamples of the clips ((clips, dimensions) arrays);
    none when `samples` is 0 or the split is empty."""
    references, predictions = np.asarray(references, dtype=float), np.asarray(predictions, dtype=float)
    if samples <= 0 or len(references) == 0:
        return {}
    dimension_count = references.shape[1]
    resampled = np.concatenate(
        [
            concordance_correlation(predictions[index], references[index])
            for index in resample_indices(len(references), samples, seed, CHUNK_ITEMS // dimension_count)
        ]
    )  # (samples, dimensions)
    distributions = {ccc_key(name): resampled[:, i] for i, name in enumerate(dimensions)}
    distributions[ccc_key()] = resampled.mean(axis=1)
    keys = {
        key: value
        for metric, distribution in distributions.items()
        for key, value in zip(ci_keys(prefix, metric), percentile_interval(distribution))
    }
    return {**keys, f"{prefix}_bootstrap_samples": samples, f"{prefix}_bootstrap_seed": seed}


def paired_bootstrap_test(
    references: Sequence[int],
    predictions_a: Sequence[int],
    predictions_b: Sequence[int],
    num_labels: int,
    samples: int,
    seed: int,
) -> dict[str, dict]:
    """Model B against model A on the same clips: per metric the difference B − A, its 95 % interval, and the
    two-sided p-value of "no difference": twice the share of resamples in which the difference is zero or of the
    other sign, counted as (k + 1) / (B + 1) so that B resamples never claim p = 0."""
    if samples <= 0:
        raise ValueError("a paired bootstrap test needs bootstrap_samples > 0")
    observed_a = batched_scores(np.asarray(references)[None], np.asarray(predictions_a)[None], num_labels)
    observed_b = batched_scores(np.asarray(references)[None], np.asarray(predictions_b)[None], num_labels)
    resampled_a, resampled_b = _resampled_scores([references, predictions_a, predictions_b], num_labels, samples, seed)
    tests = {}
    for metric in SCORES:
        differences = resampled_b[metric] - resampled_a[metric]
        other_side = min(int((differences <= 0).sum()), int((differences >= 0).sum()))
        low, high = percentile_interval(differences)
        tests[metric] = {
            "difference": float(observed_b[metric][0] - observed_a[metric][0]),
            "ci_low": low,
            "ci_high": high,
            "p_value": min(1.0, 2 * (other_side + 1) / (samples + 1)),
        }
    return tests
