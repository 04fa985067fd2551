"""Run by ``nat_measure.py`` in the namespace where the NAT's frames arrive (the
internet's, or the sender's for the way back): read what a device receives (AF_PACKET
sees a frame before nftables' ingress drop, and one to another host's MAC) and print,
as JSON, each UDP frame's endpoints and length (NVGRE's inner ones), so that a check
can tell the NAT translated them.

    python nat_capture.py DEV COUNT TIMEOUT_S

Prints ``ready`` once bound, then one JSON list when COUNT frames arrived or the
time is up.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
UDP, GRE = 17, 47
NVGRE = b"\x20\x00\x65\x58"  # GRE flags (key present), protocol: transparent Ethernet


def endpoints(frame: bytes) -> list[object] | None:
    """[source, source port, destination, destination port, frame length] of an
    Ethernet/IPv4/UDP frame, or of the inner one of NVGRE (GRE with a key, Ethernet
    inside: the way back's); None for anything else."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00":
        return None
    if frame[23] == GRE and frame[14] == 0x45 and frame[34:38] == NVGRE:
        inner = endpoints(frame[42:])
        return None if inner is None else [*inner[:4], len(frame)]
    if frame[23] != UDP:
        return None
    ihl = (frame[14] & 0x0F) * 4
    sport, dport = struct.unpack_from("!HH", frame, 14 + ihl)
    src, dst = socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34])
    return [src, sport, dst, dport, len(frame)]


def main() -> None:
    dev, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((dev, 0))
    print("ready", flush=True)
    seen: list[list[object]] = []
    t_end = time.monotonic() + timeout
    while len(seen) < count and (left := t_end - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        frame, address = sock.recvfrom(65535)
        if address[2] != PACKET_OUTGOING and (found := endpoints(frame)) is not None:
            seen.append(found)
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
