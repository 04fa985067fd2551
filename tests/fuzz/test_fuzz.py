"""The fuzzer's CI slice, and proof that its oracle sees what it claims to.

The slice runs ``SLICE`` inputs through every node of every policy (about 20,000 in
all, a few seconds) with a fixed seed, and fails on any finding. What the fuzzer
found in the data plane so far is pinned by tests/dataplane/test_fuzz_findings.py.

The oracle's own tests plant a bug in the data plane (by monkeypatching one function)
and check that a short campaign reports it as the kind of finding it is.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from gateway.dataplane import GatewayTables, HostPort, provider_side, vm_side
from gateway.errors import Drop

from .__main__ import main
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


@pytest.mark.parametrize("name", TARGETS)
def test_the_slice_finds_nothing(name: str) -> None:
    result = _slice(name)
    assert result.inputs == SLICE
    found = {
        f["signature"]: f"{f['detail']} (replay: python -m tests.fuzz --replay {f['replay']})"
        for f in result.findings
    }
    assert not found, "\n".join(found.values())


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
