"""Run inside a test's namespace: a receive ring, and what the kernel's own stack
delivers beside it, with or without the daemon's ingress drop.

Arguments: interface, the PA (an address of the interface), how many GRE frames the
ring must read, a timeout in seconds, and the mode: ``drop`` (the ingress drop made
before "ready"), ``none`` (no drop: the control) or ``hold`` (the drop made, then the
process waits to be killed).

Prints "ready", then one JSON line: the GRE frames the ring read, and the GRE
datagrams and UDP datagrams the kernel delivered to a raw GRE socket and to a UDP
socket on the PA (port 4789) while it did.
"""

import json
import select
import socket
import sys
import time

from gateway.errors import Drop
from gateway.io.ingress_drop import IngressDrop
from gateway.io.ring import ReceiveRing

interface, pa, count, timeout, mode = sys.argv[1:6]
packed = socket.inet_aton(pa)
drops = [0] * len(Drop)
read = 0


def handle(node: object, frame: memoryview) -> None:
    global read
    read += 1


def never(error: Exception, frame: memoryview) -> None:
    raise AssertionError(error)


# The table lives as long as its IngressDrop: held in ``table`` until the process ends.
if mode == "hold":
    table = IngressDrop("test", [(interface, [packed])])
    print("ready", flush=True)
    time.sleep(3600)
ring = ReceiveRing(interface, 1500, drops, [packed], never)
gre = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((pa, 4789))
table = IngressDrop("test", [(interface, [packed])]) if mode == "drop" else None
print("ready", flush=True)
deadline = time.monotonic() + float(timeout)
while read < int(count) and time.monotonic() < deadline:
    if ring.drain(handle, None, 64) == 0:
        select.select([ring], [], [], 0.05)
received = {"gre": 0, "udp": 0}
for name, sock in (("gre", gre), ("udp", udp)):
    sock.setblocking(False)
    time.sleep(0.2)  # what the kernel delivers comes after the ring's copy
    while True:
        try:
            sock.recv(65535)
        except BlockingIOError:
            break
        received[name] += 1
print(json.dumps({"ring": read, "kernel": received}), flush=True)
