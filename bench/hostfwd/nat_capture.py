"""Run inside the internet namespace by ``nat_measure.py``: read what the router's
device receives (AF_PACKET sees a frame before nftables' ingress drop) and print, as
JSON, each IPv4/UDP frame's source and destination endpoints and length, so that a
check can tell the NAT translated them.

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


def endpoints(frame: bytes) -> list[object] | None:
    """[source, source port, destination, destination port, frame length] of an
    Ethernet/IPv4/UDP frame; None for anything else."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
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
