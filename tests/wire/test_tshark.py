"""tshark reads our captures (style.md, testing habit 3).

tshark 4.0 has no NVGRE dissector: NVGRE shows as GRE with ``gre.proto == 0x6558`` and a
32-bit ``gre.key``, so VSID = key >> 8 and FlowID = key & 0xFF are worked out here.
The inner frame is dissected as Ethernet, and fields that occur in both the outer and the
inner headers (``eth.src``, ``ip.src``) come back comma-separated, outer first.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest
from scapy.all import Ether, wrpcap

from gateway.wire import (
    build_ethernet,
    build_icmp_echo,
    build_ipv4,
    build_udp_v4,
    encapsulate_ipv4,
    encapsulate_ipv6,
    flow_id_of_frame,
)
from tests.conftest import require_tool

FIELDS = [
    "gre.flags.key",
    "gre.flags.checksum",
    "gre.flags.sequence_number",
    "gre.flags.version",
    "gre.proto",
    "gre.key",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "ip.flags.df",
    "ip.checksum.status",
    "eth.src",
    "eth.dst",
    "icmp.type",
    "icmp.ident",
    "icmp.checksum.status",
    "udp.srcport",
    "udp.dstport",
    "udp.checksum.status",
]
GOOD = "1"  # tshark checksum status: 0 bad, 1 good, 2 unverified

OUTER_MACS = (bytes.fromhex("020000000102"), bytes.fromhex("020000000101"))
PA4 = [ipaddress.IPv4Address(a).packed for a in ("198.18.0.1", "198.18.0.2", "198.19.255.254")]
PA6 = [ipaddress.IPv6Address(a).packed for a in ("2001:db8::1", "2001:db8::2")]


def inner_frame(index: int, kind: str) -> tuple[bytes, dict[str, str]]:
    """A tenant frame 10.10.10.x -> 10.10.10.y with ICMP echo or UDP, and what tshark says."""
    src_mac, dst_mac = (
        bytes.fromhex(f"00155d0050{index:02x}"),
        bytes.fromhex(f"00155d0051{index:02x}"),
    )
    src, dst = bytes([10, 10, 10, 10 + index]), bytes([10, 10, 10, 100 + index])
    if kind == "icmp":
        l4 = build_icmp_echo(0x4000 + index, index, b"nvgre-test")
        protocol = 1
    else:
        l4 = build_udp_v4(src, dst, 40000 + index, 41000 + index, b"nvgre-test")
        protocol = 17
    ip = build_ipv4(src, dst, protocol, len(l4), ident=index, flags=0)
    frame = build_ethernet(dst_mac, src_mac, 0x0800) + ip + l4
    expected = {
        "eth.src": src_mac.hex(":"),
        "eth.dst": dst_mac.hex(":"),
        "ip.src": str(ipaddress.IPv4Address(src)),
        "ip.dst": str(ipaddress.IPv4Address(dst)),
    }
    if kind == "icmp":
        expected |= {"icmp.type": "8", "icmp.ident": str(0x4000 + index)}
    else:
        expected |= {"udp.srcport": str(40000 + index), "udp.dstport": str(41000 + index)}
    return frame, expected


CASES = [  # outer version, VSID, inner kind
    (4, 5010, "icmp"),
    (4, 5020, "udp"),
    (4, 0x1000, "icmp"),
    (4, 0xFFFFFE, "udp"),
    (6, 5011, "icmp"),
    (6, 0x123456, "udp"),
]


@pytest.mark.tool
def test_tshark_dissects_our_nvgre(tmp_path: Path) -> None:
    tshark = require_tool("tshark")
    packets, expectations = [], []
    for index, (version, vsid, kind) in enumerate(CASES):
        frame, expected = inner_frame(index, kind)
        flow_id = flow_id_of_frame(frame)
        if version == 4:
            src, dst = PA4[index % 3], PA4[(index + 1) % 3]
            datagram = encapsulate_ipv4(src, dst, vsid, flow_id, frame, ident=index)
            outer = {
                "ip.src": str(ipaddress.IPv4Address(src)),
                "ip.dst": str(ipaddress.IPv4Address(dst)),
            }
            ethertype = 0x0800
        else:
            src, dst = PA6[index % 2], PA6[(index + 1) % 2]
            datagram = encapsulate_ipv6(src, dst, vsid, flow_id, frame)
            outer = {
                "ipv6.src": str(ipaddress.IPv6Address(src)),
                "ipv6.dst": str(ipaddress.IPv6Address(dst)),
            }
            ethertype = 0x86DD
        packets.append(Ether(build_ethernet(*OUTER_MACS, ethertype) + datagram))
        expectations.append((version, vsid, flow_id, outer, expected))
    pcap = tmp_path / "nvgre.pcap"
    wrpcap(str(pcap), packets)

    command = [
        tshark,
        "-n",
        "-r",
        str(pcap),
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "aggregator=,",
        "-E",
        "occurrence=a",
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
    ]
    for field in FIELDS:
        command += ["-e", field]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    rows = [dict(zip(FIELDS, line.split("|"), strict=True)) for line in result.stdout.splitlines()]
    assert len(rows) == len(CASES)

    for row, (version, vsid, flow_id, outer, inner) in zip(rows, expectations, strict=True):
        assert row["gre.proto"] == "0x6558"
        flags = (row["gre.flags.key"], row["gre.flags.checksum"], row["gre.flags.sequence_number"])
        assert flags == ("1", "0", "0") and row["gre.flags.version"] == "0"
        key = int(row["gre.key"], 16)
        assert (key >> 8, key & 0xFF) == (vsid, flow_id)
        assert row["eth.src"] == f"{OUTER_MACS[1].hex(':')},{inner['eth.src']}"
        assert row["eth.dst"] == f"{OUTER_MACS[0].hex(':')},{inner['eth.dst']}"
        if version == 4:
            assert row["ip.src"] == f"{outer['ip.src']},{inner['ip.src']}"
            assert row["ip.dst"] == f"{outer['ip.dst']},{inner['ip.dst']}"
            assert row["ip.flags.df"] == "1,0"  # outer DF set, the tenant's own left alone
            assert row["ip.checksum.status"] == f"{GOOD},{GOOD}"
        else:
            assert (row["ipv6.src"], row["ipv6.dst"]) == (outer["ipv6.src"], outer["ipv6.dst"])
            assert (row["ip.src"], row["ip.dst"]) == (inner["ip.src"], inner["ip.dst"])
            assert row["ip.checksum.status"] == GOOD
        if "icmp.type" in inner:
            assert (row["icmp.type"], row["icmp.ident"]) == (
                inner["icmp.type"],
                inner["icmp.ident"],
            )
            assert row["icmp.checksum.status"] == GOOD
        else:
            assert (row["udp.srcport"], row["udp.dstport"]) == (
                inner["udp.srcport"],
                inner["udp.dstport"],
            )
            assert row["udp.checksum.status"] == GOOD
