"""Time ftk against the hand-written TF Hub tutorial baseline (baseline.py) on
the same machine, data, backbone folders, batch size, epochs, optimiser and
learning rate, and print Markdown tables for docs/BENCHMARKS.md.

Run (from the repository root, with ftk installed):
    python benchmarks/compare.py                           # everything, ~75 min on 2 cores
    python benchmarks/compare.py --cases text_frozen --scale 0.25

Checks: text_frozen, text_trainable, image_frozen, image_trainable (ftk and the
baseline each in a fresh Python process), image_ceiling (the backbone's
forward-pass throughput on batches in memory and fed from files by ftk's input
pipeline) and image_memory (ftk's peak memory streaming a training set 10
times larger). Backbones are the presets minilm-l6 and
efficientnet-lite0 from FTK_HOME (pulled there once if missing), unless
--text-backbone/--text-preprocessor/--image-backbone name local SavedModels.
Data is drawn or generated, seeded, into a temp folder (or --workdir).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_data import TOPICS, write_image_splits, write_text_splits
from cases import (BATCH_SIZE, CASES, CEILING_BATCHES, CEILING_ROUNDS, CHECKS, IMAGE_SIZES,
                   MEMORY_GROWTH, TEXT_SIZES, Case)
from common import child_result, image_batch, print_result, timed
from report import print_report, summary

HERE = Path(__file__).resolve().parent
SEED = 42  # --seed

# ftk logs one per split, e.g. "Cached backbone features of 4000 train examples in 41.3 s".
CACHED_LINE = re.compile(r"Cached backbone features of (\d+) (?:(\w+) )?examples in ([\d.]+) s")


def scaled(sizes: dict[str, int], scale: float, classes: int) -> dict[str, int]:
    """Split sizes times `scale`: whole rounds of the classes, at least two of each."""
    return {split: classes * max(2, round(count * scale / classes)) for split, count in sizes.items()}


@dataclass(frozen=True)
class Backbones:
    text: Path | None = None  # what ftk gets as --backbone
    text_preprocessor: Path | None = None
    image: Path | None = None

    @staticmethod
    def encoder(folder: Path) -> Path:
        """The SavedModel in a folder, as ftk finds it (`encoder/` or the folder)."""
        return folder / "encoder" if (folder / "encoder").is_dir() else folder


def find_backbones(args: argparse.Namespace, checks: list[str], env: dict[str, str]) -> Backbones:
    """The overrides, else the presets' folders in FTK_HOME, pulled if missing."""
    from ftk.paths import backbone_cache_dir

    def preset(name: str) -> Path:
        folder = backbone_cache_dir(name)
        if not (folder / "encoder" / "saved_model.pb").exists():
            seconds, _ = timed([sys.executable, "-m", "ftk.cli", "backbones", "pull", name], env, HERE)
            progress(f"pulled {name} into {folder} in {seconds:.0f} s")
        return folder

    text = preprocessor = image = None
    if any(check.startswith("text") for check in checks):
        text = Path(args.text_backbone) if args.text_backbone else preset("minilm-l6")
        preprocessor = Path(args.text_preprocessor) if args.text_preprocessor else text / "preprocessor"
    if any(check.startswith("image") for check in checks):
        image = Path(args.image_backbone) if args.image_backbone else preset("efficientnet-lite0")
    return Backbones(text, preprocessor, image)


def run_ftk(name: str, case: Case, data: dict[str, Path], train: str, backbones: Backbones,
            workdir: Path, env: dict[str, str], settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """ftk.run in a fresh process, with the baseline's optimiser and rate."""
    overrides = {"train.seed": SEED, "train.optimizer": "adamw", "train.weight_decay": 0.01,
                 "train.learning_rate": case.learning_rate, "train.schedule": "constant",
                 "train.warmup_ratio": 0.0, **(settings or {})}
    if case.trainable:
        overrides.update({"backbone.trainable": True, "train.backbone_lr_multiplier": 1.0})
    if case.task == "image":
        overrides["data.augment"] = False
    else:
        overrides["backbone.preprocessor"] = str(backbones.text_preprocessor)
    spec = {"task": f"{case.task}_classification", "data": str(data[train]),
            "val_data": str(data["validation"]), "test_data": str(data["test"]),
            "backbone": str(backbones.text if case.task == "text" else backbones.image),
            "epochs": case.epochs, "batch_size": BATCH_SIZE, "set": overrides,
            "output_dir": str(workdir / "runs" / name), "overwrite": True}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "ftk", json.dumps(spec)]
    result, printed = child_result(command, env, HERE, workdir / "logs" / f"{name}-ftk.log")
    result["caching"] = {split or str(index): float(seconds) for index, (_, split, seconds)
                         in enumerate(CACHED_LINE.findall(printed))}
    return result


