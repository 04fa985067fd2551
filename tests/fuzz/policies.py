"""The policies the fuzzer runs on: every shipped config, and those it generates.

Each is a whole deployment that ``load_policy`` accepts (so ``nvgw check``, ``nvgw
trace`` and ``nvgw replay`` build a data plane per node over it); whether a daemon
would also start on each node (``plan_node`` refuses IPv6 PAs and IPv6 CAs on its
ports today) is recorded, not required: trace and replay never ask.

- ``dual-stack``: VMs with an IPv4 and an IPv6 CA on one MAC, subnets whose
  ``gateway:`` is IPv6, an IPv6-only subnet and VM, a node whose PA is IPv6.
- ``toward-gateway``: the ways out of a virtual network (decisions.md, "Routes and
  where they lead"): a gateway's CA record and its GatewayWildcard on one MAC, a
  default route via that CA, a VSID whose only way out is its wildcard (and one with
  none), another tenant's gateway on a PA of its own, ``::`` wildcards, L2-only
  records on 0.0.0.0 beside the ports' (as OpenStack writes them), a dual-stack VM, a
  subnet with no IPv4 gateway, and the gateways' PAs on a node of their own.
- ``mixed-rule``: encap and nat (IP-Rewrite) records side by side in one VSID, routed
  between VSIDs, ``gateway``-type records on both rules (one nat gateway on an IPv6
  PA), an ``l2only`` record, a default route to a gateway CA, a node with no port.
- ``private-cloud``: a gateway node serving two tenants that overlap (10.10.10.0/24 each,
  and the same TAP address), on two PAs: Blue with two TAPs, a route via a neighbour
  on one, a default route into the corp side, a second VSID reached through the
  gateway, a VSID it has only a wildcard record in (no CA to answer errors from), a
  customer route via a VM that routes; Red on the other PA with an on-link /16; a
  fixed MSS clamp; a third tenant the gateway does not serve. A NAT that Blue alone
  has a route to (198.51.100.0/24), with a port forward of Blue's: Red's packets
  must never reach the internet.
- ``maximal``: many routing domains, VSIDs (from VSID_MIN to VSID_MAX), records, routes
  and ports per node, and the validator's edges (metrics 0 and 65535, /0 and /32
  routes, 15-byte interface names, two prefixes per subnet).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from gateway.control import load_config
from gateway.dataplane import plan_node
from gateway.errors import ConfigError
from gateway.policy import VSID_MAX, VSID_MIN, Snapshot, compile_policy, load_policy
from tests.policy._documents import port, record, route

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

BLUE = "{11111111-2222-3333-4444-000000005010}"
RED = "{11111111-2222-3333-4444-000000005011}"


@dataclass(frozen=True)
class Target:
    """One node of one policy: what a campaign's inputs are run through."""

    policy: str
    node: str
    snapshot: Snapshot
    daemon_accepts: bool  # plan_node would start a daemon on it

    @property
    def name(self) -> str:
        return f"{self.policy}/{self.node}"


def _node(pas: list[str], ports: list[dict], prefix_length: int = 24) -> dict[str, Any]:
    return {
        "role": "host",
        "provider_addresses": [
            {"interface": "pa0", "pa": pa, "prefix_length": 64 if ":" in pa else prefix_length}
            for pa in pas
        ],
        "ports": ports,
    }


def _subnet(vsid: int, prefixes: list[str], gateway: str | None = None) -> dict[str, Any]:
    subnet: dict[str, Any] = {"vsid": vsid, "prefixes": prefixes}
    if gateway is not None:
        subnet["gateway"] = gateway
    return subnet


