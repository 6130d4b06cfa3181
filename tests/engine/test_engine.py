"""The engine on a fake task (four numbers in, one real number out, a tiny
dense backbone): no classes, no text, no images, and a few seconds a run."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest

import ftk
from helpers import (backbone_weights, fake_task_plugin, interrupt_after_epoch,
                     tiny_vector_backbone, write_vector_csv)


@pytest.fixture(scope="module")
def vectors(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("vectors")
    return {"train": write_vector_csv(folder / "train.csv", 96, seed=0),
            "test": write_vector_csv(folder / "test.csv", 32, seed=1),
            "backbone": tiny_vector_backbone(folder / "backbone")}


@pytest.fixture
def fake(tmp_path, monkeypatch) -> str:
    monkeypatch.syspath_prepend(str(tmp_path))
    return fake_task_plugin(tmp_path)


def run(fake, vectors, output, **settings):
    epochs = settings.pop("epochs", 6)
    return ftk.run(task="fake_vectors", data=vectors["train"], test_data=vectors["test"],
                   backbone=vectors["backbone"], epochs=epochs, output_dir=output,
                   plugins=[fake], set=settings)


def history(run_dir) -> dict[str, list[float]]:
    with open(run_dir / "history.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    return {key: [float(row[key]) for row in rows] for key in rows[0]}


def test_a_task_without_classes_gets_a_whole_run_directory(fake, vectors, tmp_path):
    result = run(fake, vectors, tmp_path / "run", **{"train.learning_rate": 0.05})
    folder = result.run_dir
    for name in ("config.yaml", "history.csv", "metrics.json", "checkpoints/last/state.json",
                 "checkpoints/best/state.json", "export/saved_model.pb", "export/ftk.json",
                 "plots/training_curves.png", "logs"):
        assert (folder / name).exists(), name
    assert not (folder / "labels.txt").exists() and not (folder / "export" / "labels.txt").exists()
    assert not (folder / "cache").exists()
    targets = json.loads((folder / "export" / "ftk.json").read_text())["targets"]
    assert targets["kind"] == "real" and len(targets["mean"]) == 1
    # The default evaluation: the loss and the training metrics over the test set.
    assert set(result.metrics) == {"loss", "mae", "num_examples", "split"}
    assert result.metrics["num_examples"] == 32 and result.metrics["split"] == "test"
    curves = history(folder)
    assert set(curves) == {"epoch", "loss", "mae", "val_loss", "val_mae", "epoch_seconds"}
    assert curves["val_mae"][-1] < curves["val_mae"][0]
    predicted = ftk.load(folder, plugins=[fake]).predict(["1 0 0 0", "0 0 0 1"])
    assert set(predicted[0]) == {"outputs"} and len(predicted[0]["outputs"]) == 1


def test_the_best_checkpoint_follows_the_tasks_metric_direction(fake, vectors, tmp_path):
    result = run(fake, vectors, tmp_path / "run", **{"train.monitor": "val_mae",
                                                      "train.learning_rate": 0.05})
    maes = history(result.run_dir)["val_mae"]
    best = json.loads((result.run_dir / "checkpoints" / "best" / "state.json").read_text())
    assert best["best"] == pytest.approx(min(maes)) and best["epoch"] == maes.index(min(maes)) + 1


def test_a_monitor_without_a_direction_is_refused_before_data_is_read(fake, vectors, tmp_path):
    with pytest.raises(ftk.ConfigError, match="does not say whether r2 is better lower or higher"):
        ftk.run(task="fake_vectors", data=tmp_path / "missing.csv", backbone=vectors["backbone"],
                output_dir=tmp_path / "run", plugins=[fake], set={"train.monitor": "val_r2"})
    assert not (tmp_path / "run").exists()


def test_resume_continues_from_the_last_saved_epoch(fake, vectors, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ftk")
    interrupt_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(fake, vectors, tmp_path / "run", epochs=4)
    assert history(tmp_path / "run")["epoch"] == [0, 1]
    resumed = ftk.run(task="fake_vectors", data=vectors["train"], test_data=vectors["test"],
                      backbone=vectors["backbone"], epochs=4, output_dir=tmp_path / "run",
                      plugins=[fake], resume=True)
    assert "Resuming from epoch 2 of 4." in caplog.text
    assert history(resumed.run_dir)["epoch"] == [0, 1, 2, 3]
    whole = run(fake, vectors, tmp_path / "whole", epochs=4)
    # Close, not equal: the resumed process shuffles its later epochs afresh.
    assert resumed.metrics["mae"] == pytest.approx(whole.metrics["mae"], rel=0.05)


def test_two_phases_train_the_selected_backbone_variables_in_phase_two(fake, vectors, tmp_path):
    result = run(fake, vectors, tmp_path / "run", epochs=3,
                 **{"backbone.trainable": True, "train.head_epochs": 1,
                    "backbone.trainable_patterns": ["layer_2"]})
    import tensorflow_hub as hub

    original = {v.name.removesuffix(":0"): v.numpy()
                for v in hub.KerasLayer(vectors["backbone"]).weights}
    trained = backbone_weights(result.run_dir)
    assert set(trained) == set(original)
    for name, value in trained.items():
        moved = not np.allclose(value, original[name])
        assert moved == name.startswith("layer_2"), name


def test_the_feature_cache_trains_the_head_on_the_same_batches(fake, vectors, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ftk")
    cached = run(fake, vectors, tmp_path / "cached", **{"train.cache_features": True})
    assert "Feature cache on: the backbone is frozen and the inputs repeat every epoch." in caplog.text
    plain = run(fake, vectors, tmp_path / "plain", **{"train.cache_features": False})
    assert cached.metrics["mae"] == pytest.approx(plain.metrics["mae"], rel=1e-4)
    assert history(cached.run_dir)["loss"] == pytest.approx(history(plain.run_dir)["loss"], rel=1e-4)


def test_a_backbone_fed_more_rows_than_examples_trains_without_the_cache(fake, vectors, tmp_path,
                                                                         caplog):
    """A task may send the backbone several rows per example (a Siamese pair);
    the cache, which stores one row per example, then stands aside."""
    (tmp_path / "ftk_pairs.py").write_text('''
import ftk
from ftk_fake_task import FakeTask, VectorPreprocessor


class Twice(VectorPreprocessor):
    def __call__(self, inputs):
        import tensorflow as tf

        vectors = super().__call__(inputs)
        return tf.concat([vectors, -vectors], axis=0)


class PairTask(FakeTask):
    name = "fake_pairs"

    def build_preprocessor(self, backbone):
        return Twice()

    def build_head(self, backbone):
        import tensorflow as tf
        import tf_keras as keras

        class Halves(keras.layers.Layer):
            def __init__(self):
                super().__init__(name="head")
                self.dense = keras.layers.Dense(1)

            def call(self, outputs, features=None, training=None):
                first, second = tf.split(outputs, 2, axis=0)
                return self.dense(tf.concat([first, second], axis=-1))

        return Halves()


@ftk.hookimpl
def ftk_register_tasks(register):
    register(PairTask)
''')
    caplog.set_level(logging.INFO, logger="ftk")
    result = ftk.run(task="fake_pairs", data=vectors["train"], test_data=vectors["test"],
                     backbone=vectors["backbone"], epochs=2, output_dir=tmp_path / "run",
                     plugins=[fake, "ftk_pairs"])
    assert ("Feature cache off: the backbone's outputs do not have one row per example"
            in caplog.text)
    assert result.metrics["num_examples"] == 32


def test_the_saved_config_names_a_local_backbone_by_its_absolute_path(fake, vectors, tmp_path,
                                                                      monkeypatch):
    import shutil

    shutil.copytree(vectors["backbone"], tmp_path / "mine")
    monkeypatch.chdir(tmp_path)
    result = ftk.run(task="fake_vectors", data=vectors["train"], backbone="mine", epochs=1,
                     output_dir=tmp_path / "run", plugins=[fake])
    saved = (result.run_dir / "config.yaml").read_text()
    assert f"handle: {tmp_path / 'mine'}" in saved


def test_overwrite_replaces_only_an_ftk_run_and_only_once_the_new_one_is_done(fake, vectors,
                                                                              tmp_path):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("years of work")
    with pytest.raises(ftk.FtkError, match="is not an ftk run directory"):
        ftk.run(task="fake_vectors", data=vectors["train"], backbone=vectors["backbone"],
                output_dir=thesis, overwrite=True, plugins=[fake])
    assert (thesis / "thesis.tex").read_text() == "years of work"

    first = run(fake, vectors, tmp_path / "run", epochs=1)
    (first.run_dir / "notes.txt").write_text("mine")
    before = (first.run_dir / "metrics.json").read_bytes()
    # A typo in the data: the earlier run stays whole, and nothing is left beside it.
    with pytest.raises(ftk.DataError):
        ftk.run(task="fake_vectors", data=tmp_path / "typo.csv", backbone=vectors["backbone"],
                output_dir=tmp_path / "run", overwrite=True, plugins=[fake])
    assert (first.run_dir / "metrics.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ftk_fake_task.py", "run", "thesis"]

    second = ftk.run(task="fake_vectors", data=vectors["train"], backbone=vectors["backbone"],
                     epochs=2, output_dir=tmp_path / "run", overwrite=True, plugins=[fake])
    assert second.run_dir == tmp_path / "run"
    assert not (second.run_dir / "notes.txt").exists()
    assert history(second.run_dir)["epoch"] == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ftk_fake_task.py", "run", "thesis"]


def test_a_run_stopped_by_bad_data_can_be_rerun_in_the_same_folder(fake, vectors, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("inputs,target\n1 2 3 4,5\n1 2 3 4,5,6\n")
    with pytest.raises(ftk.DataError, match="line 3: more fields than the header has columns"):
        run(fake, {**vectors, "train": bad}, tmp_path / "run")
    assert [p.name for p in (tmp_path / "run").iterdir()] == [".ftk-run"]
    result = run(fake, vectors, tmp_path / "run", epochs=1)
    assert (result.run_dir / "metrics.json").exists()


def _truncate_checkpoint_data(folder) -> None:
    data = next(p for p in folder.iterdir() if p.name.startswith("ckpt.data"))
    data.write_bytes(data.read_bytes()[:8])


def test_a_damaged_last_checkpoint_falls_back_to_best(fake, vectors, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="ftk")
    first = run(fake, vectors, tmp_path / "run", epochs=3, **{"train.learning_rate": 0.05})
    best_epoch = json.loads((first.run_dir / "checkpoints/best/state.json").read_text())["epoch"]
    _truncate_checkpoint_data(first.run_dir / "checkpoints" / "last")
    resumed = ftk.run(task="fake_vectors", data=vectors["train"], test_data=vectors["test"],
                      backbone=vectors["backbone"], epochs=4, output_dir=first.run_dir,
                      plugins=[fake], resume=True)
    assert "does not match manifest.json (truncated or changed)" in caplog.text
    assert f"(epoch {best_epoch}) instead" in caplog.text
    assert history(resumed.run_dir)["epoch"] == list(range(4))


@pytest.mark.parametrize("damage", ["truncated", "state"])
def test_resume_with_no_sound_checkpoint_names_the_damage(fake, vectors, tmp_path, damage):
    first = run(fake, vectors, tmp_path / "run", epochs=1)
    for name in ("last", "best"):
        folder = first.run_dir / "checkpoints" / name
        if damage == "truncated":
            _truncate_checkpoint_data(folder)
        else:
            (folder / "state.json").write_text("{not json")
    files = ("history.csv", "config.yaml", "metrics.json")
    before = {name: (first.run_dir / name).read_bytes() for name in files}
    with pytest.raises(ftk.FtkError, match="Cannot resume: .*checkpoints/last"):
        ftk.run(task="fake_vectors", data=vectors["train"], backbone=vectors["backbone"],
                epochs=2, output_dir=first.run_dir, plugins=[fake], resume=True)
    assert {name: (first.run_dir / name).read_bytes() for name in files} == before


def test_a_damaged_export_description_is_named(fake, vectors, tmp_path):
    first = run(fake, vectors, tmp_path / "run", epochs=1)
    (first.run_dir / "export" / "ftk.json").write_text('{"task": "fake_vec')
    with pytest.raises(ftk.FtkError, match="ftk.json is damaged: not valid JSON"):
        ftk.load(first.run_dir, plugins=[fake])


def test_resume_clears_what_a_killed_process_left_half_written(fake, vectors, tmp_path):
    first = run(fake, vectors, tmp_path / "run", epochs=1)
    leftovers = [first.run_dir / ".export.tmp-x1y2z3", first.run_dir / "checkpoints" / ".last.old",
                 first.run_dir / ".history.csv.k2j4h5_a"]
    for path in leftovers[:2]:
        path.mkdir()
        (path / "partial").write_text("half")
    leftovers[2].write_text("epoch,lo")
    ftk.run(task="fake_vectors", data=vectors["train"], backbone=vectors["backbone"], epochs=2,
            output_dir=first.run_dir, plugins=[fake], resume=True)
    assert not any(path.exists() for path in leftovers)
    assert (first.run_dir / ".ftk-run").exists()


def test_resume_after_a_kill_between_two_renames_continues(fake, vectors, tmp_path):
    """Killed while swapping in checkpoints/last: the old one is stepped aside, none in place."""
    first = run(fake, vectors, tmp_path / "run", epochs=2)
    checkpoints = first.run_dir / "checkpoints"
    (checkpoints / "last").rename(checkpoints / ".last.old")
    resumed = ftk.run(task="fake_vectors", data=vectors["train"], test_data=vectors["test"],
                      backbone=vectors["backbone"], epochs=3, output_dir=first.run_dir,
                      plugins=[fake], resume=True)
    assert history(resumed.run_dir)["epoch"] == [0, 1, 2]
    assert not (checkpoints / ".last.old").exists()


def test_a_signatures_only_savedmodel_is_a_backbone_of_unknown_kind(fake, vectors, tmp_path):
    from ftk.hub.resolve import resolve_backbone

    first = run(fake, vectors, tmp_path / "run", epochs=1)
    assert resolve_backbone(str(first.run_dir / "export"), {}).kind == "unknown"
    # One string is one input, not one per character.
    assert len(ftk.predict(first.run_dir, "1 0 0 0", plugins=[fake])) == 1
