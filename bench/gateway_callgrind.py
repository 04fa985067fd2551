"""Instructions per frame of the gateway's two data-plane entry points (and of the
host's decapsulation, for scale), counted by callgrind: what each path costs in
Python, whatever the machine's load.

    python bench/gateway_callgrind.py [--frames 5000] [--only nat_out,nat_back]

Each entry point runs on the benchmark's own configs (``hostfwd/gateway_setup.py``,
``hostfwd/traffic.py``) with an Output that keeps nothing: ``in``,
``gateway_from_provider`` on the NVGRE datagrams trafgen sends (the corp server's MAC
already learned); ``out``, ``gateway_from_tap`` on the corp server's frames;
``out_sent``, ``out`` into the daemon's own Output, each frame framed for the provider
link into its send batch and sent with one sendmmsg per 64 (a connected loopback UDP
socket standing in for the link's packet socket);
``nat_out``, ``gateway_from_provider`` on the NAT benchmark's NVGRE to the internet
(``hostfwd/nat_setup.py``: routed to the NAT, translated, written to the external
TAP); ``nat_back``, ``gateway_from_tap`` on the external TAP with the server's replies
to those flows (translated back and encapsulated to the VM), each flow's session opened
first, as in the benchmark's steady state; ``tunnel``, ``gateway_from_provider`` on
the tunnel benchmark's NVGRE
(``hostfwd/tunnel_setup.py``: routed into the tunnel, encrypted with ChaCha20-Poly1305
and handed to ``Output.to_udp``; the handshake done first with a site of our own
core); ``tunnel_back``, ``gateway_from_tunnel`` on transport datagrams that site
sends back (the server's packets to the remote VM: decrypted, checked against the
allowed IPs, routed into the VSID and encapsulated), 256 of them with counters 0..255,
the receiving session's replay window renewed after the last (a new window, as a new
session starts with: its cost spread over 256 frames); ``host``, the host's
``from_provider`` on the host benchmark's datagrams. Each runs on a fresh writable
copy of its frame per call (the loop and copies alone are measured too, and taken
off), twice under ``PYTHONHASHSEED=0 valgrind --tool=callgrind`` (N and 2N frames, 64
B and 1400 B inner, the same frames round robin); a run in which the node counted a
drop fails. The difference of the two totals over N is the per-frame cost, start-up
and imports cancelled out. Needs valgrind; no root, no namespaces. Prints a table and
writes ``bench/results-gateway-callgrind.json``
(with ``--only``, only where ``--out`` says).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # gateway

from hostfwd.common import BENCH, HOST_PA, REMOTE_VM, SCRATCH, SIZES, SND_PA
from hostfwd.gateway_setup import (
    CORP_ADDR,
    CORP_MAC,
    GW_RECORD,
    GW_TAP,
    NODE,
    gateway_config,
    inbound_frames,
    outbound_frames,
)
from hostfwd.nat_setup import EXT_MAC, ROUTER, nat_config, reply_frames, tenant_frames
from hostfwd.nat_setup import INET_MAC as ROUTER_MAC
from hostfwd.report import write_json
from hostfwd.sources import versions, work_tree
from hostfwd.traffic import inner_frame, nvgre_frames, nvgw_config
from hostfwd.tunnel_setup import (
    ANY_MAC,
    KEYS,
    PORT,
    SERVER,
    WAN_GW_ADDR,
    WAN_SITE_ADDR,
    tunnel_config,
)
from hostfwd.tunnel_setup import NODE as TUNNEL_NODE
from hostfwd.tunnel_setup import inbound_frames as tunnel_frames

from gateway.control import load_config
from gateway.dataplane import (
    Counters,
    GatewayNode,
    GatewayTables,
    HostNode,
    TunnelKeys,
    from_provider,
    gateway_from_provider,
    gateway_from_tap,
    gateway_from_tunnel,
)
from gateway.io.output import FdOutput
from gateway.io.readers import BATCH
from gateway.io.send_batch import Outer
from gateway.policy import compile_policy
from gateway.wireguard import Device, ReplayWindow, public_key_of

ENTRIES = ("in", "out", "out_sent", "nat_out", "nat_back", "tunnel", "tunnel_back", "host")
BACK_DATAGRAMS = 256  # tunnel_back's, counters 0..255 (the low byte says the last)
ETH = 14  # the outer Ethernet header: a datagram reaches the entry point without it
_OPEN: list[socket.socket] = []  # out_sent's sockets


def node_and_call(entry: str, size: int) -> tuple[Any, list[bytes], list[int]]:
    """A node of the benchmark's config: the call that takes one frame, bound; the
    frames it takes; its drop counters."""

    class Nothing:  # an Output that keeps nothing
        def to_tap(self, tap: object, frame: object) -> None:
            pass

        def to_provider(self, src: object, dst: object, gre: object, frame: object) -> None:
            pass

        def to_provider_link(self, frame: object) -> None:
            pass

        kept: list[bytes] | None = None  # a tunnel's handshake, until in session

        def to_udp(self, port: object, endpoint: object, datagram: bytes) -> None:
            if self.kept is not None:
                self.kept.append(bytes(datagram))

    if entry == "host":
        snapshot = compile_policy(load_config(nvgw_config()))
        host = HostNode(snapshot, "bench", Nothing(), provider_mac=bytes(6))
        inputs = [f[ETH:] for f in nvgre_frames(size)]
        return (lambda d: from_provider(host, d)), inputs, host.counters.drops
    if entry.startswith("tunnel"):
        return tunnel_node(Nothing(), size, back=entry == "tunnel_back")
    if entry.startswith("nat_"):
        return nat_node(Nothing(), entry, size)
    snapshot = compile_policy(load_config(gateway_config()))
    node = GatewayNode(snapshot, NODE, Nothing())
    tap = next(t for t in node.tables.taps if t.name == GW_TAP)
    if entry == "in":
        datagrams = [f[ETH:] for f in inbound_frames(size, GW_RECORD[1])]
        gateway_from_provider(node, memoryview(bytearray(datagrams[0])))  # asks for the MAC
        corp_mac = bytes.fromhex(CORP_MAC.replace(":", ""))
        node.neighbors[GW_TAP].learn(socket.inet_aton(CORP_ADDR), corp_mac, 0.0)
        return (lambda d: gateway_from_provider(node, d)), datagrams, node.counters.drops
    inputs = outbound_frames(size)
    if entry == "out_sent":
        return sent_out(inputs)
    return (lambda f: gateway_from_tap(node, tap, f)), inputs, node.counters.drops


def sent_out(inputs: list[bytes]) -> tuple[Any, list[bytes], list[int]]:
    """``out`` into the daemon's own Output: each frame framed for the provider link
    into the send batch (``SendBatch.add_framed``), a ``flush`` per 64 frames as a
    reader's batch ends. A connected UDP socket on loopback stands in for the link's
    packet socket (the same sendmmsg without addresses; its system time is not
    counted here)."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    link = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    link.connect(receiver.getsockname())
    link.setblocking(False)
    counters = Counters()
    out = FdOutput(counters.drops, {}, {})
    src, dst = socket.inet_aton(HOST_PA), socket.inet_aton(SND_PA)
    out.outer = {dst: Outer.for_pair((src, dst), link.fileno(), bytes(12) + b"\x08\x00", 64)}
    snapshot = compile_policy(load_config(gateway_config()))
    node = GatewayNode(snapshot, NODE, out, counters)
    tap = next(t for t in node.tables.taps if t.name == GW_TAP)
    handled = [0]

    def call(f: memoryview) -> None:
        gateway_from_tap(node, tap, f)
        handled[0] += 1
        if handled[0] % BATCH == 0:
            out.flush()

    _OPEN.extend((receiver, link))  # open until the child exits
    return call, inputs, counters.drops


