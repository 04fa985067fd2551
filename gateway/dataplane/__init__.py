"""Per-packet decisions, pure: a frame and the compiled policy in, actions out.

Nothing here touches a socket or reads a clock, so the same code runs in unit tests,
in the daemon and in a pcap replay. Refusals are drops counted by reason
(``gateway.errors.Drop``), never exceptions.

Each role is a state class and handler functions that take it (``host.py``): the
host role is ``HostNode`` with ``from_port``, ``from_provider`` and
``from_provider_link``. Every handler's decisions go to the node's ``Output``.
``plan_node`` says what a node serves (and refuses what its role cannot).
``Fabric`` puts every node of a policy on a provider network in memory: tests,
``nvgw trace``, ``nvgw replay`` and the lab's expectations run on it.
"""

from __future__ import annotations

from .counters import Counters, PortCounters
from .fabric import MAX_HOPS, Delivery, Fabric, Step, link_mac
from .host import HostNode
from .ip_rewrite import from_provider_link
from .output import NamedTap, Output
from .plan import NodePlan, plan_node, prepare_node
from .provider_side import from_provider
from .tables import (
    PORT_MTU,
    HostPort,
    HostTables,
    LookupTracer,
    router_mac,
)
from .vm_side import from_port

__all__ = [
    "MAX_HOPS",
    "PORT_MTU",
    "Counters",
    "Delivery",
    "Fabric",
    "HostNode",
    "HostPort",
    "HostTables",
    "LookupTracer",
    "NamedTap",
    "NodePlan",
    "Output",
    "PortCounters",
    "Step",
    "from_port",
    "from_provider",
    "from_provider_link",
    "link_mac",
    "plan_node",
    "prepare_node",
    "router_mac",
]
