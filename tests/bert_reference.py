"""Test helpers: a plain numpy BERT forward pass and a tiny checkpoint writer.

The forward pass works on Hugging Face tensor names and PyTorch layouts
directly, sharing no code with `ftk.backbones`, so agreement between the two
checks the converter's weight mapping as well as the TF model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SUFFIX_PIECES = ["##s", "##ing", "##ed", "##ly", "##er"]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _linear(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    # PyTorch Linear: y = x W^T + b, with W stored as [out, in].
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]


def _layer_norm(x: np.ndarray, w: dict[str, np.ndarray], name: str,
                eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[f"{name}.weight"] + w[f"{name}.bias"]


def _activation(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "gelu":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    if kind == "gelu_new":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi)
                                        * (x + 0.044715 * x ** 3)))
    if kind == "relu":
        return np.maximum(x, 0.0)
    raise ValueError(kind)


def bert_forward(weights: dict[str, np.ndarray], config: dict,
                 input_word_ids: np.ndarray, input_mask: np.ndarray,
                 input_type_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Runs BERT in float64 numpy (inference: no dropout).

    Args:
        weights: HF-named tensors, without a `bert.` prefix.
        config: The parsed `config.json`.
        input_word_ids: int `[B, S]` token ids.
        input_mask: int `[B, S]`, 1 for real tokens and 0 for padding.
        input_type_ids: int `[B, S]` segment ids.

    Returns:
        `sequence_output` `[B, S, H]`, `pooled_output` `[B, H]`,
        `mean_pooled_output` `[B, H]` and `encoder_outputs` (list of
        `[B, S, H]`).
    """
    w = {k: v.astype(np.float64) for k, v in weights.items()
         if v.dtype.kind == "f"}
    eps = config.get("layer_norm_eps", 1e-12)
    heads = config["num_attention_heads"]
    batch, seq = input_word_ids.shape
    x = (w["embeddings.word_embeddings.weight"][input_word_ids]
         + w["embeddings.position_embeddings.weight"][np.arange(seq)][None]
         + w["embeddings.token_type_embeddings.weight"][input_type_ids])
    x = _layer_norm(x, w, "embeddings.LayerNorm", eps)
    # HF adds the most negative float32 to scores of padded keys.
    bias = (1.0 - input_mask[:, None, None, :]) * np.finfo(np.float32).min
    outputs = []
    for n in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{n}"

        def split(t: np.ndarray) -> np.ndarray:
            return t.reshape(batch, seq, heads, -1).transpose(0, 2, 1, 3)

        q = split(_linear(x, w, f"{p}.attention.self.query"))
        k = split(_linear(x, w, f"{p}.attention.self.key"))
        v = split(_linear(x, w, f"{p}.attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + bias
        scores -= scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, -1)
        x = _layer_norm(x + _linear(context, w, f"{p}.attention.output.dense"),
                        w, f"{p}.attention.output.LayerNorm", eps)
        hidden = _activation(_linear(x, w, f"{p}.intermediate.dense"),
                             config.get("hidden_act", "gelu"))
        x = _layer_norm(x + _linear(hidden, w, f"{p}.output.dense"),
                        w, f"{p}.output.LayerNorm", eps)
        outputs.append(x)
    pooled = np.tanh(_linear(x[:, 0], w, "pooler.dense"))
    mask = input_mask[:, :, None].astype(np.float64)
    mean = (x * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
    return {"sequence_output": x, "pooled_output": pooled,
            "mean_pooled_output": mean, "encoder_outputs": outputs}


def write_tiny_bert_checkpoint(path: str | Path, *, vocab_words: list[str],
                               hidden: int = 32, layers: int = 2,
                               heads: int = 4, intermediate: int = 64,
                               max_pos: int = 64, seed: int = 0
                               ) -> tuple[dict, dict[str, np.ndarray]]:
    """Writes a random BERT checkpoint folder in Hugging Face layout.

    Args:
        path: Folder to write `config.json`, `model.safetensors` and
            `vocab.txt` into (created if needed).
        vocab_words: Words after the special tokens; a few `##` suffix
            pieces follow them.
        hidden: Hidden size.
        layers: Number of transformer layers.
        heads: Attention heads.
        intermediate: Feed-forward width.
        max_pos: Maximum position embeddings.
        seed: Seed for the random weights.

    Returns:
        The config dict and the tensors written (HF names, float32 weights
        in PyTorch `[out, in]` layout, plus ignorable extras).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = list(dict.fromkeys(SPECIAL_TOKENS + list(vocab_words)
                               + SUFFIX_PIECES))
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = {
        "architectures": ["BertModel"], "model_type": "bert",
        "vocab_size": len(vocab), "hidden_size": hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": intermediate, "max_position_embeddings": max_pos,
        "type_vocab_size": 2, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "layer_norm_eps": 1e-12, "position_embedding_type": "absolute",
        "pad_token_id": 0,
    }
    (path / "config.json").write_text(json.dumps(config, indent=2),
                                      encoding="utf-8")
    rng = np.random.default_rng(seed)

    def rand(*shape: int, scale: float = 0.2) -> np.ndarray:
        # Large enough that attention and GELU act non-linearly.
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    t: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": rand(len(vocab), hidden, scale=1.0),
        "embeddings.position_embeddings.weight": rand(max_pos, hidden),
        "embeddings.token_type_embeddings.weight": rand(2, hidden),
        # Buffers and heads a real checkpoint carries; the converter skips them.
        "embeddings.position_ids": np.arange(max_pos, dtype=np.int64)[None],
        "cls.predictions.bias": rand(len(vocab)),
    }

    def dense(name: str, out_dim: int, in_dim: int) -> None:
        t[f"{name}.weight"] = rand(out_dim, in_dim, scale=1.0 / math.sqrt(in_dim))
        t[f"{name}.bias"] = rand(out_dim, scale=0.1)

    def norm(name: str) -> None:
        t[f"{name}.weight"] = 1.0 + rand(hidden, scale=0.1)
        t[f"{name}.bias"] = rand(hidden, scale=0.1)

    norm("embeddings.LayerNorm")
    for n in range(layers):
        p = f"encoder.layer.{n}"
        for part in ("query", "key", "value"):
            dense(f"{p}.attention.self.{part}", hidden, hidden)
        dense(f"{p}.attention.output.dense", hidden, hidden)
        norm(f"{p}.attention.output.LayerNorm")
        dense(f"{p}.intermediate.dense", intermediate, hidden)
        dense(f"{p}.output.dense", hidden, intermediate)
        norm(f"{p}.output.LayerNorm")
    dense("pooler.dense", hidden, hidden)
    save_file(t, str(path / "model.safetensors"))
    return config, t
