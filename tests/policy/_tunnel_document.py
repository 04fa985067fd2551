"""The gateway document with design.md's hybrid-cloud tunnels: Blue's and Red's
on-prem sites (192.0.2.11 and .12 on the WAN) both use 172.16.50.0/24 (tenants
overlap), each over its own tunnel on the gateway's listen port 51820."""

from __future__ import annotations

import base64
from typing import Any

from ._documents import BLUE, RED
from ._gateway_document import gateway_document

LISTEN_PORT = 51820
KEY_FILE = "/etc/nvgw/wg-51820.key"
# Peers' public keys (any 32 bytes are a valid key to the config; the data-plane
# tests use real key pairs).
BLUE_PEER = base64.b64encode(bytes(range(1, 33))).decode()
RED_PEER = base64.b64encode(bytes(range(2, 34))).decode()
ONPREM = "172.16.50.0/24"


def tunnel(name: str, rdid: str, public_key: str, endpoint: str | None, **extra: Any) -> dict:
    entry = {
        "name": name,
        "rdid": rdid,
        "node": "gw",
        "listen_port": LISTEN_PORT,
        "public_key": public_key,
        "allowed_ips": [ONPREM],
        **extra,
    }
    if endpoint is not None:
        entry["endpoint"] = endpoint
    return entry


def tunnel_document() -> dict[str, Any]:
    """A fresh, valid document with Blue's and Red's tunnels on node ``gw``."""
    document = gateway_document()
    # The lab document routes Blue's 172.16.50.0/24 to a corp neighbour: the tunnel's now.
    blue = document["nodes"]["gw"]["routing_domains"]["blue"]
    blue["routes"] = [r for r in blue["routes"] if r["destination"] != ONPREM]
    document["nodes"]["gw"]["tunnel_keys"] = {LISTEN_PORT: KEY_FILE}
    document["tunnels"] = [
        tunnel(
            "onprem-blue",
            BLUE,
            BLUE_PEER,
            "192.0.2.11:51820",
            preshared_key_file="/etc/nvgw/blue.psk",
            persistent_keepalive=25,
        ),
        tunnel("onprem-red", RED, RED_PEER, None),  # roaming: Red's site calls first
    ]
    return document
