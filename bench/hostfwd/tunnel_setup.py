"""The tunnel part's own pieces (``bench/gateway_tunnel.py``): the site namespace and
its wireguard-go, the WAN veth, the keys, the gateway's config with one tunnel, the
frames, and the gateway side's own wireguard-go (the anchor).

The host namespace (the gateway's) gets a second veth, the WAN: ``nvbw0`` 192.0.2.1
there, ``nvbw1`` 192.0.2.11 in ``nvb-site``. The site runs wireguard-go (interface
``nvbwgsite``, port 51820, the server address 172.16.50.10/24 on it, not pinned) with
two peers: the gateway daemon (its port 51820 key; allowed IPs the VSID's
10.10.10.0/24) and the anchor, a wireguard-go in the host namespace (``nvbwggw``,
port 51821, 10.99.0.1, allowed IPs 10.99.0.0/24). What the site decrypts is counted
as its TUN's rx and, UDP, dropped at the TUN's ingress (nftables), so nothing answers
and the sink costs the same for both; TCP goes on to the iperf3 server there
(``tunnel_tcp.py``). wireguard-go's control sockets live in
/var/run/wireguard for the whole machine: both names carry the benchmark's ``nvb``
prefix (decisions.md, "Lab and tests").
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from .common import (
    FLOWS,
    NS_HOST,
    NS_SITE,
    RCV_CPU,
    REMOTE_VM,
    SCRATCH,
    WG_GW,
    WG_SITE,
    BenchError,
    ipn,
    nsx,
    run,
    start,
    stop,
)
from .gateway_setup import GW_RECORD, drop_ipv4_at_ingress, gateway_document
from .namespaces import make_namespace
from .paced_send import write_frames
from .traffic import inner_frame, nvgre_frames, validated_config

NODE = "gw"
TUNNEL = "site"
WAN_GW, WAN_SITE = "nvbw0", "nvbw1"
WAN_GW_ADDR, WAN_SITE_ADDR, WAN_PREFIX = "192.0.2.1", "192.0.2.11", 24
PORT, ANCHOR_PORT = 51820, 51821  # the daemon's listen port, the anchor's
SITE_NET, SERVER = "172.16.50.0/24", "172.16.50.10"
VSID_NET = "10.10.10.0/24"
ANCHOR_ADDR, ANCHOR_NET = "10.99.0.1", "10.99.0.0/24"
INNER = 1400  # the inner IPv4 packet: anchor D's 1372 B of UDP payload
WG_OVERHEAD = 20 + 8 + 32  # outer IPv4, UDP, WireGuard's header and tag
UAPI = Path("/var/run/wireguard")
KEYS = SCRATCH / "tunnel-keys"
ANY_MAC = "02:00:00:00:00:00"  # cut off: a TUN takes IP packets


def keys() -> dict[str, tuple[Path, str]]:
    """A key pair each for the daemon, the site and the anchor, new for the run: the
    private key's file (owner only) and the public key."""
    KEYS.mkdir(mode=0o700, exist_ok=True)
    out = {}
    for who in ("gw", "site", "anchor"):
        private = run(["wg", "genkey"]).encode()
        path = KEYS / f"{who}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private)
        public = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, check=True)
        out[who] = (path, public.stdout.decode().strip())
    return out


def tunnel_config(gw_key: Path, site_public: str, name: str = "gateway-tunnel.yaml") -> Path:
    """The gateway node with routing domain ``bench`` and one tunnel to the site (its
    allowed IPs routes of ``bench``), validated with the daemon's own loader, in the
    scratch file ``name`` (the callgrind entry's own: never the one a running
    benchmark's daemons read)."""
    rdid = "{6e766222-0000-4000-8000-000000005010}"
    text = (
        gateway_document("gateway_tunnel.py")
        + f"""\
      bench: {{}}
    tunnel_keys: {{{PORT}: {gw_key}}}
tunnels:
  - name: {TUNNEL}
    rdid: "{rdid}"
    node: {NODE}
    listen_port: {PORT}
    public_key: {site_public}
    endpoint: {WAN_SITE_ADDR}:{PORT}
    allowed_ips: [{SITE_NET}]
"""
    )
    return validated_config(name, text)


def inbound_frames(size: int = 14 + INNER) -> list[bytes]:
    """NVGRE from the remote VM to the site's server, to the gateway's record's MAC,
    inner Ethernet frames of ``size`` bytes (IPv4 packets of INNER by default), in
    eight flows."""
    return nvgre_frames(size, REMOTE_VM, (SERVER, GW_RECORD[1]))


