"""The two kinds of failure nvgw knows, kept apart by whose fault they are.

``BadPacket`` is the peer's fault: bytes from the network that do not parse. Every
``parse_*`` function in ``gateway.wire`` raises only this, with a ``Drop`` reason, and
the data plane turns it into a counter (never a log line, never a crash).

``ConfigError`` is the operator's fault: a config file or an API change that does not
make a consistent policy. It carries every problem found in one pass, each naming
the file, the path in the document and the offending value, so that one run of
``nvgw check`` shows everything that needs fixing.

This module imports nothing from ``gateway``: every layer may import it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Drop(enum.IntEnum):
    """Why a packet was dropped.

    Each member is exactly one counter, one metric label value (its lower-case name)
    and one line in the README's drop table. Values are list indexes for the
    per-reason counters, so members are only ever appended.
    """

    # Outer IP (what the raw GRE socket or the provider link hands us).
    TRUNCATED = 0  # shorter than the headers it claims to carry
    IP_VERSION = 1  # outer IP version is neither 4 nor 6
    IP_HEADER_LENGTH = 2  # IPv4 IHL < 5, or total length shorter than the header
    IP_FRAGMENT = 3  # outer IPv4 fragment: NVGRE is never fragmented by its senders
    NOT_GRE = 4  # outer protocol / next header is not GRE (47)
    # GRE header, RFC 7637 section 3.2: C=0, K=1, S=0, version 0, protocol 0x6558.
    GRE_CHECKSUM = 5  # C bit set
    GRE_ROUTING = 6  # R bit set (RFC 1701 routing present)
    GRE_SEQUENCE = 7  # S bit set
    GRE_VERSION = 8  # version field is not 0
    GRE_NO_KEY = 9  # K bit clear: no VSID
    GRE_PROTOCOL = 10  # protocol type is not transparent Ethernet bridging (0x6558)
    VSID_RESERVED = 11  # VSID 0..4095 or 0xFFFFFF (RFC 7637 section 3.2)
    # The inner (customer) frame.
    INNER_TRUNCATED = 12  # shorter than an Ethernet header
    INNER_VLAN = 13  # carries an 802.1Q tag, which RFC 7637 section 3.2 forbids
    INNER_MALFORMED = 14  # inner ARP/IP/L4 header inconsistent with its own lengths
    # Policy: the data plane's refusals (returned as drops, never raised).
    VSID_UNKNOWN = 15  # the VSID belongs to no routing domain of the policy
    FOREIGN_PA = 16  # the outer destination is not a PA of this node
    NO_PORT = 17  # no local VM adapter has that VSID and destination MAC
    VSID_MISMATCH = 18  # the destination MAC is a local adapter of another VSID
    SPOOFED_PA = 19  # the inner source's lookup record has another PA than the outer source
    SPOOFED_SOURCE = 20  # a VM sent with a MAC or CA that is not its own
    NO_RECORD = 21  # no lookup record for the destination (MAC, or CA behind a route)
    NO_ROUTE = 22  # no customer route to the destination in the routing domain
    BROADCAST = 23  # broadcast or multicast: not forwarded (ARP is answered locally)
    ARP_UNANSWERED = 24  # ARP nvgw does not answer: unknown target, gratuitous, a reply
    ARP_FROM_PROVIDER = 25  # ARP inside NVGRE: never crosses the provider network
    UNSUPPORTED = 26  # an inner ethertype nvgw does not forward (IPv6 until it lands)
    TTL_EXPIRED = 27  # routing between VSIDs would take the TTL to 0
    TOO_BIG = 28  # over the port's MTU; fragmentation-needed is sent back when DF is set
    TX_FULL = 29  # an output queue (TAP or socket) was full: shed, not buffered
    PORT_DOWN = 30  # the VM's TAP is down or gone (VM stopped, mid-migration)
    PROVIDER_UNREACHABLE = 31  # the kernel could not send to the destination PA
    # The provider link (IP-Rewrite PAs): ARP for our PAs, or a reply about a PA we
    # send to, whose sender MAC is not the frame's unicast source; or such a reply
    # that answers no request of ours (never learned: it would steer our packets).
    ARP_REFUSED = 32
    FOREIGN_MAC = 33  # a provider-link frame for another host's unicast MAC
    # The per-packet barrier (gateway/io): the data plane raised on this packet, which
    # it must never do; dropped alone, counted, logged (rate-limited) as the bug it is.
    INTERNAL_ERROR = 34
    IP_CHECKSUM = 35  # outer IPv4 header checksum wrong (AF_PACKET: the kernel checks none)
    # A gateway's own addresses (its CAs, its TAP addresses): echo requests are
    # answered; anything else sent to them is counted here (it runs no service there).
    TO_GATEWAY = 36
    # NAPT, internet egress (gateway/dataplane/napt): each verdict its own reason, so
    # a tenant at its limit is told apart from a full table or a pool out of ports.
    NAPT_TENANT_LIMIT = 37  # the routing domain holds as many NAT sessions as it may
    NAPT_TABLE_FULL = 38  # the NAT table holds as many sessions as the node allows
    NAPT_PORTS_EXHAUSTED = 39  # no external port of that protocol free on any pool address
    NAPT_NO_SESSION = 40  # belongs to no NAT session and may not open one
    NAPT_FRAGMENT = 41  # an IPv4 fragment: NAPT translates whole datagrams only
    NAPT_UNSUPPORTED = 42  # neither TCP, UDP, ICMP echo nor an ICMP error about a session
    # Site-to-site tunnels (WireGuard, gateway/wireguard): the core's reasons
    # (``gateway.wireguard.Reason``, counted per reason by each device) in the groups
    # an operator acts on; ``tunnel_source`` is the gateway's own cryptokey check.
    TUNNEL_MALFORMED = 43  # no WireGuard message, or a decrypted packet that is no IP packet
    TUNNEL_UNAUTHENTICATED = 44  # forged, corrupted or not for us: mac1, handshake, tag, index
    TUNNEL_REPLAYED = 45  # a transport counter or handshake timestamp seen already
    TUNNEL_UNDER_LOAD = 46  # refused for load: cookie required, initiation flood, index table full
    TUNNEL_KEY_EXPIRED = 47  # transport data on a keypair past reject-after-time
    TUNNEL_NO_SESSION = 48  # to send, but no endpoint yet, the queue full, or handshakes gave up
    TUNNEL_SOURCE = 49  # decrypted, but its source is not in the peer's allowed IPs

    @property
    def label(self) -> str:
        """The metric label value: stable, lower case, one word."""
        return self.name.lower()


class BadPacket(Exception):
    """Hostile bytes: the only exception a wire parser may raise."""

    __slots__ = ("reason",)

    def __init__(self, reason: Drop) -> None:
        super().__init__(reason.name)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a policy document.

    ``path`` is where it sits in the document (``routing_domains[0].virtual_subnets[1].vsid``),
    ``value`` what was found there. ``file`` and ``line`` are filled in by the loader that
    read the document; the pure policy code knows neither.
    """

    path: str
    value: object
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<policy>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        shown = _show(self.value)
        return (
            f"{where}: {self.path} = {shown}: {self.message}"
            if self.path
            else f"{where}: {self.message}"
        )


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


class ConfigError(Exception):
    """A policy that cannot be used, with every problem found in one pass."""

    def __init__(self, issues: list[ConfigIssue] | tuple[ConfigIssue, ...]) -> None:
        if not issues:
            raise ValueError("ConfigError needs at least one issue")
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))
