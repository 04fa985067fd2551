"""The nvgw command: `nvgw check FILE...`, `nvgw --version`, and the admin's verbs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest
from click.testing import Result
from typer.testing import CliRunner

from gateway.cli import app
from gateway.control.api import build_api
from gateway.control.store import PolicyStore
from tests._inprocess_api import cli_talks_to
from tests.control._gateway_config import gateway_config
from tests.control._node import host1_prepare
from tests.control._stores import held, seeded

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
runner = CliRunner()

BAD = """\
routing_domains:
  - rdid: "{11111111-2222-3333-4444-000000005010}"
    virtual_subnets:
      - vsid: 4095
        prefixes: [10.10.10.0/24]
lookup_records:
  - {vsdi: 5010, ca: 10.10.10.11, mac: 00-00-00-00-00-11, pa: 198.18.0.1, rule: encap}
"""


def test_check_shipped_configs() -> None:
    result = runner.invoke(app, ["check", *map(str, CONFIGS)], prog_name="nvgw")
    assert result.exit_code == 0, result.output
    for config in CONFIGS:
        assert f"{config}: valid (revision 0)" in result.output
    two_hosts = result.output.split("two-hosts.yaml: valid")[1]
    assert "routing domains     2" in two_hosts
    assert "lookup records      4 (encap 4, nat 0)" in two_hosts
    assert "customer routes     2" in two_hosts
    assert "nodes               2 (provider addresses 2, ports 4)" in two_hosts
    assert "(encap 0, nat 4)" in result.output  # ip-rewrite.yaml


def test_check_reports_every_error_one_per_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    good = CONFIGS[0]
    result = runner.invoke(app, ["check", str(good), str(bad)], prog_name="nvgw")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    errors = [line for line in lines if line.startswith(str(bad))]
    assert errors == [
        f"{bad}:4: routing_domains[0].virtual_subnets[0].vsid = 4095: "
        "reserved: usable VSIDs are 4096..16777214",
        f"{bad}:7: lookup_records[0].vsdi = 5010: unknown key; did you mean 'vsid'?",
    ]
    assert f"{good}: valid" in result.output  # the good file is still summarised


def test_check_unreadable_file_fails(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "nope.yaml")], prog_name="nvgw")
    assert result.exit_code == 1
    assert "cannot read the file" in result.output


def test_usage_errors_exit_2() -> None:
    assert runner.invoke(app, ["check"], prog_name="nvgw").exit_code == 2
    assert runner.invoke(app, ["frobnicate"], prog_name="nvgw").exit_code == 2


def test_version() -> None:
    result = runner.invoke(app, ["--version"], prog_name="nvgw")
    assert result.exit_code == 0 and result.output.startswith("nvgw ")


def test_the_lab_is_loaded_for_nvgw_lab_and_the_help_alone() -> None:
    """Any other command spares the lab's imports (pyroute2 among them)."""
    code = (
        "import sys\n"
        "from gateway.cli import main\n"
        "sys.argv = ['nvgw', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted({'gateway.lab.commands', 'pyroute2'} & set(sys.modules))))\n"
    )

    def loaded(*args: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.splitlines()[-1].split()

    assert loaded("check", str(CONFIGS[0])) == []
    assert loaded("lab", "--help") == ["gateway.lab.commands", "pyroute2"]
    listed = runner.invoke(app, ["--help"], prog_name="nvgw", env={"COLUMNS": "200"})
    assert "│ lab " in listed.output and "The seed's labs in network namespaces." in listed.output


def test_python_dash_m_gateway(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "check", str(CONFIGS[0]), str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"{bad}:4: routing_domains[0]" in done.stdout


# ---------------------------------------------------------------- the verbs, as a user sees them

GREEN = "{11111111-2222-3333-4444-000000005099}"


@contextmanager
def verbs_talk_to_host1(config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """host1's API over a database seeded from ``config``, in process: every verb
    talks to it."""

    async def swap(policy: Any) -> None:
        pass

    with anyio.from_thread.start_blocking_portal() as portal:
        store: PolicyStore[Any] = portal.call(seeded, config, host1_prepare(), swap)
        with cli_talks_to(build_api(store, "host1", dict), portal, monkeypatch):
            yield


@pytest.fixture
def api_for_verbs(
    each_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """host1's API over a store (SQLite, then etcd) seeded from the two-hosts config,
    in process: every verb talks to it (tests/io/test_api_daemon.py runs the same
    verbs against a real daemon)."""
    config = tmp_path / "two-hosts.yaml"
    shutil.copyfile(ROOT / "configs" / "two-hosts.yaml", config)
    with verbs_talk_to_host1(config, monkeypatch):
        yield


def nvgw(*args: str) -> Result:
    return runner.invoke(app, list(args), prog_name="nvgw", terminal_width=100)


def test_the_verbs_add_get_and_remove_as_before(api_for_verbs: None) -> None:
    added = nvgw("lookup-record", "add", "--vsid", "5010", "--ca", "10.10.10.13",
                 "--mac", "00-00-00-00-00-13", "--pa", "198.18.0.2", "--vm", "blue3")  # fmt: skip
    assert added.exit_code == 0 and added.output.endswith(
        "added lookup-record (policy revision 1)\n"
    )
    found = nvgw("lookup-record", "get", "--mac", "00:00:00:00:00:13", "--json")
    assert json.loads(found.output) == [
        {"vsid": 5010, "ca": "10.10.10.13", "mac": "00-00-00-00-00-13", "pa": "198.18.0.2",
         "rule": "encap", "type": "static", "vm": "blue3"}
    ]  # fmt: skip
    assert nvgw("routing-domain", "add", "--rdid", GREEN, "--name", "green").exit_code == 0
    subnet = nvgw("virtual-subnet", "add", "--rdid", GREEN, "--vsid", "5099",
                  "--prefix", "10.99.0.0/24", "--prefix", "fd00:99::/64")  # fmt: skip
    assert subnet.exit_code == 0
    assert nvgw("virtual-subnet", "get").output.splitlines()[-2:] == [
        "│ {11111111-2222-3333-4444-000000005099} │ 5099 │ 10.99.0.0/24, fd00:99::/64 │",
        "└────────────────────────────────────────┴──────┴────────────────────────────┘",
    ]
    assert nvgw("routing-domain", "get", "--name", "green").output.splitlines() == [
        "routing-domains (policy revision 3)",
        "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━┳━━━━━━━━━━━━━━━━━┓",
        "┃ rdid                                   ┃ name  ┃ virtual_subnets ┃",
        "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━╇━━━━━━━━━━━━━━━━━┩",
        "│ {11111111-2222-3333-4444-000000005099} │ green │ 5099            │",
        "└────────────────────────────────────────┴───────┴─────────────────┘",
    ]
    removed = nvgw("lookup-record", "remove", "--vm", "blue3")
    assert "removed 1 of the lookup-records (policy revision 4)" in removed.output
    assert "10.10.10.13" in removed.output
    pa = nvgw("provider-address", "add", "--node", "host9", "--interface", "pa0",
              "--pa", "198.18.0.22", "--prefix-length", "24")  # fmt: skip
    assert pa.exit_code == 1
    assert pa.output.endswith(
        "nvgw: refused: the policy would be invalid\n"
        "  node = host9: no such node: add it first (known: host1, host2)\n"
    )
    nothing = nvgw("customer-route", "remove")
    assert nothing.exit_code == 2 and "at least one filter" in nothing.output
    assert nvgw("lookup-record", "add", "--vsid", "5010").exit_code == 2  # --ca is required


@pytest.fixture
def api_for_gateway_verbs(
    each_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """As ``api_for_verbs``, over a config with a gateway node (whose own daemon
    cannot run yet): the verbs edit the gateway's part of the shared policy."""
    config = gateway_config(tmp_path)
    with verbs_talk_to_host1(config, monkeypatch):
        yield config


def test_the_gateway_verbs_add_get_and_remove_its_taps_and_routes(
    api_for_gateway_verbs: Path,
) -> None:
    blue = ("--node", "gw", "--routing-domain", "blue")
    tap = nvgw("gateway-tap", "add", *blue, "--name", "gw-blue2", "--address", "172.16.1.1/24")
    # (the in-process API's log lines come first in the output)
    assert tap.exit_code == 0 and tap.output.endswith("added gateway-tap (policy revision 1)\n")
    route = nvgw("gateway-route", "add", *blue,
                 "--destination", "172.16.1.0/24", "--next-hop", "tap:gw-blue2")  # fmt: skip
    assert route.exit_code == 0, route.output
    assert nvgw("gateway-route", "get", "--next-hop", "tap:gw-blue2").output.splitlines() == [
        "gateway-routes (policy revision 2)",
        "┏━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━┓",
        "┃ node ┃ routing_domain ┃ destination   ┃ next_hop     ┃",
        "┡━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━┩",
        "│ gw   │ blue           │ 172.16.1.0/24 │ tap:gw-blue2 │",
        "└──────┴────────────────┴───────────────┴──────────────┘",
    ]
    served = nvgw("gateway-routing-domain", "get", "--routing-domain", "blue", "--json")
    assert json.loads(served.output) == [
        {"node": "gw", "routing_domain": "blue", "taps": ["gw-blue", "gw-blue2"],
         "routes": ["172.16.0.0/24", "172.16.50.0/24", "172.16.1.0/24"], "port_forwards": []}
    ]  # fmt: skip

    nat = nvgw("gateway-route", "add", *blue, "--destination", "0.0.0.0/0", "--next-hop", "nat")
    assert nat.exit_code == 1
    assert nat.output.endswith(
        "nvgw: refused: the policy would be invalid\n"
        "  nodes.gw.routing_domains.blue.routes[3].next_hop = nat: "
        "node gw has no NAT: add nodes.gw.nat (its external tap, addresses, next_hop) first\n"
    )
    again = nvgw("gateway-routing-domain", "add", *blue)
    assert again.exit_code == 1
    assert again.output.endswith(
        "nvgw: gateway routing domain gw/blue exists already: remove it first\n"
    )

    removed = nvgw("gateway-route", "remove", "--routing-domain", "blue",
                   "--destination", "172.16.1.0/24")  # fmt: skip
    assert "removed 1 of the gateway-routes (policy revision 3)" in removed.output
    assert nvgw("gateway-tap", "remove", "--name", "gw-blue2").exit_code == 0
    assert [
        tap.name for tap in held(api_for_gateway_verbs).node("gw").routing_domains["blue"].taps
    ] == ["gw-blue"]
    assert nvgw("gateway-tap", "add", "--node", "gw", "--name", "gw-x").exit_code == 2  # usage


def test_a_served_domains_nat_share_is_an_option_in_yaml(api_for_gateway_verbs: Path) -> None:
    rdid = "{11111111-2222-3333-4444-000000005011}"
    red = ("--node", "gw", "--routing-domain", rdid)
    removed = nvgw("gateway-routing-domain", "remove", *red)
    assert removed.exit_code == 0, removed.output
    bad = nvgw("gateway-routing-domain", "add", *red, "--nat", "{log: [")
    assert bad.exit_code == 2 and "--nat" in bad.output
    refused = nvgw("gateway-routing-domain", "add", *red, "--nat", "{max_sessions: 10, log: true}")
    assert refused.exit_code == 1
    assert (
        f'  nodes.gw.routing_domains["{rdid}"].nat = nat: node gw has no NAT: add nodes.gw.nat'
        in refused.output
    ), refused.output
