"""What ``nvgw lab up`` prints about its daemons: each one's API socket and the
command to use it (no lab daemon serves nvgw's default socket). Checked without
root against the plan; tests/lab/test_install.py runs the printed command for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.control import load_config
from gateway.lab.commands import CONFIGS, SCENARIOS, daemon_hints
from gateway.lab.plan import plan_lab
from gateway.lab.topology import Lab


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lab_up_names_each_daemons_socket_and_how_to_use_it(tmp_path: Path, scenario: str) -> None:
    policy = load_config(CONFIGS / f"{scenario}.yaml")
    lab = Lab("nvgt", state_dir=tmp_path)
    plan = plan_lab(policy, lab.prefix)
    lines = daemon_hints(lab, plan)
    assert len(lines) == len(policy.nodes) == len(plan.hosts)
    for line, node in zip(lines, policy.nodes, strict=True):
        socket = tmp_path / f"lab-nvgt-{node.name}.sock"
        assert socket == lab.api_socket(node.name), "the socket its daemon is started on"
        assert line == (
            f"{node.name}: nvgw lookup-record get --api {socket}   "
            f"(or for a shell: export NVGW_API={socket})"
        )