def dual_stack() -> dict[str, Any]:
    """Dual-stack subnets with IPv6 gateways, IPv6-only VMs and subnets, an IPv6 PA;
    blue1 and blue2 hold an IPv4 and an IPv6 CA on one MAC (what Windows exports
    hold, and decisions.md allows)."""
    return {
        "routing_domains": [
            {
                "rdid": BLUE,
                "name": "blue",
                "virtual_subnets": [
                    _subnet(5010, ["10.10.10.0/24", "fd00:10::/64"], "fd00:10::1"),
                    _subnet(5012, ["10.10.20.0/24", "fd00:20::/64"], "10.10.20.1"),
                ],
            },
            {
                "rdid": RED,
                "name": "red",
                "virtual_subnets": [
                    _subnet(5011, ["10.10.10.0/24", "fd00:11::/64"], "fd00:11::1"),
                    _subnet(5013, ["fd00:13::/64"], "fd00:13::1"),
                ],
            },
        ],
        "lookup_records": [
            record(5010, "10.10.10.11", "00-00-00-00-00-11", "198.18.0.1", vm="blue1"),
            record(5010, "fd00:10::11", "00-00-00-00-00-11", "198.18.0.1", vm="blue1"),
            record(5010, "10.10.10.12", "00-00-00-00-00-12", "198.18.0.2", vm="blue2"),
            record(5010, "fd00:10::12", "00-00-00-00-00-12", "198.18.0.2", vm="blue2"),
            record(5012, "10.10.20.13", "00-00-00-00-00-13", "198.18.0.2", vm="blue3"),
            record(5012, "fd00:20::fe", "02-00-00-00-50-12", "2001:db8::3", type="gateway"),
            record(5011, "10.10.10.11", "00-00-00-00-00-21", "198.18.0.1", vm="red1"),
            record(5011, "10.10.10.12", "00-00-00-00-00-22", "2001:db8::3", vm="red2"),
            record(5011, "fd00:11::17", "00-00-00-00-00-27", "198.18.0.2", vm="red7"),
            record(5013, "fd00:13::16", "00-00-00-00-00-26", "2001:db8::3", vm="red6"),
        ],
        "customer_routes": [
            route(BLUE, 5010, "10.10.10.0/24", "0.0.0.0"),
            route(BLUE, 5010, "fd00:10::/64", "::"),
            route(BLUE, 5012, "10.10.20.0/24", "0.0.0.0"),
            route(BLUE, 5012, "fd00:20::/64", "::"),
            route(BLUE, 5012, "::/0", "fd00:20::fe"),
            route(RED, 5011, "10.10.10.0/24", "0.0.0.0"),
            route(RED, 5011, "fd00:11::/64", "::"),
            route(RED, 5013, "fd00:13::/64", "::"),
            route(RED, 5011, "0.0.0.0/0", "10.10.10.12", metric=10),
        ],
        "nodes": {
            "host1": _node(
                ["198.18.0.1"],
                [
                    port("blue1", 5010, "00-00-00-00-00-11"),
                    port("red1", 5011, "00-00-00-00-00-21"),
                ],
            ),
            "host2": _node(
                ["198.18.0.2"],
                [
                    port("blue2", 5010, "00-00-00-00-00-12"),
                    port("blue3", 5012, "00-00-00-00-00-13"),
                    port("red7", 5011, "00-00-00-00-00-27"),
                ],
            ),
            "host3": _node(
                ["2001:db8::3"],
                [port("red2", 5011, "00-00-00-00-00-22"), port("red6", 5013, "00-00-00-00-00-26")],
            ),
        },
    }


