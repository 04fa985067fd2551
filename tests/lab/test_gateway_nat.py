"""The gateway lab's internet, for real: Blue and Red (the same addresses) reach it
through the gateway's NAT, each through its own external ports, on both backends.

One bring-up per backend (the gateway lab's: the internet behind the external TAP
gw-ext at 203.0.113.1 with a page and a UDP echo, the far network 198.51.100.2 behind
an MTU-1400 link), and per bring-up issue 12's "Done when" lines for the lab: the VMs
with one CA fetch the page at once, exchange UDP from the same source port and ping,
each through its own external address and port; ICMP errors from the internet (port
unreachable, time exceeded, fragmentation needed) come back through the NAT, so
tracepath shows the hops and finds MTU 1400; a tenant at its session limit gets
``napt_tenant_limit`` while the other still connects; idle sessions end after the
lab's short timeouts; and the translation log names exactly the sessions the servers
saw (last, over everything before it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import pytest

from gateway.lab.topology import Lab
from tests.conftest import require_tool

from .conftest import drops_rose, ping

pytestmark = pytest.mark.netns

T = TypeVar("T")
CLIENT = Path(__file__).with_name("_internet_client.py")
SERVER, FAR = "203.0.113.1", "198.51.100.2"
EXTERNAL = {"203.0.113.10", "203.0.113.11"}
CA = "10.10.10.11"  # blue1's and red1's, on host1
RDID = {
    "blue": "{11111111-2222-3333-4444-000000005010}",
    "red": "{11111111-2222-3333-4444-000000005011}",
}
UDP_IDLE_S = 5.0  # configs/gateway.yaml's udp_stream_s
LOG_WAIT_S = 30.0  # only bounds a failure: the daemon writes the log once a second


@pytest.fixture(scope="module")
def lab(gateway_lab: Lab) -> Lab:
    require_tool("tracepath")
    return gateway_lab


def client(lab: Lab, vm: str, *args: str | int) -> subprocess.Popen[str]:
    """``_internet_client.py`` in ``vm``'s namespace, started (see its docstring)."""
    command = ["ip", "netns", "exec", f"{lab.prefix}-{vm}", sys.executable, str(CLIENT)]
    return subprocess.Popen(
        [*command, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def output(process: subprocess.Popen[str]) -> list[str]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out.splitlines()


def until(find: Callable[[], T], what: str) -> T:
    """``find()`` once it is truthy (the daemon writes its log once a second)."""
    deadline = time.monotonic() + LOG_WAIT_S
    while not (found := find()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {LOG_WAIT_S:.0f} s: {what}")
        time.sleep(0.1)
    return found


def translation_log(lab: Lab, event: str = "napt session opened") -> Iterator[dict]:
    """The gateway daemon's translation log records of ``event``, in order."""
    for line in (lab.state_dir / f"lab-{lab.prefix}-gw.log").read_text().splitlines():
        if line.startswith("{") and f'"event": "{event}"' in line:
            yield json.loads(line)


def sessions(lab: Lab, event: str = "napt session opened", **match: str | int) -> list[dict]:
    return [r for r in translation_log(lab, event) if match.items() <= r.items()]


def external(record: dict) -> str:
    return f"{record['external']}:{record['external_port']}"


def test_blue_and_red_fetch_the_page_at_once_each_through_its_own_external_port(
    lab: Lab,
) -> None:
    """blue1 and red1, both 10.10.10.11, GET the page from the same source port at
    the same time: each page names the NAT's address and port that the server saw,
    a different one for each, and the one the translation log gives its tenant."""
    fetching = {vm: client(lab, f"{vm}1", "http", SERVER, 40080) for vm in RDID}
    pages = {vm: output(process) for vm, process in fetching.items()}
    seen = {vm: page.removeprefix("you are ") for vm, [page] in pages.items()}
    assert seen["blue"] != seen["red"], pages
    for vm, rdid in RDID.items():
        [record] = until(
            lambda rdid=rdid: sessions(lab, rdid=rdid, protocol="tcp", ca=CA, ca_port=40080),
            f"{vm}'s HTTP session is logged",
        )
        assert (record["remote"], record["remote_port"]) == (SERVER, 80)
        assert record["external"] in EXTERNAL
        assert external(record) == seen[vm], (vm, pages)


def test_udp_from_the_same_source_port_and_ping_each_through_its_own_external_port(
    lab: Lab,
) -> None:
    echoing = {vm: client(lab, f"{vm}1", "udp", SERVER, 7, vm, 40007) for vm in RDID}
    assert {vm: output(process) for vm, process in echoing.items()} == {
        "blue": ["blue"],
        "red": ["red"],
    }, "each VM gets its own datagram back"
    [blue], [red] = (
        until(
            lambda rdid=rdid: sessions(lab, rdid=rdid, protocol="udp", ca=CA, ca_port=40007),
            "the UDP sessions are logged",
        )
        for rdid in RDID.values()
    )
    assert external(blue) != external(red)
    assert {blue["external"], red["external"]} <= EXTERNAL
    assert ping(lab, "blue1", SERVER, count=2) and ping(lab, "red1", SERVER, count=2)
    pings = {
        vm: {
            external(r)
            for r in until(
                lambda rdid=rdid: sessions(lab, rdid=rdid, protocol="icmp", remote=SERVER),
                f"{vm}'s ping session is logged",
            )
        }
        for vm, rdid in RDID.items()
    }
    assert not pings["blue"] & pings["red"], pings


def test_port_unreachable_from_the_internet_reaches_each_vm(lab: Lab) -> None:
    """Nothing listens on UDP port 9 of the internet: its kernel's port unreachable,
    sent to the NAT's address, is translated back to the VM that asked."""
    refused = {vm: client(lab, f"{vm}1", "udp", SERVER, 9, "anyone?", 40009) for vm in RDID}
    assert {vm: output(process) for vm, process in refused.items()} == {
        "blue": ["refused"],
        "red": ["refused"],
    }


def test_tracepath_through_the_nat_shows_the_hops_and_finds_mtu_1400(lab: Lab) -> None:
    """blue2 (on host2) to the far server: the host, the gateway, the internet router
    (time exceeded, translated back), then the far server; the router's
    fragmentation-needed for the MTU-1400 link, translated back, sets the path MTU."""
    assert ping(lab, "blue2", FAR)
    out = subprocess.run(
        ["ip", "netns", "exec", f"{lab.prefix}-blue2", "tracepath", "-n", "-m", "8", FAR],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    ).stdout
    hops = []
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0].rstrip(":").isdigit() and fields[1] not in hops:
            hops.append(fields[1])
    assert hops == ["10.10.10.1", "10.10.10.254", SERVER, FAR], out
    assert "pmtu 1400" in out and f"{FAR}" in out and "reached" in out, out
    assert "Resume: pmtu 1400" in out, out
    # The far server's echo, a datagram as big as the narrow link takes.
    payload = "x" * (1400 - 28)
    assert output(client(lab, "red2", "udp", FAR, 7, payload, 40014)) == [payload]


@pytest.fixture
def red_limit(lab: Lab) -> Iterator[int]:
    """Red's NAT share lowered to 4 sessions through the gateway's API (a whole
    policy PUT, the daemons sharing the lab's store follow), then put back."""
    limit = 4
    with lab.api("gw") as api:
        policy = api.request("GET", "/v1/policy")["policy"]
        red = policy["nodes"]["gw"]["routing_domains"]["red"]["nat"]
        shipped, red["max_sessions"] = red["max_sessions"], limit
        api.request("PUT", "/v1/policy", json=policy)
    try:
        yield limit
    finally:
        with lab.api("gw") as api:
            policy = api.request("GET", "/v1/policy")["policy"]
            policy["nodes"]["gw"]["routing_domains"]["red"]["nat"]["max_sessions"] = shipped
            api.request("PUT", "/v1/policy", json=policy)


def test_a_tenant_at_its_limit_gets_its_own_drop_while_the_other_connects(
    lab: Lab, red_limit: int
) -> None:
    before = lab.metrics("gw")
    sports = range(41000, 41000 + 2 * red_limit)
    red = output(client(lab, "red1", "udp", SERVER, 7, "red", *sports))
    answered = red.count("red")  # Red's sessions of the tests before may still count
    assert answered <= red_limit and set(red) <= {"red", "-"}, red
    dropped = len(sports) - answered
    assert drops_rose(lab, "gw", before, {"napt_tenant_limit": dropped}) == {
        "napt_tenant_limit": dropped
    }
    # Red is at its limit, Blue is not: the same flows from blue1 all open.
    blue = output(client(lab, "blue1", "udp", SERVER, 7, "blue", *sports))
    assert blue == ["blue"] * len(sports)


def test_an_idle_session_ends_after_the_short_timeout(lab: Lab) -> None:
    assert output(client(lab, "blue2", "udp", SERVER, 7, "idle", 40500)) == ["idle"]
    [closed] = until(
        lambda: sessions(
            lab, "napt session closed", rdid=RDID["blue"], ca="10.10.10.12", ca_port=40500
        ),
        "the idle UDP session ends",
    )
    idle = datetime.fromisoformat(closed["end"]) - datetime.fromisoformat(closed["start"])
    assert idle.total_seconds() >= UDP_IDLE_S, closed
    assert (closed["out_packets"], closed["in_packets"]) == (1, 1)


def test_the_translation_log_names_exactly_the_sessions_the_servers_saw(lab: Lab) -> None:
    """Over everything the tests before sent: each connection or datagram a server of
    the internet or the far network logged (protocol, address and port as it saw
    them) is a session the translation log opened for it, and no more."""
    servers = {("tcp", SERVER, 80), ("udp", SERVER, 7), ("tcp", FAR, 80), ("udp", FAR, 7)}
    seen: set[tuple[str, str]] = set()
    for namespace in (f"{lab.prefix}-internet", f"{lab.prefix}-far"):
        for line in lab.seen_log(namespace).read_text().splitlines():
            protocol, endpoint = line.split()
            seen.add((protocol, endpoint))
    assert {protocol for protocol, _ in seen} == {"tcp", "udp"}, seen

    def logged() -> set[tuple[str, str]]:
        return {
            (r["protocol"], external(r))
            for r in translation_log(lab)
            if (r["protocol"], r["remote"], r["remote_port"]) in servers
        }

    until(lambda: seen <= logged(), "every session a server saw is logged")
    assert logged() == seen