def nat_node(out: Any, entry: str, size: int) -> tuple[Any, list[bytes], list[int]]:
    """The NAT benchmark's gateway with a session per flow: its first frame asks for
    the internet router's MAC (learned then), each flow's first frame opens its
    session; ``nat_back`` takes the replies to those sessions' external ports."""
    snapshot = compile_policy(load_config(nat_config()))
    node = GatewayNode(snapshot, NODE, out)
    external, napt = node.tables.external, node.napt
    assert external is not None and napt is not None
    datagrams = [f[ETH:] for f in tenant_frames(size)]
    gateway_from_provider(node, memoryview(bytearray(datagrams[0])))  # asks for the MAC
    mac = bytes.fromhex(ROUTER_MAC.replace(":", ""))
    external.neighbors.learn(socket.inet_aton(ROUTER), mac, 0.0)
    for datagram in datagrams:
        gateway_from_provider(node, memoryview(bytearray(datagram)))
    if napt.count != len(datagrams):
        sys.exit(f"{entry} {size} B: {napt.count} sessions for {len(datagrams)} flows")
    if entry == "nat_out":
        return (lambda d: gateway_from_provider(node, d)), datagrams, node.counters.drops
    ports = [session.mapping.ext_port for session in napt.by_out.values()]
    frames = reply_frames(size, ports, EXT_MAC)
    return (lambda f: gateway_from_tap(node, external, f)), frames, node.counters.drops


