"""Site-to-site tunnels served for real, once per backend, against wireguard-go (a
peer that is not ours): `nvgw run --node gw` with the lab's gateway config plus
Blue's and Red's tunnels on the gateway's listen port 51820 (design.md, "The gateway
labs": its WAN address 192.0.2.1; on-prem sites 192.0.2.11 and .12, both with
172.16.50.0/24).

Namespaces the test makes: the gateway's (its PA 198.18.0.10 on a veth; wan0 on the
WAN bridge), a host's on the other end of the provider veth (PA 198.18.0.1, playing
the VMs in NVGRE), the WAN (a bridge), and each site running wireguard-go (its
interface named with the test's prefix) with the server address 172.16.50.10.

- Blue's tunnel has the site's endpoint and a preshared key: the gateway starts the
  handshake. A UDP datagram from Blue's VM, injected as NVGRE at the gateway's PA,
  reaches the echo server on Blue's site, and the echo comes back to the host's PA in
  NVGRE with Blue's VSID.
- Red's has no endpoint (roaming): Red's site starts the handshake, and its datagram
  to 10.10.10.11 reaches the host in NVGRE with Red's VSID, to red1's MAC.
- No key (the gateway's private key, Blue's preshared key, the sites') appears in the
  daemon's log, its /metrics, the API's policy and tunnels, or `nvgw policy diff`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from gateway.control.client import ApiClient
from gateway.lab import netns
from tests.conftest import require_root, require_tool

from ._host import host_namespace, nvgre_after, stop_process
from .test_gateway_daemon import CONFIGS, Gateway

pytestmark = pytest.mark.netns
HERE = Path(__file__).resolve().parent
PORT = 51820
GW_WAN = "192.0.2.1"
SITE_WAN = {"blue": "192.0.2.11", "red": "192.0.2.12"}
SERVER = ("172.16.50.10", 7)
VM_IP, VM_PORT = "10.10.10.11", 40000
VM_MAC = {"blue": "00:00:00:00:00:11", "red": "00:00:00:00:00:21"}
GW_MAC_BLUE = "02:00:00:00:50:10"
VSID = {"blue": 5010, "red": 5011}
RDID = {tenant: f"{{11111111-2222-3333-4444-00000000{vsid}}}" for tenant, vsid in VSID.items()}
TIMEOUT_S = 10.0  # only bounds a failure


def _run(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(args, input=data, check=True, capture_output=True).stdout


def _ip(namespace: str, *args: str) -> None:
    subprocess.run(["ip", "-n", namespace, *args], check=True)


@dataclass
class Site:
    namespace: str
    ifname: str
    log: Path
    process: subprocess.Popen | None = None

    def initiations(self) -> int:
        """Handshake initiations wireguard-go received, by its verbose log."""
        return self.log.read_text().count("Received handshake initiation")


@dataclass
class Lab:
    gateway: Gateway
    host: str
    sites: dict[str, Site]
    secrets: list[str]  # the keys' base64, to look for where they must not be
    server: subprocess.Popen


def _key(path: Path) -> tuple[str, str]:
    """A new private key in ``path`` (owner only), and its public key (base64)."""
    private = _run("wg", "genkey")
    path.write_bytes(private)
    os.chmod(path, 0o600)
    return private.decode().strip(), _run("wg", "pubkey", data=private).decode().strip()


def _config(directory: Path, site_publics: dict[str, str], keys: Path) -> Path:
    """configs/gateway.yaml with the node's key file and Blue's and Red's tunnels."""
    yaml = YAML()
    document = yaml.load((CONFIGS / "gateway.yaml").read_text())
    document["nodes"]["gw"]["tunnel_keys"] = {PORT: str(keys / "gw.key")}
    document["tunnels"] = [
        {
            "name": f"onprem-{tenant}",
            "rdid": RDID[tenant],
            "node": "gw",
            "listen_port": PORT,
            "public_key": site_publics[tenant],
            "allowed_ips": ["172.16.50.0/24"],
            **(
                {
                    "endpoint": f"{SITE_WAN[tenant]}:{PORT}",
                    "preshared_key_file": str(keys / "blue.psk"),
                }
                if tenant == "blue"
                else {}
            ),
        }
        for tenant in ("blue", "red")
    ]
    path = directory / "gateway-tunnels.yaml"
    with open(path, "w") as out:
        yaml.dump(document, out)
    return path


