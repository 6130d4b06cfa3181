"""A BERT encoder built from `tf_keras` layers, laid out like TF Hub encoders.

The layers own their weights directly (no nested Dense layers) so that every
variable name is predictable: ``embeddings/...``, ``transformer/layer_<i>/...``
and ``pooler/...``. Freezing policies group variables into blocks by the
``layer_<i>`` part, and the converter finds each variable by this name.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import tensorflow as tf
import tf_keras as keras

# HF `hidden_act` values we can reproduce exactly.
_ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "gelu": lambda x: 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0))),
    "gelu_new": lambda x: 0.5 * x * (1.0 + tf.tanh(
        math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3.0)))),
    "relu": tf.nn.relu,
}
# Same tanh approximation under the newer HF name.
_ACTIVATIONS["gelu_pytorch_tanh"] = _ACTIVATIONS["gelu_new"]
SUPPORTED_ACTIVATIONS = tuple(sorted(_ACTIVATIONS))

# Added to attention scores of padded keys; large enough that softmax gives
# them exactly zero weight in float32, small enough never to overflow.
_MASK_PENALTY = -1e9


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Architecture hyper-parameters, named after HF `config.json` keys."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12


def _initializer() -> keras.initializers.Initializer:
    # Values are overwritten by the checkpoint; BERT's init keeps a freshly
    # built model sane if someone uses it without converting.
    return keras.initializers.TruncatedNormal(stddev=0.02)


def _dropout(x: tf.Tensor, rate: float, training) -> tf.Tensor:
    """Dropout in training only; `training` may be None, a bool or a tensor."""
    # A function, not keras Dropout layers: Keras serialises every sublayer
    # with its own traced functions, which made the SavedModel load 2x slower.
    if not rate or training is None or training is False:
        return x
    if training is True:
        return tf.nn.dropout(x, rate=rate)
    return tf.cond(tf.cast(training, tf.bool),
                   lambda: tf.nn.dropout(x, rate=rate), lambda: tf.identity(x))


def _layer_norm(x: tf.Tensor, gamma: tf.Variable, beta: tf.Variable,
                eps: float) -> tf.Tensor:
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + eps) * gamma + beta


class _OwnWeightsLayer(keras.layers.Layer):
    """Base with helpers that create named dense and layer-norm weights."""

    def _dense(self, name: str, fan_in: int, fan_out: int
               ) -> tuple[tf.Variable, tf.Variable]:
        kernel = self.add_weight(name=f"{name}/kernel", shape=(fan_in, fan_out),
                                 initializer=_initializer())
        bias = self.add_weight(name=f"{name}/bias", shape=(fan_out,),
                               initializer="zeros")
        return kernel, bias

    def _norm(self, name: str, size: int) -> tuple[tf.Variable, tf.Variable]:
        gamma = self.add_weight(name=f"{name}/gamma", shape=(size,),
                                initializer="ones")
        beta = self.add_weight(name=f"{name}/beta", shape=(size,),
                               initializer="zeros")
        return gamma, beta


class BertEmbeddings(_OwnWeightsLayer):
    """Word + absolute position + token type embeddings, then layer norm."""

    def __init__(self, config: BertConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config

    def build(self, input_shape) -> None:
        c = self.config
        self.word_embeddings = self.add_weight(
            name="word_embeddings", shape=(c.vocab_size, c.hidden_size),
            initializer=_initializer())
        self.position_embeddings = self.add_weight(
            name="position_embeddings",
            shape=(c.max_position_embeddings, c.hidden_size),
            initializer=_initializer())
        self.type_embeddings = self.add_weight(
            name="type_embeddings", shape=(c.type_vocab_size, c.hidden_size),
            initializer=_initializer())
        self.gamma, self.beta = self._norm("layer_norm", c.hidden_size)
        super().build(input_shape)

    def call(self, inputs, training=None):
        word_ids, type_ids = inputs
        seq_length = tf.shape(word_ids)[1]
        x = (tf.gather(self.word_embeddings, word_ids)
             + tf.gather(self.type_embeddings, type_ids)
             + self.position_embeddings[tf.newaxis, :seq_length])
        x = _layer_norm(x, self.gamma, self.beta, self.config.layer_norm_eps)
        return _dropout(x, self.config.hidden_dropout_prob, training)


def _project(x: tf.Tensor, weights) -> tf.Tensor:
    """`x @ kernel + bias` over the last axis of a [B, S, H] tensor.

    Done as one 2-D matmul: a rank-3 `tf.matmul` runs as a batched matmul,
    about 2.5 times slower on CPU for these shapes.
    """
    kernel, bias = weights
    shape = tf.shape(x)
    flat = tf.matmul(tf.reshape(x, [-1, kernel.shape[0]]), kernel) + bias
    return tf.reshape(flat, tf.concat([shape[:-1], [kernel.shape[1]]], axis=0))


class TransformerBlock(_OwnWeightsLayer):
    """One post-layer-norm BERT block: self-attention, then a feed-forward."""

    def __init__(self, config: BertConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.activation = _ACTIVATIONS[config.hidden_act]

    def build(self, input_shape) -> None:
        h, i = self.config.hidden_size, self.config.intermediate_size
        self.query = self._dense("attention/query", h, h)
        self.key = self._dense("attention/key", h, h)
        self.value = self._dense("attention/value", h, h)
        self.attention_output = self._dense("attention/output", h, h)
        self.attention_norm = self._norm("attention_layer_norm", h)
        self.intermediate = self._dense("intermediate", h, i)
        self.output_dense = self._dense("output", i, h)
        self.output_norm = self._norm("output_layer_norm", h)
        super().build(input_shape)

    def _heads(self, x: tf.Tensor, weights) -> tf.Tensor:
        """Projects [B, S, H] and splits it into [B, heads, S, head_size]."""
        c = self.config
        batch, seq = tf.shape(x)[0], tf.shape(x)[1]
        y = _project(x, weights)
        head_size = c.hidden_size // c.num_attention_heads
        y = tf.reshape(y, [batch, seq, c.num_attention_heads, head_size])
        return tf.transpose(y, [0, 2, 1, 3])

    def call(self, inputs, training=None):
        x, input_mask = inputs
        c = self.config
        batch, seq = tf.shape(x)[0], tf.shape(x)[1]
        q, k, v = (self._heads(x, w) for w in (self.query, self.key, self.value))
        scores = tf.matmul(q, k, transpose_b=True)
        scores *= 1.0 / math.sqrt(c.hidden_size // c.num_attention_heads)
        # Padded keys get no attention; padded queries still produce outputs
        # (ignored downstream), exactly like HF BERT.
        key_mask = tf.cast(input_mask, scores.dtype)[:, tf.newaxis, tf.newaxis, :]
        scores += (1.0 - key_mask) * _MASK_PENALTY
        probs = _dropout(tf.nn.softmax(scores, axis=-1),
                         c.attention_probs_dropout_prob, training)
        context = tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3])
        context = tf.reshape(context, [batch, seq, c.hidden_size])
        attended = _dropout(_project(context, self.attention_output),
                            c.hidden_dropout_prob, training)
        x = _layer_norm(x + attended, *self.attention_norm, c.layer_norm_eps)
        hidden = self.activation(_project(x, self.intermediate))
        out = _project(hidden, self.output_dense)
        out = _dropout(out, c.hidden_dropout_prob, training)
        return _layer_norm(x + out, *self.output_norm, c.layer_norm_eps)


class Pooler(_OwnWeightsLayer):
    """BERT's pooler: a tanh dense layer on the first ([CLS]) position."""

    def __init__(self, hidden_size: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden_size = hidden_size

    def build(self, input_shape) -> None:
        self.dense = self._dense("dense", self.hidden_size, self.hidden_size)
        super().build(input_shape)

    def call(self, sequence_output):
        return tf.tanh(tf.matmul(sequence_output[:, 0], self.dense[0])
                       + self.dense[1])


class MeanPooling(keras.layers.Layer):
    """Mean over real (mask == 1) positions: sentence-transformers pooling."""

    def call(self, inputs):
        sequence_output, input_mask = inputs
        mask = tf.cast(input_mask, sequence_output.dtype)[:, :, tf.newaxis]
        total = tf.reduce_sum(sequence_output * mask, axis=1)
        # An all-padding row yields zeros instead of NaN.
        count = tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)
        return total / count