def tunnel_node(out: Any, size: int, back: bool = False) -> tuple[Any, list[bytes], list[int]]:
    """The tunnel benchmark's gateway with its tunnel in session: its first frame
    starts the handshake, a site of our own core answers it (``out`` keeps nothing
    after). ``back``: the call takes the site's transport datagrams instead (the site
    confirmed the session with the packet that waited for the handshake)."""
    gw_key, site_key = bytes(range(32, 64)), bytes(range(64, 96))
    site_public = base64.b64encode(public_key_of(site_key)).decode()
    config = tunnel_config(KEYS / "unread.key", site_public, "callgrind-tunnel.yaml")
    snapshot = compile_policy(load_config(config))
    counters = Counters()
    keys = TunnelKeys(private={PORT: gw_key})
    tables = GatewayTables(snapshot, TUNNEL_NODE, counters, None, keys)
    sent = out.kept = []
    node = GatewayNode(snapshot, TUNNEL_NODE, out, counters, tables)
    node.now = 1.0
    datagrams = [f[ETH:] for f in tunnel_frames(size)]
    gateway_from_provider(node, memoryview(bytearray(datagrams[0])))  # the initiation
    site = Device(site_key)
    gateway = site.add_peer(public_key_of(gw_key), endpoint=(WAN_GW_ADDR, PORT))
    site.receive(sent[0], (WAN_GW_ADDR, PORT), node.now)
    for response, _ in site.outbox:
        gateway_from_tunnel(node, PORT, response, (WAN_SITE_ADDR, PORT))
    if len(sent) < 2:  # the packet that waited for the handshake went out after it
        sys.exit(f"tunnel {size} B: no session with the site: {len(sent)} datagrams sent")
    out.kept = None  # from here on: keeps nothing
    if not back:
        return (lambda d: gateway_from_provider(node, d)), datagrams, counters.drops
    if site.receive(sent[1], (WAN_GW_ADDR, PORT), node.now) is None:
        sys.exit(f"tunnel_back {size} B: the site did not take the gateway's packet")
    site.outbox.clear()
    for i in range(BACK_DATAGRAMS):
        packet = inner_frame(size, 40000 + i % 8, (SERVER, ANY_MAC), REMOTE_VM)[ETH:]
        site.send(gateway, packet, node.now)
    inputs = [bytes(datagram) for datagram, _ in site.outbox]
    device = node.tunnel_ports[PORT].device
    keypair = device.peers[public_key_of(site_key)].keypairs.current
    last = (BACK_DATAGRAMS - 1) & 0xFF
    source = (WAN_SITE_ADDR, PORT)

    def call(d: memoryview) -> None:
        gateway_from_tunnel(node, PORT, d, source)
        if d[8] == last:  # the counter's low byte: the round starts again at 0
            keypair.replay = ReplayWindow()  # type: ignore[union-attr]

    return call, inputs, counters.drops


def child(entry: str, size: int, frames: int) -> None:
    """``frames`` calls, each on a fresh copy of its frame in a writable buffer, as the
    daemon's receive ring hands them over (the data plane rewrites TTL and MACs in
    place); the ``loop`` entry does the copies alone, to be taken off the others."""
    if entry == "loop":
        call, inputs, drops = (lambda f: None), outbound_frames(size), [0]
    else:
        call, inputs, drops = node_and_call(entry, size)
    buffers = [bytearray(frame) for frame in inputs]
    views = [memoryview(buffer) for buffer in buffers]
    n = len(inputs)
    for i in range(frames):
        j = i % n
        buffers[j][:] = inputs[j]
        call(views[j])
    if any(drops):
        sys.exit(f"{entry} {size} B: the node dropped frames: {drops}")


def instructions(entry: str, size: int, frames: int) -> int:
    with tempfile.TemporaryDirectory() as where:
        out = Path(where) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        cmd += [sys.executable, __file__, "--child", entry, str(size), str(frames)]
        env = dict(os.environ, PYTHONHASHSEED="0")
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=BENCH.parent)
        if done.returncode:
            sys.exit(f"callgrind {entry} {size}: {done.stderr[-1500:]}")
        found = re.search(r"^summary: (\d+)", out.read_text(), re.MULTILINE)
        if found is None:
            sys.exit(f"callgrind {entry} {size}: no summary line in {out}")
        return int(found.group(1))


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=5000, help="N (the longer run does 2N)")
    ap.add_argument("--only", help="comma-separated entries (default: all): " + ",".join(ENTRIES))
    ap.add_argument(
        "--out", type=Path, help="default: bench/results-gateway-callgrind.json (none with --only)"
    )
    a = ap.parse_args()
    entries = a.only.split(",") if a.only else ENTRIES
    if unknown := set(entries) - set(ENTRIES):
        ap.error(f"no such entry: {', '.join(sorted(unknown))}")
    SCRATCH.mkdir(exist_ok=True)
    per_frame: dict[str, int] = {}
    for entry in entries:
        for size in SIZES:
            short = instructions(entry, size, a.frames)
            long = instructions(entry, size, 2 * a.frames)
            per_frame[f"{entry}_{size}"] = round((long - short) / a.frames)
            print(
                f"{entry:<5} {size:>5} B  {per_frame[f'{entry}_{size}']:>8,} instructions per frame"
            )
    out = a.out or (None if a.only else BENCH / "results-gateway-callgrind.json")
    if out is None:
        return 0  # a partial run leaves the whole run's results as they were
    write_json(
        out,
        {
            "benchmark": "gateway_callgrind",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": versions([work_tree()]),  # the commit, and gateway/'s changes
            "frames": a.frames,
            "pas": {"sender": SND_PA, "gateway": HOST_PA},
            "instructions_per_frame": per_frame,
        },
    )
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