def _start_site(site: Site, keys: Path, tenant: str, gw_public: str) -> None:
    """wireguard-go in the site's namespace, the gateway its one peer (allowed IPs:
    the tenant's virtual subnet); Red's knows the gateway's endpoint, Blue's learns it."""
    uapi = Path(f"/var/run/wireguard/{site.ifname}.sock")
    log = site.log.open("wb")
    site.process = subprocess.Popen(
        ["ip", "netns", "exec", site.namespace, "wireguard-go", "-f", site.ifname],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "LOG_LEVEL": "verbose"},
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT_S
    while not uapi.exists():  # its readiness: the UAPI socket
        assert site.process.poll() is None, site.log.read_text()
        assert time.monotonic() < deadline, "wireguard-go made no UAPI socket"
        time.sleep(0.05)
    peer = ["peer", gw_public, "allowed-ips", "10.10.10.0/24"]
    if tenant == "blue":
        peer += ["preshared-key", str(keys / "blue.psk")]
    else:
        peer += ["endpoint", f"{GW_WAN}:{PORT}"]
    site_key = str(keys / f"{tenant}.key")
    for command in (
        ["wg", "set", site.ifname, "listen-port", str(PORT), "private-key", site_key, *peer],
        ["ip", "addr", "add", f"{SERVER[0]}/24", "dev", site.ifname],
        ["ip", "link", "set", site.ifname, "up"],
        ["ip", "route", "add", "10.10.10.0/24", "dev", site.ifname],
    ):
        subprocess.run(["ip", "netns", "exec", site.namespace, *command], check=True)


