"""The gateway part's own pieces of the topology: its config, its frames, the corp
namespace behind its TAP, and the provider side that sinks the NVGRE it sends.

The gateway node ``gw`` owns the host namespace's PA (198.18.0.2 on nvbh0) and serves
routing domain ``bench`` (VSID 5010, 10.10.10.0/24) through one TAP, ``nvbgw0``, its own
address 172.16.0.1/24 on it. The remote VM (10.10.10.1, PA 198.18.0.1: the sender's
address) is in the VSID; the gateway's record (10.10.10.254) holds its PA. The TAP's
kernel end is moved into ``nvb-corp`` (172.16.0.2/24, route to the VSID via the
gateway), which drops every IPv4 frame at ingress (nftables, after the TAP's rx
counter: the same cheap end for every receiver) and answers ARP.
"""

from __future__ import annotations

from pathlib import Path

from gateway.dataplane import tap_mac

from .common import (
    FLOWS,
    HOST_DEV,
    HOST_PA,
    NS_CORP,
    NS_HOST,
    PA_PREFIX,
    REMOTE_VM,
    SND_PA,
    VSID,
    ipn,
    nsx,
    run,
)
from .traffic import inner_frame, nvgre_frames, trafgen_file, validated_config

NODE = "gw"
GW_TAP = "nvbgw0"
GW_TAP_ADDR, CORP_ADDR, CORP_PREFIX = "172.16.0.1", "172.16.0.2", 24
CORP_NET, VSID_NET = "172.16.0.0/24", "10.10.10.0/24"
GW_RECORD = ("10.10.10.254", "02:00:00:00:50:10")  # the gateway's record in the VSID
GW_TAP_MAC = tap_mac(GW_TAP).hex(":")  # the gateway's own MAC on its TAP
CORP_MAC = "02:00:00:00:0c:02"  # the TAP's kernel end, when a bare loop or OVS has it
NVGRE_OVERHEAD = 14 + 20 + 8  # outer Ethernet, IPv4, GRE with a key
CORP_MTU = 1500  # the gateway's TAP: a plain Ethernet link (gateway/io/gateway.py)
# The sender veth's MAC as the host namespace sees it (a static neighbour): the NVGRE
# sent to the sender's PA reaches the sender veth, is counted there, and is dropped on
# arrival by its kernel (another host's MAC), as cheaply as a frame can be.
SINK_MAC = "02:00:00:00:00:11"


def gateway_document(script: str) -> str:
    """A policy whose VSID the remote VM and the gateway's record share, routed by
    default to the gateway, and the start of the gateway node (its PA, then
    ``routing_domains:``): ``script`` appends the routing domain ``bench``'s part."""
    vm_ca, vm_mac = REMOTE_VM
    gw_ca, gw_mac = GW_RECORD
    rdid = "{6e766222-0000-4000-8000-000000005010}"
    return f"""\
# Written by bench/{script} for one run; not a shipped config.
revision: 1
routing_domains:
  - rdid: "{rdid}"
    name: bench
    virtual_subnets:
      - vsid: {VSID}
        prefixes: [{VSID_NET}]
lookup_records:
  - {{vsid: {VSID}, ca: {vm_ca}, mac: {vm_mac}, pa: {SND_PA}, rule: encap, vm: remote}}
  - {{vsid: {VSID}, ca: {gw_ca}, mac: {gw_mac}, pa: {HOST_PA}, rule: encap, type: gateway}}
customer_routes:
  - {{rdid: "{rdid}", vsid: {VSID}, destination: {VSID_NET}, next_hop: 0.0.0.0}}
  - {{rdid: "{rdid}", vsid: {VSID}, destination: 0.0.0.0/0, next_hop: {gw_ca}}}
nodes:
  {NODE}:
    role: gateway
    provider_addresses:
      - {{interface: {HOST_DEV}, pa: {HOST_PA}, prefix_length: {PA_PREFIX}}}
    routing_domains:
"""


