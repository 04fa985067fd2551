"""nvgw trace through a gateway's NAT: the route to the NAT, the translation (the
tenant's address:port and the external one it got), the internet router asked for
by ARP on the external TAP, and the packet handed to the internet; each trace runs
on a table of its own, so no session is left in any running table."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.control import load_config
from gateway.control.trace import trace

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXTERNAL_IP = r"203\.0\.113\.1[01]"  # one of the NAT's addresses
EXTERNAL = EXTERNAL_IP + r":\d+"


def details(result, what: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [hop.detail for hop in result.hops if hop.what == what]


def test_a_udp_datagram_to_the_internet_shows_its_translation() -> None:
    policy = load_config(CONFIGS / "gateway.yaml")
    result = trace(policy, "blue1", "198.51.100.2", "udp", 40000, 7)
    assert result.dropped is None
    assert result.delivered_to == "the internet (out of gw-ext)"
    gw = [(hop.what, hop.detail) for hop in result.hops if hop.node == "gw"]
    lookups = [detail for what, detail in gw if what == "lookup"]
    assert any(d.endswith("-> 0.0.0.0/0 to the NAT") for d in lookups), lookups
    [translated] = [detail for what, detail in gw if what == "nat"]
    assert re.fullmatch(
        rf"udp 10\.10\.10\.11:40000 -> {EXTERNAL} \(routing domain blue\), "
        r"to 198\.51\.100\.2:7",
        translated,
    ), translated
    assert ("arp", "who has 203.0.113.1, out of gw-ext (the internet side)") in gw
    [delivered] = [detail for what, detail in gw if what == "deliver"]
    assert re.fullmatch(
        rf"to the internet out of gw-ext: {EXTERNAL} -> 198\.51\.100\.2:7, \d+ bytes", delivered
    ), delivered
    # The addresses on the wire are the translated ones: the NAT's, not the CA.
    assert "10.10.10.11" not in delivered


def test_an_echo_request_is_translated_by_its_identifier() -> None:
    policy = load_config(CONFIGS / "gateway.yaml")
    result = trace(policy, "red2", "198.51.100.2")
    [translated] = details(result, "nat")
    assert re.fullmatch(
        rf"icmp 10\.10\.10\.12 id 1 -> {EXTERNAL_IP} id \d+ \(routing domain red\), "
        r"to 198\.51\.100\.2",
        translated,
    ), translated
