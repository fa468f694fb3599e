"""WA, UA, macro-F1 and confusion matrices, through the local `evaluate` module in `hf_ser/ser_metric`; and the
concordance correlation coefficient (CCC) of dimensional emotion (arousal, valence, dominance)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

SER_METRIC_PATH = Path(__file__).parent / "ser_metric"


@lru_cache(maxsize=1)
def load_ser_metric():
    import evaluate

    return evaluate.load(str(SER_METRIC_PATH))


def ser_scores(
    predictions: Sequence[int], references: Sequence[int], num_labels: int | None = None, confusion: bool = False
) -> dict:
    return load_ser_metric().compute(
        predictions=[int(p) for p in predictions],
        references=[int(r) for r in references],
        num_labels=num_labels,
        return_confusion_matrix=confusion,
    )


def mean_std(values: Sequence[float]) -> tuple[float, Optional[float]]:
    """Mean and sample standard deviation (ddof=1) of several runs' scores; the std of one run is undefined: None."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("mean_std of no values")
    return float(values.mean()), (float(values.std(ddof=1)) if values.size > 1 else None)


def concordance_correlation(predictions, references) -> np.ndarray:
    """Lin's concordance correlation coefficient, 2 cov / (var_p + var_r + (mean_p - mean_r)^2) with population
    moments, of each dimension: arrays of shape (..., clips, dimensions) give (..., dimensions), so a stack of
    bootstrap resamples is scored at once. 1: perfect agreement; 0 for constant predictions (no covariance)."""
    predictions, references = np.asarray(predictions, dtype=float), np.asarray(references, dtype=float)
    prediction_mean, reference_mean = predictions.mean(axis=-2), references.mean(axis=-2)
    covariance = ((predictions - prediction_mean[..., None, :]) * (references - reference_mean[..., None, :])).mean(
        axis=-2
    )
    denominator = predictions.var(axis=-2) + references.var(axis=-2) + (prediction_mean - reference_mean) ** 2
    return np.divide(2 * covariance, denominator, out=np.zeros_like(covariance), where=denominator > 0)


def ccc_key(dimension: Optional[str] = None) -> str:
    """`ccc_arousal` (one dimension), `ccc` (the mean over the dimensions: what selects checkpoints by default)."""
    return f"ccc_{dimension}" if dimension else "ccc"


def dimensional_scores(predictions, references, dimensions: Sequence[str]) -> dict:
    """CCC of each dimension (`ccc_arousal`, ...) and their mean (`ccc`), from (clips, dimensions) arrays."""
    values = concordance_correlation(predictions, references)
    return {**{ccc_key(name): float(value) for name, value in zip(dimensions, values)}, ccc_key(): float(values.mean())}


def dimensional_compute_metrics(dimensions: Sequence[str]):
    """`Trainer(compute_metrics=...)` of a dimensional model: CCC per dimension and their mean."""

    def compute(eval_prediction) -> dict:
        predictions = eval_prediction.predictions
        predictions = predictions[0] if isinstance(predictions, tuple) else predictions
        return dimensional_scores(predictions, eval_prediction.label_ids, dimensions)

    return compute


def compute_metrics(eval_prediction) -> dict:
    """`Trainer(compute_metrics=...)`: scalar metrics only, so every logger accepts them."""
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    return ser_scores(np.argmax(logits, axis=-1), eval_prediction.label_ids)


def percent(
    value: Optional[float],
    std: Optional[float] = None,
    unit: str = " %",
    interval: Optional[tuple[float, float]] = None,
    interval_label: str = "95 % CI ",
) -> str:
    """A score as a percentage with two decimals, `± std` when given, then `unit`, then `(95 % CI low–high)` when an
    interval is given; "–" for a missing score."""
    if value is None:
        return "–"
    text = f"{100 * value:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "") + unit
    if interval is not None:
        text += f" ({interval_label}{100 * interval[0]:.2f}–{100 * interval[1]:.2f})"
    return text
