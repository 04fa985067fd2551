"""nvgw: an NVGRE (RFC 7637) gateway and host-role daemon for Hyper-V Network
Virtualization style multi-tenant networks.

The packages follow a packet: ``wire`` (codecs), ``policy`` (the HNV model and its
compiled snapshot), ``control`` (config files), ``cli`` (the ``nvgw`` command).
"""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # Looked up on first use only: reading package metadata costs milliseconds, and
    # every ``import gateway.wire`` would pay them.
    if name != "__version__":
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nvgre-gateway")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"
