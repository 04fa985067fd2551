"""The gateway lab of design.md on the one fabric: the two-hosts lab (Blue and Red on
an overlapping 10.10.10.0/24, each subnet's ``gateway:`` 10.10.10.1 answered by the
hosts) plus node ``gw`` at PA 198.18.0.10 with, per tenant, a ``gateway`` record on
CA 10.10.10.254 (Blue MAC 02-00-00-00-50-10, Red 02-00-00-00-50-11), the customer
route 0.0.0.0/0 via it, and a private-cloud TAP (``gw-blue``, ``gw-red``), both
172.16.0.1/24: the tenants overlap behind the gateway too. The tests play the corp
side of each TAP (``Corp``): a stack at 172.16.0.2 that answers the gateway's ARP
and whatever is sent to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gateway.dataplane import Fabric, tap_mac
from gateway.policy import Snapshot

from ._policies import NOW, snapshot_from

BLUE = "{11111111-2222-3333-4444-000000005010}"
RED = "{11111111-2222-3333-4444-000000005011}"
GW_PA = bytes([198, 18, 0, 10])
GW_CA = "10.10.10.254"
GW_MAC = {"blue": "02:00:00:00:50:10", "red": "02:00:00:00:50:11"}
VSID = {"blue": 5010, "red": 5011}
TAP = {"blue": "gw-blue", "red": "gw-red"}
TAP_ADDRESS = "172.16.0.1"
CORP_IP = "172.16.0.2"
CORP_MAC = {"blue": "02:c0:00:00:00:02", "red": "02:c0:00:00:01:02"}


def gateway_document(document: dict) -> None:
    """two-hosts -> the gateway lab (module docstring)."""
    for domain in document["routing_domains"]:
        domain["virtual_subnets"][0]["gateway"] = "10.10.10.1"
    for tenant in ("blue", "red"):
        document["lookup_records"].append(
            {
                "vsid": VSID[tenant],
                "ca": GW_CA,
                "mac": GW_MAC[tenant].replace(":", "-"),
                "pa": "198.18.0.10",
                "rule": "encap",
                "type": "gateway",
            }
        )
        document["customer_routes"].append(
            {
                "rdid": BLUE if tenant == "blue" else RED,
                "vsid": VSID[tenant],
                "destination": "0.0.0.0/0",
                "next_hop": GW_CA,
                "metric": 255,
            }
        )
    document["nodes"]["gw"] = {
        "role": "gateway",
        "provider_addresses": [{"interface": "pa0", "pa": "198.18.0.10", "prefix_length": 24}],
        "mss_clamp": "auto",
        "routing_domains": {
            tenant: {
                "taps": [{"name": TAP[tenant], "address": f"{TAP_ADDRESS}/24"}],
                "routes": [{"destination": "172.16.0.0/24", "next_hop": f"tap:{TAP[tenant]}"}],
            }
            for tenant in ("blue", "red")
        },
    }


def gateway_snapshot(edit: Callable[[dict], object] | None = None) -> Snapshot:
    def both(document: dict) -> None:
        gateway_document(document)
        if edit is not None:
            edit(document)

    return snapshot_from("two-hosts", both)


def gateway_lab(edit: Callable[[dict], object] | None = None) -> Fabric:
    return Fabric(gateway_snapshot(edit))


def gw_tap_mac(tenant: str) -> str:
    return tap_mac(TAP[tenant]).hex(":")


def answered_arp(network: Fabric, tap: str, ip: str, mac: str, frame: Ether, now: float) -> bool:
    """If ``frame`` asks who has ``ip``, the stack behind ``tap`` answers (``mac``)."""
    if not (frame.haslayer(ARP) and frame[ARP].op == 1 and frame[ARP].pdst == ip):
        return False
    reply = Ether(src=mac, dst=frame.src) / ARP(
        op=2, hwsrc=mac, psrc=ip, hwdst=frame.src, pdst=frame[ARP].psrc
    )
    network.send(tap, raw(reply), now)
    return True


@dataclass
class Corp:
    """The corp side of one tenant's TAP, as a stack would answer: it answers the
    gateway's ARP for its address, and echo requests to it."""

    network: Fabric
    tenant: str
    ip: str = CORP_IP

    @property
    def mac(self) -> str:
        return CORP_MAC[self.tenant]

    @property
    def tap(self) -> str:
        return TAP[self.tenant]

    def frame(self, packet, dst: str | None = None) -> bytes:  # type: ignore[no-untyped-def]
        """``packet`` (an IP layer) as the corp stack sends it to the gateway's MAC."""
        return raw(Ether(src=self.mac, dst=dst or gw_tap_mac(self.tenant)) / packet)

    def send(self, packet, now: float = NOW) -> list:  # type: ignore[no-untyped-def]
        return self.network.send(self.tap, self.frame(packet), now)

    def answer(self, now: float = NOW) -> list[Ether]:
        """Take what reached the TAP: ARP requests for this address are answered (the
        frames that waited then arrive too), echo requests are replied to; returns the
        IP frames the corp side received, in order."""
        received: list[Ether] = []
        pending = self._take()
        while pending:
            frame = Ether(pending.pop(0))
            if answered_arp(self.network, self.tap, self.ip, self.mac, frame, now):
                pending += self._take()
            elif frame.haslayer(IP):
                received.append(frame)
                if frame.haslayer(ICMP) and frame[ICMP].type == 8 and frame[IP].dst == self.ip:
                    echo = frame[IP]
                    reply = (
                        IP(src=self.ip, dst=echo.src)
                        / ICMP(type=0, id=echo[ICMP].id, seq=echo[ICMP].seq)
                        / bytes(echo[ICMP].payload)
                    )
                    self.network.send(self.tap, self.frame(reply), now)
        return received

    def _take(self) -> list[bytes]:
        """The frames delivered to this TAP so far, taken; other TAPs' are left."""
        deliveries = self.network.deliveries
        mine = [d.frame for d in deliveries if d.tap == self.tap]
        deliveries[:] = [d for d in deliveries if d.tap != self.tap]
        return mine


