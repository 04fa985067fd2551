"""The fuzz target ``gateway_tunnel``'s lab and seeds (``gateway_tunnel.py`` feeds and
judges them): the hybrid lab's gateway on the fabric (``tests/dataplane/_tunnel_lab.py``)
with Blue's site in session, the gateway's initiation to Red's site answered but not
delivered, and the seeds captured making it, each with the endpoint it comes from and,
for the handshakes, its genuine bytes. Randomness (the devices' keys, indexes and
jitter) is drawn from the chunk's generator, so any input replays.
"""

from __future__ import annotations

import random
from typing import Final

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import raw

from gateway.dataplane import Fabric, GatewayNode, Step, TunnelKeys, new_device, tap_mac
from gateway.wireguard import Device, Limits, public_key_of
from gateway.wireguard.cookie import LABEL_MAC1
from gateway.wireguard.crypto import digest
from gateway.wireguard.messages import COOKIE_REPLY, INITIATION, RESPONSE, TRANSPORT
from tests.dataplane._gateway_lab import CORP_IP, CORP_MAC, GW_CA, TAP, gateway_snapshot
from tests.dataplane._tunnel_lab import GW_KEY, PORT, SERVER, SITE, SITE_KEY, WAN, tunnel_document
from tests.dataplane.test_gateway_fabric import VM, VM_IP
from tests.dataplane.test_gateway_tunnels import ping

from .frames import Seed, datagram_fields, frame_fields
from .wireguard_core import _ENTRIES, _authenticated, _drain, _fields

OTHER_END: Final = ("203.0.113.9", 4444)  # a spoofed or roamed source
LIMITS: Final = Limits(max_staged=8)  # small, so the fuzzer meets the bound
MAX_INDEXES: Final = 6  # fewer than two peers' four each: the table can fill
NVGRE, TAP_FRAME = "tunnel_nvgre", "tunnel_tap"


def entry_of(data: bytes) -> str:
    return "tunnel_" + _ENTRIES.get(data[0] if data else 0, "wg_other").removeprefix("wg_")


