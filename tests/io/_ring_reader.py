"""Run inside a test's namespace: read N frames through a ReceiveRing, print them.

Prints "ready" once the ring is bound, then one JSON line: the frames handed to the
handler (hex, from the IP header on) and the drop counters, after ``count`` frames or
``timeout`` seconds.
"""

import json
import select
import sys
import time

from gateway.errors import Drop
from gateway.io.ring import ReceiveRing

interface, mtu, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
drops = [0] * len(Drop)
ring = ReceiveRing(interface, mtu, drops)
print("ready", flush=True)
frames: list[str] = []
deadline = time.monotonic() + timeout
while len(frames) + drops[Drop.TRUNCATED] < count and time.monotonic() < deadline:
    if ring.drain(lambda frame, out, now: frames.append(bytes(frame).hex()), None, 0.0, 64) == 0:
        select.select([ring], [], [], 0.05)
print(json.dumps({"frames": frames, "truncated": drops[Drop.TRUNCATED]}), flush=True)
ring.close()
