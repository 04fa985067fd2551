"""Per-packet decisions, pure: a frame and the compiled policy in, actions out.

Nothing here touches a socket or reads a clock, so the same code runs in unit tests,
in the daemon and in a pcap replay. Refusals are drops counted by reason
(``gateway.errors.Drop``), never exceptions.

Each role is a state class and handler functions that take it (``host.py``): the
host role is ``HostNode`` with ``from_port``, ``from_provider`` and
``from_provider_link``. Every handler's decisions go to the node's ``Output``.
The gateway role is ``GatewayNode`` with ``gateway_from_provider`` and
``gateway_from_tap`` (``gateway_node.py``), beside the host's, never a subclass.
``plan_node`` says what a node serves (and refuses what its role cannot).
``Fabric`` puts every node of a policy on a provider network in memory: tests,
``nvgw trace``, ``nvgw replay`` and the lab's expectations run on it.
"""

from __future__ import annotations

from .counters import Counters, DomainCounters, PortCounters
from .fabric import MAX_HOPS, Delivery, Fabric, Step, link_mac
from .gateway_node import GatewayNode
from .gateway_provider import gateway_from_provider
from .gateway_tables import TAP_MTU, ExternalTap, GatewayTables, GatewayTap, tap_mac
from .gateway_tap import gateway_from_tap
from .gateway_tunnel import PEER_TOTALS as TUNNEL_TOTALS
from .gateway_tunnel import TUNNEL_MTU, TunnelKeys, new_device
from .gateway_wireguard import gateway_from_tunnel, gateway_tunnel_tick
from .host import HostNode
from .ip_rewrite import from_provider_link
from .napt import EXPIRE_BATCH, LogRecord, in_key
from .napt import STATE_NAMES as NAPT_STATE_NAMES
from .napt import Session as NaptSession
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
    "EXPIRE_BATCH",
    "MAX_HOPS",
    "NAPT_STATE_NAMES",
    "PORT_MTU",
    "TAP_MTU",
    "TUNNEL_MTU",
    "TUNNEL_TOTALS",
    "Counters",
    "Delivery",
    "DomainCounters",
    "ExternalTap",
    "Fabric",
    "GatewayNode",
    "GatewayTables",
    "GatewayTap",
    "HostNode",
    "HostPort",
    "HostTables",
    "LogRecord",
    "LookupTracer",
    "NamedTap",
    "NaptSession",
    "NodePlan",
    "Output",
    "PortCounters",
    "Step",
    "TunnelKeys",
    "from_port",
    "from_provider",
    "from_provider_link",
    "gateway_from_provider",
    "gateway_from_tap",
    "gateway_from_tunnel",
    "gateway_tunnel_tick",
    "in_key",
    "link_mac",
    "new_device",
    "plan_node",
    "prepare_node",
    "router_mac",
    "tap_mac",
]
