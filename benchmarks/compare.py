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
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import child_result, image_batch, print_result, timed
from bench_data import TOPICS, write_image_splits, write_text_splits

HERE = Path(__file__).resolve().parent
BATCH_SIZE = 32
CEILING_ROUNDS, CEILING_BATCHES = 6, 8  # alternating rounds of batches, in memory / from files
SEED = 42  # --seed


@dataclass(frozen=True)
class Case:
    task: str  # "text" or "image"
    trainable: bool
    epochs: int
    train_split: str
    learning_rate: float


# Frozen: a head on fixed features learns well at 5e-3 (ftk's default head
# rate). Trainable: one rate for backbone and head, low enough for the backbone.
CASES = {
    "text_frozen": Case("text", False, 10, "train", 5e-3),
    "text_trainable": Case("text", True, 3, "train_small", 1e-4),
    "image_frozen": Case("image", False, 10, "train", 5e-3),
    "image_trainable": Case("image", True, 3, "train_small", 1e-4),
}
CHECKS = (*CASES, "image_ceiling", "image_memory")

# Examples per split before --scale: about 75 minutes on 2 CPU cores, 31 of
# them the frozen text baseline (padded to 128 tokens) and 20 the frozen image
# one. ftk spends a fixed half minute to a minute per run outside training
# (loading, test scoring, export and its check); the frozen training sets are
# large enough for the epochs, not that, to dominate, as in real fine-tuning.
# A training step through the backbone costs 3-5x its frozen forward pass, so
# the trainable cases train on fewer.
TEXT_SIZES = {"train": 4000, "train_small": 320, "validation": 160, "test": 400}
IMAGE_SIZES = {"train": 2400, "train_small": 192, "validation": 240, "test": 360,
               "stream_eval": 64, "stream_base": 128}
MEMORY_GROWTH = 10  # stream_large holds this many times stream_base

TARGETS = {"frozen_total": 0.2, "trainable_epoch": 1.05, "accuracy_points": 1.0,
           "ceiling_share": 0.9, "memory_ratio": 1.5}
# ftk prints one per split, e.g. "Cached backbone features of 4000 train examples in 41.3 s".
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
                                 BATCH_SIZE).repeat())

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


def summary(run: dict[str, Any], train_examples: int) -> dict[str, Any]:
    """Per-run figures from a child's result."""
    epochs = run.get("epoch_seconds") or []
    later = sum(epochs[1:]) / len(epochs[1:]) if len(epochs) > 1 else None
    return {"total": run["total_seconds"], "first": epochs[0] if epochs else None, "later": later,
            "rate": train_examples / later if later else None, "rss": run["peak_rss_mb"],
            "accuracy": run["accuracy"],
            "caching": sum(run.get("caching", {}).values()) or None}


def number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "**no**")


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours is not None and theirs else None


