"""Every package chooses its public names, and other packages use only those.

As trio's ``test_exports.py`` checks its ``_core``: each package's ``__init__``
lists what other packages may use (``__all__``), every listed name resolves (lazy
packages too: ``gateway._lazy``), no module outside a package imports one of its
modules directly, and nothing is listed that nobody outside uses. Tests may reach
into a package's modules (they test its insides); the other packages may not.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections import defaultdict
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

from tests.wire.test_exports import SIGNATURE_TYPES as WIRE_SIGNATURE_TYPES

ROOT = Path(__file__).resolve().parents[1]
GATEWAY = ROOT / "gateway"
PACKAGES = sorted(p.name for p in GATEWAY.iterdir() if (p / "__init__.py").exists())
# Exported although no other package imports them by name: what public signatures
# take and return (a structural Protocol is implemented, never imported).
SIGNATURE_TYPES = {"wire": WIRE_SIGNATURE_TYPES, "dataplane": {"Output", "LookupTracer"}}


def _package_of(path: Path) -> str | None:
    """The gateway package a source file belongs to (None: top-level modules)."""
    parts = path.relative_to(GATEWAY).parts
    return parts[0] if len(parts) > 1 else None


@cache
def _imports() -> list[tuple[Path, str, str | None]]:
    """(file, module imported from, name) for every ``gateway.*`` import in gateway/,
    tests/ and bench/ (name None for ``import gateway.x.y``)."""
    found = []
    for area in ("gateway", "tests", "bench"):
        for path in (ROOT / area).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    if node.module.startswith("gateway."):
                        found += [(path, node.module, alias.name) for alias in node.names]
                elif isinstance(node, ast.Import):
                    found += [
                        (path, alias.name, None)
                        for alias in node.names
                        if alias.name.startswith("gateway.")
                    ]
    return found


def test_every_package_is_checked() -> None:
    assert {"control", "dataplane", "io", "lab", "policy", "telemetry", "wire"} <= set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_the_package_lists_its_exports_and_each_resolves(package: str) -> None:
    """Each export resolves to what it names, also once every module of the package is
    imported: a module binds its name in its package when imported, which would shadow
    a lazy export of the same name (``gateway._lazy``)."""
    module = importlib.import_module(f"gateway.{package}")
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"gateway.{package} chooses no exports (__all__)"
    assert len(exported) == len(set(exported))
    for info in pkgutil.walk_packages(module.__path__, f"gateway.{package}."):
        importlib.import_module(info.name)
    for name in exported:
        assert not isinstance(getattr(module, name), ModuleType), f"{name} is a module"


@pytest.mark.parametrize("package", PACKAGES)
def test_other_packages_import_only_its_exports(package: str) -> None:
    """``from gateway.control import ApiClient``, never ``from gateway.control.client``."""
    exported = set(importlib.import_module(f"gateway.{package}").__all__)
    wrong = []
    for path, module, name in _imports():
        if not path.is_relative_to(GATEWAY) or _package_of(path) == package:
            continue
        parts = module.split(".")
        if parts[1] != package:
            continue
        if len(parts) > 2 or name is None:
            wrong.append(f"{path.relative_to(ROOT)}: {module} (a module of the package)")
        elif name not in exported:
            wrong.append(f"{path.relative_to(ROOT)}: {name} (not in __all__)")
    assert wrong == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_export_is_used_outside_the_package(package: str) -> None:
    """An export nobody outside imports is a private name with a public spelling."""
    used: dict[str, set[str]] = defaultdict(set)
    for path, module, name in _imports():
        if path.is_relative_to(GATEWAY / package) or name is None:
            continue
        if module.split(".")[1] == package:
            used[name].add(str(path.relative_to(ROOT)))
    if package == "cli":  # the entry point (pyproject's [project.scripts]) is its user
        used["main"].add("pyproject.toml")
    exported = importlib.import_module(f"gateway.{package}").__all__
    signatures = SIGNATURE_TYPES.get(package, set())
    assert [name for name in exported if not used[name] and name not in signatures] == []
