"""The NAPT core as a fuzz target: one small table, two tenants, hostile datagrams.

The table has two external addresses with three ports each per protocol, room for
12 sessions, 8 per tenant, 4 log records, and two port forwards; Blue and Red
both hold the CA 10.0.0.1 (overlapping tenants), Blue's sessions are logged. The
seeds are IPv4 datagrams built with gateway.wire: each tenant's TCP (SYN, ACK, FIN,
RST), UDP (with and without a checksum), ICMP echo, an echo reply, an ICMP error
about a datagram it received, a fragment and a protocol NAPT does not carry;
from the internet, replies to the sessions the outbound seeds opened in setting up,
ICMP errors quoting what those sessions sent (port unreachable, fragmentation
needed, time exceeded; quotes of 8 bytes and whole), the same with forged quotes,
new connections to the port forwards, unsolicited datagrams. A share of inbound
inputs is built instead from a session live at that moment (its port may be newer
than the seeds'). Inputs are mutated and truncated (``mutate.py``), half of them
with every checksum then made right again, so that the translation of a datagram
that would pass a checksum check is checked; ``now`` steps forward (with jumps),
``expire`` runs now and then with small batches, and the log is drained.

The oracle, per input: no exception; a ``Session`` or a ``Drop``, nothing else; a
dropped datagram left as it was; a translated one carries the session's external
address and port out (its CA and port in), belongs to the session its own tuple
names (a tenant's datagram to that tenant's session), and every checksum that held
before holds after (IP header, TCP/UDP/ICMP, an error's quoted IP header). After
every input: the session count within the table's and each tenant's limit and equal
to both indexes and the expiry queues, mappings no more than sessions and forwards,
the log within its capacity; every 16 inputs, the ports in use exactly those of the
mappings; after ``expire``, at most its batch ended and, when fewer, none left idle.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Final

from gateway.dataplane.napt import (
    Napt,
    Session,
    Tenant,
    Timeouts,
    in_key,
    napt_inbound,
    napt_outbound,
    out_key,
)
from gateway.errors import Drop
from gateway.wire import (
    ICMP_CODE_FRAGMENTATION_NEEDED,
    ICMP_DEST_UNREACHABLE,
    ICMP_TIME_EXCEEDED,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    build_icmp_echo,
    build_icmp_time_exceeded,
    build_icmp_unreachable,
    build_ipv4,
    build_tcp_v4,
    build_udp_v4,
    checksum_ok,
    internet_checksum,
    l4_checksum_ok_v4,
    l4_checksum_v4,
)

from .cores import Step, exception
from .frames import Seed
from .mutate import mutate

_IPPROTO_GRE: Final = 47
EXT: Final = ("192.0.2.1", "192.0.2.2")
REMOTES: Final = ("203.0.113.1", "203.0.113.2")
ROUTER: Final = "198.51.100.7"
BLUE, RED = "{00000000-0000-0000-0000-00000000b100}", "{00000000-0000-0000-0000-00000000d200}"
CAS: Final = {BLUE: ("10.0.0.1", "10.0.0.2"), RED: ("10.0.0.1", "172.16.0.5")}
PORTS: Final = (40000, 40002)
MAX_SESSIONS: Final = 12
TENANT_SESSIONS: Final = 8
LOG_CAPACITY: Final = 4
TIMEOUTS: Final = Timeouts(
    tcp_syn_sent_s=20,
    tcp_syn_recv_s=10,
    tcp_established_s=300,
    tcp_fin_wait_s=20,
    tcp_close_wait_s=10,
    tcp_last_ack_s=5,
    tcp_time_wait_s=20,
    tcp_close_s=2,
    udp_unreplied_s=30,
    udp_stream_s=60,
    icmp_s=30,
)
SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04
INBOUND_SHARE: Final = 0.5
LIVE_SHARE: Final = 0.3  # inbound inputs built from a session live now
AS_IS_SHARE: Final = 0.1
FIXED_SHARE: Final = 0.5  # inputs whose checksums are made right after mutation
EXPIRE_SHARE: Final = 0.03
LOG_SHARE: Final = 0.05
JUMP_SHARE: Final = 0.005  # inputs after which the clock jumps 1-40 s
AUDIT_EVERY: Final = 16  # inputs between audits of the port allocators
_ICMP_ERRORS: Final = (ICMP_DEST_UNREACHABLE, ICMP_TIME_EXCEEDED, 12)
_PORT_UNREACHABLE: Final = 3
_L4_NEEDED: Final = {IPPROTO_TCP: 20, IPPROTO_UDP: 8}


def _a(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def _datagram(src: str, dst: str, protocol: int, payload: bytes, **ip: int) -> bytes:
    return build_ipv4(_a(src), _a(dst), protocol, len(payload), **ip) + payload


def tcp(src: str, dst: str, sport: int, dport: int, flags: int) -> bytes:
    segment = build_tcp_v4(_a(src), _a(dst), sport, dport, b"data", seq=1000, flags=flags)
    return _datagram(src, dst, IPPROTO_TCP, segment)


def udp(src: str, dst: str, sport: int, dport: int, checksum: bool = True) -> bytes:
    segment = bytearray(build_udp_v4(_a(src), _a(dst), sport, dport, b"query"))
    if not checksum:
        segment[6:8] = b"\0\0"
    return _datagram(src, dst, IPPROTO_UDP, bytes(segment))


def echo(src: str, dst: str, ident: int, reply: bool = False) -> bytes:
    return _datagram(src, dst, IPPROTO_ICMP, build_icmp_echo(ident, 1, b"ping", reply=reply))


def error(src: str, dst: str, about: bytes, kind: int, whole: bool = False) -> bytes:
    """An ICMP error from ``src`` quoting ``about`` (8 bytes of it, or all)."""
    if kind == ICMP_TIME_EXCEEDED:
        message = bytearray(build_icmp_time_exceeded(about))
    else:
        code = ICMP_CODE_FRAGMENTATION_NEEDED if kind == 4 else _PORT_UNREACHABLE
        message = bytearray(build_icmp_unreachable(code, about, 1280 if kind == 4 else 0))
    if whole:
        message[8:] = about
        message[2:4] = b"\0\0"
        message[2:4] = internet_checksum(message).to_bytes(2, "big")
    return _datagram(src, dst, IPPROTO_ICMP, bytes(message))


def _fields(data: bytes) -> tuple[tuple[int, int], ...]:
    ip = ((0, 1), (1, 1), (2, 2), (4, 2), (6, 2), (8, 1), (9, 1), (10, 2), (12, 4), (16, 4))
    l4 = ((20, 1), (21, 1), (20, 2), (22, 2), (24, 2), (26, 2), (33, 1), (36, 2))
    quote = tuple((28 + at, size) for at, size in ip + l4)
    return ip + l4 + quote if len(data) > 28 and data[9] == IPPROTO_ICMP else ip + l4


def fix_checksums(buf: bytearray) -> None:
    """Make every checksum of an IPv4 datagram right, where its lengths allow: an
    ICMP error's quoted IP header, the TCP/UDP/ICMP checksum, the IP header's."""
    if len(buf) < 20 or buf[0] >> 4 != 4:
        return
    ihl, end, protocol = (buf[0] & 0x0F) * 4, int.from_bytes(buf[2:4], "big"), buf[9]
    if ihl < 20 or ihl > len(buf):
        return
    if ihl <= end <= len(buf):
        if protocol == IPPROTO_ICMP and end - ihl >= 8:
            quote = ihl + 8
            if buf[ihl] in _ICMP_ERRORS and end - quote >= 20:
                qihl = (buf[quote] & 0x0F) * 4
                if qihl >= 20 and quote + qihl <= end:
                    _set_sum(buf, quote + 10, quote, quote + qihl)
            _set_sum(buf, ihl + 2, ihl, end)
        elif protocol in _L4_NEEDED and end - ihl >= _L4_NEEDED[protocol]:
            at = ihl + (16 if protocol == IPPROTO_TCP else 6)
            if protocol == IPPROTO_TCP or buf[at : at + 2] != b"\0\0":
                buf[at : at + 2] = b"\0\0"
                value = l4_checksum_v4(bytes(buf[12:16]), bytes(buf[16:20]), protocol, buf[ihl:end])
                buf[at : at + 2] = value.to_bytes(2, "big")
    _set_sum(buf, 10, 0, ihl)


def _set_sum(buf: bytearray, at: int, start: int, stop: int) -> None:
    """The checksum at ``at`` made right for ``buf[start:stop]``, which holds it."""
    buf[at : at + 2] = b"\0\0"
    buf[at : at + 2] = internet_checksum(buf[start:stop]).to_bytes(2, "big")


def checksums(buf: bytes | bytearray) -> dict[str, bool]:
    """Whether each checksum the datagram has room for holds (the keys: which)."""
    held: dict[str, bool] = {}
    if len(buf) < 20:
        return held
    ihl, end, protocol = (buf[0] & 0x0F) * 4, int.from_bytes(buf[2:4], "big"), buf[9]
    if ihl < 20 or not ihl <= end <= len(buf):
        return held
    held["ip"] = checksum_ok(buf[:ihl])
    if protocol == IPPROTO_ICMP and end - ihl >= 8:
        held["icmp"] = checksum_ok(buf[ihl:end])
        quote = ihl + 8
        if buf[ihl] in _ICMP_ERRORS and end - quote >= 20:
            qihl = (buf[quote] & 0x0F) * 4
            if qihl >= 20 and quote + qihl <= end:
                held["quoted ip"] = checksum_ok(buf[quote : quote + qihl])
    elif protocol in (IPPROTO_TCP, IPPROTO_UDP) and end - ihl >= 8:
        held["l4"] = l4_checksum_ok_v4(bytes(buf[12:16]), bytes(buf[16:20]), protocol, buf[ihl:end])
    return held


class NaptCore:
    """The table for one chunk, its seeds, and the clock."""

    def __init__(self, rng: random.Random) -> None:
        napt = self.napt = Napt(
            [_a(e) for e in EXT],
            max_sessions=MAX_SESSIONS,
            timeouts=TIMEOUTS,
            ports=PORTS,
            log_capacity=LOG_CAPACITY,
            seed=rng.randrange(1 << 32),
        )
        self.tenants = {
            BLUE: napt.tenant(BLUE, TENANT_SESSIONS, log=True),
            RED: napt.tenant(RED, TENANT_SESSIONS),
        }
        napt.forward(IPPROTO_TCP, _a(EXT[0]), 8080, self.tenants[BLUE], _a(CAS[BLUE][0]), 80)
        napt.forward(IPPROTO_UDP, _a(EXT[1]), 5353, self.tenants[RED], _a(CAS[RED][0]), 53)
        self.outbound: list[Seed] = []
        for rdid, cas in CAS.items():
            for ca in cas:
                self.outbound += [_seed(rdid, d, w) for d, w in _tenant_datagrams(ca)]
        self.now = 0.0
        self.judged = 0  # inputs whose bounds were checked: every AUDIT_EVERY-th audits
        inbound = []
        for seed in self.outbound:  # open the sessions the replies below answer
            sent = bytearray(seed.data)
            session = napt_outbound(
                napt, self.tenants[seed.what.split(" ")[0]], memoryview(sent), 0.0
            )
            if session.__class__ is Session:
                inbound += _replies(session, bytes(sent))
        inbound += [
            (tcp(REMOTES[0], EXT[0], 5555, 8080, SYN), "to the TCP forward"),
            (udp(REMOTES[1], EXT[1], 5555, 5353), "to the UDP forward"),
            (udp(REMOTES[0], EXT[0], 53, PORTS[0] + 3), "unsolicited"),
            (echo(REMOTES[0], EXT[0], 77), "echo request to the NAT"),
        ]
        self.inbound = [Seed("napt_inbound", -1, d, _fields(d), w) for d, w in inbound]
        self.tokens = {
            4: tuple(_a(x) for x in (*EXT, *REMOTES, ROUTER, *CAS[BLUE], *CAS[RED])),
            2: tuple(p.to_bytes(2, "big") for p in (*range(PORTS[0], PORTS[1] + 1), 8080, 5353, 0)),
            1: tuple(bytes([v]) for v in (1, 6, 17, 47, 0, 3, 8, 11, 12, SYN, ACK | SYN, FIN)),
        }

    def step(self, rng: random.Random) -> Step:
        self.now += rng.expovariate(100.0)
        if rng.random() < JUMP_SHARE:
            self.now += rng.uniform(1.0, 40.0)
        roll = rng.random()
        if roll < EXPIRE_SHARE:
            return self._expire(rng)
        if roll < EXPIRE_SHARE + LOG_SHARE:
            self.napt.take_log()
        inbound = rng.random() < INBOUND_SHARE
        if inbound and self.napt.by_in and rng.random() < LIVE_SHARE:
            live = rng.choice(list(self.napt.by_in.values()))
            base = rng.choice(_replies(live, _sent_by(live)))
            seed = Seed("napt_inbound", -1, base[0], _fields(base[0]), f"live {base[1]}")
        else:
            seed = rng.choice(self.inbound if inbound else self.outbound)
        donors = self.inbound if inbound else self.outbound
        data = seed.data if rng.random() < AS_IS_SHARE else mutate(rng, seed, donors, self.tokens)
        buf = bytearray(data)
        if rng.random() < FIXED_SHARE:
            fix_checksums(buf)
        tenant = None if inbound else self.tenants[seed.what.split(" ")[0]]
        return self._judge(seed, bytes(buf), tenant)

    # -- the oracle ---------------------------------------------------------------

    def _judge(self, seed: Seed, data: bytes, tenant: Tenant | None) -> Step:
        entry = "napt_inbound" if tenant is None else "napt_outbound"
        buf = bytearray(data)
        try:
            if tenant is None:
                verdict = napt_inbound(self.napt, memoryview(buf), self.now)
            else:
                verdict = napt_outbound(self.napt, tenant, memoryview(buf), self.now)
        except Exception as error:
            return Step(entry, seed.what, data, "raised", [exception(error)])
        found = self._bounds()
        if verdict.__class__ is Drop:
            if buf != data:
                found.append(("dropped", f"{entry}: dropped as {verdict.name}, but rewritten"))
            return Step(entry, seed.what, data, f"drop:{verdict.name.lower()}", found)
        if verdict.__class__ is not Session:
            found.append(("verdict", f"{entry}: returned {type(verdict).__name__}"))
            return Step(entry, seed.what, data, "other", found)
        found += _translated(entry, data, buf, verdict, tenant)
        error = (
            len(data) > 20 and data[9] == IPPROTO_ICMP and data[(data[0] & 15) * 4] in _ICMP_ERRORS
        )
        return Step(entry, seed.what, data, "error" if error else "session", found)

    def _expire(self, rng: random.Random) -> Step:
        napt, limit = self.napt, rng.choice((1, 3, 256))
        try:
            ended = napt.expire(self.now, limit)
        except Exception as error:
            return Step("napt_expire", "expire", b"", "raised", [exception(error)])
        found = self._bounds() + self._audit()
        if ended > limit:
            found.append(("expire", f"ended {ended} sessions in a batch of {limit}"))
        elif ended < limit and any(s.expires <= self.now for s in napt.by_out.values()):
            found.append(("expire", f"ended {ended} of a batch of {limit}, idle ones left"))
        return Step("napt_expire", "expire", b"", f"ended:{min(ended, 2)}", found)

    def _bounds(self) -> list[tuple[str, str]]:
        napt, found = self.napt, []
        held = (len(napt.by_out), len(napt.by_in), sum(len(q) for q in napt.queues))
        tenants = [t.sessions for t in self.tenants.values()]
        if napt.count > MAX_SESSIONS or max(tenants) > TENANT_SESSIONS:
            found.append(("bounds", f"{napt.count} sessions, tenants {tenants}"))
        if held != (napt.count,) * 3 or sum(tenants) != napt.count:
            found.append(("bounds", f"{napt.count} sessions, indexes and queues {held}"))
        if len(napt.mappings) > napt.count + len(napt.forwards):
            found.append(("bounds", f"{len(napt.mappings)} mappings for {napt.count} sessions"))
        if len(napt.log) > LOG_CAPACITY:
            found.append(("bounds", f"{len(napt.log)} log records"))
        self.judged += 1
        if self.judged % AUDIT_EVERY == 0:
            found += self._audit()
        return found

    def _audit(self) -> list[tuple[str, str]]:
        """The ports in use are exactly the mappings' (none leaked, none shared)."""
        napt = self.napt
        held = {(m.ext_addr, m.key[1], m.ext_port) for m in napt.mappings.values()}
        in_use = {
            (address, protocol, port)
            for (address, protocol), allocator in napt.pool.allocators.items()
            for port in (*range(PORTS[0], PORTS[1] + 1), 8080, 5353)
            if allocator.in_use(port)
        }
        if held != in_use or len(held) != len(napt.mappings):
            return [("ports", f"{len(in_use)} ports in use for {len(napt.mappings)} mappings")]
        return []


