"""Our WireGuard core against wireguard-go, a peer that is not ours, over real UDP.

wireguard-go runs in one namespace the test creates (recipe 02: its interface name
carries the test's prefix, its UAPI socket is machine-wide), our ``Device`` sits
behind a UDP socket in another, and the test is the I/O adapter: it moves datagrams
between the socket and the device, fires the device's timers, and answers the echo
requests the device decrypts. Proven: a handshake started by our side and one
started by wireguard-go, ICMP echo both ways through the tunnel, and a replayed data
packet dropped by each side.
"""

from __future__ import annotations

import base64
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyroute2 import netns as pyroute2_netns

from gateway.lab import netns
from gateway.wire import (
    IPPROTO_ICMP,
    build_icmp_echo,
    build_icmp_echo_reply,
    build_ipv4,
    parse_icmp,
    parse_inner_ipv4,
)
from gateway.wireguard import Device, Peer, Reason
from tests.conftest import require_root, require_tool
from tests.io._host import stop_process

pytestmark = pytest.mark.netns

PORT = 51820
GO_PA, US_PA = "198.19.77.1", "198.19.77.2"  # the two ends of the veth (198.18.0.0/15)
GO_INNER, US_INNER = bytes([10, 77, 0, 1]), bytes([10, 77, 0, 2])  # inside the tunnel
WAIT_S = 15.0  # a budget for things that must happen, not a timing assertion


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@dataclass
class Pair:
    prefix: str
    go_ns: str
    us_ns: str
    ifname: str
    workdir: Path
    sock: socket.socket
    go_public: bytes
    process: subprocess.Popen
    received: list[bytes] = field(default_factory=list)  # transport datagrams from go
    sent: list[bytes] = field(default_factory=list)  # transport datagrams we sent

    def wg(self, *args: str) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", self.go_ns, "wg", *args],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def configure_peer(self, device: Device, *, endpoint: bool) -> None:
        """Make ``device``'s key wireguard-go's one peer (the last test's removed)."""
        args = ["set", self.ifname]
        for old in self.wg("show", self.ifname, "peers").split():
            args += ["peer", old, "remove"]
        args += ["peer", _b64(device.identity.public), "allowed-ips", "10.77.0.2/32"]
        if endpoint:
            args += ["endpoint", f"{US_PA}:{PORT}"]
        self.wg(*args)

    def transfer(self, device: Device) -> tuple[int, int]:
        """wireguard-go's (rx bytes, tx bytes) for our peer."""
        for line in self.wg("show", self.ifname, "transfer").splitlines():
            key, rx, tx = line.split("\t")
            if key == _b64(device.identity.public):
                return int(rx), int(tx)
        raise AssertionError("our key is not wireguard-go's peer")

    def pump(self, device: Device, until, budget_s: float = WAIT_S) -> list[tuple[Peer, bytes]]:
        """Move datagrams both ways, answer echo requests, fire timers, until
        ``until(delivered)`` holds; every packet delivered to us is returned."""
        delivered: list[tuple[Peer, bytes]] = []
        deadline = time.monotonic() + budget_s
        while not until(delivered):
            now = time.monotonic()
            assert now < deadline, f"not done in {budget_s} s; refused: {_refused(device)}"
            self.flush(device)
            due = device.next_deadline()
            wait = min(0.05, max(0.0, due - now)) if due is not None else 0.05
            if select.select([self.sock], [], [], wait)[0]:
                datagram, source = self.sock.recvfrom(2048)
                if datagram[0] == 4:
                    self.received.append(datagram)
                got = device.receive(datagram, source, time.monotonic())
                if got is not None:
                    delivered.append((got[0], bytes(got[1])))
                    _answer_echo(device, *delivered[-1])
            device.tick(time.monotonic())
        self.flush(device)
        return delivered

    def ping_us(self, device: Device, count: int) -> int:
        """ping's exit status pinging our side from wireguard-go's, pumping meanwhile."""
        command = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "5", "10.77.0.2"]
        ping = subprocess.Popen(["ip", "netns", "exec", self.go_ns, *command])
        self.pump(device, lambda _: ping.poll() is not None)
        return ping.returncode

    def flush(self, device: Device) -> None:
        for datagram, endpoint in device.outbox:
            if datagram[0] == 4:
                self.sent.append(bytes(datagram))
            self.sock.sendto(datagram, endpoint)
        device.outbox.clear()


