"""The hybrid-cloud gateway lab on the one fabric (design.md, "The gateway labs"):
the gateway lab plus, per tenant, a site-to-site tunnel on the gateway's listen port
51820 (its WAN address 192.0.2.1) to an on-prem site running WireGuard: Blue's at
192.0.2.11, Red's at 192.0.2.12, both with 172.16.50.0/24 (tenants overlap on-prem
too). Each site is a ``Device`` of our own core, played by the test (``Site``): what
the gateway sends to its endpoint it receives, and what it sends goes back to the
gateway's port."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from gateway.dataplane import Fabric, Step, TunnelKeys
from gateway.wireguard import Device, Peer, public_key_of

from ._gateway_lab import BLUE, RED, gateway_snapshot
from ._policies import NOW

PORT = 51820
WAN = ("192.0.2.1", PORT)  # the gateway's end
SITE = {"blue": ("192.0.2.11", PORT), "red": ("192.0.2.12", PORT)}
ONPREM = "172.16.50.0/24"
SERVER = "172.16.50.10"  # the directory server, on both sites
GW_KEY = bytes(range(32, 64))
SITE_KEY = {"blue": bytes(range(64, 96)), "red": bytes(range(96, 128))}
RDID = {"blue": BLUE, "red": RED}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def tunnel_entry(tenant: str, **extra: object) -> dict:
    return {
        "name": f"onprem-{tenant}",
        "rdid": RDID[tenant],
        "node": "gw",
        "listen_port": PORT,
        "public_key": b64(public_key_of(SITE_KEY[tenant])),
        "endpoint": "{}:{}".format(*SITE[tenant]),
        "allowed_ips": [ONPREM],
        **extra,
    }


def tunnel_document(document: dict) -> None:
    """The gateway lab -> with Blue's and Red's tunnels (module docstring)."""
    document["nodes"]["gw"]["tunnel_keys"] = {PORT: "/etc/nvgw/wg.key"}
    document["tunnels"] = [tunnel_entry("blue"), tunnel_entry("red")]


def tunnel_lab(**gateway: object) -> Fabric:
    """The lab, ``gateway`` written into the gateway node's config."""

    def document(d: dict) -> None:
        tunnel_document(d)
        d["nodes"]["gw"].update(gateway)

    keys = TunnelKeys(private={PORT: GW_KEY})
    return Fabric(gateway_snapshot(document), tunnel_keys={"gw": keys})


@dataclass
class Site:
    """A tenant's on-prem WireGuard router: a device of our core with the gateway as
    its one peer (its endpoint: the gateway's WAN address and port)."""

    network: Fabric
    tenant: str
    device: Device = field(init=False)
    peer: Peer = field(init=False)

    def __post_init__(self) -> None:
        self.device = Device(SITE_KEY[self.tenant])
        self.peer = self.device.add_peer(public_key_of(GW_KEY), endpoint=WAN)

    def take(self, step: Step, now: float = NOW) -> list[bytes]:
        """What the gateway sent this site in ``step``, received: the IP packets
        that came out of it (handshakes are answered into ``device.outbox``)."""
        packets = []
        for port, endpoint, datagram in step.udp:
            if endpoint == SITE[self.tenant]:
                assert port == PORT
                got = self.device.receive(datagram, WAN, now)
                if got is not None:
                    packets.append(bytes(got[1]))
        return packets

    def answer(self, now: float = NOW) -> list[Step]:
        """Send what the site's device has to send to the gateway's port."""
        steps = [
            self.network.from_tunnel("gw", PORT, datagram, SITE[self.tenant], now)
            for datagram, endpoint in self.device.outbox
            if endpoint == WAN
        ]
        self.device.outbox.clear()
        return steps

    def send(self, packet: bytes, now: float = NOW) -> list[Step]:
        """An IP packet from the site into the tunnel, and what the fabric carries."""
        self.device.send(self.peer, packet, now)
        return [*self.answer(now), *self.network.carry(now)]
