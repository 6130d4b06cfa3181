"""The hand-written fine-tuning a TF Hub tutorial reader would write, timed.

It follows "Transfer learning with TensorFlow Hub" (images) and "Classify
text with BERT" (text): a hub.KerasLayer backbone, one Dense layer, AdamW,
`fit` with validation every epoch, then `evaluate` on the test split.

Run:
    python benchmarks/baseline.py image --train DIR --validation DIR --test DIR \
        --encoder SAVED_MODEL [--trainable] [--epochs 10] [--learning-rate 5e-3]
    python benchmarks/baseline.py text --train CSV --validation CSV --test CSV \
        --encoder SAVED_MODEL --preprocessor SAVED_MODEL [...]

The last line printed is JSON: total and per-epoch wall seconds, test
accuracy and peak memory (see common.print_result).
"""

from __future__ import annotations

import argparse
import csv
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tensorflow_hub as hub  # noqa: E402
import tensorflow_text  # noqa: E402,F401  (registers the preprocessor's ops)
import tf_keras  # noqa: E402

from common import print_result  # noqa: E402

BATCH_SIZE = 32
IMAGE_SIZE = (224, 224)
AUTOTUNE = tf.data.AUTOTUNE


class EpochClock(tf_keras.callbacks.Callback):
    """Wall-clock time at the start of training and at the end of each epoch."""

    def on_train_begin(self, logs=None):
        self.times = [time.perf_counter()]

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter())


def image_data(folder, shuffle, seed):
    data = tf_keras.utils.image_dataset_from_directory(
        folder, image_size=IMAGE_SIZE, batch_size=BATCH_SIZE, shuffle=shuffle, seed=seed)
    classes = data.class_names
    rescale = tf_keras.layers.Rescaling(1.0 / 255)
    data = data.map(lambda images, labels: (rescale(images), labels))
    return data.cache().prefetch(AUTOTUNE), classes


def image_model(encoder, trainable, num_classes):
    return tf_keras.Sequential([
        hub.KerasLayer(encoder, trainable=trainable, output_key="default",
                       input_shape=IMAGE_SIZE + (3,)),
        tf_keras.layers.Dense(num_classes),
    ])


def text_data(path, classes, shuffle, seed):
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    classes = classes or sorted({row["label"] for row in rows})
    texts = [row["text"] for row in rows]
    labels = [classes.index(row["label"]) for row in rows]
    data = tf.data.Dataset.from_tensor_slices((texts, labels))
    if shuffle:
        data = data.shuffle(len(texts), seed=seed)
    return data.batch(BATCH_SIZE).prefetch(AUTOTUNE), classes


def text_model(encoder, preprocessor, trainable, num_classes):
    # The preprocessor returns a dict of token tensors, which Sequential refuses.
    text_input = tf_keras.layers.Input(shape=(), dtype=tf.string)
    encoder_inputs = hub.KerasLayer(preprocessor)(text_input)
    outputs = hub.KerasLayer(encoder, trainable=trainable)(encoder_inputs)
    logits = tf_keras.layers.Dense(num_classes)(outputs["mean_pooled_output"])
    return tf_keras.Model(text_input, logits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=("image", "text"))
    for split in ("train", "validation", "test"):
        parser.add_argument(f"--{split}", required=True)
    parser.add_argument("--encoder", required=True, help="backbone SavedModel folder")
    parser.add_argument("--preprocessor", help="text preprocessor SavedModel folder")
    parser.add_argument("--trainable", action="store_true")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=42, help="initialisation and shuffling")
    args = parser.parse_args()

    start = time.perf_counter()
    tf_keras.utils.set_random_seed(args.seed)
    if args.task == "image":
        train, classes = image_data(args.train, shuffle=True, seed=args.seed)
        validation, _ = image_data(args.validation, shuffle=False, seed=args.seed)
        test, _ = image_data(args.test, shuffle=False, seed=args.seed)
        model = image_model(args.encoder, args.trainable, len(classes))
    else:
        train, classes = text_data(args.train, None, shuffle=True, seed=args.seed)
        validation, _ = text_data(args.validation, classes, shuffle=False, seed=args.seed)
        test, _ = text_data(args.test, classes, shuffle=False, seed=args.seed)
        model = text_model(args.encoder, args.preprocessor, args.trainable, len(classes))

    model.compile(
        optimizer=tf_keras.optimizers.AdamW(learning_rate=args.learning_rate, weight_decay=0.01),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    clock = EpochClock()
    model.fit(train, validation_data=validation, epochs=args.epochs, callbacks=[clock], verbose=2)
    _, accuracy = model.evaluate(test, verbose=0)
    total = time.perf_counter() - start

    epochs = [later - earlier for earlier, later in zip(clock.times, clock.times[1:])]
    print_result({"total_seconds": total, "epoch_seconds": epochs, "accuracy": accuracy})


if __name__ == "__main__":
    main()