def build_bert_encoder(config: BertConfig) -> keras.Model:
    """Builds the functional encoder with TF Hub BERT inputs and outputs.

    Args:
        config: The architecture to build.

    Returns:
        A `tf_keras` Model taking a dict of int32 `[batch, seq]` tensors
        (`input_word_ids`, `input_mask`, `input_type_ids`) and returning a
        dict with `pooled_output`, `sequence_output`, `mean_pooled_output`,
        `default` and `encoder_outputs` (one `[batch, seq, hidden]` per layer).
    """
    inputs = {name: keras.Input(shape=(None,), dtype=tf.int32, name=name)
              for name in ("input_word_ids", "input_mask", "input_type_ids")}
    x = BertEmbeddings(config, name="embeddings")(
        [inputs["input_word_ids"], inputs["input_type_ids"]])
    encoder_outputs = []
    for index in range(config.num_hidden_layers):
        x = TransformerBlock(config, name=f"transformer/layer_{index}")(
            [x, inputs["input_mask"]])
        encoder_outputs.append(x)
    pooled = Pooler(config.hidden_size, name="pooler")(x)
    mean_pooled = MeanPooling(name="mean_pooling")([x, inputs["input_mask"]])
    outputs = {
        "pooled_output": pooled,
        "sequence_output": x,
        "mean_pooled_output": mean_pooled,
        "default": pooled,
        "encoder_outputs": encoder_outputs,
    }
    return keras.Model(inputs=inputs, outputs=outputs, name="bert_encoder")
