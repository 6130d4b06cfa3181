"""Peak memory of a run streaming TFRecords, for 1x and 10x the data.

The data is the benchmark's topic sentences (bench_data), written once per
size with `ftk data to-tfrecord` and trained on for one epoch in a fresh
process each, so each peak RSS is that run's alone. The backbone trains
(so the feature cache, an in-memory copy of its outputs, is not used); the
validation part (every 10th record) is scored streamed too.

Run:
    python benchmarks/streaming.py [--examples 20000] [--factor 10] [--backbone PATH]

Without --backbone, a tiny offline text embedding (ftk.testing) is built, so
memory is the pipeline's and the engine's, not a large model's. The last
line printed is JSON with both peaks and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def child(records: str, backbone: str, output: str) -> None:
    """One streamed run; prints its figures and peak RSS as JSON."""
    import ftk
    from common import print_result

    start = time.perf_counter()
    result = ftk.run(task="text_classification", data=records, backbone=backbone, epochs=1,
                     batch_size=64, output_dir=output, overwrite=True,
                     set={"backbone.trainable": True, "train.cache_features": False})
    print_result({"seconds": round(time.perf_counter() - start, 1),
                  "accuracy": result.metrics["accuracy"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--backbone")
    args = parser.parse_args()

    from bench_data import write_topic_csv
    from common import child_result

    import ftk
    from ftk import testing

    work = Path(tempfile.mkdtemp(prefix="ftk-streaming-"))
    backbone = args.backbone or testing.tiny_text_embedding(work / "embedding")
    rows = []
    for size in (args.examples, args.examples * args.factor):
        csv = write_topic_csv(work / f"train_{size}.csv", size, seed=0)
        records = work / f"records_{size}"
        ftk.to_tfrecord("text_classification", str(csv), str(records), shards=8)
        csv.unlink()  # the run reads only the records
        command = [sys.executable, __file__, "--child", str(records), backbone,
                   str(work / f"run_{size}")]
        figures, _ = child_result(command, dict(os.environ), HERE.parent)
        rows.append({"examples": size, "peak_rss_mb": round(figures["peak_rss_mb"]),
                     "seconds": figures["seconds"], "accuracy": round(figures["accuracy"], 4)})
        print(f"{size} examples: peak RSS {rows[-1]['peak_rss_mb']} MB, "
              f"{figures['seconds']} s", flush=True)
    ratio = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print("\n| examples streamed | peak RSS | run time | validation accuracy |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['examples']} | {row['peak_rss_mb']} MB | {row['seconds']} s | "
              f"{row['accuracy']} |")
    print(f"\nratio {ratio:.2f} (target <= 1.2)")
    print(json.dumps({"rows": rows, "ratio": round(ratio, 3)}))
    subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
    else:
        main()
