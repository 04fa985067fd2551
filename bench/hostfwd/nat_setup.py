"""The NAT part's own pieces (``bench/gateway_nat.py``): the gateway's config with a
NAT, the frames, the internet namespace, the kernel anchor's router, and the NAT
table's memory per session.

The gateway node ``gw`` owns the host namespace's PA and routes routing domain
``bench`` (VSID 5010) to its NAT: ``0.0.0.0/0`` to ``nat``, one external address
(203.0.113.10) on the external TAP ``nvbext0``, whose kernel end is moved into
``nvb-inet`` as the internet router 203.0.113.1 (the NAT's next hop). The kernel
anchor uses the same namespaces: the host namespace forwards plain IPv4 with
``ip_forward`` on and masquerades (nftables) out of a veth ``nvbk0`` into ``nvb-inet``
(``nvbk1``, 203.0.113.1), its receive work steered to the receiver core with RPS
(bench-anchors part C's method). Both internet ends drop IPv4 at ingress, after the
device counted it.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

from gateway.dataplane import tap_mac
from gateway.dataplane.napt.states import UDP_UNREPLIED
from gateway.dataplane.napt.table import Napt
from gateway.wire import IPPROTO_UDP

from .common import (
    FLOWS,
    HOST_DEV,
    HOST_MAC,
    NS_HOST,
    NS_INET,
    RCV_CPU,
    REMOTE_VM,
    VSID,
    ipn,
    nsx,
    run,
)
from .gateway_setup import (
    GW_RECORD,
    SINK_MAC,
    VSID_NET,
    drop_ipv4_at_ingress,
    gateway_document,
)
from .traffic import inner_frame, nvgre_frames, trafgen_file, validated_config

EXT_TAP = "nvbext0"  # the NAT's external TAP
EXT_ADDR, ROUTER, INET_PREFIX = "203.0.113.10", "203.0.113.1", 24
SERVER = "198.51.100.2"  # beyond the internet router: where every flow goes
SERVER_PORT = 5678  # inner_frame's destination port
INET_MTU = 1500
K_HOST, K_INET = "nvbk0", "nvbk1"  # the kernel anchor's veth: router side, internet side
K_HOST_MAC, K_INET_MAC = "02:00:00:00:0b:00", "02:00:00:00:0b:01"
INET_MAC = K_INET_MAC  # the internet router's, on either link
EXT_MAC = tap_mac(EXT_TAP).hex(":")  # the daemon's own on its external TAP
UDP_TIMEOUT_S = 600  # the sessions outlive the whole run
MEMORY_SESSIONS = (10_000, 100_000)


def nat_config() -> Path:
    """The gateway node with a NAT, validated with the daemon's own loader."""
    text = (
        gateway_document("gateway_nat.py")
        + f"""\
      bench:
        routes:
          - {{destination: 0.0.0.0/0, next_hop: nat}}
        nat: {{max_sessions: 1024}}
    nat:
      tap: {EXT_TAP}
      addresses: [{EXT_ADDR}/{INET_PREFIX}]
      next_hop: {ROUTER}
      timeouts: {{udp_unreplied_s: {UDP_TIMEOUT_S}, udp_stream_s: {UDP_TIMEOUT_S}}}
"""
    )
    return validated_config("gateway-nat.yaml", text)


def tenant_frames(size: int) -> list[bytes]:
    """NVGRE from the tenant VM to the internet server, to the gateway's record's MAC
    (the gateway routes it to its NAT): FLOWS source ports, ``size`` B inner."""
    return nvgre_frames(size, REMOTE_VM, (SERVER, GW_RECORD[1]))


def kernel_frames(size: int) -> list[bytes]:
    """The same inner frames as plain IPv4, to the host veth's MAC (the kernel routes)."""
    return [
        inner_frame(size, 40000 + flow, REMOTE_VM, (SERVER, HOST_MAC))
        for flow in range(1, FLOWS + 1)
    ]


def traffic_configs(size: int) -> dict[str, Path]:
    """trafgen's frames per receiver kind: the daemons' NVGRE, the kernel's plain IPv4."""
    nvgre = trafgen_file(
        f"nat_nvgre_{size}", f"NVGRE VSID {VSID} -> {SERVER}, inner {size} B", tenant_frames(size)
    )
    plain = trafgen_file(
        f"nat_plain_{size}", f"IPv4 {REMOTE_VM[0]} -> {SERVER}, {size} B", kernel_frames(size)
    )
    return {"kernel": plain, "bare": nvgre, "asyncio": nvgre, "trio": nvgre}


def reply_frames(size: int, ports: list[int], to_mac: str) -> list[bytes]:
    """The server's replies to the sessions the tenant opened (``ports``: their
    external ports), ``size`` B frames to ``to_mac`` (the daemon's MAC on its external
    TAP, or the kernel router's on its veth), as the internet router sends them."""
    return [
        inner_frame(size, SERVER_PORT, (SERVER, INET_MAC), (EXT_ADDR, to_mac), dport=port)
        for port in ports
    ]


def reply_config(kind: str, size: int, ports: list[int]) -> Path:
    to_mac = K_HOST_MAC if kind == "kernel" else EXT_MAC
    comment = f"{SERVER}:{SERVER_PORT} -> {EXT_ADDR} ports {ports}, {size} B frames"
    return trafgen_file(f"nat_back_{kind}_{size}", comment, reply_frames(size, ports, to_mac))