def _seed(rdid: str, data: bytes, what: str) -> Seed:
    return Seed("napt_outbound", -1, data, _fields(data), f"{rdid} {what}")


def _tenant_datagrams(ca: str) -> list[tuple[bytes, str]]:
    """What one VM sends: openings, segments, and what opens nothing."""
    remote = REMOTES[0]
    received = udp(REMOTES[1], ca, 53, 2001)  # what came in through its UDP session
    return [
        (tcp(ca, remote, 1001, 443, SYN), "TCP SYN"),
        (tcp(ca, remote, 1001, 443, ACK), "TCP ACK"),
        (tcp(ca, remote, 1001, 443, FIN | ACK), "TCP FIN"),
        (tcp(ca, remote, 1001, 443, RST), "TCP RST"),
        (tcp(ca, REMOTES[1], 80, 4444, SYN | ACK), "TCP SYN-ACK from the forward"),
        (udp(ca, remote, 2000, 53), "UDP"),
        (udp(ca, REMOTES[1], 2001, 53, checksum=False), "UDP without a checksum"),
        (echo(ca, remote, 77), "echo request"),
        (echo(ca, remote, 78, reply=True), "echo reply"),
        (error(ca, REMOTES[1], received, ICMP_DEST_UNREACHABLE), "port unreachable"),
        (_datagram(ca, remote, IPPROTO_UDP, bytes(16), flags=1), "fragment"),
        (_datagram(ca, remote, _IPPROTO_GRE, bytes(16)), "GRE"),
    ]


