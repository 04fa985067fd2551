"""The shipped configs as the multi-node tests use them, on the one fabric.

``gateway.dataplane.fabric`` carries what crosses the provider network between the
nodes; this module only loads and edits the policies they run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gateway.control import load_config, read_document, to_plain
from gateway.dataplane import Fabric
from gateway.policy import Snapshot, compile_policy, load_policy

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
NOW = 100.0  # the clock the tests run at; neighbour entries age against it


def snapshot_of(name: str) -> Snapshot:
    return compile_policy(load_config(CONFIGS / f"{name}.yaml"))


def snapshot_from(name: str, edit: Callable[[dict], object]) -> Snapshot:
    """A shipped config with ``edit`` applied to its plain document, loaded and compiled
    (so everything the validator refuses is refused here too)."""
    document = to_plain(read_document(CONFIGS / f"{name}.yaml"))
    edit(document)
    return compile_policy(load_policy(document))


def blue2_migrated_to_host1() -> Snapshot:
    """two-hosts after a live migration of blue2: its record's PA and its port move."""
    document = to_plain(read_document(CONFIGS / "two-hosts.yaml"))
    for record in document["lookup_records"]:
        if record.get("vm") == "blue2":
            record["pa"] = "198.18.0.1"
    nodes = document["nodes"]
    nodes["host1"]["ports"].append(nodes["host2"]["ports"].pop(0))
    return compile_policy(load_policy(document))


def fabric(config: str | Snapshot) -> Fabric:
    """Every node of a shipped config (by name) or of a snapshot, on one fabric."""
    return Fabric(snapshot_of(config) if isinstance(config, str) else config)


BLUE_GW_MAC, RED_GW_MAC = "02-00-00-00-50-10", "02-00-00-00-50-11"
BLUE_GW_PA, RED_GW_PA = bytes([198, 18, 0, 10]), bytes([198, 18, 0, 11])


def toward_gateways(document: dict) -> None:
    """two-hosts with a way out for each tenant, as HNV writes it (decisions.md,
    "Routes and where they lead"): each subnet's gateway CA 10.10.10.1 (the hosts
    answer it); Blue routes 0.0.0.0/0 via its gateway's CA 10.10.10.254 (a ``gateway``
    record at PA 198.18.0.10); Red has no customer route out, only a GatewayWildcard
    (a ``gateway`` record on CA 0.0.0.0 at PA 198.18.0.11). No node owns those PAs:
    the fabric shows what leaves for them."""
    blue = document["routing_domains"][0]["rdid"]
    for domain in document["routing_domains"]:
        domain["virtual_subnets"][0]["gateway"] = "10.10.10.1"
    document["lookup_records"] += [
        _gateway_record(5010, "10.10.10.254", BLUE_GW_MAC, "198.18.0.10"),
        _gateway_record(5011, "0.0.0.0", RED_GW_MAC, "198.18.0.11"),
    ]
    document["customer_routes"].append(
        {"rdid": blue, "vsid": 5010, "destination": "0.0.0.0/0", "next_hop": "10.10.10.254"}
    )


def _gateway_record(vsid: int, ca: str, mac: str, pa: str) -> dict:
    return {"vsid": vsid, "ca": ca, "mac": mac, "pa": pa, "rule": "encap", "type": "gateway"}
