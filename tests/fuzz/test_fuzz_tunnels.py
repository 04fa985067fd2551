"""The fuzzer's tunnel rules (``gateway_tunnel.py``), proven: its slice reaches every
kind of message and verdict through the gateway's listen port and into the tunnels,
and each rule reports a bug planted in the gateway's tunnel path (by monkeypatching
one function) as the kind of finding it is. (Its slice finding nothing is
``test_fuzz.py``'s ``test_the_core_slice_finds_nothing``, with the other cores.)"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.dataplane import gateway_tunnel, gateway_wireguard
from gateway.dataplane.gateway_tunnel import GatewayTunnel
from gateway.wireguard import Device, ReplayWindow

from .test_fuzz import _core_slice, _plant_core

CORE = "gateway_tunnel"


def test_the_tunnel_slice_reaches_every_kind_of_message_and_verdict() -> None:
    """Genuine messages get through once and forged or replayed ones are refused
    deep in the handshake and the AEAD; decrypted packets are routed (to the VM, the
    corp TAP, the gateway itself, back into the tunnel) or refused for their source;
    frames from both tenants go into their tunnels; cookies go back under load."""
    labels = set(_core_slice(CORE).outcomes)
    for reached in [
        "tunnel_initiation accepted",
        "tunnel_initiation refused:bad_mac1",
        "tunnel_initiation refused:handshake_auth",
        "tunnel_initiation refused:timestamp_replay",
        "tunnel_initiation refused:unknown_peer",
        "tunnel_initiation refused:cookie_required",
        "tunnel_response accepted",
        "tunnel_response refused:cookie_required",
        "tunnel_cookie_reply accepted",
        "tunnel_cookie_reply refused:bad_cookie_reply",
        "tunnel_transport delivered",
        "tunnel_transport keepalive",
        "tunnel_transport drop:tunnel_source",
        "tunnel_transport refused:replayed",
        "tunnel_transport refused:decrypt_failed",
        "tunnel_transport refused:inner_malformed",
        "tunnel_nvgre into tunnel",
        "tunnel_tap into tunnel",
        "tunnel_tick sent",
    ]:
        assert reached in labels, reached


def _plant(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, method: object) -> set[str]:
    return _plant_core(monkeypatch, CORE, owner, name, method)


def test_a_decrypted_packet_routed_in_another_tenants_domain_is_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Blue's site's packets routed in Red's routing domain (its VSID, its TAP, its
    site): what the overlapping prefixes make easy to get wrong."""
    route = gateway_wireguard.route_ipv4

    def crossed(node: Any, tunnel: Any, frame: memoryview) -> None:
        other = next(
            action.tunnel
            for action in node.tables.to_tunnel.values()
            if action.tunnel.domain is not tunnel.domain
        )
        route(node, other, frame)

    assert "crossed" in _plant(monkeypatch, gateway_wireguard, "route_ipv4", crossed)


def test_a_source_outside_the_allowed_ips_let_in_is_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    init = GatewayTunnel.__init__

    def lets_all_in(self: GatewayTunnel, *args: Any) -> None:
        init(self, *args)
        self.allowed = ((0, frozenset({0})),)  # 0.0.0.0/0: every source

    found = _plant(monkeypatch, GatewayTunnel, "__init__", lets_all_in)
    assert "allowed_ips" in found


def test_an_answer_to_an_unauthenticated_message_is_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateway answers what its device refused (in the gateway alone: the sites'
    devices, made with the same class, must still work)."""
    count = gateway_tunnel.count_refusals

    def answers(node: Any, port: Any) -> None:
        refused = port.device.refused != port.seen
        count(node, port)
        if refused:
            node.out.to_udp(port.listen_port, ("198.51.100.99", 9), b"refused")

    assert "answered" in _plant(monkeypatch, gateway_wireguard, "count_refusals", answers)


def test_a_refusal_counted_twice_or_a_replay_accepted_is_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    count = gateway_tunnel.count_refusals

    def twice(node: Any, port: Any) -> None:
        before = list(port.seen)
        count(node, port)
        for reason, seen in enumerate(port.seen):
            node.counters.drops[gateway_tunnel._DROPS[reason]] += seen - before[reason]

    assert "counted" in _plant(monkeypatch, gateway_wireguard, "count_refusals", twice)
    monkeypatch.undo()
    found = _plant(monkeypatch, ReplayWindow, "accept", lambda self, counter, limit: True)
    assert "replayed" in found


def test_an_outbox_left_unflushed_or_a_raise_is_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flush = gateway_wireguard.flush

    def stuck(node: Any, port: Any) -> None:  # drains the outbox in the setup only
        if node.now < 0.5:
            flush(node, port)

    assert "bounds" in _plant(monkeypatch, gateway_wireguard, "flush", stuck)
    monkeypatch.undo()

    def raises(*args: object) -> None:
        raise IndexError("planted")

    assert "exception" in _plant(monkeypatch, Device, "tick", raises)
