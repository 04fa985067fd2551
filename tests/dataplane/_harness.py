"""Two or more sans-IO host dataplanes joined by lists instead of sockets.

``Wire`` is what the kernel and the provider network would do between daemons:
it puts the outer IPv4 header in front of what ``to_provider`` hands over (as the raw
GRE socket's kernel would) and gives the datagram to the node owning the destination
PA; IP-Rewritten packets get an Ethernet header and go to that node's provider link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.control import load_config
from gateway.dataplane import HostDataplane, HostPort
from gateway.policy import Snapshot, compile_policy
from gateway.wire import ETHERTYPE_IPV4, IPPROTO_GRE, build_ethernet, build_ipv4

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PROVIDER_MAC = bytes.fromhex("020000000001")


def snapshot_of(name: str) -> Snapshot:
    return compile_policy(load_config(CONFIGS / f"{name}.yaml"))


@dataclass
class Collect:
    """An Output that keeps everything, in order."""

    ports: list[tuple[str, bytes]] = field(default_factory=list)
    provider: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)  # src, dst, datagram
    provider_ip: list[tuple[bytes, bytes]] = field(default_factory=list)
    provider_link: list[bytes] = field(default_factory=list)

    def to_port(self, port: HostPort, frame) -> None:
        self.ports.append((port.name, bytes(frame)))

    def to_provider(self, src_pa: bytes, dst_pa: bytes, gre: bytes, frame) -> None:
        payload = gre + bytes(frame)
        header = build_ipv4(src_pa, dst_pa, IPPROTO_GRE, len(payload))
        self.provider.append((src_pa, dst_pa, header + payload))

    def to_provider_ip(self, dst_pa: bytes, packet) -> None:
        self.provider_ip.append((dst_pa, bytes(packet)))

    def to_provider_link(self, frame: bytes) -> None:
        self.provider_link.append(bytes(frame))


class Lab:
    """Every node of a config, each with its own dataplane and output."""

    def __init__(self, config: str) -> None:
        self.snapshot = snapshot_of(config)
        self.nodes = {
            node.name: HostDataplane(self.snapshot, node.name, provider_mac=PROVIDER_MAC)
            for node in self.snapshot.policy.nodes
        }
        self.out = {name: Collect() for name in self.nodes}

    def port(self, name: str) -> tuple[str, HostPort]:
        for node, dataplane in self.nodes.items():
            for port in dataplane.tables.ports:
                if port.name == name:
                    return node, port
        raise KeyError(name)

    def send(self, vm: str, frame: bytes) -> None:
        """A VM sends a frame; carry whatever crosses the provider network to its node."""
        node, port = self.port(vm)
        self.nodes[node].from_port(port, memoryview(bytearray(frame)), self.out[node])
        self.carry()

    def carry(self) -> None:
        for out in list(self.out.values()):
            while out.provider:
                _, dst, datagram = out.provider.pop(0)
                target = self.owner(dst)
                if target is not None:
                    self.nodes[target].from_provider(
                        memoryview(bytearray(datagram)), self.out[target]
                    )
            while out.provider_ip:
                dst, packet = out.provider_ip.pop(0)
                target = self.owner(dst)
                if target is not None:
                    frame = build_ethernet(PROVIDER_MAC, bytes(6), ETHERTYPE_IPV4) + packet
                    self.nodes[target].from_provider_link(
                        memoryview(bytearray(frame)), self.out[target]
                    )

    def owner(self, pa: bytes) -> str | None:
        for name, dataplane in self.nodes.items():
            if pa in dataplane.tables.local_pas:
                return name
        return None

    def delivered(self) -> list[tuple[str, bytes]]:
        """Frames written to any TAP so far, emptied."""
        found = []
        for out in self.out.values():
            found += out.ports
            out.ports.clear()
        return found

    def drops(self, node: str) -> dict[str, int]:
        from gateway.errors import Drop

        counts = self.nodes[node].counters.drops
        return {reason.name: counts[reason] for reason in Drop if counts[reason]}
