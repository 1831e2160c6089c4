"""The packages form layers that only point down: editrl <- policies, reward <- rl <- world <- launch.

Read from the source with ``ast`` (no import side effects): a module may import its own package and the
packages of lower layers, never a package above it. ``policies`` and ``reward`` share a layer but do not
import each other.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYER = {"editrl": 0, "policies": 1, "reward": 1, "rl": 2, "world": 3, "launch": 4}


def _imported_top_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(LAYER)


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(LAYER))
def test_imports_only_point_down(package):
    violations = []
    for path in _modules(package):
        for target in _imported_top_packages(path):
            same_layer_other = LAYER[target] == LAYER[package] and target != package
            if LAYER[target] > LAYER[package] or same_layer_other:
                violations.append(f"{path.relative_to(REPO)} imports {target}")
    assert not violations, "\n".join(violations)


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("from world.tasks import EditTask\nimport rl.controller\nfrom . import sibling\n")
    assert _imported_top_packages(bad) == {"world", "rl"}