# The internet side of the gateway's NAT (design.md, "The gateway labs"): the external
# TAP gw-ext, whose kernel end is the internet router 203.0.113.1; the NAT's
# addresses 203.0.113.10 and .11 are the daemon's own.
EXT_TAP = "gw-ext"
EXT_ADDRESSES = ("203.0.113.10", "203.0.113.11")
ROUTER_IP = "203.0.113.1"
ROUTER_MAC = "02:1e:00:00:00:01"
SERVER_IP = "198.51.100.2"  # an internet server, beyond the router


def nat_document(document: dict, **tenant_nat: dict) -> None:
    """The gateway lab -> with internet egress: ``nodes.gw.nat`` and, for each tenant,
    a route 0.0.0.0/0 to nat (and its ``nat:`` share when given in ``tenant_nat``)."""
    gw = document["nodes"]["gw"]
    gw["nat"] = {
        "tap": EXT_TAP,
        "addresses": [f"{address}/24" for address in EXT_ADDRESSES],
        "next_hop": ROUTER_IP,
    }
    for tenant, domain in gw["routing_domains"].items():
        domain["routes"].append({"destination": "0.0.0.0/0", "next_hop": "nat"})
        if tenant in tenant_nat:
            domain["nat"] = tenant_nat[tenant]


def nat_lab(**tenant_nat: dict) -> Fabric:
    return gateway_lab(lambda document: nat_document(document, **tenant_nat))


@dataclass
class Internet:
    """The internet router behind the external TAP, as its stack would answer: it
    answers the gateway's ARP for 203.0.113.1 and hands the IP frames it received to
    the test, which answers them (``reply``) as the server would."""

    network: Fabric
    ip: str = ROUTER_IP
    mac: str = ROUTER_MAC

    def frame(self, packet, dst: str | None = None) -> bytes:  # type: ignore[no-untyped-def]
        return raw(Ether(src=self.mac, dst=dst or tap_mac(EXT_TAP).hex(":")) / packet)

    def send(self, packet, now: float = NOW) -> list:  # type: ignore[no-untyped-def]
        return self.network.send(EXT_TAP, self.frame(packet), now)

    def receive(self, now: float = NOW) -> list[Ether]:
        """What reached the external TAP: ARP requests for the router are answered
        (the frames that waited then arrive too); the IP frames, in order."""
        received: list[Ether] = []
        pending = self._take()
        while pending:
            frame = Ether(pending.pop(0))
            if answered_arp(self.network, EXT_TAP, self.ip, self.mac, frame, now):
                pending += self._take()
            elif frame.haslayer(IP):
                received.append(frame)
        return received

    def _take(self) -> list[bytes]:
        deliveries = self.network.deliveries
        mine = [d.frame for d in deliveries if d.tap == EXT_TAP]
        deliveries[:] = [d for d in deliveries if d.tap != EXT_TAP]
        return mine
