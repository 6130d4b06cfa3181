"""The layers hold: the engine knows no task, and test modules stand alone."""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CORE = ROOT / "core"
# Building blocks that plugins use; the engine's modules never import them.
LIBRARY = ("classification", "images", "shapes", "text", "testing")
TASK_WORDS = re.compile(r"(?:^|_)(class|classes|label|labels|image|images|token|tokens|box|boxes|"
                        r"pixel|pixels|vocab)(?:_|$)")


def engine_modules() -> list[Path]:
    return [path for path in sorted(CORE.rglob("*.py"))
            if path.relative_to(CORE).parts[0].removesuffix(".py") not in LIBRARY]


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def task_words(path: Path) -> list[str]:
    """Identifiers naming task concepts (keyword-argument names of calls
    into other libraries, such as matplotlib's `label=`, excepted)."""
    tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline))
    found, depth = [], 0
    for index, token in enumerate(tokens):
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
        following = tokens[index + 1].string if index + 1 < len(tokens) else ""
        if (token.type == tokenize.NAME and not keyword.iskeyword(token.string)
                and TASK_WORDS.search(token.string.lower())
                and not (depth > 0 and following == "=")):
            found.append(f"{path.relative_to(ROOT)}:{token.start[0]} {token.string}")
    return found


def test_the_engine_imports_no_building_block_and_no_plugin():
    for path in engine_modules():
        wrong = sorted(name for name in imported(path)
                       if name.startswith("ftk.plugins")
                       or any(name == f"ftk.{lib}" or name.startswith(f"ftk.{lib}.")
                              for lib in LIBRARY))
        assert not wrong, f"{path.relative_to(ROOT)} imports {', '.join(wrong)}"


def test_the_engine_has_no_task_vocabulary():
    found = [word for path in engine_modules() for word in task_words(path)]
    assert not found, "task words in engine modules:\n" + "\n".join(found)


@pytest.mark.parametrize("path", sorted((ROOT / "tests").rglob("test_*.py")), ids=lambda p: p.name)
def test_test_modules_never_import_one_another(path):
    others = sorted(name for name in imported(path) if name.split(".")[0].startswith("test_"))
    assert not others, f"{path.name} imports {', '.join(others)}; move shared builders to helpers.py"
