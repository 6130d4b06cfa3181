"""Converts a Hugging Face BERT checkpoint folder to TF Hub SavedModels.

Input: a folder with `config.json`, `model.safetensors` and `vocab.txt` (and
optionally `tokenizer_config.json`), as published for BERT, MiniLM and other
BERT-architecture encoders. Output::

    output_dir/
        encoder/        SavedModel, TF Hub BERT encoder convention
        preprocessor/   SavedModel, TF Hub BERT preprocessor convention
        backbone.json   what was converted, for tools that pick up backbones
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from safetensors.numpy import load_file

from ftk.plugins.bert.model import (
    SUPPORTED_ACTIVATIONS, BertConfig, build_bert_encoder)
from ftk.plugins.bert.preprocessor import BertPreprocessor, save_preprocessor
from ftk.errors import FtkError
from ftk.atomic import building_dir

REQUIRED_FILES = ("config.json", "model.safetensors", "vocab.txt")
_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
# Marks a finished conversion; only such a folder is ever replaced.
_MANIFEST = "backbone.json"


def convert_bert_checkpoint(checkpoint_dir: str | Path, output_dir: str | Path,
                            *, default_seq_length: int = 128) -> Path:
    """Converts a BERT checkpoint folder into encoder + preprocessor models.

    The result is built in a temporary folder next to `output_dir` and moved
    into place only when complete, so a failed run never leaves a partial
    `output_dir`, and an earlier conversion there survives until the new one
    is written.

    Args:
        checkpoint_dir: Folder with `config.json`, `model.safetensors` and
            `vocab.txt` in Hugging Face layout.
        output_dir: Folder to create (or to replace, if it holds an earlier
            conversion).
        default_seq_length: Width of the preprocessor's default `__call__`.

    Returns:
        `output_dir` as a `Path`.

    Raises:
        FtkError: A file is missing or malformed, a tensor is missing or has
            the wrong shape, or `output_dir` is something else than an
            earlier conversion.
    """
    checkpoint_dir, output_dir = Path(checkpoint_dir), Path(output_dir)
    for name in REQUIRED_FILES:
        if not (checkpoint_dir / name).is_file():
            raise FtkError(
                f"{checkpoint_dir / name} not found: a BERT checkpoint folder "
                f"must contain {', '.join(REQUIRED_FILES)} (Hugging Face "
                "layout).")
    config = read_bert_config(checkpoint_dir / "config.json")
    if not 2 <= default_seq_length <= config.max_position_embeddings:
        raise FtkError(
            f"The sequence length (--seq-length) must be between 2 and the checkpoint's "
            f"max_position_embeddings={config.max_position_embeddings}. "
            f"Received: {default_seq_length}")
    vocab_path = checkpoint_dir / "vocab.txt"
    vocab = _read_vocab(vocab_path, config)
    do_lower_case = _do_lower_case(checkpoint_dir, vocab)
    weights = _load_weights(checkpoint_dir / "model.safetensors", config)
    with building_dir(output_dir, _MANIFEST) as staging:
        _save_encoder(config, weights, vocab_path, do_lower_case,
                      staging / "encoder")
        save_preprocessor(BertPreprocessor(
            vocab_path, do_lower_case=do_lower_case,
            default_seq_length=default_seq_length, cls_id=vocab["[CLS]"],
            sep_id=vocab["[SEP]"], pad_id=vocab["[PAD]"]),
            staging / "preprocessor")
        manifest = {
            "kind": "text_encoder",
            "hidden_size": config.hidden_size,
            "num_layers": config.num_hidden_layers,
            "vocab_size": config.vocab_size,
            "max_position_embeddings": config.max_position_embeddings,
            "do_lower_case": do_lower_case,
            "source": str(checkpoint_dir),
        }
        (staging / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n",
                                         encoding="utf-8")
    return output_dir


def read_bert_config(path: Path) -> BertConfig:
    """Reads an HF BERT `config.json` into a `BertConfig`.

    Raises:
        FtkError: The file is not JSON, lacks a required key, or describes
            something this converter cannot reproduce.
    """
    try:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FtkError(f"{path}: cannot read it as JSON ({e}).") from e
    kind = raw.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise FtkError(f"{path}: position_embedding_type={kind!r} is not "
                       "supported; only 'absolute' BERT checkpoints convert.")
    if raw.get("hidden_act", "gelu") not in SUPPORTED_ACTIVATIONS:
        raise FtkError(f"{path}: hidden_act={raw.get('hidden_act')!r} is not "
                       f"supported; use one of {', '.join(SUPPORTED_ACTIVATIONS)}.")
    fields = dataclasses.fields(BertConfig)
    names = [f.name for f in fields]
    missing = [f.name for f in fields
               if f.name not in raw and f.default is dataclasses.MISSING]
    if missing:
        raise FtkError(f"{path}: missing key(s) {', '.join(missing)}; is this a "
                       "BERT config.json?")
    for f in fields:
        # Annotations are strings here (postponed evaluation).
        wanted = {"int": (int,), "float": (int, float), "str": (str,)}[f.type]
        value = raw.get(f.name, f.default)
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise FtkError(f"{path}: {f.name}={value!r} should be of type "
                           f"{f.type}.")
    config = BertConfig(**{n: raw[n] for n in names if n in raw})
    if config.hidden_size % config.num_attention_heads:
        raise FtkError(f"{path}: hidden_size={config.hidden_size} is not a "
                       f"multiple of num_attention_heads="
                       f"{config.num_attention_heads}.")
    return config


def _read_vocab(path: Path, config: BertConfig) -> dict[str, int]:
    # Split on "\n" only, as the TF lookup table does; str.splitlines would
    # also split on characters that are legitimate vocab entries.
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab = {token: index for index, token in enumerate(lines)}
    missing = [t for t in _SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise FtkError(f"{path}: special token(s) {', '.join(missing)} missing; "
                       "a BERT WordPiece vocab needs them.")
    if len(lines) > config.vocab_size:
        raise FtkError(f"{path} has {len(lines)} entries but config.json says "
                       f"vocab_size={config.vocab_size}; this vocab does not "
                       "belong to this model.")
    return vocab


def _do_lower_case(checkpoint_dir: Path, vocab: dict[str, int]) -> bool:
    tokenizer_config = checkpoint_dir / "tokenizer_config.json"
    if tokenizer_config.is_file():
        try:
            value = json.loads(tokenizer_config.read_text(encoding="utf-8")
                               ).get("do_lower_case")
        except (OSError, ValueError, AttributeError) as e:
            raise FtkError(f"{tokenizer_config}: cannot read it as a JSON "
                           f"object ({e}).") from e
        if isinstance(value, bool):
            return value
    # Uncased vocabs hold (almost) no upper-case entries; cased ones hold
    # thousands. Bracketed entries like [CLS] or [unused0] do not count.
    words = [t for t in vocab if not (t.startswith("[") and t.endswith("]"))]
    upper = sum(1 for t in words if t != t.lower())
    return upper <= 0.01 * max(len(words), 1)


def _weight_plan(config: BertConfig) -> list[tuple[str, str, tuple[int, ...]]]:
    """Lists (HF tensor name, encoder variable name, HF shape) triples.

    Shapes are in the checkpoint's layout: PyTorch Linear weights are
    [out, in]; every 2-D `.weight` except embeddings gets transposed.
    """
    h, i = config.hidden_size, config.intermediate_size
    plan = [
        ("embeddings.word_embeddings.weight", "embeddings/word_embeddings",
         (config.vocab_size, h)),
        ("embeddings.position_embeddings.weight",
         "embeddings/position_embeddings", (config.max_position_embeddings, h)),
        ("embeddings.token_type_embeddings.weight", "embeddings/type_embeddings",
         (config.type_vocab_size, h)),
    ]

    def dense(hf: str, ours: str, out_dim: int, in_dim: int) -> None:
        plan.append((f"{hf}.weight", f"{ours}/kernel", (out_dim, in_dim)))
        plan.append((f"{hf}.bias", f"{ours}/bias", (out_dim,)))

    def norm(hf: str, ours: str) -> None:
        plan.append((f"{hf}.weight", f"{ours}/gamma", (h,)))
        plan.append((f"{hf}.bias", f"{ours}/beta", (h,)))

    norm("embeddings.LayerNorm", "embeddings/layer_norm")
    for n in range(config.num_hidden_layers):
        hf, ours = f"encoder.layer.{n}", f"transformer/layer_{n}"
        for part in ("query", "key", "value"):
            dense(f"{hf}.attention.self.{part}", f"{ours}/attention/{part}", h, h)
        dense(f"{hf}.attention.output.dense", f"{ours}/attention/output", h, h)
        norm(f"{hf}.attention.output.LayerNorm", f"{ours}/attention_layer_norm")
        dense(f"{hf}.intermediate.dense", f"{ours}/intermediate", i, h)
        dense(f"{hf}.output.dense", f"{ours}/output", h, i)
        norm(f"{hf}.output.LayerNorm", f"{ours}/output_layer_norm")
    dense("pooler.dense", "pooler/dense", h, h)
    return plan


def _load_weights(path: Path, config: BertConfig) -> dict[str, np.ndarray]:
    """Reads and checks every needed tensor; returns them by variable name."""
    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises several unrelated types.
        raise FtkError(f"{path}: cannot read it as safetensors ({e}).") from e
    # BertFor* heads store the encoder under "bert."; plain BertModel does not.
    prefix = "bert." if any(k.startswith("bert.") for k in tensors) else ""
    weights = {}
    for hf_name, var_name, shape in _weight_plan(config):
        # Old TF-converted checkpoints call LayerNorm weights gamma/beta.
        candidates = [prefix + hf_name]
        if ".LayerNorm." in hf_name:
            candidates.append(prefix + hf_name.replace(".weight", ".gamma")
                              .replace(".bias", ".beta"))
        found = next((c for c in candidates if c in tensors), None)
        if found is None:
            raise FtkError(f"{path}: tensor '{prefix + hf_name}' is missing "
                           f"(expected shape {list(shape)}); the checkpoint "
                           "does not match its config.json.")
        value = tensors[found]
        if tuple(value.shape) != shape:
            raise FtkError(f"{path}: tensor '{found}' has shape "
                           f"{list(value.shape)}, expected {list(shape)} from "
                           "config.json.")
        value = value.astype(np.float32)
        is_kernel = value.ndim == 2 and var_name.endswith("/kernel")
        weights[var_name] = value.T if is_kernel else value
    return weights


def _save_encoder(config: BertConfig, weights: dict[str, np.ndarray],
                  vocab_path: Path, do_lower_case: bool, path: Path) -> None:
    # Dropout ops traced without a seed fail under op determinism; seeding the
    # trace gives each of them a fixed op-level seed in the SavedModel.
    tf.random.set_seed(0)
    model = build_bert_encoder(config)
    variables = {v.name.split(":")[0]: v for v in model.weights}
    if set(variables) != set(weights):
        # Means the layer code and _weight_plan disagree: a bug, not user input.
        raise RuntimeError("encoder variables do not match the weight plan: "
                           f"{sorted(set(variables) ^ set(weights))}")
    for name, value in weights.items():
        variables[name].assign(value)
    # TF Hub BERT encoders carry these so a matching tokenizer can be built.
    model.vocab_file = tf.saved_model.Asset(str(vocab_path))
    model.do_lower_case = tf.Variable(do_lower_case, trainable=False,
                                      name="do_lower_case")

    # Keras' automatic serving signature names outputs after layers; this
    # one keeps the documented keys, flattening encoder_outputs.
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec] * 3)
    def serve(input_word_ids, input_mask, input_type_ids):
        outputs = model({"input_word_ids": input_word_ids,
                         "input_mask": input_mask,
                         "input_type_ids": input_type_ids}, training=False)
        flat = {k: v for k, v in outputs.items() if k != "encoder_outputs"}
        for n, layer_output in enumerate(outputs["encoder_outputs"]):
            flat[f"encoder_outputs_{n}"] = layer_output
        return flat

    tf.saved_model.save(model, str(path), signatures={"serving_default": serve})