def _refused(device: Device) -> dict[str, int]:
    return {reason.label: n for reason, n in zip(Reason, device.refused, strict=True) if n}


def _echo(src: bytes, dst: bytes, ident: int, seq: int, *, reply: bool = False) -> bytes:
    icmp = build_icmp_echo(ident, seq, b"nvgw wireguard interop", reply=reply)
    return build_ipv4(src, dst, IPPROTO_ICMP, len(icmp)) + icmp


def _icmp_of(packet: bytes) -> tuple[bytes, bytes, object] | None:
    header = parse_inner_ipv4(packet)
    if header.protocol != IPPROTO_ICMP:
        return None
    return (
        packet[12:16],
        packet[16:20],
        parse_icmp(packet[header.header_length : header.total_length]),
    )


def _answer_echo(device: Device, peer: Peer, packet: bytes) -> None:
    """What our side of the tunnel does with an echo request to 10.77.0.2: answer it."""
    found = _icmp_of(packet)
    if found is None or found[1] != US_INNER or found[2].type != 8:  # type: ignore[attr-defined]
        return
    icmp = build_icmp_echo_reply(found[2])  # type: ignore[arg-type]
    device.send(
        peer, build_ipv4(US_INNER, found[0], IPPROTO_ICMP, len(icmp)) + icmp, time.monotonic()
    )


def _is_echo_reply(ident: int, seq: int):
    def done(delivered: list[tuple[Peer, bytes]]) -> bool:
        for _, packet in delivered:
            found = _icmp_of(packet)
            if found and found[2].type == 0 and found[2].rest == (ident << 16 | seq):  # type: ignore[attr-defined]
                return True
        return False

    return done


def _new_device() -> Device:
    return Device(os.urandom(32), wall_offset_s=time.time() - time.monotonic())


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    require_root()
    for tool in ("ip", "wireguard-go", "wg"):
        require_tool(tool)
    prefix = f"nvt{os.getpid() % 10000}wg"
    go_ns, us_ns, ifname = f"{prefix}-go", f"{prefix}-us", f"{prefix}0"
    netns.check_ifname(ifname)
    workdir = Path(f"/tmp/{prefix}")
    process: subprocess.Popen | None = None
    sock: socket.socket | None = None
    try:  # cleanup registered before the first side effect
        workdir.mkdir(mode=0o700, exist_ok=True)
        netns.create(go_ns)
        netns.create(us_ns)
        netns.add_veth(go_ns, "wgv-go", us_ns, "wgv-us")
        netns.add_address(go_ns, "wgv-go", GO_PA, 24)
        netns.add_address(us_ns, "wgv-us", US_PA, 24)
        go_key = subprocess.run(["wg", "genkey"], check=True, capture_output=True).stdout
        go_public = subprocess.run(
            ["wg", "pubkey"], input=go_key, check=True, capture_output=True
        ).stdout
        (workdir / "go.key").write_bytes(go_key)
        uapi = Path(f"/var/run/wireguard/{ifname}.sock")
        log = (workdir / "wireguard-go.log").open("wb")
        process = subprocess.Popen(
            ["ip", "netns", "exec", go_ns, "wireguard-go", "-f", ifname],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LOG_LEVEL": "verbose"},
        )
        deadline = time.monotonic() + WAIT_S
        while not uapi.exists():  # its readiness: the UAPI socket
            assert process.poll() is None, (workdir / "wireguard-go.log").read_text()
            assert time.monotonic() < deadline, "wireguard-go made no UAPI socket"
            time.sleep(0.05)
        for command in (
            ["wg", "set", ifname, "listen-port", str(PORT), "private-key", str(workdir / "go.key")],
            ["ip", "addr", "add", "10.77.0.1/24", "dev", ifname],
            ["ip", "link", "set", ifname, "up"],
        ):
            subprocess.run(["ip", "netns", "exec", go_ns, *command], check=True)
        pyroute2_netns.pushns(us_ns)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        finally:
            pyroute2_netns.popns()
        sock.bind((US_PA, PORT))
        yield Pair(
            prefix, go_ns, us_ns, ifname, workdir, sock, base64.b64decode(go_public), process
        )
    finally:
        if sock is not None:
            sock.close()
        stop_process(process)
        for name in (go_ns, us_ns):
            netns.remove(name)
        shutil.rmtree(workdir, ignore_errors=True)  # wireguard-go's key and log


