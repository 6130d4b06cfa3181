"""Running the CLI in-process, as a user would type it."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from ftk.cli import cli


def ftk_cli(*args: Any) -> Any:
    """Invoke `ftk ARGS...`; returns click's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def json_out(result: Any) -> Any:
    return json.loads(result.stdout)
