"""Play a host on the provider network, listening: print ``ready`` once a raw GRE
socket is open, then, in hex, the first GRE datagram that comes from SRC_PA (its
outer IPv4 header first). Exits non-zero when nothing comes within the timeout,
which only bounds a failure.

    python _gre_listen.py SRC_PA TIMEOUT_S
"""

import socket
import sys

source_pa, timeout_s = sys.argv[1], float(sys.argv[2])
with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE) as sock:
    sock.settimeout(timeout_s)
    print("ready", flush=True)
    while True:
        datagram, (source, _) = sock.recvfrom(65535)
        if source == source_pa:
            print(datagram.hex(), flush=True)
            break
