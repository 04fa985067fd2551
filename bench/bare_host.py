"""A bare NVGRE host for one VM: its TAP's frames out as NVGRE, NVGRE back into it.

    python bench/bare_host.py PA REMOTE_PA TAPNAME VSID

Run by ``gateway_tunnel.py``'s TCP part in the sender namespace, where the kernel
has no GRE of its own (CONFIG_NET_IPGRE unset on the project's machine): it stands
in for the remote VM's host so that a TCP connection from that namespace reaches the
gateway's PA as NVGRE. The two loops of the bare loops, one each way, each in its own
thread, on one raw IPPROTO_GRE socket bound to PA and connected to REMOTE_PA:
``bare_encap.py``'s (a frame read from the TAP, sent behind a fixed GRE header: VSID,
FlowID 0) and ``bare_decap.py``'s (a datagram's GRE header checked, the VSID's frames
written into the TAP, whatever their FlowID). Nothing else: no policy, no counters.
It prints ``ready`` once the socket and the TAP are open and runs until SIGTERM.

Stdlib only, so that its cost is Python's and the kernel's, not a library's.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import threading

from bare_decap import NVGRE_WORD
from bare_encap import encapsulate, open_pair


def decapsulate(sock: socket.socket, tap: int, vsid: int) -> None:
    buffer = bytearray(65535)
    view = memoryview(buffer)
    unpack_from = struct.Struct("!II").unpack_from
    while True:
        size = sock.recv_into(buffer)
        ihl = (buffer[0] & 0x0F) << 2
        word, key = unpack_from(buffer, ihl)
        if word == NVGRE_WORD and key >> 8 == vsid:
            os.write(tap, view[ihl + 8 : size])


def main() -> None:
    pa, remote, tap_name, vsid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sock, tap = open_pair(pa, remote, tap_name)
    threading.Thread(target=decapsulate, args=(sock, tap, vsid), daemon=True).start()
    print("ready", flush=True)
    encapsulate(sock, tap, vsid)


if __name__ == "__main__":
    main()