def runs_table(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    lines = ["| case | tool | total s | feature caching s | epoch 1 s | later epochs s (mean) "
             "| train examples/s (later epochs) | peak RSS MB | test accuracy |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for tools in results.values():
        for tool in ("ftk", "baseline"):
            run = tools[tool]
            caching = number(run["caching"]) if tool == "ftk" else "-"
            lines.append(f"| {tools['label']} | {tool} | {number(run['total'])} | {caching} | "
                         f"{number(run['first'], 2)} | {number(run['later'], 2)} | "
                         f"{number(run['rate'])} | {number(run['rss'], 0)} | "
                         f"{number(run['accuracy'], 3)} |")
    return lines + [
        "", "Epoch times include validation: ftk's are the `epoch_seconds` column of the "
        "run's history.csv, the baseline's come from a callback at each epoch end. ftk "
        "computes a frozen backbone's features once, before epoch 1 (feature caching column)."]


def targets_table(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    lines = ["| case | ftk / baseline: total time | ftk / baseline: time per later epoch "
             "| accuracy ftk - baseline (points) | target | met |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, tools in results.items():
        ftk, base = tools["ftk"], tools["baseline"]
        total, later = ratio(ftk["total"], base["total"]), ratio(ftk["later"], base["later"])
        points = 100 * (ftk["accuracy"] - base["accuracy"])
        # The target is that speed costs no accuracy: ftk may be better.
        close = points >= -TARGETS["accuracy_points"]
        if CASES[name].trainable:
            target = (f"time per later epoch <= {TARGETS['trainable_epoch']}x, "
                      f"accuracy at most {TARGETS['accuracy_points']:g} point below")
            met = None if later is None else later <= TARGETS["trainable_epoch"] and close
        else:
            target = (f"total time <= {TARGETS['frozen_total']}x, "
                      f"accuracy at most {TARGETS['accuracy_points']:g} point below")
            met = total <= TARGETS["frozen_total"] and close
        lines.append(f"| {tools['label']} | {number(total, 3)} | {number(later, 3)} | "
                     f"{points:+.1f} | {target} | {verdict(met)} |")
    return lines


def ceiling_table(ceiling: dict[str, Any], frozen_image: dict[str, Any] | None,
                  train_examples: int) -> list[str]:
    median = statistics.median(ceiling["round_shares"])
    rounds = f"{CEILING_ROUNDS} alternating rounds of {CEILING_BATCHES} batches"
    lines = ["| measurement | result | target | met |", "| --- | --- | --- | --- |",
             f"| backbone forward pass, {ceiling['described']} already in memory, frozen, "
             f"in a tf.function ({rounds}) | {ceiling['images_per_second']:.1f} images/s | | |",
             f"| the same, fed by ftk's input pipeline from the {train_examples} training PNG "
             f"files (the feature cache's path) | {ceiling['pipeline_images_per_second']:.1f} "
             "images/s | | |"]
    caching = (frozen_image or {}).get("caching", {})
    train_caching = caching.get("train", next(iter(caching.values()), None))
    first = ((frozen_image or {}).get("epoch_seconds") or [None])[0]
    if train_caching is not None and first is not None:
        rate = train_examples / (train_caching + first)
        lines.append(f"| ftk's first epoch in the frozen image run: {train_examples} images / "
                     f"(caching {train_caching:.1f} s + epoch 1 {first:.1f} s), another moment "
                     f"| {rate:.1f} images/s ({rate / ceiling['images_per_second']:.2f} of the "
                     "ceiling) | | |")
    lines.append(f"| input pipeline / ceiling, median of the rounds' ratios "
                 f"({', '.join(f'{share:.2f}' for share in ceiling['round_shares'])}) "
                 f"| {median:.2f} | >= {TARGETS['ceiling_share']} "
                 f"| {verdict(median >= TARGETS['ceiling_share'])} |")
    return lines


def memory_table(memory: dict[int, dict[str, Any]]) -> list[str]:
    (small, base), (large, bigger) = sorted(memory.items())
    share = bigger["peak_rss_mb"] / base["peak_rss_mb"]
    return ["| measurement | result | target | met |", "| --- | --- | --- | --- |",
            f"| ftk peak RSS, {small} training images, 1 epoch, frozen, "
            f"`data.augment: false`, `train.cache_features: false`, `train.cache_memory_mb: 0` "
            f"| {base['peak_rss_mb']:.0f} MB | | |",
            f"| peak RSS, {large} training images, same run | {bigger['peak_rss_mb']:.0f} MB | | |",
            f"| ratio | {share:.2f} | <= {TARGETS['memory_ratio']} "
            f"| {verdict(share <= TARGETS['memory_ratio'])} |"]


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
    parser.add_argument("--seed", type=int, default=42,
                        help="both tools' initialisation and shuffling seed (default 42)")
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


def print_report(backbones: Backbones, results: dict, ceiling: Any, frozen_image: Any,
                 image_sizes: dict[str, int], memory: Any, load: float, seconds: float) -> None:
    """The tables; `load` is the 1-minute load average before the run (other
    work on the machine slows the two tools unevenly)."""
    print(f"Machine: {os.cpu_count()} CPU cores, {platform.machine()}, "
          f"Python {platform.python_version()}; load average before the run: {load:.2f}")
    print(f"Command: python benchmarks/compare.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"Backbones: text {backbones.text}, image {backbones.image}")
    print(f"Batch size {BATCH_SIZE}; AdamW (weight decay 0.01) at a constant rate: "
          + ", ".join(f"{name} {case.learning_rate:g}" for name, case in CASES.items()
                      if name in results))
    for title, lines in (
        ("Runs", runs_table(results) if results else None),
        ("ftk against the baseline", targets_table(results) if results else None),
        ("Forward-pass ceiling, frozen image case",
         ceiling_table(ceiling, frozen_image, image_sizes["train"]) if ceiling else None),
        ("Peak memory when streaming a larger training set",
         memory_table(memory) if memory else None),
    ):
        if lines:
            print(f"\n{title}\n")
            print("\n".join(lines))
    print(f"\nWhole comparison: {seconds / 60:.1f} min")


if __name__ == "__main__":
    main()