def mixed_rule() -> dict[str, Any]:
    """Encap and IP-Rewrite side by side, routed between them, gateway and l2only records."""
    return {
        "routing_domains": [
            {
                "rdid": BLUE,
                "name": "blue",
                "virtual_subnets": [
                    _subnet(5010, ["10.10.10.0/24"], "10.10.10.1"),
                    _subnet(5012, ["10.10.20.0/24"], "10.10.20.1"),
                ],
            },
            {
                "rdid": RED,
                "name": "red",
                "virtual_subnets": [_subnet(5011, ["10.10.10.0/24", "fd00:11::/64"], "10.10.10.1")],
            },
        ],
        "lookup_records": [
            record(5010, "10.10.10.11", "00-00-00-00-00-11", "198.18.0.1", vm="blue1"),
            record(5010, "10.10.10.12", "00-00-00-00-00-12", "198.18.0.12", "nat", vm="blue2"),
            record(5012, "10.10.20.13", "00-00-00-00-00-13", "198.18.0.13", "nat", vm="blue3"),
            record(5012, "10.10.20.14", "00-00-00-00-00-14", "198.18.0.2", vm="blue4"),
            record(5010, "10.10.10.254", "02-00-00-00-50-10", "198.18.0.10", type="gateway"),
            record(5010, "10.10.10.15", "00-00-00-00-00-15", "198.18.0.1", type="l2only"),
            record(5011, "10.10.10.11", "00-00-00-00-00-21", "198.18.0.21", "nat", vm="red1"),
            record(5011, "10.10.10.12", "00-00-00-00-00-22", "198.18.0.2", vm="red2"),
            record(5011, "10.10.10.253", "02-00-00-00-50-11", "198.18.0.10", type="gateway"),
            record(5011, "fd00:11::fe", "02-00-00-00-50-12", "2001:db8::10", type="gateway"),
        ],
        "customer_routes": [
            route(BLUE, 5010, "10.10.10.0/24", "0.0.0.0"),
            route(BLUE, 5012, "10.10.20.0/24", "0.0.0.0"),
            route(BLUE, 5010, "0.0.0.0/0", "10.10.10.254"),
            route(RED, 5011, "10.10.10.0/24", "0.0.0.0"),
            route(RED, 5011, "172.16.0.0/12", "10.10.10.253", metric=0),
        ],
        "nodes": {
            "host1": _node(
                ["198.18.0.1", "198.18.0.13", "198.18.0.21"],
                [
                    port("blue1", 5010, "00-00-00-00-00-11"),
                    port("blue3", 5012, "00-00-00-00-00-13"),
                    port("red1", 5011, "00-00-00-00-00-21"),
                ],
            ),
            "host2": _node(
                ["198.18.0.2", "198.18.0.12"],
                [
                    port("blue2", 5010, "00-00-00-00-00-12"),
                    port("blue4", 5012, "00-00-00-00-00-14"),
                    port("red2", 5011, "00-00-00-00-00-22"),
                ],
            ),
            "gw": _node(["198.18.0.10", "2001:db8::10"], []),
        },
    }


