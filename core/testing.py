"""Helpers for testing ftk plugins offline: tiny backbones, a smoke run, a spec check.

Example:
    ```python
    from ftk import testing

    def test_my_task(tmp_path):
        backbone = testing.tiny_text_embedding(tmp_path / "embedding")
        result = testing.smoke_run("my_task", data="train.csv", backbone=backbone,
                                   output_dir=tmp_path / "run", plugins=["my_plugin"])
        assert "accuracy" in result.metrics
    ```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ftk.task import task_problems


def write_csv(path: str | Path, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Write `rows` under a header of `columns` as a CSV file.

    Example:
        ```python
        testing.write_csv(tmp_path / "train.csv", ["text", "score"], [("great", 4.5)])
        ```

    Returns:
        `path`, its parent folders created.
    """
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(list(columns))
        writer.writerows(rows)
    return path


def write_text_csv(path: str | Path, rows: Sequence[tuple[str, str]]) -> Path:
    """Write `(text, label)` rows as a text-classification CSV (`text,label` header)."""
    return write_csv(path, ["text", "label"], rows)


def tiny_text_embedding(path: str | Path, *, dim: int = 16, buckets: int = 512, seed: int = 0) -> str:
    """Write a tiny tf.hub text-embedding SavedModel: strings[B] -> float32[B, dim].

    Words are hashed into `buckets` random embeddings and averaged, then a
    trainable dense layer mixes them, so the model follows the nnlm/USE
    convention (with a `training` argument and trainable variables) in a few KB.

    Returns:
        The SavedModel folder, usable as `--backbone`.
    """
    import tensorflow as tf

    # AutoTrackable rather than tf.Module: hub.KerasLayer reads `variables` and
    # `trainable_variables` as saved attributes, which tf.Module only computes.
    class TinyTextEmbedding(tf.__internal__.tracking.AutoTrackable):
        def __init__(self) -> None:
            generator = tf.random.Generator.from_seed(seed)
            self.embeddings = tf.Variable(generator.normal([buckets, dim]), name="embeddings")
            self.kernel = tf.Variable(generator.normal([dim, dim]) / dim ** 0.5, name="layer_0/kernel")
            self.bias = tf.Variable(tf.zeros([dim]), name="layer_0/bias")
            self.trainable_variables = [self.embeddings, self.kernel, self.bias]
            self.variables = list(self.trainable_variables)
            self.regularization_losses: list = []

        @tf.function
        def __call__(self, strings: tf.Tensor, training: bool = False) -> tf.Tensor:
            words = tf.strings.split(tf.strings.lower(strings))
            ids = tf.strings.to_hash_bucket_fast(words, buckets)
            vectors = tf.reduce_mean(tf.gather(self.embeddings, ids), axis=1)
            vectors = tf.where(tf.math.is_finite(vectors), vectors, tf.zeros_like(vectors))
            return tf.tanh(tf.matmul(vectors, self.kernel) + self.bias)

    module = TinyTextEmbedding()
    for training in (False, True):
        module.__call__.get_concrete_function(tf.TensorSpec([None], tf.string), training=training)
    tf.saved_model.save(module, str(path))
    return str(path)


def tiny_image_backbone(path: str | Path, *, feature_maps: bool = False, width: int = 8,
                        image_size: int | None = None, seed: int = 0) -> str:
    """Write a tiny tf.hub image backbone: float32 [B, H, W, 3] in [0, 1] in.

    Five stride-2 conv + BatchNorm + ReLU blocks (`block_1` ... `block_5`) and
    global average pooling; the pooled vector also carries the image's mean
    colour, so a head can learn colour classes from it at once. Without
    `feature_maps` it returns that `[B, 4 * width + 3]` vector (the
    feature-vector convention); with it, a dict
    holding that vector as `default` plus the rank-4 maps `stride_8`,
    `stride_16` and `stride_32`, as detection backbones do. `image_size` fixes
    the input size in the call signature, as some TF Hub models do.

    Returns:
        The SavedModel folder, usable as `--backbone`.
    """
    import tensorflow as tf
    import tf_keras as keras

    tf.random.set_seed(seed)
    inputs = keras.Input([image_size, image_size, 3])
    x = inputs * 2.0 - 1.0
    maps = {}
    for block, channels in enumerate((width, width, 2 * width, 4 * width, 4 * width), start=1):
        x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", use_bias=False,
                                name=f"block_{block}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block_{block}_bn")(x)
        x = keras.layers.ReLU()(x)
        maps[f"stride_{2 ** block}"] = x
    pooled = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(x),
                                         keras.layers.GlobalAveragePooling2D()(inputs)])
    outputs: Any = pooled
    if feature_maps:
        outputs = {"default": pooled, **{k: maps[k] for k in ("stride_8", "stride_16", "stride_32")}}
    model = keras.Model(inputs, outputs)
    tf.saved_model.save(model, str(path))
    return str(path)


