"""Sharded TFRecord files of raw examples, for data larger than memory.

`ftk data to-tfrecord` reads a data source with the task's own reader and
writes it as `DIR/data-00000-of-0000N.tfrecord` files plus `DIR/manifest.json`.
Each record is one example: its raw input (a text, or the bytes of an image
file) and its target encoded in the task's target space, so reading needs no
task code. The manifest holds the record count of each file, the target space
(the classes), the target's structure and where the data came from.

`--data DIR` (or a glob of `.tfrecord` files beside their manifest) streams the
records: files are read interleaved, in a seeded order that changes each
epoch, through a bounded shuffle buffer, so memory does not grow with the data.
"""

from __future__ import annotations

import glob
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ftk.errors import DataError

log = logging.getLogger(__name__)

FORMAT = "ftk-tfrecord"
VERSION = 1
MANIFEST = "manifest.json"
# Examples held by a streamed shuffle: enough to mix the interleaved files,
# few enough to bound memory whatever the data's size.
SHUFFLE_BUFFER = 1024
INTERLEAVE = 4


def is_records(path: str) -> bool:
    """Whether `path` names TFRecord data: a folder with an ftk manifest, or
    `.tfrecord` files (a glob)."""
    candidate = Path(path)
    if candidate.is_dir():
        return (candidate / MANIFEST).is_file()
    return path.endswith(".tfrecord") or (any(c in path for c in "*?[")
                                          and ".tfrecord" in path)


# Writing ------------------------------------------------------------------
def write_records(task: Any, examples: Any, output: str | Path, *, shards: int,
                  seed: int, space: Any = None) -> dict[str, Any]:
    """Write `examples` (read by `task`) as `shards` TFRecord files in `output`.

    Targets are encoded in `space` when given (the training records' space,
    for a validation or test set), else in the space of `examples` themselves.

    Examples are shuffled (seeded) before they are dealt into files, so every
    file holds a mix of the classes and any stride through them is a fair
    sample. Written into a staging folder that replaces `output` whole.

    Returns:
        The manifest.
    """
    import tensorflow as tf

    from ftk.atomic import building_dir

    if shards < 1:
        raise DataError(f"--shards must be at least 1. Received: {shards}")
    shards = min(shards, len(examples))
    space = space or task.build_target_space(examples)
    task.space = space
    targets = task.encode_targets(examples)
    structure = _target_structure(targets)
    order = np.random.default_rng(seed).permutation(len(examples))
    names = [f"data-{i:05d}-of-{shards:05d}.tfrecord" for i in range(shards)]
    counts = []
    with building_dir(Path(output)) as staging:
        for index, name in enumerate(names):
            chosen = order[index::shards]
            with tf.io.TFRecordWriter(str(staging / name)) as writer:
                for position in chosen:
                    raw = _raw_bytes(examples.inputs[position], task.file_inputs, examples.source)
                    target = tf.nest.map_structure(lambda leaf: leaf[position], targets)
                    writer.write(_example(raw, target).SerializeToString())
            counts.append(len(chosen))
        manifest = {"format": FORMAT, "version": VERSION, "task": task.name,
                    "source": examples.source, "examples": int(len(examples)),
                    "files": [{"name": n, "examples": int(c)} for n, c in zip(names, counts)],
                    "targets": space.to_json(), "target_structure": structure,
                    "file_inputs": task.file_inputs}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _raw_bytes(raw: Any, file_inputs: bool, source: str) -> bytes:
    if not file_inputs:
        return raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    try:
        return Path(raw).read_bytes()
    except OSError as error:
        raise DataError(f"{source}: cannot read {raw} ({error.strerror or error}).") from None


def _target_structure(targets: Any) -> Any:
    """`{"dtype", "shape"}` of one example's target, or a dict of them by key."""
    if isinstance(targets, Mapping):
        return {key: _target_structure(value) for key, value in targets.items()}
    array = np.asarray(targets)
    return {"dtype": array.dtype.name, "shape": list(array.shape[1:])}


