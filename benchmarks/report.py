"""The Markdown tables benchmarks/compare.py prints, from its children's figures."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from typing import Any

from cases import BATCH_SIZE, CASES, CEILING_BATCHES, CEILING_ROUNDS, TARGETS


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


def print_report(backbones: Any, results: dict, ceiling: Any, frozen_image: Any,
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
