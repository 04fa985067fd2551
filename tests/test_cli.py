"""The nvgw command: `nvgw check FILE...` and `nvgw --version`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli import app

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
