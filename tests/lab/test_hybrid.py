"""The hybrid lab, for real: Blue's and Red's VMs reach their own on-prem sites over
site-to-site WireGuard tunnels to wireguard-go (a peer that is not ours), on both
backends.

One bring-up per backend (hybrid.yaml: four VMs on two hosts, the gateway, the WAN,
two sites that both use 172.16.50.0/24, each with a directory, DNS and SQL service
that answer with the site's name), and per bring-up every clause of issue 13's
end-to-end line: a VM reaches each service of its own site and never the other
tenant's; the site reaches the VMs back; the handshake starts from the site, then
(after the gateway's daemon restarts) from the VM side, and traffic resumes within
15 s; a datagram replayed on the WAN is dropped and counted; a forged and a truncated
initiation get no answer and are counted. Captured on the WAN, tshark's WireGuard
dissector decodes the initiations, responses and transport data of the exchanges,
and a cookie reply that the gateway sends wireguard-go under load.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from scapy.layers.inet import UDP
from scapy.utils import rdpcap

from gateway.lab.corp_probe import ask
from gateway.lab.onprem import forget_sessions, gateway_key, keys_dir, public_key
from gateway.lab.probe import PingStream
from gateway.lab.state import LabState
from gateway.lab.topology import Lab
from gateway.policy import decode_key
from gateway.wireguard.cookie import CookieGenerator

from .conftest import capture, capture_fields, drops_rose, ping, value, waited

pytestmark = pytest.mark.netns

GW_WAN, PORT = "192.0.2.1", 51820
SITE_WAN = {"blue": "192.0.2.11", "red": "192.0.2.12"}
RDID = {
    "blue": "{11111111-2222-3333-4444-000000005010}",
    "red": "{11111111-2222-3333-4444-000000005011}",
}
SERVICES = (
    ("172.16.50.10", "tcp", 389),
    ("172.16.50.11", "udp", 53),
    ("172.16.50.12", "tcp", 1433),
)
DIRECTORY = SERVICES[0][0]
VM_PORT = 8080  # a listener in a VM, which answers its name
RESUME_BOUND_S = 15.0  # the bound: traffic resumes within it after a restart
INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT = 1, 2, 3, 4
INITIATION_SIZE = 148
WG_FIELDS = (
    "ip.src",
    "udp.srcport",
    "ip.dst",
    "wg.type",
    "wg.sender",
    "wg.receiver",
    "wg.counter",
    "wg.mac2",
)


@pytest.fixture(scope="module")
def hybrid(hybrid_lab: tuple[Lab, str]) -> tuple[Lab, str]:
    return hybrid_lab


def site_ns(lab: Lab, tenant: str) -> str:
    return f"{lab.prefix}-onprem-{tenant}"


def rx_packets(namespace: str, ifname: str) -> int:
    """What the site's wireguard-go delivered through its interface (decrypted)."""
    out = subprocess.run(
        ["ip", "-n", namespace, "-s", "-j", "link", "show", ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)[0]["stats64"]["rx"]["packets"]


def fresh_sessions(lab: Lab, backend: str) -> None:
    """No session anywhere: the gateway's daemon restarted, each site's forgotten."""
    lab.restart("gw", backend)
    _, plan = lab.plan()
    for site in plan.sites:
        forget_sessions(site, keys_dir(lab.state_dir, lab.prefix))


_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
    sys.stdout.write(s.recv(100).decode())
"""

_SERVER = """
import socket, sys
server = socket.create_server(("0.0.0.0", int(sys.argv[2])))
print("ready", flush=True)
while True:
    connection, _ = server.accept()
    with connection:
        connection.sendall(sys.argv[1].encode())
"""


def tcp_from(namespace: str, address: str, port: int) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", _CLIENT, address, str(port)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return done.stdout


@contextmanager
def listening(lab: Lab, vms: list[str]) -> Iterator[None]:
    """A TCP server on ``VM_PORT`` in each VM that answers the VM's name."""
    processes = []
    try:
        for vm in vms:
            command = ["ip", "netns", "exec", f"{lab.prefix}-{vm}", sys.executable, "-c", _SERVER]
            process = subprocess.Popen(
                [*command, vm, str(VM_PORT)], stdout=subprocess.PIPE, text=True
            )
            processes.append(process)
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        yield
    finally:
        for process in processes:
            process.kill()
            process.wait()


_SEND = """
import select, socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.bind((sys.argv[1], 0))
    for datagram in sys.argv[5:]:
        s.sendto(bytes.fromhex(datagram), (sys.argv[2], int(sys.argv[3])))
    print("answered" if select.select([s], [], [], float(sys.argv[4]))[0] else "silence")
"""


def send_from_site(lab: Lab, tenant: str, datagrams: list[bytes], listen_s: float = 2.0) -> str:
    """Send ``datagrams`` to the gateway's listen port from a new UDP socket of the
    site (its WAN address, another port); ``answered`` if anything came back to that
    socket within ``listen_s``, else ``silence`` (nothing can say sooner that nothing
    will come)."""
    command = ["ip", "netns", "exec", site_ns(lab, tenant), sys.executable, "-c", _SEND]
    command += [SITE_WAN[tenant], GW_WAN, str(PORT), str(listen_s), *(d.hex() for d in datagrams)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.strip()


def wg_rows(path: Path) -> list[dict[str, str]]:
    """Each WireGuard message of a capture, as tshark's dissector reads it."""
    rows = [dict(zip(WG_FIELDS, row, strict=True)) for row in capture_fields(path, *WG_FIELDS)]
    return [row for row in rows if row["wg.type"]]


def responses_to(rows: list[dict[str, str]], initiation: dict[str, str]) -> list[dict[str, str]]:
    return [
        r
        for r in rows
        if r["wg.type"] == str(RESPONSE) and r["wg.receiver"] == initiation["wg.sender"]
    ]


def captured(path: Path, check: Callable[[list[dict[str, str]]], bool], what: str) -> None:
    """Until the capture being written holds what ``check`` looks for: tshark hands
    the last packets to its file only a while after they passed, so a capture stopped
    right after them would miss them."""

    def holds() -> bool:
        try:
            return check(wg_rows(path))
        except (subprocess.CalledProcessError, StopIteration):  # cut mid-packet, or not yet
            return False

    waited(holds, f"the capture holds {what}")


def refused(samples: dict, reason: str) -> float:
    """What the gateway's listen port refused for ``reason`` (T1's per-port metric)."""
    return value(samples, "nvgw_tunnel_port_refused_total", listen_port=str(PORT), reason=reason)


def tunnel(samples: dict, name: str, tenant: str) -> float:
    """A per-tunnel metric of the gateway's tunnel to ``tenant``'s site."""
    return value(samples, name, tunnel=f"onprem-{tenant}", rdid=RDID[tenant])


def test_the_labs_keys_are_files_of_its_own_that_only_root_reads(hybrid: tuple[Lab, str]) -> None:
    """Generated into the state directory at ``up``, mode 0600 in a 0700 directory,
    recorded for ``down``; the private and preshared keys are in no command line of
    the lab's processes, nor in its state file or the config its store was seeded
    from (which holds the sites' public keys and the files' paths)."""
    lab, _ = hybrid
    keys = keys_dir(lab.state_dir, lab.prefix)
    files = sorted(keys.iterdir())
    assert [f.name for f in files] == [
        "gw-51820.key",
        "site-blue.key",
        "site-blue.psk",
        "site-red.key",
    ]
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    state = lab.state()
    assert {str(keys), *map(str, files)} <= set(state.files)
    secrets = [f.read_text().strip() for f in files]
    config = lab.state_dir / f"lab-{lab.prefix}-config.yaml"
    seen = [config.read_text(), LabState.path_for(lab.prefix, lab.state_dir).read_text()]
    seen += [Path(f"/proc/{p.pid}/cmdline").read_bytes().decode() for p in state.processes]
    for secret in secrets:
        assert not any(secret in text for text in seen)
    assert public_key(keys / "site-red.key") in config.read_text()


def test_each_vm_reaches_every_service_of_its_own_site_and_never_the_others(
    hybrid: tuple[Lab, str],
) -> None:
    lab, _ = hybrid
    _, plan = lab.plan()
    for vm in ("blue1", "blue2", "red1", "red2"):
        tenant = vm[:-1]
        for address, protocol, port in SERVICES:
            assert ask(plan.vm(vm), address, protocol, port) == tenant, (vm, address)
    # Ping cannot say who answered (both sites are 172.16.50.0/24): the sites'
    # wireguard-go interfaces count what each tunnel delivered.
    for vm, tenant, other in (("blue1", "blue", "red"), ("red2", "red", "blue")):
        before = {t: rx_packets(site_ns(lab, t), plan.site(t).ifname) for t in SITE_WAN}
        sent = lab.metrics("gw")
        for address, _, _ in SERVICES:
            assert ping(lab, vm, address, count=3), (vm, address)
        after = {t: rx_packets(site_ns(lab, t), plan.site(t).ifname) for t in SITE_WAN}
        assert after[tenant] - before[tenant] >= 9, vm
        assert after[other] == before[other], f"{vm}'s pings reached {other}'s site"
        # And as the gateway counts them: into its tenant's tunnel only, replies back.
        now, tx, rx = (
            lab.metrics("gw"),
            "nvgw_tunnel_tx_packets_total",
            "nvgw_tunnel_rx_packets_total",
        )
        assert tunnel(now, tx, tenant) - tunnel(sent, tx, tenant) >= 9
        assert tunnel(now, rx, tenant) - tunnel(sent, rx, tenant) >= 9
        assert tunnel(now, tx, other) == tunnel(sent, tx, other)


def test_each_site_reaches_its_tenants_vms_back(hybrid: tuple[Lab, str]) -> None:
    lab, _ = hybrid
    for tenant in SITE_WAN:
        for address in ("10.10.10.11", "10.10.10.12"):
            assert ping(lab, f"onprem-{tenant}", address, count=2), (tenant, address)
    with listening(lab, ["blue1", "red1", "blue2", "red2"]):
        for tenant in SITE_WAN:
            for vm, address in ((f"{tenant}1", "10.10.10.11"), (f"{tenant}2", "10.10.10.12")):
                assert tcp_from(site_ns(lab, tenant), address, VM_PORT) == vm


def test_handshakes_from_either_side_and_traffic_resumes_after_the_gateway_restarts(
    hybrid: tuple[Lab, str], tmp_path: Path
) -> None:
    """No session anywhere; Blue's site pings blue1 (the site starts the handshake);
    then the gateway's daemon restarts under a ping stream from blue1 to the site's
    directory (the gateway, which lost its sessions, starts the next one). The WAN,
    captured throughout, is decoded by tshark: the initiations, the responses that
    answer them (receiver = the initiation's sender) and transport data both ways on
    the indexes they agreed."""
    lab, backend = hybrid
    _, plan = lab.plan()
    fresh_sessions(lab, backend)
    wan = tmp_path / "wan.pcap"
    with capture(plan.wan_namespace, "br0", wan, f"udp port {PORT}", count=None, duration_s=90):
        assert ping(lab, "onprem-blue", "10.10.10.11", count=2)
        stream = PingStream(plan.vm("blue1"), DIRECTORY, interval_s=0.02)
        try:
            stream.wait_flowing()
            restarted = time.monotonic()
            lab.restart("gw", backend)
            ready = time.monotonic() - restarted
            waited(lambda: ping(lab, "blue2", DIRECTORY), "Blue reaches its directory again")
        finally:
            loss = stream.stop()
        captured(
            wan,
            lambda rows: bool(
                responses_to(
                    rows, next(r for r in rows if r["ip.src"] == GW_WAN and r["wg.type"] == "1")
                )
            ),
            "the response to the gateway's initiation",
        )
    print(
        f"\n[{backend}] the gateway's daemon restarted in {ready:.2f} s; blue1's ping "
        f"every {loss.interval_s * 1000:.0f} ms to {DIRECTORY} had no reply for "
        f"{loss.loss_s:.2f} s ({loss.lost} of {loss.sent} lost)"
    )
    assert loss.loss_s < RESUME_BOUND_S
    rows = wg_rows(wan)
    blue, gw = SITE_WAN["blue"], GW_WAN
    initiations = [r for r in rows if r["wg.type"] == str(INITIATION)]
    first = initiations[0]
    second = next(r for r in initiations if r["ip.src"] == gw)
    assert (first["ip.src"], first["ip.dst"]) == (blue, gw), "the site started the first"
    assert (second["ip.src"], second["ip.dst"]) == (gw, blue), "then the gateway, for blue1"
    for initiation in (first, second):
        [response] = responses_to(rows, initiation)
        assert (response["ip.src"], response["ip.dst"]) == (
            initiation["ip.dst"],
            initiation["ip.src"],
        )
        # Transport data each way on the session: to the responder's index, and back.
        data = [r for r in rows if r["wg.type"] == str(TRANSPORT)]
        to_responder = [r for r in data if r["wg.receiver"] == response["wg.sender"]]
        to_initiator = [r for r in data if r["wg.receiver"] == initiation["wg.sender"]]
        assert to_responder and to_initiator
        assert {r["ip.src"] for r in to_responder} == {initiation["ip.src"]}
        counters = [int(r["wg.counter"]) for r in to_responder]
        assert counters[0] == 0 and counters == sorted(counters), counters


def test_a_datagram_replayed_on_the_wan_is_dropped_and_counted(
    hybrid: tuple[Lab, str], tmp_path: Path
) -> None:
    lab, _ = hybrid
    _, plan = lab.plan()
    pcap = tmp_path / "data.pcap"
    # Transport data from Blue's site with a packet in it (a keepalive is 32 bytes).
    data = f"src host {SITE_WAN['blue']} and udp dst port {PORT} and udp[8] = 4 and greater 100"
    with capture(plan.wan_namespace, "br0", pcap, data, count=1):
        assert ping(lab, "onprem-blue", "10.10.10.11")
    [packet] = rdpcap(str(pcap))
    datagram = bytes(packet[UDP].payload)
    before = lab.metrics("gw")
    assert send_from_site(lab, "blue", [datagram]) == "silence"
    expected = {"tunnel_replayed": 1, "tunnel_unauthenticated": 0}
    assert drops_rose(lab, "gw", before, expected) == expected
    replays = "nvgw_tunnel_replays_total"
    after = lab.metrics("gw")
    assert tunnel(after, replays, "blue") - tunnel(before, replays, "blue") == 1
    assert tunnel(after, replays, "red") == tunnel(before, replays, "red")
    # From another port: had it been taken, the tunnel's endpoint would have roamed.
    assert ping(lab, "blue1", DIRECTORY), "the gateway still sends to the site's own port"


def test_forged_and_truncated_initiations_get_no_answer_and_are_counted(
    hybrid: tuple[Lab, str],
) -> None:
    """From Red's site's WAN address: an initiation of random bytes (its mac1 wrong),
    one whose mac1 is right (anyone may compute it from the gateway's public key) but
    whose handshake is not, and the first 100 bytes of that one."""
    lab, _ = hybrid
    gw_public = public_key(gateway_key(keys_dir(lab.state_dir, lab.prefix), "gw", PORT))
    random_bytes = bytes([INITIATION, 0, 0, 0]) + os.urandom(INITIATION_SIZE - 4)
    forged = bytearray(random_bytes)
    CookieGenerator(decode_key(gw_public)).add_macs(forged, 0.0)
    before = lab.metrics("gw")
    answer = send_from_site(lab, "red", [random_bytes, bytes(forged), bytes(forged[:100])])
    assert answer == "silence"
    expected = {"tunnel_unauthenticated": 2, "tunnel_malformed": 1, "tunnel_under_load": 0}
    assert drops_rose(lab, "gw", before, expected) == expected
    after = lab.metrics("gw")
    reasons = ("bad_mac1", "handshake_auth", "bad_length")
    assert {r: refused(after, r) - refused(before, r) for r in reasons} == dict.fromkeys(reasons, 1)


def test_under_load_the_gateway_sends_wireguard_go_a_cookie_reply(
    hybrid: tuple[Lab, str], tmp_path: Path
) -> None:
    """The gateway's listen port is under load past 16 handshake messages in one
    batch of its socket. Its daemon is stopped (SIGSTOP) while 20 junk initiations
    and then Red's site's own initiation queue on its socket; continued, it reads
    them as one batch: the junk is dropped, and the site's initiation, which carries
    no mac2, gets a cookie reply. wireguard-go's next initiation carries mac2 and
    completes the handshake. tshark decodes the cookie reply and that mac2."""
    lab, backend = hybrid
    _, plan = lab.plan()
    fresh_sessions(lab, backend)
    log = lab.state_dir / f"lab-{lab.prefix}-red-wireguard-go.log"
    sent = log.read_text().count("Sending handshake initiation")
    junk = [bytes([INITIATION, 0, 0, 0]) + os.urandom(INITIATION_SIZE - 4) for _ in range(20)]
    before = lab.metrics("gw")
    wan = tmp_path / "wan.pcap"
    daemon = lab.daemon("gw").pid
    with capture(plan.wan_namespace, "br0", wan, f"udp port {PORT}", count=None, duration_s=60):
        os.kill(daemon, signal.SIGSTOP)
        try:
            send_from_site(lab, "red", junk, listen_s=0.0)  # queued: the daemon is stopped
            trigger = ["ip", "netns", "exec", site_ns(lab, "red"), "ping", "-c1", "-W1"]
            subprocess.run([*trigger, "10.10.10.11"], capture_output=True, check=False)
            waited(
                lambda: log.read_text().count("Sending handshake initiation") > sent,
                "Red's site sent its initiation",
            )
        finally:
            os.kill(daemon, signal.SIGCONT)
        waited(lambda: ping(lab, "onprem-red", "10.10.10.11"), "Red's site reaches red1")
        captured(
            wan,
            lambda rows: any(
                r["wg.type"] == str(RESPONSE) and r["ip.dst"] == SITE_WAN["red"] for r in rows
            ),
            "the response to Red's site",
        )
    expected = {"tunnel_unauthenticated": 20, "tunnel_under_load": 1}
    assert drops_rose(lab, "gw", before, expected) == expected
    after = lab.metrics("gw")
    cookies = "nvgw_tunnel_port_cookie_replies_sent_total"
    assert value(after, cookies, listen_port=str(PORT)) == 1, "one, since the restart"
    assert refused(after, "cookie_required") == 1 and refused(after, "bad_mac1") == 20
    red, gw = SITE_WAN["red"], GW_WAN
    rows = wg_rows(wan)
    initiations = [
        r for r in rows if r["wg.type"] == str(INITIATION) and r["ip.dst"] == gw and r["wg.sender"]
    ]
    wireguard_go = [r for r in initiations if (r["ip.src"], r["udp.srcport"]) == (red, str(PORT))]
    from_site = [r for r in wireguard_go if r["wg.mac2"].strip("0:") != ""]
    [cookie] = [r for r in rows if r["wg.type"] == str(COOKIE_REPLY)]
    assert (cookie["ip.src"], cookie["ip.dst"]) == (gw, red)
    asked = [r for r in wireguard_go if r["wg.sender"] == cookie["wg.receiver"]]
    assert asked and asked[0]["wg.mac2"].strip("0:") == "", "it answered one without mac2"
    assert from_site, "wireguard-go's next initiation carries mac2"
    [response] = responses_to(rows, from_site[0])
    assert (response["ip.src"], response["ip.dst"]) == (gw, red)
