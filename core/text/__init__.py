"""Building blocks for text tasks: reading text tables with line-numbered
errors (`ftk.text.reading`), the tf.hub text preprocessors
(`ftk.text.preprocessors`) and pooling of encoder outputs (`ftk.text.pooling`).

Plugins use these; the engine never imports them. Only `reading` is safe to
import while registering a plugin (the others import TensorFlow).
"""
