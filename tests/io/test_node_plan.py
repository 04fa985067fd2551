"""What `nvgw run` refuses before touching the network: unknown nodes, and what the
host role cannot forward yet (IPv6), each named with file, line, path and value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.control.store import PolicyStore
from gateway.errors import ConfigError
from gateway.io import prepare_node

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def load_node(path: Path, node: str):  # type: ignore[no-untyped-def]
    """What the daemon's store reads at start-up and on SIGHUP, without swapping it in."""

    async def no_swap(prepared: object) -> None:
        raise AssertionError("read() never commits")

    _, prepared = PolicyStore(path, lambda policy: prepare_node(policy, node), no_swap).read()
    return prepared


def test_plans_nvgre_and_ip_rewrite_pas_apart() -> None:
    _, (encap, rewrite) = load_node(CONFIGS / "two-hosts.yaml", "host1")
    assert (encap, rewrite) == ([bytes([198, 18, 0, 1])], [])
    _, (encap, rewrite) = load_node(CONFIGS / "ip-rewrite.yaml", "host1")
    assert encap == [] and len(rewrite) == 2


def test_an_unknown_node_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        load_node(CONFIGS / "two-hosts.yaml", "host9")
    [issue] = caught.value.issues
    assert issue.value == "host9" and "host1, host2" in issue.message
    assert issue.file == str(CONFIGS / "two-hosts.yaml")


def test_ipv6_records_of_a_served_port_are_refused_not_ignored(tmp_path: Path) -> None:
    text = (CONFIGS / "two-hosts.yaml").read_text()
    text = text.replace("prefixes: [10.10.10.0/24]", "prefixes: [10.10.10.0/24, 'fd00:10::/64']", 1)
    text = text.replace("{vsid: 5010, ca: 10.10.10.11,", "{vsid: 5010, ca: 'fd00:10::11',", 1)
    config = tmp_path / "v6.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_node(config, "host1")
    [issue] = caught.value.issues
    assert issue.path == "lookup_records[0].ca" and issue.value == "fd00:10::11"
    assert issue.file == str(config) and issue.line is not None
    assert text.splitlines()[issue.line - 1].lstrip().startswith("- {vsid: 5010, ca: 'fd00:10::11'")
    load_node(config, "host2")  # host2 serves no IPv6 VM: nothing to refuse


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
