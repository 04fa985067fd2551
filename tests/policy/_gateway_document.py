"""A valid deployment with a gateway node: ``_documents.base_document()`` plus the gateway
of design.md's gateway lab (PA 198.18.0.10; per tenant a ``gateway`` record on CA
10.10.10.254 and the customer route 0.0.0.0/0 to it; private-cloud TAPs ``gw-blue``
and ``gw-red``, both 172.16.0.1/24: tenants overlap on a gateway too)."""

from __future__ import annotations

from typing import Any

from ._documents import BLUE, RED, base_document, record, route

GW_PA = "198.18.0.10"
BLUE_GW_MAC, RED_GW_MAC = "02-00-00-00-50-10", "02-00-00-00-50-11"


def gateway_node() -> dict[str, Any]:
    return {
        "role": "gateway",
        "provider_addresses": [{"interface": "pa0", "pa": GW_PA, "prefix_length": 24}],
        "mss_clamp": "auto",
        "routing_domains": {
            "blue": {
                "taps": [{"name": "gw-blue", "address": "172.16.0.1/24"}],
                "routes": [
                    {"destination": "172.16.0.0/24", "next_hop": "tap:gw-blue"},
                    {"destination": "172.16.50.0/24", "next_hop": "172.16.0.2"},
                ],
            },
            RED: {
                "taps": [{"name": "gw-red", "address": "172.16.0.1/24"}],
                "routes": [{"destination": "172.16.0.0/16", "next_hop": "tap:gw-red"}],
            },
        },
    }


def gateway_document() -> dict[str, Any]:
    """A fresh, valid document with node ``gw`` to mutate."""
    document = base_document()
    document["lookup_records"] += [
        record(5010, "10.10.10.254", BLUE_GW_MAC, GW_PA, type="gateway"),
        record(5011, "10.10.10.254", RED_GW_MAC, GW_PA, type="gateway"),
    ]
    document["customer_routes"] += [
        route(BLUE, 5010, "0.0.0.0/0", "10.10.10.254"),
        route(RED, 5011, "0.0.0.0/0", "10.10.10.254"),
    ]
    document["nodes"]["gw"] = gateway_node()
    return document
