"""The host role: what a Hyper-V host's WNV filter does, as state and three handlers.

``HostNode`` is the role's whole state: its tables (one snapshot's view, swapped
whole), its counters, its neighbour table, its provider MAC, the ``Output`` its
decisions go to, and ``now``, which the io layer sets once per batch. The handlers
are module functions that take it as their first argument, one per direction:

* ``from_port(node, port, frame)`` (``vm_side.py``): a frame a VM sent on its TAP.
  ARP for a CA is answered here from the lookup records (it never leaves the host);
  IPv4 is switched within its VSID or routed through the subnet's gateway MAC
  (between VSIDs of one routing domain, or toward a gateway), then delivered to a
  local port, encapsulated in NVGRE to the destination's PA, or sent IP-Rewritten
  (``rule: nat``) as plain IP.
* ``from_provider(node, datagram)`` (``provider_side.py``): an NVGRE datagram from
  the provider network, outer IP header first.
* ``from_provider_link(node, frame)`` (``ip_rewrite.py``): an Ethernet frame seen on
  the provider link, for the IP-Rewrite PAs that belong to the daemon rather than to
  the kernel (their ARP, and the rewritten packets addressed to them). Rewritten
  packets leave the same way, framed by the daemon after resolving the destination
  PA (``neighbors.py``).

Why state plus functions rather than one class with the directions mixed in: each
direction's module says what it reads by what it takes, the gateway role brings its
own state class and handlers beside these (never a subclass), and a reader calls a
handler with its node directly, no bound method or wrapper per packet.

Whatever leaves goes through ``node.out``; whatever is refused bumps
``node.counters.drops[reason]`` and returns. Nothing here raises on a packet's
account: a wire ``BadPacket`` becomes a drop like any other. Frames are given as
writable memoryviews over the io layer's receive buffers and may be modified in
place (MACs and TTL when routing, addresses when rewriting); the Output must consume
them before the buffer is reused.
"""

from __future__ import annotations

from gateway.dataplane.counters import Counters
from gateway.dataplane.neighbors import Neighbors
from gateway.dataplane.output import Output
from gateway.dataplane.tables import HostTables
from gateway.policy import Snapshot


class HostNode:
    """One host node's data-plane state over the current snapshot.

    ``swap()``/``adopt()`` replace the tables whole between batches; the counters,
    the neighbour table and the Output stay. ``out`` and ``now`` are the io layer's to
    set (a trace gives each call its own Output), the rest is the handlers' to read.
    """

    __slots__ = ("counters", "name", "neighbors", "now", "out", "provider_mac", "tables")

    def __init__(
        self,
        snapshot: Snapshot,
        name: str,
        out: Output,
        counters: Counters | None = None,
        provider_mac: bytes | None = None,
        tables: HostTables | None = None,
    ) -> None:
        self.name = name
        self.out = out
        self.now = 0.0  # the clock at the start of the current batch
        # The provider link's MAC: ARP for this node's IP-Rewrite PAs is answered with it.
        self.provider_mac = provider_mac
        self.counters = counters if counters is not None else Counters()
        self.tables = tables or HostTables(snapshot, name, self.counters)
        self.neighbors = Neighbors(provider_mac or b"")

    def swap(self, snapshot: Snapshot) -> HostTables:
        """Adopt a new snapshot (between batches). Counters carry over by port name."""
        return self.adopt(HostTables(snapshot, self.name, self.counters))

    def adopt(self, tables: HostTables) -> HostTables:
        """Run on tables built elsewhere with this node's counters: the daemon builds
        them in the store's worker thread, since that costs O(policy), and adopts them
        between batches, which costs an attribute."""
        self.tables = tables
        return tables

    def __repr__(self) -> str:
        return f"HostNode({self.name!r}, revision={self.tables.snapshot.revision})"
