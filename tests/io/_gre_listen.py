"""Play a host on the provider network, listening: print ``ready`` once a raw GRE
socket is open, then, in hex, the first COUNT (default 1) GRE datagrams that come
from SRC_PA (their outer IPv4 header first), one per line. Exits non-zero when
they do not all come within the timeout of each other, which only bounds a failure.

    python _gre_listen.py SRC_PA TIMEOUT_S [COUNT]
"""

import socket
import sys

source_pa, timeout_s = sys.argv[1], float(sys.argv[2])
count = int(sys.argv[3]) if len(sys.argv) > 3 else 1
with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE) as sock:
    sock.settimeout(timeout_s)
    print("ready", flush=True)
    while count:
        datagram, (source, _) = sock.recvfrom(65535)
        if source == source_pa:
            print(datagram.hex(), flush=True)
            count -= 1
