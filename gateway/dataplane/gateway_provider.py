"""The gateway's receive side for NVGRE: a datagram from the provider network.

Checked exactly as a host checks what it receives, by the same code
(``provider_side``): RFC 7637's rules on the outer and GRE headers (``parse_nvgre``,
or the flow key's common form), the destination PA this node's, the VSID known, the
inner destination the gateway's MAC in that VSID (``GatewayTables.port_by_key``, read
where a host reads its ports), IPv4 only (ARP never crosses the provider network),
and anti-spoofing: the inner source is a record of that VSID on the outer source PA,
or, routed by its host from another VSID of the routing domain (the router MAC as
source), a CA of the routing domain on that PA. The verdict for a flow key is cached
per snapshot as on a host; what is accepted is routed in its VSID's routing domain
(``gateway_routing.route_ipv4``).
"""

from __future__ import annotations

from gateway.dataplane.gateway_node import GatewayNode
from gateway.dataplane.gateway_routing import route_ipv4
from gateway.dataplane.gateway_tables import GatewayInterface
from gateway.dataplane.provider_side import (
    _FLOW_SIZE,
    _FLOW_UNPACK,
    _INNER,
    _MIN_COMMON_TOTAL,
    _NOT_COMMON,
    _TOTAL_LENGTH,
    _flow_verdict,
    slow_verdict,
)
from gateway.wire import IPV4_OFFSET_TOTAL_LENGTH


def gateway_from_provider(node: GatewayNode, datagram: memoryview) -> None:
    """An NVGRE datagram to the gateway, outer IP header first: routed, answered, or a
    counted drop. The common form costs one unpack and one dict probe to accept, as on
    a host (``provider_side.from_provider``); everything else is read by
    ``parse_nvgre``, and both reach the same verdict."""
    counters = node.counters
    size = len(datagram)
    counters.provider_rx_packets += 1
    counters.provider_rx_bytes += size
    tables = node.tables
    if size >= _FLOW_SIZE:
        key = _FLOW_UNPACK(datagram)
        (total,) = _TOTAL_LENGTH(datagram, IPV4_OFFSET_TOTAL_LENGTH)
        if _MIN_COMMON_TOTAL <= total <= size:
            verdict = tables.flows.get(key)
            if verdict is None:
                verdict = _flow_verdict(key, tables)  # type: ignore[arg-type]
            if verdict.__class__ is GatewayInterface:
                route_ipv4(node, verdict, datagram[_INNER:total])  # type: ignore[arg-type]
                return
            if verdict is not _NOT_COMMON:
                counters.drops[verdict] += 1  # type: ignore[index]
                return
    verdict, frame = slow_verdict(tables, datagram)  # type: ignore[arg-type]
    if verdict.__class__ is GatewayInterface:
        route_ipv4(node, verdict, frame)  # type: ignore[arg-type]
    else:
        counters.drops[verdict] += 1  # type: ignore[index]
