"""The HNV policy: frozen objects built from plain mappings, and the compiled snapshot
the data plane reads.

Pure: no file, socket or clock. ``load_policy()`` validates a whole document (schema
and cross-entity rules, every problem in one ``ConfigError``) and ``compile_policy()``
turns the result into dict lookups keyed by packed bytes. Reading YAML, with line
numbers in errors, is ``gateway.control``'s job.
"""

from __future__ import annotations

from ._load import load_policy
from ._paths import format_path, parse_path
from ._values import VSID_MAX, VSID_MIN, Mac, NextHop, NextHopKind
from .model import (
    DEFAULT_METRIC,
    CustomerRoute,
    LookupRecord,
    MacAddress,
    Node,
    NodeRole,
    Policy,
    Port,
    ProviderAddress,
    RecordType,
    RoutingDomain,
    Rule,
    VirtualSubnet,
    filter_value,
)
from .snapshot import CompiledRecord, CompiledRoute, Snapshot, compile_policy

__all__ = [
    "DEFAULT_METRIC",
    "VSID_MAX",
    "VSID_MIN",
    "CompiledRecord",
    "CompiledRoute",
    "CustomerRoute",
    "LookupRecord",
    "Mac",
    "MacAddress",
    "NextHop",
    "NextHopKind",
    "Node",
    "NodeRole",
    "Policy",
    "Port",
    "ProviderAddress",
    "RecordType",
    "RoutingDomain",
    "Rule",
    "Snapshot",
    "VirtualSubnet",
    "compile_policy",
    "filter_value",
    "format_path",
    "load_policy",
    "parse_path",
]