def toward_gateway() -> dict[str, Any]:
    """The ways out of a virtual network, and the records real exports hold."""
    blue_gw, red_gw, red_v6_gw = "02-00-00-00-50-10", "02-00-00-00-50-11", "02-00-00-00-60-11"
    return {
        "routing_domains": [
            {
                "rdid": BLUE,
                "name": "blue",
                "virtual_subnets": [
                    _subnet(5010, ["10.10.10.0/24", "fd00:10::/64"], "10.10.10.1"),
                    _subnet(5012, ["10.10.20.0/24"], "10.10.20.1"),
                    _subnet(5014, ["10.10.40.0/24"]),  # no gateway: no address for errors
                ],
            },
            {
                "rdid": RED,
                "name": "red",
                "virtual_subnets": [
                    _subnet(5011, ["10.10.10.0/24", "fd00:11::/64"], "10.10.10.1"),
                    _subnet(5013, ["10.10.30.0/24"], "10.10.30.1"),  # no way out at all
                ],
            },
        ],
        "lookup_records": [
            record(5010, "10.10.10.11", "00-00-00-00-00-11", "198.18.0.1", vm="blue1"),
            record(5010, "fd00:10::11", "00-00-00-00-00-11", "198.18.0.1", vm="blue1"),
            record(5010, "0.0.0.0", "00-00-00-00-00-11", "198.18.0.1", type="l2only"),
            record(5010, "10.10.10.12", "00-00-00-00-00-12", "198.18.0.2", vm="blue2"),
            record(5010, "0.0.0.0", "00-00-00-00-00-12", "198.18.0.2", type="l2only"),
            record(5010, "10.10.10.254", blue_gw, "198.18.0.10", type="gateway"),
            record(5010, "0.0.0.0", blue_gw, "198.18.0.10", type="gateway"),
            record(5010, "::", blue_gw, "198.18.0.10", type="gateway"),
            record(5012, "10.10.20.13", "00-00-00-00-00-13", "198.18.0.2", vm="blue3"),
            record(5012, "0.0.0.0", blue_gw, "198.18.0.10", type="gateway"),
            record(5014, "10.10.40.14", "00-00-00-00-00-14", "198.18.0.1", vm="blue4"),
            record(5014, "0.0.0.0", blue_gw, "198.18.0.10", type="gateway"),
            record(5011, "10.10.10.11", "00-00-00-00-00-21", "198.18.0.1", vm="red1"),
            record(5011, "10.10.10.12", "00-00-00-00-00-22", "198.18.0.2", vm="red2"),
            record(5011, "0.0.0.0", red_gw, "198.18.0.11", type="gateway"),
            record(5011, "::", red_v6_gw, "2001:db8::11", type="gateway"),
            record(5013, "10.10.30.15", "00-00-00-00-00-25", "198.18.0.2", vm="red5"),
        ],
        "customer_routes": [
            route(BLUE, 5010, "10.10.10.0/24", "0.0.0.0"),
            route(BLUE, 5012, "10.10.20.0/24", "0.0.0.0"),
            route(BLUE, 5014, "10.10.40.0/24", "0.0.0.0"),
            route(BLUE, 5010, "172.16.0.0/12", "10.10.10.254"),  # else the wildcards
            route(RED, 5011, "10.10.10.0/24", "0.0.0.0"),
            route(RED, 5013, "10.10.30.0/24", "0.0.0.0"),
        ],
        "nodes": {
            "host1": _node(
                ["198.18.0.1"],
                [
                    port("blue1", 5010, "00-00-00-00-00-11"),
                    port("blue4", 5014, "00-00-00-00-00-14"),
                    port("red1", 5011, "00-00-00-00-00-21"),
                ],
            ),
            "host2": _node(
                ["198.18.0.2"],
                [
                    port("blue2", 5010, "00-00-00-00-00-12"),
                    port("blue3", 5012, "00-00-00-00-00-13"),
                    port("red2", 5011, "00-00-00-00-00-22"),
                    port("red5", 5013, "00-00-00-00-00-25"),
                ],
            ),
            "gws": _node(["198.18.0.10", "198.18.0.11"], []),
        },
    }


