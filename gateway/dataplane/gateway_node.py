"""The gateway role: a tenant's router out of its virtual network, as state and two
handlers (the host role's ``host.py`` is the model; this sits beside it).

``GatewayNode`` is the role's whole state: its tables (one snapshot's view, swapped
whole), its counters, a neighbour table per TAP (the corp side's MACs, learned from
answers to its own ARP requests: ``neighbors.py``), the ``Output`` its decisions go
to, and ``now``, which the io layer sets once per batch. The handlers take it as
their first argument, one per direction:

* ``gateway_from_provider(node, datagram)`` (``gateway_provider.py``): NVGRE to the
  gateway's PA, from a host's VM (or a host that routed it) to the gateway's MAC in
  its VSID. Checked as the host checks what it receives (RFC 7637, the VSID, and
  anti-spoofing: the same verdict), then routed in the VSID's routing domain.
* ``gateway_from_tap(node, tap, frame)`` (``gateway_tap.py``): a frame from the corp
  side of one of its TAPs: ARP for the gateway's address there is answered, answers
  to its own requests are learned, and IPv4 sent to its MAC is routed in the TAP's
  routing domain. From the external TAP (the internet side of the node's NAT,
  ``napt``), ARP for the NAT's addresses is answered, and IPv4 to them is translated
  back (``napt_inbound``) and routed in its session's routing domain.

* ``gateway_from_tunnel(node, port, datagram, source)`` (``gateway_wireguard.py``):
  a UDP datagram to one of its tunnel listen ports: WireGuard's messages are
  answered by the port's device, and a decrypted packet whose source the peer may
  send from is routed in the tunnel's routing domain; ``gateway_tunnel_tick`` fires
  the devices' timers.

Routing (``gateway_routing.py``) is one path for both: the domain's table (node
routes, then customer routes, ``compile_gateway``) says out of which TAP to which
neighbour, or into which VSID to which record; the TTL is counted down (time-exceeded
from the gateway's own address on the side the packet came from), a packet that
will not fit gets fragmentation-needed (or is split, with DF clear), TCP SYNs are
MSS-clamped (one routed to ``nat`` that will be forwarded is translated first,
``napt_outbound``, and leaves by the external TAP), and it leaves by ``node.out``:
``to_tap`` (resolving the neighbour by ARP first, the packet waiting in a bounded
queue) or ``to_provider`` (NVGRE from the gateway's PA, the inner source the VSID's
router MAC, the FlowID from the inner flow).
Nothing crosses routing domains: a TAP and a VSID each belong to one, and a packet
is only ever routed in the one it came from.

As in the host role, whatever is refused bumps ``node.counters.drops[reason]``, frames
are writable memoryviews over the io layer's buffers (modified in place: MACs, TTL,
MSS) and nothing raises on a packet's account.
"""

from __future__ import annotations

from gateway.dataplane.counters import Counters, DomainCounters
from gateway.dataplane.gateway_tables import GatewayTables
from gateway.dataplane.gateway_tunnel import (
    DeviceFactory,
    TunnelKeys,
    TunnelPort,
    adopt_tunnels,
    new_device,
)
from gateway.dataplane.napt import (
    MAX_SESSIONS,
    TENANT_MAX_SESSIONS,
    ForwardTargets,
    Napt,
    Timeouts,
)
from gateway.dataplane.neighbors import Neighbors
from gateway.dataplane.output import Output
from gateway.policy import Snapshot
from gateway.wire import IPPROTO_TCP, IPPROTO_UDP


