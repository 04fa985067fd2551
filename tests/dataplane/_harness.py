"""Two or more sans-IO host dataplanes joined by lists instead of sockets.

``Lab.carry`` does what the kernel and the provider network would do between
daemons: it puts the outer IPv4 header in front of what ``to_provider`` hands over
(as the raw GRE socket's kernel would) and gives the datagram to the node owning the
destination PA; frames for the provider link go where an Ethernet switch would send
them (by destination MAC, broadcast to every other node).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.control import load_config, read_document, to_plain
from gateway.dataplane import HostNode, HostPort, from_port, from_provider, from_provider_link
from gateway.policy import Snapshot, compile_policy, load_policy
from gateway.wire import IPPROTO_GRE, build_ipv4

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
NOW = 100.0  # the clock the tests run at; neighbour entries age against it


def provider_mac(index: int) -> bytes:
    return bytes([2, 0, 0, 0, 0, index + 1])


def snapshot_of(name: str) -> Snapshot:
    return compile_policy(load_config(CONFIGS / f"{name}.yaml"))


def snapshot_from(name: str, edit: Callable[[dict], object]) -> Snapshot:
    """A shipped config with ``edit`` applied to its plain document, loaded and compiled
    (so everything the validator refuses is refused here too)."""
    document = to_plain(read_document(CONFIGS / f"{name}.yaml"))
    edit(document)
    return compile_policy(load_policy(document))


def blue2_migrated_to_host1() -> Snapshot:
    """two-hosts after a live migration of blue2: its record's PA and its port move."""
    document = to_plain(read_document(CONFIGS / "two-hosts.yaml"))
    for record in document["lookup_records"]:
        if record.get("vm") == "blue2":
            record["pa"] = "198.18.0.1"
    nodes = document["nodes"]
    nodes["host1"]["ports"].append(nodes["host2"]["ports"].pop(0))
    return compile_policy(load_policy(document))


@dataclass
class Collect:
    """An Output that keeps everything, in order."""

    ports: list[tuple[str, bytes]] = field(default_factory=list)
    provider: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)  # src, dst, datagram
    provider_link: list[bytes] = field(default_factory=list)

    def to_tap(self, tap: HostPort, frame) -> None:
        self.ports.append((tap.name, bytes(frame)))

    def to_provider(self, src_pa: bytes, dst_pa: bytes, gre: bytes, frame) -> None:
        payload = gre + bytes(frame)
        header = build_ipv4(src_pa, dst_pa, IPPROTO_GRE, len(payload))
        self.provider.append((src_pa, dst_pa, header + payload))

    def to_provider_link(self, frame: bytes) -> None:
        self.provider_link.append(bytes(frame))


class Lab:
    """Every node of a config, each with its own dataplane and output."""

    def __init__(self, config: str | Snapshot) -> None:
        self.snapshot = snapshot_of(config) if isinstance(config, str) else config
        self.nodes = {
            node.name: HostNode(self.snapshot, node.name, Collect(), provider_mac=provider_mac(i))
            for i, node in enumerate(self.snapshot.policy.nodes)
        }
        self.out: dict[str, Collect] = {}
        for name, node in self.nodes.items():
            node.now = NOW
            self.out[name] = node.out  # type: ignore[assignment]
        self.link_log: list[bytes] = []  # every frame carried on the provider link

    def port(self, name: str) -> tuple[str, HostPort]:
        for node, dataplane in self.nodes.items():
            for port in dataplane.tables.ports:
                if port.name == name:
                    return node, port
        raise KeyError(name)

    def send(self, vm: str, frame: bytes) -> None:
        """A VM sends a frame; carry whatever crosses the provider network to its node."""
        node, port = self.port(vm)
        from_port(self.nodes[node], port, memoryview(bytearray(frame)))
        self.carry()

    def carry(self) -> None:
        """Deliver what crosses the provider network until nothing is in flight."""
        moved = True
        while moved:
            moved = False
            for sender, out in self.out.items():
                while out.provider:
                    moved = True
                    _, dst, datagram = out.provider.pop(0)
                    target = self.owner(dst)
                    if target is not None:
                        view = memoryview(bytearray(datagram))
                        from_provider(self.nodes[target], view)
                while out.provider_link:
                    moved = True
                    frame = out.provider_link.pop(0)
                    self.link_log.append(frame)
                    for name, dataplane in self.nodes.items():
                        if name != sender and frame[0:6] in (dataplane.provider_mac, b"\xff" * 6):
                            view = memoryview(bytearray(frame))
                            from_provider_link(dataplane, view)

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