def gateway_config() -> Path:
    """The gateway node's config, validated with the daemon's own loader."""
    text = (
        gateway_document("gateway_forwarding.py")
        + f"""\
      bench:
        taps: [{{name: {GW_TAP}, address: {GW_TAP_ADDR}/{CORP_PREFIX}}}]
        routes:
          - {{destination: {CORP_NET}, next_hop: "tap:{GW_TAP}"}}
"""
    )
    return validated_config("gateway.yaml", text)


def inbound_frames(size: int, to_mac: str) -> list[bytes]:
    """NVGRE from the remote VM to the corp server, its inner frame to ``to_mac``: the
    gateway's record (the daemon routes it) or the corp end's MAC (a bare loop or OVS
    only decapsulates, so its frames carry what the gateway would write)."""
    return nvgre_frames(size, REMOTE_VM, (CORP_ADDR, to_mac))


def inbound_config(size: int, to_mac: str) -> Path:
    which = "gateway" if to_mac == GW_RECORD[1] else "corp"
    comment = f"NVGRE VSID {VSID} {REMOTE_VM[0]} -> {CORP_ADDR} to {to_mac}, inner {size} B"
    return trafgen_file(f"gw_in_{which}_{size}", comment, inbound_frames(size, to_mac))


def outbound_frames(size: int) -> list[bytes]:
    """Frames from the corp server to the remote VM, as its NIC (the TAP's kernel end)
    sends them to the gateway: Ethernet to the gateway's MAC on the TAP, IPv4/UDP."""
    return [
        inner_frame(size, 40000 + flow, (CORP_ADDR, CORP_MAC), (REMOTE_VM[0], GW_TAP_MAC))
        for flow in range(1, FLOWS + 1)
    ]


def outbound_config(size: int) -> Path:
    comment = f"corp {CORP_ADDR} -> {REMOTE_VM[0]} via the gateway, {size} B frames"
    return trafgen_file(f"gw_out_{size}", comment, outbound_frames(size))


def sink_provider_side() -> None:
    """The host namespace reaches the sender's PA through a static neighbour whose MAC
    the sender veth does not have: what the gateway sends there is counted on the
    sender veth's rx and dropped on arrival (after a link change, again)."""
    ipn(
        NS_HOST, "neigh", "replace", SND_PA, "lladdr", SINK_MAC, "dev", HOST_DEV, "nud", "permanent"
    )


def attach_corp(mac: str | None) -> None:
    """Move the TAP's kernel end (just created in the host namespace by a bare loop or
    the daemon) into the corp namespace, give it ``mac`` (None: keep the daemon's),
    address it, route the VSID via the gateway, and drop IPv4 at its ingress."""
    ipn(NS_HOST, "link", "set", GW_TAP, "netns", NS_CORP)
    if mac is not None:
        ipn(NS_CORP, "link", "set", GW_TAP, "address", mac)
    ipn(NS_CORP, "link", "set", GW_TAP, "mtu", str(CORP_MTU), "up")
    ipn(NS_CORP, "addr", "add", f"{CORP_ADDR}/{CORP_PREFIX}", "dev", GW_TAP)
    ipn(NS_CORP, "route", "add", VSID_NET, "via", GW_TAP_ADDR, "dev", GW_TAP)
    drop_ipv4_at_ingress(NS_CORP, GW_TAP)


def drop_ipv4_at_ingress(ns: str, dev: str, udp_only: bool = False) -> None:
    """nftables' netdev ingress hook drops every IPv4 frame ``dev`` receives (or
    every UDP one: a TCP server behind it stays reachable), right after the driver
    counted it (ARP passes): the receiving end costs the same, and next to nothing,
    whoever wrote the frame into the TAP."""
    run(nsx(ns, "nft", "delete", "table", "netdev", "nvb"), check=False)
    hook = f'{{ type filter hook ingress device "{dev}" priority 0; policy accept; }}'
    run(nsx(ns, "nft", "add", "table", "netdev", "nvb"))
    run(nsx(ns, "nft", "add", "chain", "netdev", "nvb", "in", hook))
    udp = ("meta", "l4proto", "udp") if udp_only else ()
    run(
        nsx(ns, "nft", "add", "rule", "netdev", "nvb", "in", "meta", "protocol", "ip", *udp, "drop")
    )
