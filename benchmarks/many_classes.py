"""Time and peak memory of a classification run with very many classes.

Run (from the repository root, with ftk installed):
    python benchmarks/many_classes.py [CLASSES]

Trains a text classifier for one epoch on CLASSES classes (default 5000) of
two examples each, half of them held out for validation, over a tiny offline
text embedding, and prints a Markdown table: wall time of `ftk.run`, the
process's peak resident memory, the size of `metrics.json` and which
confusion report was written.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from common import peak_rss_mb


def main() -> None:
    classes = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import ftk
    from ftk import testing

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        os.environ["FTK_HOME"] = str(folder / "home")
        backbone = testing.tiny_text_embedding(folder / "embedding")
        rows = [(f"item{i} word{i} thing{i}", f"class{i:05d}") for i in range(classes) for _ in range(2)]
        data = testing.write_text_csv(folder / "train.csv", rows)
        start = time.perf_counter()
        result = ftk.run(task="text_classification", data=str(data), backbone=backbone, epochs=1,
                         batch_size=64, output_dir=str(folder / "run"),
                         set={"data.validation_split": 0.5})
        seconds = time.perf_counter() - start
        report = next(name for name in ("confusion_matrix.csv", "confusion_pairs.csv")
                      if (result.run_dir / name).exists())
        size = (result.run_dir / "metrics.json").stat().st_size
    print(f"| measurement ({classes} classes, 2 examples each) | result |")
    print("| --- | --- |")
    print(f"| `ftk.run`, one epoch, tiny embedding | {seconds:.1f} s |")
    print(f"| peak resident memory of the process | {peak_rss_mb():.0f} MB |")
    print(f"| `metrics.json` | {size / 1024:.0f} KB |")
    print(f"| confusion report | `{report}` |")


if __name__ == "__main__":
    main()
