"""What benchmarks/compare.py runs and the targets it checks."""

from __future__ import annotations

from dataclasses import dataclass

BATCH_SIZE = 32
CEILING_ROUNDS, CEILING_BATCHES = 6, 8  # alternating rounds of batches, in memory / from files


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