def run_baseline(name: str, case: Case, data: dict[str, Path], backbones: Backbones,
                 workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    folder = backbones.text if case.task == "text" else backbones.image
    command = [sys.executable, str(HERE / "baseline.py"), case.task,
               "--train", str(data[case.train_split]), "--validation", str(data["validation"]),
               "--test", str(data["test"]), "--encoder", str(Backbones.encoder(folder)),
               "--epochs", str(case.epochs), "--learning-rate", str(case.learning_rate),
               "--seed", str(SEED)]
    if case.task == "text":
        command += ["--preprocessor", str(backbones.text_preprocessor)]
    if case.trainable:
        command.append("--trainable")
    result, _ = child_result(command, env, HERE, workdir / "logs" / f"{name}-baseline.log")
    return result


def ftk_child(spec: dict[str, Any]) -> None:
    """The ftk side of a case, inside its own process."""
    # Imported before the clock starts, as the baseline imports them first too.
    import tensorflow  # noqa: F401
    import tensorflow_hub  # noqa: F401
    import tensorflow_text  # noqa: F401
    import tf_keras  # noqa: F401

    import ftk
    from ftk.log import configure_cli_logging

    configure_cli_logging()  # ftk's log lines, as `ftk run` shows them, name the caching times
    start = time.perf_counter()
    result = ftk.run(**spec)
    total = time.perf_counter() - start
    print_result({"total_seconds": total, "epoch_seconds": result.history.get("epoch_seconds"),
                  "accuracy": result.metrics["accuracy"]})


def ceiling_child(spec: dict[str, Any]) -> None:
    """The image backbone's frozen forward throughput on batches already in
    memory (the ceiling), and fed by ftk's input pipeline from the image files.

    This machine's speed drifts by up to 2x over minutes, so the two are
    measured in alternating rounds and compared round by round.
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import numpy as np
    import tensorflow as tf
    import tensorflow_hub as hub

    from ftk.data import make_dataset
    from ftk.images import ImagePreprocessor

    backbone = hub.KerasLayer(spec["encoder"], trainable=False)
    forward = tf.function(lambda x: backbone(x, training=False)["default"])
    in_memory, _, described = image_batch(224, "default")()
    # The frozen, unaugmented path of ftk's feature cache: read, decode and
    # resize in a parallel tf.data map, batched and prefetched.
    files = sorted(str(path) for path in Path(spec["images"]).glob("*/*.png"))
    pipeline = iter(make_dataset(files, np.zeros(len(files), np.int32), ImagePreprocessor(224),
                                 BATCH_SIZE, read_files=True).repeat())

    def seconds(next_batch: Any, batches: int = CEILING_BATCHES) -> float:
        start = time.perf_counter()
        for _ in range(batches):
            forward(next_batch()).numpy()
        return time.perf_counter() - start

    seconds(lambda: in_memory, 1), seconds(lambda: next(pipeline)[0], 1)  # trace, warm up
    rounds = [(seconds(lambda: in_memory), seconds(lambda: next(pipeline)[0]))
              for _ in range(CEILING_ROUNDS)]
    images = BATCH_SIZE * CEILING_BATCHES * CEILING_ROUNDS
    print_result({"images_per_second": images / sum(memory for memory, _ in rounds),
                  "pipeline_images_per_second": images / sum(fed for _, fed in rounds),
                  "round_shares": [memory / fed for memory, fed in rounds],
                  "described": described})


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--cases", default=",".join(CHECKS),
                        help=f"comma-separated checks to run (default all: {', '.join(CHECKS)})")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every dataset size")
    parser.add_argument("--text-backbone", help="BERT-style encoder SavedModel (or ftk folder)")
    parser.add_argument("--text-preprocessor", help="its preprocessor SavedModel")
    parser.add_argument("--image-backbone", help="image SavedModel returning a dict with 'default'")
    parser.add_argument("--seed", type=int, default=SEED,
                        help=f"both tools' initialisation and shuffling seed (default {SEED})")
    parser.add_argument("--workdir", help="keep data, runs and logs here (default: a temp folder)")
    args = parser.parse_args()
    unknown = [c for c in args.cases.split(",") if c not in CHECKS]
    if unknown or args.scale <= 0:
        parser.error(f"--cases takes {', '.join(CHECKS)}; --scale must be above 0. "
                     f"Received: --cases {args.cases} --scale {args.scale}")
    if args.text_backbone and not args.text_preprocessor \
            and not (Path(args.text_backbone) / "preprocessor").is_dir():
        parser.error("--text-backbone needs --text-preprocessor unless it holds preprocessor/.")
    return args


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        {"ftk": ftk_child, "ceiling": ceiling_child}[sys.argv[2]](json.loads(sys.argv[3]))
        return
    args = parse_args()
    global SEED
    SEED = args.seed
    with tempfile.TemporaryDirectory() as scratch:
        compare(args, Path(args.workdir or scratch).resolve())


def compare(args: argparse.Namespace, workdir: Path) -> None:
    from ftk.plugins.image_classification.demo import CLASSES

    start, load = time.perf_counter(), os.getloadavg()[0]
    checks = [c for c in CHECKS if c in args.cases.split(",")]
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    backbones = find_backbones(args, checks, env)
    text_sizes = scaled(TEXT_SIZES, args.scale, len(TOPICS))
    image_sizes = scaled(IMAGE_SIZES, args.scale, len(CLASSES))
    image_sizes["stream_large"] = MEMORY_GROWTH * image_sizes["stream_base"]
    data = {}
    if any(c.startswith("text") for c in checks):
        data["text"] = write_text_splits(workdir / "data" / "text", text_sizes)
    if any(c.startswith("image") for c in checks):
        data["image"] = write_image_splits(workdir / "data" / "image", image_sizes)
    progress(f"data ready in {workdir / 'data'} ({time.perf_counter() - start:.0f} s)")

    results, raw_ftk = run_cases(checks, {"text": text_sizes, "image": image_sizes},
                                 data, backbones, workdir, env)
    ceiling = None
    if "image_ceiling" in checks:
        ceiling = measure_ceiling(data["image"]["train"], backbones, workdir, env)
    memory = None
    if "image_memory" in checks:
        memory = memory_check(data["image"], image_sizes, backbones, workdir, env)
    print_report(backbones, results, ceiling, raw_ftk.get("image_frozen"), image_sizes,
                 memory, load, time.perf_counter() - start)


def run_cases(checks: list[str], sizes: dict[str, dict[str, int]], data: dict[str, Any],
              backbones: Backbones, workdir: Path, env: dict[str, str]) -> tuple[dict, dict]:
    """ftk then the baseline for each selected case; the summaries by case and
    ftk's raw results by case."""
    results: dict[str, dict[str, Any]] = {}
    raw_ftk: dict[str, dict[str, Any]] = {}
    for name in (c for c in checks if c in CASES):
        case = CASES[name]
        examples = sizes[case.task][case.train_split]
        label = (f"{case.task}, {'trainable' if case.trainable else 'frozen'}, "
                 f"{case.epochs} epochs, {examples} train")
        raw_ftk[name] = run_ftk(name, case, data[case.task], case.train_split, backbones,
                                workdir, env)
        progress(f"[{name}] ftk: {raw_ftk[name]['total_seconds']:.0f} s")
        baseline = run_baseline(name, case, data[case.task], backbones, workdir, env)
        progress(f"[{name}] baseline: {baseline['total_seconds']:.0f} s")
        results[name] = {"label": label, "ftk": summary(raw_ftk[name], examples),
                         "baseline": summary(baseline, examples)}
    return results, raw_ftk


def measure_ceiling(images: Path, backbones: Backbones, workdir: Path,
                    env: dict[str, str]) -> dict[str, Any]:
    """See `ceiling_child`; `images` is the frozen image case's training folder."""
    spec = json.dumps({"encoder": str(Backbones.encoder(backbones.image)), "images": str(images)})
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "ceiling", spec]
    result, _ = child_result(command, env, HERE, workdir / "logs" / "image_ceiling.log")
    progress(f"[image_ceiling] {result['images_per_second']:.1f} images/s in memory, "
             f"{result['pipeline_images_per_second']:.1f} from files")
    return result


# Neither backbone features nor decoded images kept in memory: every batch is
# read from disk, which is what the memory check is about.
STREAMING = {"train.cache_features": False, "train.cache_memory_mb": 0}


def memory_check(data: dict[str, Path], sizes: dict[str, int], backbones: Backbones,
                 workdir: Path, env: dict[str, str]) -> dict[int, dict[str, Any]]:
    """ftk's peak memory for one uncached frozen epoch, by training set size."""
    case = Case("image", False, 1, "stream_base", CASES["image_frozen"].learning_rate)
    streams = {**data, "validation": data["stream_eval"], "test": data["stream_eval"]}
    memory = {}
    for split in ("stream_base", "stream_large"):
        memory[sizes[split]] = run_ftk(f"image_memory_{split}", case, streams, split, backbones,
                                       workdir, env, STREAMING)
        progress(f"[image_memory] {split}: {memory[sizes[split]]['peak_rss_mb']:.0f} MB")
    return memory


if __name__ == "__main__":
    main()