def attach_internet() -> None:
    """The external TAP's kernel end (just made by the daemon) into the internet
    namespace as the router: addressed, up, IPv4 dropped at ingress (ARP answered)."""
    ipn(NS_HOST, "link", "set", EXT_TAP, "netns", NS_INET)
    ipn(NS_INET, "link", "set", EXT_TAP, "address", INET_MAC, "mtu", str(INET_MTU), "up")
    ipn(NS_INET, "addr", "add", f"{ROUTER}/{INET_PREFIX}", "dev", EXT_TAP)
    drop_ipv4_at_ingress(NS_INET, EXT_TAP)


def kernel_router_up() -> None:
    """The host namespace as a Linux NAT router (bench-anchors part C): forwarding on,
    nftables masquerade out of a veth into the internet namespace, a static neighbour
    for the router there, and the host veth's receive work steered to the receiver
    core (RPS), so that the kernel's whole forwarding and NAT is CPU 1's softirq."""
    run(["ip", "link", "add", K_HOST, "netns", NS_HOST, "address", K_HOST_MAC, "type", "veth",
         "peer", "name", K_INET,
         "netns", NS_INET, "address", K_INET_MAC])  # fmt: skip
    ipn(NS_HOST, "addr", "add", f"{EXT_ADDR}/{INET_PREFIX}", "dev", K_HOST)
    ipn(NS_INET, "addr", "add", f"{ROUTER}/{INET_PREFIX}", "dev", K_INET)
    ipn(NS_HOST, "link", "set", K_HOST, "up")
    ipn(NS_INET, "link", "set", K_INET, "up")
    ipn(NS_HOST, "route", "add", VSID_NET, "dev", HOST_DEV)
    ipn(NS_HOST, "route", "add", "default", "via", ROUTER, "dev", K_HOST)
    neighbour = ("lladdr", K_INET_MAC, "dev", K_HOST, "nud", "permanent")
    ipn(NS_HOST, "neigh", "replace", ROUTER, *neighbour)
    # the way back: to the VM, a MAC the sender veth does not have (dropped on arrival)
    ipn(
        NS_HOST,
        "neigh",
        "replace",
        REMOTE_VM[0],
        "lladdr",
        SINK_MAC,
        "dev",
        HOST_DEV,
        "nud",
        "permanent",
    )
    run(nsx(NS_HOST, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
    hook = "{ type nat hook postrouting priority srcnat; policy accept; }"
    run(nsx(NS_HOST, "nft", "add", "table", "ip", "nvbnat"))
    run(nsx(NS_HOST, "nft", "add", "chain", "ip", "nvbnat", "post", hook))
    run(nsx(NS_HOST, "nft", "add", "rule", "ip", "nvbnat", "post", "oifname", K_HOST, "masquerade"))
    drop_ipv4_at_ingress(NS_INET, K_INET)
    _rps(1 << RCV_CPU)


def kernel_router_down() -> None:
    """Back to the namespaces the daemons find: no forwarding, no NAT, no RPS."""
    _rps(0)
    run(["ip", "-n", NS_HOST, "neigh", "del", REMOTE_VM[0], "dev", HOST_DEV], check=False)
    run(nsx(NS_HOST, "sysctl", "-qw", "net.ipv4.ip_forward=0"), check=False)
    run(nsx(NS_HOST, "nft", "delete", "table", "ip", "nvbnat"), check=False)
    run(["ip", "-n", NS_HOST, "route", "del", VSID_NET, "dev", HOST_DEV], check=False)
    run(["ip", "-n", NS_HOST, "link", "del", K_HOST], check=False)  # its peer goes with it


def _rps(mask: int) -> None:
    """Both of the router's links: the way out arrives on the host veth, the way back
    on its veth to the internet."""
    for dev in (HOST_DEV, K_HOST):
        path = f"/sys/class/net/{dev}/queues/rx-0/rps_cpus"
        run(nsx(NS_HOST, "sh", "-c", f"[ ! -e {path} ] || echo {mask:x} > {path}"))


def memory_per_session(sessions: int) -> dict[str, Any]:
    """Bytes the connection table holds per session (tracemalloc): ``sessions`` UDP
    sessions, each from its own tenant endpoint (a flood of distinct flows: a mapping
    and an external port each), in one table sized for them; the empty table's own
    allocation (its port rings) is reported apart."""
    addresses = [bytes([203, 0, 113, 10 + i]) for i in range(sessions // 60_000 + 1)]
    remote = bytes([198, 51, 100, 2])
    tracemalloc.start()
    try:
        napt = Napt(addresses, max_sessions=sessions, seed=1)
        tenant = napt.tenant("{bench}", max_sessions=sessions)
        empty = tracemalloc.get_traced_memory()[0]
        for i in range(sessions):
            ca = bytes([10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF])
            opened = napt.open(tenant, IPPROTO_UDP, ca, 40000, remote, 53, UDP_UNREPLIED, 0.0)
            if isinstance(opened, int):
                raise RuntimeError(f"session {i} refused: {opened!r}")
        held = tracemalloc.get_traced_memory()[0] - empty
    finally:
        tracemalloc.stop()
    return {
        "sessions": napt.count,
        "external_addresses": len(addresses),
        "empty_table_bytes": empty,
        "bytes": held,
        "bytes_per_session": round(held / napt.count),
    }
