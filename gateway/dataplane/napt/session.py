"""What the NAT table holds: tenants, mappings, sessions, and the translation log's
records. Plain ``__slots__`` objects: a session's memory is what bounds the table.

A *mapping* is one tenant endpoint's external endpoint: (RDID, protocol, CA,
port) -> (external address, external port). It is endpoint-independent (RFC 4787
REQ-1, RFC 5382 REQ-1, RFC 5508 REQ-1): every session from that endpoint leaves
from the same external address and port, whatever its destination, so a peer that
learned it (STUN, ICE) can reach it. A *session* is one conversation through a
mapping, with one remote endpoint; it holds the protocol state and the idle timer,
and only a packet from that remote address and port, to that external port, is let
in (address- and port-dependent filtering, RFC 4787 sec. 5: a "port-restricted cone",
as Azure's NAT gateway is). Stricter than the RFCs' endpoint-independent or
address-dependent recommendation, on purpose: the gateway is shared by tenants, and
what comes in from the internet is only ever a reply to what a tenant opened, or
what an operator published with a port forward.

A mapping precomputes the checksum deltas of its rewrite (RFC 1624 eqn. 3 summed
ahead: the sum of the one's complements of the old words and of the new words), so
a packet's checksums are fixed with one addition and one modulo each:
``apply_delta``. ``gateway.wire.checksum_update`` computes the same value from the
bytes (tests/dataplane/napt/test_translate.py holds the two equal at every corner).

A session's keys in the table (``out_key``, ``in_key``) hold its addresses as ints:
an int's hash is itself, where a packet's 4-byte ``bytes`` are fresh objects whose
hash (siphash) would be computed again for every packet. Every key is made by those
two functions, save two places that build the same tuples from ints they hold: a
``Session``'s own keys (sharing its mapping's ints) and the per-packet direct path
(``translate.py``, which unpacks the addresses as ints); ``test_session_keys`` and
``test_direct`` hold them equal.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from gateway.errors import Drop
from gateway.wire import IPPROTO_ICMP

# Why a new session may be refused (each one of ``Tenant.refused``'s counts).
REFUSALS: Final = (Drop.NAPT_TENANT_LIMIT, Drop.NAPT_TABLE_FULL, Drop.NAPT_PORTS_EXHAUSTED)

_WORD_MASK: Final = 0xFFFF
_PORT: Final = struct.Struct("!H")


# (RDID, protocol, CA, CA port, remote address, remote port); addresses as ints.
OutKey = tuple[str, int, int, int, int, int]
# (protocol, external address, external port, remote address, remote port).
InKey = tuple[int, int, int, int, int]


def out_key(
    rdid: str, protocol: int, ca: bytes, ca_port: int, remote: bytes, remote_port: int
) -> OutKey:
    """The key a session is found by going out (ICMP echo: the identifier is
    ``ca_port``, ``remote_port`` is 0)."""
    return (rdid, protocol, int.from_bytes(ca), ca_port, int.from_bytes(remote), remote_port)


def in_key(protocol: int, ext_addr: bytes, ext_port: int, remote: bytes, remote_port: int) -> InKey:
    """The key a session is found by coming in (ICMP echo: the identifier is
    ``ext_port``, ``remote_port`` is 0)."""
    return (protocol, int.from_bytes(ext_addr), ext_port, int.from_bytes(remote), remote_port)


def words_delta(old: bytes, new: bytes) -> int:
    """What replacing ``old`` by ``new`` (aligned, even length) adds to ~checksum."""
    total = 0
    for i in range(0, len(old), 2):
        total += (_WORD_MASK ^ (old[i] << 8 | old[i + 1])) + (new[i] << 8 | new[i + 1])
    return total


def apply_delta(checksum: int, delta: int) -> int:
    """RFC 1624 eqn. 3 with the sum precomputed: ~(~HC + delta), folded. Never 0xFFFF,
    as a full recomputation over bytes that are not all zero never gives it."""
    return -((checksum ^ _WORD_MASK) + delta) % _WORD_MASK


class Tenant:
    """One routing domain's share of the table: its session limit, whether its
    sessions are logged, how many it holds now, and what ``/metrics`` counts of it
    (sessions opened, ended for idleness, new ones refused, by reason: plain ints,
    bumped only when a session opens, ends or is refused). ``Napt.tenant`` makes and
    updates them; the gateway keeps its domains' and passes one with each packet."""

    __slots__ = ("expired", "log", "max_sessions", "opened", "rdid", "refused", "sessions")

    def __init__(self, rdid: str, max_sessions: int, log: bool) -> None:
        self.rdid = rdid
        self.max_sessions = max_sessions
        self.log = log
        self.sessions = 0
        self.opened = 0
        self.expired = 0
        self.refused = dict.fromkeys(REFUSALS, 0)

    def __repr__(self) -> str:
        return f"Tenant({self.rdid!r}, {self.sessions}/{self.max_sessions})"