def _example(raw: bytes, target: Any) -> Any:
    import tensorflow as tf

    def feature(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    features = {"input": feature(raw)}
    leaves = target.items() if isinstance(target, Mapping) else [("", target)]
    for key, leaf in leaves:
        serialized = tf.io.serialize_tensor(tf.constant(np.asarray(leaf))).numpy()
        features[f"target/{key}" if key else "target"] = feature(serialized)
    return tf.train.Example(features=tf.train.Features(feature=features))


# Reading ------------------------------------------------------------------
@dataclass(frozen=True)
class RecordShard:
    path: str
    examples: int
    first: int  # the number of the file's first record among all records


class RecordSource:
    """Labelled examples streamed from TFRecord files written by ftk.

    It stands where `ftk.Examples` stands for in-memory data: `len()` is its
    example count (from the manifest), `source` names it. With `held_out`
    True it keeps the records whose number is a multiple of `every`, with
    False all others: how a validation part is carved out without a pass over
    the data.
    """

    def __init__(self, path: str, manifest: Mapping[str, Any], shards: Sequence[RecordShard], *,
                 every: int = 1, held_out: bool | None = None, part: str = ""):
        self.path = path
        self.manifest = manifest
        self.shards = list(shards)
        self.every, self.held_out = every, held_out
        self.source = f"{path} ({part} part)" if part else path

    def __len__(self) -> int:
        return sum(self._kept(shard) for shard in self.shards)

    def _kept(self, shard: RecordShard) -> int:
        if self.held_out is None:
            return shard.examples
        held_out = _multiples(shard.first, shard.first + shard.examples, self.every)
        return held_out if self.held_out else shard.examples - held_out

    def split(self, fraction: float) -> tuple["RecordSource", "RecordSource"]:
        """`(train, validation)`: every `round(1/fraction)`-th record validates."""
        every = max(2, int(round(1 / fraction)))
        return (RecordSource(self.path, self.manifest, self.shards, every=every, held_out=False,
                             part="train"),
                RecordSource(self.path, self.manifest, self.shards, every=every, held_out=True,
                             part="validation"))

    def shares(self, workers: int) -> list[int]:
        """Examples in each worker's share of the files (worker i: files i, i + N, ...)."""
        return [sum(self._kept(shard) for shard in self.shards[worker::workers])
                for worker in range(workers)]

    def check_shardable(self, workers: int) -> None:
        """Each of a job's workers streams a share of the files: it needs one at least."""
        if len(self.shards) < workers:
            raise DataError(
                f"{self.path} has {len(self.shards)} TFRecord file(s), fewer than the job's "
                f"{workers} workers, which each read a share of the files. Write it again with "
                f"`ftk data to-tfrecord ... --shards N`, N a multiple of {workers}.")

    def check_targets(self, space: Any) -> None:
        """The records were encoded in one target space; training needs it to
        be the run's: the same files describing the outputs (`labels.txt`),
        or for a space without such files, the same space."""
        written = type(space).from_json(self.manifest["targets"])
        same = (written.files() == space.files() if space.files()
                else self.manifest["targets"] == space.to_json())
        if not same:
            raise DataError(
                f"{self.path} was written with other targets "
                f"({written.summary() or written.kind}) than the training data has ({space.summary() or space.kind}). Write every split "
                "with `ftk data to-tfrecord` from data with the same classes.")

    def dataset(self, *, shuffle: bool = False, seed: int = 0, workers: int = 1,
                worker: int = 0) -> Any:
        """`(raw input, encoded target)` pairs, streamed.

        With `shuffle`, the file order is drawn anew each epoch (seeded) and
        records pass a bounded shuffle buffer. With several `workers`, this
        worker reads only its share of the files.
        """
        import tensorflow as tf

        shards = self.shards[worker::workers] if workers > 1 else self.shards
        files = tf.data.Dataset.from_tensor_slices(
            ([s.path for s in shards], np.array([s.first for s in shards], np.int64)))
        if shuffle:
            files = files.shuffle(len(shards), seed=seed, reshuffle_each_iteration=True)
        every, held_out = self.every, self.held_out
        parse = self._parser()

        def read(path: Any, first: Any) -> Any:
            records = tf.data.TFRecordDataset(path).enumerate(first)
            if held_out is not None:
                records = records.filter(lambda n, _: tf.equal(n % every, 0) == held_out)
            return records.map(lambda n, record: record)

        dataset = files.interleave(read, cycle_length=min(INTERLEAVE, len(shards)) or 1,
                                   num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if shuffle:
            dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.apply(tf.data.experimental.assert_cardinality(len(self))) \
            if workers == 1 else dataset

    def _parser(self) -> Any:
        import tensorflow as tf

        structure = self.manifest["target_structure"]
        nested = "dtype" not in structure
        leaves = structure.items() if nested else [("", structure)]
        spec = {"input": tf.io.FixedLenFeature([], tf.string)}
        for key, _ in leaves:
            spec[f"target/{key}" if key else "target"] = tf.io.FixedLenFeature([], tf.string)

        def parse(record: Any) -> Any:
            parsed = tf.io.parse_single_example(record, spec)
            decoded = {}
            for key, leaf in leaves:
                tensor = tf.io.parse_tensor(parsed[f"target/{key}" if key else "target"],
                                            tf.as_dtype(leaf["dtype"]))
                decoded[key] = tf.ensure_shape(tensor, leaf["shape"])
            return parsed["input"], (decoded if nested else decoded[""])

        return parse

    def batches(self, batch_size: int) -> Iterator[tuple[list[bytes], Any]]:
        """`(raw inputs, encoded targets)` in batches, as numpy, in record order."""
        import tensorflow as tf

        for inputs, targets in self.dataset().batch(batch_size):
            yield list(inputs.numpy()), tf.nest.map_structure(lambda t: t.numpy(), targets)


def read_records(path: str) -> RecordSource:
    """The records at `path`: a folder holding `manifest.json`, or a glob of
    `.tfrecord` files listed in the manifest beside them.

    Raises:
        DataError: no manifest, a manifest of another format, or files it does
            not list.
    """
    folder = Path(path)
    if folder.is_dir():
        files = sorted(str(p) for p in folder.glob("*.tfrecord"))
    else:
        files = sorted(glob.glob(path))
        if not files:
            raise DataError(f"No TFRecord files match {path}. Check the path given to --data.")
        folder = Path(files[0]).parent
        if any(Path(f).parent != folder for f in files):
            raise DataError(f"{path} matches TFRecord files in several folders; each folder's "
                            "files are described by its own manifest, so read one folder at a "
                            "time.")
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{manifest_path} is missing: ftk reads TFRecord files written by "
                        "`ftk data to-tfrecord`, which writes that manifest beside them.") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{manifest_path} cannot be read as JSON ({error}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{manifest_path} is not an ftk TFRecord manifest (its format is not "
                        f"{FORMAT!r}). Write the data with `ftk data to-tfrecord`.")
    if manifest.get("version") != VERSION:
        raise DataError(f"{manifest_path} has version {manifest.get('version')}; this ftk "
                        f"reads version {VERSION}. Write the data again with this ftk.")
    listed, first = {}, 0
    for entry in manifest["files"]:
        listed[entry["name"]] = RecordShard(str(folder / entry["name"]), entry["examples"], first)
        first += entry["examples"]
    unknown = [f for f in files if Path(f).name not in listed]
    if unknown:
        raise DataError(f"{unknown[0]} is not listed in {manifest_path}; a folder holds the files "
                        "of one `ftk data to-tfrecord` only.")
    missing = [s.path for s in listed.values() if not Path(s.path).is_file()]
    if folder == Path(path) and missing:
        raise DataError(f"{missing[0]} is listed in {manifest_path} but missing. Write the "
                        "data again with `ftk data to-tfrecord`.")
    chosen = [listed[Path(f).name] for f in files]
    return RecordSource(path, manifest, chosen)


def _multiples(start: int, end: int, every: int) -> int:
    """How many multiples of `every` lie in [start, end)."""
    return -(-end // every) - -(-start // every)

