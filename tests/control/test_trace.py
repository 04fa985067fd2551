"""nvgw trace: the real data plane, hop by hop, against a config file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.control import load_config
from gateway.control.entries import policy_json
from gateway.control.trace import TraceError, trace
from gateway.dataplane import fabric as fabric_module
from gateway.dataplane import tap_mac
from gateway.policy import Policy, load_policy

from ..dataplane._policies import toward_gateways
from ._gateway_config import gateway_config, gateway_text

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def hops(result, what: str) -> list[str]:
    return [hop.detail for hop in result.hops if hop.what == what]


def test_blue_to_blue_is_encapsulated_with_blues_vsid_and_delivered() -> None:
    result = trace(load_config(CONFIGS / "two-hosts.yaml"), "blue1", "10.10.10.12")
    assert result.delivered_to == "blue2" and result.dropped is None
    [encapsulated] = hops(result, "encapsulate")
    assert "VSID 5010" in encapsulated and "PA 198.18.0.1 -> 198.18.0.2" in encapsulated
    assert [hop.node for hop in result.hops if hop.what == "deliver"] == ["host2"]
    assert any("blue2 (CA 10.10.10.12, PA 198.18.0.2, encap)" in d for d in hops(result, "lookup"))


def test_red2s_address_from_blue1_reaches_blue2_never_red2() -> None:
    """Blue and Red both have 10.10.10.12: from blue1 it is blue2, in Blue's VSID, and
    nothing of Red's is looked up, sent to or delivered on the way."""
    blue = trace(load_config(CONFIGS / "two-hosts.yaml"), "blue1", "10.10.10.12")
    assert blue.delivered_to == "blue2" and blue.dropped is None
    [encapsulated] = hops(blue, "encapsulate")
    assert "VSID 5010" in encapsulated
    assert any("is at 00-00-00-00-00-12" in d for d in hops(blue, "arp"))
    assert not [
        h for h in blue.hops if "red" in h.detail or "5011" in h.detail or "-22" in h.detail
    ]


def test_red2s_address_from_red1_is_red2() -> None:
    red = trace(load_config(CONFIGS / "two-hosts.yaml"), "red1", "10.10.10.12")
    assert red.delivered_to == "red2" and "VSID 5011" in hops(red, "encapsulate")[0]


def test_macs_print_as_the_hnv_admin_writes_them() -> None:
    """One spelling, dashes, in the hops a person reads (README, "Decisions")."""
    routed = trace(load_config(CONFIGS / "routing.yaml"), "blue1", "10.10.20.13")
    assert "10.10.10.1 is at 02-4e-56-00-13-92 (the subnet's router)" in hops(routed, "arp")
    assert "local port by (VSID, MAC) (5012, 00-00-00-00-00-13) -> port blue3" in hops(
        routed, "lookup"
    )
    assert not [h for h in routed.hops if ":4e:" in h.detail or "00:00:" in h.detail]


def test_routing_rewrites_the_vsid_and_never_crosses_domains() -> None:
    policy = load_config(CONFIGS / "routing.yaml")
    routed = trace(policy, "blue1", "10.10.20.13", "udp", 1234, 53)
    assert routed.delivered_to == "blue3"
    assert "VSID 5012" in hops(routed, "encapsulate")[0]
    assert any(d.startswith("customer route") for d in hops(routed, "lookup"))
    assert trace(policy, "blue1", "10.10.30.5").dropped == "no_route"
    assert trace(policy, "red1", "10.10.20.13").dropped == "no_gateway"


def test_off_subnet_goes_to_the_gateways_pa_by_route_and_by_wildcard() -> None:
    """Blue's 0.0.0.0/0 via its gateway's CA, Red's GatewayWildcard: the trace shows
    the packet routed by the host and encapsulated to the gateway record's PA."""
    document = policy_json(load_config(CONFIGS / "two-hosts.yaml"))
    toward_gateways(document)
    policy = load_policy(document)
    blue = trace(policy, "blue1", "172.16.0.2", "tcp")
    assert "10.10.10.1 is at 02-4e-56-00-13-92 (the subnet's router)" in hops(blue, "arp")
    assert (
        "customer route ({11111111-2222-3333-4444-000000005010}, 172.16.0.2) -> "
        "0.0.0.0/0 via 10.10.10.254 in VSID 5010 (metric 256)"
    ) in hops(blue, "lookup")
    assert any("(5010, 10.10.10.254) -> record (CA 10.10.10.254, PA 198.18.0.10" in d
               for d in hops(blue, "lookup"))  # fmt: skip
    [encapsulated] = hops(blue, "encapsulate")
    assert "VSID 5010" in encapsulated and "PA 198.18.0.1 -> 198.18.0.10" in encapsulated
    red = trace(policy, "red1", "172.16.0.2")
    assert "gateway wildcard by VSID 5011 -> record (CA 0.0.0.0, PA 198.18.0.11, encap)" in hops(
        red, "lookup"
    )
    [encapsulated] = hops(red, "encapsulate")
    assert "VSID 5011" in encapsulated and "PA 198.18.0.1 -> 198.18.0.11" in encapsulated
    assert blue.delivered_to is red.delivered_to is None  # no node of the file serves them


