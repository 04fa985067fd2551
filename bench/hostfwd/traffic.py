"""The traffic: eight NVGRE flows built by hand, trafgen blasting them from the sender
namespace, a measured window between two snapshots of the counters, and the sender's
own ceiling (nobody receiving)."""

from __future__ import annotations

import signal
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.control import load_config
from gateway.errors import ConfigError

from .common import (
    FLOWS,
    HOST_DEV,
    HOST_MAC,
    HOST_PA,
    LOCAL_VM,
    NS_HOST,
    NS_SND,
    OTHER_MAC,
    PA_PREFIX,
    PORT,
    RCV_CPU,
    REMOTE_VM,
    SCRATCH,
    SND_CPU,
    SND_DEV,
    SND_MAC,
    SND_PA,
    VSID,
    BenchError,
    ipn,
    nsx,
    start,
    stop,
)
from .counters import cpu_shares, delta, netdev, snap


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _ip4(text: str) -> bytes:
    return bytes(int(part) for part in text.split("."))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, _ip4(src), _ip4(dst)
    )
    checksum = struct.pack("!H", _checksum(header))
    return header[:10] + checksum + header[12:] + payload


def inner_frame(
    size: int,
    sport: int,
    source: tuple[str, str] = REMOTE_VM,
    to: tuple[str, str] = LOCAL_VM,
    dport: int = 5678,
) -> bytes:
    """An Ethernet/IPv4/UDP frame ``size`` bytes long from ``source`` to ``to`` (each
    an address and a MAC): by default the remote VM's to the local VM."""
    (src, smac), (dst, dmac) = source, to
    data = b"x" * (size - 14 - 20 - 8)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    pseudo = _ip4(src) + _ip4(dst) + struct.pack("!BBH", 0, 17, len(udp))
    udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    return _mac(dmac) + _mac(smac) + b"\x08\x00" + _ipv4(src, dst, 17, udp)


def nvgre_frames(
    size: int, source: tuple[str, str] = REMOTE_VM, to: tuple[str, str] = LOCAL_VM
) -> list[bytes]:
    """FLOWS outer frames: sender veth -> host veth, IPv4 DF proto 47, GRE K + TEB,
    around ``inner_frame(size, ..., source, to)``."""
    frames = []
    for flow in range(1, FLOWS + 1):
        gre = struct.pack("!HHI", 0x2000, 0x6558, VSID << 8 | flow)
        inner = inner_frame(size, 40000 + flow, source, to)
        outer_ip = _ipv4(SND_PA, HOST_PA, 47, gre + inner)
        frames.append(_mac(HOST_MAC) + _mac(SND_MAC) + b"\x08\x00" + outer_ip)
    return frames


def trafgen_config(size: int) -> Path:
    comment = f"NVGRE VSID {VSID}, inner {size} B, FlowID 1..{FLOWS}, round robin"
    return trafgen_file(f"nvgre_{size}", comment, nvgre_frames(size))


def trafgen_file(name: str, comment: str, frames: list[bytes]) -> Path:
    """A trafgen configuration sending ``frames`` round robin (static frames keep
    trafgen on its fast path)."""
    path = SCRATCH / f"{name}.trafgen"
    lines = [f"/* {comment} */"]
    for frame in frames:
        lines.append("{ " + ", ".join(f"0x{byte:02x}" for byte in frame) + " }")
    path.write_text("\n".join(lines) + "\n")
    return path


def nvgw_config() -> Path:
    """The benchmark node's config, validated with the daemon's own loader."""
    (remote_ca, remote_mac), (local_ca, local_mac) = REMOTE_VM, LOCAL_VM
    rdid = "{6e766222-0000-4000-8000-000000005010}"
    text = f"""\
# Written by bench/host_forwarding.py for one run; not a shipped config.
revision: 1
routing_domains:
  - rdid: "{rdid}"
    name: bench
    virtual_subnets:
      - vsid: {VSID}
        prefixes: [10.10.10.0/24]
lookup_records:
  - {{vsid: {VSID}, ca: {remote_ca}, mac: {remote_mac}, pa: {SND_PA}, rule: encap, vm: remote}}
  - {{vsid: {VSID}, ca: {local_ca}, mac: {local_mac}, pa: {HOST_PA}, rule: encap, vm: local}}
customer_routes:
  - {{rdid: "{rdid}", vsid: {VSID}, destination: 10.10.10.0/24, next_hop: 0.0.0.0}}
nodes:
  bench:
    role: host
    provider_addresses:
      - {{interface: {HOST_DEV}, pa: {HOST_PA}, prefix_length: {PA_PREFIX}}}
    ports:
      - {{name: {PORT}, vsid: {VSID}, mac: {local_mac}}}
"""
    return validated_config("bench.yaml", text)


def validated_config(name: str, text: str) -> Path:
    """``text`` written to the scratch file ``name`` and loaded by the daemon's own
    loader: a config it would refuse stops the run before anything is measured."""
    path = SCRATCH / name
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as error:
        raise BenchError(
            f"generated config {path} refused: " + "; ".join(str(i) for i in error.issues)
        ) from None
    return path


SENDER = (NS_SND, SND_DEV)  # where trafgen sends from, by default: the sender veth