def inbound_frames_file() -> Path:
    """The daemon's frames for ``paced_send.py``: NVGRE from the remote VM to the site's
    server, inner IPv4 packets of INNER bytes."""
    return write_frames(SCRATCH / "tunnel_in.frames", inbound_frames())


def anchor_frames_file() -> Path:
    """The same packets as the daemon's inner ones, from the anchor's address, as
    ``paced_send.py`` writes them into the anchor's TUN (an IP device: no Ethernet
    header)."""
    frames = [
        inner_frame(14 + INNER, 40000 + flow, (ANCHOR_ADDR, ANY_MAC), (SERVER, ANY_MAC))[14:]
        for flow in range(1, FLOWS + 1)
    ]
    return write_frames(SCRATCH / "tunnel_anchor.frames", frames)


def build_wan() -> None:
    """The site namespace and the WAN veth between it and the host namespace."""
    make_namespace(NS_SITE)
    veth = ["ip", "link", "add", WAN_GW, "netns", NS_HOST, "type", "veth"]
    run([*veth, "peer", "name", WAN_SITE, "netns", NS_SITE])
    ipn(NS_HOST, "addr", "add", f"{WAN_GW_ADDR}/{WAN_PREFIX}", "dev", WAN_GW)
    ipn(NS_SITE, "addr", "add", f"{WAN_SITE_ADDR}/{WAN_PREFIX}", "dev", WAN_SITE)
    ipn(NS_HOST, "link", "set", WAN_GW, "up")
    ipn(NS_SITE, "link", "set", WAN_SITE, "up")


def wireguard_go(ns: str, ifname: str, pin: bool) -> subprocess.Popen:
    """wireguard-go in ``ns`` (pinned to the receiver core if ``pin``), in the
    foreground; returned once its control socket is there."""
    (UAPI / f"{ifname}.sock").unlink(missing_ok=True)  # a killed run's
    cmd = ["taskset", "-c", str(RCV_CPU)] if pin else []
    proc = start(nsx(ns, *cmd, "wireguard-go", "-f", ifname), f"wireguard-go-{ifname}.log")
    t_end = time.monotonic() + 10
    while not (UAPI / f"{ifname}.sock").exists():
        if proc.poll() is not None or time.monotonic() > t_end:
            stop(proc)
            raise BenchError(f"wireguard-go {ifname} did not start (see {SCRATCH})")
        time.sleep(0.05)
    return proc


def start_site(k: dict[str, tuple[Path, str]]) -> subprocess.Popen:
    """The site's wireguard-go with its two peers, its TUN addressed, routed back and
    dropping UDP at ingress after the count."""
    proc = wireguard_go(NS_SITE, WG_SITE, pin=False)
    gw, anchor = f"{WAN_GW_ADDR}:{PORT}", f"{WAN_GW_ADDR}:{ANCHOR_PORT}"
    wg = ["wg", "set", WG_SITE, "listen-port", str(PORT), "private-key", str(k["site"][0])]
    wg += ["peer", k["gw"][1], "endpoint", gw, "allowed-ips", VSID_NET]
    wg += ["peer", k["anchor"][1], "endpoint", anchor, "allowed-ips", ANCHOR_NET]
    run(nsx(NS_SITE, *wg))
    ipn(NS_SITE, "addr", "add", f"{SERVER}/24", "dev", WG_SITE)
    ipn(NS_SITE, "link", "set", WG_SITE, "up")
    for net in (VSID_NET, ANCHOR_NET):
        ipn(NS_SITE, "route", "add", net, "dev", WG_SITE)
    drop_ipv4_at_ingress(NS_SITE, WG_SITE, udp_only=True)  # TCP: the iperf3 server's
    return proc


def start_anchor(k: dict[str, tuple[Path, str]]) -> subprocess.Popen:
    """The gateway side's wireguard-go, pinned to the receiver core as the daemon is,
    the site its one peer."""
    proc = wireguard_go(NS_HOST, WG_GW, pin=True)
    wg = ["wg", "set", WG_GW, "listen-port", str(ANCHOR_PORT), "private-key", str(k["anchor"][0])]
    wg += ["peer", k["site"][1], "endpoint", f"{WAN_SITE_ADDR}:{PORT}", "allowed-ips", SITE_NET]
    try:
        run(nsx(NS_HOST, *wg))
        ipn(NS_HOST, "addr", "add", f"{ANCHOR_ADDR}/24", "dev", WG_GW)
        ipn(NS_HOST, "link", "set", WG_GW, "up")
        ipn(NS_HOST, "route", "add", SITE_NET, "dev", WG_GW)
    except BaseException:
        stop(proc)
        raise
    return proc
