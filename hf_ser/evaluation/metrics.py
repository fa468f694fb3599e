"""WA, UA, macro-F1 and confusion matrices, through the local `evaluate` module in `hf_ser/ser_metric`."""

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
