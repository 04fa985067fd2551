"""What may come out of the data plane for one input, and what may not.

An input may end in exactly one of these ways:

- a counted drop: ``counters.drops`` rose by exactly one;
- valid outputs (each frame handed to the Output parses back with gateway/wire, and
  goes where the policy allows: see ``check_outputs``), with or without that one drop
  (fragmentation-needed goes back *and* ``too_big`` is counted);
- parked: an IP-Rewrite frame (or a gateway's, for a TAP neighbour) waits in a
  neighbour table for the MAC it needs;
- learned: an ARP reply answered one of the node's own requests (nothing waited);
- nothing at all, only in the cases listed in ``SILENT`` with their reason.

Everything else is a finding: an exception, two drops for one input, an invalid or
misdirected output, an unexplained silence. ``run`` turns one call of an entry
point into an ``Outcome`` that the differential checks compare whole.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway.dataplane import (
    Counters,
    GatewayNode,
    GatewayTables,
    HostNode,
    HostPort,
    from_port,
    from_provider,
    from_provider_link,
    gateway_from_provider,
    gateway_from_tap,
    router_mac,
)
from gateway.dataplane.neighbors import Neighbors
from gateway.errors import BadPacket, Drop
from gateway.policy import Rule, Snapshot
from gateway.wire import (
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    BROADCAST_MAC,
    ETH_HEADER_SIZE,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    IPPROTO_TCP,
    IPPROTO_UDP,
    checksum_ok,
    encapsulate_ipv4,
    encapsulate_ipv6,
    is_multicast,
    l4_checksum_ok_v4,
    parse_arp,
    parse_ethernet,
    parse_gre_nvgre,
    parse_inner_ipv4,
    parse_ipv4,
    parse_nvgre,
)

from .frames import LINK, PORT, PROVIDER
from .gateway_frames import TAP
from .gateway_oracle import check_gateway_event

# Inputs after which nothing is sent and nothing counted, and why that is right.
# Only the provider link has any: it is a shared segment, and what is not addressed
# to one of the daemon's IP-Rewrite PAs belongs to the kernel (which sees it too).
SILENT: Final = {
    "link_runt": "shorter than an Ethernet header: not a frame the daemon could own",
    "link_other_ethertype": "neither ARP nor IPv4: the kernel's traffic",
    "link_arp_malformed": "ARP that is not Ethernet/IPv4: the kernel's to judge",
    "link_arp_not_asking_us": "ARP that asks for no IP-Rewrite PA (a reply teaches, silently)",
    "link_ipv4_short": "IPv4 shorter than a header: cannot be for an IP-Rewrite PA",
    "link_ipv4_not_ours": "IPv4 to an address that is not one of this node's IP-Rewrite PAs",
}

_NAMES: Final = tuple(reason.name.lower() for reason in Drop)
_HERE: Final = str(Path(__file__).resolve().parent)


class Recorder:
    """An Output that keeps what it is given, as plain bytes, in order."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def to_tap(self, tap: HostPort, frame: Any) -> None:
        self.events.append(("port", tap.name, bytes(frame)))

    def to_provider(self, src_pa: bytes, dst_pa: bytes, gre: bytes, frame: Any) -> None:
        self.events.append(("provider", bytes(src_pa), bytes(dst_pa), bytes(gre), bytes(frame)))

    def to_provider_link(self, frame: Any) -> None:
        self.events.append(("link", bytes(frame)))


