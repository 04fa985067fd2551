"""The node plan (``gateway.dataplane.plan``): what a node serves, and what `nvgw run`
refuses before touching the network (unknown nodes, what the host role cannot forward
yet, PAs changed while running), each named with file, line, path and value.

Pure: the configs are read through the daemon's own store (so the issues carry the
file and line), and nothing is opened."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.control import load_config
from gateway.control.store import PolicyStore
from gateway.dataplane import NodePlan, plan_node, prepare_node
from gateway.errors import ConfigError
from gateway.policy import NodeRole

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def load_node(path: Path, node: str, running: NodePlan | None = None) -> NodePlan:
    """What the daemon's store reads at start-up and on SIGHUP, without swapping it in."""

    async def no_swap(prepared: object) -> None:
        raise AssertionError("read() never commits")

    def prepare(policy):  # type: ignore[no-untyped-def]
        return prepare_node(policy, node, running)[1]

    _, plan = PolicyStore(path, prepare, no_swap).read()
    return plan


def edited(tmp_path: Path, name: str, *replacements: tuple[str, str]) -> Path:
    """A shipped config with text replaced (each replacement must apply)."""
    text = (CONFIGS / name).read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    config = tmp_path / name
    config.write_text(text)
    return config


def test_plans_nvgre_and_ip_rewrite_pas_apart() -> None:
    plan = load_node(CONFIGS / "two-hosts.yaml", "host1")
    assert plan == NodePlan(
        "host1",
        NodeRole.HOST,
        nvgre_pas=(bytes([198, 18, 0, 1]),),
        rewrite_pas=(),
        link_interface="pa0",
        nvgre_by_interface=(("pa0", (bytes([198, 18, 0, 1]),)),),
    )
    plan = load_node(CONFIGS / "ip-rewrite.yaml", "host1")
    assert plan.nvgre_pas == () and plan.nvgre_by_interface == ()
    assert plan.rewrite_pas == (bytes([198, 18, 0, 11]), bytes([198, 18, 0, 21]))
    assert plan.link_interface == "pa0"


def test_nvgre_pas_are_grouped_by_interface_for_their_rings(tmp_path: Path) -> None:
    config = edited(
        tmp_path,
        "two-hosts.yaml",
        (
            "- {interface: pa0, pa: 198.18.0.1, prefix_length: 24}",
            "- {interface: pa1, pa: 198.18.1.1, prefix_length: 24}\n"
            "      - {interface: pa0, pa: 198.18.0.1, prefix_length: 24}\n"
            "      - {interface: pa1, pa: 198.18.1.9, prefix_length: 24}",
        ),
    )
    plan = load_node(config, "host1")
    first, second, third = bytes([198, 18, 1, 1]), bytes([198, 18, 0, 1]), bytes([198, 18, 1, 9])
    assert plan.nvgre_pas == (first, second, third)  # the file's order
    assert plan.nvgre_by_interface == (("pa0", (second,)), ("pa1", (first, third)))
    assert plan.link_interface == "pa1"  # the first provider address's


def test_an_unknown_node_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        load_node(CONFIGS / "two-hosts.yaml", "host9")
    [issue] = caught.value.issues
    assert issue.value == "host9" and "host1, host2" in issue.message
    assert issue.file == str(CONFIGS / "two-hosts.yaml")


def test_an_ipv6_only_port_is_refused_not_ignored(tmp_path: Path) -> None:
    config = edited(
        tmp_path,
        "two-hosts.yaml",
        ("prefixes: [10.10.10.0/24]", "prefixes: [10.10.10.0/24, 'fd00:10::/64']"),
        ("{vsid: 5010, ca: 10.10.10.11,", "{vsid: 5010, ca: 'fd00:10::11',"),
    )
    with pytest.raises(ConfigError) as caught:
        load_node(config, "host1")
    [issue] = caught.value.issues
    assert issue.path == "lookup_records[0].ca" and issue.value == "fd00:10::11"
    assert "port blue1 has no IPv4 CA" in issue.message
    assert issue.file == str(config) and issue.line is not None
    line = config.read_text().splitlines()[issue.line - 1]
    assert line.lstrip().startswith("- {vsid: 5010, ca: 'fd00:10::11'")
    load_node(config, "host2")  # host2 serves no IPv6 VM: nothing to refuse


