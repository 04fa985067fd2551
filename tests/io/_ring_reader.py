"""Run inside a test's namespace: read N frames through a ReceiveRing, print them.

Arguments: interface, MTU, how many frames to wait for, a timeout in seconds, the
NVGRE PAs to filter for (comma-separated), and optionally a byte (hex): the handler
raises on every frame ending with it, as a data plane with a bug would.

Prints "ready" once the ring is bound, then one JSON line after ``count`` frames
(handed over, counted as drops, or faulted) or ``timeout`` seconds: the frames handed
to the handler (hex, from the IP header on, the faulted ones included), the drop
counters that concern the ring, the faults, and whether every slot was handed back
to the kernel.
"""

import json
import select
import socket
import sys
import time

from gateway.errors import Drop
from gateway.io.linux import TP_STATUS_USER
from gateway.io.ring import ReceiveRing

interface, mtu, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
pas = [socket.inet_aton(pa) for pa in sys.argv[5].split(",")]
marker = int(sys.argv[6], 16) if len(sys.argv) > 6 else None
COUNTED = (Drop.TRUNCATED, Drop.IP_CHECKSUM, Drop.FOREIGN_MAC)
drops = [0] * len(Drop)
frames: list[str] = []
faults: list[str] = []


def handle(node: object, frame: memoryview) -> None:
    frames.append(bytes(frame).hex())
    if frame[-1] == marker:
        raise ValueError("a bug in the data plane")


def on_fault(error: Exception, frame: memoryview) -> None:
    faults.append(f"{type(error).__name__}: {bytes(frame[-1:]).hex()}")


ring = ReceiveRing(interface, mtu, drops, pas, on_fault)
print("ready", flush=True)
deadline = time.monotonic() + timeout
while len(frames) + sum(drops[d] for d in COUNTED) < count and time.monotonic() < deadline:
    if ring.drain(handle, None, 64) == 0:
        select.select([ring], [], [], 0.05)
returned = all(
    not ring.words[(slot * ring.frame_size) >> 2] & TP_STATUS_USER for slot in range(ring.frames)
)
result = {
    "frames": frames,
    "drops": {d.label: drops[d] for d in COUNTED},
    "faults": faults,
    "slots_returned": returned,
}
print(json.dumps(result), flush=True)
ring.close()