def test_ip_rewrite_is_traced_through_the_provider_link() -> None:
    result = trace(load_config(CONFIGS / "ip-rewrite.yaml"), "blue1", "10.10.10.12", "tcp")
    assert result.delivered_to == "blue2"
    assert any("plain IPv4 198.18.0.11 -> 198.18.0.12" in d for d in hops(result, "ip-rewrite"))


def test_unanswered_arp_is_where_it_stops() -> None:
    result = trace(load_config(CONFIGS / "two-hosts.yaml"), "blue1", "10.10.10.99")
    assert result.dropped == "arp_unanswered" and result.delivered_to is None


def test_bad_descriptions_are_refused() -> None:
    policy = load_config(CONFIGS / "two-hosts.yaml")
    with pytest.raises(TraceError, match="blue1, blue2, red1, red2"):
        trace(policy, "green1", "10.10.10.12")
    with pytest.raises(TraceError, match="not an IPv4 address"):
        trace(policy, "blue1", "10.10.10")
    with pytest.raises(TraceError, match="protocol"):
        trace(policy, "blue1", "10.10.10.12", "sctp")


def test_nvgw_trace_prints_the_hops_and_the_verdict() -> None:
    command = [
        sys.executable,
        "-m",
        "gateway",
        "trace",
        "-c",
        str(CONFIGS / "two-hosts.yaml"),
        "--from",
        "blue1",
        "--to",
        "10.10.10.12",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "encapsulate" in result.stdout and "delivered to blue2" in result.stdout
    bad = subprocess.run(
        [*command[:-4], "--from", "nobody", "--to", "10.10.10.12"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "no VM port named 'nobody'" in bad.stderr


@pytest.mark.parametrize(("sport", "dport"), [(70000, 80), (49152, -1)])
def test_ports_outside_16_bits_are_refused(sport: int, dport: int) -> None:
    policy = load_config(CONFIGS / "two-hosts.yaml")
    with pytest.raises(TraceError, match=r"0\.\.65535"):
        trace(policy, "blue1", "10.10.10.12", "udp", sport, dport)


def with_bystanders(policy: Policy, count: int) -> Policy:
    """The policy plus ``count`` (< 250) nodes the packet never visits, each with a VM
    of Blue's (whose subnet grows to hold them)."""
    document = policy_json(policy)
    records, nodes = document["lookup_records"], document["nodes"]
    for n in range(count):
        mac, pa, ca = f"02-00-00-00-00-{n:02x}", f"198.19.0.{n + 2}", f"10.10.11.{n + 2}"
        records.append({"vsid": 5010, "ca": ca, "mac": mac, "pa": pa, "rule": "encap"})
        nodes[f"bystander{n}"] = {
            "role": "host",
            "provider_addresses": [{"interface": "pa0", "pa": pa, "prefix_length": 15}],
            "ports": [{"name": f"vm{n}", "vsid": 5010, "mac": mac}],
        }
    document["routing_domains"][0]["virtual_subnets"][0]["prefixes"] = ["10.10.0.0/16"]
    return load_policy(document)


@pytest.mark.parametrize("config", ["two-hosts.yaml", "ip-rewrite.yaml"])
def test_only_the_nodes_the_packet_visits_are_built(monkeypatch, config: str) -> None:
    """A trace costs what its path costs, not the policy's size once per node: with
    200 more nodes beside them, the same hops, and two data planes built."""
    policy = load_config(CONFIGS / config)
    plain = trace(policy, "blue1", "10.10.10.12", "tcp")
    built: list[str] = []
    real = fabric_module.HostNode

    def counting(snapshot, node, *args, **kwargs):
        built.append(node)
        return real(snapshot, node, *args, **kwargs)

    monkeypatch.setattr(fabric_module, "HostNode", counting)
    crowded = trace(with_bystanders(policy, 200), "blue1", "10.10.10.12", "tcp")
    assert crowded.delivered_to == plain.delivered_to == "blue2"
    assert [(h.node, h.what) for h in crowded.hops] == [(h.node, h.what) for h in plain.hops]
    assert sorted(built) == ["host1", "host2"]


def gateway_file(tmp_path: Path) -> Path:
    """The gateway lab's config, each subnet with its gateway CA 10.10.10.1 (the hosts
    answer it): a VM's way off its subnet."""
    text = gateway_text().replace(
        "prefixes: [10.10.10.0/24]", "prefixes: [10.10.10.0/24]\n        gateway: 10.10.10.1"
    )
    return gateway_config(tmp_path, text)


def gateway_policy(tmp_path: Path) -> Policy:
    return load_config(gateway_file(tmp_path))


def test_a_trace_from_a_vm_ends_on_its_tenants_gateway_tap(tmp_path: Path) -> None:
    """host1 routes blue1's packet to the gateway's PA; the gateway routes it out of
    Blue's TAP, asking the corp side's MAC first (the trace answers as it would)."""
    policy = gateway_policy(tmp_path)
    result = trace(policy, "blue1", "172.16.0.2", "tcp", 40000, 443)
    assert result.delivered_to == "TAP gw-blue (routing domain blue)" and result.dropped is None
    [encapsulated] = hops(result, "encapsulate")
    assert "VSID 5010" in encapsulated and "PA 198.18.0.1 -> 198.18.0.10" in encapsulated
    at_gateway = [hop for hop in result.hops if hop.node == "gw"]
    assert [hop.what for hop in at_gateway][-3:] == ["arp", "arp", "deliver"]
    assert any(
        d.startswith("gateway route ({11111111-2222-3333-4444-000000005010}, 172.16.0.2)")
        and d.endswith("172.16.0.0/24 on-link out of gw-blue")
        for d in hops(result, "lookup")
    )
    assert "who has 172.16.0.2, out of gw-blue" in hops(result, "arp")
    assert hops(result, "deliver")[-1].startswith("to TAP gw-blue (routing domain blue), ")
    red = trace(policy, "red1", "172.16.0.2")
    assert red.delivered_to == "TAP gw-red (routing domain red)"
    assert not [h for h in red.hops if "gw-blue" in h.detail or "5010" in h.detail]


def test_a_trace_from_a_gateway_tap_reaches_its_tenants_vm(tmp_path: Path) -> None:
    """``--from gw-red``: the corp side (172.16.0.2) asks for the gateway's address on
    the TAP, sends to its MAC, and the gateway encapsulates into Red's VSID toward
    red2's host; Red's 10.10.10.12 is never Blue's."""
    policy = gateway_policy(tmp_path)
    result = trace(policy, "gw-red", "10.10.10.12", "udp", 53, 40000)
    assert result.delivered_to == "red2" and result.dropped is None
    assert hops(result, "arp")[:2] == [
        "gw-red's corp side asks who has 172.16.0.1",
        f"172.16.0.1 is at {tap_mac('gw-red').hex('-')}",
    ]
    assert hops(result, "send") == ["gw-red's corp side 172.16.0.2 -> 10.10.10.12 udp"]
    [encapsulated] = hops(result, "encapsulate")
    assert "VSID 5011" in encapsulated and "PA 198.18.0.10 -> 198.18.0.2" in encapsulated
    assert [hop.node for hop in result.hops if hop.what == "deliver"] == ["host2"]
    blue = trace(policy, "gw-blue", "10.10.10.12")
    assert blue.delivered_to == "blue2" and "VSID 5010" in hops(blue, "encapsulate")[0]


def test_a_trace_from_a_tap_to_the_gateway_itself_or_its_own_subnet(tmp_path: Path) -> None:
    policy = gateway_policy(tmp_path)
    assert trace(policy, "gw-blue", "172.16.0.1", "udp").dropped == "to_gateway"
    echo = trace(policy, "gw-blue", "172.16.0.1")  # ICMP echo: the answer comes back
    assert echo.dropped is None and echo.delivered_to == "TAP gw-blue (routing domain blue)"
    assert trace(policy, "gw-blue", "172.16.0.9").dropped == "arp_unanswered"
    with pytest.raises(TraceError, match="gateway TAPs: gw-blue, gw-red"):
        trace(policy, "gw-green", "10.10.10.11")


def test_nvgw_trace_from_a_gateway_tap_prints_where_it_ends(tmp_path: Path) -> None:
    config = str(gateway_file(tmp_path))
    command = [sys.executable, "-m", "gateway", "trace", "-c", config, "--to"]
    out = subprocess.run(
        [*command, "172.16.0.2", "--from", "blue1"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "delivered to TAP gw-blue (routing domain blue)" in out.stdout
    back = subprocess.run(
        [*command, "10.10.10.11", "--from", "gw-blue"], capture_output=True, text=True, timeout=60
    )
    assert back.returncode == 0 and "delivered to blue1" in back.stdout
