"""Backbone loading, presets and converters."""