class CountingNeighbors(Neighbors):
    """The real neighbour table, counting the frames it agreed to park and the answers
    it learned, and noting whether anything used it since ``touched`` was last cleared
    (so that an untouched table can serve the next feed instead of being rebuilt)."""

    __slots__ = ("answered", "parked", "touched")

    def __init__(self, source_mac: bytes) -> None:
        super().__init__(source_mac)
        self.parked = 0
        self.answered = 0
        self.touched = False

    def resolve(self, pa: bytes, now: float) -> tuple[bytes | None, bool]:
        self.touched = True
        return super().resolve(pa, now)

    def park(self, pa: bytes, frame: bytearray) -> bool:
        self.touched = True
        kept = super().park(pa, frame)
        self.parked += kept
        return kept

    def learn(self, pa: bytes, mac: bytes, now: float) -> list[bytearray] | None:
        self.touched = True
        waiting = super().learn(pa, mac, now)
        self.answered += waiting is not None
        return waiting

    def doubt(self, pa: bytes, mac: bytes) -> None:
        self.touched = True
        super().doubt(pa, mac)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One entry-point call: the drops it counted, what it output, what it parked,
    the other counters' deltas; or the exception it raised."""

    drops: tuple[tuple[int, int], ...]  # (Drop value, delta) for each reason that moved
    events: tuple[tuple, ...]
    parked: int
    counters: tuple[int, ...]
    raised: str | None = None  # "ValueError: ... at vm_side.py:215 in _too_big"
    learned: int = 0  # ARP answers to the node's own requests

    def label(self) -> str:
        """A word for the statistics: the drop reason, else what came out."""
        if self.raised is not None:
            return "raised"
        if self.drops:
            return "drop:" + _NAMES[self.drops[0][0]]
        if self.events:
            return "out:" + "+".join(sorted({event[0] for event in self.events}))
        if self.parked:
            return "parked"
        return "learned" if self.learned else "nothing"


def _others(counters: Counters) -> tuple[int, ...]:
    c = counters
    return (
        c.provider_rx_packets,
        c.encapsulated,
        c.switched_locally,
        c.routed,
        c.ip_rewritten_out,
        c.ip_rewritten_in,
        c.arp_requests,
        c.arp_replies,
        c.icmp_errors_sent,
        c.arp_requests_sent,
        c.echo_replies,
        c.fragmented,
    )


def where(error: BaseException) -> str:
    """The innermost frame outside the fuzzer: where the bug is."""
    frames = [
        f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(_HERE)
    ]
    if not frames:
        return "?"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


def _tables_of(dataplane: HostNode | GatewayNode) -> list[CountingNeighbors]:
    """The node's neighbour tables the fuzzer counts with (a gateway has one per TAP)."""
    found = (
        dataplane.neighbors.values()
        if isinstance(dataplane, GatewayNode)
        else [dataplane.neighbors]
    )
    return [table for table in found if isinstance(table, CountingNeighbors)]


def run(
    dataplane: HostNode | GatewayNode, entry: str, port: Any, data: bytes, now: float
) -> Outcome:
    """Give ``data`` (copied: the data plane writes into frames) to one entry point;
    ``port`` is the VM's port (``from_port``) or the gateway's TAP (``from_tap``)."""
    counters = dataplane.counters
    drops_before = list(counters.drops)
    others_before = _others(counters)
    tables = _tables_of(dataplane)
    parked_before = sum(table.parked for table in tables)
    learned_before = sum(table.answered for table in tables)
    out = dataplane.out = Recorder()
    dataplane.now = now
    view = memoryview(bytearray(data))
    try:
        if entry == PORT:
            from_port(dataplane, port, view)  # type: ignore[arg-type]
        elif entry == TAP:
            gateway_from_tap(dataplane, port, view)  # type: ignore[arg-type]
        elif entry == PROVIDER:
            if isinstance(dataplane, GatewayNode):
                gateway_from_provider(dataplane, view)
            else:
                from_provider(dataplane, view)
        else:
            from_provider_link(dataplane, view)  # type: ignore[arg-type]
    except Exception as error:  # the finding itself: anything a frame can raise
        raised = f"{type(error).__name__}: {str(error)[:120]} at {where(error)}"
        return Outcome((), tuple(out.events), 0, (), raised)
    drops = counters.drops
    delta = (
        ()
        if drops == drops_before
        else tuple(
            (i, n - b) for i, (n, b) in enumerate(zip(drops, drops_before, strict=True)) if n != b
        )
    )
    others = tuple(a - b for a, b in zip(_others(counters), others_before, strict=True))
    parked = sum(table.parked for table in tables) - parked_before
    learned = sum(table.answered for table in tables) - learned_before
    return Outcome(delta, tuple(out.events), parked, others, None, learned)