class GatewayNode:
    """One gateway node's data-plane state over the current snapshot.

    ``swap()``/``adopt()`` replace the tables whole between batches; the counters, the
    neighbour tables (by TAP name), the NAT (``napt``: its sessions survive a reload
    that keeps its addresses) and the Output stay. ``out`` and ``now`` are the io
    layer's to set, the rest is the handlers' to read."""

    __slots__ = (
        "counters",
        "external_counters",
        "make_device",
        "name",
        "napt",
        "neighbors",
        "now",
        "out",
        "tables",
        "tunnel_keys",
        "tunnel_ports",
    )

    def __init__(
        self,
        snapshot: Snapshot,
        name: str,
        out: Output,
        counters: Counters | None = None,
        tables: GatewayTables | None = None,
        make_device: DeviceFactory | None = None,
    ) -> None:
        self.name = name
        self.out = out
        self.now = 0.0  # the clock at the start of the current batch
        self.counters = counters if counters is not None else Counters()
        self.neighbors: dict[str, Neighbors] = {}  # by TAP name
        self.napt: Napt | None = None  # the node's NAT, when its policy has one
        # What crossed the external TAP (``ExternalTap.counters``), kept across swaps.
        self.external_counters = DomainCounters()
        # The tunnels' secrets (read by the io layer, brought by the tables) and a
        # WireGuard device per listen port, kept across reloads that keep the port's
        # key (``gateway_tunnel.py``).
        self.tunnel_keys = TunnelKeys()
        self.tunnel_ports: dict[int, TunnelPort] = {}
        self.make_device = make_device or new_device(0.0)
        self.adopt(tables or GatewayTables(snapshot, name, self.counters))

    def swap(self, snapshot: Snapshot) -> GatewayTables:
        """Adopt a new snapshot (between batches)."""
        return self.adopt(GatewayTables(snapshot, self.name, self.counters))

    def adopt(self, tables: GatewayTables) -> GatewayTables:
        """Run on tables built elsewhere with this node's counters (the daemon builds
        them in the store's worker thread). Each TAP keeps its neighbour table across
        the swap, by name; a TAP the policy no longer has loses its own. The tunnels
        keep their devices and sessions where port, key and peer stay; the keys the
        tables bring (read again at a reload) replace the old, None keeps them."""
        kept = {}
        for tap in tables.tap_by_name.values():
            tap.neighbors = kept[tap.name] = self.neighbors.get(tap.name) or tap.neighbors
        self.neighbors = kept
        self._adopt_nat(tables)
        if tables.tunnel_keys is not None:
            self.tunnel_keys = tables.tunnel_keys
        threshold = tables.node.tunnel_load_threshold
        adopt_tunnels(self, tables.to_tunnel, self.tunnel_keys, self.make_device, threshold)
        self.tables = tables
        return tables

    def _adopt_nat(self, tables: GatewayTables) -> None:
        """Carry the NAT over to ``tables``: the same table (its sessions, mappings and
        ports) while the external addresses and the dynamic ports stay, its limits and
        timeouts updated; a new one when they change (sessions on the old addresses
        could not continue); none when the policy has no NAT. Each routing domain gets
        its tenant, and the port forwards are installed by delta."""
        external = tables.external
        nat = tables.node.nat
        if external is None or nat is None:
            self.napt = None
            return
        external.counters = self.external_counters
        limit = nat.max_sessions or MAX_SESSIONS
        timeouts = Timeouts(**nat.timeouts.model_dump(exclude_none=True))
        napt = self.napt
        if (
            napt is None
            or napt.pool.addresses != external.addresses
            or napt.pool.ports != nat.dynamic_ports
        ):
            napt = self.napt = Napt(
                external.addresses, max_sessions=limit, timeouts=timeouts, ports=nat.dynamic_ports
            )
        else:
            napt.configure(limit, timeouts)
        forwards: ForwardTargets = {}
        for domain in tables.domains.values():
            share = domain.nat
            if share is None:
                domain.tenant = napt.tenant(domain.rdid)
            else:
                domain.tenant = napt.tenant(
                    domain.rdid, share.max_sessions or TENANT_MAX_SESSIONS, share.log
                )
            for forward in tables.table.served[domain.rdid].port_forwards:
                protocol = IPPROTO_TCP if forward.protocol == "tcp" else IPPROTO_UDP
                target = (domain.tenant, forward.ca.packed, forward.ca_port)
                forwards[protocol, forward.address.packed, forward.port] = target
        napt.set_forwards(forwards)

    def __repr__(self) -> str:
        return f"GatewayNode({self.name!r}, revision={self.tables.snapshot.revision})"
