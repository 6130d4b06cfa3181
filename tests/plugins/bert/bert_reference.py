"""Test helpers: a plain numpy BERT forward pass and a tiny checkpoint writer.

The forward pass works on Hugging Face tensor names and PyTorch layouts
directly, sharing no code with `ftk.plugins.bert`, so agreement between the two
checks the converter's weight mapping as well as the TF model.
"""

from __future__ import annotations

import math

import numpy as np


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
