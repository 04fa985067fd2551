"""The HNV policy: frozen objects built from plain mappings, and the compiled snapshot
the data plane reads.

Pure: no file, socket or clock. ``load_policy()`` validates a whole document (schema
and cross-entity rules, every problem in one ``ConfigError``) and ``compile_policy()``
turns the result into dict lookups keyed by packed bytes; ``compile_gateway()`` adds
a gateway node's route table per routing domain it serves. Reading YAML, with line
numbers in errors, is ``gateway.control``'s job.
"""

from __future__ import annotations

from ._gc import kept_build, paused_gc
from ._load import load_policy
from ._paths import format_path, parse_path
from ._tunnel_values import decode_key, endpoint_pair
from ._values import VSID_MAX, VSID_MIN, Mac, NextHop, NextHopKind
from .gateway_routes import GatewayHop, GatewayTable, compile_gateway
from .incremental import IndexedPolicy
from .model import (
    DEFAULT_METRIC,
    DYNAMIC_PORTS,
    TUNNEL_LOAD_THRESHOLD,
    CustomerRoute,
    DomainNat,
    LookupRecord,
    MacAddress,
    NatTimeouts,
    Node,
    NodeNat,
    NodeRole,
    NodeRoute,
    Policy,
    Port,
    PortForward,
    ProviderAddress,
    RecordType,
    RoutingDomain,
    Rule,
    ServedDomain,
    Tap,
    Tunnel,
    VirtualSubnet,
    domains_matching,
    filter_value,
)
from .snapshot import CompiledRecord, CompiledRoute, Snapshot, compile_policy

__all__ = [
    "DEFAULT_METRIC",
    "DYNAMIC_PORTS",
    "TUNNEL_LOAD_THRESHOLD",
    "VSID_MAX",
    "VSID_MIN",
    "CompiledRecord",
    "CompiledRoute",
    "CustomerRoute",
    "DomainNat",
    "GatewayHop",
    "GatewayTable",
    "IndexedPolicy",
    "LookupRecord",
    "Mac",
    "MacAddress",
    "NatTimeouts",
    "NextHop",
    "NextHopKind",
    "Node",
    "NodeNat",
    "NodeRole",
    "NodeRoute",
    "Policy",
    "Port",
    "PortForward",
    "ProviderAddress",
    "RecordType",
    "RoutingDomain",
    "Rule",
    "ServedDomain",
    "Snapshot",
    "Tap",
    "Tunnel",
    "VirtualSubnet",
    "compile_gateway",
    "compile_policy",
    "decode_key",
    "domains_matching",
    "endpoint_pair",
    "filter_value",
    "format_path",
    "kept_build",
    "load_policy",
    "parse_path",
    "paused_gc",
]
