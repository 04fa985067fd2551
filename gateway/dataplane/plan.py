"""What one node of a deployment serves, decided from the policy alone.

A daemon runs one node of a deployment file. Before it opens anything, and again for
every change while it runs, it asks ``plan_node`` what that node is: its role, its
NVGRE PAs (kernel addresses, received by the raw GRE sockets or the ring), its
IP-Rewrite PAs (the daemon's own, on the provider link), and on which interfaces.
What the role cannot serve is refused here with a ``ConfigError`` naming each entry,
as ``nvgw check`` would name it, never accepted and then ignored:

* a node the file does not have;
* IPv6 PAs on the node (either role), and ports with IPv6 CAs only: nvgw forwards IPv4
  only so far (decisions.md, "IPv6"). A dual-stack port (an IPv4 and an IPv6 CA on
  its MAC) is served: its IPv4 is forwarded, its IPv6 frames are dropped as
  ``unsupported``, and the plan lists it so that the daemon says so at start;
* while it runs, a change of its PAs: those are fds and filters opened at start (the
  receive ring filters on the NVGRE PAs), so they need a restart.

Pure, like the rest of the data plane: the io layer opens what the plan says, and
the tests check every refusal without a socket.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import ConfigError, ConfigIssue
from gateway.policy import LookupRecord, NodeRole, Policy, Rule, Snapshot, compile_policy

_IPV4_ONLY = "nvgw forwards IPv4 only so far: this node cannot serve it"


@dataclass(frozen=True, slots=True)
class NodePlan:
    """One node as its daemon serves it. PAs are packed, in the file's order."""

    name: str
    role: NodeRole
    nvgre_pas: tuple[bytes, ...]  # the kernel's addresses: raw GRE sockets, the ring
    rewrite_pas: tuple[bytes, ...]  # the daemon's own: ARP and frames on the provider link
    # The interface of the node's first provider address: where the IP-Rewrite PAs'
    # frames go and whose MAC answers their ARP (None: the node has no PA).
    link_interface: str | None
    # Each interface that carries NVGRE PAs, with them: one receive ring each.
    nvgre_by_interface: tuple[tuple[str, tuple[bytes, ...]], ...]
    # Dual-stack ports, (port name, IPv6 CA): served, but their IPv6 is not forwarded.
    ipv6_not_forwarded: tuple[tuple[str, str], ...] = ()


def ip_rewrite_pas(policy: Policy) -> frozenset[bytes]:
    """The PAs of IP-Rewrite records (packed): whichever node holds one answers for it
    on the provider link itself, so that node is on the link (a daemon's link socket,
    the fabric's switch)."""
    return frozenset(r.pa.packed for r in policy.lookup_records if r.rule is Rule.IP_REWRITE)


def plan_node(
    policy: Policy, name: str, running: NodePlan | None = None, snapshot: Snapshot | None = None
) -> NodePlan:
    """The plan of node ``name``; ``running`` is the plan the daemon serves now, if
    any, and what cannot change under it is refused. Raises ConfigError. The node's
    records are read by the policy's ``snapshot`` (compiled here if not given), so a
    plan costs the node's ports and PAs, not a pass over every record."""
    try:
        node = policy.node(name)
    except KeyError:
        known = ", ".join(n.name for n in policy.nodes) or "none"
        raise ConfigError([ConfigIssue("nodes", name, f"no such node (nodes: {known})")]) from None
    issues = [
        ConfigIssue(f"nodes.{name}.provider_addresses[{i}].pa", str(pa.pa), _IPV4_ONLY)
        for i, pa in enumerate(node.provider_addresses)
        if pa.pa.version != 4
    ]
    if snapshot is None:
        snapshot = compile_policy(policy)
    ports = {(port.vsid, bytes(port.mac)): port.name for port in node.ports}
    # The CA records of this node's ports (a wildcard record is no port's CA).
    own = [
        (compiled.record, port)
        for key, port in ports.items()
        for compiled in snapshot.records_by_mac.get(key, ())
        if not compiled.wildcard
    ]
    with_ipv4 = {(record.vsid, bytes(record.mac)) for record, _ in own if record.ca.version == 4}
    ipv6 = _in_file_order(policy, [(r, port) for r, port in own if r.ca.version != 4])
    issues += [
        ConfigIssue(
            f"lookup_records[{i}].ca", str(record.ca), f"port {name} has no IPv4 CA: {_IPV4_ONLY}"
        )
        for i, record, name in ipv6
        if (record.vsid, bytes(record.mac)) not in with_ipv4
    ]
    if issues:
        raise ConfigError(issues)
    rewrite = {  # the node's PAs an IP-Rewrite record has (ip_rewrite_pas, for this node)
        address.pa.packed
        for address in node.provider_addresses
        for record in snapshot.records_by_pa.get(address.pa.packed, ())
        if record.rule is Rule.IP_REWRITE
    }
    by_interface: dict[str, list[bytes]] = {}
    for address in node.provider_addresses:
        if address.pa.packed not in rewrite:
            by_interface.setdefault(address.interface, []).append(address.pa.packed)
    pas = [address.pa.packed for address in node.provider_addresses]
    plan = NodePlan(
        name,
        node.role,
        tuple(pa for pa in pas if pa not in rewrite),
        tuple(pa for pa in pas if pa in rewrite),
        node.provider_addresses[0].interface if node.provider_addresses else None,
        tuple((interface, tuple(found)) for interface, found in sorted(by_interface.items())),
        tuple((name, str(record.ca)) for _, record, name in ipv6),
    )
    if running is not None:
        _refuse_what_cannot_change(running, plan)
    return plan


def _in_file_order(
    policy: Policy, found: list[tuple[LookupRecord, str]]
) -> list[tuple[int, LookupRecord, str]]:
    """Records (with their port) by their place in the file, each with it. A pass
    over every record, so only when there are some (dual-stack ports are rare)."""
    if not found:
        return []
    place = {id(record): i for i, record in enumerate(policy.lookup_records)}
    return sorted((place[id(record)], record, port) for record, port in found)


def _refuse_what_cannot_change(running: NodePlan, plan: NodePlan) -> None:
    if (plan.nvgre_pas, plan.rewrite_pas) != (running.nvgre_pas, running.rewrite_pas):
        raise ConfigError(
            [
                ConfigIssue(
                    f"nodes.{plan.name}.provider_addresses",
                    "changed",
                    "this node's provider addresses cannot change while it runs: "
                    "restart the daemon to apply them",
                )
            ]
        )


def prepare_node(
    policy: Policy, name: str, running: NodePlan | None = None, previous: Snapshot | None = None
) -> tuple[Snapshot, NodePlan]:
    """What a node swaps in: the compiled snapshot and its plan (``plan_node``
    refuses what this node cannot serve, or cannot change while ``running``).
    ``previous``, the snapshot in force: updated by a change of records alone
    (``compile_policy``) rather than compiled again."""
    snapshot = compile_policy(policy, previous)
    return snapshot, plan_node(policy, name, running, snapshot)