def start_trafgen(
    cfg: Path,
    secs: float,
    count: int | None = None,
    where: tuple[str, str] = SENDER,
    slow: bool = False,
) -> subprocess.Popen:
    # -P 1: one worker on CPU 0. Only the long options keep trafgen 0.6.8 off the global
    # socket-memory sysctls and the IRQ affinity; SIGINT (timeout -s INT) stops it cleanly.
    # slow: one blocking sendto() per frame (-t 0ns), for a receiver whose frames queue
    # on another CPU (RPS), where the ring's fast path fails with EAGAIN (bench-anchors C).
    ns, dev = where
    cmd = ["timeout", "-s", "INT", str(int(secs)), "taskset", "-c", str(SND_CPU), "trafgen"]
    cmd += ["--dev", dev, "--conf", str(cfg), "-P", "1"]
    cmd += ["-t", "0ns"] if slow else []
    cmd += ["--no-sock-mem", "--notouch-irq", "--no-cpu-stats"]
    if count:
        cmd += ["-n", str(count)]
    return start(nsx(ns, *cmd), "trafgen.log")


def wait_flowing(timeout: float = 8.0, where: tuple[str, str] = SENDER) -> None:
    ns, dev = where
    t_end = time.monotonic() + timeout
    first = netdev(ns)[dev]["tx_packets"]
    while time.monotonic() < t_end:
        time.sleep(0.1)
        if netdev(ns)[dev]["tx_packets"] > first + 1000:
            return
    raise BenchError(f"no traffic from trafgen within {timeout:.0f} s (see {SCRATCH}/trafgen.log)")


def blast(
    cfg: Path,
    dur: float,
    warm: float,
    pid: int | None,
    after: Callable[[], None] | None = None,
    where: tuple[str, str] = SENDER,
    slow: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    extra = dur + 10 if after else 0
    trafgen = start_trafgen(cfg, warm + dur + 8 + extra, where=where, slow=slow)
    try:
        wait_flowing(where=where)
        time.sleep(warm)
        s0 = snap(pid, trafgen.pid)
        time.sleep(dur)
        s1 = snap(pid, trafgen.pid)
        if after is not None:
            after()  # under the same load, after the window: does not disturb its figures
    finally:
        stop(trafgen, signal.SIGINT)
    if trafgen.returncode not in (0, 130, -signal.SIGINT, 124):
        raise BenchError(f"trafgen exited with {trafgen.returncode} (see {SCRATCH}/trafgen.log)")
    return s0, s1


def sender_figures(s0: dict[str, Any], s1: dict[str, Any]) -> dict[str, Any]:
    dt = s1["t"] - s0["t"]
    d = delta(s0, s1, NS_SND, SND_DEV)
    host_rx = delta(s0, s1, NS_HOST, HOST_DEV)["rx_packets"]
    cpus = cpu_shares(s0["cpu"], s1["cpu"], dt)
    sender_user, sender_sys = (b - a for a, b in zip(s0["sender"], s1["sender"], strict=True))
    r = {
        "window_s": round(dt, 3),
        "offered_pps": round((d["tx_packets"] + d["tx_drop"]) / dt),
        "sender_veth_drops": d["tx_drop"],
        "host_veth_rx_pps": round(host_rx / dt),
        "raw_socket_drops": s1["raw_drops"] - s0["raw_drops"],
        "sender_cores": round((sender_user + sender_sys) / dt, 3),
        "cpus": cpus,
    }
    # CPU time on the two cores that is neither ours nor the kernel's receive work for
    # our frames (softirq on the sender's core): another job on a shared machine. On the
    # sender's core, softirq ticks that land in trafgen's context count twice (as softirq
    # and as trafgen's system time), so the first estimate is low; the second, user time
    # that is not trafgen's, catches the usual other job (a test run, Python, tshark).
    snd, rcv = cpus[f"cpu{SND_CPU}"], cpus[f"cpu{RCV_CPU}"]
    other_snd = max(
        snd["busy"] - snd["softirq"] - r["sender_cores"], snd["user"] - sender_user / dt, 0.0
    )
    r["other_load"] = {
        f"cpu{SND_CPU}": round(other_snd, 3),
        f"cpu{RCV_CPU}": rcv["busy"],  # the receiver's own share is taken off by the caller
    }
    return r


def bottleneck(r: dict[str, Any]) -> str:
    """Who limited the run. The receiver: frames reached the host namespace but not the
    TAP (its raw socket's buffer or its receive ring was full: it could not keep up), or
    the sender waited on it (its core not busy). Else the sender veth (drops) or the
    sender itself: then the delivered rate is a lower bound of the receiver's."""
    if r["host_ns_lost_pps"] > 0.02 * r["host_veth_rx_pps"]:
        return "receiver"
    if r["cpus"][f"cpu{SND_CPU}"]["busy"] < 0.9:
        return "receiver (sender back-pressured)"
    if r["offered_pps"] > 1.02 * r["host_veth_rx_pps"]:
        return "sender veth (dropped before the host namespace)"
    return "sender"


def measure_sender_alone(cfg: Path, dur: float, warm: float) -> dict[str, Any]:
    """trafgen's own ceiling on this veth: the host veth takes another MAC, so its
    kernel drops every frame on arrival (a raw socket without a listener would be
    slower, not faster: the kernel answers with ICMP protocol-unreachable)."""
    ipn(NS_HOST, "link", "set", HOST_DEV, "address", OTHER_MAC)
    try:
        s0, s1 = blast(cfg, dur, warm, None)
    finally:
        ipn(NS_HOST, "link", "set", HOST_DEV, "address", HOST_MAC)
    r = sender_figures(s0, s1)
    r["delivered_pps"] = r["host_veth_rx_pps"]
    r["delivered_counter"] = "host veth rx_packets (dropped on arrival)"
    return r
