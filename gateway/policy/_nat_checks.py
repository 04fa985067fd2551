"""The rules of a gateway's NAT (``nodes.NAME.nat``), judged against the document.

The external addresses are the daemon's own (decisions.md, "Addresses the daemon
translates are the daemon's"): it answers ARP for them on the external TAP and
translates what arrives for them. So none may be an address something else claims
(a provider address of any node, the gateway's own address on one of its TAPs), they
share the external TAP's one subnet, and the next hop is a neighbour in it. The
external TAP is an interface of the node like its others: its name is its own. As in
``_gateway_checks.py``, every problem is reported at its entry's path, in one pass.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from gateway.errors import ConfigIssue

from ._paths import Loc, format_path
from ._values import IPAddress, IPNetwork
from .checks import Parsed, reserved_address

if TYPE_CHECKING:
    from ._gateway_checks import GatewayParts
    from .model import NodeNat, PortForward

_OWN_NAME = "the external TAP needs a name of its own"
IPV4_ONLY = "the gateway translates IPv4 only so far (IPv6 comes with its own issue)"


def no_nat(node: str) -> str:
    """Why a routing domain of ``node`` may not use NAT: the node has none."""
    return (
        f"node {node} has no NAT: add nodes.{node}.nat (its external tap, addresses, "
        "next_hop) first"
    )


def check_nats(parsed: Parsed, gateways: GatewayParts, issues: list[ConfigIssue]) -> None:
    """Every problem of each gateway node's ``nat:``."""
    interfaces: dict[str, set[str]] = defaultdict(set)
    claimed: dict[IPAddress, str] = {}  # addresses something else holds -> what
    for loc, node, address in parsed.provider_addresses:
        interfaces[node].add(address.interface)
        claimed.setdefault(address.pa, f"a provider address ({format_path(loc)})")
    taps: dict[str, dict[str, Loc]] = defaultdict(dict)  # node -> TAP name -> path
    tap_ips: dict[str, dict[IPAddress, str]] = defaultdict(dict)  # node -> its TAP addresses
    for entry in gateways.served:
        for loc, tap in entry.taps:
            taps[entry.node].setdefault(tap.name, loc)
            what = f"the gateway's address on TAP {tap.name} ({format_path(loc)})"
            tap_ips[entry.node].setdefault(tap.address.ip, what)
    for node, (loc, nat) in gateways.nats.items():
        if nat is None:
            continue
        where = (*loc, "tap")
        if nat.tap in taps[node]:
            message = f"also a TAP of node {node} ({format_path(taps[node][nat.tap])}): {_OWN_NAME}"
            issues.append(ConfigIssue(format_path(where), nat.tap, message))
        if nat.tap in interfaces[node]:
            message = f"also a provider interface of node {node}: {_OWN_NAME}"
            issues.append(ConfigIssue(format_path(where), nat.tap, message))
        _check_addresses(loc, nat.addresses, nat.next_hop, {**tap_ips[node], **claimed}, issues)
    _check_forwards(parsed, gateways, issues)


def _check_addresses(
    loc: Loc,
    addresses: tuple,  # of IPv4Interface / IPv6Interface
    next_hop: IPAddress,
    claimed: dict[IPAddress, str],
    issues: list[ConfigIssue],
) -> None:
    def issue(where: Loc, value: object, message: str) -> None:
        issues.append(ConfigIssue(format_path(where), value, message))

    network = addresses[0].network
    seen: dict[IPAddress, int] = {}
    for index, address in enumerate(addresses):
        where, written = (*loc, "addresses", index), str(address)
        if address.version != 4:
            issue(where, written, IPV4_ONLY)
            continue
        first = seen.setdefault(address.ip, index)
        if first != index:
            issue(where, written, f"duplicate external address: addresses[{first}] has it")
        if address.network != network:
            message = (
                f"not in {network} (addresses[0]): the external addresses share the "
                "external TAP's one subnet"
            )
            issue(where, written, message)
            continue
        reserved = reserved_address(address.ip, network)
        if reserved is not None:
            issue(where, written, f"the external address is {reserved}")
        owner = claimed.get(address.ip)
        if owner is not None:
            message = f"also {owner}: an external address is the NAT's alone"
            issue(where, written, message)
    where = (*loc, "next_hop")
    if next_hop.version != 4 or network.version != 4:
        issue(where, str(next_hop), IPV4_ONLY)
    elif next_hop not in network:
        message = f"not in the external subnet {network}: a next hop is a neighbour"
        issue(where, str(next_hop), message)
    elif next_hop in seen:
        issue(where, str(next_hop), "one of the external addresses: a next hop is a neighbour")
    else:
        reserved = reserved_address(next_hop, network)
        if reserved is not None:
            issue(where, str(next_hop), f"the next hop is {reserved}")


