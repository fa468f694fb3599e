"""Confusion-matrix figures: one axes (for grids, `hf-ser compare`) or one PNG per split (runs and CV)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def plot_confusion_matrix(axes, matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str):
    """Draw a row-normalised confusion matrix with the counts written in on matplotlib `axes`; returns the image."""
    counts = np.asarray(matrix, dtype=float)
    normalised = counts / np.clip(counts.sum(axis=1, keepdims=True), 1, None)
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            axes.text(
                j,
                i,
                f"{int(counts[i, j])}",
                ha="center",
                va="center",
                color="white" if normalised[i, j] > 0.5 else "black",
                fontsize=8,
            )
    return image


def save_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str) -> None:
    """A row-normalised confusion-matrix PNG with the counts written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 1.0 + 0.7 * len(labels)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = plot_confusion_matrix(axes, matrix, labels, title)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of true class")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
