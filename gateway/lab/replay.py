"""``nvgw replay``: a capture through the data plane, offline.

Each frame of the capture is given to the node it would reach: NVGRE (or a plain
IPv4 packet, IP-Rewrite) addressed to a node's PA goes to that node's provider side,
a frame whose source MAC is a VM port's goes to that port. Every node runs the real
``HostNode`` over the config's policy, so the verdicts are the daemon's; what
the data plane sends is written to the output capture (NVGRE with its outer IPv4
header, as the kernel would send it), and each input frame gets a one-line verdict.
scapy does the pcap I/O only (it stays out of the data plane, per the layout).
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.control import replace_file
from gateway.control.trace import CollectOutput
from gateway.dataplane import HostNode, HostPort, from_port, from_provider, from_provider_link
from gateway.errors import Drop
from gateway.policy import Policy, compile_policy
from gateway.wire import ETH_HEADER_SIZE, ETHERTYPE_IPV4, IPPROTO_GRE, build_ethernet

_ETHERTYPE = slice(12, 14)
_PROTOCOL = ETH_HEADER_SIZE + 9
_DST = slice(ETH_HEADER_SIZE + 16, ETH_HEADER_SIZE + 20)
_WIRE_MAC = bytes([2, 0, 0, 0, 0, 0])  # outer MACs of NVGRE written to the output


@dataclass(frozen=True)
class Verdict:
    index: int  # 1-based, as tshark and wireshark number frames
    node: str  # the node that handled it, "" when none would
    result: str  # "delivered to blue2", "dropped: spoofed_pa", ...


def replay(policy: Policy, frames: list[bytes]) -> tuple[list[Verdict], list[bytes]]:
    """Verdicts for each input frame, and the frames the data plane sent."""
    snapshot = compile_policy(policy)
    nodes = {n.name: HostNode(snapshot, n.name, CollectOutput()) for n in policy.nodes}
    by_mac: dict[bytes, tuple[str, HostPort]] = {}
    for name, dataplane in nodes.items():
        for port in dataplane.tables.ports:
            by_mac[port.mac] = (name, port)
    verdicts: list[Verdict] = []
    written: list[bytes] = []
    for index, frame in enumerate(frames, 1):
        node, call, start = _route(frame, nodes, by_mac)
        if call is None:
            verdicts.append(Verdict(index, "", "ignored: not for a PA or from a VM port here"))
            continue
        out = nodes[node].out = CollectOutput()
        drops = list(nodes[node].counters.drops)
        call(nodes[node], memoryview(bytearray(frame[start:])))
        verdicts.append(Verdict(index, node, _result(nodes[node], drops, out)))
        written += [bytes(f) for _, f in out.ports]
        written += [
            build_ethernet(_WIRE_MAC, _WIRE_MAC, ETHERTYPE_IPV4) + d for *_, d in out.provider
        ]
        written += out.link
    return verdicts, written


def _route(
    frame: bytes, nodes: dict[str, HostNode], by_mac: dict[bytes, tuple[str, HostPort]]
) -> tuple[str, Any, int]:
    """The node a frame reaches, the data plane call for it, and where its input
    starts (from_provider takes the datagram from its IP header, the rest frames)."""
    if len(frame) >= ETH_HEADER_SIZE + 20 and frame[_ETHERTYPE] == ETHERTYPE_IPV4.to_bytes(
        2, "big"
    ):
        for name, dataplane in nodes.items():
            if frame[_DST] in dataplane.tables.local_pas:
                if frame[_PROTOCOL] == IPPROTO_GRE:
                    return name, from_provider, ETH_HEADER_SIZE
                return name, from_provider_link, 0
    found = by_mac.get(frame[6:12])
    if found is not None:
        name, port = found
        return name, lambda node, view: from_port(node, port, view), 0
    return "", None, 0


def _result(dataplane: HostNode, before: list[int], out: CollectOutput) -> str:
    after = dataplane.counters.drops
    dropped = [Drop(i).label for i in range(len(after)) if after[i] > before[i]]
    if dropped:
        return "dropped: " + ", ".join(dropped)
    said = [f"to {port.name}" for port, _ in out.ports]
    said += [f"NVGRE to PA {'.'.join(map(str, dst))}" for _, dst, _ in out.provider]
    said += ["on the provider link"] * len(out.link)
    return "sent " + ", ".join(said) if said else "consumed"


def summary(verdicts: list[Verdict]) -> Counter[str]:
    """How many frames got each kind of verdict ("sent", "dropped: x", "ignored")."""
    return Counter(
        v.result if v.result.startswith("dropped") else v.result.split(" ")[0] for v in verdicts
    )


def read_frames(path: Any) -> list[bytes]:
    """The frames of a pcap (Ethernet link type), as bytes."""
    from scapy.utils import rdpcap

    return [bytes(packet) for packet in rdpcap(str(path))]


def write_frames(path: Any, frames: list[bytes]) -> None:
    """The frames as a pcap, replacing ``path`` atomically (``replace_file``; a link
    given there is written through, to the file it points to, as ``>`` would)."""
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    capture = _Capture()
    wrpcap(capture, [Ether(frame) for frame in frames])
    replace_file(Path(path).resolve(), capture.getvalue())


class _Capture(io.BytesIO):
    """Where wrpcap writes: it closes its file when done, and the bytes are still
    needed after that."""

    def close(self) -> None:
        pass
