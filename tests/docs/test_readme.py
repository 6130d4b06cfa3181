"""The README's commands are the ones CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _code_line_after(marker: str, text: str) -> str:
    block = text.split(marker, 1)[1]
    return re.search(r"```bash\n(.+?)\n```", block, re.S).group(1).strip()


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = _code_line_after("<!-- test-command", readme)
    assert command.endswith("python -m pytest") and "\n" not in command
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_readme_opens_with_the_quickstart():
    readme = (ROOT / "README.md").read_text()
    command = _code_line_after("## Quickstart", readme)
    assert command.endswith("ftk run --task text_classification")
    assert readme.index("## Quickstart") < readme.index("## Run the tests")
