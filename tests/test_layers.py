"""The house rule, read from the imports: layers follow the data and nothing runs back up.

``core`` (with ``rules``) is the pure ground floor; ``books`` and ``store`` stand on it and
not on each other; the write stage (``ingest``, ``commit``) on those; the commands (``post``,
``close``, ``reconcile``, ``reports``) on top, never importing each other; ``cli`` only wires.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS_MAX = 8
# Top-level modules the pure ground floor may not import: no store, no files, no clock.
IMPURE = {"sqlite3", "sqlite_utils", "beancount", "beanquery", "click", "os", "time", "shutil"}

# Each group and the groups it may import (besides itself).
ALLOWED = {
    "core": {"rules"},
    "rules": {"core"},
    "books": {"core"},
    "store": {"core"},
    "reading": {"core", "rules", "store"},
    "ingest": {"core", "rules", "books", "store", "reading"},
    "commit": {"core", "rules", "books", "store"},
    "derive": {"core", "rules", "store"},
    "history": {"core", "rules", "books", "store"},
    "worker": {"core", "rules", "store", "reading", "derive"},
    "post": {"core", "rules", "books", "store", "ingest", "commit", "derive", "worker", "history"},
    "close": {"core", "rules", "books", "store", "commit", "history", "reconcile"},
    "reconcile": {"core", "rules", "books", "store"},
    "reports": {"core", "rules", "books", "store", "commit"},
    "trace": {"core", "rules", "books", "store", "commit"},
    "finance": {"core", "rules", "books", "store", "commit"},
    "replay": {"core", "rules", "books", "store", "commit"},
    "runs": {"core", "rules", "books", "store", "commit"},
    "cli": {
        "core",
        "rules",
        "commit",
        "post",
        "close",
        "reconcile",
        "reports",
        "trace",
        "finance",
        "replay",
        "runs",
    },  # fmt: skip
    "__main__": {"cli"},
    "__init__": set(),
}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, with rules/ installed as ledger_engine.rules."""
    files = {}
    tops = ((ROOT / "ledger_engine", "ledger_engine"), (ROOT / "rules", "ledger_engine.rules"))
    for top, package in tops:
        for path in sorted(top.rglob("*.py")):
            parts = list(path.relative_to(top).with_suffix("").parts)
            if parts[-1] == "__init__" and len(parts) > 1:
                parts.pop()
            elif parts == ["__init__"]:
                parts = []
            files[".".join([package, *parts])] = path
    return files


FILES = module_files()
# Packages whose __init__ holds only a docstring: importing through them is no edge.
PACKAGES = {"ledger_engine", "ledger_engine.core", "ledger_engine.books", "ledger_engine.store"}


def imports_of(module: str) -> set[str]:
    """The modules of the project that ``module`` imports (absolute imports only)."""
    tree = ast.parse(FILES[module].read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{module}: relative import"
            # `from package import module` imports the module; `from module import name`
            # the module itself.
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in FILES
                else node.module
                for alias in node.names
            ]
        found.update(name for name in names if name in FILES and name not in PACKAGES)
    return found


def external_imports_of(module: str) -> set[str]:
    tree = ast.parse(FILES[module].read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found - {"ledger_engine"}


def group_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1]


@functools.cache
def floor(module: str, trail: tuple[str, ...] = ()) -> int:
    assert module not in trail, f"import cycle: {' -> '.join((*trail, module))}"
    below = [floor(other, (*trail, module)) for other in imports_of(module)]
    return 1 + max(below, default=0)


def test_every_group_is_known():
    assert {group_of(module) for module in FILES} <= set(ALLOWED)


@pytest.mark.parametrize("module", sorted(FILES))
def test_imports_run_only_downward(module):
    group = group_of(module)
    for imported in imports_of(module):
        other = group_of(imported)
        assert other == group or other in ALLOWED[group], f"{module} imports {imported}"


@pytest.mark.parametrize("module", sorted(m for m in FILES if group_of(m) in ("core", "rules")))
def test_the_ground_floor_is_pure(module):
    assert not external_imports_of(module) & IMPURE, module


def test_no_cycles_and_at_most_eight_layers():
    floors = {module: floor(module) for module in FILES}
    assert max(floors.values()) <= LAYERS_MAX, sorted(floors.items(), key=lambda kv: kv[1])


def test_rules_is_not_a_top_level_package():
    import ledger_engine.rules

    assert Path(ledger_engine.rules.__file__).parent == ROOT / "rules"
    with pytest.raises(ImportError):
        __import__("rules")