@dataclass(frozen=True)
class NodeView:
    """What the oracle compares outputs against, for one node of one snapshot."""

    snapshot: Snapshot
    ports: dict[str, HostPort]
    local_pas: frozenset[bytes]
    record_pas: frozenset[bytes]
    rewrite_local: frozenset[bytes]  # this node's IP-Rewrite PAs
    rewrite_remote: frozenset[bytes]  # every other node's IP-Rewrite PAs
    provider_mac: bytes
    gateway: GatewayTables | None = None  # a gateway node's tables

    @classmethod
    def of(cls, dataplane: HostNode | GatewayNode) -> NodeView:
        if isinstance(dataplane, GatewayNode):
            tables = dataplane.tables
            snapshot = tables.snapshot
            return cls(
                snapshot,
                {},
                tables.local_pas,
                frozenset(r.pa_bytes for r in snapshot.records),
                frozenset(),
                frozenset(),
                b"",
                tables,
            )
        tables = dataplane.tables
        snapshot = tables.snapshot
        rewrite = {r.pa_bytes for r in snapshot.records if r.rule is Rule.IP_REWRITE}
        return cls(
            snapshot,
            dict(tables.port_by_name),
            tables.local_pas,
            frozenset(r.pa_bytes for r in snapshot.records),
            frozenset(tables.rewrite_by_pa),
            frozenset(rewrite - tables.local_pas),
            dataplane.provider_mac or b"",
        )


def silence(entry: str, data: bytes, view: NodeView) -> str | None:
    """The SILENT case ``data`` falls in, or None when silence is a finding."""
    if entry != LINK:
        return None
    if len(data) < ETH_HEADER_SIZE:
        return "link_runt"
    ethertype = int.from_bytes(data[12:14], "big")
    if ethertype == ETHERTYPE_ARP:
        try:
            arp = parse_arp(data, ETH_HEADER_SIZE)
        except BadPacket:
            return "link_arp_malformed"
        if arp.opcode == ARP_OP_REQUEST and arp.target_ip in view.rewrite_local:
            return None
        return "link_arp_not_asking_us"
    if ethertype != ETHERTYPE_IPV4:
        return "link_other_ethertype"
    if len(data) < ETH_HEADER_SIZE + 20:
        return "link_ipv4_short"
    if data[30:34] not in view.rewrite_local:
        return "link_ipv4_not_ours"
    return None


def check_outcome(
    entry: str, source: Any, data: bytes, outcome: Outcome, view: NodeView, napt: Any = None
) -> list[tuple[str, str]]:
    """(kind, what is wrong) for each rule ``outcome`` breaks; [] when it is allowed
    (``napt``: a gateway's NAT as the input left it)."""
    if outcome.raised is not None:
        return [("exception", outcome.raised)]
    found: list[tuple[str, str]] = []
    total = sum(n for _, n in outcome.drops)
    if total > 1:
        reasons = "+".join(_NAMES[i] for i, _ in outcome.drops)
        found.append(("drop_count", f"{entry}: one input counted {total} drops ({reasons})"))
    quiet = total == 0 and not outcome.events and not outcome.parked and not outcome.learned
    if quiet and silence(entry, data, view) is None:
        found.append(("silent", f"{entry}: nothing sent, nothing counted"))
    for event in outcome.events:
        if view.gateway is not None:
            problem = check_gateway_event(entry, source, data, event, view, napt)
        else:
            problem = _check_event(entry, source, data, event, view)
        if problem is not None:
            found.append(problem)
    return found


def _check_event(
    entry: str, source: HostPort | None, data: bytes, event: tuple, view: NodeView
) -> tuple[str, str] | None:
    try:
        if event[0] == "port":
            return _check_to_port(entry, source, data, view.ports[event[1]], event[2], view)
        if event[0] == "provider":
            return _check_to_provider(source, data, *event[1:], view)
        return _check_to_link(entry, data, event[1], view)
    except BadPacket as bad:
        return ("output", f"{entry} -> {event[0]}: does not parse back ({bad.reason.name})")


def _bad_ipv4(frame: bytes) -> str | None:
    """Why the IPv4 header after the Ethernet header does not parse, if it does not."""
    try:
        parse_inner_ipv4(frame, ETH_HEADER_SIZE)
    except BadPacket as bad:
        return bad.reason.name.lower()
    return None


def _bad_ipv4_header(frame: bytes) -> str | None:
    """Why the first byte after the Ethernet header is not IPv4 with a whole header."""
    if len(frame) < ETH_HEADER_SIZE + 20:
        return "truncated"
    vihl = frame[ETH_HEADER_SIZE]
    return None if vihl >> 4 == 4 and vihl & 0x0F >= 5 else "inner_malformed"


