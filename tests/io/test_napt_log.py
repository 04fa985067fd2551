"""The NAT's timekeeping task and its translation log (``gateway/io/napt_log.py``), on
trio's mock clock (autojump: sleeping costs no real time), over a gateway node of the
fabric: sessions are opened by packets, ended by the task once idle past their
timeout, and each opening and end is written as one structured event, only for the
routing domains that log."""

from __future__ import annotations

import time
from datetime import datetime

import anyio
import structlog
from scapy.layers.inet import IP, UDP
from trio.testing import MockClock

from gateway.dataplane import GatewayNode
from gateway.io.napt_log import napt_housekeeping, write_records
from tests.dataplane._gateway_lab import BLUE, EXT_ADDRESSES, SERVER_IP, nat_lab
from tests.dataplane._policies import NOW
from tests.dataplane.test_gateway_fabric import VM, VM_IP, from_vm

UDP_UNREPLIED_S = 30.0  # the core's default: a session nobody answered ends after it


def _opened(**tenant_nat: dict) -> GatewayNode:
    """A gateway whose Blue and Red VMs each opened one UDP session at ``NOW``."""
    network = nat_lab(**tenant_nat)
    for tenant in ("blue", "red"):
        packet = IP(src=VM_IP, dst=SERVER_IP) / UDP(sport=40000, dport=53)
        network.send(VM[tenant], from_vm(tenant, packet), NOW)
    node = network.node("gw")
    assert isinstance(node, GatewayNode)
    return node


def test_a_record_is_one_event_with_wall_clock_times() -> None:
    node = _opened(blue={"log": True})
    assert node.napt is not None
    with structlog.testing.capture_logs() as logs:
        write_records(node.napt.take_log(), NOW + 10)
    [event] = logs
    assert event["event"] == "napt session opened" and event["rdid"] == BLUE
    assert (event["protocol"], event["ca"], event["ca_port"]) == ("udp", VM_IP, 40000)
    assert (event["remote"], event["remote_port"]) == (SERVER_IP, 53)
    assert event["external"] in EXT_ADDRESSES and event["external_port"] > 0
    ago = time.time() - datetime.fromisoformat(event["start"]).timestamp()
    assert 9 < ago < 60, "opened 10 s of the table's clock before it was written"
    assert event["end"] is None and event["out_packets"] == 0, "written as it opened"


def test_the_task_ends_idle_sessions_and_logs_them_for_the_tenants_that_log() -> None:
    node = _opened(blue={"log": True})

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(napt_housekeeping, node)
            await anyio.sleep(NOW + UDP_UNREPLIED_S + 2)  # mock time, past the deadline
            tg.cancel_scope.cancel()

    with structlog.testing.capture_logs() as logs:
        anyio.run(main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})
    assert node.napt is not None and node.napt.count == 0, "both sessions ended"
    assert [(e["event"], e["rdid"]) for e in logs] == [
        ("napt session opened", BLUE),
        ("napt session closed", BLUE),
    ], "Red does not log"
    assert logs[1]["end"] is not None


def test_at_shutdown_the_sessions_still_open_are_written() -> None:
    node = _opened(blue={"log": True}, red={"log": True})

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(napt_housekeeping, node)
            await anyio.sleep(2)  # mock time: one tick, long before any timeout
            tg.cancel_scope.cancel()

    with structlog.testing.capture_logs() as logs:
        anyio.run(main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})
    events = [e["event"] for e in logs]
    assert events == ["napt session opened"] * 2 + ["napt session open at shutdown"] * 2
