"""House rules the linter cannot check: no private names imported across modules, no package importing
upward, no module of the three packages past about 400 lines (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("search_spaces", "latency_db", "nas")   # lowest first: each may import only those before it
MAX_LINES = 420  # "about 400"; nas/export/templates/train.py is generated code shipped as one file, not a module
FIRST_PARTY = set(PACKAGES)


def python_files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py") if "templates" not in p.parts)


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import in a file, at any depth (``import X`` imports no names)."""
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            out.append((node.module or "", [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


@pytest.mark.parametrize("path", python_files(*PACKAGES, "tests", "benchmarks"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_name_is_imported_from_another_first_party_module(path: Path) -> None:
    private = [f"{module}.{name}" for module, names in imports_of(path) if module.split(".")[0] in FIRST_PARTY
               for name in names if name.startswith("_") and not name.endswith("__")]
    assert not private, f"{path.relative_to(ROOT)} imports private names {private}: make them public or move them"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_upward(package: str) -> None:
    above = set(PACKAGES[PACKAGES.index(package) + 1:])
    upward = [f"{p.relative_to(ROOT)}: {module}" for p in python_files(package) for module, _ in imports_of(p)
              if module.split(".")[0] in above]
    assert not upward, f"{package} imports from a package above it: {upward}"


@pytest.mark.parametrize("path", python_files(*PACKAGES), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_readable_in_one_sitting(path: Path) -> None:
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines (at most about 400): split it by concern"
