"""A running lab survives what the adversarial review threw at it (issue 9).

One lab per backend, the IP-Rewrite scenario (its hosts resolve PAs on the provider
link, so forged ARP has something to poison) with dual-stack subnets whose gateway is
IPv6 (an oversized IPv4 frame once met that address in ``build_ipv4`` and stopped
the node). Each attack is followed by pings that must still be answered, and at the
end both daemons are alive and their memory is within 50 MiB of where it started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gateway.lab.commands import CONFIGS
from gateway.lab.topology import Lab
from tests.conftest import require_root, require_tool

from .conftest import INJECT, a_change_host1_cannot_serve, inject, lab_prefix, link_mac, ping, value

pytestmark = pytest.mark.netns

BLUE1, BLUE2 = "00:00:00:00:00:11", "00:00:00:00:00:12"
ATTACKER = "02:00:00:00:99:99"
MEMORY_BOUND = 50 << 20  # bytes a daemon may grow over the whole test (issue 9)
WAIT_S = 10.0


def dual_stack_ip_rewrite(directory: Path) -> Path:
    """ip-rewrite.yaml, each subnet also holding an IPv6 prefix and an IPv6 gateway."""
    text = (CONFIGS / "ip-rewrite.yaml").read_text()
    subnet = "        prefixes: [10.10.10.0/24]\n"
    assert text.count(subnet) == 2
    dual = '        prefixes: [10.10.10.0/24, "fd00:10::/64"]\n        gateway: "fd00:10::1"\n'
    path = directory / "ip-rewrite-dual-stack.yaml"
    path.write_text(text.replace(subnet, dual))
    return path


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_root()
    for tool in ("ip", "ping"):
        require_tool(tool)
    config = dual_stack_ip_rewrite(tmp_path_factory.mktemp("survival"))
    lab = Lab(lab_prefix(f"s{request.param[0]}"))
    try:
        lab.up(config, "ip-rewrite", request.param)
        yield lab
    finally:
        lab.down()


def rss(lab: Lab, node: str) -> int:
    """The daemon's resident memory in bytes (``ip netns exec`` execs it: same PID)."""
    status = Path(f"/proc/{lab.daemon(node).pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def until(check, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT_S:.0f} s: {what}")
        time.sleep(0.05)


def drops(lab: Lab, node: str, reason: str) -> float:
    return value(lab.metrics(node), "nvgw_drops_total", reason=reason)


def still_forwarding(lab: Lab) -> None:
    assert ping(lab, "blue1", "10.10.10.12", count=2), "blue1 no longer reaches blue2"
    assert ping(lab, "red2", "10.10.10.11", count=2), "red2 no longer reaches red1"


def api_client(lab: Lab, node: str) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=str(lab.api_socket(node)))
    return httpx.Client(transport=transport, base_url="http://nvgw", timeout=60)


def test_the_lab_survives_every_attack_with_bounded_memory(lab: Lab) -> None:
    still_forwarding(lab)
    started = {node: rss(lab, node) for node in ("host1", "host2")}

    # Item 1: an oversized DF frame from a VM whose subnet's gateway is IPv6. The VM's
    # own MTU is raised so its kernel lets the frame out to the daemon (TAP MTU 1458).
    vm = f"{lab.prefix}-blue1"
    subprocess.run(["ip", "-n", vm, "link", "set", "blue1", "mtu", "1500"], check=True)
    big = Ether(src=BLUE1, dst=BLUE2) / IP(src="10.10.10.11", dst="10.10.10.12", flags="DF")
    big = big / UDP(sport=4000, dport=4000) / (b"x" * 1472)
    before = lab.metrics("host1")
    subprocess.run(
        ["ip", "netns", "exec", vm, sys.executable, str(INJECT), "blue1"],
        input=raw(big).hex().encode(),
        check=True,
        timeout=20,
    )
    until(
        lambda: (
            value(lab.metrics("host1"), "nvgw_icmp_errors_sent_total")
            > value(before, "nvgw_icmp_errors_sent_total")
        ),
        "fragmentation-needed sent back to blue1",
    )
    assert drops(lab, "host1", "internal_error") == 0
    still_forwarding(lab)

    # Item 6: ARP claiming blue2's rewrite PA with a broadcast sender MAC, sent to
    # host1; a gratuitous claim of it from an attacker; a frame for another host's MAC.
    host1_mac = link_mac(f"{lab.prefix}-host1", "pa0")
    refused_before = drops(lab, "host1", "arp_refused")
    foreign_before = drops(lab, "host1", "foreign_mac")
    claim = ARP(op=2, hwsrc="ff:ff:ff:ff:ff:ff", psrc="198.18.0.12", pdst="198.18.0.11")
    inject(
        lab,
        [
            raw(Ether(dst=host1_mac, src=ATTACKER) / claim),
            raw(
                Ether(dst="ff:ff:ff:ff:ff:ff", src=ATTACKER)
                / ARP(op=2, hwsrc=ATTACKER, psrc="198.18.0.12", pdst="198.18.0.12")
            ),
            raw(Ether(dst="02:00:00:00:77:77", src=ATTACKER) / IP(dst="198.18.0.11") / UDP()),
        ],
    )
    until(
        lambda: (
            drops(lab, "host1", "arp_refused") >= refused_before + 1
            and drops(lab, "host1", "foreign_mac") >= foreign_before + 1
        ),
        "the forged ARP refused and the foreign frame counted",
    )
    still_forwarding(lab)

    # Item 2: a policy the node cannot run, committed by another daemon to the store
    # they share: a refused reload, not a crash.
    with a_change_host1_cannot_serve(lab):
        still_forwarding(lab)
    still_forwarding(lab)
    revision = lab.policy().revision  # two changes on: the PA added, then removed

    # Items 3 and 8: a YAML bomb as a whole policy, and a chunked 200 MiB body.
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for this, below in zip("bcdefg", "abcdef", strict=True):
        levels.append(f"{this}: &{this} [" + ", ".join([f"*{below}"] * 10) + "]")
    bomb = "\n".join(levels) + "\n"
    with api_client(lab, "host2") as client:
        answer = client.put("/v1/policy", content=bomb.encode())
        assert 400 <= answer.status_code < 500, answer.text
        assert "alias" in answer.text.lower()

        def body() -> Iterator[bytes]:
            chunk = b" " * (1 << 20)
            for _ in range(200):
                yield chunk

        try:
            answer = client.post("/v1/lookup-records", content=body())
            assert answer.status_code == 413, answer.text
        except (httpx.WriteError, httpx.RemoteProtocolError):
            pass  # the daemon closed the connection mid-body: refused, not read
    assert value(lab.metrics("host2"), "nvgw_policy_revision", node="host2") == revision
    still_forwarding(lab)

    for node, before_rss in started.items():
        os.kill(lab.daemon(node).pid, 0)  # alive
        grown = rss(lab, node) - before_rss
        assert grown < MEMORY_BOUND, f"{node} grew by {grown >> 20} MiB"