def private_cloud() -> dict[str, Any]:
    """Two overlapping tenants through one gateway node (module docstring)."""
    green = "{11111111-2222-3333-4444-000000005020}"
    blue_gw, red_gw = "02-00-00-00-50-10", "02-00-00-00-50-11"
    gw = _node(["198.18.0.10", "198.18.0.11"], [])
    del gw["ports"]
    gw |= {
        "role": "gateway",
        "mss_clamp": 1400,
        "routing_domains": {
            "blue": {
                "taps": [
                    {"name": "gw-blue", "address": "172.16.0.1/24"},
                    {"name": "gw-blue2", "address": "172.17.0.1/28"},
                ],
                "routes": [
                    {"destination": "172.16.0.0/24", "next_hop": "tap:gw-blue"},
                    {"destination": "172.16.50.0/24", "next_hop": "172.16.0.2"},
                    {"destination": "172.17.0.0/28", "next_hop": "tap:gw-blue2"},
                    {"destination": "0.0.0.0/0", "next_hop": "172.17.0.3"},
                    {"destination": "198.51.100.0/24", "next_hop": "nat"},
                ],
                "nat": {"max_sessions": 64},
                "port_forwards": [
                    {
                        "protocol": "tcp",
                        "address": "203.0.113.20",
                        "port": 80,
                        "ca": "10.10.10.11",
                        "ca_port": 80,
                    }
                ],
            },
            RED: {
                "taps": [{"name": "gw-red", "address": "172.16.0.1/24"}],
                "routes": [{"destination": "172.16.0.0/16", "next_hop": "tap:gw-red"}],
            },
        },
        "nat": {"tap": "gw-ext", "addresses": ["203.0.113.20/24"], "next_hop": "203.0.113.1"},
    }
    return {
        "routing_domains": [
            {
                "rdid": BLUE,
                "name": "blue",
                "virtual_subnets": [
                    _subnet(5010, ["10.10.10.0/24", "fd00:10::/64"], "10.10.10.1"),
                    _subnet(5012, ["10.10.20.0/24"], "10.10.20.1"),
                    _subnet(5014, ["10.10.40.0/24"]),
                ],
            },
            {
                "rdid": RED,
                "name": "red",
                "virtual_subnets": [_subnet(5011, ["10.10.10.0/24"], "10.10.10.1")],
            },
            {
                "rdid": green,
                "name": "green",
                "virtual_subnets": [_subnet(5020, ["10.20.0.0/24"], "10.20.0.1")],
            },
        ],
        "lookup_records": [
            record(5010, "10.10.10.11", "00-00-00-00-00-11", "198.18.0.1", vm="blue1"),
            record(5010, "10.10.10.12", "00-00-00-00-00-12", "198.18.0.2", vm="blue2"),
            record(5010, "10.10.10.254", blue_gw, "198.18.0.10", type="gateway"),
            record(5010, "0.0.0.0", blue_gw, "198.18.0.10", type="gateway"),
            record(5010, "::", blue_gw, "198.18.0.10", type="gateway"),
            record(5012, "10.10.20.13", "00-00-00-00-00-13", "198.18.0.2", vm="blue3"),
            record(5012, "10.10.20.254", blue_gw, "198.18.0.10", type="gateway"),
            record(5014, "10.10.40.14", "00-00-00-00-00-14", "198.18.0.1", vm="blue4"),
            record(5014, "0.0.0.0", blue_gw, "198.18.0.10", type="gateway"),
            record(5011, "10.10.10.11", "00-00-00-00-00-21", "198.18.0.1", vm="red1"),
            record(5011, "10.10.10.12", "00-00-00-00-00-22", "198.18.0.2", vm="red2"),
            record(5011, "10.10.10.254", red_gw, "198.18.0.11", type="gateway"),
            record(5020, "10.20.0.11", "00-00-00-00-00-31", "198.18.0.1", vm="green1"),
        ],
        "customer_routes": [
            route(BLUE, 5010, "10.10.10.0/24", "0.0.0.0"),
            route(BLUE, 5012, "10.10.20.0/24", "0.0.0.0"),
            route(BLUE, 5014, "10.10.40.0/24", "0.0.0.0"),
            route(BLUE, 5010, "0.0.0.0/0", "10.10.10.254"),
            route(BLUE, 5010, "192.168.50.0/24", "10.10.10.12"),  # blue2 routes it
            route(RED, 5011, "10.10.10.0/24", "0.0.0.0"),
            route(RED, 5011, "0.0.0.0/0", "10.10.10.254"),
            route(green, 5020, "10.20.0.0/24", "0.0.0.0"),
        ],
        "nodes": {
            "host1": _node(
                ["198.18.0.1"],
                [
                    port("blue1", 5010, "00-00-00-00-00-11"),
                    port("blue4", 5014, "00-00-00-00-00-14"),
                    port("red1", 5011, "00-00-00-00-00-21"),
                    port("green1", 5020, "00-00-00-00-00-31"),
                ],
            ),
            "host2": _node(
                ["198.18.0.2"],
                [
                    port("blue2", 5010, "00-00-00-00-00-12"),
                    port("blue3", 5012, "00-00-00-00-00-13"),
                    port("red2", 5011, "00-00-00-00-00-22"),
                ],
            ),
            "gw": gw,
        },
    }


# The maximal policy's shape: routing domains x VSIDs each x VMs per VSID, on NODES hosts.
MAXIMAL_DOMAINS = 24
MAXIMAL_SUBNETS = 5
MAXIMAL_VMS = 12
MAXIMAL_NODES = 4


