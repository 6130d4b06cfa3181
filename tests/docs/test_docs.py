"""The docs cannot fall behind the code: hooks, config keys, commands, presets."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

import click
import pytest

import ftk
from ftk import hookspecs
from ftk.cli import cli

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
TESTS = ROOT / "tests"
# First cell of a Markdown table row: | `section.key` | ...
TABLE_KEY = re.compile(r"^\|\s*`([A-Za-z0-9_.]+)`\s*\|", re.MULTILINE)


@pytest.fixture(autouse=True)
def builtins_only(monkeypatch):
    """Document ftk's own tasks and presets, whatever else is installed."""
    monkeypatch.setenv("FTK_DISABLE_PLUGIN_AUTOLOAD", "1")


def read_doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def hook_specs() -> dict[str, Any]:
    return {name: function for name, function in vars(hookspecs).items()
            if name.startswith("ftk_") and inspect.isfunction(function)}


def hook_signature(function: Any) -> str:
    """`ftk_register_tasks(register)`: the name and argument names, as documented."""
    return f"{function.__name__}({', '.join(inspect.signature(function).parameters)})"


def config_keys(config: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of every leaf; list- and dict-valued keys count as leaves."""
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from config_keys(value, f"{dotted}.")
        else:
            yield dotted


def all_config_keys() -> set[str]:
    return {key for task in ftk.tasks() for key in config_keys(ftk.default_config(task["task"]))}


def all_sections() -> set[str]:
    return {section for task in ftk.tasks()
            for section, value in ftk.default_config(task["task"]).items() if isinstance(value, dict)}


def command_names(group: click.Group, prefix: str = "ftk") -> Iterator[str]:
    for name, command in group.commands.items():
        yield f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from command_names(command, f"{prefix} {name}")


def test_hookspecs_exist():
    assert {"ftk_register_tasks", "ftk_register_backbones", "ftk_register_commands"} <= set(hook_specs())


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_every_hook_is_documented_with_its_signature(name):
    signature = hook_signature(hook_specs()[name])
    assert signature in read_doc("plugins.md"), f"docs/plugins.md lacks the hook signature {signature}"


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_every_hook_has_a_test_named_after_it(name):
    wanted = f"def test_{name}("
    found = [path.name for path in TESTS.rglob("test_*.py")
             if wanted in path.read_text(encoding="utf-8")]
    assert found, f"no test named test_{name} under tests/"


def test_every_config_key_is_documented():
    text = read_doc("config.md")
    missing = sorted(key for key in all_config_keys() if f"`{key}`" not in text)
    assert not missing, f"docs/config.md does not document: {', '.join(missing)}"


def test_every_documented_config_key_exists():
    keys = all_config_keys()
    documented = TABLE_KEY.findall(read_doc("config.md"))
    assert documented, "docs/config.md has no key tables"
    unknown = sorted(key for key in documented if key not in keys)
    assert not unknown, f"docs/config.md documents keys the config lacks: {', '.join(unknown)}"


def test_config_tables_follow_the_sections():
    """Each documented key sits under its section's heading, in a table."""
    text = read_doc("config.md")
    for section in all_sections():
        assert re.search(rf"^### {re.escape(section)}$", text, re.MULTILINE), \
            f"docs/config.md has no '### {section}' table"


def test_every_command_is_in_the_guide():
    text = read_doc("guide.md")
    names = list(command_names(cli))
    assert "ftk backbones list" in names
    missing = [name for name in names if name not in text]
    assert not missing, f"docs/guide.md does not mention: {', '.join(missing)}"


def test_every_backbone_preset_is_documented():
    text = read_doc("backbones.md")
    presets = [backbone["name"] for backbone in ftk.backbones()]
    assert presets
    missing = [name for name in presets if f"`{name}`" not in text]
    assert not missing, f"docs/backbones.md does not list: {', '.join(missing)}"


def test_the_design_note_stays_short():
    assert len(read_doc("design.md").splitlines()) <= 150
