"""Training curves and confusion matrices as PNG files (matplotlib, no screen)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from ftk.rundir import write_bytes_atomic


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    write_bytes_atomic(path, buffer.getvalue())


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    """One panel per metric, train and validation curves together."""
    plt = _figure()
    names = [k for k in history if not k.startswith("val_") and k not in ("epoch", "lr", "epoch_seconds")]
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for axis, name in zip(axes[0], names):
        epochs = np.arange(1, len(history[name]) + 1)
        axis.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            axis.plot(epochs, history[f"val_{name}"], marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.legend()
    _save(fig, path)
    plt.close(fig)


def plot_confusion_matrix(matrix: np.ndarray, classes: Sequence[str], path: Path) -> None:
    plt = _figure()
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), value in np.ndenumerate(matrix):
        axis.text(col, row, str(value), ha="center", va="center",
                  color="white" if value > threshold else "black")
    _save(fig, path)
    plt.close(fig)
