"""The gateway role served for real: `nvgw run --node gw` in a namespace the test makes,
its PA on a veth of its own, its TAPs left in its own namespace.

It opens what its plan says (NVGRE on its PA, a TAP per routing domain's TAP, each
TAP's kernel end with a MAC that is not the gateway's own on it), answers for its own
address on a TAP (ARP, then ping from the corp side), and follows live changes: a TAP
added through the API is created, one removed is closed. Once per backend.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.control.client import ApiClient
from gateway.dataplane import TAP_MTU, tap_mac
from gateway.lab import netns
from gateway.lab.probe import scrape
from tests.conftest import require_root

from ._host import host_namespace, stop_process

pytestmark = pytest.mark.netns
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LINK_TIMEOUT_S = 5.0  # only bounds a failure


class Gateway:
    def __init__(
        self, namespace: str, directory: Path, backend: str, config: Path = CONFIGS / "gateway.yaml"
    ) -> None:
        self.namespace = namespace
        self.config = directory / "gateway.yaml"
        shutil.copyfile(config, self.config)
        self.socket = directory / "api.sock"
        self.log = directory / "gw.log"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    "ip", "netns", "exec", namespace,
                    sys.executable, "-m", "gateway", "run", "-c", str(self.config),
                    "--store", f"sqlite:{directory}/gw.db",  # its API changes the policy
                    "--node", "gw", "--backend", backend, "--metrics", "127.0.0.1:0",
                    "--api", str(self.socket), "--ready-fd", "1",
                ],
                stdout=subprocess.PIPE, stderr=log, text=True,
            )  # fmt: skip
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        assert line, f"the gateway did not get ready: {self.log.read_text()[-2000:]}"
        self.ready = json.loads(line)

    def link(self, name: str) -> dict | None:
        out = subprocess.run(
            ["ip", "-n", self.namespace, "-j", "link", "show", name],
            capture_output=True,
            text=True,
            check=False,
        )
        return json.loads(out.stdout)[0] if out.returncode == 0 else None

    def wait_link(self, name: str, present: bool) -> bool:
        deadline = time.monotonic() + LINK_TIMEOUT_S
        while netns.has_link(self.namespace, name) != present:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def metric(self, name: str, **labels: str) -> float:
        samples = scrape(self.namespace, self.ready["metrics"])
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.namespace, *args], check=True)


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    require_root()
    namespace = f"nvt-gw{os.getpid() % 10000}{request.param[0]}"
    directory = tmp_path_factory.mktemp(f"gw-{request.param}")
    running: Gateway | None = None
    try:
        host_namespace(namespace, "198.18.0.10/24")
        running = Gateway(namespace, directory, request.param)
        yield running
    finally:
        try:
            stop_process(running.process if running else None)
        finally:
            netns.remove(namespace)


def test_it_serves_a_tap_per_routing_domain_with_the_corp_sides_own_mac(
    gateway: Gateway,
) -> None:
    assert gateway.ready["ports"] == ["gw-blue", "gw-ext", "gw-red"]  # gw-ext: the NAT's
    for name in ("gw-blue", "gw-red", "gw-ext"):
        link = gateway.link(name)
        assert link is not None
        kernel_end = bytes.fromhex(link["address"].replace(":", ""))
        assert kernel_end != tap_mac(name), "the corp side's NIC must not take the gateway's MAC"
        assert kernel_end[0] & 0x02 and not kernel_end[0] & 0x01  # local, unicast
        assert link["mtu"] == TAP_MTU
    blue, red = (gateway.link(name)["address"] for name in ("gw-blue", "gw-red"))  # type: ignore[index]
    assert blue != red


def test_the_corp_side_reaches_the_gateways_own_address_on_its_tap(gateway: Gateway) -> None:
    gateway.ip("addr", "add", "172.16.0.2/24", "dev", "gw-blue")
    ping = ["ping", "-n", "-q", "-c", "2", "-i", "0.05", "-W", "2", "-I", "gw-blue", "172.16.0.1"]
    answered = subprocess.run(
        ["ip", "netns", "exec", gateway.namespace, *ping],
        capture_output=True,
        check=False,
    )
    assert answered.returncode == 0, answered.stdout
    out = subprocess.run(
        ["ip", "-n", gateway.namespace, "-j", "neigh", "show", "172.16.0.1", "dev", "gw-blue"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)[0]["lladdr"] == tap_mac("gw-blue").hex(":")
    assert gateway.metric("nvgw_arp_replies_total") >= 1
    assert gateway.metric("nvgw_echo_replies_total") >= 2


def test_a_tap_added_or_removed_through_the_api_is_created_or_closed(gateway: Gateway) -> None:
    tap = {"node": "gw", "routing_domain": "red", "name": "gw-red2", "address": "172.16.9.1/24"}
    with ApiClient(gateway.socket) as api:
        api.request("POST", "/v1/gateway-taps", json=tap)
        assert gateway.wait_link("gw-red2", True)
        assert api.request("GET", "/v1/health")["revision"] == 1
        api.request("DELETE", "/v1/gateway-taps", params={"name": "gw-red2"})
        assert gateway.wait_link("gw-red2", False)
    assert gateway.link("gw-red") is not None, "the other TAPs stay"
    assert gateway.process.poll() is None


def test_the_kernel_is_kept_off_the_nvgre_its_ring_reads(gateway: Gateway) -> None:
    """The node's nftables table (``gateway/io/ingress_drop.py``), on its PA's link."""
    ruleset = subprocess.run(
        ["ip", "netns", "exec", gateway.namespace, "nft", "list", "table", "netdev", "nvgw-gw"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'hook ingress device "pa0"' in ruleset
    assert "ip protocol gre ip daddr 198.18.0.10 drop" in ruleset
