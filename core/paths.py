"""Where ftk keeps its cache: `FTK_HOME`, by default `~/.cache/ftk`."""

from __future__ import annotations

import os
from pathlib import Path


def ftk_home() -> Path:
    """The root of ftk's cache (backbones, downloads, demo data)."""
    return Path(os.environ.get("FTK_HOME") or Path.home() / ".cache" / "ftk").expanduser()


def backbone_cache_dir(name: str) -> Path:
    """Folder holding the Hub-format SavedModels of the preset `name`."""
    return ftk_home() / "backbones" / name


def downloads_dir() -> Path:
    """Folder for downloaded wheels and archives, kept for offline reuse."""
    return ftk_home() / "downloads"
