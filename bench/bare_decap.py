"""The Python ceiling for ``host_forwarding.py``: a bare NVGRE decapsulate-and-write loop.

    python bench/bare_decap.py PA TAPNAME VSID

Run by the benchmark inside its host namespace, pinned to the receiver core. A blocking
raw IPPROTO_GRE socket bound to PA (as the daemon binds its PA, with the same receive
buffer request), ``recv_into()`` one datagram into a preallocated buffer, check the
GRE flags and protocol (0x2000 / 0x6558) and the VSID, ``os.write()`` the inner frame to a
TAP (IFF_TAP | IFF_NO_PI). One recv and one write syscall per packet and nothing else:
no policy, no anti-spoofing, no event loop, no counters. It prints ``ready`` once the
socket and the TAP are open (the benchmark then sets the TAP's MAC and MTU and brings it
up) and runs until SIGTERM. It keeps no time and counts nothing: the benchmark reads the
kernel's counters and this process's CPU time from /proc.

Stdlib only, so that its cost is Python's and the kernel's, not a library's.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
NVGRE_WORD = 0x20006558  # GRE flags+version (K only) and protocol TEB, as one word
RECEIVE_BUFFER_BYTES = 4 << 20  # what the daemon asks for (SO_RCVBUF, capped by rmem_max)


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def main() -> None:
    pa, tap_name, vsid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    sock.bind((pa, 0))
    tap = open_tap(tap_name)
    print("ready", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), flush=True)

    buffer = bytearray(65535)
    view = memoryview(buffer)
    recv_into = sock.recv_into
    unpack_from = struct.Struct("!II").unpack_from
    write = os.write
    while True:
        size = recv_into(buffer)
        ihl = (buffer[0] & 0x0F) << 2
        word, key = unpack_from(buffer, ihl)
        if word != NVGRE_WORD or key >> 8 != vsid:
            continue  # not NVGRE, or another VSID: dropped
        write(tap, view[ihl + 8 : size])


if __name__ == "__main__":
    main()
