"""ftk: fine-tune TF Hub backbones on your task with one command or one call.

Importing ftk does not import TensorFlow; training, loading and evaluation do.

Example:
    ```python
    import ftk
    result = ftk.run(task="text_classification", data="train.csv", epochs=3)
    ftk.load(result.run_dir).predict(["what a great film"])
    ```
"""

from __future__ import annotations

import os

# tensorflow_hub.KerasLayer is a Keras 2 layer; plugins writing `tf.keras`
# must get Keras 2 too. Only set when the user has not chosen.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ftk.api import (  # noqa: E402
    backbones,
    convert_backbone,
    default_config,
    evaluate,
    export,
    installed_plugins,
    load,
    predict,
    pull_backbone,
    run,
    serve,
    tasks,
    to_tfrecord,
)
from ftk.backbone import Backbone  # noqa: E402
from ftk.converter import Converter  # noqa: E402
from ftk.errors import ConfigError, DataError, FtkError, PluginError  # noqa: E402
from ftk.hookspecs import hookimpl  # noqa: E402
from ftk.hub.pypi import fetch_wheel_files  # noqa: E402
from ftk.options import Option  # noqa: E402
from ftk.preprocessor import Preprocessor, StringPassthrough  # noqa: E402
from ftk.rundir import RunDirectory  # noqa: E402
from ftk.targets import RealSpace, TargetSpace  # noqa: E402
from ftk.task import Examples, Task  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Backbone",
    "ConfigError",
    "Converter",
    "DataError",
    "Examples",
    "FtkError",
    "Option",
    "PluginError",
    "Preprocessor",
    "RealSpace",
    "RunDirectory",
    "StringPassthrough",
    "TargetSpace",
    "Task",
    "backbones",
    "convert_backbone",
    "default_config",
    "evaluate",
    "export",
    "fetch_wheel_files",
    "hookimpl",
    "installed_plugins",
    "load",
    "predict",
    "pull_backbone",
    "run",
    "serve",
    "tasks",
    "to_tfrecord",
]