def test_a_dual_stack_port_is_served_and_listed(tmp_path: Path) -> None:
    """decisions.md, "IPv6": one MAC with an IPv4 and an IPv6 CA (as Windows exports
    have them) is served; the plan names its IPv6 CA, for the daemon to say at start
    that it is not forwarded. Wildcard records on the port's MAC change nothing."""
    config = edited(
        tmp_path,
        "two-hosts.yaml",
        ("prefixes: [10.10.10.0/24]", "prefixes: [10.10.10.0/24, 'fd00:10::/64']"),
        (
            "lookup_records:\n",
            "lookup_records:\n"
            "  - {vsid: 5010, ca: 'fd00:10::11', mac: 00-00-00-00-00-11, pa: 198.18.0.1,"
            " rule: encap}\n"
            "  - {vsid: 5010, ca: 0.0.0.0, mac: 00-00-00-00-00-11, pa: 198.18.0.1,"
            " rule: encap, type: l2only}\n",
        ),
    )
    plan = load_node(config, "host1")
    assert plan.ipv6_not_forwarded == (("blue1", "fd00:10::11"),)
    assert load_node(config, "host2").ipv6_not_forwarded == ()


def test_an_ipv6_pa_of_the_node_is_refused_not_ignored(tmp_path: Path) -> None:
    config = edited(
        tmp_path,
        "two-hosts.yaml",
        (
            "- {interface: pa0, pa: 198.18.0.2, prefix_length: 24}",
            "- {interface: pa0, pa: 198.18.0.2, prefix_length: 24}\n"
            "      - {interface: pa0, pa: '2001:db8::2', prefix_length: 64}",
        ),
    )
    with pytest.raises(ConfigError) as caught:
        load_node(config, "host2")
    [issue] = caught.value.issues
    assert issue.path == "nodes.host2.provider_addresses[1].pa" and issue.value == "2001:db8::2"
    assert "IPv4 only" in issue.message and issue.line is not None
    load_node(config, "host1")


def test_while_running_the_pas_cannot_change_but_the_rest_can(tmp_path: Path) -> None:
    running = load_node(CONFIGS / "two-hosts.yaml", "host1")
    added = "      - {interface: pa0, pa: 198.18.0.1, prefix_length: 24}\n"
    moved = edited(
        tmp_path,
        "two-hosts.yaml",
        (added, added + "      - {interface: pa0, pa: 198.18.0.9, prefix_length: 24}\n"),
    )
    assert len(load_node(moved, "host1").nvgre_pas) == 2  # at start: fine
    with pytest.raises(ConfigError) as caught:
        load_node(moved, "host1", running)
    [issue] = caught.value.issues
    assert issue.path == "nodes.host1.provider_addresses" and issue.value == "changed"
    assert "restart" in issue.message and issue.file == str(moved)
    # blue2's live migration to host1: its record takes host1's PA and its port moves
    # here, and no PA of host1 changes: accepted while running.
    blue2 = "      - {name: blue2, vsid: 5010, mac: 00-00-00-00-00-12}\n"
    migrated = edited(
        tmp_path,
        "two-hosts.yaml",
        ("pa: 198.18.0.2, rule: encap, vm: blue2", "pa: 198.18.0.1, rule: encap, vm: blue2"),
        (blue2, ""),
        ("      - {name: red1,", blue2 + "      - {name: red1,"),
    )
    assert load_node(migrated, "host1", running) == running


def test_plan_node_takes_a_policy_alone() -> None:
    """The store only adds each issue's file and line: the plan is a pure function."""
    policy = load_config(CONFIGS / "routing.yaml")
    assert plan_node(policy, "host2").nvgre_pas == (bytes([198, 18, 0, 2]),)
    with pytest.raises(ConfigError) as caught:
        plan_node(policy, "host3")
    assert [issue.file for issue in caught.value.issues] == [None]


def test_nvgw_run_exits_1_with_the_reason() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "run",
            "-c",
            str(CONFIGS / "two-hosts.yaml"),
            "--node",
            "host9",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no such node" in result.stderr and "two-hosts.yaml" in result.stderr
