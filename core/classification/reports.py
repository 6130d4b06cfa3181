"""The confusion report of a classification run, sized to the number of classes.

A matrix of N classes has N² cells: fine to read for ten classes, hundreds of
megabytes of JSON and millions of plot labels for thousands. So the matrix goes
into `metrics.json` only for a few classes, `confusion_matrix.csv` is dense up
to a size and a list of the non-zero (true, predicted) pairs past it, and the
plot drops its per-cell numbers, then itself, as classes grow.
"""

from __future__ import annotations

import csv
import io
import logging
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

MATRIX_IN_METRICS = 50  # classes up to which metrics.json holds the matrix
DENSE_CSV = 1000  # classes up to which confusion_matrix.csv is a full matrix
PLOT = 100  # classes up to which plots/confusion_matrix.png is drawn
CELL_NUMBERS = 30  # classes up to which each cell of the plot shows its count


def confusion_matrix(targets: np.ndarray, predicted: np.ndarray, count: int) -> np.ndarray:
    """The `[count, count]` matrix of (true, predicted) counts."""
    matrix = np.zeros((count, count), dtype=np.int64)
    np.add.at(matrix, (targets, predicted), 1)
    return matrix


def confusion_report(targets: np.ndarray, predicted: np.ndarray, space: Any, run: Any) -> None:
    """Write `confusion_matrix.csv` (or `confusion_pairs.csv`) and the plot."""
    classes, count = space.classes, space.num_classes
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if count > DENSE_CSV:
        pairs, counts = np.unique(np.stack([targets, predicted], axis=1), axis=0,
                                  return_counts=True)
        writer.writerow(["true", "predicted", "count"])
        writer.writerows([classes[t], classes[p], int(n)] for (t, p), n in zip(pairs, counts))
        run.write_text("confusion_pairs.csv", buffer.getvalue())
        log.info(f"{count} classes: the confusion report lists the non-zero (true, predicted) "
                 "pairs in confusion_pairs.csv instead of a full matrix.")
        return
    matrix = confusion_matrix(targets, predicted, count)
    writer.writerow(["true \\ predicted", *classes])
    for name, row in zip(classes, matrix):
        writer.writerow([name, *row.tolist()])
    run.write_text("confusion_matrix.csv", buffer.getvalue())
    if count <= PLOT:
        run.write_bytes("plots/confusion_matrix.png", confusion_matrix_png(matrix, classes))


def confusion_matrix_png(matrix: np.ndarray, classes: Sequence[str]) -> bytes:
    from ftk.plots import png_bytes, pyplot

    plt = pyplot()
    size = min(max(4.0, 0.6 * len(classes) + 2), 24.0)
    fig, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(classes) <= CELL_NUMBERS:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, col), value in np.ndenumerate(matrix):
            axis.text(col, row, str(value), ha="center", va="center",
                      color="white" if value > threshold else "black")
    return png_bytes(fig)
