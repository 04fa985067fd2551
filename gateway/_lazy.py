"""Exports a package names in ``__all__`` but imports on first use (PEP 562).

``gateway.control`` holds the HTTP API (starlette, hypercorn) beside the config
reader every command needs; importing all of it for ``nvgw check`` would cost a third
of a second per command. A package whose parts are that uneven lists its exports
here, by the module that defines each, and other packages still import only from
the package: ``from gateway.control import ApiClient`` loads ``client.py`` alone.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The package's ``__getattr__`` and ``__dir__`` for ``exports`` (name -> the
    relative module that defines it)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # found directly from now on
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