def maximal() -> dict[str, Any]:
    """Many of everything, and the validator's edges.

    VSIDs run from VSID_MIN to VSID_MAX; every third VM is IP-Rewrite (a PA of its own
    on its node); each subnet also holds an IPv6-only VM; each domain has an on-link
    route per subnet, a default route via a CA (metric 0), a /32 host route and a
    route of metric 65535; port names are 15 bytes long.
    """
    vsids = [VSID_MIN, VSID_MAX] + [6000 + n for n in range(MAXIMAL_DOMAINS * MAXIMAL_SUBNETS - 2)]
    domains, records, routes = [], [], []
    nodes = {f"node{n}": _node([f"198.18.{n}.1"], []) for n in range(MAXIMAL_NODES)}
    rewrite_pas = [10] * MAXIMAL_NODES  # the next free last octet per node
    for d in range(MAXIMAL_DOMAINS):
        rdid = f"{{00000000-0000-0000-0000-{d:012x}}}"
        subnets = []
        for s in range(MAXIMAL_SUBNETS):
            vsid = vsids[d * MAXIMAL_SUBNETS + s]
            v4, v6 = f"10.{d}.{s}.0/24", f"fd{d:02x}:{s}::/64"
            subnets.append(_subnet(vsid, [v4, v6], f"10.{d}.{s}.1"))
            routes += [route(rdid, vsid, v4, "0.0.0.0"), route(rdid, vsid, v6, "::")]
            for v in range(MAXIMAL_VMS):
                n = (d + s + v) % MAXIMAL_NODES
                node = nodes[f"node{n}"]
                mac = f"00-{d:02x}-{s:02x}-{v:02x}-00-01"
                ca = f"10.{d}.{s}.{10 + v}"
                if v % 3 == 2:  # IP-Rewrite: a PA of its own on the node
                    pa = f"198.18.{n}.{rewrite_pas[n]}"
                    rewrite_pas[n] += 1
                    node["provider_addresses"].append(
                        {"interface": "pa0", "pa": pa, "prefix_length": 24}
                    )
                    records.append(record(vsid, ca, mac, pa, "nat"))
                else:
                    records.append(record(vsid, ca, mac, f"198.18.{n}.1"))
                if v < 6:
                    node["ports"].append(port(f"vm{d:03d}s{s}v{v:02d}xxxxxx"[:15], vsid, mac))
            v6_mac = f"00-{d:02x}-{s:02x}-ff-00-06"
            records.append(record(vsid, f"fd{d:02x}:{s}::66", v6_mac, f"198.18.{d % 4}.1"))
        first = vsids[d * MAXIMAL_SUBNETS]
        routes += [
            route(rdid, first, "0.0.0.0/0", f"10.{d}.1.10", metric=0),
            route(rdid, first, f"10.{d}.2.11/32", f"10.{d}.3.12", metric=65535),
            route(rdid, first, f"10.{d}.4.0/24", f"10.{d}.0.10", metric=65535),
        ]
        domains.append({"rdid": rdid, "name": f"tenant{d}", "virtual_subnets": subnets})
    return {
        "revision": 2**31,
        "routing_domains": domains,
        "lookup_records": records,
        "customer_routes": routes,
        "nodes": nodes,
    }


GENERATED = {
    "dual-stack": dual_stack,
    "mixed-rule": mixed_rule,
    "toward-gateway": toward_gateway,
    "private-cloud": private_cloud,
    "maximal": maximal,
}


def policy_names() -> list[str]:
    """Every policy the fuzzer knows: the shipped configs, then the generated ones."""
    return [path.stem for path in sorted(CONFIGS.glob("*.yaml"))] + list(GENERATED)


@cache
def snapshot(name: str) -> Snapshot:
    """The compiled policy ``name`` (a shipped config's stem or a generated one)."""
    if name in GENERATED:
        return compile_policy(load_policy(GENERATED[name]()))
    return compile_policy(load_config(CONFIGS / f"{name}.yaml"))


def targets(names: list[str] | None = None) -> list[Target]:
    """Every node of every policy named (all by default), in a stable order."""
    found = []
    for name in names or policy_names():
        compiled = snapshot(name)
        for node in compiled.policy.nodes:
            try:
                plan_node(compiled.policy, node.name)
                accepts = True
            except ConfigError:
                accepts = False
            found.append(Target(name, node.name, compiled, accepts))
    return found
