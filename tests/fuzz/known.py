"""Findings the fuzzer meets today, each with the smallest frame that shows it.

Each is a bug outside the fuzzer (the data plane's, as the owner says); the CI
slice lets these signatures pass and fails on any other, and test_fuzz.py re-judges
each frame under ``xfail(strict=True)``: when the bug is fixed that test passes,
fails as strict, and the entry comes out of this list (after which the slice
enforces it like any other rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.wire import BROADCAST_MAC, build_ethernet, encapsulate_ipv4

from .frames import PORT, PROVIDER, ipv4_frame

BLUE1, BLUE2, RED1 = (
    bytes.fromhex("000000000011"),
    bytes.fromhex("000000000012"),
    bytes.fromhex("000000000021"),
)
RED2 = bytes.fromhex("000000000022")
CA11, CA12 = bytes([10, 10, 10, 11]), bytes([10, 10, 10, 12])
PA1, PA2 = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])


@dataclass(frozen=True)
class Known:
    signature: str
    owner: str  # who fixes it, and what the fix is
    policy: str
    node: str
    entry: str
    port: str | None
    frame: bytes


def _long_ip(frame: bytes, total: int) -> bytes:
    """``frame`` with its IPv4 total length set to ``total`` (checksum left as it was)."""
    return frame[:16] + total.to_bytes(2, "big") + frame[18:]


def _ihl(frame: bytes, ihl: int) -> bytes:
    return frame[:14] + bytes([0x40 | ihl]) + frame[15:]


_PING = ipv4_frame(BLUE2, BLUE1, CA11, CA12, 0)  # blue1 to blue2 in two-hosts
_LOCAL_PING = ipv4_frame(BLUE2, BLUE1, bytes([10, 10, 10, 10]), bytes([10, 10, 10, 20]), 0)
_FORWARDED = (
    "dataplane: a tenant IPv4 header is checked for version and IHL only (from_port) "
    "or version only (from_provider); a total length past the frame, or under the "
    "header, or an IHL under 5 from the provider network, is forwarded as it came. "
    "Drop it as inner_malformed (the README's meaning): the IHL is in the flow key, "
    "the total length is one more read"
)

KNOWN: tuple[Known, ...] = (
    Known(
        "output: from_port -> port: an IPv4 header that does not parse (truncated)",
        _FORWARDED,
        "single-host",
        "host1",
        PORT,
        "blue1",
        _long_ip(_LOCAL_PING, 1000),
    ),
    Known(
        "output: from_port -> NVGRE: an IPv4 header that does not parse (truncated)",
        _FORWARDED,
        "two-hosts",
        "host1",
        PORT,
        "blue1",
        _long_ip(_PING, 1000),
    ),
    Known(
        "output: from_port -> port: an IPv4 header that does not parse (inner_malformed)",
        _FORWARDED,
        "single-host",
        "host1",
        PORT,
        "blue1",
        _long_ip(_LOCAL_PING, 10),
    ),
    Known(
        "output: from_port -> NVGRE: an IPv4 header that does not parse (inner_malformed)",
        _FORWARDED,
        "two-hosts",
        "host1",
        PORT,
        "blue1",
        _long_ip(_PING, 10),
    ),
    Known(
        "output: from_provider -> port: an IPv4 header that does not parse (truncated)",
        _FORWARDED,
        "two-hosts",
        "host2",
        PROVIDER,
        None,
        encapsulate_ipv4(PA1, PA2, 5010, 0, _long_ip(_PING, 1000)),
    ),
    Known(
        "output: from_provider -> port: an IPv4 header that does not parse (inner_malformed)",
        _FORWARDED,
        "two-hosts",
        "host2",
        PROVIDER,
        None,
        encapsulate_ipv4(PA1, PA2, 5010, 0, _ihl(_PING, 4)),
    ),
    Known(
        "output: from_port -> port: a group address as Ethernet source",
        "dataplane (_too_big): fragmentation-needed for an oversized frame sent to a "
        "broadcast or multicast MAC goes back with that group MAC as its Ethernet source; "
        "RFC 1122 sec. 3.2.2 sends no ICMP error for a link-layer broadcast: count "
        "too_big and send nothing (or answer from the router MAC)",
        "two-hosts",
        "host1",
        PORT,
        "blue1",
        build_ethernet(BROADCAST_MAC, BLUE1, 0x0800)
        + ipv4_frame(BLUE2, BLUE1, CA11, CA12, 1, payload=1500)[14:],
    ),
    Known(
        "output: from_port -> link: ARP not on behalf of an IP-Rewrite PA of ours",
        "dataplane (_ipv4_from_port) or policy: an encap VM sending to an IP-Rewrite "
        "record in its VSID is rewritten with its host's NVGRE PA (a kernel address) as "
        "source, and the daemon ARPs and sends for that address; the far host drops it "
        "as spoofed_pa. Send it as NVGRE to the record's host, or refuse mixed rules in "
        "one VSID in the validator",
        "mixed-rule",
        "host1",
        PORT,
        "blue1",
        ipv4_frame(BLUE2, BLUE1, CA11, CA12, 1),
    ),
    Known(
        "output: from_port -> NVGRE: source and destination PAs of two families",
        "dataplane (_ipv4_from_port): a port whose record has an IPv6 PA (node_plan "
        "refuses such a node, but nvgw trace and replay build it) encapsulates toward "
        "an IPv4 PA from its IPv6 PA; count provider_unreachable as for IPv6 destinations",
        "dual-stack",
        "host3",
        PORT,
        "red2",
        ipv4_frame(RED1, RED2, CA12, CA11, 0),
    ),
)

# The same root cause as a KNOWN entry, met only once the neighbour is learned.
SAME_CAUSE = {
    "output: from_port -> link: IPv4 between addresses that are not IP-Rewrite PAs": (
        "output: from_port -> link: ARP not on behalf of an IP-Rewrite PA of ours"
    ),
}
ALLOWED = frozenset(k.signature for k in KNOWN) | frozenset(SAME_CAUSE)