def _sent_by(session: Session) -> bytes:
    """A datagram as ``session`` sent it out (from the external address and port)."""
    m, remote = session.mapping, str(ipaddress.IPv4Address(session.remote))
    ext = str(ipaddress.IPv4Address(m.ext_addr))
    if session.protocol == IPPROTO_TCP:
        return tcp(ext, remote, m.ext_port, session.remote_port, ACK)
    if session.protocol == IPPROTO_UDP:
        return udp(ext, remote, m.ext_port, session.remote_port)
    return echo(ext, remote, m.ext_port)


def _replies(session: Session, sent: bytes) -> list[tuple[bytes, str]]:
    """What the internet sends back to a session that sent ``sent``: replies, ICMP
    errors quoting it (8 bytes and whole), and errors whose quote is forged."""
    m, remote = session.mapping, str(ipaddress.IPv4Address(session.remote))
    ext = str(ipaddress.IPv4Address(m.ext_addr))
    protocol = session.protocol
    if protocol == IPPROTO_TCP:
        found = [
            (tcp(remote, ext, session.remote_port, m.ext_port, flags), f"TCP {name} reply")
            for flags, name in (
                (SYN | ACK, "SYN-ACK"),
                (ACK, "ACK"),
                (FIN | ACK, "FIN"),
                (RST, "RST"),
            )
        ]
    elif protocol == IPPROTO_UDP:
        found = [(udp(remote, ext, session.remote_port, m.ext_port), "UDP reply")]
    else:
        found = [(echo(remote, ext, m.ext_port, reply=True), "echo reply")]
    forged = bytearray(sent)
    forged[21] ^= 1  # another source port (or echo identifier's low byte... its type)
    if protocol == IPPROTO_ICMP:
        forged[21], forged[25] = sent[21], sent[25] ^ 1
    for kind, name in (
        (ICMP_DEST_UNREACHABLE, "unreachable"),
        (4, "frag needed"),
        (ICMP_TIME_EXCEEDED, "time exceeded"),
    ):
        found.append((error(ROUTER, ext, sent, kind), f"{name} about a session"))
    found += [
        (error(remote, ext, sent, ICMP_DEST_UNREACHABLE, whole=True), "whole quote"),
        (error(ROUTER, ext, bytes(forged), ICMP_DEST_UNREACHABLE), "forged quote"),
        (
            error(ROUTER, EXT[1] if ext == EXT[0] else EXT[0], sent, ICMP_TIME_EXCEEDED),
            "to the other address",
        ),
    ]
    return found


