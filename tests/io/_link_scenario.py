"""Play a node's provider side with ``--provider-tx link``, step by step, in the
namespace it runs in (``test_link_tx.py`` makes it): send NVGRE through an
``FdOutput`` with a ``LinkTx``, refresh, change the kernel's neighbours and routes,
and print, per step, one JSON line: the step's name, which PAs the link frames (with
the next hop's MAC) and the drops. Each step's packets carry its name in their inner
frame, so the listener on the other side tells them apart.

    python _link_scenario.py SRC_PA PEER_PA ROUTED_PA PEER_NS PEER_IF
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import anyio

from gateway.errors import Drop
from gateway.io.link_tx import LinkTx
from gateway.io.output import FdOutput
from gateway.io.provider import open_gre_socket

GRE = b"\x20\x00\x65\x58\x00\x13\x92\x00"  # K bit, TEB, VSID 5010
NEW_PEER_MAC = "02:00:00:00:77:02"


def frame(step: str) -> memoryview:
    """An inner Ethernet frame that names its step."""
    return memoryview(bytearray(bytes(12) + b"\x08\x00" + step.encode().ljust(50, b".")))


async def main() -> None:
    src, peer, routed, peer_ns, peer_if = sys.argv[1:6]
    pas = {name: socket.inet_aton(name) for name in (src, peer, routed)}
    drops = [0] * len(Drop)
    gre = open_gre_socket(pas[src])
    out = FdOutput(drops, {}, {pas[src]: gre})
    out.wanted = set()
    link = LinkTx()

    def send(step: str, *to: str) -> None:
        for dst in to:
            for _ in range(3):
                out.to_provider(pas[src], pas[dst], GRE, frame(step))
        out.flush()
        framed = {socket.inet_ntoa(d): o.head[:6].hex(":") for d, o in out.outer.items()}
        noted = sorted(socket.inet_ntoa(d) for _, d in out.wanted or ())
        counted = {Drop(i).name: n for i, n in enumerate(drops) if n}
        print(json.dumps({"step": step, "framed": framed, "noted": noted, "drops": counted}))
        sys.stdout.flush()

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True)

    send("kernel", peer, routed)  # nothing framed yet: the kernel's way, noted
    await link.refresh(out)
    out.gre = {}  # from here on, only what the link frames can leave
    send("link", peer, routed)
    # The peer's MAC changes and the kernel learns it: followed at the next refresh.
    ip("-n", peer_ns, "link", "set", peer_if, "address", NEW_PEER_MAC)
    ip("neigh", "replace", peer, "lladdr", NEW_PEER_MAC, "dev", "nva0")
    await link.refresh(out)
    send("moved", peer)
    # A stale neighbour, due for verification: the kernel is made to confirm it.
    ip("neigh", "change", peer, "dev", "nva0", "nud", "stale")
    for pair, route in list(link._routes.items()):
        link._routes[pair] = route._replace(asked=route.asked - 3600)
    await link.refresh(out)
    state = subprocess.run(["ip", "neigh", "show", peer, "dev", "nva0"], capture_output=True)
    print(json.dumps({"step": "verified", "neighbour": state.stdout.decode().split()[-1]}))
    # The kernel loses the neighbour: no longer framed, the kernel's way again.
    ip("neigh", "flush", "dev", "nva0")
    await link.refresh(out)
    out.gre = {pas[src]: gre}
    send("lost", peer)
    link.close()
    gre.close()


anyio.run(main)
