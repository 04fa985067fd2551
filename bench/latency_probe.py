"""One-way latency at a low rate: NVGRE frame in on the veth, inner frame out on the TAP.

    ip netns exec nvb-snd python bench/latency_probe.py HOST_NS TAP VETH COUNT INTERVAL HEX

Run by ``host_forwarding.py`` in the sender's namespace. It opens a packet socket on
the TAP inside the host's namespace (setns there and back: a socket stays in the
namespace it was made in), then sends COUNT copies of the NVGRE frame HEX on VETH,
one every INTERVAL seconds, each with its sequence number in its last 8 bytes, and
waits for each to appear on the TAP. Latency = the kernel's receive timestamp on the
TAP (SO_TIMESTAMPNS) minus the clock just before the send: the whole path through
the receiver (veth, raw socket or ring, Python, the TAP write), one frame at a time.
Prints JSON: the latencies in microseconds and how many never arrived (100 ms).
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import socket
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
SO_TIMESTAMPNS = 35
ETH_P_ALL = 0x0003
WAIT_S = 0.1


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def tap_socket(namespace: str, tap: str) -> socket.socket:
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    there = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
    try:
        _setns(there)
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((tap, 0))
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
    finally:
        _setns(home)
        os.close(there)
        os.close(home)
    return sock


def main() -> None:
    namespace, tap, veth = sys.argv[1:4]
    count, interval = int(sys.argv[4]), float(sys.argv[5])
    template = bytearray.fromhex(sys.argv[6])
    inner_length = len(template) - 14 - 20 - 8  # what the TAP gets: no outer headers
    rx = tap_socket(namespace, tap)
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((veth, 0))
    latencies, lost = [], 0
    start = time.monotonic()
    for seq in range(count):
        delay = start + seq * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        template[-8:] = struct.pack("!Q", seq)
        marker = bytes(template[-8:])
        sent = time.clock_gettime_ns(time.CLOCK_REALTIME)
        tx.send(template)
        deadline = time.monotonic() + WAIT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([rx], [], [], left)[0]:
                lost += 1
                break
            data, ancillary, _, _ = rx.recvmsg(2048, socket.CMSG_SPACE(16))
            if len(data) != inner_length or data[-8:] != marker:
                continue  # something else on the TAP, or a late frame
            stamp = next(d for level, kind, d in ancillary if kind == SO_TIMESTAMPNS)
            seconds, nanoseconds = struct.unpack("qq", stamp[:16])
            latencies.append(round((seconds * 10**9 + nanoseconds - sent) / 1000, 1))
            break
    print(json.dumps({"latencies_us": latencies, "lost": lost}))


if __name__ == "__main__":
    main()