class Mapping:
    """(RDID, protocol, CA, port) <-> (external address, port), and the checksum
    deltas of both rewrites: ``out_*`` replaces the CA side by the external one,
    ``in_*`` the reverse (``ca_int``, ``ext_int``: the addresses as ints, as the
    direct path packs them). ``ip`` covers the address (IPv4 header, and the TCP/UDP
    pseudo-header); ``l4`` is the transport checksum's whole delta (address and port
    for TCP and UDP, the identifier alone for ICMP, which has no pseudo-header)."""

    __slots__ = (
        "ca",
        "ca_int",
        "ca_port",
        "ca_port_bytes",
        "ext_addr",
        "ext_int",
        "ext_port",
        "ext_port_bytes",
        "in_ip",
        "in_l4",
        "key",
        "out_ip",
        "out_l4",
        "owns_port",
        "pinned",
        "reserved",
        "sessions",
    )

    def __init__(
        self,
        key: tuple[str, int, bytes, int],
        ext_addr: bytes,
        ext_port: int,
        *,
        reserved: bool = False,
    ) -> None:
        _, protocol, ca, ca_port = key
        self.key = key
        self.ca, self.ca_port = ca, ca_port
        self.ext_addr, self.ext_port = ext_addr, ext_port
        self.ca_int, self.ext_int = int.from_bytes(ca), int.from_bytes(ext_addr)
        self.ca_port_bytes, self.ext_port_bytes = _PORT.pack(ca_port), _PORT.pack(ext_port)
        self.out_ip = words_delta(ca, ext_addr)
        self.in_ip = words_delta(ext_addr, ca)
        port_out = words_delta(self.ca_port_bytes, self.ext_port_bytes)
        port_in = words_delta(self.ext_port_bytes, self.ca_port_bytes)
        icmp = protocol == IPPROTO_ICMP
        self.out_l4 = port_out if icmp else self.out_ip + port_out
        self.in_l4 = port_in if icmp else self.in_ip + port_in
        self.sessions = 0  # sessions through it; at 0 (and not pinned) its port is freed
        self.pinned = False  # a port forward holds it: kept with no session
        self.reserved = reserved  # its port is a forward's reservation, not an allocation
        # False: a withdrawn forward's, whose port a new forward of the same external
        # endpoint took over; its sessions run on, and it frees no port when they end.
        self.owns_port = True


class Session:
    """One conversation through a mapping: its remote end, state, idle deadline and
    what it carried. ``opener`` is 0 when the tenant opened it, 1 when it came in
    through a port forward (TCP's ORIGINAL direction is the opener's)."""

    __slots__ = (
        "expires",
        "in_bytes",
        "in_key",
        "in_packets",
        "mapping",
        "opener",
        "out_bytes",
        "out_key",
        "out_packets",
        "protocol",
        "remote",
        "remote_port",
        "start",
        "state",
        "tenant",
    )

    def __init__(
        self,
        tenant: Tenant,
        mapping: Mapping,
        protocol: int,
        remote: bytes,
        remote_port: int,
        state: int,
        opener: int,
        now: float,
    ) -> None:
        self.tenant = tenant
        self.mapping = mapping
        self.protocol = protocol
        self.remote, self.remote_port = remote, remote_port
        self.state = state
        self.opener = opener
        self.start = self.expires = now
        self.out_packets = self.out_bytes = self.in_packets = self.in_bytes = 0
        # Its keys in the table's two dicts (the same tuples: no copy per session):
        # ``out_key``'s and ``in_key``'s, made from the mapping's ints and one of the
        # remote address, shared (a session's memory bounds the table).
        remote_int = int.from_bytes(remote)
        self.out_key = (
            tenant.rdid,
            protocol,
            mapping.ca_int,
            mapping.ca_port,
            remote_int,
            remote_port,
        )
        self.in_key = (protocol, mapping.ext_int, mapping.ext_port, remote_int, remote_port)

    def __repr__(self) -> str:
        m = self.mapping
        return (
            f"Session({self.tenant.rdid!r}, proto={self.protocol}, {m.ca.hex()}:{m.ca_port}"
            f" -> {m.ext_addr.hex()}:{m.ext_port} <-> {self.remote.hex()}:{self.remote_port},"
            f" state={self.state})"
        )


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A translation log entry (abuse handling: who held which external address and
    port, when). ``end`` is None for an opening, and for a session still open at
    shutdown. Times are the table's monotonic ``now``; the io side turns them into
    wall-clock time when it writes the log."""

    event: str  # "open", "close", or "open_at_shutdown"
    rdid: str
    protocol: int
    ca: bytes
    ca_port: int
    remote: bytes
    remote_port: int
    ext_addr: bytes
    ext_port: int
    start: float
    end: float | None
    out_packets: int
    out_bytes: int
    in_packets: int
    in_bytes: int

    @classmethod
    def of(cls, event: str, session: Session, end: float | None) -> LogRecord:
        m = session.mapping
        return cls(
            event,
            session.tenant.rdid,
            session.protocol,
            m.ca,
            m.ca_port,
            session.remote,
            session.remote_port,
            m.ext_addr,
            m.ext_port,
            session.start,
            end,
            session.out_packets,
            session.out_bytes,
            session.in_packets,
            session.in_bytes,
        )
