"""Property-based tests of the image readers: whatever a folder tree, an image
CSV or an image file holds (odd names, symlink loops, links out of the tree,
damaged or lying headers), ftk gives a result or an `ftk.FtkError`, never
another exception, and what it accepts it can decode."""

from __future__ import annotations

import copy
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import ftk
from ftk import images
from ftk.config import default_config
from ftk.plugins.image_classification import ImageClassification
from ftk.plugins.image_classification.reader import read_image_data
from helpers import png_declaring

EXAMPLES = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
CONFIG = default_config(ImageClassification.defaults)
names = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
                min_size=1, max_size=10).filter(lambda name: name not in (".", ".."))
KINDS = ["png", "jpg", "gif", "bmp", "garbage", "empty", "text", "bomb", "loop", "dangling",
         "up", "outside"]


def encoded(form: str, size=(12, 9)) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", size, (200, 40, 30))
    (image.convert("P") if form == "gif" else image).save(buffer, format=form.upper().replace(
        "JPG", "JPEG"))
    return buffer.getvalue()


def plant(folder: Path, name: str, kind: str, noise: bytes) -> None:
    """One entry of a class folder, of the given kind."""
    suffix = {"png": ".png", "jpg": ".jpg", "gif": ".gif", "bmp": ".bmp", "text": ".txt"}.get(
        kind, ".png")
    path = folder / f"{name}{suffix}"
    if path.exists() or path.is_symlink():
        return
    if kind in ("png", "jpg", "gif", "bmp"):
        path.write_bytes(encoded(kind))
    elif kind == "garbage":
        path.write_bytes(noise)
    elif kind == "empty":
        path.touch()
    elif kind == "text":
        path.write_text("not an image")
    elif kind == "bomb":
        path.write_bytes(png_declaring(60_000, 60_000))
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "dangling":
        path.symlink_to(folder / "nowhere")
    elif kind == "up":
        path.symlink_to("..")
    else:  # a link to an image outside the tree
        outside = folder.parents[1] / "outside.png"
        if not outside.exists():
            outside.write_bytes(encoded("png"))
        path.symlink_to(outside)


@EXAMPLES
@given(st.lists(st.tuples(names, names, st.sampled_from(KINDS), st.binary(max_size=40)),
                min_size=1, max_size=8),
       st.booleans(), st.sampled_from([None, "loop", "up"]))
def test_any_class_folder_tree_reads_or_is_a_data_error(entries, skip_bad, class_link):
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "data"
        root.mkdir()
        for class_name, name, kind, noise in entries:
            folder = root / class_name
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                continue
            folder.mkdir(exist_ok=True)
            plant(folder, name, kind, noise)
        if class_link == "loop":  # a class folder that is a link to itself
            (root / "loop").symlink_to("loop")
        elif class_link == "up":  # a class folder that is a link to the tree's own root
            (root / "up").symlink_to(".")
        config = copy.deepcopy(CONFIG)
        config["data"]["skip_bad_files"] = skip_bad
        try:
            examples = read_image_data(str(root), config)
        except ftk.DataError:
            return
        assert len(examples.inputs) == len(examples.targets) > 0
        assert_decodable(examples.inputs)


@EXAMPLES
@given(st.binary(max_size=300))
def test_any_image_csv_reads_or_is_a_data_error(raw):
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "images.csv"
        path.write_bytes(raw)
        (Path(scratch) / "a.png").write_bytes(encoded("png"))
        try:
            examples = read_image_data(str(path), copy.deepcopy(CONFIG))
        except ftk.DataError:
            return
        assert_decodable(examples.inputs)


damage = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["png", "jpg", "gif", "bmp"]), damage, st.floats(0.05, 1))
def test_any_damaged_image_is_accepted_whole_or_named(form, flips, keep):
    """A file `checked_image` lets through must decode in TensorFlow too, or
    `ftk predict` would fail in the graph, naming no file."""
    data = bytearray(encoded(form))
    for where, value in flips:
        data[int(where * len(data))] = value
    data = bytes(data[:max(1, int(keep * len(data)))])
    try:
        images.checked_image(data, "input.png")
    except ftk.DataError as error:
        assert "input.png" in str(error)
        return
    import tensorflow as tf

    decoded = images.decode_image(tf.constant(data))
    assert decoded.shape[0] > 0 and decoded.shape[1] > 0


def assert_decodable(paths) -> None:
    import tensorflow as tf

    for path in paths:
        assert images.decode_image(tf.io.read_file(path)).shape[-1] == 3, path


@pytest.mark.parametrize("width, height", [(60_000, 60_000), (1, 10**9), (2**31 - 1, 2**31 - 1)])
def test_a_lying_header_is_refused_without_decoding(width, height):
    with pytest.raises(ftk.DataError, match="too large to decode safely"):
        images.checked_image(png_declaring(width, height), "bomb.png")
