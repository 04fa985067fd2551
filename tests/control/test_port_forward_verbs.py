"""Port forwards are a kind of the one registry: ``nvgw gateway-port-forward
add|get|remove`` and the API's ``/v1/gateway-port-forwards`` come from its one entry,
and a forward ``nvgw check`` would refuse is refused with its path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.control._gateway_config import gateway_config, nat_gateway_text
from tests.test_cli import nvgw, verbs_talk_to_host1


@pytest.fixture
def gateway_with_nat(
    each_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """host1's API over a store (SQLite, then etcd) holding a gateway with a NAT."""
    config = gateway_config(tmp_path, nat_gateway_text(forward=False))
    with verbs_talk_to_host1(config, monkeypatch):
        yield config


def test_a_port_forward_is_added_listed_and_removed(gateway_with_nat: Path) -> None:
    blue = ("--node", "gw", "--routing-domain", "blue")
    to_vm = ("--ca", "10.10.10.11", "--ca-port", "80")
    added = nvgw("gateway-port-forward", "add", *blue, "--protocol", "tcp",
                 "--address", "203.0.113.10", "--port", "80", *to_vm)  # fmt: skip
    assert added.exit_code == 0, added.output
    assert added.output.endswith("added gateway-port-forward (policy revision 1)\n")
    listed = nvgw("gateway-port-forward", "get", "--port", "80", "--json")
    assert json.loads(listed.output) == [
        {"node": "gw", "routing_domain": "blue", "protocol": "tcp", "address": "203.0.113.10",
         "port": 80, "ca": "10.10.10.11", "ca_port": 80}
    ]  # fmt: skip

    inside = nvgw("gateway-port-forward", "add", *blue, "--protocol", "udp",
                  "--address", "203.0.113.10", "--port", "8080", *to_vm)  # fmt: skip
    assert inside.exit_code == 1
    assert (
        "nodes.gw.routing_domains.blue.port_forwards[1].port = 8080: inside the NAT's "
        "dynamic ports 1024-65535" in inside.output
    )
    removed = nvgw("gateway-port-forward", "remove", "--port", "80")
    assert "removed 1 of the gateway-port-forwards (policy revision 2)" in removed.output
    assert json.loads(nvgw("gateway-port-forward", "get", "--json").output) == []
