"""Counters of the data plane: plain ints bumped per packet, read at scrape time.

A ``labels(...).inc()`` per packet costs a string conversion, a tuple and two locks
(measured at 22 % of the loop); an attribute increment costs almost nothing. The
telemetry collector walks these objects when Prometheus scrapes and turns them into
metric families, so label handling happens once per scrape, not once per packet.

Counters live apart from the compiled tables: a policy swap rebuilds the tables and
hands each port the counters object it had before (matched by port name), so a
reload never resets a counter (Prometheus would read that as a restart).
"""

from __future__ import annotations

from typing import Final

from gateway.errors import Drop


class _Table:
    """Counters of one thing (a port, a routing domain), named by its class's
    ``TOTALS``: one slot each, all starting at 0."""

    TOTALS: tuple[tuple[str, str], ...] = ()
    __slots__ = ()

    def __init__(self) -> None:
        for name, _ in self.TOTALS:
            setattr(self, name, 0)


class PortCounters(_Table):
    """One VM network adapter. Packets and bytes count IP frames only; ARP has its own.

    ``TOTALS`` is the one list of its counters, ``(name, help)``: the slots come from
    it, and so do the ``nvgw_port_<name>_total`` metrics and the API's JSON."""

    TOTALS: Final = (
        ("from_vm_packets", "IP frames a VM sent that were forwarded"),
        ("from_vm_bytes", "bytes of those frames"),
        ("to_vm_packets", "IP frames delivered to a VM"),
        ("to_vm_bytes", "bytes of those frames"),
    )
    __slots__ = tuple(name for name, _ in TOTALS)


class DomainCounters(_Table):
    """What crossed a gateway for one routing domain it serves, each way. Packets and
    bytes count routed IP frames (Ethernet header included), as ``PortCounters`` do.

    ``TOTALS`` is the one list of its counters, ``(name, help)``, as for a port."""

    TOTALS: Final = (
        ("out_packets", "IP frames a gateway wrote to the routing domain's TAPs"),
        ("out_bytes", "bytes of those frames"),
        ("in_packets", "IP frames from the routing domain's TAPs a gateway sent into its VSIDs"),
        ("in_bytes", "bytes of those frames"),
    )
    __slots__ = tuple(name for name, _ in TOTALS)


class Counters:
    """The node's data-plane counters (everything not per port).

    ``TOTALS`` is the one list of the node-wide counts, ``(name, help)``, as ``Drop``
    is of the drop reasons: each is a slot here (a plain int the packet path bumps,
    ``counters.routed += 1``), a ``nvgw_<name>_total`` metric with that help, and a
    key of the API's ``/v1/counters``. Add a counter here and it is exported."""

    TOTALS: Final = (
        ("provider_rx_packets", "NVGRE and IP-Rewrite packets received from the provider network"),
        ("provider_rx_bytes", "bytes of those packets, outer IP header included"),
        ("encapsulated", "frames sent to another host in NVGRE"),
        ("switched_locally", "frames delivered from one local VM adapter to another"),
        ("routed", "frames routed between virtual subnets, toward a gateway, or by a gateway"),
        ("ip_rewritten_out", "frames sent IP-Rewritten (rule: nat) as plain IP"),
        ("ip_rewritten_in", "IP-Rewritten packets turned back into a VM's frame"),
        ("arp_requests", "ARP requests from VMs, or from the corp side of a gateway's TAPs"),
        ("arp_replies", "ARP requests answered (from the lookup records; a gateway's TAP address)"),
        ("icmp_errors_sent", "ICMP fragmentation-needed and time-exceeded sent back to senders"),
        ("arp_requests_sent", "ARP requests a gateway sent out of its TAPs to find a neighbour"),
        ("echo_replies", "ICMP echo requests to a gateway's own addresses answered"),
        ("fragmented", "packets a gateway split to fit the next hop (DF clear)"),
    )
    __slots__ = ("domains", "drops", "ports", *(name for name, _ in TOTALS))

    def __init__(self) -> None:
        self.drops = [0] * len(Drop)  # indexed by Drop
        for name, _ in self.TOTALS:
            setattr(self, name, 0)
        self.ports: dict[str, PortCounters] = {}
        self.domains: dict[str, DomainCounters] = {}  # a gateway's, by RDID

    def port(self, name: str) -> PortCounters:
        """The counters of port ``name``, created on first use and kept across swaps."""
        found = self.ports.get(name)
        if found is None:
            found = self.ports[name] = PortCounters()
        return found

    def domain(self, rdid: str) -> DomainCounters:
        """The counters of routing domain ``rdid`` on a gateway, created on first use
        and kept across swaps."""
        found = self.domains.get(rdid)
        if found is None:
            found = self.domains[rdid] = DomainCounters()
        return found
