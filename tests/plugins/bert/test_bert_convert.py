"""Tests for the BERT checkpoint -> TF Hub SavedModel converter."""

from __future__ import annotations

import os

# Before TensorFlow is imported: tensorflow_hub must find Keras 2 (tf_keras).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_text  # noqa: F401  (registers ops the preprocessor uses)
import tf_keras as keras
from bert_reference import bert_forward
from safetensors.numpy import load_file, save_file

from ftk import testing
import ftk.plugins.bert.convert as bert_convert
from ftk.plugins.bert.convert import convert_bert_checkpoint
from ftk.errors import FtkError

WORDS = ["the", "quick", "brown", "fox", "jump", "over", "lazy", "dog", ".",
         "a", "cat", "sat"]
SEQ_LENGTH = 16
# The regex a freezing policy uses to assign variables to blocks.
BLOCK_RE = re.compile(r"(?:layer|block)[_/.-]?(\d+)")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random checkpoint, converted once for the whole module."""
    root = tmp_path_factory.mktemp("bert")
    testing.tiny_bert_checkpoint(root / "ckpt", words=WORDS)
    config = json.loads((root / "ckpt" / "config.json").read_text())
    tensors = load_file(str(root / "ckpt" / "model.safetensors"))
    out = convert_bert_checkpoint(root / "ckpt", root / "hub",
                                  default_seq_length=SEQ_LENGTH)
    vocab = (root / "ckpt" / "vocab.txt").read_text(encoding="utf-8").split()
    return {"ckpt": root / "ckpt", "out": out, "config": config,
            "tensors": tensors, "ids": {t: i for i, t in enumerate(vocab)}}


@pytest.fixture(scope="module")
def preprocessor(tiny):
    return hub.load(str(tiny["out"] / "preprocessor"))


@pytest.fixture(scope="module")
def encoder(tiny):
    """The loaded encoder, for tests that do not change its weights."""
    return hub.load(str(tiny["out"] / "encoder"))


def _batch() -> dict[str, np.ndarray]:
    # The first row is a pair (type ids 0 then 1); the second is padded.
    word_ids = np.array([[2, 5, 6, 7, 8, 3, 9, 10, 3],
                         [2, 11, 12, 14, 3, 0, 0, 0, 0]], np.int32)
    type_ids = np.array([[0, 0, 0, 0, 0, 0, 1, 1, 1],
                         [0] * 9], np.int32)
    return {"input_word_ids": word_ids, "input_mask": (word_ids > 0).astype(np.int32),
            "input_type_ids": type_ids}


def _encoder_model(handle, trainable: bool) -> tuple[keras.Model, hub.KerasLayer]:
    inputs = {k: keras.Input(shape=(None,), dtype=tf.int32, name=k)
              for k in ("input_word_ids", "input_mask", "input_type_ids")}
    encoder = hub.KerasLayer(handle, trainable=trainable)
    outputs = encoder(inputs)
    score = keras.layers.Dense(1, name="head")(outputs["pooled_output"])
    return keras.Model(inputs, {"score": score, **outputs}), encoder


def test_encoder_matches_numpy_reference(tiny, encoder):
    batch = _batch()
    outputs = hub.KerasLayer(encoder)(batch)
    expected = bert_forward(tiny["tensors"], tiny["config"], **batch)
    for key in ("sequence_output", "pooled_output", "mean_pooled_output"):
        diff = np.abs(outputs[key].numpy() - expected[key]).max()
        assert diff <= 1e-4, f"{key} differs by {diff}"
    np.testing.assert_array_equal(outputs["default"], outputs["pooled_output"])
    assert len(outputs["encoder_outputs"]) == 2
    np.testing.assert_allclose(outputs["encoder_outputs"][0],
                               expected["encoder_outputs"][0], atol=1e-4)
    assert outputs["sequence_output"].shape == (2, 9, 32)


def test_serving_signature_has_flat_outputs(encoder):
    serve = encoder.signatures["serving_default"]
    outputs = serve(**{k: tf.constant(v) for k, v in _batch().items()})
    assert set(outputs) == {"pooled_output", "sequence_output", "default",
                            "mean_pooled_output", "encoder_outputs_0",
                            "encoder_outputs_1"}


def test_preprocessor_call_packs_known_sentence(tiny, preprocessor):
    ids = tiny["ids"]
    packed = preprocessor(tf.constant(["The quick fox jumps.", "a cat"]))
    expected = [ids["[CLS]"], ids["the"], ids["quick"], ids["fox"], ids["jump"],
                ids["##s"], ids["."], ids["[SEP]"]]
    word_ids = packed["input_word_ids"].numpy()
    assert word_ids.shape == (2, SEQ_LENGTH) and word_ids.dtype == np.int32
    assert word_ids[0].tolist() == expected + [ids["[PAD]"]] * (SEQ_LENGTH - 8)
    assert word_ids[1, :4].tolist() == [ids["[CLS]"], ids["a"], ids["cat"],
                                        ids["[SEP]"]]
    assert packed["input_mask"].numpy().sum(axis=1).tolist() == [8, 4]
    assert packed["input_mask"].numpy()[0].tolist() == [1] * 8 + [0] * 8
    assert not packed["input_type_ids"].numpy().any()


def test_tokenize_and_pack_truncate_round_robin(tiny, preprocessor):
    ids = tiny["ids"]
    tokens = preprocessor.tokenize(tf.constant(["the lazy dogs", "a cat sat"]))
    assert isinstance(tokens, tf.RaggedTensor) and tokens.dtype == tf.int32
    assert tokens.shape.rank == 3
    assert tokens[0].to_list() == [[ids["the"]], [ids["lazy"]],
                                   [ids["dog"], ids["##s"]]]
    long_text = tf.constant(["the quick brown fox jump over the lazy dog"])
    first = preprocessor.tokenize(long_text)
    second = preprocessor.tokenize(tf.constant(["a cat sat"]))
    packed = preprocessor.bert_pack_inputs([first, second], seq_length=8)
    # Budget 8 - 3 special tokens = 5, shared round robin: 3 + 2.
    assert packed["input_word_ids"].numpy()[0].tolist() == [
        ids["[CLS]"], ids["the"], ids["quick"], ids["brown"], ids["[SEP]"],
        ids["a"], ids["cat"], ids["[SEP]"]]
    assert packed["input_type_ids"].numpy()[0].tolist() == [0] * 5 + [1] * 3
    assert packed["input_mask"].numpy()[0].tolist() == [1] * 8
    # Already merged [batch, pieces] segments are accepted too.
    flat = preprocessor.bert_pack_inputs([first.merge_dims(-2, -1)], seq_length=4)
    assert flat["input_word_ids"].numpy()[0].tolist() == [
        ids["[CLS]"], ids["the"], ids["quick"], ids["[SEP]"]]


def test_preprocessor_in_keras_and_tf_data_like_tf_hub_tutorials(preprocessor):
    loaded = preprocessor
    text = keras.layers.Input(shape=(), dtype=tf.string)
    tokenize = hub.KerasLayer(loaded.tokenize)
    pack = hub.KerasLayer(loaded.bert_pack_inputs, arguments=dict(seq_length=12))
    model = keras.Model(text, pack([tokenize(text), tokenize(text)]))
    packed = model(tf.constant(["a cat", "the dog"]))
    assert packed["input_word_ids"].shape == (2, 12)
    assert packed["input_type_ids"].numpy()[0, :7].tolist() == [0] * 4 + [1] * 3

    whole = keras.Model(text, hub.KerasLayer(loaded)(text))
    assert whole(tf.constant(["a cat"]))["input_mask"].shape == (1, SEQ_LENGTH)

    dataset = tf.data.Dataset.from_tensor_slices(["a cat sat", "the dog"]).batch(2)
    batches = list(dataset.map(loaded))
    assert batches[0]["input_mask"].numpy().sum(axis=1).tolist() == [5, 4]


def test_trainable_encoder_names_blocks_and_learns(encoder):
    # Shares the module's loaded encoder (loading costs seconds) and puts
    # its weights back afterwards, since this test trains them.
    saved = [v.numpy() for v in encoder.variables]
    try:
        _check_trainable_encoder(encoder)
    finally:
        for variable, value in zip(encoder.variables, saved):
            variable.assign(value)


def _check_trainable_encoder(loaded) -> None:
    model, encoder = _encoder_model(loaded, trainable=True)
    names = [v.name for v in encoder.trainable_weights]
    blocks = {m.group(1) for n in names if (m := BLOCK_RE.search(n))}
    assert blocks == {"0", "1"}
    assert any("layer_0" in n for n in names) and any("layer_1" in n for n in names)
    others = [n for n in names if not BLOCK_RE.search(n)]
    assert any(n.startswith("embeddings/word_embeddings") for n in others)
    assert any(n.startswith("pooler/") for n in others)
    assert len(encoder.trainable_weights) == 5 + 2 * 16 + 2
    assert [v.name for v in encoder.non_trainable_weights] == ["do_lower_case:0"]

    batch, target = _batch(), tf.constant([[1.0], [-1.0]])

    def loss() -> tf.Tensor:
        return tf.reduce_mean((model(batch, training=False)["score"] - target) ** 2)

    before = loss()
    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, model.trainable_variables)
    assert all(g is not None for g in grads)
    keras.optimizers.SGD(0.1).apply_gradients(zip(grads, model.trainable_variables))
    assert abs(float(loss()) - float(before)) > 1e-6

    # Dropout is active only when trainable and training.
    first = model(batch, training=True)["sequence_output"]
    second = model(batch, training=True)["sequence_output"]
    assert not np.allclose(first, second)


def test_frozen_encoder_is_deterministic_in_training(encoder):
    model, layer = _encoder_model(encoder, trainable=False)
    assert not layer.trainable_weights
    batch = _batch()
    first = model(batch, training=True)["sequence_output"]
    second = model(batch, training=True)["sequence_output"]
    np.testing.assert_array_equal(first, second)
    inference = model(batch, training=False)["sequence_output"]
    np.testing.assert_array_equal(first, inference)


def test_encoder_carries_vocab_asset_and_do_lower_case(tiny, encoder):
    loaded = encoder
    vocab_path = loaded.vocab_file.asset_path.numpy().decode()
    assert Path(vocab_path).read_text(encoding="utf-8") == \
        (tiny["ckpt"] / "vocab.txt").read_text(encoding="utf-8")
    assert str(tiny["out"]) in vocab_path
    assert loaded.do_lower_case.dtype == tf.bool
    assert bool(loaded.do_lower_case.numpy()) is True
    assert not loaded.do_lower_case.trainable
    assert list(loaded.regularization_losses) == []
    assert len(loaded.trainable_variables) == len(loaded.variables) - 1
    manifest = json.loads((tiny["out"] / "backbone.json").read_text())
    assert manifest == {"kind": "text_encoder", "hidden_size": 32, "num_layers": 2,
                        "vocab_size": len(tiny["ids"]), "max_position_embeddings": tiny["config"]["max_position_embeddings"],
                        "do_lower_case": True, "source": str(tiny["ckpt"])}


def _copy_checkpoint(tiny, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny["ckpt"], tmp_path / "ckpt"))


def test_missing_vocab_names_the_file(tiny, tmp_path):
    ckpt = _copy_checkpoint(tiny, tmp_path)
    (ckpt / "vocab.txt").unlink()
    with pytest.raises(FtkError, match="vocab.txt") as error:
        convert_bert_checkpoint(ckpt, tmp_path / "out")
    assert "config.json, model.safetensors, vocab.txt" in str(error.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shape", [(32, 64), (64, 31)])
def test_wrong_shape_names_file_tensor_and_shapes(tiny, tmp_path, shape):
    ckpt = _copy_checkpoint(tiny, tmp_path)
    tensors = load_file(str(ckpt / "model.safetensors"))
    name = "encoder.layer.1.intermediate.dense.weight"
    tensors[name] = np.zeros(shape, np.float32)
    save_file(tensors, str(ckpt / "model.safetensors"))
    with pytest.raises(FtkError) as error:
        convert_bert_checkpoint(ckpt, tmp_path / "out",
                                default_seq_length=SEQ_LENGTH)
    message = str(error.value)
    assert "model.safetensors" in message and name in message
    assert str(list(shape)) in message and "[64, 32]" in message


def test_missing_tensor_is_named(tiny, tmp_path):
    ckpt = _copy_checkpoint(tiny, tmp_path)
    tensors = load_file(str(ckpt / "model.safetensors"))
    del tensors["pooler.dense.bias"]
    save_file(tensors, str(ckpt / "model.safetensors"))
    with pytest.raises(FtkError, match=r"model\.safetensors.*'pooler\.dense\.bias'"):
        convert_bert_checkpoint(ckpt, tmp_path / "out",
                                default_seq_length=SEQ_LENGTH)


@pytest.mark.parametrize("change, words", [
    ({"hidden_size": None}, "hidden_size=None should be of type int"),
    ({"hidden_act": "swish"}, "hidden_act='swish' is not supported"),
    ({"position_embedding_type": "relative_key"}, "only 'absolute'"),
])
def test_unsupported_config_is_reported(tiny, tmp_path, change, words):
    ckpt = _copy_checkpoint(tiny, tmp_path)
    (ckpt / "config.json").write_text(json.dumps({**tiny["config"], **change}))
    with pytest.raises(FtkError, match=re.escape(words)) as error:
        convert_bert_checkpoint(ckpt, tmp_path / "out")
    assert "config.json" in str(error.value)


def test_bert_prefix_and_gamma_beta_names_are_accepted(tiny, tmp_path):
    renamed = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma"): v
               for k, v in tiny["tensors"].items()}
    renamed["cls.seq_relationship.weight"] = np.zeros((2, 32), np.float32)
    save_file(renamed, str(tmp_path / "model.safetensors"))
    config = bert_convert.read_bert_config(tiny["ckpt"] / "config.json")
    weights = bert_convert._load_weights(tmp_path / "model.safetensors", config)
    np.testing.assert_array_equal(
        weights["transformer/layer_1/attention/query/kernel"],
        tiny["tensors"]["encoder.layer.1.attention.self.query.weight"].T)
    np.testing.assert_array_equal(
        weights["transformer/layer_0/output_layer_norm/gamma"],
        tiny["tensors"]["encoder.layer.0.output.LayerNorm.weight"])


def test_failed_conversion_keeps_existing_output(tiny, tmp_path, monkeypatch):
    out = tmp_path / "hub"
    shutil.copytree(tiny["out"], out)
    ckpt = _copy_checkpoint(tiny, tmp_path)
    (ckpt / "config.json").write_text('{"hidden_size": 32}')
    with pytest.raises(FtkError, match="missing key"):
        convert_bert_checkpoint(ckpt, out)

    def half_written(config, weights, vocab_path, do_lower_case, path):
        path.mkdir()
        (path / "saved_model.pb").write_bytes(b"partial")
        raise OSError("disk full")

    # A failure after the staging folder exists must not touch `out` either.
    monkeypatch.setattr(bert_convert, "_save_encoder", half_written)
    with pytest.raises(OSError, match="disk full"):
        convert_bert_checkpoint(tiny["ckpt"], out, default_seq_length=SEQ_LENGTH)
    assert (out / "backbone.json").is_file() and (out / "encoder").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "hub"]


def test_refuses_to_replace_unrelated_folder(tiny, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FtkError, match="backbone.json"):
        convert_bert_checkpoint(tiny["ckpt"], tmp_path / "mine",
                                default_seq_length=SEQ_LENGTH)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_do_lower_case_from_tokenizer_config_or_vocab(tmp_path):
    cased = {t: i for i, t in enumerate(["[PAD]", "Hello", "World", "the"])}
    uncased = {t: i for i, t in enumerate(["[PAD]", "[CLS]", "hello", "##s"])}
    assert bert_convert._do_lower_case(tmp_path, cased) is False
    assert bert_convert._do_lower_case(tmp_path, uncased) is True
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    assert bert_convert._do_lower_case(tmp_path, uncased) is False


def test_cli_convert_makes_a_usable_backbone(tmp_path, topics):
    import ftk
    from helpers import ftk_cli

    checkpoint = testing.tiny_bert_checkpoint(tmp_path / "ckpt", words=["goal", "team", "bake", "oven"])
    result = ftk_cli("backbones", "convert", checkpoint, tmp_path / "converted", "--seq-length", 16)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "converted")
    info = json.loads((tmp_path / "converted" / "backbone.json").read_text())
    assert info["kind"] == "text_encoder" and info["hidden_size"] == 32
    run = ftk.run(task="text_classification", data=topics["train"], backbone=tmp_path / "converted",
                  epochs=1, batch_size=8, output_dir=tmp_path / "run",
                  set={"backbone.max_seq_length": 16})
    assert run.metrics["num_examples"] > 0
    missing = ftk_cli("backbones", "convert", tmp_path / "nowhere", tmp_path / "out")
    assert missing.exit_code == 1 and "nowhere" in missing.stderr and "Traceback" not in missing.output


def test_the_converter_claims_folders_of_bert_model_type(tiny, tmp_path):
    from ftk.plugins.bert import claims

    assert claims(tiny["ckpt"])
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2Model"]}')
    assert not claims(tmp_path)
    assert not claims(tmp_path / "nowhere")
