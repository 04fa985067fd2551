"""Play a host on the provider network: send one GRE payload (NVGRE, given in hex) to
a PA from this namespace's own PA, then print, in hex, the first GRE datagram that
comes back from that PA (its outer IPv4 header first). Exits non-zero when nothing
comes within the timeout, which only bounds a failure.

    python _nvgre_peer.py DST_PA GRE_PAYLOAD_HEX TIMEOUT_S
"""

import socket
import sys

dst, payload, timeout_s = sys.argv[1], bytes.fromhex(sys.argv[2]), float(sys.argv[3])
with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE) as sock:
    sock.settimeout(timeout_s)
    sock.sendto(payload, (dst, 0))
    while True:
        datagram, (source, _) = sock.recvfrom(65535)
        if source == dst:
            print(datagram.hex(), flush=True)
            break
