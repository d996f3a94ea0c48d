"""The layout shows the layers, and the imports keep to them (read from the source, not by importing it).

    cli/         -> anything
    procedures/  -> engine, judges, generators, store, toy, base; never another procedure
    engine/      -> judges, generators, store, base
    judges/      -> generators, store, toy, base
    generators/  -> store, base
    store/       -> base only
    toy/         -> judges, generators, store, base (its oracle is a judge, its models are generators)

base: the modules at the package's top (errors, settings, version). Nothing below cli/ imports cli/:
progress reaches the command line through an object the command passes down.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ganedit"
BASE = {"errors", "settings", "version"}
ALLOWED = {
    "cli": {"cli", "procedures", "engine", "judges", "generators", "store", "toy"},
    "procedures": {"engine", "judges", "generators", "store", "toy"},
    "engine": {"engine", "judges", "generators", "store"},
    "judges": {"judges", "generators", "store", "toy"},
    "generators": {"generators", "store"},
    "store": {"store"},
    "toy": {"toy", "judges", "generators", "store"},
}


def imported_modules(path: Path) -> set[str]:
    """Every ganedit module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("ganedit")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ganedit"):
            if node.module == "ganedit":
                found |= {f"ganedit.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
    return found


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


SOURCES = sorted(path for path in PACKAGE.rglob("*.py") if path.parent != PACKAGE)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_keep_to_the_layers(path):
    own = path.relative_to(PACKAGE).parts[0]
    own_module = "ganedit." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    for module in imported_modules(path):
        target = layer(module)
        if target is None:
            name = module.split(".")[1] if "." in module else module
            assert module == "ganedit" and own == "cli" or name in BASE, f"{own_module} imports {module}"
            continue
        assert target in ALLOWED[own], f"{own_module} imports {module}: {own}/ may not import {target}/"
        if own == "procedures" and target == "procedures":
            assert module == own_module, f"{own_module} imports another procedure, {module}"


def test_the_layers_exist_and_each_procedure_is_a_file_named_after_its_command():
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} >= set(ALLOWED) | {"data"}
    assert {p.stem for p in (PACKAGE / "procedures").glob("*.py")} >= {"embed_tune", "merge", "unlearn", "text_unlearn"}
    assert {p.stem for p in PACKAGE.glob("*.py")} <= BASE | {"__init__", "__main__"}
