"""The node behind the in-process API tests: host1 of the two-hosts config, with the
daemon's own prepare, so the API refuses what the running daemon would refuse."""

from __future__ import annotations

from gateway.dataplane import prepare_node
from gateway.policy import Policy

NODE = "host1"


def prepare_host1(policy: Policy) -> Policy:
    """What host1's daemon does with every new policy before it is saved: compile it
    and refuse what this node cannot serve (``prepare_node``: no such node, IPv6 CAs
    on its ports, IPv6 PAs). The policy is handed on as it is, for the tests' commit."""
    prepare_node(policy, NODE)
    return policy
