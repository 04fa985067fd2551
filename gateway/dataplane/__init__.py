"""Per-packet decisions, pure: a frame and the compiled policy in, actions out.

Nothing here touches a socket or reads a clock, so the same code runs in unit tests,
in the daemon and in a pcap replay. Refusals are drops counted by reason
(``gateway.errors.Drop``), never exceptions.
"""

from __future__ import annotations

from .counters import Counters, PortCounters
from .host import HostDataplane
from .output import Output
from .tables import PORT_MTU, ROUTER_MAC_PREFIX, HostPort, HostTables, router_mac

__all__ = [
    "PORT_MTU",
    "ROUTER_MAC_PREFIX",
    "Counters",
    "HostDataplane",
    "HostPort",
    "HostTables",
    "Output",
    "PortCounters",
    "router_mac",
]