class TunnelLab:
    """The gateway node, Red's site and the seeds of one chunk (module docstring)."""

    def __init__(self, rng: random.Random) -> None:
        seeded = random.Random(rng.random())
        options = {"random_bytes": seeded.randbytes, "jitter": seeded.random}
        self.network = network = Fabric(
            gateway_snapshot(tunnel_document),
            tunnel_keys={"gw": TunnelKeys(private={PORT: GW_KEY})},
            make_device=new_device(0.0, LIMITS, max_indexes=MAX_INDEXES, **options),
        )
        node = network.node("gw")
        assert isinstance(node, GatewayNode)
        self.node, self.port = node, node.tunnel_ports[PORT]
        self.device = self.port.device
        sites = {t: Device(SITE_KEY[t], limits=LIMITS, **options) for t in SITE}  # type: ignore[arg-type]
        peers = {t: d.add_peer(public_key_of(GW_KEY), endpoint=WAN) for t, d in sites.items()}
        stranger = Device(seeded.randbytes(32), **options)  # type: ignore[arg-type]
        stranger_peer = stranger.add_peer(public_key_of(GW_KEY), endpoint=WAN)
        self.rdid = {t: a.tunnel.domain.rdid for t, a in node.tables.to_tunnel.items()}
        self.vsids = {
            domain.rdid: {subnet.vsid for subnet in domain.virtual_subnets}
            for domain in network.snapshot.policy.routing_domains
        }
        # Blue's VM pings the on-prem server: the gateway's initiation, the site's
        # response, the ping the gateway held. The NVGRE host1 sent is a seed.
        frames = []
        for tenant in SITE:
            steps = network.send(VM[tenant], ping(tenant), 0.0)
            frames.append(Seed(NVGRE, -1, steps[0].nvgre[0][2], (), f"nvgre ({tenant})"))
        (initiation,) = [d for _, _, end, d in network.udp_log if end == SITE["blue"]]
        sites["blue"].receive(initiation, WAN, 0.0)
        for response in _drain(sites["blue"]):
            network.from_tunnel("gw", PORT, response, SITE["blue"], 0.0)
        for _, _, end, datagram in network.udp_log:
            if end == SITE["blue"] and datagram[0] == TRANSPORT:
                sites["blue"].receive(datagram, WAN, 0.0)  # the ping: the keypair confirmed
        assert node.tunnel_ports[PORT].tunnels, "the setup made no tunnel"
        (to_red,) = [d for _, _, end, d in network.udp_log if end == SITE["red"]]
        self.red = sites["red"]
        cookie_reply, response = self._as_red(to_red, 0.0)
        # Blue's site's data; fresh initiations (newer timestamps) of both sites.
        self.plaintexts: dict[bytes, bytes] = {}
        for plaintext in _plaintexts():
            sites["blue"].send(peers["blue"], plaintext, 1.0)
            (datagram,) = _drain(sites["blue"])
            self.plaintexts[datagram] = plaintext
        fresh = {}
        for tenant, when in (("blue", 6.0), ("blue", 12.0), ("red", 6.0)):
            sites[tenant].initiate(peers[tenant], when)
            fresh[_drain(sites[tenant])[0]] = SITE[tenant]
        stranger.initiate(stranger_peer, 0.0)
        (unknown,) = _drain(stranger)
        corp = {
            tenant: raw(
                Ether(src=CORP_MAC[tenant], dst=tap_mac(TAP[tenant]).hex(":"))
                / IP(src=CORP_IP, dst=SERVER)
                / UDP(sport=5000, dport=389)
                / b"corp"
            )
            for tenant in SITE
        }
        self.datagrams = [
            *(Seed(entry_of(d), -1, d, _fields(d[0]), "data") for d in self.plaintexts),
            *(Seed(entry_of(d), -1, d, _fields(INITIATION), "initiation") for d in fresh),
            Seed(entry_of(unknown), -1, unknown, _fields(INITIATION), "initiation (unknown key)"),
            *_red_seeds(response, cookie_reply),
        ]
        self.frames = [
            *(Seed(NVGRE, -1, s.data, datagram_fields(s.data), s.what) for s in frames),
            *(Seed(TAP_FRAME, -1, f, frame_fields(f), f"tap ({t})") for t, f in corp.items()),
        ]
        self.sources = {
            **dict.fromkeys(self.plaintexts, SITE["blue"]),
            **fresh,
            unknown: OTHER_END,
            response: SITE["red"],
            cookie_reply: SITE["red"],
        }
        self.genuine = {
            INITIATION: {_authenticated(d) for d in fresh},
            RESPONSE: {_authenticated(response)},
            COOKIE_REPLY: {_authenticated(cookie_reply)},
        }
        self.delivered: set[bytes] = set()
        self.mac1_key = digest(LABEL_MAC1, public_key_of(GW_KEY))
        indexes = [i.to_bytes(4, "little") for i in self.device.indexes]
        self.tokens = {1: tuple(bytes([k]) for k in range(6)), 4: (*indexes, bytes(4))}
        self.now = 1.0
        self._forget()

    def _as_red(self, initiation: bytes, now: float) -> tuple[bytes, bytes]:
        """Red's site's cookie reply (as if under load) and response to ``initiation``
        (an empty response when it refuses it: one initiation per 1/50 s)."""
        self.red.receive(initiation, WAN, now, under_load=True)
        self.red.receive(initiation, WAN, now)
        sent = _drain(self.red)
        return (sent[0], sent[1]) if len(sent) == 2 else (b"", b"")

    def _answer_red(self, step: Step) -> None:
        """The gateway sent Red's site a new initiation (a tick's retry, a frame for
        Red): the site's answers replace the seeds, so that handshake can complete."""
        for _, endpoint, datagram in step.udp:
            if endpoint == SITE["red"] and datagram[0] == INITIATION:
                cookie_reply, response = self._as_red(datagram, self.now)
                if response:
                    self.genuine[RESPONSE].add(_authenticated(response))
                    self.genuine[COOKIE_REPLY].add(_authenticated(cookie_reply))
                    self.sources[response] = self.sources[cookie_reply] = SITE["red"]
                    self.datagrams[-2:] = _red_seeds(response, cookie_reply)

    def _forget(self) -> None:
        """The fabric keeps what every call sent: the target's memory stays bounded."""
        network = self.network
        network.in_flight.clear()
        network.deliveries.clear()
        network.udp_log.clear()
        network.link_log.clear()


def _plaintexts() -> list[bytes]:
    """What Blue's site sends into its tunnel (module docstring)."""
    udp = UDP(sport=389, dport=5000) / b"directory"
    return [
        raw(IP(src=SERVER, dst=VM_IP) / ICMP(type=0, id=7, seq=1) / b"pppp"),  # to the VM
        raw(IP(src=SERVER, dst=VM_IP) / udp),
        raw(IP(src=SERVER, dst=CORP_IP) / udp),  # to the corp server behind Blue's TAP
        raw(IP(src=SERVER, dst=GW_CA) / ICMP(type=8, id=9, seq=1)),  # the gateway answers
        raw(IP(src=SERVER, dst=VM_IP, ttl=1) / udp),  # time-exceeded into the tunnel
        raw(IP(src=SERVER, dst="172.16.50.20") / udp),  # back to the site's own prefix
        raw(IP(src=SERVER, dst=VM_IP, flags="DF") / UDP(sport=1, dport=2) / bytes(1400)),
        raw(IP(src="192.168.7.7", dst=VM_IP) / udp),  # outside the allowed IPs
        raw(IPv6(src="fd00::1", dst="fd00::2") / udp),  # not forwarded
        b"\x15" + bytes(39),  # decrypts, but is no IP packet
        b"",  # a keepalive
    ]


def _red_seeds(response: bytes, cookie_reply: bytes) -> list[Seed]:
    """Red's site's answers to the gateway's latest initiation: the last two seeds."""
    return [
        Seed(entry_of(response), -1, response, _fields(RESPONSE), "response (red)"),
        Seed(entry_of(cookie_reply), -1, cookie_reply, _fields(COOKIE_REPLY), "cookie reply"),
    ]