def _ipv4_ok(frame: bytes, at: int) -> bool:
    """Whether the IPv4 header at ``at`` parses and its checksum holds."""
    try:
        header = parse_inner_ipv4(frame, at)
    except BadPacket:
        return False
    return checksum_ok(frame[at : at + header.header_length])


def _l4_ok(frame: bytes, at: int) -> bool | None:
    """Whether the TCP/UDP checksum of the IPv4 packet at ``at`` holds; None when there
    is none to check (not TCP/UDP, a fragment, unparseable)."""
    try:
        header = parse_inner_ipv4(frame, at)
    except BadPacket:
        return None
    if header.protocol not in (IPPROTO_TCP, IPPROTO_UDP) or header.is_fragment:
        return None
    start = at + header.header_length
    segment = frame[start : at + header.total_length]
    if len(segment) < 8:
        return None
    return l4_checksum_ok_v4(header.src, header.dst, header.protocol, segment)


def _input_ip(entry: str, data: bytes) -> tuple[bytes, int] | None:
    """The input's tenant IPv4 packet (frame, offset) that an output may carry on."""
    if entry == PROVIDER:
        try:
            packet = parse_nvgre(data)
        except BadPacket:
            return None
        return bytes(packet.inner), ETH_HEADER_SIZE
    return data, ETH_HEADER_SIZE


def _carried_intact(entry: str, data: bytes, frame: bytes, rewritten: bool) -> str | None:
    """A forwarded IPv4 packet whose input checksums held must hold them still (TTL
    and addresses are patched incrementally, RFC 1624)."""
    found = _input_ip(entry, data)
    if found is None or int.from_bytes(frame[12:14], "big") != ETHERTYPE_IPV4:
        return None
    source, at = found
    if not _ipv4_ok(source, at) or frame[at + 9] != source[at + 9]:
        return None  # generated (ICMP) or already broken on the way in
    if not _ipv4_ok(frame, at):
        return "an IPv4 header checksum that held on input is broken on output"
    if rewritten and _l4_ok(source, at) and _l4_ok(frame, at) is False:
        return "a TCP/UDP checksum that held on input is broken by IP-Rewrite"
    return None


def _check_to_port(
    entry: str, source: HostPort | None, data: bytes, port: HostPort, frame: bytes, view: NodeView
) -> tuple[str, str] | None:
    leak = _leak_to_port(entry, source, data, port, view)
    if leak is not None:
        return ("isolation", leak)
    eth = parse_ethernet(frame)
    if eth.dst not in (port.mac, BROADCAST_MAC):
        return ("output", f"{entry} -> port: addressed to {eth.dst.hex()}, not the port's MAC")
    if is_multicast(eth.src):
        return ("output", f"{entry} -> port: a group address as Ethernet source")
    if eth.ethertype == ETHERTYPE_ARP:
        arp = parse_arp(frame, ETH_HEADER_SIZE)
        if arp.opcode != ARP_OP_REPLY or arp.target_mac != port.mac:
            return ("output", f"{entry} -> port: ARP that is not a reply to the port")
    elif eth.ethertype == ETHERTYPE_IPV4:
        # Decapsulated frames are delivered as they came (from_provider reads only the
        # header's version and IHL: the VM's stack checks the packet's own lengths).
        bad = _bad_ipv4_header(frame) if entry == "from_provider" else _bad_ipv4(frame)
        if bad is not None:
            return ("output", f"{entry} -> port: an IPv4 header that does not parse ({bad})")
    else:
        return ("output", f"{entry} -> port: ethertype {eth.ethertype:#06x}")
    broken = _carried_intact(entry, data, frame, entry == LINK)
    if broken is not None:
        return ("output", f"{entry} -> port: {broken}")
    return None


def _leak_to_port(
    entry: str, source: HostPort | None, data: bytes, port: HostPort, view: NodeView
) -> str | None:
    """How a frame given to ``port`` crossed a boundary the policy draws, if it did: a
    routing domain from another port, a VSID or PA from the provider network, a
    rewrite PA that is not that port's."""
    if entry == PORT:
        if source is not None and port.rdid != source.rdid:
            return "from_port -> port: crossed routing domains"
    elif entry == PROVIDER:
        try:
            packet = parse_nvgre(data)
        except BadPacket:
            return "from_provider -> port: delivered a datagram parse_nvgre refuses"
        if packet.vsid != port.vsid or packet.dst not in view.local_pas:
            return "from_provider -> port: another VSID or a foreign PA"
    else:
        records = view.snapshot.records_by_pa.get(data[30:34], ())
        if not any(r.vsid == port.vsid and r.mac_bytes == port.mac for r in records):
            return "from_provider_link -> port: not the port of that PA"
    return None


