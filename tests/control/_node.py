"""The node behind the in-process API tests: host1 of the two-hosts config, with the
daemon's own prepare, so the API refuses what the running daemon would refuse."""

from __future__ import annotations

from collections.abc import Callable

from gateway.dataplane import NodePlan, prepare_node
from gateway.policy import Policy

NODE = "host1"


def host1_prepare() -> Callable[[Policy], Policy]:
    """What host1's daemon does with every new policy before it is saved: compile it
    and refuse what this node cannot serve (``prepare_node``: no such node, IPv6 CAs
    on its ports, IPv6 PAs) or cannot change while it runs (its PAs). The first
    policy it is given is the one the node starts with. Each policy is handed on as
    it is, for the tests' commit."""
    running: list[NodePlan] = []

    def prepare(policy: Policy) -> Policy:
        _, plan = prepare_node(policy, NODE, running[0] if running else None)
        if not running:
            running.append(plan)
        return policy

    return prepare
