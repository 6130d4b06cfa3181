"""A third-party ftk plugin: the `hashed-bow` text-embedding backbone.

Feature hashing turns a text into a fixed-size vector with no training and no
download: each lower-cased word is hashed to one of `DIM` slots with a sign,
and the vector is L2-normalised. It is a fast, honest baseline to compare a
pretrained encoder against, and it shows the whole plugin contract: one
module, one entry point, a preset whose `pull` writes a Hub-format SavedModel.
"""

from __future__ import annotations

from pathlib import Path

import ftk

__version__ = "0.1.0"
DIM = 1024


def build_saved_model(folder: Path) -> None:
    """Write the embedding as `folder/encoder`, following the tf.hub text
    embedding convention: `__call__(strings[B]) -> float32[B, DIM]`."""
    import tensorflow as tf

    class HashedBagOfWords(tf.__internal__.tracking.AutoTrackable):
        def __init__(self) -> None:
            self.variables = []
            self.trainable_variables = []
            self.regularization_losses = []

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, strings):
            words = tf.strings.split(tf.strings.regex_replace(tf.strings.lower(strings), r"[^\w\s]", " "))
            slots = tf.strings.to_hash_bucket_fast(words, DIM)
            signs = tf.cast(tf.strings.to_hash_bucket_fast(words + "#sign", 2), tf.float32) * 2 - 1
            rows = tf.cast(words.value_rowids(), tf.int64)
            counts = tf.scatter_nd(tf.stack([rows, slots.flat_values], axis=1), signs.flat_values,
                                   tf.stack([tf.shape(strings, out_type=tf.int64)[0], DIM]))
            return tf.math.l2_normalize(counts, axis=1)

    tf.saved_model.save(HashedBagOfWords(), str(folder / "encoder"))


@ftk.hookimpl
def ftk_register_backbones(register):
    register(ftk.Backbone(
        name="hashed-bow",
        kind="text_embedding",
        pull=build_saved_model,
        description=f"feature-hashing bag of words, {DIM} dimensions, no download",
        license="Apache-2.0",
    ))
