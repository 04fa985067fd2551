"""Source NAPT for internet egress (``napt`` in code and metrics; YAML's ``rule:
nat`` is IP-Rewrite, ``ip_rewrite.py``), sans IO.

``Napt`` (``table.py``) is the connection table of one gateway over its pool of
external addresses: tenants with their session limits, endpoint-independent mappings,
sessions keyed both ways with per-state idle timeouts (``states.py``), port forwards,
and the translation log. ``napt_outbound``/``napt_inbound`` (``translate.py``) rewrite
a datagram in place and return its session or the ``Drop`` it was refused for.
External ports come from ``ports.py``. Time is always an argument.
"""

from __future__ import annotations

from .ports import DYNAMIC_PORTS, AddressPool, PortAllocator
from .session import LogRecord, Mapping, Session, Tenant, in_key, out_key
from .states import STATE_NAMES, Timeouts
from .table import (
    EXPIRE_BATCH,
    LOG_CAPACITY,
    MAX_SESSIONS,
    TENANT_MAX_SESSIONS,
    ForwardTargets,
    Napt,
)
from .translate import napt_inbound, napt_outbound

__all__ = [
    "DYNAMIC_PORTS",
    "EXPIRE_BATCH",
    "LOG_CAPACITY",
    "MAX_SESSIONS",
    "STATE_NAMES",
    "TENANT_MAX_SESSIONS",
    "AddressPool",
    "ForwardTargets",
    "LogRecord",
    "Mapping",
    "Napt",
    "PortAllocator",
    "Session",
    "Tenant",
    "Timeouts",
    "in_key",
    "napt_inbound",
    "napt_outbound",
    "out_key",
]
