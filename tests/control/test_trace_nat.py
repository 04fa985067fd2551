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


def test_from_the_external_tap_a_port_forward_leads_to_the_tenants_vm(tmp_path: Path) -> None:
    """``--from gw-ext``: the internet router's packet to a NAT address. To Blue's
    forward of 203.0.113.10:80 it reaches blue1:80 in Blue's VSID; elsewhere it finds
    no session."""
    text = (CONFIGS / "gateway.yaml").read_text()
    anchor = "        nat: {max_sessions: 1024, log: true}\n"
    forward = "{protocol: tcp, address: 203.0.113.10, port: 80, ca: 10.10.10.11, ca_port: 80}"
    text = text.replace(anchor, f"{anchor}        port_forwards: [{forward}]\n", 1)
    config = tmp_path / "gateway.yaml"
    config.write_text(text)
    policy = load_config(config)
    result = trace(policy, "gw-ext", "203.0.113.10", "tcp", 5555, 80)
    assert result.delivered_to == "blue1" and result.dropped is None
    assert details(result, "nat") == [
        "tcp 203.0.113.10:80 -> 10.10.10.11:80 (routing domain blue, a port forward), "
        "from 203.0.113.1:5555"
    ]
    assert any("NVGRE VSID 5010" in d for d in details(result, "encapsulate"))
    elsewhere = trace(policy, "gw-ext", "203.0.113.10", "tcp", 5555, 81)
    assert elsewhere.dropped == "napt_no_session" and details(elsewhere, "nat") == []


def test_a_traced_tcp_segment_is_a_syn_so_the_nat_opens_a_session_for_it() -> None:
    result = trace(load_config(CONFIGS / "gateway.yaml"), "red1", "198.51.100.2", "tcp", 40000)
    [translated] = details(result, "nat")
    assert translated.startswith("tcp 10.10.10.11:40000 -> 203.0.113.1"), translated
    assert result.delivered_to == "the internet (out of gw-ext)"
