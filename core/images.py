"""Image inputs shared by every image task: decoding, checking and resizing.

Images travel as file paths through tf.data (read and decoded in parallel, so
no Python runs per image) and as encoded bytes or float pixels through an
export. Pixels are float32 in [0, 1], the tf.hub image convention.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ftk.errors import ConfigError, DataError, FtkError, first_line
from ftk.preprocessor import Preprocessor
from ftk.task import input_list

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
DEFAULT_IMAGE_SIZE = 224
# Decoded as float32 RGB, 40 megapixels take 480 MB: past that an image is far
# larger than any backbone needs, or a decompression bomb (a small file that
# declares a huge size). Pillow refuses past its own limit whatever ours is.
MAX_IMAGE_PIXELS = 40_000_000
PILLOW_PIXEL_LIMIT = 2 * 89_478_485

# Keys every image task offers, merged into its own defaults.
IMAGE_CONFIG: dict[str, Any] = {
    "data": {"skip_bad_files": False, "max_image_pixels": MAX_IMAGE_PIXELS},
    "backbone": {"image_size": None},
}
IMAGE_TYPES: dict[str, Any] = {"backbone.image_size": int, "data.max_image_pixels": int}
log = logging.getLogger(__name__)


def check_image_config(config: Mapping[str, Any]) -> None:
    """Value checks of the image keys every image task offers."""
    from ftk.config import require

    require(config, "backbone.image_size", lambda v: v is None or v >= 8, "at least 8 (or null)")
    require(config, "data.max_image_pixels", lambda v: 1 <= v <= PILLOW_PIXEL_LIMIT,
            f"from 1 to {PILLOW_PIXEL_LIMIT} (Pillow's own limit)")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def decode_image(encoded: Any) -> Any:
    """Encoded JPEG/PNG/BMP/GIF bytes to float32 RGB `[H, W, 3]` in [0, 1].

    Grayscale gains channels, RGBA loses alpha, a GIF gives its first frame.
    """
    import tensorflow as tf

    image = tf.io.decode_image(encoded, channels=3, dtype=tf.float32, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize(images: Any, size: int) -> Any:
    """Resize `[H, W, 3]` or `[B, H, W, 3]` to `size` x `size`, staying in [0, 1]."""
    import tensorflow as tf

    resized = tf.image.resize(images, [size, size], method="bilinear", antialias=True)
    return tf.clip_by_value(resized, 0.0, 1.0)


def check_images(paths: Sequence[str], *, skip_bad: bool, source: str,
                 max_pixels: int = MAX_IMAGE_PIXELS) -> list[int]:
    """Indices of `paths` that decode; a bad one is an error unless `skip_bad`.

    Every header is read first, and an image declaring more than `max_pixels`
    is refused before it is decoded. The others are decoded once, in parallel
    inside tf.data, so a corrupt file is named before training rather than
    failing an epoch half-way.
    """
    import tensorflow as tf

    if not paths:
        return []
    sizes = {i: declared_size(path) for i, path in enumerate(paths)}
    huge = [i for i, size in sizes.items() if size and size[0] * size[1] > max_pixels]
    if huge and not skip_bad:
        shown = "\n  ".join(f"{paths[i]} ({_size_text(sizes[i])})" for i in huge[:5])
        more = f"\n  ... and {len(huge) - 5} more" if len(huge) > 5 else ""
        raise DataError(
            f"{source}: {len(huge)} image(s) declare more than data.max_image_pixels "
            f"({max_pixels}) pixels, too large to decode safely (a decompression bomb, or a "
            f"photo far above the backbone's input size):\n  {shown}{more}\nDownscale them, "
            "raise data.max_image_pixels, or set data.skip_bad_files: true to skip them."
        )
    if huge:
        log.warning(f"Skipped {len(huge)} image(s) over data.max_image_pixels in {source} "
                    "(data.skip_bad_files).")

    def size_of(index: Any, path: Any) -> Any:
        return index, tf.shape(decode_image(tf.io.read_file(path)))[:2]

    candidates = [i for i in range(len(paths)) if i not in set(huge)]
    dataset = (tf.data.Dataset.from_tensor_slices(
        (tf.constant(candidates, tf.int64), tf.constant([paths[i] for i in candidates], tf.string)))
        .map(size_of, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors())
    readable = {int(index) for index, shape in dataset.as_numpy_iterator() if min(shape) > 0}
    bad = [i for i in candidates if i not in readable]
    if bad and not skip_bad:
        shown = "\n  ".join(paths[i] for i in bad[:5])
        more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DataError(
            f"{source}: {len(bad)} file(s) cannot be decoded as JPEG, PNG, BMP or GIF "
            f"(corrupt or not an image):\n  {shown}{more}\nRemove or replace them, or set "
            "data.skip_bad_files: true to skip them."
        )
    if bad:
        log.warning(f"Skipped {len(bad)} unreadable image(s) in {source} (data.skip_bad_files).")
    if not readable:
        raise DataError(f"{source}: none of its {len(paths)} image(s) can be used ({len(bad)} "
                        f"cannot be decoded, {len(huge)} are too large). Check the data.")
    return [i for i in range(len(paths)) if i in readable]


def _size_text(size: tuple[int, int]) -> str:
    if size == _BEYOND_PILLOW:
        return f"more than {PILLOW_PIXEL_LIMIT} pixels, Pillow's own limit"
    return f"{size[0]} x {size[1]}"


# What `declared_size` says of a header past Pillow's limit (which hides the size).
_BEYOND_PILLOW = (PILLOW_PIXEL_LIMIT + 1, 1)


def declared_size(path: str) -> tuple[int, int] | None:
    """The (width, height) an image file's header declares, read without
    decoding; None when Pillow cannot tell (TensorFlow's decoder then judges).
    Past Pillow's own limit, `_BEYOND_PILLOW`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _quiet_pillow(), Image.open(path) as image:
            return image.size
    except Image.DecompressionBombError:
        return _BEYOND_PILLOW
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


@contextmanager
def _quiet_pillow() -> Iterator[None]:
    """Silence Pillow's own decompression-bomb warning: ftk's limit decides."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def image_paths(value: str) -> list[str]:
    """What `ftk predict` means by one argument of an image task: an image
    file, or a folder whose images (searched recursively, sorted) are taken."""
    path = Path(value)
    if path.is_dir():
        return [str(p) for p in sorted(path.rglob("*")) if p.is_file() and is_image_file(p)]
    if path.is_file():
        return [str(path)]
    raise DataError(f"{value} is not an image file or a folder of images.")


def read_image_bytes(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> bytes:
    """A file's encoded bytes, with an error naming it when it is missing, is
    no image or declares more than `max_pixels` (so one bad file among many is
    named, not a failed batch)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Image file {path} does not exist.")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"Cannot read image file {path}: {error.strerror or error}.") from None
    return checked_image(data, str(path), max_pixels)


def checked_image(data: bytes, name: str, max_pixels: int = MAX_IMAGE_PIXELS) -> bytes:
    """`data` when it is an image of at most `max_pixels` that TensorFlow
    decodes; else a DataError naming `name`.

    The size comes from the header (Pillow), before anything is decoded. The
    decoding check is TensorFlow's own decoder, the one the export runs:
    Pillow accepts some truncated files that it refuses.
    """
    import io

    import tensorflow as tf
    from PIL import Image, UnidentifiedImageError

    try:
        with _quiet_pillow(), Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError as error:
        raise DataError(f"{name} is too large to decode safely ({error}). Downscale it.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{name} cannot be decoded as a JPEG, PNG, BMP or GIF image "
                        f"({type(error).__name__}: {error}). Replace or remove it.") from None
    if width * height > max_pixels:
        raise DataError(f"{name} declares {width} x {height} pixels, more than "
                        f"data.max_image_pixels ({max_pixels}): too large to decode safely. "
                        "Downscale it, or raise data.max_image_pixels.")
    try:
        decode_image(tf.constant(data))
    except tf.errors.OpError as error:
        raise DataError(f"{name} cannot be decoded as a JPEG, PNG, BMP or GIF image "
                        f"({first_line(error)}). Replace or remove it.") from None
    return data


def image_size(backbone: Any, config: Mapping[str, Any]) -> int:
    """The side length images are resized to for `backbone`.

    `backbone.image_size` wins; else the preset's metadata; else the size fixed
    in the SavedModel's call signature; else 224, the usual ImageNet size.
    """
    configured = config["backbone"]["image_size"]
    if configured is None and backbone.metadata.get("image_size"):
        return int(backbone.metadata["image_size"])
    fixed = _signature_size(backbone)
    if configured is not None:
        if configured < 8:
            raise ConfigError(f"backbone.image_size must be at least 8. Received: {configured}")
        if fixed and fixed != configured:
            raise ConfigError(
                f"backbone.image_size is {configured}, but backbone {backbone.name!r} only "
                f"takes {fixed}x{fixed} images. Remove the key or set it to {fixed}."
            )
        return int(configured)
    return int(fixed or DEFAULT_IMAGE_SIZE)


def _signature_size(backbone: Any) -> int | None:
    import tensorflow as tf

    from ftk.hub.resolve import call_functions

    for function in call_functions(backbone.saved_model):
        args, _ = function.structured_input_signature
        specs = tf.nest.flatten(args[0] if args else None)
        if specs and specs[0].shape.rank == 4:
            height, width = specs[0].shape[1:3]
            if height is not None and height == width:
                return int(height)
    return None


class ImagePreprocessor(Preprocessor):
    """Turns image inputs into backbone-sized float pixels.

    Used three ways: `load_example` decodes a file inside tf.data (with the
    task's train-time augmentation), `__call__` decodes a batch of encoded
    images in the exported model, and the `pixels` input form resizes a float
    batch for the export's `serving_pixels` signature. Tasks subclass it to
    add augmentation (`augment`), and say whether they do (`augmentation`).
    """

    per_example = True

    def __init__(self, size: int, augmentation: Mapping[str, Any] | None = None):
        self.size = size
        self.augmentation = augmentation

    @property
    def augments(self) -> bool:  # type: ignore[override]
        return self.augmentation is not None

    def __call__(self, encoded: Any) -> Any:
        import tensorflow as tf

        return tf.map_fn(lambda data: resize(decode_image(data), self.size),
                         tf.reshape(encoded, [-1]),
                         fn_output_signature=tf.TensorSpec([self.size, self.size, 3], tf.float32))

    def from_pixels(self, images: Any) -> Any:
        return resize(images, self.size)

    def from_resized(self, images: Any) -> Any:
        """Features of pixels already resized to the model's size (the TFLite form)."""
        return images

    def extra_inputs(self) -> dict[str, tuple[Any, Callable[[Any], Any]]]:
        import tensorflow as tf

        # TFLite has no kernel for antialiased resizing, so its form takes
        # pixels resized outside, as phone image pipelines do anyway.
        return {"pixels": (tf.TensorSpec([None, None, None, 3], tf.float32, name="images"),
                           self.from_pixels),
                "tflite": (tf.TensorSpec([None, self.size, self.size, 3], tf.float32,
                                         name="images"), self.from_resized)}

    def tflite_input(self) -> tuple[str, dict[str, Any]]:
        return "tflite", {
            "images": f"float32 RGB in [0, 1], [batch, {self.size}, {self.size}, 3]: each "
                      f"image resized to {self.size}x{self.size} first (bilinear, antialiased)",
            "size": self.size}

    def load_example(self, encoded: Any, target: Any, seed: Any, training: bool) -> tuple[Any, Any]:
        """Decode one image file's bytes; `seed` ([2] int64) drives augmentation."""
        image = decode_image(encoded)
        if training:
            return self.augment(image, target, seed)
        return resize(image, self.size), target

    def augment(self, image: Any, target: Any, seed: Any) -> tuple[Any, Any]:
        """Train-time transform of one decoded image; none by default."""
        return resize(image, self.size), target


def prediction_batches(inputs: Any, batch_size: int,
                       max_pixels: int = MAX_IMAGE_PIXELS) -> Iterator[tuple[str, Any]]:
    """Image tasks' `Task.prediction_batches`: file paths and encoded bytes go
    in batches to `serving_default`, each array alone to `serving_pixels`.
    Each file or byte string is checked first (`checked_image`)."""
    items = input_list(inputs)
    start = 0
    while start < len(items):
        if isinstance(items[start], np.ndarray):
            yield "pixels", pixels(items[start])[None]
            start += 1
            continue
        end = start
        while end < len(items) and end - start < batch_size and not isinstance(items[end], np.ndarray):
            end += 1
        yield "", [checked_image(item, "An encoded image", max_pixels) if isinstance(item, bytes)
                   else read_image_bytes(item, max_pixels) for item in items[start:end]]
        start = end


def pixel_batches(inputs: Any, size: int, batch_size: int,
                  max_pixels: int = MAX_IMAGE_PIXELS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Image tasks' `Task.tflite_batches`: inputs decoded and resized as the
    export's `serving_default` does it, as float32 `[n, size, size, 3]`
    batches, each with the images' own `[n, 2]` heights and widths."""
    import tensorflow as tf

    items = input_list(inputs)
    for start in range(0, len(items), batch_size):
        images, sizes = [], []
        for item in items[start:start + batch_size]:
            if isinstance(item, np.ndarray):
                image = tf.constant(pixels(item))
            else:
                data = (checked_image(item, "An encoded image", max_pixels)
                        if isinstance(item, bytes) else read_image_bytes(item, max_pixels))
                image = decode_image(tf.constant(data))
            sizes.append(image.shape[:2])
            images.append(resize(image, size).numpy())
        yield np.stack(images), np.asarray(sizes, np.float32)


def pixels(array: np.ndarray) -> np.ndarray:
    """An image array as float32 `[H, W, 3]` in [0, 1]."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise FtkError(f"An image array must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]. "
                       f"Received shape {array.shape}.")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    array = array[..., :3]
    if np.issubdtype(array.dtype, np.integer):
        return (array / 255.0).astype(np.float32)
    return array.astype(np.float32)
