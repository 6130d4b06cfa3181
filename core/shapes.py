"""Synthetic pictures for demo data and tests: cluttered backgrounds, coloured
shapes. Both image quickstarts draw their data with these, from seeded
generators, so every machine gets the same images."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A `size` x `size` RGB gradient between two random colours at a random
    angle, plus grain.

    The grain is one noise value per pixel shared by the three channels (like
    a camera's luminance noise): it clutters as much as colour noise, but PNG
    stores it in about half the bytes.
    """
    low, high = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    steps = np.linspace(0, 1, size, dtype=np.float32)
    ramp = math.cos(angle) * steps[None, :] + math.sin(angle) * steps[:, None]
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    pixels = low + ramp[..., None] * (high - low)
    pixels += 12 * rng.standard_normal((size, size, 1), dtype=np.float32)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def clutter(image: Any, rng: np.random.Generator, lines: tuple[int, int]) -> None:
    """Draw a random number (`lines` low..high-1) of thin random lines on a PIL image."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(*lines)):
        ends = rng.integers(0, min(image.size), 4).tolist()
        draw.line(ends, fill=colour(rng), width=int(rng.integers(1, 3)))


def colour(rng: np.random.Generator) -> tuple[int, int, int]:
    red, green, blue = (int(value) for value in rng.integers(0, 256, 3))
    return red, green, blue


def contrasting(rng: np.random.Generator, reference: np.ndarray) -> tuple[int, int, int]:
    """A random colour far from `reference` (the background a shape covers),
    so the shape stays visible."""
    while True:
        chosen = colour(rng)
        if np.linalg.norm(np.asarray(chosen) - reference) > 150:
            return chosen


def polygon(centre: Any, radius: float, corners: int, rng: np.random.Generator, *,
            inner: float | None = None) -> list[tuple[float, float]]:
    """A regular polygon's vertices on a circle, at a random rotation; with
    `inner`, every other vertex sits at `inner * radius` (a star)."""
    rotation = rng.uniform(0, 2 * math.pi)
    points = []
    for k in range(corners):
        r = radius * inner if inner is not None and k % 2 else radius
        theta = rotation + 2 * math.pi * k / corners
        points.append((float(centre[0] + r * math.cos(theta)), float(centre[1] + r * math.sin(theta))))
    return points
