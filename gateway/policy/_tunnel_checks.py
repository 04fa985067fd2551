"""The rules of site-to-site tunnels (``tunnels:``), judged against the document.

A tunnel belongs to one routing domain and is served by one gateway node on one UDP
listen port (decisions.md, "Tunnels"), so the node must be a gateway that serves
that routing domain and holds a private key for the port (``tunnel_keys``). Its
allowed IPs are routes of the routing domain (cryptokey routing), so they must not
overlap another tunnel's of that routing domain, nor repeat a node route's prefix;
two tenants may use the same on-prem prefixes, each over its own tunnel. Peers on one
listen port are told apart by their public keys, so a key serves one tunnel per port.
As in ``_gateway_checks.py``, every problem is reported at its entry's path, in one
pass, and what failed the schema silences the reports that might only be about it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from gateway.errors import ConfigIssue

from ._paths import Loc, format_path
from ._tunnel_values import is_ipv4_endpoint
from ._values import IPNetwork, NextHopKind
from .checks import Parsed, _overlaps
from .model import NodeRole, Tunnel

if TYPE_CHECKING:
    from ._gateway_checks import GatewayParts

IPV4_ONLY = "the gateway forwards IPv4 only so far (IPv6 comes with its own issue)"


def _issue(issues: list[ConfigIssue], loc: Loc, value: object, message: str) -> None:
    issues.append(ConfigIssue(format_path(loc), value, message))


def check_tunnels(parsed: Parsed, gateways: GatewayParts, issues: list[ConfigIssue]) -> None:
    """Every problem of the ``tunnels:`` list and of the node routes to a tunnel."""
    names: dict[str, Loc] = {}
    keys: dict[tuple[str, int, str], Loc] = {}
    allowed: dict[tuple[str, str], list[tuple[IPNetwork, Loc]]] = defaultdict(list)
    owner: dict[Loc, str] = {}  # each allowed IP's tunnel, by the allowed IP's path
    for loc, tunnel in gateways.tunnels:
        first = names.setdefault(tunnel.name, loc)
        if first != loc:
            message = f"duplicate tunnel name: {format_path(first)} has it"
            _issue(issues, (*loc, "name"), tunnel.name, message)
        _check_node(parsed, gateways, loc, tunnel, issues)
        first = keys.setdefault((tunnel.node, tunnel.listen_port, tunnel.public_key), loc)
        if first != loc:
            message = (
                f"this peer is already a tunnel on node {tunnel.node} port "
                f"{tunnel.listen_port} ({format_path(first)}): peers on one listen port "
                "are told apart by their public keys"
            )
            _issue(issues, (*loc, "public_key"), tunnel.public_key, message)
        if tunnel.endpoint is not None and not is_ipv4_endpoint(tunnel.endpoint):
            _issue(issues, (*loc, "endpoint"), tunnel.endpoint, f"{IPV4_ONLY}: an IPv6 endpoint")
        if not tunnel.allowed_ips:
            message = "a tunnel needs its peer's prefixes (the on-prem networks), at least one"
            _issue(issues, (*loc, "allowed_ips"), [], message)
        for index, prefix in enumerate(tunnel.allowed_ips):
            where = (*loc, "allowed_ips", index)
            if prefix.version != 4:
                _issue(issues, where, str(prefix), IPV4_ONLY)
                continue
            allowed[tunnel.node, tunnel.rdid].append((prefix, where))
            owner[where] = tunnel.name
    for entries in allowed.values():
        for inner, inner_loc, outer, outer_loc in _overlaps(entries):
            if inner_loc < outer_loc:
                inner, inner_loc, outer, outer_loc = outer, outer_loc, inner, inner_loc
            message = (
                f"overlaps {outer} of tunnel {owner[outer_loc]} ({format_path(outer_loc)}): "
                "the allowed IPs of one routing domain's tunnels must not overlap"
            )
            _issue(issues, inner_loc, str(inner), message)
    _check_routes(gateways, allowed, owner, issues)


def _check_node(
    parsed: Parsed, gateways: GatewayParts, loc: Loc, tunnel: Tunnel, issues: list[ConfigIssue]
) -> None:
    """The node exists, is a gateway, serves the tunnel's routing domain and has a key
    for its listen port."""
    if tunnel.node not in gateways.nodes:
        known = ", ".join(gateways.nodes) or "none"
        _issue(issues, (*loc, "node"), tunnel.node, f"no such node (nodes: {known})")
        return
    node = gateways.nodes[tunnel.node]
    if node is None:
        return  # it failed the schema: its own report says why
    if node.role is not NodeRole.GATEWAY:
        message = f"node {tunnel.node} is a {node.role.value} node: a gateway serves tunnels"
        _issue(issues, (*loc, "node"), tunnel.node, message)
        return
    if tunnel.rdid not in {domain.rdid for _, domain in parsed.domains}:
        if not (parsed.unresolved_rdids or parsed.unreadable_rdid):
            _issue(issues, (*loc, "rdid"), tunnel.rdid, "no routing domain has this RDID")
    elif not any(
        entry.node == tunnel.node and gateways.rdids.get(entry.loc, tunnel.rdid) == tunnel.rdid
        for entry in gateways.served
    ):  # a served key that names no one routing domain may be meant for this one
        message = (
            f"node {tunnel.node} does not serve this routing domain: add it under "
            f"nodes.{tunnel.node}.routing_domains"
        )
        _issue(issues, (*loc, "rdid"), tunnel.rdid, message)
    if tunnel.listen_port not in (node.tunnel_keys or {}):
        message = (
            f"node {tunnel.node} has no private key for this port: add "
            f"nodes.{tunnel.node}.tunnel_keys: {{{tunnel.listen_port}: PATH}}"
        )
        _issue(issues, (*loc, "listen_port"), tunnel.listen_port, message)


def _check_routes(
    gateways: GatewayParts,
    allowed: dict[tuple[str, str], list[tuple[IPNetwork, Loc]]],
    owner: dict[Loc, str],
    issues: list[ConfigIssue],
) -> None:
    """A node route ``tunnel:NAME`` names a tunnel of its routing domain on its node;
    a node route to an allowed IP's prefix goes to that prefix's own tunnel (the
    allowed IPs are node routes already: two node routes of one prefix would clash)."""
    tunnels = {tunnel.name: tunnel for _, tunnel in gateways.tunnels}
    unsure = bool(gateways.unresolved_tunnels)
    for entry in gateways.served:
        rdid = gateways.rdids.get(entry.loc)
        prefixes = {prefix: loc for prefix, loc in allowed.get((entry.node, rdid or ""), ())}
        for loc, route in entry.routes:
            next_hop = route.next_hop
            at = prefixes.get(route.destination)
            if at is not None and (
                next_hop.kind is not NextHopKind.TUNNEL or next_hop.name != owner[at]
            ):
                message = (
                    f"tunnel {owner[at]}'s allowed IP {format_path(at)} routes this prefix "
                    "already (allowed IPs are node routes to their tunnel)"
                )
                _issue(issues, (*loc, "destination"), str(route.destination), message)
            if next_hop.kind is not NextHopKind.TUNNEL:
                continue
            tunnel = tunnels.get(next_hop.name or "")
            if tunnel is None:
                if not unsure:
                    known = ", ".join(tunnels) or "none"
                    message = f"no tunnel has this name (tunnels: {known})"
                    _issue(issues, (*loc, "next_hop"), str(next_hop), message)
            elif tunnel.node != entry.node:
                message = f"tunnel {tunnel.name} is served by node {tunnel.node}, not {entry.node}"
                _issue(issues, (*loc, "next_hop"), str(next_hop), message)
            elif rdid is not None and tunnel.rdid != rdid:
                message = (
                    f"tunnel {tunnel.name} belongs to routing domain {tunnel.rdid}: "
                    "a route never leaves its routing domain"
                )
                _issue(issues, (*loc, "next_hop"), str(next_hop), message)