def tiny_bert_checkpoint(path: str | Path, *, words: Sequence[str], hidden: int = 32,
                         layers: int = 2, heads: int = 4, intermediate: int = 64,
                         max_positions: int = 128, seed: int = 0) -> Path:
    """Write a tiny random BERT checkpoint folder in the Hugging Face layout.

    The folder holds `config.json`, `model.safetensors` (float32 weights under
    HF names, PyTorch `[out, in]` layout, plus the buffers and pretraining-head
    tensors real checkpoints carry) and `vocab.txt` (special tokens, `words`,
    a few `##` pieces), ready for `ftk backbones convert`.

    Returns:
        The folder.
    """
    import json
    import math

    import numpy as np
    from safetensors.numpy import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = ["##s", "##ing", "##ed", "##ly", "##er"]
    vocab = list(dict.fromkeys(special + list(words) + pieces))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": len(vocab),
              "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
              "intermediate_size": intermediate, "max_position_embeddings": max_positions,
              "type_vocab_size": 2, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
              "attention_probs_dropout_prob": 0.1, "layer_norm_eps": 1e-12,
              "position_embedding_type": "absolute", "pad_token_id": 0}
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    rng = np.random.default_rng(seed)

    def normal(*shape: int, scale: float = 0.2) -> np.ndarray:
        # Large enough that attention and GELU act non-linearly.
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    tensors: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": normal(len(vocab), hidden, scale=1.0),
        "embeddings.position_embeddings.weight": normal(max_positions, hidden),
        "embeddings.token_type_embeddings.weight": normal(2, hidden),
        # A buffer and a pretraining head that converters must skip.
        "embeddings.position_ids": np.arange(max_positions, dtype=np.int64)[None],
        "cls.predictions.bias": normal(len(vocab)),
    }

    def dense(name: str, out_dim: int, in_dim: int) -> None:
        tensors[f"{name}.weight"] = normal(out_dim, in_dim, scale=1.0 / math.sqrt(in_dim))
        tensors[f"{name}.bias"] = normal(out_dim, scale=0.1)

    def norm(name: str) -> None:
        tensors[f"{name}.weight"] = 1.0 + normal(hidden, scale=0.1)
        tensors[f"{name}.bias"] = normal(hidden, scale=0.1)

    norm("embeddings.LayerNorm")
    for index in range(layers):
        prefix = f"encoder.layer.{index}"
        for part in ("query", "key", "value"):
            dense(f"{prefix}.attention.self.{part}", hidden, hidden)
        dense(f"{prefix}.attention.output.dense", hidden, hidden)
        norm(f"{prefix}.attention.output.LayerNorm")
        dense(f"{prefix}.intermediate.dense", intermediate, hidden)
        dense(f"{prefix}.output.dense", hidden, intermediate)
        norm(f"{prefix}.output.LayerNorm")
    dense("pooler.dense", hidden, hidden)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def tiny_bert(path: str | Path, *, words: Sequence[str], seq_length: int = 32, **sizes: Any) -> str:
    """A tiny random BERT converted to Hub format (`encoder/`, `preprocessor/`).

    Returns:
        The folder, usable as `--backbone` (ftk finds both SavedModels in it).
    """
    import ftk

    folder = Path(path)
    checkpoint = tiny_bert_checkpoint(folder.with_name(folder.name + "-checkpoint"), words=words, **sizes)
    ftk.convert_backbone(checkpoint, folder, seq_length=seq_length)
    return str(folder)


def smoke_run(task: str, *, data: str | Path, backbone: str | Path, output_dir: str | Path,
              plugins: Sequence[str] = (), epochs: int = 1, batch_size: int = 4,
              **settings: Any) -> Any:
    """Run `task` end to end for a few steps and check the run directory.

    Extra keyword arguments are dotted config keys (use `__` for dots), e.g.
    `head__dropout=0.0`.

    Returns:
        The `RunResult`.
    """
    import ftk

    overrides = {key.replace("__", "."): value for key, value in settings.items()}
    result = ftk.run(task=task, data=str(data), backbone=str(backbone), epochs=epochs,
                     batch_size=batch_size, output_dir=str(output_dir), set=overrides,
                     plugins=plugins)
    run_dir = Path(result.run_dir)
    for name in ("config.yaml", "history.csv", "metrics.json", "export/saved_model.pb",
                 "export/ftk.json", "checkpoints/last"):
        assert (run_dir / name).exists(), f"smoke run wrote no {name} in {run_dir}"
    return result


def check_task(task: Any) -> list[str]:
    """Problems with a task class, as readable strings (empty when it is fine):
    what registering it would refuse."""
    return task_problems(task)
