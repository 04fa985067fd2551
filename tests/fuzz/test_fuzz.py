"""The fuzzer's CI slice, and proof that its oracle sees what it claims to.

The slice runs ``SLICE`` inputs through every node of every policy (about 20,000 in
all, a few seconds) with a fixed seed, and fails on any finding. What the fuzzer
found in the data plane so far is pinned by tests/dataplane/test_fuzz_findings.py.

The oracle's own tests plant a bug in the data plane (by monkeypatching one function)
and check that a short campaign reports it as the kind of finding it is. The sans-IO
cores (the WireGuard device, the NAPT table) get a slice and planted bugs of their
own; the NAT's rules are proven in ``test_fuzz_nat.py``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from gateway.dataplane import GatewayTables, HostPort, provider_side, vm_side
from gateway.dataplane.napt import Napt, PortAllocator, translate
from gateway.errors import Drop
from gateway.wireguard import Device, ReplayWindow
from gateway.wireguard.cookie import CookieGenerator
from gateway.wireguard.reasons import Refused

from .__main__ import main
from .cores import CoreTarget, core_names
from .engine import Bench, ChunkResult, run_chunk
from .policies import Target, policy_names, targets

SLICE = 1200  # inputs per node: 17 nodes make about 20,000
SEED = "ci"
SHIPPED = ["ip-rewrite", "routing", "single-host", "two-hosts"]


@cache
def _target(name: str) -> Target:
    policy, node = name.split("/")
    return next(t for t in targets([policy]) if t.node == node)


@cache
def _bench(name: str) -> Bench:
    return Bench(_target(name))


@cache
def _slice(name: str) -> ChunkResult:
    return run_chunk(_bench(name), SEED, 0, SLICE)


TARGETS = [t.name for t in targets()]


def test_every_policy_and_node_is_in_the_slice() -> None:
    """Every shipped config and every generated policy, each node."""
    assert {name.split("/")[0] for name in TARGETS} == set(policy_names())
    assert {*SHIPPED, "dual-stack", "mixed-rule", "maximal"} <= set(policy_names())


def _nothing_found(result: ChunkResult) -> None:
    found = {
        f["signature"]: f"{f['detail']} (replay: python -m tests.fuzz --replay {f['replay']})"
        for f in result.findings
    }
    assert not found, "\n".join(found.values())


@pytest.mark.parametrize("name", TARGETS)
def test_the_slice_finds_nothing(name: str) -> None:
    result = _slice(name)
    assert result.inputs == SLICE
    _nothing_found(result)


def test_the_slice_reaches_every_verdict_of_the_shipped_configs() -> None:
    """Mutated valid frames get deep: each entry point delivers, encapsulates, sends on
    the link and drops for most reasons, not just at the first length check."""
    total = ChunkResult()
    for name in TARGETS:
        if name.split("/")[0] in SHIPPED:
            total.merge(_slice(name))
    labels = set(total.outcomes)
    for reached in [
        "from_port out:port",
        "from_port out:provider",
        "from_port out:link",
        "from_port parked",
        "from_provider out:port",
        "from_provider_link out:port",
        "from_provider_link out:link",
    ]:
        assert reached in labels
    reasons = {label.split("drop:")[1] for label in labels if "drop:" in label}
    assert len(reasons) >= 25, sorted(reasons)


def test_the_slice_reaches_every_way_through_a_gateway() -> None:
    """Both entry points of a gateway route to a TAP, into a VSID and wait for ARP."""
    labels = set(_slice("private-cloud/gw").outcomes)
    for reached in ["out:port", "out:provider", "parked", "drop:ttl_expired", "drop:too_big"]:
        assert {f"from_provider {reached}", f"from_tap {reached}"} <= labels, reached


# ----------------------------------------------------------- the oracle, proven


PLANTED = "two-hosts/host1"


def _plant(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, method: object, inputs: int = 1500
) -> ChunkResult:
    monkeypatch.setattr(owner, name, method)
    return run_chunk(Bench(_target(PLANTED)), "planted", 0, inputs)


def _kinds(result: ChunkResult) -> set[str]:
    return {f["kind"] for f in result.findings}


def test_an_exception_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(node, port, frame) -> None:
        raise IndexError("planted")

    result = _plant(monkeypatch, vm_side, "_arp_from_port", broken)
    assert "exception" in _kinds(result)
    found = next(f for f in result.findings if f["kind"] == "exception")
    assert "IndexError: planted" in found["detail"] and found["frame"]


def test_a_frame_neither_counted_nor_sent_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _plant(monkeypatch, vm_side, "_arp_from_port", lambda node, p, f: None)
    assert "silent" in _kinds(result)


def test_a_cache_that_changes_a_verdict_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flow cache that remembers NO_PORT whatever it decided: the second feed, and
    the warm data plane against the cold one, disagree."""
    decide = provider_side._flow_verdict

    def poisoned(key, tables):
        verdict = decide(key, tables)
        if key in tables.flows:
            tables.flows[key] = Drop.NO_PORT
        return verdict

    result = _plant(monkeypatch, provider_side, "_flow_verdict", poisoned)
    assert {"twice", "cache"} <= _kinds(result)


