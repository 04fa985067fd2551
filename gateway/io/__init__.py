"""Thin anyio adapters: TAP devices, provider sockets, the daemon's event loop.

Everything here carries out what ``gateway.dataplane`` decides; no forwarding logic
lives in this package.
"""

from __future__ import annotations

from .daemon import ApiListen, HostDaemon, node_plan, prepare_node, ready_line

__all__ = ["ApiListen", "HostDaemon", "node_plan", "prepare_node", "ready_line"]
