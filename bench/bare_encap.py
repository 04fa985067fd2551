"""The Python ceiling for the gateway's TAP -> NVGRE path: a bare read-and-send loop.

    python bench/bare_encap.py PA REMOTE_PA TAPNAME VSID

Run by ``gateway_forwarding.py`` inside its host namespace, pinned to the receiver
core: the mirror of ``bare_decap.py``. It opens a TAP (IFF_TAP | IFF_NO_PI, blocking),
a raw IPPROTO_GRE socket bound to PA and connected to REMOTE_PA (the kernel writes the
outer IPv4 header and resolves the next hop), then reads one frame at a time into a
preallocated buffer just behind a fixed GRE header (K, TEB, key VSID << 8) and sends
header and frame with one ``send()``. One read and one send syscall per frame and
nothing else: no policy, no routing, no neighbour, no TTL, no event loop, no counters.
It prints ``ready`` once both are open (the benchmark then moves the TAP's kernel end
into the corp namespace and brings it up) and runs until SIGTERM.

Stdlib only, so that its cost is Python's and the kernel's, not a library's.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys

from bare_decap import open_tap

GRE_HEADER = struct.Struct("!HHI")  # flags+version (K only), protocol TEB, key
GRE_K, TEB = 0x2000, 0x6558


def open_pair(pa: str, remote: str, tap_name: str) -> tuple[socket.socket, int]:
    """The raw GRE socket bound to PA and connected to REMOTE_PA, and the TAP."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
    sock.bind((pa, 0))
    sock.connect((remote, 0))
    return sock, open_tap(tap_name)


def encapsulate(sock: socket.socket, tap: int, vsid: int) -> None:
    """The loop: each frame read behind the fixed GRE header and sent, forever."""
    buffer = bytearray(8 + 65535)
    GRE_HEADER.pack_into(buffer, 0, GRE_K, TEB, vsid << 8)
    view = memoryview(buffer)
    frame = [view[8:]]
    readv = os.readv
    send = sock.send
    while True:
        size = readv(tap, frame)
        send(view[: 8 + size])


def main() -> None:
    pa, remote, tap_name, vsid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sock, tap = open_pair(pa, remote, tap_name)
    print("ready", flush=True)
    encapsulate(sock, tap, vsid)


if __name__ == "__main__":
    main()