def test_a_fast_path_unlike_the_slow_path_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast path that drops what ``parse_nvgre`` and ``_verdict`` deliver."""
    decide = provider_side._flow_verdict

    def refuses(key, tables):
        verdict = decide(key, tables)
        return Drop.NO_PORT if verdict.__class__ is HostPort else verdict

    result = _plant(monkeypatch, provider_side, "_flow_verdict", refuses)
    assert "path" in _kinds(result)


def test_a_frame_delivered_across_domains_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A receive path that forgets the VSID: a frame for blue1's MAC in Red's VSID
    reaches blue1."""
    decide = provider_side._verdict

    def leaks(tables, vsid, src_pa, dst_pa, dst_mac, *args):
        verdict = decide(tables, vsid, src_pa, dst_pa, dst_mac, *args)
        if verdict is Drop.VSID_MISMATCH:
            return next(p for p in tables.ports if p.mac == dst_mac)
        return verdict

    # Only well-formed IPv4 in the other VSID shows the leak (anything else is dropped
    # after the verdict): a few thousand inputs hold a dozen such frames.
    result = _plant(monkeypatch, provider_side, "_verdict", leaks, 6000)
    assert "isolation" in _kinds(result)


def test_a_finding_replays_from_its_identifier(monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug's finding carries what ``--replay`` needs to re-run its input."""

    def broken(node, port, frame) -> None:
        raise IndexError("planted")

    found = _plant(monkeypatch, vm_side, "_arp_from_port", broken).findings[0]
    seed, _, chunk, index = found["replay"].rsplit(":", 3)
    seen: list[bytes] = []
    run_chunk(
        _bench(PLANTED),
        seed,
        int(chunk),
        SLICE,
        stop_at=int(index),
        show=lambda *args: seen.append(args[4]),
    )
    assert seen == [bytes.fromhex(found["frame"])]


def test_the_command_runs_a_campaign_on_two_workers(tmp_path: Path) -> None:
    summary, findings = tmp_path / "last-run.json", tmp_path / "findings.jsonl"
    argv = ["--inputs", "4001", "--workers", "2", "--policy", "two-hosts", "--seed", "cmd"]
    status = main([*argv, "--summary", str(summary), "--findings", str(findings)])
    result = json.loads(summary.read_text())
    assert result["inputs"] == 4001 and result["workers"] == 2
    assert [t["node"] for t in result["targets"]] == ["host1", "host2"]
    assert status == 0 and not result["findings"]
    lines = findings.read_text().splitlines()
    assert len(lines) == sum(len(f["examples"]) for f in result["findings"].values())


def test_a_gateway_routing_across_domains_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway that routes every packet by its first routing domain's table: Red's
    packets leave by Blue's TAPs and into Blue's VSIDs."""
    resolve = GatewayTables._resolve

    def first_domain(self, domain, dst):  # type: ignore[no-untyped-def]
        return resolve(self, next(iter(self.domains.values())), dst)

    monkeypatch.setattr(GatewayTables, "_resolve", first_domain)
    result = run_chunk(Bench(_target("private-cloud/gw")), "planted", 0, 3000)
    assert "isolation" in _kinds(result)


# ------------------------------------------------------------ the sans-IO cores

CORE_SLICE = 4000  # inputs per core: a fraction of a second each


@cache
def _core_slice(name: str) -> ChunkResult:
    return CoreTarget(name).run_chunk(SEED, 0, CORE_SLICE)


@pytest.mark.parametrize("name", core_names())
def test_the_core_slice_finds_nothing(name: str) -> None:
    result = _core_slice(name)
    assert result.inputs == CORE_SLICE
    _nothing_found(result)


def test_the_wireguard_slice_reaches_every_kind_of_message_and_verdict() -> None:
    """Genuine messages get through once, forged and replayed ones are refused deep
    inside the handshake and the AEAD, not only at the length check."""
    labels = set(_core_slice("wireguard").outcomes)
    for reached in [
        "wg_initiation accepted",
        "wg_initiation refused:handshake_auth",
        "wg_initiation refused:timestamp_replay",
        "wg_initiation refused:unknown_peer",
        "wg_initiation refused:cookie_required",
        "wg_response accepted",
        "wg_response refused:handshake_auth",
        "wg_cookie_reply accepted",
        "wg_cookie_reply refused:bad_cookie_reply",
        "wg_transport delivered",
        "wg_transport refused:replayed",
        "wg_transport refused:decrypt_failed",
        "wg_transport refused:inner_malformed",
        "wg_send staged",
        "wg_send sealed",
    ]:
        assert reached in labels, reached


def test_the_napt_slice_reaches_every_limit_and_both_ways() -> None:
    labels = set(_core_slice("napt").outcomes)
    for reached in [
        "napt_outbound session",
        "napt_outbound error",
        "napt_inbound session",
        "napt_inbound error",
        "napt_outbound drop:napt_tenant_limit",
        "napt_outbound drop:napt_table_full",
        "napt_outbound drop:napt_ports_exhausted",
        "napt_inbound drop:napt_no_session",
        "napt_expire ended:1",
    ]:
        assert reached in labels, reached


def _plant_core(
    monkeypatch: pytest.MonkeyPatch, core: str, owner: object, name: str, method: object
) -> set[str]:
    monkeypatch.setattr(owner, name, method)
    return _kinds(CoreTarget(core).run_chunk("planted", 0, CORE_SLICE))


def _raises(*args: object, **kwargs: object) -> None:
    raise IndexError("planted")


def test_a_core_that_raises_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "exception" in _plant_core(monkeypatch, "wireguard", Device, "tick", _raises)
    assert "exception" in _plant_core(monkeypatch, "napt", translate, "_error", _raises)


def test_a_refusal_counted_twice_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = Device._on_transport

    def twice(self, *args):  # type: ignore[no-untyped-def]
        try:
            return transport(self, *args)
        except Refused as refusal:
            self.refused[refusal.reason] += 1
            raise

    assert "counted" in _plant_core(monkeypatch, "wireguard", Device, "_on_transport", twice)


def test_an_answer_to_a_refused_datagram_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A device that echoes every handshake message whose mac1 is wrong."""
    check = Device._check_macs

    def echoes(self, message, source, now, under_load):  # type: ignore[no-untyped-def]
        if not self.cookies.check_mac1(message):
            self.outbox.append((bytes(message), source))
        check(self, message, source, now, under_load)

    assert "answered" in _plant_core(monkeypatch, "wireguard", Device, "_check_macs", echoes)


def test_a_device_that_ignores_load_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The device under test (the one with two peers) never told it is under load:
    handshake messages with a valid mac1 get in without a cookie."""
    receive = Device.receive

    def unloaded(self, datagram, source, now, under_load=False):  # type: ignore[no-untyped-def]
        return receive(self, datagram, source, now, under_load and len(self.peers) < 2)

    assert "cookie" in _plant_core(monkeypatch, "wireguard", Device, "receive", unloaded)


def test_replayed_or_forged_wireguard_messages_accepted_are_findings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "replayed" in _plant_core(
        monkeypatch, "wireguard", ReplayWindow, "accept", lambda self, counter, limit: True
    )
    monkeypatch.undo()
    assert "forged" in _plant_core(
        monkeypatch, "wireguard", CookieGenerator, "consume_cookie_reply", lambda *a: True
    )


def test_a_receiver_index_leaked_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    found = _plant_core(monkeypatch, "wireguard", Device, "_forget_index", lambda self, i: None)
    assert "bounds" in found


def test_a_wrong_napt_checksum_or_address_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checksums left as they were; then addresses written as 0.0.0.0."""
    assert "checksum" in _plant_core(monkeypatch, "napt", translate, "apply_delta", lambda c, d: c)
    monkeypatch.undo()
    rewrite = translate._rewrite

    def zeroes(packet, ihl, protocol, addr_at, port_at, addr, *rest):  # type: ignore[no-untyped-def]
        rewrite(packet, ihl, protocol, addr_at, port_at, bytes(4), *rest)

    assert "misdirected" in _plant_core(monkeypatch, "napt", translate, "_rewrite", zeroes)


def test_a_napt_table_past_its_bounds_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tenant limit not enforced; mappings never forgotten; ports never given
    back to the allocator; expiry that ends nothing."""
    opens = Napt.open

    def unlimited(self, tenant, *args):  # type: ignore[no-untyped-def]
        tenant.max_sessions = 1 << 20
        return opens(self, tenant, *args)

    assert "bounds" in _plant_core(monkeypatch, "napt", Napt, "open", unlimited)
    monkeypatch.undo()
    assert "bounds" in _plant_core(monkeypatch, "napt", Napt, "_free", lambda self, m: None)
    monkeypatch.undo()
    found = _plant_core(monkeypatch, "napt", PortAllocator, "release", lambda self, port: None)
    assert "ports" in found
    monkeypatch.undo()
    assert "expire" in _plant_core(monkeypatch, "napt", Napt, "expire", lambda *a: 0)


def test_a_core_finding_replays_from_its_identifier(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(Device, "tick", _raises)
    found = CoreTarget("wireguard").run_chunk("planted", 0, CORE_SLICE).findings[0]
    assert found["replay"].startswith("planted:core/wireguard:0:")
    assert main(["--replay", found["replay"]]) == 1
    assert "FINDING exception: IndexError: planted" in capsys.readouterr().out


def test_the_command_runs_the_cores_alone(tmp_path: Path) -> None:
    summary, findings = tmp_path / "last-run.json", tmp_path / "findings.jsonl"
    argv = ["--inputs", "4000", "--workers", "2", "--core", "wireguard", "--core", "napt"]
    assert main([*argv, "--summary", str(summary), "--findings", str(findings)]) == 0
    result = json.loads(summary.read_text())
    assert result["targets"] == [{"core": "wireguard"}, {"core": "napt"}]
    assert result["inputs"] == 4000 and not result["findings"]
    assert {"wg_transport", "napt_outbound", "napt_inbound"} <= set(result["outcomes"])