@pytest.fixture(params=["asyncio", "trio"])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    require_root()
    for tool in ("wireguard-go", "wg"):
        require_tool(tool)
    tag = f"{os.getpid() % 10000}{request.param[0]}"
    names = {"gw": f"nvt-tgw{tag}", "host": f"nvt-th{tag}", "wan": f"nvt-tw{tag}"}
    workdir = Path(f"/tmp/nvt-tunnel-{tag}")
    sites = {
        t: Site(f"nvt-t{t[0]}{tag}", f"nvt{tag}w{t[0]}", workdir / f"wireguard-go-{t}.log")
        for t in ("blue", "red")
    }
    gateway: Gateway | None = None
    server: subprocess.Popen | None = None
    try:  # cleanup registered before the first side effect
        workdir.mkdir(mode=0o700, exist_ok=True)
        host_namespace(names["gw"], "198.18.0.10/24")
        for name in (names["host"], names["wan"], *(s.namespace for s in sites.values())):
            netns.create(name)
        _ip(names["gw"], "link", "set", "pa0peer", "netns", names["host"])
        _ip(names["host"], "addr", "add", "198.18.0.1/24", "dev", "pa0peer")
        _ip(names["host"], "link", "set", "pa0peer", "up")
        netns.add_veth(names["gw"], "wan0", names["wan"], "w-gw")
        netns.add_address(names["gw"], "wan0", GW_WAN, 24)
        ports = ["w-gw"]
        for tenant, site in sites.items():
            netns.add_veth(site.namespace, "wan0", names["wan"], f"w-{tenant}")
            netns.add_address(site.namespace, "wan0", SITE_WAN[tenant], 24)
            ports.append(f"w-{tenant}")
        netns.add_bridge(names["wan"], "br0", ports)
        secrets = []
        private, gw_public = _key(workdir / "gw.key")
        secrets.append(private)
        psk = _run("wg", "genpsk")
        (workdir / "blue.psk").write_bytes(psk)
        os.chmod(workdir / "blue.psk", 0o600)
        secrets.append(psk.decode().strip())
        publics = {}
        for tenant, site in sites.items():
            site_private, publics[tenant] = _key(workdir / f"{tenant}.key")
            secrets.append(site_private)
            _start_site(site, workdir, tenant, gw_public)
        server = subprocess.Popen(
            ["ip", "netns", "exec", sites["blue"].namespace, sys.executable,
             str(HERE / "_udp_echo.py"), SERVER[0], str(SERVER[1])],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        config = _config(tmp_path, publics, workdir)
        gateway = Gateway(names["gw"], tmp_path, request.param, config)
        yield Lab(gateway, names["host"], sites, secrets, server)
    finally:
        try:
            for process in (server, gateway.process if gateway else None):
                stop_process(process)
            for site in sites.values():
                stop_process(site.process)
        finally:
            for name in (*names.values(), *(s.namespace for s in sites.values())):
                netns.remove(name)
            shutil.rmtree(workdir, ignore_errors=True)  # the keys and wireguard-go's logs


def _nvgre_from_blue(payload: bytes) -> bytes:
    """Blue's VM's UDP datagram to the on-prem server, as host1 sends it to the
    gateway's MAC in Blue's VSID (the GRE payload; the kernel adds the outer IPv4)."""
    inner = (
        Ether(src=VM_MAC["blue"], dst=GW_MAC_BLUE)
        / IP(src=VM_IP, dst=SERVER[0])
        / UDP(sport=VM_PORT, dport=SERVER[1])
        / payload
    )
    return raw(GRE(key_present=1, proto=0x6558, key=VSID["blue"] << 8) / inner)


def _inner(hex_datagram: str, vsid: int) -> Ether:
    outer = IP(bytes.fromhex(hex_datagram))
    assert (outer.src, outer.dst) == ("198.18.0.10", "198.18.0.1")
    assert outer[GRE].proto == 0x6558 and outer[GRE].key >> 8 == vsid
    return Ether(raw(outer[GRE].payload))


def _blue_round_trip(lab: Lab, payload: bytes) -> None:
    """Blue's VM's datagram to the server on Blue's site, injected as NVGRE at the
    gateway's PA; its echo comes back to host1's PA in NVGRE with Blue's VSID."""
    sent = subprocess.run(
        ["ip", "netns", "exec", lab.host, sys.executable, str(HERE / "_nvgre_peer.py"),
         "198.18.0.10", _nvgre_from_blue(payload).hex(), str(TIMEOUT_S)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert sent.returncode == 0, f"{sent.stderr}\n{lab.gateway.log.read_text()[-3000:]}"
    seen = lab.server.stdout.readline().strip()  # type: ignore[union-attr]
    assert seen == f"{VM_IP}:{VM_PORT}", "the site saw the VM's own address"
    inner = _inner(sent.stdout.strip(), VSID["blue"])
    assert inner.dst == VM_MAC["blue"]
    assert (inner[IP].src, inner[IP].dst) == (SERVER[0], VM_IP)
    assert (inner[UDP].sport, inner[UDP].dport) == (SERVER[1], VM_PORT)
    assert bytes(inner[UDP].payload) == payload


def test_vms_reach_their_own_onprem_sites_over_wireguard_and_back(lab: Lab) -> None:
    log = lab.gateway.log
    started = time.time()  # the wall clock before any handshake
    # Blue: the gateway starts the handshake (it has the site's endpoint).
    _blue_round_trip(lab, b"to the directory")
    assert lab.sites["blue"].initiations() == 1
    # Red: its site starts (the gateway has no endpoint for it), to red1.
    code = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        f"s.bind(('{SERVER[0]}', 5353)); s.sendto(b'from red', ('{VM_IP}', 9))"
    )
    received = nvgre_after(lab.host, lab.sites["red"].namespace, code, TIMEOUT_S)
    assert received, log.read_text()[-3000:]
    inner = _inner(received, VSID["red"])
    assert inner.dst == VM_MAC["red"]
    assert (inner[IP].src, inner[IP].dst, bytes(inner[UDP].payload)) == (
        SERVER[0],
        VM_IP,
        b"from red",
    )
    # A tunnel added through the API (a live change, the keys read again): Blue's
    # session goes on, with no new handshake.
    branch = {
        "name": "branch", "rdid": RDID["blue"], "node": "gw", "listen_port": PORT,
        "public_key": base64.b64encode(bytes(range(1, 33))).decode(),
        "allowed_ips": ["172.16.70.0/24"],
    }  # fmt: skip
    applied = log.read_text().count("policy applied")
    with ApiClient(lab.gateway.socket) as api:
        api.request("POST", "/v1/tunnels", json=branch)
    deadline = time.monotonic() + TIMEOUT_S
    while log.read_text().count("policy applied") == applied:  # the daemon swapped it in
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    _blue_round_trip(lab, b"after the change")
    assert lab.sites["blue"].initiations() == 1
    # Both handshakes, as wireguard-go saw them.
    for site in lab.sites.values():
        shown = subprocess.run(
            ["ip", "netns", "exec", site.namespace, "wg", "show", site.ifname, "latest-handshakes"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert shown.split()[-1] != "0", shown
    # No key anywhere it must not be: the log, /metrics, the API's policy.
    metrics = subprocess.run(
        ["ip", "netns", "exec", lab.gateway.namespace, sys.executable, "-c",
         "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
         f"'http://{lab.gateway.ready['metrics']}/metrics', timeout=5).read().decode())"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    with ApiClient(lab.gateway.socket) as api:
        policy = str(api.request("GET", "/v1/policy"))
        tunnels = str(api.request("GET", "/v1/tunnels"))
    assert "onprem-blue" in tunnels and "blue.psk" in policy
    shown = _tunnels_shown(lab, metrics, started)
    diff = subprocess.run(
        [sys.executable, "-m", "gateway", "policy", "diff", str(CONFIGS / "gateway.yaml"),
         str(lab.gateway.config)],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    assert "+ tunnel onprem-blue" in diff, diff
    stop_process(lab.gateway.process)
    written = log.read_text()
    places = {
        "log": written, "metrics": metrics, "api": policy + tunnels, "diff": diff, "show": shown,
    }  # fmt: skip
    for secret in lab.secrets:
        for where, text in places.items():
            assert secret not in text, f"a key in the {where}"
            assert base64.b64decode(secret).hex() not in text, f"a key in the {where}"


def _tunnels_shown(lab: Lab, metrics: str, started: float) -> str:
    """``nvgw tunnel show`` from the running daemon after both round trips and the
    branch tunnel's addition: both sites' handshakes (their time from the daemon's
    wall clock, as in /metrics), Red's endpoint learnt from its packets (roaming), the
    branch tunnel without one; gives what it printed, JSON and text."""

    def show(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "tunnel", "show", *args,
             "--api", str(lab.gateway.socket)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    answer = show("--json")
    state = json.loads(answer)
    gw_public = _run("wg", "pubkey", data=lab.secrets[0].encode()).decode().strip()
    [port] = state["listen_ports"]
    assert port == {
        "listen_port": PORT, "public_key": gw_public,
        "tunnels": ["branch", "onprem-blue", "onprem-red"],
    }  # fmt: skip
    branch, blue, red = state["tunnels"]
    assert (blue["endpoint"], red["endpoint"]) == (
        f"{SITE_WAN['blue']}:{PORT}",
        f"{SITE_WAN['red']}:{PORT}",
    )
    assert (branch["endpoint"], branch["latest_handshake"], branch["handshakes"]) == (None, 0, 0)
    assert (blue["rx_packets"], blue["tx_packets"]) == (2, 2)  # two echoes each way
    assert (red["rx_packets"], red["tx_packets"]) == (1, 0)
    handshakes = {
        sample.labels["tunnel"]: sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "nvgw_tunnel_latest_handshake_seconds"
        for sample in family.samples
    }
    for row in (blue, red):
        assert row["handshakes"] == 1 and row["rx_bytes"] > 0 and row["tx_bytes"] > 0
        assert started <= row["latest_handshake"] <= time.time()
        assert row["latest_handshake"] == pytest.approx(handshakes[row["name"]])
    assert handshakes["branch"] == 0 and sorted(handshakes) == [
        "branch",
        "onprem-blue",
        "onprem-red",
    ]
    text = show()
    assert text.startswith(f"listen port: {PORT}\n  public key: {gw_public}\n")
    latest = [line for line in text.splitlines() if line.startswith("  latest handshake: ")]
    assert sorted(line.endswith(": none") for line in latest) == [False, False, True], text
    assert "tunnel: onprem-red\n  routing domain: red\n" in text
    one = json.loads(show("onprem-red", "--json"))
    assert [row["name"] for row in one["tunnels"]] == ["onprem-red"]
    return answer + text