def _check_to_provider(
    source: HostPort | None,
    data: bytes,
    src: bytes,
    dst: bytes,
    gre: bytes,
    frame: bytes,
    view: NodeView,
) -> tuple[str, str] | None:
    if len(src) != len(dst):
        return ("output", "from_port -> NVGRE: source and destination PAs of two families")
    if src not in view.local_pas or (source is not None and src != source.pa):
        return ("output", "from_port -> NVGRE: from a PA that is not the sender's")
    if dst not in view.record_pas or dst in view.local_pas:
        return ("output", "from_port -> NVGRE: to a PA no remote record has")
    header = parse_gre_nvgre(gre)
    rdid = view.snapshot.rdid_by_vsid.get(header.vsid)
    if rdid is None:
        return ("output", "from_port -> NVGRE: a VSID of no routing domain")
    if source is not None and rdid != source.rdid:
        return ("isolation", "from_port -> NVGRE: into another routing domain")
    eth = parse_ethernet(frame)
    record = view.snapshot.record_by_mac.get((header.vsid, eth.dst))
    if record is None or record.pa_bytes != dst:
        return ("output", "from_port -> NVGRE: inner destination MAC has no record on that PA")
    if source is not None and eth.src not in (source.mac, router_mac(header.vsid)):
        return ("output", "from_port -> NVGRE: inner source MAC is neither the VM's nor a router's")
    if eth.ethertype != ETHERTYPE_IPV4:
        return ("output", f"from_port -> NVGRE: inner ethertype {eth.ethertype:#06x}")
    bad = _bad_ipv4(frame)
    if bad is not None:
        return ("output", f"from_port -> NVGRE: an IPv4 header that does not parse ({bad})")
    encapsulate = encapsulate_ipv4 if len(src) == 4 else encapsulate_ipv6
    packet = parse_nvgre(encapsulate(src, dst, header.vsid, header.flow_id, frame))
    if packet.vsid != header.vsid or bytes(packet.inner) != frame:
        return ("output", "from_port -> NVGRE: the datagram does not parse back as sent")
    broken = _carried_intact(PORT, data, frame, False)
    if broken is not None:
        return ("output", f"from_port -> NVGRE: {broken}")
    return None


def _check_to_link(entry: str, data: bytes, frame: bytes, view: NodeView) -> tuple[str, str] | None:
    eth = parse_ethernet(frame)
    if eth.src != view.provider_mac:
        return ("output", f"{entry} -> link: not from the provider link's MAC")
    if eth.ethertype == ETHERTYPE_ARP:
        arp = parse_arp(frame, ETH_HEADER_SIZE)
        if arp.sender_mac != view.provider_mac or arp.sender_ip not in view.rewrite_local:
            return ("output", f"{entry} -> link: ARP not on behalf of an IP-Rewrite PA of ours")
        if arp.opcode == ARP_OP_REQUEST and eth.dst != BROADCAST_MAC:
            return ("output", f"{entry} -> link: an ARP request not broadcast")
        if arp.opcode not in (ARP_OP_REQUEST, ARP_OP_REPLY):
            return ("output", f"{entry} -> link: ARP opcode {arp.opcode}")
        if arp.opcode == ARP_OP_REPLY and is_multicast(arp.target_mac):
            return ("output", f"{entry} -> link: an ARP reply to a group address")
        return None
    if eth.ethertype != ETHERTYPE_IPV4:
        return ("output", f"{entry} -> link: ethertype {eth.ethertype:#06x}")
    if is_multicast(eth.dst):
        return ("output", f"{entry} -> link: IP-Rewrite to a group MAC")
    header = parse_ipv4(frame, ETH_HEADER_SIZE)
    if header.src not in view.rewrite_local or header.dst not in view.rewrite_remote:
        return ("output", f"{entry} -> link: IPv4 between addresses that are not IP-Rewrite PAs")
    broken = _carried_intact(PORT, data, frame, True) if entry == PORT else None
    if broken is not None:
        return ("output", f"{entry} -> link: {broken}")
    return None
