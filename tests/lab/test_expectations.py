"""The lab's "as expected": who should answer each ping, asked of the real data plane
through the fabric (no namespaces: the VMs' stacks are played in memory)."""

from __future__ import annotations

from pathlib import Path

from gateway.control import load_config, read_document, to_plain
from gateway.lab.plan import plan_lab
from gateway.lab.probe import expectations
from gateway.policy import Policy, compile_policy, load_policy
from tests.fuzz.policies import GENERATED

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def expected(policy: Policy) -> dict[tuple[str, str], str | None]:
    return expectations(compile_policy(policy), plan_lab(policy, "nvgw"))


def shipped(name: str) -> dict[tuple[str, str], str | None]:
    return expected(load_config(CONFIGS / f"{name}.yaml"))


def test_overlapping_tenants_answer_within_their_own() -> None:
    cells = shipped("two-hosts")
    assert cells["blue1", "blue2"] == "blue2" and cells["red1", "red2"] == "red2"
    assert cells["blue1", "red2"] == "blue2", "Red2's address, from Blue, is Blue2's"
    assert cells["blue1", "red1"] == "blue1", "its own address: its loopback answers"
    single = shipped("single-host")
    assert single["blue1", "red2"] == "blue2" and single["red2", "blue1"] == "red1"


def test_routing_crosses_vsids_of_one_domain_only() -> None:
    cells = shipped("routing")
    assert cells["blue1", "blue3"] == "blue3" and cells["blue3", "blue2"] == "blue2"
    assert cells["red1", "blue3"] is None, "Red has no 10.10.20.0/24"
    assert cells["blue3", "red1"] == "blue1", "red1's address, routed in Blue, is blue1's"


def test_ip_rewrite_is_asked_through_the_provider_link() -> None:
    cells = shipped("ip-rewrite")
    assert cells["blue1", "blue2"] == "blue2" and cells["red2", "red1"] == "red1"


def test_an_answer_counts_only_when_the_reply_comes_back() -> None:
    """blue3's subnet loses its gateway: blue1's echo still reaches blue3 (routed by
    host1), but blue3 has no route back."""
    document = to_plain(read_document(CONFIGS / "routing.yaml"))
    del document["routing_domains"][0]["virtual_subnets"][1]["gateway"]
    cells = expected(load_policy(document))
    assert cells["blue1", "blue3"] is None and cells["blue1", "blue2"] == "blue2"


def test_it_is_the_data_planes_answer_not_a_model_of_the_records() -> None:
    """mixed-rule: blue1 (encap, on its host's PA) and blue2 (IP-Rewrite) share a VSID
    and their records say they reach each other, but an encap VM has no PA of its own
    to rewrite from: the data plane drops it (provider_unreachable), and so nobody
    answers. A model of the records (the lab's old one) expected blue2."""
    cells = expected(load_policy(GENERATED["mixed-rule"]()))
    assert cells["blue1", "blue2"] is None and cells["blue2", "blue1"] is None
    assert cells["red2", "red1"] is None, "red2 (encap) to red1 (IP-Rewrite): the same"
