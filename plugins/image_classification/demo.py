"""Demo data for the quickstart: coloured shapes on cluttered backgrounds.

Drawn with a seeded generator, so every machine gets the same images. Each
split is a folder with one subfolder per class, the layout users bring.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np

CLASSES = ("circle", "square", "star", "triangle")
SPLITS = {"train": 60, "validation": 15, "test": 20}  # images per class
SIZE = 128
VERSION = "1"  # bump when the drawing changes, so cached copies are redrawn


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

    background = _background(rng)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(2, 6)):  # clutter: thin random lines
        points = [tuple(rng.integers(0, SIZE, 2).tolist()) for _ in range(2)]
        draw.line(points, fill=_colour(rng), width=int(rng.integers(1, 3)))
    radius = rng.uniform(0.22, 0.36) * SIZE
    centre = rng.uniform(radius + 4, SIZE - radius - 4, 2)
    colour = _contrasting(rng, background.reshape(-1, 3).mean(0))
    if shape == "circle":
        draw.ellipse([*(centre - radius), *(centre + radius)], fill=colour)
    else:
        corners = {"square": 4, "triangle": 3, "star": 10}[shape]
        draw.polygon(_polygon(centre, radius, corners, shape == "star", rng), fill=colour)
    return image


def _background(rng: np.random.Generator) -> np.ndarray:
    """A two-colour gradient in a random direction, with pixel noise."""
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    ramp = (np.cos(angle) * xs + np.sin(angle) * ys)
    ramp = (ramp - ramp.min()) / max(ramp.max() - ramp.min(), 1e-6)
    pixels = start + ramp[..., None] * (end - start) + rng.normal(0, 12, (SIZE, SIZE, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _contrasting(rng: np.random.Generator, reference: np.ndarray) -> tuple[int, int, int]:
    """A random colour far enough from `reference` that the shape stays visible."""
    while True:
        colour = _colour(rng)
        if np.linalg.norm(np.asarray(colour) - reference) > 150:
            return colour


def _polygon(centre: np.ndarray, radius: float, corners: int, star: bool,
             rng: np.random.Generator) -> list[tuple[float, float]]:
    rotation = rng.uniform(0, 2 * math.pi)
    points = []
    for k in range(corners):
        r = radius * (0.45 if star and k % 2 else 1.0)
        theta = rotation + 2 * math.pi * k / corners
        points.append((float(centre[0] + r * math.cos(theta)), float(centre[1] + r * math.sin(theta))))
    return points
