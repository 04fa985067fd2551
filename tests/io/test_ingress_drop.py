"""The daemon's ingress drop (``gateway/io/ingress_drop.py``) on a real veth.

With the drop, the kernel's IP stack never gets the GRE the ring reads, while the
ring reads all of it and the rest (UDP to the same address) still reaches the kernel;
without it (the control), the kernel gets every datagram too. The table goes with
the process that made it, even one killed with SIGKILL, and a table nftables refuses
is a typed error carrying nftables' reason.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from gateway.io import ingress_drop
from gateway.io.ingress_drop import IngressDrop, IngressDropError, ingress_ruleset

from ._veth_pair import READER_MAC, SENDER_MAC, result_after_sending, start_reader, veth_pair
from .test_ring import nvgre

pytestmark = pytest.mark.netns
HERE = Path(__file__).parent
PA = "198.18.0.2"
GRE_FRAMES = 20


@pytest.fixture
def veth() -> Iterator[tuple[str, str]]:
    """Namespaces a (sender, ra0) and b (rb0, MAC READER_MAC, address PA/24)."""
    with veth_pair("ind") as (a, b):
        subprocess.run(["ip", "-n", b, "addr", "add", f"{PA}/24", "dev", "rb0"], check=True)
        yield a, b


def tables(namespace: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def reader(namespace: str, mode: str) -> subprocess.Popen[str]:
    script = str(HERE / "_ingress_reader.py")
    return start_reader(namespace, [sys.executable, script, "rb0", PA, str(GRE_FRAMES), "10", mode])


def send_through(veth: tuple[str, str], mode: str) -> dict:
    """GRE_FRAMES NVGRE datagrams and 5 UDP datagrams to PA, interleaved."""
    a, b = veth
    udp = raw(
        Ether(dst=READER_MAC, src=SENDER_MAC)
        / IP(src="198.18.0.1", dst=PA)
        / UDP(sport=4789, dport=4789)
        / b"u"
    )
    gre = [nvgre(n % 5) for n in range(GRE_FRAMES)]
    frames = [f for n, g in enumerate(gre) for f in ((udp, g) if n % 4 == 0 else (g,))]
    return result_after_sending(a, reader(b, mode), frames)


def test_the_kernel_never_gets_what_the_ring_reads(veth) -> None:
    assert send_through(veth, "drop") == {"ring": GRE_FRAMES, "kernel": {"gre": 0, "udp": 5}}


def test_without_the_drop_the_kernel_gets_every_datagram_too(veth) -> None:
    result = send_through(veth, "none")
    assert result == {"ring": GRE_FRAMES, "kernel": {"gre": GRE_FRAMES, "udp": 5}}


def test_the_table_goes_with_the_process_even_killed(veth) -> None:
    _, b = veth
    holder = reader(b, "hold")
    try:
        assert "table netdev nvgw-test" in tables(b)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 5
    while "nvgw-test" in tables(b) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "nvgw-test" not in tables(b)


def test_a_table_nftables_refuses_is_an_error_with_its_reason(veth) -> None:
    """A daemon without CAP_NET_ADMIN (here: run as nobody) cannot make it."""
    _, b = veth
    code = (
        "from gateway.io.ingress_drop import IngressDrop, IngressDropError\n"
        "try:\n"
        "    IngressDrop('test', [('rb0', [bytes(4)])])\n"
        "except IngressDropError as error:\n"
        "    print(error)\n"
    )
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    out = subprocess.run(
        ["ip", "netns", "exec", b, *nobody, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("nftables refused table nvgw-test: ")
    assert "Operation not permitted" in out
    assert "nvgw-test" not in tables(b)


def test_without_the_library_the_error_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(ingress_drop, "_LIBRARY", "libnvgw-missing.so.1")
    with pytest.raises(IngressDropError, match=r"libnvgw-missing\.so\.1 not found .*libnftables1"):
        IngressDrop("test", [("eth0", [bytes(4)])])


def test_a_library_without_nftables_calls_is_said_to_be_too_old(monkeypatch) -> None:
    monkeypatch.setattr(ingress_drop, "_LIBRARY", "libc.so.6")
    with pytest.raises(IngressDropError, match=r"libc\.so\.6 is too old .*nft_ctx_new"):
        IngressDrop("test", [("eth0", [bytes(4)])])


def test_the_ruleset_has_a_chain_per_interface_with_its_pas() -> None:
    ruleset = ingress_ruleset(
        "nvgw-gw",
        [("eth1", [bytes([198, 18, 0, 3]), bytes([198, 18, 0, 2])]), ("eth2", [bytes(4)])],
    )
    assert "  flags owner\n" in ruleset
    assert 'hook ingress device "eth1" priority 0' in ruleset
    assert "ip protocol gre ip daddr { 198.18.0.2, 198.18.0.3 } drop" in ruleset
    assert 'hook ingress device "eth2" priority 0' in ruleset
    assert "ip daddr { 0.0.0.0 } drop" in ruleset