def test_a_handshake_we_start_then_echo_both_ways(pair: Pair) -> None:
    device = _new_device()
    pair.configure_peer(device, endpoint=False)  # wireguard-go learns us from our packets
    peer = device.add_peer(pair.go_public, endpoint=(GO_PA, PORT))
    device.send(peer, _echo(US_INNER, GO_INNER, 0x77, 1), time.monotonic())
    assert device.outbox[0][0][0] == 1  # no session: the packet waits, an initiation goes
    pair.pump(device, _is_echo_reply(0x77, 1))
    assert peer.handshakes == 1
    assert peer.keypairs.current is not None and peer.keypairs.current.initiator
    # wireguard-go's kernel pings us through the tunnel; our side answers.
    assert pair.ping_us(device, 3) == 0
    assert peer.rx_packets >= 4 and peer.tx_packets >= 4
    assert _refused(device) == {}


def test_a_handshake_wireguard_go_starts(pair: Pair) -> None:
    device = _new_device()
    pair.configure_peer(device, endpoint=True)
    peer = device.add_peer(pair.go_public)  # no endpoint: only wireguard-go can start
    assert pair.ping_us(device, 2) == 0
    assert peer.handshakes == 1 and peer.endpoint == (GO_PA, PORT)
    assert peer.keypairs.current is not None and not peer.keypairs.current.initiator
    # Our echo request through the session wireguard-go started.
    device.send(peer, _echo(US_INNER, GO_INNER, 0x78, 1), time.monotonic())
    pair.pump(device, _is_echo_reply(0x78, 1))
    assert _refused(device) == {}


def test_a_replayed_data_packet_is_dropped_by_each_side(pair: Pair) -> None:
    device = _new_device()
    pair.configure_peer(device, endpoint=False)
    peer = device.add_peer(pair.go_public, endpoint=(GO_PA, PORT))
    device.send(peer, _echo(US_INNER, GO_INNER, 0x7A, 1), time.monotonic())
    pair.pump(device, _is_echo_reply(0x7A, 1))
    # Ours: the echo reply wireguard-go sent, received again.
    replayed = pair.received[-1]
    device.receive(replayed, (GO_PA, PORT), time.monotonic())
    assert device.refused[Reason.REPLAYED] == 1 and peer.replays == 1
    # wireguard-go's: our last echo request sent again, then a new one. The kernel
    # would answer the replay if it got through; wireguard-go counts only the new one.
    rx_before, _ = pair.transfer(device)
    sealed = [d for d in pair.sent if len(d) > 32]
    pair.sock.sendto(sealed[-1], (GO_PA, PORT))
    device.send(peer, _echo(US_INNER, GO_INNER, 0x79, 1), time.monotonic())
    size = len(device.outbox[-1][0])
    delivered = pair.pump(device, _is_echo_reply(0x79, 1))
    rx_after, _ = pair.transfer(device)
    assert rx_after - rx_before == size
    replies = [p for _, p in delivered if (f := _icmp_of(p)) and f[2].type == 0]  # type: ignore[attr-defined]
    assert len(replies) == 1
