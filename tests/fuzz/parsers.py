"""Every parser in gateway/wire on every input, at the layer the input carries.

A parser may raise ``BadPacket`` and nothing else (gateway/wire/__init__.py), and what
it accepts must be consistent with the bytes: lengths inside the buffer, a view of
the right size. The in-place helpers the data plane runs on parsed packets
(``decrement_ttl``, the address and port rewrites, ``clamp_mss``) must keep a valid
checksum valid (RFC 1624); a port rewrite may also refuse with ``ValueError`` (the
caller's mistake: ICMP has no ports). ``fragment_ipv4`` must give fragments that fit,
each with a valid header checksum.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Final

from gateway.errors import BadPacket
from gateway.wire import (
    ETH_HEADER_SIZE,
    ETHERTYPE_IPV4,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_HEADER_SIZE,
    VLAN_ETHERTYPES,
    VSID_MAX,
    VSID_MIN,
    build_icmp_unreachable,
    checksum_ok,
    clamp_mss,
    decrement_ttl,
    flow_id_of_frame,
    fragment_ipv4,
    l4_checksum_ok_v4,
    parse_arp,
    parse_ethernet,
    parse_gre_nvgre,
    parse_icmp,
    parse_inner_ipv4,
    parse_ipv4,
    parse_ipv6,
    parse_nvgre,
    parse_ports,
    parse_tcp,
    parse_udp,
    rewrite_ipv4_dst,
    rewrite_ipv4_src,
    rewrite_l4_dst_port,
    rewrite_l4_src_port,
)

from .oracle import where

Found = list[tuple[str, str]]
_NEW_ADDRESS: Final = bytes([198, 18, 7, 7])

# Offset-taking parsers, tried now and then at offsets around the buffer's ends.
_AT_OFFSET: Final[tuple[Callable[..., Any], ...]] = (
    parse_ethernet,
    parse_arp,
    parse_ipv4,
    parse_inner_ipv4,
    parse_ipv6,
    parse_icmp,
    parse_ports,
    parse_tcp,
    parse_udp,
    parse_gre_nvgre,
)


def _call(found: Found, name: str, parse: Callable[..., Any], *args: Any) -> Any:
    """``parse(*args)``; None on BadPacket; a finding on anything else."""
    try:
        return parse(*args)
    except BadPacket:
        return None
    except Exception as error:  # the finding: only BadPacket may come out
        found.append(("parser", f"{name}: {type(error).__name__} at {where(error)}"))
        return None


def check_datagram(data: bytes, found: Found) -> None:
    """The outer parsers on an NVGRE datagram, then the frame parsers on its inner frame."""
    packet = _call(found, "parse_nvgre", parse_nvgre, data)
    if packet is not None:
        end = packet.inner_offset + packet.inner_length
        if (
            len(packet.inner) != packet.inner_length
            or end > len(data)
            or not VSID_MIN <= packet.vsid <= VSID_MAX
            or packet.inner_ethertype in VLAN_ETHERTYPES
        ):
            found.append(("parser", "parse_nvgre: accepted bytes inconsistent with its result"))
        else:
            check_frame(bytes(packet.inner), found)
    header = _call(found, "parse_ipv4", parse_ipv4, data)
    if header is not None:
        if not header.header_length <= header.total_length <= len(data):
            found.append(("parser", "parse_ipv4: lengths outside the buffer"))
        _call(found, "parse_gre_nvgre", parse_gre_nvgre, data, header.header_length)
    v6 = _call(found, "parse_ipv6", parse_ipv6, data)
    if v6 is not None and v6.total_length > len(data):
        found.append(("parser", "parse_ipv6: payload length outside the buffer"))


def check_frame(frame: bytes, found: Found) -> None:
    """The Ethernet, ARP, IPv4 and L4 parsers on an Ethernet frame, and the in-place
    helpers on a copy of its IPv4 packet."""
    flow = _call(found, "flow_id_of_frame", flow_id_of_frame, frame)
    if flow is not None and not 0 <= flow <= 0xFF:
        found.append(("parser", "flow_id_of_frame: not 8 bits"))
    eth = _call(found, "parse_ethernet", parse_ethernet, frame)
    if eth is None:
        return
    _call(found, "parse_arp", parse_arp, frame, ETH_HEADER_SIZE)
    if eth.ethertype != ETHERTYPE_IPV4:
        _call(found, "parse_inner_ipv4", parse_inner_ipv4, frame, ETH_HEADER_SIZE)
        return
    header = _call(found, "parse_inner_ipv4", parse_inner_ipv4, frame, ETH_HEADER_SIZE)
    if header is None:
        packet = bytearray(frame[ETH_HEADER_SIZE:])
        _call(found, "rewrite_ipv4_dst", rewrite_ipv4_dst, packet, _NEW_ADDRESS)
        return
    if not header.header_length <= header.total_length <= len(frame) - ETH_HEADER_SIZE:
        found.append(("parser", "parse_inner_ipv4: lengths outside the buffer"))
        return
    packet = bytearray(frame[ETH_HEADER_SIZE : ETH_HEADER_SIZE + header.total_length])
    l4 = header.header_length
    segment = bytes(packet[l4:])
    if header.protocol == IPPROTO_ICMP:
        _call(found, "parse_icmp", parse_icmp, segment)
    elif header.protocol in (IPPROTO_TCP, IPPROTO_UDP):
        _call(found, "parse_ports", parse_ports, segment)
        parse = parse_tcp if header.protocol == IPPROTO_TCP else parse_udp
        _call(found, parse.__name__, parse, segment)
    _check_helpers(packet, header, found)


def _check_helpers(packet: bytearray, header: Any, found: Found) -> None:
    """decrement_ttl, build_icmp_unreachable and the rewrites on a parsed packet."""
    l4 = header.header_length
    header_ok = checksum_ok(packet[:l4])
    _call(found, "build_icmp_unreachable", build_icmp_unreachable, 4, packet, 1458)
    copy = bytearray(packet)
    decremented = _call(found, "decrement_ttl", decrement_ttl, copy) is not None
    if decremented and header_ok and not checksum_ok(copy[:l4]):
        found.append(("parser", "decrement_ttl: broke a valid header checksum"))
    l4_before = _l4_ok(packet, header)
    copy = bytearray(packet)
    if _call(found, "clamp_mss", clamp_mss, copy, 536) and l4_before and not _l4_ok(copy, header):
        found.append(("parser", "clamp_mss: broke a valid TCP checksum"))
    for piece in _call(found, "fragment_ipv4", fragment_ipv4, packet, 576) or ():
        if len(piece) > 576 or not checksum_ok(piece[: (piece[0] & 0x0F) * 4]):
            found.append(("parser", "fragment_ipv4: a fragment too big or its checksum wrong"))
    for name, rewrite in (
        ("rewrite_ipv4_src", rewrite_ipv4_src),
        ("rewrite_ipv4_dst", rewrite_ipv4_dst),
    ):
        copy = bytearray(packet)
        try:
            rewrite(copy, _NEW_ADDRESS)
        except BadPacket:
            continue
        except Exception as error:
            found.append(("parser", f"{name}: {type(error).__name__} at {where(error)}"))
            continue
        if header_ok and not checksum_ok(copy[:l4]):
            found.append(("parser", f"{name}: broke a valid header checksum"))
        if l4_before and _l4_ok(copy, header) is False:
            found.append(("parser", f"{name}: broke a valid TCP/UDP checksum"))
    for name, rewrite_port in (
        ("rewrite_l4_src_port", rewrite_l4_src_port),
        ("rewrite_l4_dst_port", rewrite_l4_dst_port),
    ):
        copy = bytearray(packet)
        try:
            rewrite_port(copy, 4242)
        except (BadPacket, ValueError):
            continue
        except Exception as error:
            found.append(("parser", f"{name}: {type(error).__name__} at {where(error)}"))
            continue
        if l4_before and _l4_ok(copy, header) is False:
            found.append(("parser", f"{name}: broke a valid TCP/UDP checksum"))


def _l4_ok(packet: bytearray, header: Any) -> bool | None:
    if header.protocol not in (IPPROTO_TCP, IPPROTO_UDP) or header.is_fragment:
        return None
    segment = packet[header.header_length : header.total_length]
    if len(segment) < 8:
        return None
    return l4_checksum_ok_v4(packet[12:16], packet[16:20], header.protocol, segment)


def check_offsets(data: bytes, rng: random.Random, found: Found) -> None:
    """One offset-taking parser at an offset past either end (or anywhere)."""
    parse = rng.choice(_AT_OFFSET)
    offset = rng.choice(
        (-1, -IPV4_HEADER_SIZE, len(data), len(data) + 1, rng.randrange(len(data) + 1))
    )
    _call(found, f"{parse.__name__} at offset {offset} of {len(data)}", parse, data, offset)
