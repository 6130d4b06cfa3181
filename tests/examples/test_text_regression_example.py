"""The regression example, a third-party task plugin installed with pip, driven
through the `ftk` command line: run, predict, evaluate, export."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from ftk import testing
from helpers import ftk_process, install_example

pytestmark = pytest.mark.e2e  # whole runs through the CLI or the Python API

EXAMPLE = Path(__file__).parents[2] / "examples" / "ftk-text-regression"
GOOD = "superb delightful brilliant lovely".split()
BAD = "awful dreadful boring dull".split()


def write_scores(path: Path, count: int, seed: int) -> Path:
    """Texts of four words; the score is the number of good words, 0 to 4."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        good = rng.randint(0, 4)
        words = rng.sample(GOOD, good) + rng.sample(BAD, 4 - good)
        rng.shuffle(words)
        rows.append((" ".join(words), float(good)))
    return testing.write_csv(path, ["text", "score"], rows)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    return install_example(EXAMPLE, tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def scores(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scores")
    return {"train": write_scores(folder / "train.csv", 160, seed=0),
            "test": write_scores(folder / "test.csv", 40, seed=1)}


def test_regression_plugin_runs_predicts_evaluates_and_exports(installed, scores, embedding,
                                                                tmp_path):
    run = tmp_path / "run"
    result = ftk_process(installed, "run", "--task", "text_regression", "--data", scores["train"],
                 "--test-data", scores["test"], "--backbone", embedding, "--epochs", 12,
                 "--batch-size", 16, "--set", "train.learning_rate=0.05",
                 "--set", "train.monitor=val_mae", "--output", run)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"mae", "rmse", "r2", "pearson", "spearman", "num_examples"}
    assert metrics["pearson"] > 0.6 and metrics["r2"] > 0.3, metrics
    assert metrics["mae"] < 1.0  # scores spread over 0..4
    # No class vocabulary in a regression run.
    assert not (run / "labels.txt").exists() and not (run / "export" / "labels.txt").exists()
    targets = json.loads((run / "export" / "ftk.json").read_text())["targets"]
    assert targets["kind"] == "real" and 1.5 < targets["mean"][0] < 2.5

    # checkpoints/best is the epoch of lowest validation MAE, not the highest.
    with open(run / "history.csv", newline="") as stream:
        history = [float(row["val_mae"]) for row in csv.DictReader(stream)]
    best = json.loads((run / "checkpoints" / "best" / "state.json").read_text())
    assert best["monitor"] == "val_mae"
    assert best["best"] == pytest.approx(min(history)) and min(history) < max(history)
    assert best["epoch"] == history.index(min(history)) + 1

    predicted = json.loads(ftk_process(installed, "predict", run, "superb delightful brilliant lovely",
                               "awful dreadful boring dull").stdout)
    assert predicted[0]["score"] > predicted[1]["score"] + 1.0, predicted

    evaluated = ftk_process(installed, "evaluate", run, "--data", scores["test"])
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["mae"] == pytest.approx(metrics["mae"], abs=1e-5)

    copy = tmp_path / "exported"
    exported = ftk_process(installed, "export", run, "--output", copy)
    assert exported.returncode == 0, exported.stderr
    assert (copy / "saved_model.pb").exists()
    again = json.loads(ftk_process(installed, "predict", copy, "awful dreadful boring dull").stdout)
    assert again[0]["score"] == pytest.approx(predicted[1]["score"], abs=1e-5)


def test_a_non_numeric_target_names_file_line_and_column(installed, embedding, tmp_path):
    data = testing.write_csv(tmp_path / "train.csv", ["text", "score"],
                             [("superb lovely", "3.5"), ("awful dull", "two"), ("boring", "1")])
    result = ftk_process(installed, "run", "--task", "text_regression", "--data", data,
                 "--backbone", embedding, "--output", tmp_path / "run")
    assert result.returncode == 1
    assert f"{data} line 3, column 'score': 'two' is not a number." in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_the_task_is_listed_with_its_metric_directions(installed):
    listing = ftk_process(installed, "tasks").stdout
    assert any(line.split()[0] == "text_regression" and line.split()[-1] == "text_regression"
               for line in listing.splitlines())
    config = ftk_process(installed, "config", "text_regression").stdout
    assert "target_column: score" in config and "huber_delta: 1.0" in config
    wrong = ftk_process(installed, "run", "--task", "text_regression", "--data", "x.csv",
                "--set", "train.monitor=val_r2")
    assert wrong.returncode == 1
    assert "does not say whether r2 is better lower or higher" in wrong.stderr
