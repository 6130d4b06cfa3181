"""A real third-party plugin package, installed with pip, found through its entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import ftk_process, install_example

pytestmark = pytest.mark.e2e  # whole runs through the CLI or the Python API

EXAMPLE = Path(__file__).parents[2] / "examples" / "ftk-hashed-bow"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    return install_example(EXAMPLE, tmp_path_factory.mktemp("site"))


def test_installed_plugin_is_discovered(installed):
    plugins = json.loads(ftk_process(installed, "plugins").stdout)
    entry = next(p for p in plugins if p["name"] == "hashed_bow")
    assert entry == {"name": "hashed_bow", "module": "ftk_hashed_bow", "version": "0.1.0",
                     "hooks": ["ftk_register_backbones"]}
    listing = ftk_process(installed, "backbones", "list").stdout
    assert any(line.split()[0] == "hashed-bow" and line.split()[-1] == "hashed_bow"
               for line in listing.splitlines())


def test_installed_plugin_runs_through_ftk_run(installed, topics, tmp_path):
    env = {**installed, "FTK_HOME": str(tmp_path / "home")}
    result = ftk_process(env, "run", "--task", "text_classification", "--data", topics["train"],
                 "--test-data", topics["test"], "--backbone", "hashed-bow", "--epochs", 10,
                 "--batch-size", 8, "--set", "train.learning_rate=0.05", "--output", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert "Preparing backbone 'hashed-bow'" in result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9
    assert (tmp_path / "home" / "backbones" / "hashed-bow" / "encoder" / "saved_model.pb").exists()


def test_autoload_can_be_switched_off(installed):
    env = {**installed, "FTK_DISABLE_PLUGIN_AUTOLOAD": "1"}
    assert "hashed_bow" not in [p["name"] for p in json.loads(ftk_process(env, "plugins").stdout)]
