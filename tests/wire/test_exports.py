"""Public names are chosen (style.md, after trio's test_exports.py), and wire/ stays pure."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import gateway.wire

WIRE = Path(gateway.wire.__file__).parent
MODULES = sorted(p for p in WIRE.glob("*.py") if p.name != "__init__.py")
ALLOWED_IMPORTS = {
    "__future__",
    "struct",
    "zlib",
    "ipaddress",
    "dataclasses",
    "enum",
    "typing",
    "gateway.errors",
}


def defined_names(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return names


def test_every_public_name_is_exported_once() -> None:
    exported = gateway.wire.__all__
    assert len(exported) == len(set(exported))
    owners: dict[str, list[str]] = {}
    for path in MODULES:
        for name in defined_names(path):
            if not name.startswith("_"):
                owners.setdefault(name, []).append(path.stem)
    assert {n: m for n, m in owners.items() if len(m) > 1} == {}
    assert sorted(owners) == sorted(exported)
    for name in exported:
        assert getattr(gateway.wire, name) is not None


# Exported although no other package imports them by name: what public functions take
# and return, so that no public signature names a private type.
SIGNATURE_TYPES = {
    "Buffer",
    "WritableBuffer",
    "IcmpMessage",
    "NvgrePacket",
    "TcpHeader",
    "UdpHeader",
}


def imported_from_wire(path: Path) -> set[str]:
    """The names ``path`` takes from gateway.wire: ``from gateway.wire import X`` and
    ``gateway.wire.X``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "gateway.wire":
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Attribute) and ast.unparse(node.value) == "gateway.wire":
            names.add(node.attr)
    return names


def test_every_export_is_used_outside_wire() -> None:
    """What no other module imports is private (style.md, "Public names are chosen"):
    a name nobody outside wire/ uses must lose its export, not linger in the API."""
    root = WIRE.parents[1]
    used: set[str] = set()
    for folder in ("gateway", "tests", "bench"):
        for path in (root / folder).rglob("*.py"):
            if WIRE not in path.parents and path != Path(__file__):
                used |= imported_from_wire(path)
    assert sorted(set(gateway.wire.__all__) - used - SIGNATURE_TYPES) == []


def test_wire_imports_only_the_stdlib_it_needs() -> None:
    """No socket, no scapy, no os-ken: the codecs run the same everywhere."""
    for path in [*MODULES, WIRE / "__init__.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module in ALLOWED_IMPORTS or module.startswith("gateway.wire"), (
                    path.name,
                    module,
                )


def test_headers_are_immutable() -> None:
    """Frozen dataclasses with slots, except NvgrePacket, a NamedTuple for speed."""
    classes = [
        v
        for v in vars(gateway.wire).values()
        if isinstance(v, type) and dataclasses.is_dataclass(v)
    ]
    assert len(classes) >= 8
    assert issubclass(gateway.wire.NvgrePacket, tuple)
    for cls in classes:
        assert cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
        assert "__slots__" in vars(cls), cls