def _check_forwards(parsed: Parsed, gateways: GatewayParts, issues: list[ConfigIssue]) -> None:
    """Each port forward against its node's NAT and its routing domain: an external
    address of the NAT, a port outside the range sessions are given (so a forward and
    a session never want one port), one forward per external endpoint and per tenant
    endpoint on a node (the core refuses the second), and a CA of the tenant's own
    subnets."""
    prefixes: dict[str, list[IPNetwork]] = defaultdict(list)  # RDID -> its subnets
    for _, subnet, rdid in parsed.subnets:
        if rdid is not None:
            prefixes[rdid].extend(subnet.prefixes)
    published: dict[tuple[str, str, IPAddress, int], Loc] = {}  # node, protocol, address, port
    targets: dict[tuple[str, str, str, IPAddress, int], Loc] = {}  # node, RDID, endpoint
    for entry in gateways.served:
        loc_nat = gateways.nats.get(entry.node)
        nat = None if loc_nat is None else loc_nat[1]
        rdid = gateways.rdids.get(entry.loc)
        for loc, forward in entry.port_forwards:
            if loc_nat is None:
                issues.append(ConfigIssue(format_path(loc), "port_forwards", no_nat(entry.node)))
                continue
            own = (entry.node, forward.protocol, forward.address, forward.port)
            first = published.setdefault(own, loc)
            if first != loc:
                message = (
                    f"{forward.address}:{forward.port} is forwarded already: {format_path(first)}"
                )
                issues.append(ConfigIssue(format_path((*loc, "port")), forward.port, message))
            if rdid is not None:
                inside = (entry.node, rdid, forward.protocol, forward.ca, forward.ca_port)
                first = targets.setdefault(inside, loc)
                if first != loc:
                    where = format_path(first)
                    message = f"{forward.ca}:{forward.ca_port} is forwarded to already: {where}"
                    issues.append(
                        ConfigIssue(format_path((*loc, "ca_port")), forward.ca_port, message)
                    )
                _check_ca(loc, forward.ca, prefixes[rdid], issues)
            if nat is not None:
                _check_external(loc, entry.node, forward, nat, issues)


def _check_external(
    loc: Loc, node: str, forward: PortForward, nat: NodeNat, issues: list[ConfigIssue]
) -> None:
    addresses = [address.ip for address in nat.addresses]
    if forward.address not in addresses:
        listed = ", ".join(str(address) for address in addresses)
        message = f"not an external address of node {node}'s NAT (nat.addresses: {listed})"
        issues.append(ConfigIssue(format_path((*loc, "address")), str(forward.address), message))
    first, last = nat.dynamic_ports
    if first <= forward.port <= last:
        message = (
            f"inside the NAT's dynamic ports {first}-{last}, which sessions are given: "
            f"forward a port outside them, or narrow nodes.{node}.nat.dynamic_ports"
        )
        issues.append(ConfigIssue(format_path((*loc, "port")), forward.port, message))


def _check_ca(
    loc: Loc, ca: IPAddress, prefixes: list[IPNetwork], issues: list[ConfigIssue]
) -> None:
    if ca.version != 4:
        issues.append(ConfigIssue(format_path((*loc, "ca")), str(ca), IPV4_ONLY))
        return
    ours = [prefix for prefix in prefixes if prefix.version == 4]
    if prefixes and not any(ca in prefix for prefix in ours):
        listed = ", ".join(str(prefix) for prefix in ours) or "none"
        message = f"not in an IPv4 subnet of this routing domain ({listed})"
        issues.append(ConfigIssue(format_path((*loc, "ca")), str(ca), message))