def _translated(
    entry: str, data: bytes, buf: bytearray, session: Session, tenant: Tenant | None
) -> list[tuple[str, str]]:
    """A translated datagram: the session's addresses, the session its tuple names,
    and every checksum that held before still holding."""
    found: list[tuple[str, str]] = []
    m, ihl, protocol = session.mapping, (data[0] & 0x0F) * 4, data[9]
    is_error = protocol == IPPROTO_ICMP and data[ihl] in _ICMP_ERRORS
    if tenant is not None:
        if session.tenant is not tenant or buf[12:16] != m.ext_addr:
            found.append(("misdirected", f"{entry}: left as another tenant's or address"))
        if not is_error:
            if protocol == IPPROTO_ICMP:
                ports, at = (int.from_bytes(data[ihl + 4 : ihl + 6], "big"), 0), ihl + 4
            else:
                ports, at = (
                    (
                        int.from_bytes(data[ihl : ihl + 2], "big"),
                        int.from_bytes(data[ihl + 2 : ihl + 4], "big"),
                    ),
                    ihl,
                )
            key = out_key(tenant.rdid, protocol, data[12:16], ports[0], data[16:20], ports[1])
            if session.out_key != key or int.from_bytes(buf[at : at + 2], "big") != m.ext_port:
                found.append(("misdirected", f"{entry}: translated by a session of another flow"))
    else:
        if buf[16:20] != m.ca:
            found.append(("misdirected", f"{entry}: delivered to another address than the CA"))
        if not is_error:
            if protocol == IPPROTO_ICMP:
                ports = (0, int.from_bytes(data[ihl + 4 : ihl + 6], "big"))
            else:
                ports = (
                    int.from_bytes(data[ihl : ihl + 2], "big"),
                    int.from_bytes(data[ihl + 2 : ihl + 4], "big"),
                )
            key2 = in_key(protocol, data[16:20], ports[1], data[12:16], ports[0])
            if session.in_key != key2:
                found.append(("misdirected", f"{entry}: delivered by a session of another flow"))
    before, after = checksums(data), checksums(buf)
    for name, held in before.items():
        if held and not after.get(name, False):
            found.append(("checksum", f"{entry}: the {name} checksum held, and not after"))
    return found
