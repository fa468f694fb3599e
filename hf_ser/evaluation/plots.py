"""Confusion-matrix figures (one axes for grids in `hf-ser compare`, or one PNG per split for runs and CV) and the
cross-corpus UA heat map of `hf-ser compare --matrix`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def plot_confusion_matrix(axes, matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str):
    """Draw a row-normalised confusion matrix with the counts written in on matplotlib `axes`; returns the image."""
    counts = np.asarray(matrix, dtype=float)
    normalised = counts / np.clip(counts.sum(axis=1, keepdims=True), 1, None)
    texts = [[f"{int(count)}" for count in row] for row in counts]
    image = _annotated_grid(axes, normalised, texts, labels, labels, vmax=1)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    return image


def _annotated_grid(
    axes, shades: np.ndarray, texts, rows: Sequence[str], columns: Sequence[str], vmax: float, aspect: str = "equal"
):
    """A grid of cells shaded by `shades` (NaN: blank) with `texts` written in; returns the image."""
    image = axes.imshow(np.ma.masked_invalid(shades), cmap="Blues", vmin=0, vmax=vmax, aspect=aspect)
    axes.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    axes.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(columns)):
            dark = np.isfinite(shades[i, j]) and shades[i, j] > vmax / 2
            axes.text(j, i, texts[i][j], ha="center", va="center", color="white" if dark else "black", fontsize=8)
    return image


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_score_matrix(
    scores: Sequence[Sequence[Optional[float]]],
    rows: Sequence[str],
    columns: Sequence[str],
    path: str | Path,
    title: str,
) -> None:
    """A heat map PNG of scores in [0, 1] written in as percentages; None cells stay blank."""
    plt = pyplot()
    values = np.array([[np.nan if v is None else v for v in row] for row in scores], dtype=float)
    texts = [["–" if v is None else f"{100 * v:.1f}" for v in row] for row in scores]
    figure, axes = plt.subplots(figsize=(3.0 + 1.2 * len(columns), 2.2 + 0.7 * len(rows)))
    image = _annotated_grid(axes, values, texts, rows, columns, vmax=1, aspect="auto")
    axes.set_xlabel("tested on")
    axes.set_ylabel("trained on")
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.046, label="UA")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def save_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str) -> None:
    """A row-normalised confusion-matrix PNG with the counts written in."""
    plt = pyplot()
    size = 1.0 + 0.7 * len(labels)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = plot_confusion_matrix(axes, matrix, labels, title)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of true class")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
