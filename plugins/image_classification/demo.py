"""Demo data for the quickstart: coloured shapes on cluttered backgrounds.

Drawn with a seeded generator, so every machine gets the same images. Each
split is a folder with one subfolder per class, the layout users bring.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ftk import shapes

CLASSES = ("circle", "square", "star", "triangle")
SPLITS = {"train": 60, "validation": 15, "test": 20}  # images per class
SIZE = 128
VERSION = "2"  # bump when the drawing changes, so cached copies are redrawn


def demo_image_data(folder: Path) -> dict[str, Path]:
    """Write the demo splits under `folder` once; return their folders."""
    folder = Path(folder)
    marker = folder / "VERSION"
    if not (marker.exists() and marker.read_text().strip() == VERSION):
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        rng = np.random.default_rng(2024)
        for split, count in SPLITS.items():
            for name in CLASSES:
                target = staging / split / name
                target.mkdir(parents=True)
                for index in range(count):
                    draw_example(name, rng).save(target / f"{name}_{index:03d}.png")
        (staging / "VERSION").write_text(VERSION + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    return {split: folder / split for split in SPLITS}


def draw_example(shape: str, rng: np.random.Generator):
    """One `SIZE` x `SIZE` RGB image of `shape` over a random background."""
    from PIL import Image, ImageDraw

    background = shapes.background(rng, SIZE)
    image = Image.fromarray(background)
    shapes.clutter(image, rng, (2, 6))
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.22, 0.36) * SIZE
    centre = rng.uniform(radius + 4, SIZE - radius - 4, 2)
    colour = shapes.contrasting(rng, background.reshape(-1, 3).mean(0))
    if shape == "circle":
        draw.ellipse([*(centre - radius), *(centre + radius)], fill=colour)
    else:
        corners = {"square": 4, "triangle": 3, "star": 10}[shape]
        draw.polygon(shapes.polygon(centre, radius, corners, rng,
                                    inner=0.45 if shape == "star" else None), fill=colour)
    return image
