"""What HNV's gateway records become: a subnet's ``gateway:``, or a ``gateway`` record.

Windows writes two kinds of record that are no VM (decisions.md, "Import of
default-gateway records" and "Routes and where they lead"):

* the default gateway of a virtual subnet, the address every VM routes through: its
  ``.1`` (the first address of the prefix), or a record on the placeholder PA
  169.254.254.254. The Windows host answers it itself, and so does an nvgw host:
  it is the subnet's ``gateway:``, not a record, and never a port;
* a gateway's interface (a gateway VM, a router appliance): the MAC of a
  GatewayWildcard record (CA 0.0.0.0), or whose CA a customer route names as its next
  hop. Its records with a CA are ``type: gateway`` (hosts then accept what it routes
  to their VMs from any source address), and it gets no port: it is not a VM a host
  serves, but the machine that traffic leaves the virtual network through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from ipaddress import ip_address, ip_network
from typing import Any

from ruamel.yaml.comments import CommentedMap

from ._decode import IPAddress, Record, address_of
from ._locate import Loc, Origin, Report, entry_path

# The placeholder PA of a default-gateway record (decisions.md, "Import of default-
# gateway records"): the subnet's router is on every host, at no PA of its own.
PLACEHOLDER_PA = ip_address("169.254.254.254")

Subnets = Mapping[int, tuple[Loc, CommentedMap, str]]  # VSID -> path, entry, RDID


def default_gateway_ca(record: Record, prefixes: Iterable[Any]) -> IPAddress | None:
    """The CA of ``record`` if it is its subnet's default gateway: on the placeholder
    PA, or on the first address of the subnet's prefix of its family."""
    ca = record.ca
    if record.wildcard or ca is None:
        return None
    if record.pa == PLACEHOLDER_PA:
        return ca
    for text in prefixes:
        try:
            prefix = ip_network(text)
        except (TypeError, ValueError):
            continue  # the schema reports the prefix
        if prefix.version == ca.version and ca == prefix.network_address + 1:
            return ca
    return None


DefaultGateways = Mapping[int, Sequence[tuple[IPAddress, Record]]]  # VSID -> (CA, record)


def set_default_gateways(gateways: DefaultGateways, subnets: Subnets, report: Report) -> None:
    """Each subnet's ``gateway:`` from its default-gateway records. nvgw gives a
    subnet one gateway address, IPv4 when there is one (forwarding is IPv4 only):
    a second of the same family is a conflict; one of the other family is left out
    with a warning."""
    for vsid, found in gateways.items():
        loc, subnet, _ = subnets[vsid]
        chosen, chosen_record = min(found, key=lambda pair: pair[0].version)
        subnet["gateway"] = str(chosen)
        report.origins[(*loc, "gateway")] = Origin(
            chosen_record.file, (chosen_record.index,), whole="CustomerAddress"
        )
        where = entry_path(chosen_record.file, chosen_record.index)
        for ca, record in found:
            if record is chosen_record:
                continue
            if ca.version == chosen.version:
                message = (
                    f"VSID {vsid} already has the default gateway {chosen} ({where}): "
                    "a virtual subnet has one"
                )
                value = record.source.get("CustomerAddress")
                report.issue(record.file, (record.index, "CustomerAddress"), value, message)
            else:
                report.warnings.append(
                    f"{entry_path(record.file, record.index)}: {ca} is VSID {vsid}'s "
                    f"IPv{ca.version} default gateway, and nvgw gives a subnet one gateway "
                    f"address ({chosen}, {where}): it is left out"
                )


def mark_gateways(
    records: Sequence[Record], routes: Sequence[CommentedMap], subnets: Subnets
) -> None:
    """Makes ``type: gateway`` of each static record of a gateway's interface: a MAC
    with a GatewayWildcard record in its VSID, or whose CA is a next hop of a customer
    route of its routing domain."""
    adapters = {(r.vsid, r.mac) for r in records if r.wildcard and r.kind == "gateway"}
    by_ca = {
        (subnets[r.vsid][2], r.ca): r
        for r in records
        if not r.wildcard and r.vsid in subnets and r.ca is not None
    }
    for route in routes:
        hop = address_of(route.get("next_hop"))
        if hop is not None and not hop.is_unspecified:
            found = by_ca.get((route.get("rdid"), hop))
            if found is not None:
                adapters.add((found.vsid, found.mac))
    for record in records:
        adapter = (record.vsid, record.mac)
        if not record.wildcard and record.kind == "static" and adapter in adapters:
            record.kind = "gateway"
