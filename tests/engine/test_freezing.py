"""Freezing policies, two-phase fine-tuning and inference mode of a frozen backbone."""

from __future__ import annotations

import numpy as np
import pytest

import ftk
from helpers import backbone_weights

pytestmark = pytest.mark.e2e  # whole runs through the CLI or the Python API


def original_weights(embedding):
    import tensorflow_hub as hub

    loaded = hub.load(embedding)
    return {"embeddings": loaded.embeddings.numpy(), "layer_0/kernel": loaded.kernel.numpy(),
            "layer_0/bias": loaded.bias.numpy()}


def changed(run_dir, embedding):
    before = original_weights(embedding)
    after = backbone_weights(run_dir)
    assert set(after) == set(before), sorted(after)
    return {name for name in before if not np.allclose(before[name], after[name])}


def train(embedding, topics, tmp_path, **settings):
    settings = {"train.learning_rate": 0.05, **settings}
    return ftk.run(task="text_classification", data=topics["train"], backbone=embedding,
                   epochs=2, batch_size=8, output_dir=tmp_path / "run", set=settings)


def test_frozen_backbone_keeps_its_weights(embedding, topics, tmp_path):
    import tensorflow as tf

    result = train(embedding, topics, tmp_path)
    # Checkpoints of a run that never trains the backbone leave its weights out.
    assert backbone_weights(result.run_dir) == {}
    assert any(key.startswith("model/head/") for key in tf.train.load_checkpoint(
        str(result.run_dir / "checkpoints" / "last" / "ckpt")).get_variable_to_shape_map())
    exported = tf.saved_model.load(str(result.run_dir / "export"))
    served = {v.name.removesuffix(":0"): v.numpy() for v in exported.backbone.variables}
    for name, value in original_weights(embedding).items():
        np.testing.assert_array_equal(served[name], value, err_msg=name)


def test_trainable_backbone_updates_every_variable(embedding, topics, tmp_path):
    result = train(embedding, topics, tmp_path, **{"backbone.trainable": True})
    assert changed(result.run_dir, embedding) == {"embeddings", "layer_0/kernel", "layer_0/bias"}


def test_patterns_select_variables_by_name(embedding, topics, tmp_path):
    result = train(embedding, topics, tmp_path, **{"backbone.trainable": True,
                                                  "backbone.trainable_patterns": ["kernel$"]})
    assert changed(result.run_dir, embedding) == {"layer_0/kernel"}


def test_last_blocks_select_numbered_blocks(embedding, topics, tmp_path):
    result = train(embedding, topics, tmp_path, **{"backbone.trainable": True,
                                                  "backbone.trainable_blocks": 1})
    assert changed(result.run_dir, embedding) == {"layer_0/kernel", "layer_0/bias"}


def test_a_pattern_matching_nothing_lists_variable_names(embedding, topics, tmp_path):
    with pytest.raises(ftk.ConfigError, match=r"'encoder/layer_9' matches no backbone variable\. "
                                              r"Examples of names: .*embeddings"):
        train(embedding, topics, tmp_path, **{"backbone.trainable": True,
                                             "backbone.trainable_patterns": ["encoder/layer_9"]})


def test_two_phase_trains_the_head_first_then_everything(embedding, topics, tmp_path):
    settings = {"backbone.trainable": True, "train.head_epochs": 1}
    result = train(embedding, topics, tmp_path, **settings)
    assert len(result.history["loss"]) == 2
    assert changed(result.run_dir, embedding) == {"embeddings", "layer_0/kernel", "layer_0/bias"}
    one_phase = ftk.run(task="text_classification", data=topics["train"], backbone=embedding,
                        epochs=1, batch_size=8, output_dir=tmp_path / "head_only",
                        set={"train.learning_rate": 0.05})
    # phase 1 is exactly a head-only epoch with the full learning rate
    assert result.history["loss"][0] == pytest.approx(one_phase.history["loss"][0], rel=1e-5)


def test_resume_inside_the_second_phase(embedding, topics, tmp_path, monkeypatch):
    from helpers import interrupt_after_epoch, optimizer_steps

    settings = {"backbone.trainable": True, "train.head_epochs": 1}
    interrupt_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        ftk.run(task="text_classification", data=topics["train"], backbone=embedding, epochs=3,
                batch_size=8, output_dir=tmp_path / "run", set=settings)
    run_dir = tmp_path / "run"
    assert optimizer_steps(run_dir, "backbone_optimizer") == 9  # one epoch of phase 2
    result = ftk.run(output_dir=run_dir, resume=True)
    assert result.history["epoch"] == [0, 1, 2]
    assert optimizer_steps(run_dir, "backbone_optimizer") == 18
    assert changed(run_dir, embedding) == {"embeddings", "layer_0/kernel", "layer_0/bias"}


def test_plan_phases_uses_the_lower_rate_after_the_head_phase():
    from ftk.training.trainer import plan_phases

    config = ftk.default_config("text_classification")
    config["backbone"]["trainable"] = True
    config["train"].update(epochs=5, head_epochs=2, learning_rate=1e-3, backbone_lr_multiplier=0.1)
    head, full = plan_phases(config)
    assert (head.start, head.end, head.train_backbone, head.head_learning_rate) == (0, 2, False, 1e-3)
    assert (full.start, full.end, full.train_backbone) == (2, 5, True)
    assert full.backbone_learning_rate == pytest.approx(1e-4)
    config["train"]["head_epochs"] = 0
    (single,) = plan_phases(config)
    assert single.head_learning_rate == 1e-3 and single.backbone_learning_rate == pytest.approx(1e-4)


def test_a_frozen_backbone_runs_in_inference_mode(bert):
    """Dropout inside a frozen encoder stays off even when the model trains."""
    import tensorflow as tf
    import tensorflow_hub as hub

    from ftk.training.model import FineTuneModel

    layer = hub.KerasLayer(f"{bert}/encoder", trainable=True)
    model = FineTuneModel(layer, lambda outputs, features, training=None: outputs["pooled_output"])
    ids = tf.constant([[2, 7, 9, 3, 0, 0]] * 2)
    features = {"input_word_ids": ids, "input_mask": tf.cast(ids > 0, tf.int32),
                "input_type_ids": tf.zeros_like(ids)}
    frozen = [model(features, training=True).numpy() for _ in range(2)]
    np.testing.assert_array_equal(frozen[0], frozen[1])
    model.set_backbone_training(model.backbone_variables, None)
    assert model.backbone.trainable
    training = [model(features, training=True).numpy() for _ in range(2)]
    assert not np.allclose(training[0], training[1])  # dropout is on when it trains


def test_warmup_then_cosine_schedule():
    from ftk.training.optim import build_schedule

    config = ftk.default_config("text_classification")["train"]
    config.update(warmup_ratio=0.1, schedule="cosine")
    schedule = build_schedule(config, 1e-3, 100)
    rates = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    assert rates[0] == 0.0 and rates[1] == pytest.approx(5e-4)   # linear warmup
    assert rates[2] == pytest.approx(1e-3)                       # peak after 10% of steps
    assert rates[3] == pytest.approx(5e-4, rel=1e-3)             # cosine halfway down
    assert rates[4] == pytest.approx(0.0, abs=1e-9)
    config["schedule"] = "constant"
    assert build_schedule(config, 1e-3, 100) == 1e-3
