"""Several hosts' exports of one policy, as one: each entry once, disagreements named.

Every Windows host holds the policy of the virtual subnets it serves, so exporting a
deployment means exporting several hosts (one file each, or one file from
``Invoke-Command -ComputerName hv1, hv2 { ... } | ConvertTo-Json``), and each lists
the same records and routes. An entry that another export already gave, the same in
everything the policy takes from it, is imported once. Two that are the same entry
(the same key: a record's VSID and CA) but differ in the rest are a conflict, such as
a record caught between two hosts in a live migration: reported at the later one,
naming the other, for the operator to settle; guessing which host is right would
import a policy no host had.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from ipaddress import ip_network
from typing import Any, Protocol, TypeVar

from ._decode import Entry, address_of
from ._locate import Report


class Sourced(Protocol):
    """An export entry (or what was decoded from one), with where it is."""

    @property
    def file(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def source(self) -> Mapping[str, Any]: ...


T = TypeVar("T", bound=Sourced)


def merge(
    items: Iterable[T],
    key: Callable[[T], Hashable | None],
    compared: Callable[[T], Mapping[str, Any]],
    report: Report,
    what: str,
) -> list[T]:
    """``items`` without the repeats of an earlier one; each conflict (the same key,
    another value of a compared property) is an issue at the later entry, which is
    left out. An item without a key is kept as it is, for the schema to judge.
    ``what`` names the kind of entry in the message."""
    kept: list[T] = []
    first: dict[Hashable, T] = {}
    for item in items:
        found = key(item)
        if found is None:
            kept.append(item)
            continue
        earlier = first.setdefault(found, item)
        if earlier is item:
            kept.append(item)
            continue
        theirs, ours = compared(earlier), compared(item)
        differ = [prop for prop, value in ours.items() if theirs[prop] != value]
        if differ:
            shown = ", ".join(f"{prop} {_show(theirs[prop])}" for prop in differ)
            message = (
                f"the same {what} as {earlier.file}[{earlier.index}], which has {shown}: "
                "the exports disagree; export them again once the hosts agree, or leave "
                "one out"
            )
            value = item.source.get(differ[0])
            report.issue(item.file, (item.index, differ[0]), value, message)
    return kept


def route_key(entry: Entry) -> Hashable | None:
    """A customer route is its routing domain, VSID, destination and next hop."""
    source = entry.source
    rdid, vsid = source.get("RoutingDomainID"), source.get("VirtualSubnetID")
    destination, next_hop = _prefix(source.get("DestinationPrefix")), source.get("NextHop")
    if not isinstance(rdid, str) or type(vsid) is not int or destination is None:
        return None
    hop = address_of(next_hop)
    return None if hop is None else (rdid.lower(), vsid, destination, hop)


def route_compared(entry: Entry) -> dict[str, Any]:
    return {"Metric": entry.source.get("Metric")}


def address_key(entry: Entry) -> Hashable | None:
    """A provider address is its address."""
    return address_of(entry.source.get("ProviderAddress"))


def address_compared(entry: Entry) -> dict[str, Any]:
    """What the nodes take from it; VLAN 0 is no VLAN (as the export writes it)."""
    source = entry.source
    return {"PrefixLength": source.get("PrefixLength"), "VlanID": source.get("VlanID") or None}


def _prefix(value: Any) -> Hashable | None:
    if not isinstance(value, str):
        return None
    try:
        return ip_network(value)
    except ValueError:
        return None


def _show(value: Any) -> str:
    return "none" if value is None else repr(str(value))
