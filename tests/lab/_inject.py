"""Send hex-encoded Ethernet frames (one per stdin line) out of an interface.

Run inside the lab's provider namespace by the tests: an AF_PACKET send on the
bridge goes out of the bridge port that leads to the destination MAC.
"""

import socket
import sys

with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
    sock.bind((sys.argv[1], 0))
    for line in sys.stdin:
        if line.strip():
            sock.send(bytes.fromhex(line.strip()))
