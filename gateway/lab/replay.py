"""``nvgw replay``: a capture through the data plane, offline.

Each frame of the capture is given to the node it would reach, in the deployment's
``Fabric`` (``gateway.dataplane.fabric``), where every node runs its real data plane
(a host's or a gateway's) over the config's policy, so the verdicts are the daemon's:
NVGRE addressed to a node's PA reaches that node's provider side (as the fabric
carries NVGRE: a gateway's PA, its gateway data plane), a plain IPv4 packet addressed
to a node's PA (IP-Rewrite) its provider link, a frame whose source MAC is a VM
port's that port, and a frame addressed to a gateway's MAC on one of its TAPs (what
its corp side sends it) that TAP. (A broadcast on a TAP's corp side names no TAP:
two tenants' TAPs may hold the same address.) A gateway's NAT runs as in the daemon:
a tenant's packet to the internet is translated by a table of the replay's own and
leaves by the external TAP, and a frame to that TAP's MAC (the internet router's ARP,
a packet to one of the NAT's addresses) is the external TAP's; the replay's table
hands out its own external ports, so the internet's answers captured from a real run
find no session here (``napt_no_session``), while a port forward's are translated as
the daemon's are. What the data plane sends is
written to the output capture (NVGRE with its outer IPv4 header, as the kernel would
send it) rather than carried on: each input frame gets a one-line verdict of its own.
scapy does the pcap I/O only (it stays out of the data plane, per the layout).
"""

from __future__ import annotations

import io
import ipaddress
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway.control import replace_file
from gateway.dataplane import Fabric, Step, tap_mac
from gateway.policy import Policy, compile_policy
from gateway.wire import (
    ETH_ADDR_SIZE,
    ETH_HEADER,
    ETH_HEADER_SIZE,
    ETH_OFFSET_SRC,
    ETHERTYPE_IPV4,
    IPPROTO_GRE,
    IPV4_ADDR_SIZE,
    IPV4_HEADER_SIZE,
    IPV4_OFFSET_DST,
    IPV4_OFFSET_PROTOCOL,
    build_ethernet,
)

_PROTOCOL: Final = ETH_HEADER_SIZE + IPV4_OFFSET_PROTOCOL
_DST: Final = slice(
    ETH_HEADER_SIZE + IPV4_OFFSET_DST, ETH_HEADER_SIZE + IPV4_OFFSET_DST + IPV4_ADDR_SIZE
)
_SRC: Final = slice(ETH_OFFSET_SRC, ETH_OFFSET_SRC + ETH_ADDR_SIZE)
_TO: Final = slice(0, ETH_ADDR_SIZE)  # the frame's destination MAC
_WIRE_MAC: Final = bytes([2, 0, 0, 0, 0, 0])  # outer MACs of NVGRE written to the output
_NOW: Final = 0.0  # a capture's frames are replayed at one instant
IGNORED: Final = "ignored"


@dataclass(frozen=True)
class Verdict:
    index: int  # 1-based, as tshark and wireshark number frames
    node: str  # the node that handled it, "" when none would
    result: str  # "sent to blue2", "dropped: spoofed_pa", ...
    kind: str  # what ``summary`` counts: "sent", "consumed", "ignored" or "dropped: REASON"


def replay(policy: Policy, frames: list[bytes]) -> tuple[list[Verdict], list[bytes]]:
    """Verdicts for each input frame, and the frames the data plane sent."""
    fabric = Fabric(compile_policy(policy))
    taps = {bytes(port.mac): (node.name, port.name) for node in policy.nodes for port in node.ports}
    gateway_taps = {
        tap_mac(tap.name): (node.name, tap.name)
        for node in policy.nodes
        for served in (node.routing_domains or {}).values()
        for tap in served.taps
    }
    # A NAT's external TAP: what the internet sends the gateway (ARP, and packets to
    # the NAT's addresses, translated back by the replay's own table).
    gateway_taps |= {
        tap_mac(node.nat.tap): (node.name, node.nat.tap) for node in policy.nodes if node.nat
    }
    verdicts: list[Verdict] = []
    written: list[bytes] = []
    for index, frame in enumerate(frames, 1):
        step = _enter(fabric, taps, gateway_taps, frame)
        # One hop per captured frame: what leaves is written out, not carried on.
        fabric.in_flight.clear()
        fabric.deliveries.clear()
        if step is None:
            reason = "not for a PA or from a VM port here"
            verdicts.append(Verdict(index, "", f"{IGNORED}: {reason}", IGNORED))
            continue
        verdicts.append(_verdict(index, step))
        written += [frame for _, frame in step.taps]
        written += [
            build_ethernet(_WIRE_MAC, _WIRE_MAC, ETHERTYPE_IPV4) + d for *_, d in step.nvgre
        ]
        written += step.link
    return verdicts, written


def _enter(
    fabric: Fabric,
    taps: dict[bytes, tuple[str, str]],
    gateway_taps: dict[bytes, tuple[str, str]],
    frame: bytes,
) -> Step | None:
    """The frame given to the node it reaches, if any: the data plane's step. ``taps``
    are VM ports by their MAC (the frame's source), ``gateway_taps`` a gateway's TAPs
    by its MAC there (the frame's destination)."""
    if len(frame) >= ETH_HEADER_SIZE + IPV4_HEADER_SIZE:
        _, _, ethertype = ETH_HEADER.unpack_from(frame)
        node = fabric.owner(frame[_DST]) if ethertype == ETHERTYPE_IPV4 else None
        if node is not None:
            if frame[_PROTOCOL] == IPPROTO_GRE:
                return fabric.from_provider(node, frame[ETH_HEADER_SIZE:], _NOW)
            return fabric.from_link(node, frame, _NOW)
    # The data plane counts a frame too short for the rest.
    found = taps.get(frame[_SRC]) or gateway_taps.get(frame[_TO])
    if found is None:
        return None
    node, tap = found
    return fabric.from_tap(node, tap, frame, _NOW)


def _verdict(index: int, step: Step) -> Verdict:
    dropped = [reason.label for reason in step.drops]
    if dropped:
        result = "dropped: " + ", ".join(dropped)
        return Verdict(index, step.node, result, result)
    said = [f"to {tap.name}" for tap, _ in step.taps]
    said += [f"NVGRE to PA {ipaddress.ip_address(dst)}" for _, dst, _ in step.nvgre]
    said += ["on the provider link"] * len(step.link)
    if not said:
        return Verdict(index, step.node, "consumed", "consumed")
    return Verdict(index, step.node, "sent " + ", ".join(said), "sent")


def summary(verdicts: list[Verdict]) -> Counter[str]:
    """How many frames got each kind of verdict ("sent", "dropped: x", "ignored", ...)."""
    return Counter(verdict.kind for verdict in verdicts)


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
